/* test_trainer: the trainer's wiring, driven in-process through trainer.h on a
 * random tiny model (tokenizer and data of the tiny-arith demo):
 *  - beta > 0: the first step's KL to the reference is exactly 0 (ref ==
 *    policy), it is positive after a few steps and stored as "kl"; with the
 *    reference re-synced every step with alpha = 1 every step's KL is 0;
 *  - mu = 1: the ratio is exactly 1 and the trainer's log-probs equal the
 *    sampler's within TOL (below); mu = 2: the stored old log-probs equal the
 *    sampler's within TOL and the second pass sees a ratio != 1 and a clip metric;
 *  - DAPO dynamic sampling: zero-std groups dropped, the batch refilled, the
 *    counts stored, max_num_gen_batches honoured, and --resume still exact;
 *  - stop strings: the stored and rewarded text ends before the stop string.
 *
 * TOL: the sampler computes its log-probs from the decode path (absorbed MLA
 * over the latent cache, one token at a time) while the trainer recomputes
 * them with the training forward (full attention over the sequence). The two
 * are the same maths in a different float summation order, so they agree to
 * rounding, not bitwise (test_rollout: the sampler's log-prob is bitwise
 * model_forward's on the same logits). 1e-4 is test_rollout's bound for the
 * same comparison; the measured worst is printed. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rl/recipe.h"
#include "rl/store.h"
#include "rl/trainer.h"
#include "test.h"

#define TOL 1e-4

static char tmp[256];

static double query(const char *name, const char *sql) {
    char db[512];
    snprintf(db, sizeof db, "%s/runs/%s/rollouts.db", tmp, name);
    Err err = {0};
    Store *st = store_open_read(db, &err);
    if (!st) return NAN;
    StoreTable *t = store_query(st, sql, &err);
    double v = t && t->nrows ? store_cell_num(t, 0, 0) : NAN;
    store_table_free(t);
    store_close(st);
    return v;
}

/* A recipe: the common settings, then ';'-separated overrides. */
static void recipe(Recipe *r, const char *name, const char *sets) {
    char buf[4096];
    recipe_defaults(r);
    snprintf(buf, sizeof buf,
             "model=%s/init;output_dir=%s/runs;name=%s;tokenizer=" GRPO_TESTS_DIR "/../recipes/tiny-arith;"
             "train_data=" GRPO_TESTS_DIR "/../recipes/tiny-arith/train.jsonl;rewards=%s/signal.lua;"
             "prompts_per_step=2;num_generations=4;max_completion_length=12;max_prompt_length=96;micro_batch=5;"
             "learning_rate=1e-2;lr_scheduler_type=constant;threads=1;max_steps=3;%s",
             tmp, tmp, name, tmp, sets);
    Err err = {0};
    char *save = NULL;
    for (char *a = strtok_r(buf, ";", &save); a; a = strtok_r(NULL, ";", &save))
        if (*a) CHECK(recipe_set(r, a, &err) == 0, "%s", err.msg);
}

/* Runs the recipe's steps from the trainer's start; in[] gets one entry per step. */
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
        CHECK(rc == 0, "step %ld: %s", s + 1, err.msg);
    }
    if (!rc) rc = trainer_save(&t, r->max_steps, &err);
    trainer_close(&t);
    return rc;
}

static void check_kl(void) {
    Recipe r;
    TrainerStepInfo in[4];
    char sets[600];
    snprintf(sets, sizeof sets, "beta=0.04;max_steps=4;rewards=%s/parity.lua", tmp);
    recipe(&r, "kl", sets);
    if (train(&r, 0, in)) return;
    printf("kl per step: %g %g %g %g\n", in[0].kl, in[1].kl, in[2].kl, in[3].kl);
    CHECK(in[0].kl == 0.0, "first step's KL %.9g, not exactly 0 (ref == policy)", in[0].kl);
    CHECK(in[3].kl > 0 && isfinite(in[3].kl), "KL after 3 updates %.9g, not positive", in[3].kl);
    CHECK(query("kl", "select count(*) from metrics where name = 'kl'") == 4, "kl stored every step");
    CHECK(query("kl", "select value from metrics where name = 'kl' and step = 3") == in[3].kl, "stored kl");
    /* re-synced with alpha = 1 after every step: the reference is the policy again */
    recipe(&r, "kl-sync", "beta=0.04;max_steps=3;sync_ref_model=true;ref_model_sync_steps=1;ref_model_mixup_alpha=1");
    if (train(&r, 0, in)) return;
    CHECK(in[0].kl == 0 && in[1].kl == 0 && in[2].kl == 0, "synced KL %g %g %g", in[0].kl, in[1].kl, in[2].kl);
    CHECK(test_sh("test -f %s/runs/kl-sync/checkpoints/step-3/ref/model.safetensors", tmp) == 0, "re-synced ref saved");
    /* alpha = 0.5 every 2 steps: the KL after the sync is positive but resume is exact */
    recipe(&r, "kl-full", "beta=0.04;max_steps=4;sync_ref_model=true;ref_model_sync_steps=2;ref_model_mixup_alpha=0.5");
    if (train(&r, 0, in)) return;
    recipe(&r, "kl-cut", "beta=0.04;max_steps=2;sync_ref_model=true;ref_model_sync_steps=2;ref_model_mixup_alpha=0.5");
    if (train(&r, 0, in)) return;
    r.max_steps = 4;
    if (train(&r, 1, in)) return;
    CHECK(test_sh("cmp -s %s/runs/kl-full/checkpoints/step-4/model.safetensors %s/runs/kl-cut/checkpoints/step-4/model.safetensors",
             tmp, tmp) == 0, "beta > 0 with a re-synced reference: resume is bitwise exact");
}

static void check_ratio(void) {
    Recipe r;
    TrainerStepInfo in[3];
    recipe(&r, "mu1", "");
    if (train(&r, 0, in)) return;
    double worst = 0;
    for (int s = 0; s < 3; s++) {
        CHECK(in[s].ratio_mean_last == 1.0, "mu = 1, step %d: ratio mean %.17g", s + 1, in[s].ratio_mean_last);
        CHECK(in[s].clip_region_last == 0, "mu = 1: clipped tokens");
        worst = fmax(worst, in[s].sampler_logp_diff_max);
    }
    printf("mu = 1: max |sampler log-prob - trainer log-prob| = %.3g (mean %.3g)\n", worst, in[0].sampler_logp_diff_mean);
    CHECK(worst <= TOL, "trainer log-probs differ from the sampler's by %.3g", worst);
    CHECK(query("mu1", "select max(value) from metrics where name = 'sampler_logp_diff/max'") == worst, "stored diff");
    /* mu = 2 with a large step so the second pass moves off ratio 1 */
    char sets[600];
    snprintf(sets, sizeof sets, "num_iterations=2;learning_rate=5e-2;epsilon=0.01;epsilon_high=0.01;rewards=%s/parity.lua", tmp);
    recipe(&r, "mu2", sets);
    if (train(&r, 0, in)) return;
    worst = 0;
    for (int s = 0; s < 3; s++) worst = fmax(worst, in[s].sampler_logp_diff_max);
    printf("mu = 2: old log-probs vs sampler max %.3g; last pass ratio %.6f %.6f %.6f, clipped %.3f %.3f %.3f\n", worst,
           in[0].ratio_mean_last, in[1].ratio_mean_last, in[2].ratio_mean_last, in[0].clip_region_last,
           in[1].clip_region_last, in[2].clip_region_last);
    CHECK(worst <= TOL, "stored old log-probs differ from the sampler's by %.3g", worst);
    int moved = 0, clipped = 0;
    for (int s = 0; s < 3; s++) moved += in[s].ratio_mean_last != 1.0, clipped += in[s].clip_region_last > 0;
    CHECK(moved == 3, "second pass ratio stayed 1 in %d steps", 3 - moved);
    CHECK(clipped > 0, "no clipped token in any second pass");
    CHECK(query("mu2", "select count(*) from metrics where name = 'clip_ratio/region_mean' and value > 0") > 0,
          "clip metric stored");
}

static void check_dynamic(void) {
    Recipe r;
    TrainerStepInfo in[3];
    recipe(&r, "dyn", "dynamic_sampling=true;prompts_per_step=3");
    if (train(&r, 0, in)) return;
    int dropped = 0, rounds = 0;
    for (int s = 0; s < 3; s++) {
        dropped += in[s].groups_dropped, rounds += in[s].gen_rounds;
        CHECK(in[s].prompts == 3, "step %d trained on %d groups", s + 1, in[s].prompts);
    }
    printf("dynamic sampling: %d groups dropped, %d rounds in 3 steps\n", dropped, rounds);
    CHECK(dropped > 0 && rounds > 3, "dropped %d, rounds %d", dropped, rounds);
    CHECK(query("dyn", "select count(*) from (select step, prompt_index from rollouts group by 1, 2 "
                       "having min(reward) = max(reward))") == 0, "a stored group has no reward signal");
    CHECK(query("dyn", "select sum(value) from metrics where name = 'dynamic_sampling/groups_dropped'") == dropped,
          "groups_dropped stored");
    CHECK(query("dyn", "select sum(value) from metrics where name = 'dynamic_sampling/gen_rounds'") == rounds,
          "gen_rounds stored");
    /* one round at most: fewer groups when that round had zero-std ones */
    recipe(&r, "dyn1", "dynamic_sampling=true;prompts_per_step=3;max_num_gen_batches=1");
    if (train(&r, 0, in)) return;
    int short_steps = 0;
    for (int s = 0; s < 3; s++) {
        CHECK(in[s].gen_rounds == 1, "max_num_gen_batches=1 ran %d rounds", in[s].gen_rounds);
        short_steps += in[s].prompts < 3;
    }
    CHECK(short_steps > 0, "no step had a dropped group at max_num_gen_batches = 1");
    /* resume stays exact */
    recipe(&r, "dyn-cut", "dynamic_sampling=true;prompts_per_step=3;max_steps=1");
    if (train(&r, 0, in)) return;
    r.max_steps = 3;
    if (train(&r, 1, in)) return;
    CHECK(test_sh("cmp -s %s/runs/dyn/checkpoints/step-3/model.safetensors %s/runs/dyn-cut/checkpoints/step-3/model.safetensors",
             tmp, tmp) == 0, "dynamic sampling: resumed weights differ");
    CHECK(test_sh("for r in dyn dyn-cut; do sqlite3 %s/runs/$r/rollouts.db 'select step, prompt_index, sample_index, "
             "completion, reward, advantage from rollouts order by 1,2,3' > %s/$r.txt; done; cmp -s %s/dyn.txt %s/dyn-cut.txt",
             tmp, tmp, tmp, tmp) == 0, "dynamic sampling: resumed rollouts differ");
}

static void check_stop(void) {
    Recipe r;
    TrainerStepInfo in[3];
    char sets[600];
    snprintf(sets, sizeof sets, "stop=e,o;rewards=%s/has_stop.lua", tmp);
    recipe(&r, "stop", sets);
    if (train(&r, 0, in)) return;
    double nstop = query("stop", "select count(*) from rollouts where finish_reason = 'stop'");
    printf("stop strings: %g of 24 completions stopped\n", nstop);
    CHECK(nstop > 0, "no completion stopped on 'e' or 'o'");
    CHECK(query("stop", "select count(*) from rollouts where finish_reason = 'stop' and "
                        "(instr(completion, 'e') > 0 or instr(completion, 'o') > 0)") == 0,
          "a stored completion holds its stop string");
    CHECK(query("stop", "select count(*) from rewards w join rollouts o on o.id = w.rollout_id "
                        "where o.finish_reason = 'stop' and w.value != 0") == 0,
          "a reward saw the stop string");
    CHECK(query("stop", "select min(completion_tokens) from rollouts where finish_reason = 'stop'") >= 1,
          "trained tokens kept (the stop token counts)");
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/grpo-trainer-%d", (int)getpid());
    CHECK(test_sh("mkdir -p %s && %s init --config %s/../recipes/models/dsv3-tiny-1m.json --out %s/init --seed 3 > /dev/null",
             tmp, GRPO_BIN, GRPO_TESTS_DIR, tmp) == 0, "grpo init");
    /* reward with signal in some groups only: constant for questions of even
     * length, the completion's length parity otherwise */
    FILE *f = fopen(strcat(strcpy((char[300]){0}, tmp), "/signal.lua"), "w");
    fprintf(f, "return { name = \"signal\", score = function(s)\n"
               "  if #s.question %% 2 == 0 then return 0.0 end\n"
               "  return (#s.completion %% 2) * 1.0 end }\n");
    fclose(f);
    f = fopen(strcat(strcpy((char[300]){0}, tmp), "/parity.lua"), "w");
    fprintf(f, "return { name = \"parity\", score = function(s) return (#s.completion %% 2) * 1.0 end }\n");
    fclose(f);
    f = fopen(strcat(strcpy((char[300]){0}, tmp), "/has_stop.lua"), "w");
    fprintf(f, "return { name = \"has_stop\", score = function(s)\n"
               "  if s.finish_reason == \"stop\" and (s.completion:find(\"e\", 1, true) or s.completion:find(\"o\", 1, true))"
               " then return 1.0 end\n  return 0.0 end }\n");
    fclose(f);
    check_kl();
    check_ratio();
    check_dynamic();
    check_stop();
    if (!test_failed_ && !getenv("GRPO_TEST_KEEP")) test_sh("rm -rf %s", tmp); /* else kept for a look */
    return test_report();
}
