/* model_attn_packed: the MLA attention core over a packed batch (model.h
 * PackedBatch, docs/model.md "Packed batches"): per segment and head, the
 * scores against all of its prefix's keys and, causally, its own keys, one
 * softmax over both, and the output from the matching values. The projections
 * around the core (q, kv_a/kv_b, RoPE, o_proj) are the padded path's
 * (model_attn.c): they are per token and do not care about the layout.
 *
 * Backward runs per (root segment, head): the root and every segment naming
 * it as prefix are done in one thread, in index order, so the prefix's key and
 * value gradients are summed without atomics in a fixed order (the result does
 * not depend on the thread count). Not here: the absorbed decode form
 * (decode.c). */
#include <string.h>

#include "kernels/cpu/gemm.h"
#include "model/model_internal.h"

enum { PBLK = 64 }; /* row block: self columns past the block's last row are skipped */

static int seg_plen(const PackedBatch *pk, int s) {
    int p = pk->seg[s].prefix;
    return p >= 0 ? pk->seg[p].len : 0;
}

long attn_packed_pfloats(const ModelConfig *c, const PackedBatch *pk) {
    long np = 0;
    for (int s = 0; s < pk->nseg; s++) {
        long n = pk->seg[s].len;
        np += (long)c->num_attention_heads * n * (seg_plen(pk, s) + n);
    }
    return np;
}

/* One segment's rows for one head: its own Q/K/V/O and its prefix's K/V
 * (row strides sq, sq, skv, so), probabilities P [n, W] with W = Lp + n. */
typedef struct SegHead {
    int n, Lp, W;
    long sq, skv, so;
    long row, prow;   /* first token of the segment / of its prefix */
    long qk, vv, oo;  /* head offsets into a row of q|k, kvb, att */
    long poff;        /* offset of P [n, W] in AttnActs.p */
} SegHead;

static SegHead seg_head(const ModelConfig *c, const Layout *lo, int s, int h) {
    const PackedBatch *pk = lo->pk;
    const int nh = c->num_attention_heads, dn = c->qk_nope_head_dim, dv = c->v_head_dim;
    const int dqk = dn + c->qk_rope_head_dim;
    SegHead g;
    g.n = pk->seg[s].len, g.Lp = seg_plen(pk, s), g.W = g.Lp + g.n;
    g.sq = (long)nh * dqk, g.skv = (long)nh * (dn + dv), g.so = (long)nh * dv;
    g.row = pk->seg[s].start, g.prow = pk->seg[s].prefix >= 0 ? pk->seg[pk->seg[s].prefix].start : 0;
    g.qk = (long)h * dqk, g.vv = (long)h * (dn + dv) + dn, g.oo = (long)h * dv;
    g.poff = lo->poff[s] + (long)h * g.n * g.W;
    return g;
}

void attn_core_fwd_packed(const ModelConfig *c, AttnActs *a, const Layout *lo) {
    const int nh = c->num_attention_heads, dv = c->v_head_dim, dqk = c->qk_nope_head_dim + c->qk_rope_head_dim;
    const float scale = c->softmax_scale;
#pragma omp parallel for schedule(dynamic, 1)
    for (int sh = 0; sh < lo->pk->nseg * nh; sh++) {
        SegHead g = seg_head(c, lo, sh / nh, sh % nh);
        const float *Q = a->q + g.row * g.sq + g.qk, *K = a->k + g.row * g.sq + g.qk;
        const float *V = a->kvb + g.row * g.skv + g.vv;
        const float *Kp = a->k + g.prow * g.sq + g.qk, *Vp = a->kvb + g.prow * g.skv + g.vv;
        float *P = a->p + g.poff, *O = a->att + g.row * g.so + g.oo;
        for (int r0 = 0; r0 < g.n; r0 += PBLK) {
            int rn = g.n - r0 < PBLK ? g.n - r0 : PBLK, cols = r0 + rn;
            float *Pb = P + (long)r0 * g.W, *Ob = O + r0 * g.so;
            const float *Qb = Q + r0 * g.sq;
            /* scores: [prefix | own causal], row r0+i sees Lp + r0+i+1 columns */
            if (g.Lp) gemm(0, 1, rn, g.Lp, dqk, scale, Qb, g.sq, Kp, g.sq, 0.0f, Pb, g.W);
            gemm(0, 1, rn, cols, dqk, scale, Qb, g.sq, K, g.sq, 0.0f, Pb + g.Lp, g.W);
            attn_softmax_causal(Pb, rn, g.Lp + r0, g.W);
            if (g.Lp) gemm(0, 0, rn, dv, g.Lp, 1.0f, Pb, g.W, Vp, g.skv, 0.0f, Ob, g.so);
            gemm(0, 0, rn, dv, cols, 1.0f, Pb + g.Lp, g.W, V, g.skv, g.Lp ? 1.0f : 0.0f, Ob, g.so);
        }
    }
}

/* Zeroes segment s's dK and dV rows of one head. */
static void seg_zero(const ModelConfig *c, const Layout *lo, int s, int h, float *dK, float *dkvb) {
    SegHead g = seg_head(c, lo, s, h);
    const int dv = c->v_head_dim, dqk = c->qk_nope_head_dim + c->qk_rope_head_dim;
    for (int t = 0; t < g.n; t++) {
        memset(dK + (g.row + t) * g.sq + g.qk, 0, dqk * sizeof(float));
        memset(dkvb + (g.row + t) * g.skv + g.vv, 0, dv * sizeof(float));
    }
}

/* Backward of segment s, head h: writes its dQ rows, adds to its own and its
 * prefix's dK / dV rows. dP, dS [n, W] live beside P in dPall (2 floats per P). */
static void seg_bwd(const ModelConfig *c, const AttnActs *a, const Layout *lo, int s, int h, const float *datt,
                    float *dQ, float *dK, float *dkvb, float *dPall) {
    SegHead g = seg_head(c, lo, s, h);
    const int dv = c->v_head_dim, dqk = c->qk_nope_head_dim + c->qk_rope_head_dim, Lp = g.Lp, W = g.W;
    const long sq = g.sq, skv = g.skv, so = g.so;
    const float *P = a->p + g.poff, *dO = datt + g.row * so + g.oo;
    const float *Q = a->q + g.row * sq + g.qk, *K = a->k + g.row * sq + g.qk, *V = a->kvb + g.row * skv + g.vv;
    const float *Kp = a->k + g.prow * sq + g.qk, *Vp = a->kvb + g.prow * skv + g.vv;
    float *dP = dPall + 2 * g.poff, *dS = dP + (long)g.n * W;
    float *dQs = dQ + g.row * sq + g.qk, *dKs = dK + g.row * sq + g.qk, *dVs = dkvb + g.row * skv + g.vv;
    float *dKp = dK + g.prow * sq + g.qk, *dVp = dkvb + g.prow * skv + g.vv;
    for (int r0 = 0; r0 < g.n; r0 += PBLK) {
        int rn = g.n - r0 < PBLK ? g.n - r0 : PBLK, cols = r0 + rn;
        const float *Pb = P + (long)r0 * W, *dOb = dO + r0 * so, *Qb = Q + r0 * sq;
        float *dPb = dP + (long)r0 * W, *dSb = dS + (long)r0 * W, *dQb = dQs + r0 * sq;
        /* dP = dO V^T ; dV += P^T dO, prefix columns then own */
        if (Lp) {
            gemm(0, 1, rn, Lp, dv, 1.0f, dOb, so, Vp, skv, 0.0f, dPb, W);
            gemm(1, 0, Lp, dv, rn, 1.0f, Pb, W, dOb, so, 1.0f, dVp, skv);
        }
        gemm(0, 1, rn, cols, dv, 1.0f, dOb, so, V, skv, 0.0f, dPb + Lp, W);
        gemm(1, 0, cols, dv, rn, 1.0f, Pb + Lp, W, dOb, so, 1.0f, dVs, skv);
        /* dS = P * (dP - rowsum(P*dP)) * scale over the row's Lp + t + 1 columns */
        for (int i = 0; i < rn; i++) {
            int t = Lp + r0 + i;
            const float *pr = Pb + (long)i * W;
            float *dpr = dPb + (long)i * W, *dsr = dSb + (long)i * W;
            double dot = 0;
            for (int j = 0; j <= t; j++) dot += (double)pr[j] * dpr[j];
            for (int j = 0; j < Lp + cols; j++)
                dsr[j] = j <= t ? pr[j] * (dpr[j] - (float)dot) * c->softmax_scale : 0.0f;
        }
        /* dQ = dS K ; dK += dS^T Q, prefix columns then own */
        if (Lp) {
            gemm(0, 0, rn, dqk, Lp, 1.0f, dSb, W, Kp, sq, 0.0f, dQb, sq);
            gemm(1, 0, Lp, dqk, rn, 1.0f, dSb, W, Qb, sq, 1.0f, dKp, sq);
        }
        gemm(0, 0, rn, dqk, cols, 1.0f, dSb + Lp, W, K, sq, Lp ? 1.0f : 0.0f, dQb, sq);
        gemm(1, 0, cols, dqk, rn, 1.0f, dSb + Lp, W, Qb, sq, 1.0f, dKs, sq);
    }
}

void attn_core_bwd_packed(const ModelConfig *c, AttnActs *a, const Layout *lo, const float *datt, float *dQ, float *dK,
                          float *dkvb, float *dPall) {
    const PackedBatch *pk = lo->pk;
    const int nh = c->num_attention_heads, ns = pk->nseg;
#pragma omp parallel for schedule(dynamic, 1)
    for (int rh = 0; rh < ns * nh; rh++) {
        int r = rh / nh, h = rh % nh;
        if (pk->seg[r].prefix >= 0) continue; /* done with its root */
        seg_zero(c, lo, r, h, dK, dkvb);
        for (int s = r + 1; s < ns; s++)
            if (pk->seg[s].prefix == r) seg_zero(c, lo, s, h, dK, dkvb);
        seg_bwd(c, a, lo, r, h, datt, dQ, dK, dkvb, dPall);
        for (int s = r + 1; s < ns; s++)
            if (pk->seg[s].prefix == r) seg_bwd(c, a, lo, s, h, datt, dQ, dK, dkvb, dPall);
    }
}
