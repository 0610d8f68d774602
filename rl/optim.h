/* optim: AdamW over the model's flat parameter array, global-norm gradient
 * clipping, NaN/inf step skipping, learning-rate schedules, the DeepSeek-V3
 * auxiliary-loss-free router bias update, and optimizer-state files.
 *
 * The parameters, their gradients and the table saying which tensor is where
 * are the model's (Model.params, Model.grads, Model.ptab in model/model.h);
 * this module only reads the table. Non-trainable tensors (the MoE
 * e_score_correction_bias) are left out of the norm, the clip and the update.
 * It is not the trainer: it does not decide when to step, nor accumulate.
 *
 * Numerics follow torch.optim.AdamW (single-tensor path, fp32 moments),
 * torch.nn.utils.clip_grad_norm_ and transformers.get_scheduler; the golden
 * test tests/rl/test_optim_golden.c checks them. Formulas: docs/grpo.md. */
#ifndef GRPO_OPTIM_H
#define GRPO_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "model/model.h"

/* ---- weight-decay grouping ------------------------------------------------ */

typedef enum {
    OPTIM_DECAY_HF = 0,  /* HF Trainer.get_decay_parameter_names (TRL's default):
                            decay unless the lower-cased name matches bias, layernorm,
                            rmsnorm, (^|.)norm($|.) or _norm($|.) */
    OPTIM_DECAY_MATRICES /* decay tensors with ndim >= 2 only */
} OptimDecayRule;

/* 1 when weight decay applies to p under rule. */
int optim_decays(const Param *p, OptimDecayRule rule);

/* ---- AdamW ------------------------------------------------------------------ */

typedef struct AdamWOpts {
    double beta1;         /* 0.9 */
    double beta2;         /* 0.999 */
    double eps;           /* 1e-8 */
    double weight_decay;  /* 0.0 (HF TrainingArguments default) */
    OptimDecayRule decay_rule; /* OPTIM_DECAY_HF */
    double max_grad_norm; /* 1.0 (HF default); <= 0: no clipping (the norm is still reported) */
} AdamWOpts;

typedef struct AdamW {
    AdamWOpts o;
    const Param *ptab;    /* [nparams] the model's table; must outlive the optimizer */
    int nparams;
    size_t numel;         /* floats in the parameter array */
    float *m, *v;         /* [numel] first and second moments (fp32; 0 for frozen tensors) */
    int64_t step;         /* applied steps (bias correction); skipped steps do not count */
    int64_t nskipped;     /* steps skipped for a non-finite gradient */
} AdamW;

typedef struct AdamWStepInfo {
    double lr;            /* the learning rate used */
    double grad_norm;     /* global L2 norm of the trainable gradients before clipping
                             (inf or NaN when a gradient is not finite) */
    double clip_coef;     /* factor applied to the gradients (1 when not clipped) */
    int skipped;          /* 1: non-finite gradient, nothing was touched */
    size_t nonfinite;     /* non-finite gradient entries found */
    char bad_param[96];   /* first tensor holding one ("" when none) */
} AdamWStepInfo;

void adamw_opts_default(AdamWOpts *o);
/* Moments zeroed, step 0. Errors: a table entry outside [0, numel). */
int adamw_init(AdamW *a, const AdamWOpts *o, const Param *ptab, int nparams, size_t numel, Err *err);
void adamw_free(AdamW *a);

/* Global L2 norm (double accumulation) of the trainable gradients grads
 * [numel]; counts non-finite entries into *nonfinite and names the first
 * tensor holding one in bad[96] (either may be NULL). */
double optim_grad_norm(const Param *ptab, int nparams, const float *grads, size_t *nonfinite, char *bad);

/* One step: if any trainable gradient is NaN/inf the step is a no-op
 * (parameters, gradients, moments and step untouched; info->skipped = 1,
 * a->nskipped++). Otherwise clip the trainable gradients in place to
 * max_grad_norm as clip_grad_norm_ does, then the AdamW update at lr.
 * params, grads [numel]. info may be NULL. Returns 1 when skipped, else 0. */
int adamw_step(AdamW *a, float *params, float *grads, double lr, AdamWStepInfo *info);

/* State file (for exact resume): magic "GRPOADAM", version, numel, step,
 * nskipped, the options, then m and v as little-endian fp32, then an FNV-1a
 * checksum of everything before it. Written to PATH.tmp and renamed. Load
 * checks magic, version, numel and checksum (ERR_INPUT naming the file). */
int adamw_save(const AdamW *a, const char *path, Err *err);
int adamw_load(AdamW *a, const char *path, Err *err);

/* ---- learning-rate schedules (transformers.get_scheduler) ------------------ */

typedef enum {
    LR_CONSTANT = 0,        /* "constant": lr, warmup ignored (as HF) */
    LR_CONSTANT_WARMUP,     /* "constant_with_warmup" */
    LR_LINEAR,              /* "linear": warmup then linear to 0 at total_steps (HF default) */
    LR_COSINE,              /* "cosine": warmup then half cosine to 0 */
    LR_COSINE_MIN_LR        /* "cosine_with_min_lr": cosine to min_lr_rate * lr */
} LrSchedType;

typedef struct LrSchedule {
    LrSchedType type;
    double lr;            /* peak learning rate */
    int64_t warmup_steps; /* linear warmup from 0 over this many steps */
    int64_t total_steps;  /* num_training_steps */
    double num_cycles;    /* cosine: 0.5 (one half period) */
    double min_lr_rate;   /* cosine_with_min_lr: 0 */
} LrSchedule;

int lr_schedule_parse(const char *name, LrSchedType *out, Err *err);
const char *lr_schedule_name(LrSchedType t);
/* The learning rate of optimizer step `step` (0 = the first step), i.e. HF's
 * lr * lr_lambda(step) after `step` scheduler.step() calls. */
double lr_schedule_at(const LrSchedule *s, int64_t step);
/* HF warmup_ratio -> steps: ceil(ratio * total). */
int64_t lr_warmup_steps(double ratio, int64_t total);

/* ---- MoE router bias (DeepSeek-V3 auxiliary-loss-free balancing) ----------- */

/* bias[e] -= gamma * sign(load[e] - mean(load)) for e < E: overloaded experts
 * get a lower selection bias, underloaded ones a higher (deepseek-v3.md §5).
 * bias [E], load [E] tokens routed to each expert. */
void optim_router_bias_update(float *bias, const int64_t *load, int E, float gamma);
/* acc [L*E] += m->router_load [L*E] (the last forward's counts); call after
 * every forward of a step, then update with the sum. */
void optim_router_load_add(int64_t *acc, const Model *m);
/* The update for every MoE layer of m that has a correction bias, from
 * load [L*E]; layers without one (dense, V2 gating) are left alone.
 * Returns the number of layers updated. */
int optim_router_bias_update_model(Model *m, const int64_t *load, float gamma);

#endif
