/* test_cuda_attn: MLA attention on the GPU (kernels/cuda/attn.h) against the
 * CPU on bf16-rounded random inputs.
 *
 *  - cuda_attn_fwd / cuda_attn_bwd against attn_core_fwd_padded /
 *    attn_core_bwd_padded (model/model_attn.c). Those are static and need a
 *    whole Model and AttnActs, so ref_attn below carries their formulas as
 *    plain loops over the same layout (q, k [N, nh*dqk]; v inside kvb
 *    [N, nh*(dn+dv)] at offset dn; att [N, nh*dv]), with double sums: causal
 *    softmax over all T positions of a row, O = P V; dP = dO V^T,
 *    dV = P^T dO, dS = P (dP - rowsum(P dP)) scale, dQ = dS K, dK = dS^T Q.
 *    Shapes: T = 1, B > 1, T not a multiple of the tiles, tiny-config head
 *    dims, V3's (192/128), the widest (256/256, smaller tiles), dims that are
 *    multiples of 8 but not 16; gradients in fp32 and bf16; dV written into a
 *    dkvb-shaped buffer whose k_nope columns must stay untouched.
 *  - cuda_attn_fwd_packed / cuda_attn_bwd_packed (prefix-sharing segments,
 *    attn_core_fwd_packed's semantics) against ref_attn run on each segment's
 *    [prefix, own] row: roots with several, one or no segments after them,
 *    one-token segments, segments longer than a tile, roots placed after
 *    other segments; a prefix that is not an earlier root is refused.
 *  - cuda_latent_append + cuda_latent_attend against latent_attend
 *    (kernels/cpu/latent_attn.c) over sequences of different lengths whose
 *    pages are scattered in random order, several queries per sequence with
 *    their own lengths (a multi-token extend), a query with no tokens, and
 *    one long sequence alone (split over many blocks).
 *
 * Bounds (nmse, see cuda_test.h): the forward rounds P to bf16 for P.V and
 * O to bf16 (two roundings, ~1e-5): 1e-4. lse is fp32 throughout: 1e-9. The
 * gradients round P and dS to bf16 for the products, take D from the bf16
 * O, and dS = P (dP - D) cancels where dP ~ D: ~1e-5 expected, 1e-3 allowed
 * (a wrong mask, index or barrier gives order 1). Decoding rounds only P to
 * bf16 (ctx is fp32): 3e-5. The cache rows written by append must be exact.
 * Skipped without a GPU. */
#include <string.h>

#include "cuda_test.h"
#include "kernels/cpu/latent_attn.h"
#include "kernels/cuda/attn.h"

static uint64_t rng = 0x6174746e;
static Err err;

#define NMSE_ATTN_FWD 1e-4
#define NMSE_ATTN_GRAD 1e-3
#define NMSE_ATTN_LSE 1e-9

/* Forward and backward of the padded core for all (b, h), the formulas of
 * attn_core_fwd_padded / attn_core_bwd_padded. Outputs in the same layouts:
 * o [N, nh*dv], lse [N, nh], dq, dk [N, nh*dqk], dv at dkvb + dn. */
static void ref_attn(const CudaAttnLayout *L, int dn, float scale, const float *q, const float *k, const float *kvb,
                     const float *dout, float *o, float *lse, float *dq, float *dk, float *dkvb) {
    const int B = L->B, T = L->T, nh = L->nh, dqk = L->dqk, dv = L->dv;
    float *P = malloc(sizeof(float) * T * T), *dP = malloc(sizeof(float) * T * T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++) {
            const long n0 = (long)b * T;
#define Q(t) (q + (n0 + (t)) * L->q_ld + h * L->q_hs)
#define K(t) (k + (n0 + (t)) * L->k_ld + h * L->k_hs)
#define V(t) (kvb + dn + (n0 + (t)) * L->v_ld + h * L->v_hs)
#define DO(t) (dout + (n0 + (t)) * L->o_ld + h * L->o_hs)
            for (int t = 0; t < T; t++) { /* P = softmax_causal(Q K^T scale), O = P V */
                float *pr = P + (long)t * T, mx = -INFINITY;
                for (int j = 0; j <= t; j++) {
                    double s = 0;
                    for (int d = 0; d < dqk; d++) s += (double)Q(t)[d] * K(j)[d];
                    pr[j] = (float)s * scale;
                    mx = fmaxf(mx, pr[j]);
                }
                double sum = 0;
                for (int j = 0; j <= t; j++) sum += exp((double)pr[j] - mx);
                for (int j = 0; j <= t; j++) pr[j] = (float)(exp((double)pr[j] - mx) / sum);
                lse[(n0 + t) * nh + h] = mx + (float)log(sum);
                for (int d = 0; d < dv; d++) {
                    double acc = 0;
                    for (int j = 0; j <= t; j++) acc += (double)pr[j] * V(j)[d];
                    o[(n0 + t) * L->o_ld + h * L->o_hs + d] = (float)acc;
                }
            }
            for (int t = 0; t < T; t++) { /* dP = dO V^T; dS = P (dP - rowsum(P dP)) scale, kept in dP */
                float *pr = P + (long)t * T, *dpr = dP + (long)t * T;
                double dot = 0;
                for (int j = 0; j <= t; j++) {
                    double s = 0;
                    for (int d = 0; d < dv; d++) s += (double)DO(t)[d] * V(j)[d];
                    dpr[j] = (float)s;
                    dot += (double)pr[j] * dpr[j];
                }
                for (int j = 0; j <= t; j++) dpr[j] = pr[j] * (dpr[j] - (float)dot) * scale;
            }
            for (int t = 0; t < T; t++) { /* dQ = dS K */
                float *r = dq + (n0 + t) * L->q_ld + h * L->q_hs;
                for (int d = 0; d < dqk; d++) {
                    double acc = 0;
                    for (int j = 0; j <= t; j++) acc += (double)dP[(long)t * T + j] * K(j)[d];
                    r[d] = (float)acc;
                }
            }
            for (int j = 0; j < T; j++) { /* dK = dS^T Q, dV = P^T dO */
                float *rk = dk + (n0 + j) * L->k_ld + h * L->k_hs, *rv = dkvb + dn + (n0 + j) * L->v_ld + h * L->v_hs;
                for (int d = 0; d < dqk; d++) {
                    double acc = 0;
                    for (int t = j; t < T; t++) acc += (double)dP[(long)t * T + j] * Q(t)[d];
                    rk[d] = (float)acc;
                }
                for (int d = 0; d < dv; d++) {
                    double acc = 0;
                    for (int t = j; t < T; t++) acc += (double)P[(long)t * T + j] * DO(t)[d];
                    rv[d] = (float)acc;
                }
            }
#undef Q
#undef K
#undef V
#undef DO
        }
    free(P), free(dP);
}

/* n fp32 or bf16 values of a device buffer as floats (caller frees). */
static float *download_as_f32(const void *d, long n, CudaDtype t) {
    float *f = malloc(sizeof(float) * (n ? n : 1));
    if (t == CUDA_F32) {
        dev_download(f, d, sizeof(float) * n);
    } else {
        cuda_bf16 *h = malloc(sizeof(cuda_bf16) * (n ? n : 1));
        dev_download(h, d, sizeof(cuda_bf16) * n);
        bf16_to_f32_array(f, h, n);
        free(h);
    }
    return f;
}

/* nmse, or where the reference is all zero (T = 1: dS = 0 exactly on the CPU,
 * rounding-level on the GPU) a max-abs bound instead. */
static double nmse_or_abs(const float *out, const float *ref, long n) {
    double den = 0, mx = 0;
    for (long i = 0; i < n; i++) den += (double)ref[i] * ref[i];
    if (den > 0) return nmse(out, ref, n);
    for (long i = 0; i < n; i++) {
        if (!isfinite(out[i])) return INFINITY;
        mx = fabs(out[i]) > mx ? fabs(out[i]) : mx;
    }
    return mx < 1e-4 ? 0.0 : INFINITY;
}

/* Values of the columns [off, off+w) of each head (stride hs) of n rows [ld], gathered contiguously. */
static void gather_cols(float *dst, const float *src, long n, int nh, long ld, long hs, int off, int w) {
    for (long r = 0; r < n; r++)
        for (int h = 0; h < nh; h++)
            for (int j = 0; j < w; j++) *dst++ = src[r * ld + h * hs + off + j];
}

static void check_attn(int B, int T, int nh, int dn, int dr, int dv, float in_scale, CudaDtype gtype) {
    CudaAttnLayout L = cuda_attn_layout_mla(B, T, nh, dn, dr, dv);
    const int dqk = dn + dr;
    const long N = (long)B * T, nq = N * L.q_ld, nkv = N * L.v_ld, no = N * L.o_ld;
    const float scale = 1.0f / sqrtf((float)dqk);
    const size_t gs = gtype == CUDA_F32 ? 4 : 2;
    cuda_bf16 *qb = malloc(2 * nq), *kb = malloc(2 * nq), *kvbb = malloc(2 * nkv), *dob = malloc(2 * no);
    float *q = malloc(4 * nq), *k = malloc(4 * nq), *kvb = malloc(4 * nkv), *dout = malloc(4 * no);
    float *o = malloc(4 * no), *lse = malloc(4 * N * nh), *dq = malloc(4 * nq), *dk = malloc(4 * nq);
    float *dkvb = calloc(nkv, 4);
    rand_bf16(&rng, qb, q, nq, in_scale);
    rand_bf16(&rng, kb, k, nq, in_scale);
    rand_bf16(&rng, kvbb, kvb, nkv, 1.0f);
    rand_bf16(&rng, dob, dout, no, 1.0f);
    ref_attn(&L, dn, scale, q, k, kvb, dout, o, lse, dq, dk, dkvb);
    cuda_bf16 *d_q = dev_upload(qb, 2 * nq), *d_k = dev_upload(kb, 2 * nq), *d_kvb = dev_upload(kvbb, 2 * nkv);
    cuda_bf16 *d_do = dev_upload(dob, 2 * no), *d_o = dev_alloc(2 * no);
    float *d_lse = dev_alloc(4 * N * nh);
    char *d_dq = dev_alloc(gs * nq), *d_dk = dev_alloc(gs * nq), *d_dkvb = dev_alloc(gs * nkv);
    void *scratch = dev_alloc(cuda_attn_bwd_scratch_bytes(&L));
    OK(cuda_attn_fwd(0, &L, scale, d_q, d_k, d_kvb + dn, d_o, d_lse, &err));
    dev_sync("attn fwd");
    double eo = nmse_dev_bf16(d_o, o, no), el = nmse_dev_f32(d_lse, lse, N * nh);
    CHECK(eo < NMSE_ATTN_FWD, "attn fwd B=%d T=%d nh=%d dqk=%d dv=%d: O nmse %.3g", B, T, nh, dqk, dv, eo);
    CHECK(el < NMSE_ATTN_LSE, "attn fwd B=%d T=%d nh=%d dqk=%d dv=%d: lse nmse %.3g", B, T, nh, dqk, dv, el);
    OK(cuda_attn_bwd(0, &L, scale, d_q, d_k, d_kvb + dn, d_o, d_lse, d_do, d_dq, d_dk, d_dkvb + gs * dn, gtype,
                     scratch, &err));
    dev_sync("attn bwd");
    float *gq = download_as_f32(d_dq, nq, gtype), *gk = download_as_f32(d_dk, nq, gtype);
    float *gkv = download_as_f32(d_dkvb, nkv, gtype);
    double eq = nmse_or_abs(gq, dq, nq), ek = nmse_or_abs(gk, dk, nq);
    float *a = malloc(4 * N * nh * dv), *r = malloc(4 * N * nh * dv);
    gather_cols(a, gkv, N, nh, L.v_ld, L.v_hs, dn, dv);
    gather_cols(r, dkvb, N, nh, L.v_ld, L.v_hs, dn, dv);
    double ev = nmse_or_abs(a, r, N * nh * dv);
    const char *gt = gtype == CUDA_F32 ? "f32" : "bf16";
    CHECK(eq < NMSE_ATTN_GRAD, "attn bwd B=%d T=%d nh=%d dqk=%d dv=%d (%s): dQ nmse %.3g", B, T, nh, dqk, dv, gt, eq);
    CHECK(ek < NMSE_ATTN_GRAD, "attn bwd B=%d T=%d nh=%d dqk=%d dv=%d (%s): dK nmse %.3g", B, T, nh, dqk, dv, gt, ek);
    CHECK(ev < NMSE_ATTN_GRAD, "attn bwd B=%d T=%d nh=%d dqk=%d dv=%d (%s): dV nmse %.3g", B, T, nh, dqk, dv, gt, ev);
    /* the k_nope columns of dkvb are not dV's: still the 0xff poison */
    unsigned char *raw = malloc(gs * nkv);
    dev_download(raw, d_dkvb, gs * nkv);
    long touched = 0;
    for (long row = 0; row < N; row++)
        for (int h = 0; h < nh; h++)
            for (long byte = 0; byte < (long)gs * dn; byte++)
                touched += raw[(row * L.v_ld + h * L.v_hs) * gs + byte] != 0xff;
    CHECK(touched == 0, "attn bwd B=%d T=%d: %ld bytes outside dV written", B, T, touched);
    printf("attn B=%d T=%d nh=%d dqk=%d dv=%d in*%g grads %s: nmse O %.2e lse %.2e dQ %.2e dK %.2e dV %.2e\n", B, T,
           nh, dqk, dv, in_scale, gt, eo, el, eq, ek, ev);
    cudaFree(d_q), cudaFree(d_k), cudaFree(d_kvb), cudaFree(d_do), cudaFree(d_o), cudaFree(d_lse), cudaFree(d_dq);
    cudaFree(d_dk), cudaFree(d_dkvb), cudaFree(scratch);
    free(qb), free(kb), free(kvbb), free(dob), free(q), free(k), free(kvb), free(dout), free(o), free(lse), free(dq);
    free(dk), free(dkvb), free(gq), free(gk), free(gkv), free(a), free(r), free(raw);
}

/* Rows rows[0..n) of a [*, ld] array gathered into dst [n, ld] (scatter: the reverse, added). */
static void rows_gather(float *dst, const float *src, const long *rows, int n, long ld) {
    for (int i = 0; i < n; i++) memcpy(dst + i * ld, src + rows[i] * ld, sizeof(float) * ld);
}
static void rows_add(float *dst, const float *src, const long *rows, int from, int n, long ld) {
    for (int i = from; i < n; i++)
        for (long j = 0; j < ld; j++) dst[rows[i] * ld + j] += src[i * ld + j];
}

/* The packed reference from ref_attn: each segment's row is [its prefix's tokens,
 * its own] (a causal row sees the prefix whole and itself causally); its outputs
 * and dQ are the own part's, and its dK/dV go to every row of the row (the prefix
 * part gets only the segment's queries' share: the prefix's dO is zeroed there). */
static void ref_packed(const CudaAttnLayout *P, int dn, float scale, const CudaAttnSeg *seg, int nseg, const float *q,
                       const float *k, const float *kvb, const float *dout, float *o, float *lse, float *dq, float *dk,
                       float *dkvb) {
    const int nh = P->nh;
    for (int s = 0; s < nseg; s++) {
        const int pl = seg[s].prefix >= 0 ? seg[seg[s].prefix].len : 0, n = pl + seg[s].len;
        long *rows = malloc(sizeof(long) * (n ? n : 1));
        for (int i = 0; i < pl; i++) rows[i] = seg[seg[s].prefix].start + i;
        for (int i = 0; i < seg[s].len; i++) rows[pl + i] = seg[s].start + i;
        CudaAttnLayout L = *P;
        L.B = 1, L.T = n;
        float *tq = malloc(4 * n * P->q_ld), *tk = malloc(4 * n * P->k_ld), *tkv = calloc(n * P->v_ld, 4);
        float *tdo = malloc(4 * n * P->o_ld), *to = malloc(4 * n * P->o_ld), *tl = malloc(4 * n * nh);
        float *tdq = calloc(n * P->q_ld, 4), *tdk = calloc(n * P->k_ld, 4), *tdkv = calloc(n * P->v_ld, 4);
        rows_gather(tq, q, rows, n, P->q_ld), rows_gather(tk, k, rows, n, P->k_ld);
        rows_gather(tkv, kvb, rows, n, P->v_ld), rows_gather(tdo, dout, rows, n, P->o_ld);
        memset(tdo, 0, 4 * pl * P->o_ld); /* the prefix's own queries are its root row's */
        ref_attn(&L, dn, scale, tq, tk, tkv, tdo, to, tl, tdq, tdk, tdkv);
        for (int i = pl; i < n; i++) {
            memcpy(o + rows[i] * P->o_ld, to + i * P->o_ld, 4 * P->o_ld);
            memcpy(lse + rows[i] * nh, tl + i * nh, 4 * nh);
            memcpy(dq + rows[i] * P->q_ld, tdq + i * P->q_ld, 4 * P->q_ld);
        }
        rows_add(dk, tdk, rows, 0, n, P->k_ld);
        for (int i = 0; i < n; i++) /* dV only (the k_nope columns of dkvb are not written) */
            for (int h = 0; h < nh; h++)
                for (int j = 0; j < P->dv; j++)
                    dkvb[rows[i] * P->v_ld + h * P->v_hs + dn + j] += tdkv[i * P->v_ld + h * P->v_hs + dn + j];
        free(rows), free(tq), free(tk), free(tkv), free(tdo), free(to), free(tl), free(tdq), free(tdk), free(tdkv);
    }
}

/* Packed batches: roots with and without segments naming them as prefix
 * (several, of one token, longer than a tile), segments in any order of the
 * token stream, against ref_packed. */
static void check_packed(int nh, int dn, int dr, int dv, CudaDtype gtype) {
    const CudaAttnSeg seg[] = {
        {0, 37, -1},    /* A: a root with three segments after it */
        {37, 20, 0},    /* B: prefix A */
        {57, 1, 0},     /* C: prefix A, one token */
        {58, 70, -1},   /* D: a root alone, longer than a tile */
        {128, 5, -1},   /* E: a short root with a long segment after it */
        {133, 67, 4},   /* F: prefix E */
        {200, 33, 0},   /* G: prefix A again, after other roots */
        {233, 1, -1},   /* H: a one-token root */
        {234, 16, 7},   /* I: prefix H */
    };
    const int nseg = sizeof seg / sizeof *seg, ntok = 250;
    CudaAttnLayout L = cuda_attn_layout_mla(1, ntok, nh, dn, dr, dv);
    const int dqk = dn + dr;
    const long nq = ntok * L.q_ld, nkv = ntok * L.v_ld, no = ntok * L.o_ld;
    const float scale = 1.0f / sqrtf((float)dqk);
    const size_t gs = gtype == CUDA_F32 ? 4 : 2;
    cuda_bf16 *qb = malloc(2 * nq), *kb = malloc(2 * nq), *kvbb = malloc(2 * nkv), *dob = malloc(2 * no);
    float *q = malloc(4 * nq), *k = malloc(4 * nq), *kvb = malloc(4 * nkv), *dout = malloc(4 * no);
    float *o = calloc(no, 4), *lse = calloc(ntok * nh, 4), *dq = calloc(nq, 4), *dk = calloc(nq, 4);
    float *dkvb = calloc(nkv, 4);
    rand_bf16(&rng, qb, q, nq, 1.0f);
    rand_bf16(&rng, kb, k, nq, 1.0f);
    rand_bf16(&rng, kvbb, kvb, nkv, 1.0f);
    rand_bf16(&rng, dob, dout, no, 1.0f);
    ref_packed(&L, dn, scale, seg, nseg, q, k, kvb, dout, o, lse, dq, dk, dkvb);
    cuda_bf16 *d_q = dev_upload(qb, 2 * nq), *d_k = dev_upload(kb, 2 * nq), *d_kvb = dev_upload(kvbb, 2 * nkv);
    cuda_bf16 *d_do = dev_upload(dob, 2 * no), *d_o = dev_alloc(2 * no);
    float *d_lse = dev_alloc(4 * ntok * nh);
    char *d_dq = dev_alloc(gs * nq), *d_dk = dev_alloc(gs * nq), *d_dkvb = dev_alloc(gs * nkv);
    void *scratch = dev_alloc(cuda_attn_packed_scratch_bytes(ntok, nseg, nh));
    OK(cuda_attn_fwd_packed(0, &L, seg, nseg, scale, d_q, d_k, d_kvb + dn, d_o, d_lse, scratch, &err));
    OK(cuda_attn_bwd_packed(0, &L, seg, nseg, scale, d_q, d_k, d_kvb + dn, d_o, d_lse, d_do, d_dq, d_dk,
                            d_dkvb + gs * dn, gtype, scratch, &err));
    dev_sync("attn packed");
    double eo = nmse_dev_bf16(d_o, o, no), el = nmse_dev_f32(d_lse, lse, ntok * nh);
    float *gq = download_as_f32(d_dq, nq, gtype), *gk = download_as_f32(d_dk, nq, gtype);
    float *gkv = download_as_f32(d_dkvb, nkv, gtype);
    float *a = malloc(4 * no), *r = malloc(4 * no);
    gather_cols(a, gkv, ntok, nh, L.v_ld, L.v_hs, dn, dv);
    gather_cols(r, dkvb, ntok, nh, L.v_ld, L.v_hs, dn, dv);
    double eq = nmse(gq, dq, nq), ek = nmse(gk, dk, nq), ev = nmse(a, r, (long)ntok * nh * dv);
    const char *gt = gtype == CUDA_F32 ? "f32" : "bf16";
    CHECK(eo < NMSE_ATTN_FWD, "packed nh=%d dqk=%d dv=%d: O nmse %.3g", nh, dqk, dv, eo);
    CHECK(el < NMSE_ATTN_LSE, "packed nh=%d dqk=%d dv=%d: lse nmse %.3g", nh, dqk, dv, el);
    CHECK(eq < NMSE_ATTN_GRAD, "packed nh=%d dqk=%d dv=%d (%s): dQ nmse %.3g", nh, dqk, dv, gt, eq);
    CHECK(ek < NMSE_ATTN_GRAD, "packed nh=%d dqk=%d dv=%d (%s): dK nmse %.3g", nh, dqk, dv, gt, ek);
    CHECK(ev < NMSE_ATTN_GRAD, "packed nh=%d dqk=%d dv=%d (%s): dV nmse %.3g", nh, dqk, dv, gt, ev);
    printf("attn packed %d segments, %d tokens, nh=%d dqk=%d dv=%d grads %s: nmse O %.2e lse %.2e dQ %.2e dK %.2e "
           "dV %.2e\n", nseg, ntok, nh, dqk, dv, gt, eo, el, eq, ek, ev);
    /* a prefix that is not an earlier root is refused */
    CudaAttnSeg bad[] = {{0, 4, -1}, {4, 4, 0}, {8, 4, 1}};
    Err e2 = {0};
    CHECK(cuda_attn_fwd_packed(0, &L, bad, 3, scale, d_q, d_k, d_kvb + dn, d_o, d_lse, scratch, &e2) == -1 &&
              e2.code == ERR_INPUT && strstr(e2.msg, "segment 2"),
          "a prefix naming a non-root is refused: %s", e2.msg);
    cudaFree(d_q), cudaFree(d_k), cudaFree(d_kvb), cudaFree(d_do), cudaFree(d_o), cudaFree(d_lse), cudaFree(d_dq);
    cudaFree(d_dk), cudaFree(d_dkvb), cudaFree(scratch);
    free(qb), free(kb), free(kvbb), free(dob), free(q), free(k), free(kvb), free(dout), free(o), free(lse), free(dq);
    free(dk), free(dkvb), free(gq), free(gk), free(gkv), free(a), free(r);
}

/* Paged decoding: nseq sequences of lengths slen[], pages of P tokens given
 * out in random order from a pool with spare pages; queries: each sequence
 * at its full length, plus `extra` more queries on the last sequence at
 * lengths len-1, len-2, ... (a multi-token extend), plus one of length 0 when
 * with_empty. The cache is filled by cuda_latent_append in two calls, tokens
 * shuffled. */
static void check_latent(int nh, int dc, int dr, int P, int nseq, const int *slen, int extra, int with_empty,
                         float scale) {
    const int dn = 16, dqk = dn + dr; /* the query's rope part sits at offset dn of q [nq, nh*dqk] */
    int maxl = 0, ntok = 0;
    for (int s = 0; s < nseq; s++) maxl = slen[s] > maxl ? slen[s] : maxl, ntok += slen[s];
    const int max_pages = (maxl + P - 1) / P + 1, npages = nseq * max_pages + 3;
    /* page table: every sequence's pages from a shuffled pool */
    int *perm = malloc(sizeof(int) * npages), *table = malloc(sizeof(int) * nseq * max_pages);
    for (int i = 0; i < npages; i++) perm[i] = i;
    for (int i = npages - 1; i > 0; i--) {
        int j = (int)(rng_next(&rng) % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    for (int i = 0; i < nseq * max_pages; i++) table[i] = perm[i];
    /* tokens: kva rows [c_kv | k_pe] (ld dc+dr), in shuffled order */
    const int ld = dc + dr;
    cuda_bf16 *kvab = malloc(2L * ntok * ld);
    float *kva = malloc(4L * ntok * ld);
    int *tseq = malloc(sizeof(int) * ntok), *tpos = malloc(sizeof(int) * ntok), *first = malloc(sizeof(int) * nseq);
    rand_bf16(&rng, kvab, kva, (long)ntok * ld, 1.0f);
    for (int s = 0, n = 0; s < nseq; s++) {
        first[s] = n;
        for (int t = 0; t < slen[s]; t++, n++) tseq[n] = s, tpos[n] = t;
    }
    int *order = malloc(sizeof(int) * ntok), *oseq = malloc(sizeof(int) * ntok), *opos = malloc(sizeof(int) * ntok);
    for (int i = 0; i < ntok; i++) order[i] = i;
    for (int i = ntok - 1; i > 0; i--) {
        int j = (int)(rng_next(&rng) % (uint64_t)(i + 1)), t = order[i];
        order[i] = order[j], order[j] = t;
    }
    cuda_bf16 *srcb = malloc(2L * ntok * ld);
    for (int i = 0; i < ntok; i++) {
        memcpy(srcb + (long)i * ld, kvab + (long)order[i] * ld, 2L * ld);
        oseq[i] = tseq[order[i]], opos[i] = tpos[order[i]];
    }
    CudaLatentCache c = {dev_alloc(2L * npages * P * dc), dev_alloc(2L * npages * P * (dr ? dr : 1)),
                         dev_upload(table, sizeof(int) * nseq * max_pages), npages, P, max_pages, dc, dr};
    cuda_bf16 *d_src = dev_upload(srcb, 2L * ntok * ld);
    int *d_oseq = dev_upload(oseq, sizeof(int) * ntok), *d_opos = dev_upload(opos, sizeof(int) * ntok);
    int half = ntok / 2;
    OK(cuda_latent_append(0, &c, half, d_oseq, d_opos, d_src, ld, d_src + dc, ld, &err));
    OK(cuda_latent_append(0, &c, ntok - half, d_oseq + half, d_opos + half, d_src + (long)half * ld,
                          ld, d_src + (long)half * ld + dc, ld, &err));
    dev_sync("latent append");
    /* every token's row, bit for bit */
    cuda_bf16 *pool_c = malloc(2L * npages * P * dc), *pool_r = malloc(2L * npages * P * (dr ? dr : 1));
    dev_download(pool_c, c.ckv, 2L * npages * P * dc);
    dev_download(pool_r, c.kpe, 2L * npages * P * dr);
    long bad = 0;
    for (int n = 0; n < ntok; n++) {
        long row = (long)table[tseq[n] * max_pages + tpos[n] / P] * P + tpos[n] % P;
        bad += memcmp(pool_c + row * dc, kvab + (long)n * ld, 2L * dc) != 0;
        bad += dr && memcmp(pool_r + row * dr, kvab + (long)n * ld + dc, 2L * dr) != 0;
    }
    CHECK(bad == 0, "latent append: %ld of %d token rows wrong", bad, ntok);
    /* queries */
    const int nq = nseq + extra + (with_empty ? 1 : 0);
    int *qseq = malloc(sizeof(int) * nq), *qlen = malloc(sizeof(int) * nq);
    for (int s = 0; s < nseq; s++) qseq[s] = s, qlen[s] = slen[s];
    for (int e = 0; e < extra; e++) qseq[nseq + e] = nseq - 1, qlen[nseq + e] = slen[nseq - 1] - 1 - e;
    if (with_empty) qseq[nq - 1] = 0, qlen[nq - 1] = 0;
    const long nqa = (long)nq * nh * dc, nqb = (long)nq * nh * dqk;
    cuda_bf16 *qab = malloc(2 * nqa), *qbb = malloc(2 * nqb);
    float *qa = malloc(4 * nqa), *qbuf = malloc(4 * nqb), *ref = malloc(4 * nqa), *sc = malloc(4L * nh * (maxl + 1));
    rand_bf16(&rng, qab, qa, nqa, 1.0f);
    rand_bf16(&rng, qbb, qbuf, nqb, 1.0f);
    float *ka = malloc(4L * (maxl + 1) * dc), *kb = malloc(4L * (maxl + 1) * (dr ? dr : 1));
    for (int i = 0; i < nq; i++) {
        int s = qseq[i];
        for (int t = 0; t < qlen[i]; t++) {
            const float *row = kva + (long)(first[s] + t) * ld;
            memcpy(ka + (long)t * dc, row, 4L * dc);
            memcpy(kb + (long)t * dr, row + dc, 4L * dr);
        }
        latent_attend(ref + (long)i * nh * dc, sc, qa + (long)i * nh * dc, dc, qbuf + (long)i * nh * dqk + dn, dqk,
                      ka, kb, nh, qlen[i], dc, dr, scale);
    }
    int *d_qseq = dev_upload(qseq, sizeof(int) * nq), *d_qlen = dev_upload(qlen, sizeof(int) * nq);
    cuda_bf16 *d_qa = dev_upload(qab, 2 * nqa), *d_qb = dev_upload(qbb, 2 * nqb);
    float *d_ctx = dev_alloc(4 * nqa);
    for (int pass = 0; pass < 2; pass++) { /* max_len: the longest query, then the whole table */
        int max_len = pass ? max_pages * P : maxl;
        void *scratch = dev_alloc(cuda_latent_attend_scratch_bytes(nq, nh, dc, dr, max_len));
        CU(cudaMemset(d_ctx, 0xff, 4 * nqa));
        OK(cuda_latent_attend(0, &c, nq, d_qseq, d_qlen, max_len, nh, scale, d_qa, (long)nh * dc, dc, d_qb + dn,
                              (long)nh * dqk, dqk, d_ctx, scratch, &err));
        dev_sync("latent attend");
        double e = nmse_dev_f32(d_ctx, ref, nqa);
        CHECK(e < NMSE_BF16_ONE, "latent attend nh=%d dc=%d dr=%d P=%d nq=%d max_len=%d: ctx nmse %.3g", nh, dc, dr,
              P, nq, max_len, e);
        printf("latent nh=%d dc=%d dr=%d page=%d nseq=%d nq=%d max_len=%d: nmse ctx %.2e\n", nh, dc, dr, P, nseq, nq,
               max_len, e);
        cudaFree(scratch);
    }
    cudaFree(c.ckv), cudaFree(c.kpe), cudaFree((void *)c.pages), cudaFree(d_src), cudaFree(d_oseq), cudaFree(d_opos);
    cudaFree(d_qseq), cudaFree(d_qlen), cudaFree(d_qa), cudaFree(d_qb), cudaFree(d_ctx);
    free(perm), free(table), free(kvab), free(kva), free(tseq), free(tpos), free(first), free(order), free(oseq);
    free(opos), free(srcb), free(pool_c), free(pool_r), free(qseq), free(qlen), free(qab), free(qbb), free(qa);
    free(qbuf), free(ref), free(sc), free(ka), free(kb);
}

static void check_refusals(void) {
    Err e = {0};
    CudaAttnLayout L = cuda_attn_layout_mla(1, 4, 2, 8, 4, 16); /* dqk 12: not a multiple of 8 */
    CHECK(cuda_attn_fwd(0, &L, 1.0f, NULL, NULL, NULL, NULL, NULL, &e) == -1 && e.code == ERR_INPUT,
          "dqk = 12 must be refused");
    L = cuda_attn_layout_mla(1, 4, 2, 192, 64, 128); /* dqk 256 fits, dv 264 does not */
    L.dv = 264;
    e.code = 0;
    CHECK(cuda_attn_fwd(0, &L, 1.0f, NULL, NULL, NULL, NULL, NULL, &e) == -1 && e.code == ERR_INPUT,
          "dv = 264 must be refused");
    L = cuda_attn_layout_mla(1, 4, 2, 32, 16, 32);
    L.v_ld = 100; /* not a multiple of 8 */
    e.code = 0;
    CHECK(cuda_attn_bwd(0, &L, 1.0f, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, CUDA_F32, NULL, &e) == -1 &&
              e.code == ERR_INPUT,
          "a row stride of 100 must be refused");
    CudaLatentCache c = {NULL, NULL, NULL, 4, 16, 2, 32, 16};
    e.code = 0;
    CHECK(cuda_latent_attend(0, &c, 1, NULL, NULL, 33, 4, 1.0f, NULL, 128, 32, NULL, 64, 16, NULL, NULL, &e) == -1 &&
              e.code == ERR_INPUT,
          "max_len past the page table must be refused");
}

int main(void) {
    CUDA_TEST_REQUIRE_GPU();
    const int quick = test_quick();
    /* B, T, nh, dn, dr, dv, input scale, gradient type */
    check_attn(1, 1, 1, 32, 16, 32, 1.0f, CUDA_F32);
    check_attn(3, 1, 4, 32, 16, 48, 1.0f, CUDA_BF16);
    check_attn(2, 37, 2, 32, 16, 32, 1.0f, CUDA_F32);  /* tiny-1m dims */
    check_attn(2, 64, 3, 64, 32, 64, 1.0f, CUDA_BF16); /* small-10m dims, T = one tile */
    check_attn(2, 45, 2, 24, 16, 40, 1.0f, CUDA_F32);  /* multiples of 8, not of 16 */
    check_attn(1, 130, 2, 128, 64, 128, 1.0f, CUDA_F32); /* V3 dims */
    check_attn(1, 97, 2, 128, 64, 128, 3.0f, CUDA_BF16); /* peaked softmax */
    check_attn(2, 77, 2, 192, 64, 256, 1.0f, CUDA_F32);  /* widest: the backward's smaller tiles */
    if (!quick) {
        check_attn(1, 600, 4, 128, 64, 128, 1.0f, CUDA_F32);
        check_attn(4, 300, 8, 32, 16, 48, 1.0f, CUDA_BF16);
    }
    /* packed: nh, dn, dr, dv, gradient type */
    check_packed(2, 32, 16, 32, CUDA_F32);
    check_packed(2, 128, 64, 128, CUDA_BF16); /* V3 dims */
    /* nh, dc, dr, page, nseq, lengths, extra queries, empty query, scale */
    const int la[] = {1, 5, 16, 17, 100};
    check_latent(4, 32, 16, 16, 5, la, 3, 1, 0.2f);
    const int lb[] = {1, 300, 64, 65};
    check_latent(8, 128, 32, 64, 4, lb, 2, 0, 0.1f);
    const int lc[] = {45, 9};
    check_latent(3, 40, 8, 8, 2, lc, 1, 1, 0.15f); /* dc a multiple of 8, not 16 */
    const int ld[] = {1000};
    check_latent(quick ? 16 : 128, 512, 64, 64, 1, ld, 2, 0, 0.1352338f); /* V3, one long sequence */
    if (!quick) {
        const int le[] = {2048, 700, 1, 4000, 129, 64, 63, 1500};
        check_latent(16, 512, 64, 64, 8, le, 4, 1, 0.1352338f);
    }
    check_refusals();
    return test_report();
}
