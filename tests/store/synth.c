/* synth: see synth.h. Deterministic: a hash of the indices, no global state. */
#include "synth.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double u01(uint64_t a, uint64_t b, uint64_t c, uint64_t salt) {
    uint64_t z = a * 0x9E3779B97F4A7C15ull ^ b * 0xC2B2AE3D27D4EB4Full ^ c * 0x165667B19E3779F9ull ^
                 salt * 0x27D4EB2F165667C5ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

void synth_rollouts(const SynthCfg *cfg, long step, SynthRollout *out) {
    double p_correct = 1 - 0.8 * exp(-step / 15.0);
    for (int p = 0; p < cfg->prompts; p++) {
        int a = (int)(u01(step, p, 0, 1) * 90) + 10, b = (int)(u01(step, p, 0, 2) * 90) + 10;
        double sum = 0, sum2 = 0;
        int n = 0;
        for (int g = 0; g < cfg->group; g++) {
            SynthRollout *s = &out[p * cfg->group + g];
            memset(s, 0, sizeof *s);
            int correct = u01(step, p, g, 3) < p_correct;
            /* every 7th prompt is easy: all correct, a zero-variance group */
            if ((step * cfg->prompts + p) % 7 == 0) correct = 1;
            int tokens = 20 + (int)(step / 2) + (int)(u01(step, p, g, 4) * 30);
            snprintf(s->prompt, sizeof s->prompt,
                     "Synthetic prompt %ld/%d: what is %d + %d? Answer in <answer></answer> & \"quote\".",
                     step, p, a, b);
            snprintf(s->completion, sizeof s->completion,
                     "<think>synthetic reasoning, %d tokens: %d + %d \xc3\xa9tape%s</think>"
                     "<answer>%d</answer>",
                     tokens, a, b, g == 1 ? " \x01 ctl" : "", correct ? a + b : a + b + 1);
            s->r = (StoreRollout){
                .prompt_index = p, .sample_index = g, .dataset_index = (step * cfg->prompts + p) % 1000,
                .prompt = s->prompt, .completion = s->completion, .prompt_tokens = 24 + p % 5,
                .completion_tokens = tokens, .finish_reason = tokens > 60 ? "length" : "stop",
                .logprob_sum = -0.5 * tokens * (1 + u01(step, p, g, 5))};
            double fmt = u01(step, p, g, 6) < 0.9 ? 1.0 : 0.0;
            s->rewards[0] = (StoreReward){"accuracy", correct ? 1.0 : 0.0, NULL};
            s->rewards[1] = (StoreReward){"format", fmt, NULL};
            if ((step + p + g) % 37 == 0) {  /* a reward script that failed: NULL + error */
                snprintf(s->error, sizeof s->error, "synthetic: format.lua:3: attempt to index nil");
                s->rewards[1].value = NAN;
                s->rewards[1].error = s->error;
                fmt = 0;  /* TRL: nansum over the functions */
            }
            s->r.reward = s->rewards[0].value + 0.5 * fmt;
            sum += s->r.reward, sum2 += s->r.reward * s->r.reward, n++;
        }
        double mean = sum / n, var = n > 1 ? (sum2 - n * mean * mean) / (n - 1) : 0;
        double sd = sqrt(var > 0 ? var : 0);
        for (int g = 0; g < cfg->group; g++) {  /* TRL "group" scaling */
            SynthRollout *s = &out[p * cfg->group + g];
            s->r.advantage = (s->r.reward - mean) / (sd + 1e-4);
        }
    }
}

void synth_metrics(const SynthCfg *cfg, long step, const char **names, double *values) {
    static const char *const n[SYNTH_NMETRICS] = {
        "reward", "reward_std", "frac_reward_zero_std", "completions/mean_length", "kl", "entropy",
        "clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean", "grad_norm",
        "learning_rate", "loss", "num_tokens", "step_time", "tokens_per_s", "timing_s/rollout",
        "timing_s/reward", "timing_s/train", "timing_s/store"};
    double s = (double)step;
    double lr = s < 5 ? 1e-6 * (s + 1) / 5 : 1e-6 * 0.5 * (1 + cos(M_PI * fmin(s / 200, 1)));
    double v[SYNTH_NMETRICS] = {
        0.3 + 0.01 * s, 0.4 - 0.001 * s, 0.1 + 0.002 * s, 35 + 0.5 * s, 0.001 * s * (1 + 0.1 * sin(s)),
        2.0 - 0.01 * s, 0.001 * (1 + sin(s)), 0.002 * (1 + cos(s)), 0.003 + 0.0001 * s,
        1.5 + 0.3 * sin(s / 3), lr, 0.01 * cos(s), 4096 + 32 * s, 2.0 + 0.1 * sin(s),
        2048 - 3 * s, 1.2 + 0.05 * sin(s), 0.3, 0.45 + 0.02 * cos(s), 0.002};
    /* the numbers a trainer computes from the step's rollouts, as TRL logs them */
    int nr = cfg->prompts * cfg->group;
    SynthRollout *ro = malloc(nr * sizeof *ro);
    synth_rollouts(cfg, step, ro);
    double sum = 0, len = 0, gstd = 0, zero = 0;
    for (int p = 0; p < cfg->prompts; p++) {
        double m = 0, m2 = 0, lo = INFINITY, hi = -INFINITY;
        for (int g = 0; g < cfg->group; g++) {
            double r = ro[p * cfg->group + g].r.reward;
            m += r, m2 += r * r, len += ro[p * cfg->group + g].r.completion_tokens;
            lo = fmin(lo, r), hi = fmax(hi, r);
        }
        sum += m;
        m /= cfg->group;
        double var = cfg->group > 1 ? (m2 - cfg->group * m * m) / (cfg->group - 1) : 0;
        gstd += sqrt(var > 0 ? var : 0);
        zero += lo == hi;
    }
    v[0] = sum / nr, v[1] = gstd / cfg->prompts, v[2] = zero / cfg->prompts, v[3] = len / nr;
    free(ro);
    for (int i = 0; i < SYNTH_NMETRICS; i++) names[i] = n[i], values[i] = v[i];
}

long synth_router_tokens(long step, int layer, int expert) {
    /* skewed: low experts busier, drifting with the step */
    return (long)(200 * u01(step, layer, expert, 7) + (expert < 4 ? 300 : 0) + (expert == (step % 16) ? 150 : 0));
}

int synth_write_step(Store *st, const SynthCfg *cfg, long step, Err *err) {
    int n = cfg->prompts * cfg->group;
    SynthRollout *ro = malloc(n * sizeof *ro);
    int64_t *load = malloc((size_t)cfg->nlayers * cfg->nexperts * sizeof *load);
    const char *names[SYNTH_NMETRICS];
    double values[SYNTH_NMETRICS];
    int rc = -1;
    synth_rollouts(cfg, step, ro);
    synth_metrics(cfg, step, names, values);
    for (int l = 0; l < cfg->nlayers; l++)
        for (int e = 0; e < cfg->nexperts; e++)
            load[l * cfg->nexperts + e] = synth_router_tokens(step, l + 1, e);
    if (store_step_begin(st, step, err)) goto done;
    for (int i = 0; i < SYNTH_NMETRICS; i++)
        if (store_metric(st, names[i], values[i], err)) goto done;
    for (int i = 0; i < n; i++)
        if (store_rollout(st, &ro[i].r, ro[i].rewards, SYNTH_NREWARDS, err)) goto done;
    if (cfg->nlayers && store_router_load(st, 1, cfg->nlayers, cfg->nexperts, load, err)) goto done;
    rc = store_step_commit(st, err);
done:
    free(ro);
    free(load);
    return rc;
}

int synth_write_run(const char *db, const char *name, const SynthCfg *cfg, Err *err) {
    Store *st = store_open(db, err);
    if (!st) return -1;
    StoreRun run = {.name = name, .model = "synthetic (no model)", .recipe_path = "synthetic.lua",
                    .recipe = "-- SYNTHETIC run written by tests/store/synth.c, not a training run\n"
                              "return { model = 'none', rewards = {'accuracy', 'format'} }\n"};
    int rc = store_run_record(st, &run, -1, err);
    for (long s = 0; !rc && s < cfg->steps; s++) {
        rc = synth_write_step(st, cfg, s, err);
        if (!rc && cfg->eval_every && s % cfg->eval_every == 0)
            rc = store_eval(st, s, "synthetic-gsm8k", "accuracy", 0.2 + 0.6 * (1 - exp(-s / 15.0)),
                            200, err);
    }
    store_close(st);
    return rc;
}
