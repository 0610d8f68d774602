/* model_attn: multi-head latent attention, naive form, for training and
 * prefill (deepseek-v3.md §4.3): q via q-LoRA or q_proj, the shared latent
 * c_kv (RMS-normed) expanded by kv_b_proj into per-head k_nope | v, one
 * rotary key k_pe shared by all heads, interleaved-pair RoPE on the rope dims,
 * causal softmax(q·k * scale), o_proj. Probabilities are kept for backward
 * (the CPU reference favours clarity over memory); decoding uses the absorbed
 * form in decode.c. A padded [B, T] batch runs the per-row core here; a
 * packed one (shared prompt prefixes, no padding) the core in
 * model_attn_packed.c; projections are shared by both. */
#include <math.h>
#include <string.h>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/ops.h"
#include "model/model_internal.h"

enum { ABLK = 64 }; /* attention row block: columns past the block's last row are skipped */

/* Causal softmax of rows r0..r0+rn-1 of a [T, T] matrix in place: row t keeps
 * columns 0..t and zeroes the rest. */
void attn_softmax_causal(float *s, int rn, int r0, int T) {
    for (int i = 0; i < rn; i++) {
        int t = r0 + i;
        float *r = s + (long)i * T, mx = -INFINITY;
        for (int j = 0; j <= t; j++) mx = r[j] > mx ? r[j] : mx;
        exp_shifted(r, t + 1, mx);
        double sum = 0;
        for (int j = 0; j <= t; j++) sum += r[j];
        float inv = (float)(1.0 / sum);
        for (int j = 0; j <= t; j++) r[j] *= inv;
        for (int j = t + 1; j < T; j++) r[j] = 0.0f;
    }
}

/* Padded core: per (row, head), P = softmax(Q K^T * scale), O = P V. */
static void attn_core_fwd_padded(const ModelConfig *c, AttnActs *a, int B, int T) {
    const int nh = c->num_attention_heads;
    const int dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dqk = dn + dr, dv = c->v_head_dim;
    /* in row blocks that skip the columns the causal mask removes */
#pragma omp parallel for schedule(dynamic, 1)
    for (int bh = 0; bh < B * nh; bh++) {
        int b = bh / nh, h = bh % nh;
        float *P = a->p + (long)bh * T * T;
        const float *Q = a->q + (long)b * T * nh * dqk + h * dqk;
        const float *K = a->k + (long)b * T * nh * dqk + h * dqk;
        const float *V = a->kvb + (long)b * T * nh * (dn + dv) + h * (dn + dv) + dn;
        float *O = a->att + (long)b * T * nh * dv + h * dv;
        for (int r0 = 0; r0 < T; r0 += ABLK) {
            int rn = T - r0 < ABLK ? T - r0 : ABLK, cols = r0 + rn;
            gemm(0, 1, rn, cols, dqk, c->softmax_scale, Q + (long)r0 * nh * dqk, nh * dqk, K, nh * dqk, 0.0f,
                 P + (long)r0 * T, T);
            attn_softmax_causal(P + (long)r0 * T, rn, r0, T);
            gemm(0, 0, rn, dv, cols, 1.0f, P + (long)r0 * T, T, V, nh * (dn + dv), 0.0f, O + (long)r0 * nh * dv,
                 nh * dv);
        }
    }
}

void attn_fwd(Model *m, const LayerW *w, AttnActs *a, const float *xn, float *out, const Layout *lo, const float *cs,
              const float *sn) {
    const ModelConfig *c = &m->cfg;
    const int N = lo->N, H = c->hidden_size, nh = c->num_attention_heads;
    const int dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dqk = dn + dr, dv = c->v_head_dim;
    const int dc = c->kv_lora_rank, dq = c->q_lora_rank;
    /* queries */
    if (dq) {
        linear_fwd(a->qa, xn, w->q_a, N, dq, H, 0);
        rmsnorm_fwd(a->qan, a->qa_rstd, a->qa, w->q_a_norm, N, dq, dq, dq, c->latent_norm_eps);
        linear_fwd(a->q, a->qan, w->q_b, N, nh * dqk, dq, 0);
    } else {
        linear_fwd(a->q, xn, w->q, N, nh * dqk, H, 0);
    }
    rope_apply(a->q + dn, cs, sn, N, nh, dqk, nh * dqk, dr, 0);
    /* keys and values from the latent */
    linear_fwd(a->kva, xn, w->kv_a, N, dc + dr, H, 0);
    rmsnorm_fwd(a->ckv, a->kv_rstd, a->kva, w->kv_a_norm, N, dc, dc + dr, dc, c->latent_norm_eps);
    rope_apply(a->kva + dc, cs, sn, N, 1, 0, dc + dr, dr, 0);
    linear_fwd(a->kvb, a->ckv, w->kv_b, N, nh * (dn + dv), dc, 0);
    for (int n = 0; n < N; n++)
        for (int h = 0; h < nh; h++) {
            float *k = a->k + (long)n * nh * dqk + h * dqk;
            memcpy(k, a->kvb + (long)n * nh * (dn + dv) + h * (dn + dv), dn * sizeof(float));
            memcpy(k + dn, a->kva + (long)n * (dc + dr) + dc, dr * sizeof(float));
        }
    if (lo->pk) attn_core_fwd_packed(c, a, lo);
    else attn_core_fwd_padded(c, a, lo->B, lo->T);
    linear_fwd(out, a->att, w->o, N, H, nh * dv, 0);
}

size_t attn_bwd_scratch(const ModelConfig *c, long N, long np) {
    const long nh = c->num_attention_heads;
    const long dqk = c->qk_nope_head_dim + c->qk_rope_head_dim, dv = c->v_head_dim;
    const long dc = c->kv_lora_rank, dr = c->qk_rope_head_dim, dq = c->q_lora_rank;
    return N * nh * dv                     /* datt */
           + 2 * N * nh * dqk              /* dq, dk */
           + N * nh * (c->qk_nope_head_dim + dv) /* dkvb */
           + N * (dc + dr) + N * dc        /* dkva, dckv */
           + 2 * N * dq                    /* dqan, dqa */
           + 2 * np;                       /* dP, dS beside each probability block */
}

/* Padded core backward per (row, head): dQ, dK (k_nope | k_pe) and dV (the
 * v part of dkvb) from datt. */
static void attn_core_bwd_padded(const ModelConfig *c, AttnActs *a, int B, int T, const float *datt, float *dQ,
                                 float *dK, float *dkvb, float *dPall) {
    const int nh = c->num_attention_heads;
    const int dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dqk = dn + dr, dv = c->v_head_dim;
#pragma omp parallel for schedule(dynamic, 1)
    for (int bh = 0; bh < B * nh; bh++) {
        int b = bh / nh, h = bh % nh;
        const float *P = a->p + (long)bh * T * T;
        float *dP = dPall + (long)bh * 2 * T * T, *dS = dP + (long)T * T;
        long qo = (long)b * T * nh * dqk + h * dqk, vo = (long)b * T * nh * (dn + dv) + h * (dn + dv) + dn;
        const float *dO = datt + (long)b * T * nh * dv + h * dv;
        float *dV = dkvb + vo, *dQh = dQ + qo, *dKh = dK + qo;
        for (int t = 0; t < T; t++) {
            memset(dV + (long)t * nh * (dn + dv), 0, dv * sizeof(float));
            memset(dKh + (long)t * nh * dqk, 0, dqk * sizeof(float));
        }
        for (int r0 = 0; r0 < T; r0 += ABLK) {
            int rn = T - r0 < ABLK ? T - r0 : ABLK, cols = r0 + rn;
            const float *Pb = P + (long)r0 * T, *dOb = dO + (long)r0 * nh * dv;
            float *dPb = dP + (long)r0 * T, *dSb = dS + (long)r0 * T;
            /* dP = dO V^T ; dV += P^T dO */
            gemm(0, 1, rn, cols, dv, 1.0f, dOb, nh * dv, a->kvb + vo, nh * (dn + dv), 0.0f, dPb, T);
            gemm(1, 0, cols, dv, rn, 1.0f, Pb, T, dOb, nh * dv, 1.0f, dV, nh * (dn + dv));
            /* dS = P * (dP - rowsum(P*dP)) * scale */
            for (int i = 0; i < rn; i++) {
                int t = r0 + i;
                const float *pr = Pb + (long)i * T;
                float *dpr = dPb + (long)i * T, *dsr = dSb + (long)i * T;
                double dot = 0;
                for (int j = 0; j <= t; j++) dot += (double)pr[j] * dpr[j];
                for (int j = 0; j < cols; j++) dsr[j] = j <= t ? pr[j] * (dpr[j] - (float)dot) * c->softmax_scale : 0.0f;
            }
            /* dQ = dS K ; dK += dS^T Q */
            gemm(0, 0, rn, dqk, cols, 1.0f, dSb, T, a->k + qo, nh * dqk, 0.0f, dQh + (long)r0 * nh * dqk, nh * dqk);
            gemm(1, 0, cols, dqk, rn, 1.0f, dSb, T, a->q + qo + (long)r0 * nh * dqk, nh * dqk, 1.0f, dKh, nh * dqk);
        }
    }
}

void attn_bwd(Model *m, const LayerW *w, AttnActs *a, const float *xn, const float *dout, float *dxn, const Layout *lo,
              const float *cs, const float *sn, float *s) {
    const ModelConfig *c = &m->cfg;
    const int N = lo->N, H = c->hidden_size, nh = c->num_attention_heads;
    const int dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dqk = dn + dr, dv = c->v_head_dim;
    const int dc = c->kv_lora_rank, dq = c->q_lora_rank;
    float *datt = s;                      s += (long)N * nh * dv;
    float *dQ = s;                        s += (long)N * nh * dqk;
    float *dK = s;                        s += (long)N * nh * dqk;
    float *dkvb = s;                      s += (long)N * nh * (dn + dv);
    float *dkva = s;                      s += (long)N * (dc + dr);
    float *dckv = s;                      s += (long)N * dc;
    float *dqan = s;                      s += (long)N * dq;
    float *dqa = s;                       s += (long)N * dq;
    float *dPall = s;
    /* o_proj */
    memset(datt, 0, sizeof(float) * N * nh * dv);
    linear_bwd_x(datt, dout, w->o, N, H, nh * dv);
    linear_bwd_w(grad_of(m, w->o), dout, a->att, N, H, nh * dv);
    if (lo->pk) attn_core_bwd_packed(c, a, lo, datt, dQ, dK, dkvb, dPall);
    else attn_core_bwd_padded(c, a, lo->B, lo->T, datt, dQ, dK, dkvb, dPall);
    /* split dK: k_nope -> dkvb, k_pe summed over heads -> dkva rope part */
    for (int n = 0; n < N; n++) {
        float *dkpe = dkva + (long)n * (dc + dr) + dc;
        memset(dkpe, 0, dr * sizeof(float));
        for (int h = 0; h < nh; h++) {
            const float *dk = dK + (long)n * nh * dqk + h * dqk;
            memcpy(dkvb + (long)n * nh * (dn + dv) + h * (dn + dv), dk, dn * sizeof(float));
            for (int i = 0; i < dr; i++) dkpe[i] += dk[dn + i];
        }
    }
    rope_apply(dkva + dc, cs, sn, N, 1, 0, dc + dr, dr, 1);
    rope_apply(dQ + dn, cs, sn, N, nh, dqk, nh * dqk, dr, 1);
    /* kv_b_proj and the latent norm */
    memset(dckv, 0, sizeof(float) * N * dc);
    linear_bwd_x(dckv, dkvb, w->kv_b, N, nh * (dn + dv), dc);
    linear_bwd_w(grad_of(m, w->kv_b), dkvb, a->ckv, N, nh * (dn + dv), dc);
    for (int n = 0; n < N; n++) memset(dkva + (long)n * (dc + dr), 0, dc * sizeof(float));
    rmsnorm_bwd(dkva, grad_of(m, w->kv_a_norm), dckv, a->kva, w->kv_a_norm, a->kv_rstd, N, dc, dc + dr, dc + dr);
    linear_bwd_x(dxn, dkva, w->kv_a, N, dc + dr, H);
    linear_bwd_w(grad_of(m, w->kv_a), dkva, xn, N, dc + dr, H);
    /* queries */
    if (dq) {
        memset(dqan, 0, sizeof(float) * N * dq);
        linear_bwd_x(dqan, dQ, w->q_b, N, nh * dqk, dq);
        linear_bwd_w(grad_of(m, w->q_b), dQ, a->qan, N, nh * dqk, dq);
        memset(dqa, 0, sizeof(float) * N * dq);
        rmsnorm_bwd(dqa, grad_of(m, w->q_a_norm), dqan, a->qa, w->q_a_norm, a->qa_rstd, N, dq, dq, dq);
        linear_bwd_x(dxn, dqa, w->q_a, N, dq, H);
        linear_bwd_w(grad_of(m, w->q_a), dqa, xn, N, dq, H);
    } else {
        linear_bwd_x(dxn, dQ, w->q, N, nh * dqk, H);
        linear_bwd_w(grad_of(m, w->q), dQ, xn, N, nh * dqk, H);
    }
}
