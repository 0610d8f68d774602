/* grpo: the GRPO objective as pure functions on flat float buffers.
 *
 * Rewards -> advantages (TRL's _generate_and_score_completions), the DAPO
 * dynamic-sampling test (which groups carry no signal), and the per-token
 * loss with its gradient w.r.t. the per-token log-probs (TRL's
 * GRPOTrainer._compute_loss, verl's agg_loss). The gradient buffer is what
 * model_backward takes as dlogp (model/model.h), so the trainer calls
 * grpo_loss and hands dlogp straight to the model.
 *
 * It is not the trainer: it knows nothing of models, batching, rollouts or
 * the optimizer. Every formula, default and the toolkit it matches is in
 * docs/grpo.md; the numbers are checked against a PyTorch re-implementation
 * of TRL/verl by tests/rl/test_grpo_golden.c.
 *
 * Shapes: P prompts, G completions per prompt, N = P*G samples (sample
 * n = p*G + g, group-major as TRL's repeat_interleave), K reward components,
 * S sequences in a loss call, L the row length of the per-token buffers. */
#ifndef GRPO_GRPO_H
#define GRPO_GRPO_H

#include <stddef.h>

#include "base/err.h"

/* ---- rewards and advantages ------------------------------------------- */

typedef enum {
    GRPO_SCALE_GROUP = 0, /* divide by the group's std (TRL default) */
    GRPO_SCALE_BATCH,     /* divide by the whole batch's std (Lite-PPO) */
    GRPO_SCALE_NONE       /* no division (Dr. GRPO) */
} GrpoScale;

typedef enum {
    GRPO_MULTI_SUM_THEN_NORMALIZE = 0, /* TRL default */
    GRPO_MULTI_NORMALIZE_THEN_SUM      /* GDPO: per-component group norm, then batch norm */
} GrpoMultiObj;

typedef struct GrpoAdvOpts {
    GrpoScale scale;        /* default GRPO_SCALE_GROUP */
    GrpoMultiObj multi;     /* default GRPO_MULTI_SUM_THEN_NORMALIZE */
    const float *weights;   /* [K] reward weights, NULL = all 1 */
} GrpoAdvOpts;

typedef struct GrpoAdvStats {
    double reward_mean;          /* nanmean of the weighted reward sum (TRL "reward") */
    double reward_std;           /* nanstd, Bessel (TRL "reward_std"); NaN with < 2 scored */
    double frac_reward_zero_std; /* share of samples whose std isclose 0 (TRL) */
    int n_unscorable;            /* samples whose every component is nil */
    int n_zero_std_groups;       /* groups whose std isclose 0 or is undefined */
} GrpoAdvStats;

void grpo_adv_opts_default(GrpoAdvOpts *o);
int grpo_scale_parse(const char *name, GrpoScale *out, Err *err);
const char *grpo_scale_name(GrpoScale s);

/* nil-aware weighted sum: reward[n] = nansum_k(w_k * per_func[n,k]); NaN when
 * every component of sample n is NaN (nil).
 * per_func [N*K] (NaN = nil), weights [K] or NULL, reward [N]. */
void grpo_rewards_combine(const float *per_func, const float *weights, int N, int K, float *reward);

/* Advantages exactly as TRL: group mean baseline, scaled by (std + 1e-4)
 * with std the NaN-aware Bessel std of the group or batch; unscorable
 * samples and NaN results get advantage 0.
 * per_func [P*G*K] (NaN = nil); reward [P*G] out (the weighted sum, NaN for
 * unscorable: what TRL logs as "reward"); adv [P*G] out; st may be NULL.
 * Errors (ERR_INPUT): P, G or K < 1, an unknown enum. */
int grpo_advantages(const GrpoAdvOpts *o, const float *per_func, int P, int G, int K,
                    float *reward, float *adv, GrpoAdvStats *st, Err *err);

/* NaN-aware Bessel std of x [n] as TRL's nanstd (NaN with < 2 finite values). */
double grpo_nanstd(const float *x, int n);

/* DAPO dynamic sampling: keep[p] = 1 when group p has a defined, non-zero
 * reward std (for 0/1 rewards: 0 < #correct < G). reward [P*G] (NaN = nil),
 * keep [P]. Returns the number of groups kept. */
int grpo_groups_with_signal(const float *reward, int P, int G, unsigned char *keep);

/* DAPO soft overlong punishment R_len (grpo.md §6.1) for a completion of len
 * tokens: 0 up to max_len - cache, then linear down to -1 at max_len, -1 above. */
float grpo_overlong_penalty(int len, int max_len, int cache);

/* ---- the loss ------------------------------------------------------------ */

typedef enum {
    GRPO_LOSS_DAPO = 0,          /* TRL dapo = verl token-mean: sum / global active tokens (default) */
    GRPO_LOSS_GRPO,              /* TRL grpo: mean_i(sum_t / max(|o_i|,1)) / GA */
    GRPO_LOSS_BNPO,              /* TRL bnpo: sum / max(local tokens,1) / GA */
    GRPO_LOSS_DR_GRPO,           /* TRL dr_grpo: sum / (S * max_completion_length) / GA */
    GRPO_LOSS_SEQ_MEAN_TOKEN_SUM,      /* verl seq-mean-token-sum */
    GRPO_LOSS_SEQ_MEAN_TOKEN_MEAN,     /* verl seq-mean-token-mean */
    GRPO_LOSS_SEQ_MEAN_TOKEN_SUM_NORM  /* verl seq-mean-token-sum-norm */
} GrpoLossType;

typedef enum { GRPO_IS_TOKEN = 0, GRPO_IS_SEQUENCE } GrpoIsLevel; /* sequence = GSPO */
typedef enum { GRPO_KL_K3 = 0, GRPO_KL_K1, GRPO_KL_K2 } GrpoKl;

typedef struct GrpoLossOpts {
    GrpoLossType loss_type;   /* default dapo */
    GrpoIsLevel is_level;     /* default token */
    float epsilon_low;        /* 0.2: ratio clipped below at 1 - epsilon_low */
    float epsilon_high;       /* 0.2 (TRL: None = epsilon); DAPO suggests 0.28 */
    float delta;              /* two-sided clip of the unclipped ratio at delta; <= 0: off (default) */
    float dual_clip_c;        /* verl dual-clip: for A < 0 the token loss is capped at -A*c
                                 (verl clip_ratio_c, 3.0 there; must be > 1); <= 0: off (default) */
    float beta;               /* KL coefficient, 0 (TRL default): ref_logp unused */
    GrpoKl kl;                /* estimator, default k3 (TRL's only one) */
    int kl_bias_correction;   /* TRL use_bias_correction_kl: kl_t *= ratio; 0 */
    float entropy_coef;       /* loss -= coef * masked mean entropy / GA; 0 */
    int grad_accum;           /* GA: divides grpo/bnpo/dr_grpo and the entropy term; 1 */
    int max_completion_length;/* dr_grpo normaliser; 512 (TRL default) */
    double num_items;         /* dapo: the token normaliser of the accumulation window (TRL:
                                 num_items_in_batch / processes * GA / steps_per_generation;
                                 verl: batch_num_tokens); <= 0: this call's active tokens */
    double num_seqs;          /* verl seq-mean-*: global batch size; <= 0: this call's
                                 non-empty sequences */
    double loss_scale_factor; /* verl seq-mean-token-sum-norm; <= 0: L (verl's horizon) */
} GrpoLossOpts;

/* One loss call: S sequences, per-token buffers [S*L] row-major (row stride L;
 * the completion may sit anywhere in the row, the mask says where). Values at
 * masked positions are never read into the loss. */
typedef struct GrpoLossIn {
    int S, L;
    const float *new_logp;  /* [S*L] log pi_theta of the sampled tokens */
    const float *old_logp;  /* [S*L] log pi_old; NULL = new_logp detached (ratio 1) */
    const float *ref_logp;  /* [S*L] log pi_ref; needed when beta != 0 */
    const float *adv;       /* [S] advantage per sequence */
    const float *mask;      /* [S*L] 1 for completion tokens in the loss, 0 elsewhere */
    const float *entropy;   /* [S*L] per-token entropy, or NULL (no bonus, no metric) */
} GrpoLossIn;

/* Outputs: dlogp = d loss / d new_logp, dentropy = d loss / d entropy, both
 * [S*L], overwritten (0 at masked positions); either may be NULL. */
typedef struct GrpoLossGrad {
    float *dlogp;
    float *dentropy;
} GrpoLossGrad;

/* The value and the metrics TRL logs, for this call. The _sum and _count fields
 * let a trainer combine micro-batches into global means. */
typedef struct GrpoLossStats {
    double loss;              /* the scalar whose gradient grad holds */
    double policy_loss;       /* loss without the entropy bonus (TRL "policy_loss") */
    double ntok;              /* active tokens (sum of mask) */
    int nseq_active;          /* sequences with at least one active token */
    double kl_sum, kl_mean;   /* per-token KL estimate over active tokens (beta != 0) */
    double entropy_sum, entropy_mean;
    double ratio_mean;        /* mean importance ratio (tokens, or sequences for GSPO) */
    double clip_count;        /* denominator of the clip sums: ntok, or S for GSPO */
    double clip_low_sum, clip_high_sum, clip_region_sum;
    double clip_low_mean, clip_high_mean, clip_region_mean; /* TRL clip_ratio/{low,high,region}_mean */
    double clip_low_min, clip_high_max; /* TRL clip_ratio/low_min, high_max (NaN: none) */
    size_t nonfinite;         /* non-finite gradient entries written (a NaN/inf input) */
} GrpoLossStats;

void grpo_loss_opts_default(GrpoLossOpts *o);
int grpo_loss_type_parse(const char *name, GrpoLossType *out, Err *err);
const char *grpo_loss_type_name(GrpoLossType t);
int grpo_is_level_parse(const char *name, GrpoIsLevel *out, Err *err);
int grpo_kl_parse(const char *name, GrpoKl *out, Err *err);

/* Loss and gradient. Errors (ERR_INPUT): S or L < 1, a NULL required buffer
 * (ref_logp with beta != 0), epsilons out of range, an unknown enum. */
int grpo_loss(const GrpoLossOpts *o, const GrpoLossIn *in, GrpoLossGrad *grad,
              GrpoLossStats *st, Err *err);

/* ---- masks ---------------------------------------------------------------- */

/* mask [S*L]: row s gets 1 at [start[s], start[s]+len[s]) (start NULL = 0). */
void grpo_mask_from_lengths(float *mask, int S, int L, const int *start, const int *len);
/* TRL mask_truncated_completions: zero the rows of mask [S*L] whose
 * truncated[s] is set (a completion that did not end in EOS). Returns how many
 * rows it zeroed. Do this before counting num_items. */
int grpo_mask_truncated(float *mask, int S, int L, const unsigned char *truncated);
/* Active tokens: the sum of mask [S*L]. */
double grpo_mask_count(const float *mask, int S, int L);

#endif
