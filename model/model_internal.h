/* model_internal: activation buffers and block entry points shared by the
 * model's source files. Not part of the model API (model.h). */
#ifndef GRPO_MODEL_INTERNAL_H
#define GRPO_MODEL_INTERNAL_H

#include "model/model.h"

/* The token layout of one training forward: a padded batch of B rows of T
 * tokens (pk NULL), or a packed stream of segments (pk; model.h). */
typedef struct Layout {
    int N;                /* tokens: B*T or pk->ntok */
    int B, T;             /* padded only */
    const PackedBatch *pk;
    const long *poff;     /* packed: [nseg] offset of segment s's probabilities
                           * [n_h, len, plen+len] in AttnActs.p (plen: its prefix's len) */
} Layout;

/* Saved activations of one MLA block for N tokens. */
typedef struct AttnActs {
    float *qa;      /* [N, d_q]  q_a_proj output (q-LoRA) */
    float *qa_rstd; /* [N] */
    float *qan;     /* [N, d_q]  normalised */
    float *q;       /* [N, n_h*(d_n+d_r)]  rope applied to the rope dims */
    float *kva;     /* [N, d_c+d_r]  latent (raw) | k_pe (rotated) */
    float *kv_rstd; /* [N] */
    float *ckv;     /* [N, d_c]  normalised latent (what the decode cache holds) */
    float *kvb;     /* [N, n_h*(d_n+d_v)]  per head k_nope | v */
    float *k;       /* [N, n_h*(d_n+d_r)]  assembled keys k_nope | k_pe */
    float *p;       /* softmax probabilities: padded [B, n_h, T, T]; packed per Layout.poff */
    float *att;     /* [N, n_h*d_v]  attention output before o_proj */
} AttnActs;

/* Saved activations of a dense MLP or an MoE block. */
typedef struct MlpActs {
    float *g, *u, *h;   /* dense [N, I] / shared experts [N, I_s] */
    float *scores;      /* [N, E] sigmoid (V3) or softmax (V2) affinities */
    int *topk;          /* [N, k] selected experts */
    float *topw;        /* [N, k] final weights (normalised, scaled) */
    float *topsum;      /* [N] sum of selected affinities before normalising */
    int *count;         /* [E] assignments per expert */
    int *start;         /* [E+1] offsets into perm */
    int *perm;          /* [N*k] assignment ids (n*k + j) grouped by expert */
    float *eg, *eu, *eh;/* [N*k, I_e] expert activations in perm order */
    float *ey;          /* [N*k, H] expert outputs (unweighted) in perm order */
    float *xe;          /* [N*k, H] expert inputs gathered in perm order */
    float *dye;         /* [N*k, H] backward: weighted output grads in perm order */
} MlpActs;

typedef struct LayerActs {
    float *x;       /* [N, H] layer input (residual) */
    float *xn1;     /* [N, H] */
    float *rstd1;   /* [N] */
    AttnActs a;
    float *xm;      /* [N, H] residual after attention */
    float *xn2;     /* [N, H] */
    float *rstd2;   /* [N] */
    MlpActs f;
} LayerActs;

struct ModelActs {
    long capN, capP; /* capacity: tokens, probability floats */
    LayerActs *layer;/* [L] */
    float *xout;     /* [N, H] last layer output */
    float *xfn;      /* [N, H] final-normed hidden */
    float *rstdf;    /* [N] */
    float *lse;      /* [N] log-sum-exp of logits/temp */
    float *ent;      /* [N] entropy of softmax(logits/temp) */
    int *pos;        /* [N] positions */
    float *rcos, *rsin; /* [N, d_r/2] rope tables for pos */
    float temperature;
    long *poff;      /* [cap_seg] Layout.poff of the last packed forward */
    int cap_seg;
    float *zhead;    /* [head_chunk, V] logits of one chunk of tokens */
    /* backward scratch */
    float *dres, *dxn;           /* [N, H] */
    float *dbig;                 /* sized for the largest per-block gradient set */
    size_t dbig_n;
};

static inline float *grad_of(const Model *m, const float *p) { return m->grads + (p - m->params); }

/* cs, sn: [N, d_r/2] rope tables (rope_table) for the tokens' positions. */
void attn_fwd(Model *m, const LayerW *w, AttnActs *a, const float *xn, float *out, const Layout *lo, const float *cs,
              const float *sn);
void attn_bwd(Model *m, const LayerW *w, AttnActs *a, const float *xn, const float *dout, float *dxn, const Layout *lo,
              const float *cs, const float *sn, float *scratch);
/* Scratch floats attn_bwd needs for N tokens and np probability floats. */
size_t attn_bwd_scratch(const ModelConfig *c, long N, long np);
/* Causal softmax of rows r0..r0+rn-1 of a matrix with row stride T, in place:
 * row r0+i keeps columns 0..r0+i and zeroes the rest up to T. */
void attn_softmax_causal(float *s, int rn, int r0, int T);
/* Probability floats of a packed layout (the sum over segments of n_h*len*(plen+len)). */
long attn_packed_pfloats(const ModelConfig *c, const PackedBatch *pk);
/* The attention core of a packed layout (model_attn_packed.c): O = softmax(Q K^T
 * scale) V per segment and head, with the prefix's keys in front; backward
 * writes dQ, dK (k_nope | k_pe per head) and dV (the v part of dkvb). */
void attn_core_fwd_packed(const ModelConfig *c, AttnActs *a, const Layout *lo);
void attn_core_bwd_packed(const ModelConfig *c, AttnActs *a, const Layout *lo, const float *datt, float *dQ, float *dK,
                          float *dkvb, float *dPall);

/* out[N,H] = MLP/MoE(xn); router load counted into load[E] when non-NULL. */
void mlp_fwd(Model *m, const LayerW *w, int moe, MlpActs *f, const float *xn, float *out, int N, int *load);
void mlp_bwd(Model *m, const LayerW *w, int moe, MlpActs *f, const float *xn, const float *dout, float *dxn, int N,
             float *scratch);
size_t mlp_bwd_scratch(const ModelConfig *c, int N);
void mlp_acts_alloc(MlpActs *f, const ModelConfig *c, int moe, int N);
void mlp_acts_free(MlpActs *f);

#endif
