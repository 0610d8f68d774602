/* attn: multi-head latent attention on the GPU, the two forms of
 * deepseek-v3.md §4:
 *
 *  - training / prefill (§4.3, naive form): causal attention over a padded
 *    batch [B, T] with per-head keys and values, the semantics of
 *    attn_core_fwd_padded / attn_core_bwd_padded in model/model_attn.c.
 *    Flash-attention style: Q, K, V tiles in shared memory, scores and
 *    products on the tensor cores (WMMA bf16 16x16x16, fp32 accumulation),
 *    online softmax, no [T, T] matrix anywhere; the forward saves the fp32
 *    log-sum-exp per (token, head) and the backward recomputes P from it
 *    (flash-attention 2). The backward is deterministic: dK and dV are summed
 *    per key tile by one block, dQ per query tile by another pass (no atomics;
 *    it recomputes Q K^T and dO V^T, about 40% more work than atomics).
 *  - decoding (§4.6, absorbed form): each query attends over a PAGED latent
 *    cache through one key/value head shared by all heads (key = c_kv | k_pe,
 *    value = c_kv), the semantics of latent_attend (kernels/cpu/latent_attn.h)
 *    as model/decode.c calls it. Split-K over the sequence (flash-decoding)
 *    with a combine pass, so one long sequence still fills the GPU.
 *
 * Supported: head dims (dqk, dv, dc, dr) multiples of 8 (dr may be 0), dqk
 * and dv <= 256 (the training kernels keep their tiles in shared memory),
 * dc + dr up to at least 1024 (wider latents are refused where no tile fits
 * in 227 KiB of shared memory); row strides and head strides multiples of 8
 * elements and base pointers 16-byte aligned (the tiles are loaded in 16-byte
 * pieces). Other shapes are refused with ERR_INPUT. bf16 inputs, fp32 softmax statistics and
 * accumulation; the probabilities are rounded to bf16 for the P.V product (as
 * flash attention and HF's eager path do). The training kernels also take a
 * packed (prefix-sharing) batch, model_attn_packed.c's layout: a padded batch
 * is B root segments of T rows to them. Not here: the projections around
 * attention (cuda_gemm), RoPE (cuda_rope_apply), dropout, sliding windows, fp8; the tiles use
 * WMMA through shared memory, not Hopper's wgmma/TMA (correctness first).
 *
 * Not yet executed on a GPU: written and compiled on a machine without one. */
#ifndef GRPO_CUDA_ATTN_H
#define GRPO_CUDA_ATTN_H

#include <stddef.h>

#include "kernels/cuda/gemm.h" /* CudaDtype */

#ifdef __cplusplus
extern "C" {
#endif

/* Shapes and strides of one padded batch. Token (b, t) is row n = b*T + t;
 * element j of head h of a tensor X is X[n*X_ld + h*X_hs + j]. The gradients
 * have their input's layout (dQ as Q, dK as K, dV as V), dO has O's. */
typedef struct CudaAttnLayout {
    int B, T, nh;    /* batch rows, positions per row, heads */
    int dqk, dv;     /* query/key head dim (qk_nope + qk_rope), value head dim */
    long q_ld, q_hs; /* Q  [B*T, nh, dqk] */
    long k_ld, k_hs; /* K  [B*T, nh, dqk] */
    long v_ld, v_hs; /* V  [B*T, nh, dv] */
    long o_ld, o_hs; /* O, dO [B*T, nh, dv] */
} CudaAttnLayout;

/* The model's layout (attn_fwd): q [N, nh*(dn+dr)], k the same, v at kvb + dn
 * inside kvb [N, nh*(dn+dv)], att [N, nh*dv]. */
static inline CudaAttnLayout cuda_attn_layout_mla(int B, int T, int nh, int dn, int dr, int dv) {
    CudaAttnLayout L = {B, T, nh, dn + dr, dv, 0, 0, 0, 0, 0, 0, 0, 0};
    L.q_ld = L.k_ld = (long)nh * (dn + dr), L.q_hs = L.k_hs = dn + dr;
    L.v_ld = (long)nh * (dn + dv), L.v_hs = dn + dv;
    L.o_ld = (long)nh * dv, L.o_hs = dv;
    return L;
}

/* Forward: per batch row b and head h, O = softmax_causal(Q K^T * scale) V,
 * position t seeing positions 0..t of its own row (all T positions, padding
 * included, exactly as attn_core_fwd_padded). o bf16 (O's layout); lse
 * [B*T, nh] fp32 (log-sum-exp of the scaled scores of row (n, h), at
 * lse[n*nh + h]) kept for the backward. No scratch. */
int cuda_attn_fwd(cudaStream_t s, const CudaAttnLayout *L, float scale, const cuda_bf16 *q, const cuda_bf16 *k,
                  const cuda_bf16 *v, cuda_bf16 *o, float *lse, Err *err);

/* A packed batch (model.h PackedBatch, docs/model.md "Packed batches"): segment s
 * is rows start .. start+len-1 of a layout with B = 1 and T = the tokens; prefix
 * -1 makes it a root (causal over itself), else it names an earlier root whose
 * every token it attends to before its own (causally), at positions after it. */
typedef struct CudaAttnSeg { int start, len, prefix; } CudaAttnSeg;

/* Device scratch of the packed calls (forward and backward): their work tables
 * (built on the host per call and uploaded on the stream) and the backward's D. */
size_t cuda_attn_packed_scratch_bytes(int ntok, int nseg, int nh);

/* cuda_attn_fwd over a packed batch (attn_core_fwd_packed's semantics): per
 * segment and head one softmax over its prefix's keys and its own (causal).
 * Rows of no segment are not written. */
int cuda_attn_fwd_packed(cudaStream_t s, const CudaAttnLayout *L, const CudaAttnSeg *seg, int nseg, float scale,
                         const cuda_bf16 *q, const cuda_bf16 *k, const cuda_bf16 *v, cuda_bf16 *o, float *lse,
                         void *scratch, Err *err);
/* cuda_attn_bwd over a packed batch: a prefix's key and value gradients sum its
 * own queries' and then every segment's naming it, in segment order (no atomics). */
int cuda_attn_bwd_packed(cudaStream_t s, const CudaAttnLayout *L, const CudaAttnSeg *seg, int nseg, float scale,
                         const cuda_bf16 *q, const cuda_bf16 *k, const cuda_bf16 *v, const cuda_bf16 *o,
                         const float *lse, const cuda_bf16 *dout, void *dq, void *dk, void *dv, CudaDtype gtype,
                         void *scratch, Err *err);

/* Device scratch of cuda_attn_bwd: D = rowsum(dO * O), [B*T, nh] fp32. */
size_t cuda_attn_bwd_scratch_bytes(const CudaAttnLayout *L);

/* Backward of cuda_attn_fwd from its q, k, v, o, lse and dout (dL/dO, O's
 * layout). dq, dk, dv are OVERWRITTEN (as attn_core_bwd_padded leaves them)
 * in gtype: CUDA_F32 keeps the CPU's fp32 gradients (the model sums dK's rope
 * part over heads before rounding, so fp32 is the default to use); CUDA_BF16
 * writes them ready for the bf16 weight-gradient products. Only the elements
 * of the layout are written (dv can point into a dkvb buffer at offset dn). */
int cuda_attn_bwd(cudaStream_t s, const CudaAttnLayout *L, float scale, const cuda_bf16 *q, const cuda_bf16 *k,
                  const cuda_bf16 *v, const cuda_bf16 *o, const float *lse, const cuda_bf16 *dout, void *dq,
                  void *dk, void *dv, CudaDtype gtype, void *scratch, Err *err);

/* One layer's paged latent cache. Page p holds tokens [P) of one sequence:
 * ckv + (p*P + i)*dc and kpe + (p*P + i)*dr are token i of page p. Sequence s's
 * token t lives in page pages[s*max_pages + t/P], row t%P. Layers share the
 * page table (the same page ids index every layer's pool). */
typedef struct CudaLatentCache {
    cuda_bf16 *ckv;   /* [npages, P, dc] RMS-normed latent (norm weight included) */
    cuda_bf16 *kpe;   /* [npages, P, dr] rotated rope key */
    const int *pages; /* [nseq, max_pages] page ids (device) */
    int npages, P, max_pages, dc, dr;
} CudaLatentCache;

/* Writes n new tokens: token i goes to sequence seq[i] at position pos[i]
 * (seq, pos device [n]); its c_kv is ckv[i*ckv_ld .. +dc) and its k_pe
 * kpe[i*kpe_ld .. +dr) (bf16, e.g. the normed latent and the rotated part of
 * kv_a_proj's output). Tokens whose position is past the page table or whose
 * page id is outside [0, npages) are not written (a kernel cannot report:
 * the caller keeps the table big enough). */
int cuda_latent_append(cudaStream_t s, const CudaLatentCache *c, int n, const int *seq, const int *pos,
                       const cuda_bf16 *ckv, long ckv_ld, const cuda_bf16 *kpe, long kpe_ld, Err *err);

/* Device scratch of cuda_latent_attend: the split partials [nq, nsplit, nh]
 * of (context, max, sum) in fp32; enough for every call with at most nq
 * queries and a max_len of at most max_len (fewer queries are split more);
 * 0 for shapes cuda_latent_attend refuses. */
size_t cuda_latent_attend_scratch_bytes(int nq, int nh, int dc, int dr, int max_len);

/* Absorbed-MLA decoding for nq queries in one launch. Query i belongs to
 * sequence seq[i] (device [nq]; NULL: sequence i) and attends over that
 * sequence's tokens [0, len[i]) (device [nq]; a sequence extended by several
 * tokens in one call has one query per new token, each with its own length,
 * as model/decode.c's pos[i] + 1). For each head h:
 *   s[t] = scale * (qa_h . ckv[t] + qb_h . kpe[t]),  p = softmax_t(s),
 *   ctx[i, h] = sum_t p[t] ckv[t]        (ctx fp32 [nq, nh, dc])
 * with qa_h = qa[i*qa_ld + h*qa_hs .. +dc) (the absorbed q_nope . W_UK) and
 * qb_h = qb[i*qb_ld + h*qb_hs .. +dr) (the rotated q_pe), both bf16.
 * max_len (host) bounds len[i] (lengths above it are cut to it) and sets the
 * split; it must be <= max_pages*P. len[i] == 0 gives ctx = 0 (as
 * latent_attend with T = 0). scratch: cuda_latent_attend_scratch_bytes. Page
 * ids must be valid; a token whose page id is outside [0, npages) reads as
 * zeros. Deterministic for given inputs and max_len. */
int cuda_latent_attend(cudaStream_t s, const CudaLatentCache *c, int nq, const int *seq, const int *len, int max_len,
                       int nh, float scale, const cuda_bf16 *qa, long qa_ld, long qa_hs, const cuda_bf16 *qb,
                       long qb_ld, long qb_hs, float *ctx, void *scratch, Err *err);

#ifdef __cplusplus
}
#endif
#endif
