/* model_cuda_decode: incremental decoding on the GPU with absorbed MLA over a paged
 * latent cache, model/decode.c's model_extend step for step: per layer the new
 * tokens' normed latent and rotated k_pe are appended (cuda_latent_append) before
 * they attend (causal within a call), q_nope is absorbed through W_UK and the latent
 * context mapped out through W_UV (one strided-batched product over heads each), and
 * cuda_latent_attend reads each sequence's pages once for all heads.
 *
 * Decode steps (one new token per sequence) run as CUDA graphs: the step's inputs
 * are uploaded into fixed buffers first, then one graph per (padded batch size,
 * length bucket, logits buffer) is captured when a step repeats the previous step's
 * key, and replayed; the attention's split count follows the bucket (the longest
 * sequence rounded up to 128 tokens), so a graph serves 128 steps. The batch is
 * padded to one of a few sizes (cuda_model_step_rows) with rows that attend to one
 * token of a scratch page, so a batch that shrinks as samples finish keeps meeting
 * the same keys. Capture that fails turns graphs off for the model (a note on
 * stderr) and the step runs as plain launches; padding is the same either way.
 *
 * Pages: each slot owns max_len/P pages of its own, fixed at creation (a page table
 * that never changes), and one more page is the padding rows' scratch; sharing a
 * prompt's pages between the G slots of a group, and a free list, are not done:
 * kvcache_copy copies. Buffers for up to `cap` new
 * tokens grow and are kept, so a decode step allocates nothing once warm. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "kernels/cpu/ops.h"
#include "kernels/cuda/attn.h"
#include "kernels/cuda/cast.h"
#include "kernels/cuda/head.h"
#include "kernels/cuda/mla.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/rope.h"
#include "model/cuda/model_cuda_impl.h"

enum { KV_GRAPHS = 64, LEN_BUCKET = 128 }; /* graphs kept per cache (least recently used replaced) */

struct CudaKvCache {
    int nslots, max_len, P, max_pages, L;
    int *len;                 /* host [nslots] tokens held per slot */
    cuda_bf16 *ckv, *kpe;     /* [L, npages, P, d_c], [L, npages, P, d_r]; npages = nslots * max_pages + 1 */
    int *pages;               /* device [nslots + 1, max_pages]: slot s owns s*max_pages + j; slot nslots
                                 (the padding rows') maps every j to the last page */
    /* work for up to cap new tokens */
    int cap;
    void *arena;
    cuda_bf16 *x, *xn, *qa, *qan, *q, *kva, *ckvn, *qabs, *ctx16, *att, *last;
    float *ctx, *rcos, *rsin;
    float *logits;            /* [logits_rows, V], for callers that give no buffer of their own */
    int logits_rows;
    int *ids, *seq, *pos, *len1;   /* device [cap] */
    int *hseq, *hpos, *hlen1;      /* host [cap] */
    float *hcs, *hsn;
    GActs mlp;                /* MLP buffers (g/u/h, routing, experts) for cap tokens */
    void *attend_scratch;
    size_t attend_bytes;
    struct { int N, bucket; float *out; cudaGraphExec_t exec; long used; } graph[KV_GRAPHS];
    int ngraph;
    long tick;
    int last_N, last_bucket;  /* the previous decode step's key: a key is captured when seen twice in a row */
    float *last_out;
};

static CudaLatentCache layer_cache(const CudaModel *g, const CudaKvCache *kv, int l) {
    const long npages = (long)kv->nslots * kv->max_pages + 1;
    const int dc = g->cfg.kv_lora_rank, dr = g->cfg.qk_rope_head_dim;
    return (CudaLatentCache){kv->ckv + (long)l * npages * kv->P * dc, kv->kpe + (long)l * npages * kv->P * dr,
                             kv->pages, (int)npages, kv->P, kv->max_pages, dc, dr};
}

CudaKvCache *cuda_kvcache_new(const CudaModel *g, int nslots, int max_len, int page, Err *err) {
    if (nslots <= 0 || max_len <= 0 || page <= 0) {
        err_set(err, ERR_INPUT, "cuda kvcache: need slots, max_len and page > 0 (got %d, %d, %d)", nslots, max_len, page);
        return NULL;
    }
    CudaKvCache *kv = xcalloc(1, sizeof *kv);
    kv->nslots = nslots, kv->max_len = max_len, kv->P = page, kv->L = g->cfg.num_hidden_layers;
    kv->max_pages = (max_len + page - 1) / page;
    kv->len = xcalloc((size_t)nslots, sizeof(int));
    const long own = (long)nslots * kv->max_pages, entries = own + kv->max_pages;
    const size_t tokens = (size_t)kv->L * (own + 1) * page;
    int *table = xmalloc(sizeof(int) * (size_t)entries);
    for (long i = 0; i < entries; i++) table[i] = (int)(i < own ? i : own);
    cudaError_t e = cudaMalloc((void **)&kv->ckv, tokens * g->cfg.kv_lora_rank * sizeof(cuda_bf16));
    if (e == cudaSuccess) e = cudaMalloc((void **)&kv->kpe, tokens * g->cfg.qk_rope_head_dim * sizeof(cuda_bf16));
    if (e == cudaSuccess) e = cudaMalloc((void **)&kv->pages, sizeof(int) * (size_t)entries);
    if (e == cudaSuccess) e = cudaMemcpy(kv->pages, table, sizeof(int) * (size_t)entries, cudaMemcpyHostToDevice);
    free(table);
    if (e != cudaSuccess) {
        err_set(err, ERR_WORK, "cuda kvcache: %d slots x %d tokens: %s", nslots, max_len, cudaGetErrorString(e));
        cuda_kvcache_free(kv);
        return NULL;
    }
    return kv;
}

static void graphs_clear(CudaKvCache *kv) { /* they bake in the work buffers' addresses */
    for (int i = 0; i < kv->ngraph; i++) cudaGraphExecDestroy(kv->graph[i].exec);
    kv->ngraph = 0;
}

static void work_release(CudaKvCache *kv) {
    graphs_clear(kv);
    free(kv->hseq), free(kv->hpos), free(kv->hlen1);
    free(kv->hcs), free(kv->hsn);
    if (kv->arena) cudaFree(kv->arena);
    kv->arena = NULL, kv->cap = 0;
    memset(&kv->mlp, 0, sizeof kv->mlp);
}

void cuda_kvcache_free(CudaKvCache *kv) {
    if (!kv) return;
    work_release(kv);
    if (kv->ckv) cudaFree(kv->ckv);
    if (kv->kpe) cudaFree(kv->kpe);
    if (kv->pages) cudaFree(kv->pages);
    if (kv->logits) cudaFree(kv->logits);
    free(kv->len);
    free(kv);
}

void cuda_kvcache_reset(CudaKvCache *kv, int slot) { kv->len[slot] = 0; }
int cuda_kvcache_len(const CudaKvCache *kv, int slot) { return kv->len[slot]; }

int cuda_kvcache_copy(const CudaModel *g, CudaKvCache *kv, int dst, int src, Err *err) {
    if (dst == src) return 0;
    const size_t n = (size_t)kv->len[src], dc = g->cfg.kv_lora_rank, dr = g->cfg.qk_rope_head_dim;
    for (int l = 0; l < kv->L; l++) {  // pages are the slot's own and consecutive: one copy per layer and part
        CudaLatentCache c = layer_cache(g, kv, l);
        size_t s0 = (size_t)src * kv->max_pages * kv->P, d0 = (size_t)dst * kv->max_pages * kv->P;
        CU(cudaMemcpyAsync(c.ckv + d0 * dc, c.ckv + s0 * dc, n * dc * sizeof(cuda_bf16), cudaMemcpyDeviceToDevice, g->s));
        CU(cudaMemcpyAsync(c.kpe + d0 * dr, c.kpe + s0 * dr, n * dr * sizeof(cuda_bf16), cudaMemcpyDeviceToDevice, g->s));
    }
    kv->len[dst] = (int)n;
    return 0;
}

static void work_layout(const CudaModel *g, CudaKvCache *kv, Arena *a, long N) {
    const ModelConfig *c = &g->cfg;
    const long H = c->hidden_size, nh = c->num_attention_heads, dqk = c->qk_head_dim, dc = c->kv_lora_rank;
    const long dr = c->qk_rope_head_dim, dv = c->v_head_dim, dq = c->q_lora_rank;
    long I = c->intermediate_size, Is = (long)c->moe_intermediate_size * c->n_shared_experts;
    I = I > Is ? I : Is;
    kv->x = BF(N * H), kv->xn = BF(N * H), kv->last = BF(N * H);
    if (dq) kv->qa = BF(N * dq), kv->qan = BF(N * dq);
    kv->q = BF(N * nh * dqk), kv->kva = BF(N * (dc + dr)), kv->ckvn = BF(N * dc);
    kv->qabs = BF(N * nh * dc), kv->ctx = FL(N * nh * dc), kv->ctx16 = BF(N * nh * dc), kv->att = BF(N * nh * dv);
    kv->rcos = FL(N * (dr / 2)), kv->rsin = FL(N * (dr / 2));
    kv->ids = IN(N), kv->seq = IN(N), kv->pos = IN(N), kv->len1 = IN(N);
    GActs *t = &kv->mlp;
    t->gu = BF(N * 2 * I), t->h = BF(N * I);
    if (c->n_routed_experts) cuda_model_moe_layout(c, a, t, N);
    kv->attend_scratch = cuda_model_carve(a, kv->attend_bytes);
}

/* Work buffers for N new tokens attending over up to max_len positions. */
static int work_ensure(const CudaModel *g, CudaKvCache *kv, int N, Err *err) {
    if (kv->cap >= N) return 0;
    int cap = 2 * kv->cap > N ? 2 * kv->cap : N;
    work_release(kv);
    const ModelConfig *c = &g->cfg;
    kv->attend_bytes = cuda_latent_attend_scratch_bytes(cap, c->num_attention_heads, c->kv_lora_rank,
                                                        c->qk_rope_head_dim, kv->max_len);
    Arena a = {NULL, 0};
    work_layout(g, kv, &a, cap);
    CU(cudaMalloc(&kv->arena, a.off));
    a = (Arena){kv->arena, 0};
    work_layout(g, kv, &a, cap);
    const int dr2 = c->qk_rope_head_dim / 2 ? c->qk_rope_head_dim / 2 : 1;
    kv->hseq = xmalloc(sizeof(int) * cap), kv->hpos = xmalloc(sizeof(int) * cap), kv->hlen1 = xmalloc(sizeof(int) * cap);
    kv->hcs = xmalloc(sizeof(float) * cap * dr2), kv->hsn = xmalloc(sizeof(float) * cap * dr2);
    kv->cap = cap;
    return 0;
}

/* Attention of the N new tokens of layer l: kv->att [N, n_h*d_v], as dec_attention. */
static int dec_attention(CudaModel *g, CudaKvCache *kv, int l, int N, int max_len, Err *err) {
    const ModelConfig *c = &g->cfg;
    const GLayer *w = &g->layers[l];
    const int nh = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    const int dqk = dn + dr, dv = c->v_head_dim, dc = c->kv_lora_rank;
    // q_abs[:, h] = q_nope[:, h] . W_UK[h] (W_UK[h]: kv_b rows h*(d_n+d_v) .. +d_n, [d_n, d_c])
    TRY(cuda_gemm_batched(g->blas, g->s, 0, 0, N, dc, dn, 1.0f, kv->q, nh * dqk, dqk, w->kv_b, dc,
                          (long long)(dn + dv) * dc, 0.0f, kv->qabs, CUDA_BF16, nh * dc, dc, nh, err));
    CudaLatentCache cache = layer_cache(g, kv, l);
    TRY(cuda_latent_attend(g->s, &cache, N, kv->seq, kv->len1, max_len, nh, c->softmax_scale, kv->qabs, (long)nh * dc,
                           dc, kv->q + dn, (long)nh * dqk, dqk, kv->ctx, kv->attend_scratch, err));
    TRY(cuda_f32_to_bf16(g->s, kv->ctx16, kv->ctx, (long)N * nh * dc, err));
    // att[:, h] = ctx[:, h] . W_UV[h]^T (W_UV[h]: kv_b rows h*(d_n+d_v)+d_n .. +d_v, [d_v, d_c])
    return cuda_gemm_batched(g->blas, g->s, 0, 1, N, dv, dc, 1.0f, kv->ctx16, nh * dc, dc, w->kv_b + (long)dn * dc, dc,
                             (long long)(dn + dv) * dc, 0.0f, kv->att, CUDA_BF16, nh * dv, dv, nh, err);
}

/* Whether N new tokens give the experts few rows each (cuda_moe_experts_fwd reads
 * each weight row once for them; the tensor-core products do better past that). */
static int moe_few_rows(const ModelConfig *c, int N) {
    return !c->n_routed_experts || (long)N * c->num_experts_per_tok <= 64L * c->n_routed_experts;
}

/* One decoder layer over the N new tokens in kv->x, as dec_layer. */
static int dec_layer(CudaModel *g, CudaKvCache *kv, int l, int N, int max_len, Err *err) {
    const ModelConfig *c = &g->cfg;
    const GLayer *w = &g->layers[l];
    const int H = c->hidden_size, nh = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    const int dqk = dn + dr, dv = c->v_head_dim, dc = c->kv_lora_rank, dq = c->q_lora_rank;
    CudaBlas *bl = g->blas;
    cudaStream_t s = g->s;
    TRY(cuda_rmsnorm_fwd(s, kv->xn, NULL, kv->x, w->input_norm, N, H, H, H, c->rms_norm_eps, err));
    if (dq) {
        TRY(cuda_linear_fwd(bl, s, kv->qa, CUDA_BF16, kv->xn, w->q_a, N, dq, H, 0, err));
        TRY(cuda_rmsnorm_fwd(s, kv->qan, NULL, kv->qa, w->q_a_norm, N, dq, dq, dq, c->latent_norm_eps, err));
        TRY(cuda_linear_fwd(bl, s, kv->q, CUDA_BF16, kv->qan, w->q_b, N, nh * dqk, dq, 0, err));
    } else {
        TRY(cuda_linear_fwd(bl, s, kv->q, CUDA_BF16, kv->xn, w->q, N, nh * dqk, H, 0, err));
    }
    TRY(cuda_rope_apply(s, kv->q + dn, kv->rcos, kv->rsin, N, nh, dqk, nh * dqk, dr, 0, err));
    TRY(cuda_linear_fwd(bl, s, kv->kva, CUDA_BF16, kv->xn, w->kv_a, N, dc + dr, H, 0, err));
    TRY(cuda_rope_apply(s, kv->kva + dc, kv->rcos, kv->rsin, N, 1, 0, dc + dr, dr, 0, err));
    TRY(cuda_rmsnorm_fwd(s, kv->ckvn, NULL, kv->kva, w->kv_a_norm, N, dc, dc + dr, dc, c->latent_norm_eps, err));
    CudaLatentCache cache = layer_cache(g, kv, l);
    TRY(cuda_latent_append(s, &cache, N, kv->seq, kv->pos, kv->ckvn, dc, kv->kva + dc, dc + dr, err));
    TRY(dec_attention(g, kv, l, N, max_len, err));
    TRY(cuda_linear_fwd(bl, s, kv->x, CUDA_BF16, kv->att, w->o, N, H, nh * dv, 1, err));
    TRY(cuda_rmsnorm_fwd(s, kv->xn, NULL, kv->x, w->post_norm, N, H, H, H, c->rms_norm_eps, err));
    GActs *t = &kv->mlp;
    if (w->moe) return cuda_model_moe(g, l, t, kv->xn, N, kv->x, NULL, moe_few_rows(c, N), err);
    return cuda_model_swiglu(g, kv->x, 1, kv->xn, w->mlp_gate, w->mlp_down, t->gu, t->h, N,
                             c->intermediate_size, err);
}

int cuda_model_step_rows(int n) {
    if (n <= 8) {
        int p = 1;
        while (p < n) p <<= 1;
        return p;
    }
    int q = 8; /* 8, or the largest power of two <= n / 8: under 1/8 of the rows past 64 */
    while (16 * q <= n) q <<= 1;
    return (n + q - 1) / q * q;
}

/* model_extend's checks, then the per-token slot, position and length and the rope
 * tables for the N new tokens, and for rows N .. Np-1 when pad (Np =
 * cuda_model_step_rows(N)): token 0 at position 0 of the scratch slot, attending to itself. */
static int extend_plan(CudaModel *g, CudaKvCache *kv, int nseq, const int *slots, const int *ntok, const int *ids,
                       int pad, int *N_out, int *Np_out, int *max_len, Err *err) {
    const ModelConfig *c = &g->cfg;
    int N = 0, mx = 0;
    for (int i = 0; i < nseq; i++) {
        int s = slots[i];
        if (s < 0 || s >= kv->nslots) return err_set(err, ERR_INPUT, "cuda decode: slot %d out of range [0, %d)", s, kv->nslots);
        if (ntok[i] <= 0) return err_set(err, ERR_INPUT, "cuda decode: sequence %d has no new tokens", i);
        for (int j = 0; j < i; j++)
            if (slots[j] == s) return err_set(err, ERR_INPUT, "cuda decode: slot %d named twice in one call", s);
        if (kv->len[s] + ntok[i] > kv->max_len || kv->len[s] + ntok[i] > c->max_position_embeddings)
            return err_set(err, ERR_INPUT, "cuda decode: slot %d would hold %d tokens (cache max %d, model max %d)", s,
                           kv->len[s] + ntok[i], kv->max_len, c->max_position_embeddings);
        N += ntok[i];
        mx = kv->len[s] + ntok[i] > mx ? kv->len[s] + ntok[i] : mx;
    }
    for (int i = 0; i < N; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return err_set(err, ERR_INPUT, "cuda decode: token id %d outside the vocabulary", ids[i]);
    const int Np = pad ? cuda_model_step_rows(N) : N;
    TRY(work_ensure(g, kv, Np, err));
    for (int i = 0, n = 0; i < nseq; i++)
        for (int j = 0; j < ntok[i]; j++, n++)
            kv->hseq[n] = slots[i], kv->hpos[n] = kv->len[slots[i]] + j, kv->hlen1[n] = kv->hpos[n] + 1;
    for (int n = N; n < Np; n++) kv->hseq[n] = kv->nslots, kv->hpos[n] = 0, kv->hlen1[n] = 1;
    rope_table(kv->hcs, kv->hsn, kv->hpos, g->inv_freq, c->rope_amplitude, Np, c->qk_rope_head_dim);
    const size_t dr2 = (size_t)c->qk_rope_head_dim / 2;
    CU(cudaMemcpyAsync(kv->ids, ids, sizeof(int) * N, cudaMemcpyHostToDevice, g->s));
    if (Np > N) CU(cudaMemsetAsync(kv->ids + N, 0, sizeof(int) * (Np - N), g->s));
    CU(cudaMemcpyAsync(kv->seq, kv->hseq, sizeof(int) * Np, cudaMemcpyHostToDevice, g->s));
    CU(cudaMemcpyAsync(kv->pos, kv->hpos, sizeof(int) * Np, cudaMemcpyHostToDevice, g->s));
    CU(cudaMemcpyAsync(kv->len1, kv->hlen1, sizeof(int) * Np, cudaMemcpyHostToDevice, g->s));
    CU(cudaMemcpyAsync(kv->rcos, kv->hcs, sizeof(float) * Np * dr2, cudaMemcpyHostToDevice, g->s));
    CU(cudaMemcpyAsync(kv->rsin, kv->hsn, sizeof(float) * Np * dr2, cudaMemcpyHostToDevice, g->s));
    *N_out = N, *Np_out = Np, *max_len = mx;
    return 0;
}

/* The device work of one extend after extend_plan: embedding, layers, norm, and the
 * logits of each sequence's last new token (or of every token) into out. When every
 * sequence has one new token (N == nseq) ntok is not read: a graph captures this. */
static int dec_run(CudaModel *g, CudaKvCache *kv, int nseq, const int *ntok, int N, int max_len, float *out,
                   int all_logits, Err *err) {
    const ModelConfig *c = &g->cfg;
    const int H = c->hidden_size, V = c->vocab_size, L = c->num_hidden_layers;
    TRY(cuda_embed_rows(g->s, kv->x, g->embed, kv->ids, N, H, err));
    for (int l = 0; l < L; l++) TRY(dec_layer(g, kv, l, N, max_len, err));
    TRY(cuda_rmsnorm_fwd(g->s, kv->xn, NULL, kv->x, g->final_norm, N, H, H, H, c->rms_norm_eps, err));
    const cuda_bf16 *xs = kv->xn;
    int rows = all_logits ? N : nseq;
    if (!all_logits && N != nseq) {  // each sequence's last new token
        for (int i = 0, n = 0; i < nseq; i++) {
            n += ntok[i];
            CU(cudaMemcpyAsync(kv->last + (long)i * H, kv->xn + (long)(n - 1) * H, sizeof(cuda_bf16) * H,
                               cudaMemcpyDeviceToDevice, g->s));
        }
        xs = kv->last;
    }
    return cuda_linear_fwd(g->blas, g->s, out, CUDA_F32, xs, g->lm_head, rows, V, H, 0, err);
}

/* A decode step as a CUDA graph: replayed when (N, bucket, out) has one; captured
 * when the previous step had the same key (a rollout's batch shrinks as samples
 * finish: a size seen once is not worth a capture), else run as plain launches. */
static int graph_step(CudaModel *g, CudaKvCache *kv, int N, int bucket, float *out, Err *err) {
    int k = -1;
    for (int i = 0; i < kv->ngraph && k < 0; i++)
        if (kv->graph[i].N == N && kv->graph[i].bucket == bucket && kv->graph[i].out == out) k = i;
    const int again = kv->last_N == N && kv->last_bucket == bucket && kv->last_out == out;
    kv->last_N = N, kv->last_bucket = bucket, kv->last_out = out;
    if (k < 0 && !again) return dec_run(g, kv, N, NULL, N, bucket, out, 0, err);
    if (k < 0) {
        cudaGraph_t graph = NULL;
        cudaGraphExec_t exec = NULL;
        Err e2 = {0};
        CU(cudaStreamBeginCapture(g->s, cudaStreamCaptureModeThreadLocal));
        int rc = dec_run(g, kv, N, NULL, N, bucket, out, 0, &e2);
        cudaError_t ce = cudaStreamEndCapture(g->s, &graph);
        if (!rc && ce == cudaSuccess) ce = cudaGraphInstantiate(&exec, graph, 0);
        if (graph) cudaGraphDestroy(graph);
        if (rc || ce != cudaSuccess) {  // e.g. a library call that cannot be captured: plain launches from now on
            (void)cudaGetLastError();
            fprintf(stderr, "cuda decode: CUDA graph capture failed (%s); decoding without graphs\n",
                    rc ? e2.msg : cudaGetErrorString(ce));
            cuda_model_set_graphs(g, 0);
            return dec_run(g, kv, N, NULL, N, bucket, out, 0, err);
        }
        if (kv->ngraph < KV_GRAPHS) k = kv->ngraph++;
        else {
            k = 0;
            for (int i = 1; i < KV_GRAPHS; i++)
                if (kv->graph[i].used < kv->graph[k].used) k = i;
            cudaGraphExecDestroy(kv->graph[k].exec);
        }
        kv->graph[k].N = N, kv->graph[k].bucket = bucket, kv->graph[k].out = out, kv->graph[k].exec = exec;
    }
    kv->graph[k].used = ++kv->tick;
    CU(cudaGraphLaunch(kv->graph[k].exec, g->s));
    return 0;
}

int cuda_model_extend_dev(CudaModel *g, CudaKvCache *kv, int nseq, const int *slots, const int *ntok, const int *ids,
                          float *logits, int logits_rows, int all_logits, Err *err) {
    const ModelConfig *c = &g->cfg;
    /* a decode step: one token per sequence, padded where the rows fit; the attention
     * splits by the bucket, graphs or not */
    int step = !all_logits, N = 0, Np = 0, max_len = 0;
    for (int i = 0; i < nseq && step; i++) step = ntok[i] == 1;
    const int pad = step && (!logits || cuda_model_step_rows(nseq) <= logits_rows);
    TRY(extend_plan(g, kv, nseq, slots, ntok, ids, pad, &N, &Np, &max_len, err));
    const int rows = all_logits ? N : pad ? Np : nseq;
    if (logits && rows > logits_rows)
        return err_set(err, ERR_INPUT, "cuda decode: %d rows of logits do not fit a buffer of %d", rows, logits_rows);
    if (!logits && rows > kv->logits_rows) { /* only as many rows as asked for: [tokens, V] can be GBs */
        if (kv->logits) cudaFree(kv->logits);
        kv->logits = NULL, kv->logits_rows = 0;
        CU(cudaMalloc((void **)&kv->logits, sizeof(float) * (size_t)rows * c->vocab_size));
        kv->logits_rows = rows;
    }
    float *out = logits ? logits : kv->logits;
    for (int i = 0; i < nseq; i++) kv->len[slots[i]] += ntok[i];
    if (!step) return dec_run(g, kv, nseq, ntok, N, max_len, out, all_logits, err);
    int bucket = (max_len + LEN_BUCKET - 1) / LEN_BUCKET * LEN_BUCKET;
    bucket = bucket < kv->max_len ? bucket : kv->max_len;
    if (cuda_model_graphs(g)) return graph_step(g, kv, Np, bucket, out, err);
    return dec_run(g, kv, Np, NULL, Np, bucket, out, 0, err);
}

int cuda_model_extend(CudaModel *g, CudaKvCache *kv, int nseq, const int *slots, const int *ntok, const int *ids,
                      float *logits, int all_logits, Err *err) {
    TRY(cuda_model_extend_dev(g, kv, nseq, slots, ntok, ids, NULL, 0, all_logits, err));
    int rows = 0;
    for (int i = 0; i < nseq; i++) rows += all_logits ? ntok[i] : 1;
    CU(cudaMemcpyAsync(logits, kv->logits, sizeof(float) * rows * g->cfg.vocab_size, cudaMemcpyDeviceToHost, g->s));
    CU(cudaStreamSynchronize(g->s));
    return 0;
}
