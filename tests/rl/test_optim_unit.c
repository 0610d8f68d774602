/* test_optim_unit: rl/optim on a real model's parameter table (the tiny
 * DeepSeek-V3 config): frozen tensors untouched, a NaN/inf gradient makes the
 * step a no-op, save -> load -> continue is bitwise identical to an
 * uninterrupted run, damaged state files are refused with a message, and the
 * router bias moves against the load. The numerics against torch are in
 * test_optim_golden.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rl/optim.h"
#include "test.h"

static uint64_t rng = 12345;

static float frand(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) / 16777216.0) - 0.5f;
}

static void fill_grads(Model *m, int step)
{
    rng = 1000 + (uint64_t)step;
    for (size_t i = 0; i < m->numel; i++) m->grads[i] = frand() * (step % 2 ? 3.0f : 0.01f);
}

static void run_steps(Model *m, AdamW *a, int from, int to)
{
    LrSchedule s = {LR_COSINE, 1e-3, 2, 8, 0.5, 0};
    for (int step = from; step < to; step++) {
        fill_grads(m, step);
        adamw_step(a, m->params, m->grads, lr_schedule_at(&s, step), NULL);
    }
}

static int load_model(Model *m, Err *err)
{
    ModelConfig cfg;
    if (config_load(&cfg, GRPO_SHARED_DIR "/reference/tiny-configs/dsv3-tiny-1m.json", err)) return -1;
    ModelOpts mo = {0};
    if (model_create(m, &cfg, &mo, err)) return -1;
    model_init_random(m, 7, 0.02f);
    model_alloc_grads(m);
    return 0;
}

static void test_frozen_and_nan(Model *m)
{
    Err err = {0};
    AdamWOpts o;
    adamw_opts_default(&o);
    o.weight_decay = 0.1;
    AdamW a;
    CHECK(adamw_init(&a, &o, m->ptab, m->nparams, m->numel, &err) == 0, "%s", err.msg);
    float *before = malloc(sizeof(float) * m->numel);
    memcpy(before, m->params, sizeof(float) * m->numel);
    run_steps(m, &a, 0, 3);
    int frozen = 0, frozen_same = 1, decay_hf = 0, decay_mat = 0;
    for (int i = 0; i < m->nparams; i++) {
        const Param *p = &m->ptab[i];
        decay_hf += optim_decays(p, OPTIM_DECAY_HF);
        decay_mat += optim_decays(p, OPTIM_DECAY_MATRICES);
        if (p->trainable) continue;
        frozen++;
        frozen_same &= memcmp(before + p->offset, m->params + p->offset, sizeof(float) * p->numel) == 0;
    }
    CHECK(frozen > 0 && frozen_same, "%d frozen tensors, untouched: %d", frozen, frozen_same);
    CHECK(decay_hf == decay_mat, "tiny V3 (no MTP): HF name rule decays %d tensors, ndim>=2 rule %d", decay_hf,
          decay_mat);

    /* a NaN in one trainable gradient: nothing moves */
    float *p0 = malloc(sizeof(float) * m->numel), *m0 = malloc(sizeof(float) * m->numel);
    float *g0 = malloc(sizeof(float) * m->numel);
    memcpy(p0, m->params, sizeof(float) * m->numel);
    memcpy(m0, a.m, sizeof(float) * m->numel);
    fill_grads(m, 5);
    const Param *victim = model_find_param(m, "model.layers.1.self_attn.kv_b_proj.weight");
    CHECK(victim != NULL, "no kv_b_proj in the tiny model");
    if (!victim) victim = &m->ptab[0];
    m->grads[victim->offset + 3] = NAN;
    m->grads[victim->offset + 4] = INFINITY;
    memcpy(g0, m->grads, sizeof(float) * m->numel);
    int64_t step0 = a.step;
    AdamWStepInfo info;
    CHECK(adamw_step(&a, m->params, m->grads, 1e-3, &info) == 1 && info.skipped, "NaN step not skipped");
    CHECK(info.nonfinite == 2 && strcmp(info.bad_param, victim->name) == 0, "reported %zu in '%s'",
          info.nonfinite, info.bad_param);
    CHECK(memcmp(p0, m->params, sizeof(float) * m->numel) == 0 && memcmp(m0, a.m, sizeof(float) * m->numel) == 0 &&
              memcmp(g0, m->grads, sizeof(float) * m->numel) == 0 && a.step == step0 && a.nskipped == 1,
          "a skipped step touched the weights, moments, gradients or step");
    /* a NaN in a frozen tensor's gradient is not ours to judge */
    fill_grads(m, 6);
    for (int i = 0; i < m->nparams; i++)
        if (!m->ptab[i].trainable) m->grads[m->ptab[i].offset] = NAN;
    CHECK(adamw_step(&a, m->params, m->grads, 1e-3, &info) == 0, "NaN in a frozen gradient skipped the step");
    free(before), free(p0), free(m0), free(g0);
    adamw_free(&a);
}

/* 8 steps straight vs 4 steps, save, fresh optimizer + load, 4 more. */
static void test_resume(Model *m)
{
    Err err = {0};
    AdamWOpts o;
    adamw_opts_default(&o);
    o.weight_decay = 0.01;
    float *start = malloc(sizeof(float) * m->numel), *straight = malloc(sizeof(float) * m->numel);
    memcpy(start, m->params, sizeof(float) * m->numel);
    AdamW a, b;
    adamw_init(&a, &o, m->ptab, m->nparams, m->numel, &err);
    run_steps(m, &a, 0, 8);
    memcpy(straight, m->params, sizeof(float) * m->numel);
    float *mv = malloc(sizeof(float) * m->numel * 2);
    memcpy(mv, a.m, sizeof(float) * m->numel);
    memcpy(mv + m->numel, a.v, sizeof(float) * m->numel);
    adamw_free(&a);

    char path[] = "/tmp/grpo-optim-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    memcpy(m->params, start, sizeof(float) * m->numel);
    adamw_init(&a, &o, m->ptab, m->nparams, m->numel, &err);
    run_steps(m, &a, 0, 4);
    CHECK(adamw_save(&a, path, &err) == 0, "%s", err.msg);
    adamw_free(&a);
    adamw_init(&b, &o, m->ptab, m->nparams, m->numel, &err);
    CHECK(adamw_load(&b, path, &err) == 0, "%s", err.msg);
    CHECK(b.step == 4, "loaded step %lld", (long long)b.step);
    run_steps(m, &b, 4, 8);
    CHECK(memcmp(straight, m->params, sizeof(float) * m->numel) == 0 &&
              memcmp(mv, b.m, sizeof(float) * m->numel) == 0 &&
              memcmp(mv + m->numel, b.v, sizeof(float) * m->numel) == 0,
          "resumed run differs from the uninterrupted one");

    /* damaged files: a flipped byte, a truncation, another model, not ours */
    FILE *f = fopen(path, "r+b");
    fseek(f, 200, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 200, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
    CHECK(adamw_load(&b, path, &err) == -1 && strstr(err.msg, "checksum"), "flipped byte: %s", err.msg);
    CHECK(truncate(path, 1000) == 0, "truncate");
    CHECK(adamw_load(&b, path, &err) == -1 && strstr(err.msg, "truncated"), "truncated: %s", err.msg);
    adamw_save(&b, path, &err);
    AdamW small;
    adamw_init(&small, &o, m->ptab, 1, m->ptab[0].numel, &err);
    CHECK(adamw_load(&small, path, &err) == -1 && err.code == ERR_INPUT && strstr(err.msg, "parameters"),
          "wrong size: %s", err.msg);
    adamw_free(&small);
    f = fopen(path, "wb");
    fputs("{\"not\": \"an optimizer state\"}", f);
    fclose(f);
    CHECK(adamw_load(&b, path, &err) == -1 && strstr(err.msg, "magic"), "not ours: %s", err.msg);
    remove(path);
    CHECK(adamw_load(&b, "/nonexistent/state.bin", &err) == -1 && strstr(err.msg, "/nonexistent"), "%s",
          err.msg);
    adamw_free(&b);
    free(start), free(straight), free(mv);
}

static void test_router_bias(Model *m)
{
    int L = m->cfg.num_hidden_layers, E = m->cfg.n_routed_experts;
    int64_t *load = calloc((size_t)L * E, sizeof *load);
    for (int l = 0; l < L; l++)
        for (int e = 0; e < E; e++) m->router_load[l * E + e] = (e * 7 + l) % 5; /* some ties with the mean */
    optim_router_load_add(load, m);
    optim_router_load_add(load, m); /* two forwards in the step */
    float *before = malloc(sizeof(float) * m->numel);
    memcpy(before, m->params, sizeof(float) * m->numel);
    float gamma = 1e-3f;
    int nl = optim_router_bias_update_model(m, load, gamma), moe = 0, ok = 1;
    for (int l = 0; l < L; l++) {
        float *bias = m->layers[l].router_bias;
        if (!bias) continue;
        moe++;
        double mean = 0;
        for (int e = 0; e < E; e++) mean += load[l * E + e];
        mean /= E;
        for (int e = 0; e < E; e++) {
            float b0 = before[bias - m->params + e], b1 = bias[e];
            double d = load[l * E + e] - mean;
            ok &= d > 0 ? b1 == b0 - gamma : (d < 0 ? b1 == b0 + gamma : b1 == b0);
        }
    }
    CHECK(moe > 0 && nl == moe, "updated %d of %d MoE layers", nl, moe);
    CHECK(ok, "overloaded experts must lose gamma, underloaded gain it, average ones stay");
    free(load), free(before);
}

static void test_schedule(void)
{
    Err err = {0};
    LrSchedType t;
    CHECK(lr_schedule_parse("cosine_with_restarts", &t, &err) == -1 && err.code == ERR_INPUT, "%s", err.msg);
    LrSchedule s = {LR_LINEAR, 1.0, 4, 10, 0.5, 0};
    CHECK(lr_schedule_at(&s, 0) == 0 && lr_schedule_at(&s, 2) == 0.5 && lr_schedule_at(&s, 4) == 1.0 &&
              lr_schedule_at(&s, 10) == 0 && lr_schedule_at(&s, 12) == 0,
          "linear warmup/decay endpoints");
    s.type = LR_CONSTANT;
    CHECK(lr_schedule_at(&s, 0) == 1.0, "constant ignores warmup (as HF)");
    CHECK(lr_warmup_steps(0.1, 95) == 10, "warmup_ratio rounds up");
}

int main(void)
{
    Model m;
    Err err = {0};
    if (load_model(&m, &err)) TEST_SKIP("tiny config not available: %s", err.msg);
    test_frozen_and_nan(&m);
    test_resume(&m);
    test_router_bias(&m);
    test_schedule();
    model_free(&m);
    return test_report();
}
