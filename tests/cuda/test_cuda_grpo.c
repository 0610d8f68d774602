/* test_cuda_grpo: rollouts and GRPO steps with the model on the GPU (recipe
 * device "cuda": rl/rollout_cuda.c, rl/trainer_cuda.c) against the CPU's, on the
 * trained tiny-arith base and its real prompts, tokenizer and reward scripts.
 *
 * Rollouts (rollout_generate_on with the GPU engine vs rollout_generate):
 *  - greedy: the GPU's bf16 logits may flip a near-tie, so whole completions are
 *    compared and at least GREEDY_SAME of them must be token for token the CPU's;
 *  - sampled (T = 1, same seed): the GPU reports for each token the log-prob of its
 *    own bf16 logits; the CPU model recomputes them on the GPU's tokens
 *    (model_forward): mean |difference| <= LOGP_MEAN (test_cuda_model holds the
 *    log-probs to nmse 2e-3); logp_filtered equals logp when nothing is filtered.
 * GRPO steps (trainer.h, the tiny-arith recipe cut to 4 prompts x 4 samples):
 *  - the GPU's sampler and trainer log-probs (decode path vs training forward,
 *    both bf16) agree: mean |difference| <= LOGP_MEAN;
 *  - every step's loss and gradient norm are finite, the store holds every rollout;
 *  - the weights move as much as the CPU's (Adam's update size does not depend on
 *    the samples): ||w_2 - w_0|| within a factor 2 of the CPU run's;
 *  - beta > 0: the first step's KL to the reference (a second copy of the same
 *    weights on the GPU) is 0 to 1e-6;
 *  - resume: a run cut after step 1 and resumed (weights and AdamW moments go
 *    down to the checkpoint and back up) ends within 1e-3 (relative) of the
 *    uninterrupted run; the measured difference is printed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cuda_test.h"
#include "model/cuda/model_cuda.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "rl/dataset.h"
#include "rl/recipe.h"
#include "rl/rollout.h"
#include "rl/rollout_cuda.h"
#include "rl/runctx.h"
#include "rl/store.h"
#include "rl/trainer.h"

#define ROOT GRPO_TESTS_DIR "/.."
#define GREEDY_SAME 0.75
#define LOGP_MEAN 0.02

static char tmp[256];

typedef struct Prompts {
    int P;
    TokIds ids[8];
    const int *pp[8];
    int len[8];
} Prompts;

static void prompts_load(Prompts *p, Tokenizer *tok, int P) {
    Dataset d = {0};
    Err err = {0};
    OK(dataset_load(&d, ROOT "/recipes/tiny-arith/test.jsonl", &err));
    p->P = P;
    for (int i = 0; i < P; i++) {
        TokText text = {0};
        OK(runctx_prompt(tok, "{question}\n", d.rows[i], &text, &p->ids[i], &err));
        free(text.s);
        p->pp[i] = (const int *)p->ids[i].v, p->len[i] = (int)p->ids[i].n;
    }
    dataset_free(&d);
}

/* Log-probs of sample s's tokens under the CPU model (temperature T). */
static void cpu_logp(Model *m, const Prompts *p, const RolloutSample *s, float T, float *out) {
    const int pl = p->len[s->prompt], n = pl + s->n - 1;
    int *ids = malloc(sizeof(int) * n), *tg = malloc(sizeof(int) * n);
    float *lp = malloc(sizeof(float) * n);
    for (int k = 0; k < n; k++) ids[k] = k < pl ? p->pp[s->prompt][k] : s->tokens[k - pl], tg[k] = -1;
    for (int k = 0; k < s->n; k++) tg[pl - 1 + k] = s->tokens[k];
    Batch b = {1, n, ids, tg, NULL};
    Err err = {0};
    OK(model_forward(m, &b, T, lp, NULL, &err));
    for (int k = 0; k < s->n; k++) out[k] = lp[pl - 1 + k];
    free(ids), free(tg), free(lp);
}

static void check_rollouts(Model *m, CudaModel *g, const Prompts *p) {
    RolloutCuda *rc = rollout_cuda_new(g);
    RolloutEngine e = rollout_cuda_engine(rc);
    Err err = {0};
    RolloutOpts o = rollout_defaults();
    o.group_size = 2, o.max_new_tokens = 40, o.seed = 7, o.sampling.temperature = 0;
    RolloutResult rg, rcpu;
    OK(rollout_generate_on(&e, &m->cfg, p->P, p->pp, p->len, &o, &rg, &err));
    OK(rollout_generate(m, p->P, p->pp, p->len, &o, &rcpu, &err));
    int same = 0;
    for (int i = 0; i < rg.nsamples; i++)
        same += rg.s[i].n == rcpu.s[i].n && !memcmp(rg.s[i].tokens, rcpu.s[i].tokens, sizeof(int) * rg.s[i].n);
    printf("greedy: %d of %d GPU completions equal the CPU's token for token (%ld new tokens)\n", same, rg.nsamples,
           rg.stats.new_tokens);
    CHECK(same >= GREEDY_SAME * rg.nsamples, "greedy: only %d of %d completions equal", same, rg.nsamples);
    rollout_result_free(&rg), rollout_result_free(&rcpu);

    o.group_size = 4, o.sampling.temperature = 1.0f;
    OK(rollout_generate_on(&e, &m->cfg, p->P, p->pp, p->len, &o, &rg, &err));
    double sum = 0, worst = 0, fdiff = 0;
    long n = 0;
    float lp[64];
    for (int i = 0; i < rg.nsamples; i++) {
        const RolloutSample *s = &rg.s[i];
        CHECK(s->finish == FINISH_EOS || s->finish == FINISH_LENGTH, "sample %d finished %s", i, finish_reason_name(s->finish));
        cpu_logp(m, p, s, 1.0f, lp);
        for (int k = 0; k < s->n; k++, n++) {
            double d = fabs((double)s->logp[k] - lp[k]);
            sum += d, worst = d > worst ? d : worst;
            fdiff = fmax(fdiff, fabs((double)s->logp[k] - s->logp_filtered[k]));
        }
    }
    printf("sampled (T = 1): %ld tokens; |GPU log-prob - CPU model_forward| mean %.3g, max %.3g; "
           "|logp - logp_filtered| max %.3g\n", n, sum / n, worst, fdiff);
    CHECK(n > 0 && sum / n <= LOGP_MEAN, "sampled log-probs differ from the CPU's by %.3g on average", sum / n);
    CHECK(fdiff <= 1e-5, "nothing filtered, yet logp_filtered differs from logp by %.3g", fdiff);
    rollout_result_free(&rg);
    rollout_cuda_free(rc);
}

/* ---- GRPO steps ---------------------------------------------------------------- */

static void recipe(Recipe *r, const char *name, const char *sets) {
    char buf[4096];
    recipe_defaults(r);
    snprintf(buf, sizeof buf,
             "model=" ROOT "/recipes/tiny-arith/base;output_dir=%s/runs;name=%s;"
             "train_data=" ROOT "/recipes/tiny-arith/train.jsonl;"
             "rewards=" ROOT "/rewards/math_accuracy.lua," ROOT "/rewards/format.lua;reward_weights=1.0,0.5;"
             "prompts_per_step=4;num_generations=4;max_completion_length=32;max_prompt_length=96;micro_batch=6;"
             "learning_rate=1e-4;lr_scheduler_type=constant;threads=1;max_steps=2;%s",
             tmp, name, sets);
    Err err = {0};
    char *save = NULL;
    for (char *a = strtok_r(buf, ";", &save); a; a = strtok_r(NULL, ";", &save))
        if (*a) CHECK(recipe_set(r, a, &err) == 0, "%s", err.msg);
}

static int train(const Recipe *r, int resume, TrainerStepInfo *in) {
    static Trainer t;
    Err err = {0};
    if (trainer_open(&t, r, "test", resume, &err)) {
        CHECK(0, "trainer_open: %s", err.msg);
        return -1;
    }
    int rc = 0;
    for (long s = t.start_step; s < r->max_steps && !rc; s++) {
        rc = trainer_step(&t, s, &in[s], &err);
        CHECK(rc == 0, "%s step %ld: %s", r->name, s + 1, err.msg);
    }
    if (!rc) rc = trainer_save(&t, r->max_steps, &err);
    CHECK(rc == 0, "%s: %s", r->name, err.msg);
    trainer_close(&t);
    return rc;
}

static void model_at(Model *m, const char *run, int step) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/runs/%s/checkpoints/step-%d", tmp, run, step);
    Err err = {0};
    OK(model_load(m, dir, NULL, &err));
}

/* ||a - b|| and ||a - b|| / ||b|| over every parameter. */
static double dist(const Model *a, const Model *b, double *rel) {
    double d = 0, nb = 0;
    for (size_t i = 0; i < a->numel; i++) {
        double x = (double)a->params[i] - b->params[i];
        d += x * x, nb += (double)b->params[i] * b->params[i];
    }
    *rel = sqrt(d / nb);
    return sqrt(d);
}

static double stored(const char *run, const char *sql) {
    char db[512];
    snprintf(db, sizeof db, "%s/runs/%s/rollouts.db", tmp, run);
    Err err = {0};
    Store *st = store_open_read(db, &err);
    if (!st) return NAN;
    StoreTable *t = store_query(st, sql, &err);
    double v = t && t->nrows ? store_cell_num(t, 0, 0) : NAN;
    store_table_free(t);
    store_close(st);
    return v;
}

static void check_train(const Model *base) {
    Recipe r;
    TrainerStepInfo gi[2], ci[2];
    recipe(&r, "gpu", "device=cuda;save_dtype=f32");
    if (train(&r, 0, gi)) return;
    recipe(&r, "cpu", "device=cpu;save_dtype=f32");
    if (train(&r, 0, ci)) return;
    for (int s = 0; s < 2; s++) {
        printf("step %d: GPU reward %.3f loss %.4f grad norm %.3f, sampler-trainer log-prob diff mean %.3g max %.3g | "
               "CPU reward %.3f loss %.4f grad norm %.3f\n", s + 1, gi[s].reward_mean, gi[s].loss, gi[s].grad_norm,
               gi[s].sampler_logp_diff_mean, gi[s].sampler_logp_diff_max, ci[s].reward_mean, ci[s].loss, ci[s].grad_norm);
        CHECK(isfinite(gi[s].loss) && isfinite(gi[s].grad_norm) && gi[s].grad_norm > 0, "GPU step %d: loss %g, grad norm %g",
              s + 1, gi[s].loss, gi[s].grad_norm);
        CHECK(gi[s].sampler_logp_diff_mean <= LOGP_MEAN, "GPU step %d: sampler and trainer log-probs differ by %.3g",
              s + 1, gi[s].sampler_logp_diff_mean);
        CHECK(!gi[s].update_skipped, "GPU step %d skipped its update", s + 1);
    }
    CHECK(stored("gpu", "select count(*) from rollouts") == 32, "GPU run: 32 rollouts stored");
    Model wg = {0}, wc = {0};
    model_at(&wg, "gpu", 2), model_at(&wc, "cpu", 2);
    double rg, rc, dg = dist(&wg, base, &rg), dc = dist(&wc, base, &rc);
    printf("weights moved by %.4g (GPU) and %.4g (CPU) in 2 steps (relative %.3g, %.3g)\n", dg, dc, rg, rc);
    CHECK(dg > 0.5 * dc && dg < 2 * dc, "GPU update size %.4g vs CPU %.4g", dg, dc);

    /* cut after step 1, resumed: the GPU state goes down to the checkpoint and back */
    recipe(&r, "gpu-cut", "device=cuda;save_dtype=f32;max_steps=1");
    if (train(&r, 0, gi)) return;
    r.max_steps = 2;
    if (train(&r, 1, gi)) return;
    Model wr = {0};
    model_at(&wr, "gpu-cut", 2);
    double rr, dr = dist(&wr, &wg, &rr);
    printf("resumed GPU run vs uninterrupted: ||diff|| %.3g (relative %.3g)%s\n", dr, rr, dr == 0 ? ", bitwise equal" : "");
    CHECK(rr <= 1e-3, "resumed GPU run differs from the uninterrupted one by %.3g (relative)", rr);
    model_free(&wr), model_free(&wg), model_free(&wc);

    recipe(&r, "gpu-kl", "device=cuda;beta=0.04;max_steps=1");
    if (train(&r, 0, gi)) return;
    printf("beta > 0 on the GPU: first step's KL %.3g\n", gi[0].kl);
    CHECK(fabs(gi[0].kl) <= 1e-6, "first step's KL to an identical reference: %g", gi[0].kl);
}

int main(void) {
    CUDA_TEST_REQUIRE_GPU();
    snprintf(tmp, sizeof tmp, "/tmp/grpo-cuda-grpo-%d", (int)getpid());
    Err err = {0};
    Model m = {0};
    OK(model_load(&m, ROOT "/recipes/tiny-arith/base", NULL, &err));
    Tokenizer *tok = tok_load(ROOT "/recipes/tiny-arith/tokenizer.json", &err);
    if (!tok) op_failed("tok_load", &err);
    Prompts p;
    prompts_load(&p, tok, 6);
    CudaModel *g = cuda_model_new(&m, &err);
    if (!g) op_failed("cuda_model_new", &err);
    check_rollouts(&m, g, &p);
    cuda_model_free(g);
    check_train(&m);
    for (int i = 0; i < p.P; i++) tok_ids_free(&p.ids[i]);
    tok_free(tok);
    model_free(&m);
    test_sh("rm -rf %s", tmp);
    return test_report();
}
