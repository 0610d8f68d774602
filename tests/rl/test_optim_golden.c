/* test_optim_golden: rl/optim against tests/fixtures/rl/optim.txt, made by
 * tests/golden/make_grpo_fixtures.py with the real torch.optim.AdamW
 * (foreach=False), torch.nn.utils.clip_grad_norm_ and transformers.get_scheduler
 * in fp32, HF Trainer's weight-decay grouping, and a frozen tensor (the MoE
 * e_score_correction_bias) in the table.
 *
 * Per run (one per schedule): the decay grouping per tensor, the learning
 * rate and pre-clip gradient norm of each of the steps, and after the last
 * step the parameters and both moments. Errors are max |c - torch| relative
 * to max(|torch|, 1e-3 * max|torch|) elementwise; the worst is printed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rl/optim.h"
#include "test.h"
#include "test_grpo_fixture.h"

#define TOL_REL 1e-6  /* parameters and moments (relative to the array's max), lr, grad norm */
#define TOL_ELEM 1e-4 /* each element, relative to max(|ref|, 1e-3 max|ref|): moments pass through 0,
                         where the fp32 rounding of torch's clip factor (its norm is summed in
                         float, ours in double) is all that is left */

static double worst_param, worst_param_el, worst_moment, worst_moment_el, worst_lr, worst_norm;

/* Worst elementwise relative error, the denominator floored at 1e-3 of the
 * array's largest magnitude (so values near zero do not dominate). Used for
 * the parameters, which are O(1). */
static double worst_rel(const float *a, const FxArr *ref)
{
    double scale = 0, worst = 0;
    for (int i = 0; i < ref->n; i++) scale = fmax(scale, fabs(ref->v[i]));
    for (int i = 0; i < ref->n; i++) {
        double d = fabs(a[i] - ref->v[i]) / fmax(fabs(ref->v[i]), 1e-3 * scale + 1e-30);
        worst = fmax(worst, d);
    }
    return worst;
}

/* Parameter table from "opt paramI NAME NDIM D0 [D1] TRAINABLE DECAY". */
static int read_table(const FxCase *c, Param *ptab, int *decay, size_t *numel)
{
    int n = (int)fx_optd(c, "nparams");
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "param%d", i);
        const char *v = fx_opt(c, key);
        Param *p = &ptab[i];
        memset(p, 0, sizeof *p);
        int used = 0;
        if (!v || sscanf(v, "%95s %d%n", p->name, &p->ndim, &used) != 2) return -1;
        v += used;
        p->numel = 1;
        for (int d = 0; d < p->ndim; d++) {
            long long dim;
            if (sscanf(v, "%lld%n", &dim, &used) != 1) return -1;
            v += used;
            p->shape[d] = dim;
            p->numel *= (size_t)dim;
        }
        if (sscanf(v, "%d %d", &p->trainable, &decay[i]) != 2) return -1;
        p->offset = off;
        off += p->numel;
    }
    *numel = off;
    return n;
}

/* max |a - ref| / max |ref|: for the moments, whose entries pass through 0
 * (m changes sign; both carry fp32 rounding of the clip factor). */
static double norm_rel(const float *a, const FxArr *ref)
{
    double scale = 0, worst = 0;
    for (int i = 0; i < ref->n; i++) {
        scale = fmax(scale, fabs(ref->v[i]));
        worst = fmax(worst, fabs(a[i] - ref->v[i]));
    }
    return scale > 0 ? worst / scale : worst;
}

static void check_run(const FxCase *c)
{
    Err err = {0};
    Param ptab[32];
    int decay[32];
    size_t numel;
    int np = read_table(c, ptab, decay, &numel);
    CHECK(np > 0, "%s: bad parameter table", c->name);
    if (np <= 0) return;
    for (int i = 0; i < np; i++)
        CHECK(optim_decays(&ptab[i], OPTIM_DECAY_HF) == decay[i], "%s: decay of %s: ours %d, HF %d", c->name,
              ptab[i].name, optim_decays(&ptab[i], OPTIM_DECAY_HF), decay[i]);

    LrSchedule s = {0};
    CHECK(lr_schedule_parse(fx_opt(c, "schedule"), &s.type, &err) == 0, "%s", err.msg);
    s.lr = fx_optd(c, "lr");
    s.warmup_steps = (int64_t)fx_optd(c, "warmup");
    s.total_steps = (int64_t)fx_optd(c, "total");
    s.num_cycles = 0.5;
    s.min_lr_rate = fx_optd(c, "min_lr_rate");
    AdamWOpts o;
    adamw_opts_default(&o);
    o.weight_decay = fx_optd(c, "weight_decay");
    o.max_grad_norm = fx_optd(c, "max_grad_norm");
    AdamW a;
    CHECK(adamw_init(&a, &o, ptab, np, numel, &err) == 0, "%s", err.msg);

    float *params = fx_floats(c, "params0"), *grads_all = fx_floats(c, "grads");
    float *grads = malloc(sizeof(float) * numel);
    const FxArr *lr_ref = fx_arr(c, "lr"), *norm_ref = fx_arr(c, "grad_norm");
    for (int64_t step = 0; step < s.total_steps; step++) {
        memcpy(grads, grads_all + step * numel, sizeof(float) * numel);
        double lr = lr_schedule_at(&s, step);
        double el = fabs(lr - lr_ref->v[step]) / fmax(fabs(lr_ref->v[step]), 1e-12);
        worst_lr = fmax(worst_lr, lr_ref->v[step] == 0 ? fabs(lr) : el);
        CHECK(lr_ref->v[step] == 0 ? lr == 0 : el <= 1e-12, "%s step %lld: lr %.17g vs %.17g", c->name,
              (long long)step, lr, lr_ref->v[step]);
        AdamWStepInfo info;
        CHECK(adamw_step(&a, params, grads, lr, &info) == 0, "%s: step skipped", c->name);
        double en = fabs(info.grad_norm - norm_ref->v[step]) / norm_ref->v[step];
        worst_norm = fmax(worst_norm, en);
        CHECK(en <= TOL_REL, "%s step %lld: grad norm %.9g vs %.9g", c->name, (long long)step, info.grad_norm,
              norm_ref->v[step]);
    }
    double ep = worst_rel(params, fx_arr(c, "params"));
    double em = fmax(norm_rel(a.m, fx_arr(c, "exp_avg")), norm_rel(a.v, fx_arr(c, "exp_avg_sq")));
    double em_el = fmax(worst_rel(a.m, fx_arr(c, "exp_avg")), worst_rel(a.v, fx_arr(c, "exp_avg_sq")));
    double ep_n = norm_rel(params, fx_arr(c, "params"));
    CHECK(ep_n <= TOL_REL && ep <= TOL_ELEM, "%s: parameters differ by %.3g (elementwise %.3g)", c->name, ep_n,
          ep);
    CHECK(em <= TOL_REL && em_el <= TOL_ELEM, "%s: moments differ by %.3g (elementwise %.3g)", c->name, em,
          em_el);
    worst_param = fmax(worst_param, ep_n);
    worst_param_el = fmax(worst_param_el, ep);
    worst_moment = fmax(worst_moment, em);
    worst_moment_el = fmax(worst_moment_el, em_el);
    printf("%-16s %s warmup %lld of %lld, wd %g, clip %g: params %.3g (elementwise %.3g), moments %.3g "
           "(elementwise %.3g)\n", c->name, lr_schedule_name(s.type), (long long)s.warmup_steps,
           (long long)s.total_steps, o.weight_decay, o.max_grad_norm, ep_n, ep, em, em_el);
    adamw_free(&a);
    free(params), free(grads_all), free(grads);
}

int main(void)
{
    const char *path = GRPO_TESTS_DIR "/fixtures/rl/optim.txt";
    FILE *f = fopen(path, "r");
    if (!f) TEST_SKIP("no fixture %s (run tests/golden/make_grpo_fixtures.py)", path);
    FxCase c;
    int n = 0, rc;
    while ((rc = fx_next(f, &c, path)) == 1) {
        check_run(&c);
        fx_free(&c);
        n++;
    }
    fclose(f);
    CHECK(rc == 0 && n >= 5, "fixture %s: %d runs (malformed?)", path, n);
    printf("worst relative errors vs torch (tol %.0e): params %.3g, moments %.3g, grad norm %.3g, lr %.3g; "
           "elementwise (tol %.0e): params %.3g, moments %.3g\n", TOL_REL, worst_param, worst_moment, worst_norm,
           worst_lr, TOL_ELEM, worst_param_el, worst_moment_el);
    return test_report();
}
