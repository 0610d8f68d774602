/* optim: AdamW, gradient clipping, step skipping, router bias update and the
 * optimizer-state file. API and formulas in optim.h and docs/grpo.md.
 *
 * The update mirrors torch.optim.adam._single_tensor_adam op by op in fp32
 * (param *= 1 - lr*wd; m.lerp_(g, 1-b1); v = v*b2 + (1-b2)*g*g;
 * p += -lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)), in torch's operand order, so
 * a run matches PyTorch to an ulp or two per step (the rest is vectorisation
 * and FMA contraction, on either side). */
#include "rl/optim.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"

/* ---- weight-decay grouping ------------------------------------------------ */

/* HF's forbidden patterns (trainer.py get_decay_parameter_names), on the
 * lower-cased name: bias | layernorm | rmsnorm | (^|\.)norm($|\.) | _norm($|\.). */
static int hf_no_decay(const char *name)
{
    char low[sizeof ((Param *)0)->name];
    size_t n = 0;
    for (; name[n] && n + 1 < sizeof low; n++) low[n] = (char)tolower((unsigned char)name[n]);
    low[n] = 0;
    if (strstr(low, "bias") || strstr(low, "layernorm") || strstr(low, "rmsnorm")) return 1;
    for (const char *p = strstr(low, "norm"); p; p = strstr(p + 1, "norm")) {
        int end_ok = p[4] == 0 || p[4] == '.';
        if (!end_ok) continue;
        if (p == low || p[-1] == '.' || p[-1] == '_') return 1;
    }
    return 0;
}

int optim_decays(const Param *p, OptimDecayRule rule)
{
    if (rule == OPTIM_DECAY_MATRICES) return p->ndim >= 2;
    return !hf_no_decay(p->name);
}

/* ---- AdamW ------------------------------------------------------------------ */

void adamw_opts_default(AdamWOpts *o)
{
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->weight_decay = 0.0;
    o->decay_rule = OPTIM_DECAY_HF;
    o->max_grad_norm = 1.0;
}

int adamw_init(AdamW *a, const AdamWOpts *o, const Param *ptab, int nparams, size_t numel, Err *err)
{
    memset(a, 0, sizeof *a);
    for (int i = 0; i < nparams; i++)
        if (ptab[i].offset + ptab[i].numel > numel)
            return err_set(err, ERR_INPUT, "adamw: tensor %s [%zu + %zu] lies outside the %zu parameters",
                           ptab[i].name, ptab[i].offset, ptab[i].numel, numel);
    a->o = *o;
    a->ptab = ptab;
    a->nparams = nparams;
    a->numel = numel;
    a->m = xcalloc(numel ? numel : 1, sizeof(float));
    a->v = xcalloc(numel ? numel : 1, sizeof(float));
    return 0;
}

void adamw_free(AdamW *a)
{
    free(a->m);
    free(a->v);
    memset(a, 0, sizeof *a);
}

double optim_grad_norm(const Param *ptab, int nparams, const float *grads, size_t *nonfinite, char *bad)
{
    double ss = 0;
    size_t nf = 0;
    if (bad) bad[0] = 0;
    for (int i = 0; i < nparams; i++) {
        if (!ptab[i].trainable) continue;
        const float *g = grads + ptab[i].offset;
        double s = 0;
        size_t nf0 = nf;
        for (size_t j = 0; j < ptab[i].numel; j++) {
            s += (double)g[j] * g[j];
            nf += !isfinite(g[j]);
        }
        if (nf > nf0 && bad && !bad[0]) snprintf(bad, 96, "%s", ptab[i].name);
        ss += s;
    }
    if (nonfinite) *nonfinite = nf;
    return sqrt(ss);
}

/* torch _single_tensor_adam with decoupled weight decay, one tensor. */
static void adamw_tensor(const AdamWOpts *o, float *p, const float *g, float *m, float *v, size_t n,
                         double lr, double wd, int64_t step)
{
    float decay = (float)(1.0 - lr * wd);
    float w1 = (float)(1.0 - o->beta1), b2 = (float)o->beta2, w2 = (float)(1.0 - o->beta2);
    double bc1 = 1.0 - pow(o->beta1, (double)step), bc2 = 1.0 - pow(o->beta2, (double)step);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2), eps = (float)o->eps;
    for (size_t j = 0; j < n; j++) {
        float pj = wd != 0 ? p[j] * decay : p[j];
        float mj = m[j] + w1 * (g[j] - m[j]); /* torch lerp, weight < 0.5 */
        float vj = v[j] * b2 + w2 * g[j] * g[j];  /* addcmul: value * t1 * t2 */
        float denom = sqrtf(vj) / bc2_sqrt + eps;
        p[j] = pj + (-step_size * mj) / denom; /* addcdiv: value * t1 / t2 */
        m[j] = mj;
        v[j] = vj;
    }
}

int adamw_step(AdamW *a, float *params, float *grads, double lr, AdamWStepInfo *info)
{
    AdamWStepInfo tmp;
    if (!info) info = &tmp;
    memset(info, 0, sizeof *info);
    info->lr = lr;
    info->clip_coef = 1.0;
    info->grad_norm = optim_grad_norm(a->ptab, a->nparams, grads, &info->nonfinite, info->bad_param);
    if (info->nonfinite || !isfinite(info->grad_norm)) {
        info->skipped = 1;
        a->nskipped++;
        return 1;
    }
    /* clip_grad_norm_: coef = max_norm / (norm + 1e-6), applied only when < 1. */
    if (a->o.max_grad_norm > 0) {
        float coef = (float)a->o.max_grad_norm / ((float)info->grad_norm + 1e-6f);
        if (coef < 1.0f) {
            info->clip_coef = coef;
            for (int i = 0; i < a->nparams; i++) {
                if (!a->ptab[i].trainable) continue;
                float *g = grads + a->ptab[i].offset;
                for (size_t j = 0; j < a->ptab[i].numel; j++) g[j] *= coef;
            }
        }
    }
    a->step++;
    for (int i = 0; i < a->nparams; i++) {
        const Param *p = &a->ptab[i];
        if (!p->trainable) continue;
        double wd = optim_decays(p, a->o.decay_rule) ? a->o.weight_decay : 0.0;
        adamw_tensor(&a->o, params + p->offset, grads + p->offset, a->m + p->offset, a->v + p->offset,
                     p->numel, lr, wd, a->step);
    }
    return 0;
}

/* ---- state file ------------------------------------------------------------ */

#define ADAMW_MAGIC "GRPOADAM"
#define ADAMW_VERSION 1u

typedef struct AdamWHeader {
    char magic[8];
    uint32_t version, pad;
    uint64_t numel;
    int64_t step, nskipped;
    double beta1, beta2, eps, weight_decay, max_grad_norm;
    int32_t decay_rule, pad2;
} AdamWHeader;

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

#define FNV_SEED 0xcbf29ce484222325ull

int adamw_save(const AdamW *a, const char *path, Err *err)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return err_set(err, ERR_INPUT, "optimizer state: path too long: %s", path);
    AdamWHeader h = {0};
    memcpy(h.magic, ADAMW_MAGIC, 8);
    h.version = ADAMW_VERSION;
    h.numel = a->numel;
    h.step = a->step;
    h.nskipped = a->nskipped;
    h.beta1 = a->o.beta1, h.beta2 = a->o.beta2, h.eps = a->o.eps;
    h.weight_decay = a->o.weight_decay, h.max_grad_norm = a->o.max_grad_norm;
    h.decay_rule = a->o.decay_rule;
    FILE *f = fopen(tmp, "wb");
    if (!f) return err_set(err, ERR_WORK, "optimizer state: cannot write %s", tmp);
    uint64_t sum = fnv1a(FNV_SEED, &h, sizeof h);
    sum = fnv1a(sum, a->m, sizeof(float) * a->numel);
    sum = fnv1a(sum, a->v, sizeof(float) * a->numel);
    int ok = fwrite(&h, sizeof h, 1, f) == 1 && fwrite(a->m, sizeof(float), a->numel, f) == a->numel &&
             fwrite(a->v, sizeof(float), a->numel, f) == a->numel && fwrite(&sum, sizeof sum, 1, f) == 1;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return err_set(err, ERR_WORK, "optimizer state: writing %s failed", path);
    }
    return 0;
}

int adamw_load(AdamW *a, const char *path, Err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(err, ERR_INPUT, "optimizer state: cannot open %s", path);
    AdamWHeader h;
    int rc = -1;
    float *m = NULL, *v = NULL;
    if (fread(&h, sizeof h, 1, f) != 1 || memcmp(h.magic, ADAMW_MAGIC, 8) != 0) {
        err_set(err, ERR_INPUT, "optimizer state %s: not an optimizer state file (bad magic)", path);
        goto out;
    }
    if (h.version != ADAMW_VERSION) {
        err_set(err, ERR_INPUT, "optimizer state %s: version %u, this build reads %u", path, h.version,
                ADAMW_VERSION);
        goto out;
    }
    if (h.numel != a->numel) {
        err_set(err, ERR_INPUT, "optimizer state %s: %llu parameters, the model has %zu", path,
                (unsigned long long)h.numel, a->numel);
        goto out;
    }
    m = malloc(sizeof(float) * (a->numel ? a->numel : 1));
    v = malloc(sizeof(float) * (a->numel ? a->numel : 1));
    uint64_t sum = 0, want;
    if (!m || !v || fread(m, sizeof(float), a->numel, f) != a->numel ||
        fread(v, sizeof(float), a->numel, f) != a->numel || fread(&sum, sizeof sum, 1, f) != 1) {
        err_set(err, ERR_INPUT, "optimizer state %s: truncated", path);
        goto out;
    }
    want = fnv1a(fnv1a(fnv1a(FNV_SEED, &h, sizeof h), m, sizeof(float) * a->numel), v,
                 sizeof(float) * a->numel);
    if (sum != want) {
        err_set(err, ERR_INPUT, "optimizer state %s: checksum mismatch (corrupt file)", path);
        goto out;
    }
    memcpy(a->m, m, sizeof(float) * a->numel);
    memcpy(a->v, v, sizeof(float) * a->numel);
    a->step = h.step;
    a->nskipped = h.nskipped;
    rc = 0;
out:
    free(m);
    free(v);
    fclose(f);
    return rc;
}

/* ---- MoE router bias ------------------------------------------------------- */

void optim_router_bias_update(float *bias, const int64_t *load, int E, float gamma)
{
    double mean = 0;
    for (int e = 0; e < E; e++) mean += (double)load[e];
    mean /= E > 0 ? E : 1;
    for (int e = 0; e < E; e++) {
        double d = (double)load[e] - mean;
        bias[e] -= gamma * (float)((d > 0) - (d < 0));
    }
}

void optim_router_load_add(int64_t *acc, const Model *m)
{
    int L = m->cfg.num_hidden_layers, E = m->cfg.n_routed_experts;
    if (E <= 0) return;
    for (long i = 0; i < (long)L * E; i++) acc[i] += m->router_load[i];
}

int optim_router_bias_update_model(Model *m, const int64_t *load, float gamma)
{
    int L = m->cfg.num_hidden_layers, E = m->cfg.n_routed_experts, n = 0;
    if (E <= 0) return 0;
    for (int l = 0; l < L; l++) {
        float *bias = m->layers[l].router_bias;
        if (!bias) continue;
        optim_router_bias_update(bias, load + (long)l * E, E, gamma);
        n++;
    }
    return n;
}
