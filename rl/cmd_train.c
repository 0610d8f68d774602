/* cmd_train: `grpo train RECIPE.lua`: the command line and the progress line
 * around the GRPO loop of rl/trainer.c (one trainer_step per step, a
 * checkpoint every save_steps and at the end). It does not train anything
 * itself: see trainer.h for what a step does. */
#include <math.h>
#include <omp.h>
#include <stdio.h>

#include "base/clock.h"
#include "cli.h"
#include "cmd.h"
#include "runctx.h"
#include "train_eval.h"
#include "trainer.h"
#include "trainer_cuda.h"

int cmd_train(int argc, char **argv) {
    CliOpt opts[] = {{"--set", "KEY=VALUE[;KEY=VALUE...]", "", "override recipe fields (';'-separated)", 0},
                     {"--device", "cpu|cuda", "", "where the model runs (the recipe's device field; cuda: rollouts, training\n"
                      "and AdamW on the GPU, docs/cuda.md)", 0},
                     {"--resume", NULL, NULL, "continue from the run's latest checkpoint (exactly)", 0},
                     {"--help-recipe", NULL, NULL, "list every recipe field with its default", 0},
                     {0}};
    CliSpec spec = {"grpo train RECIPE.lua [--set key=value] [--device cpu|cuda] [--resume]",
                    "GRPO: sample num_generations completions per prompt, score them with the recipe's Lua\n"
                    "rewards, update the model with group-relative advantages; every rollout goes to\n"
                    "output_dir/name/rollouts.db. Recipe fields: grpo train --help-recipe (or docs/recipes.md).",
                    opts, 0, 1};
    const char *pos[1];
    int npos, rc = cli_parse(&spec, argc, argv, pos, &npos);
    if (rc) return rc == CLI_HELP ? 0 : 2;
    if (cli_flag(&spec, "--help-recipe")) { recipe_help(stdout); return 0; }
    if (npos != 1) { fprintf(stderr, "usage: %s\n", spec.usage); return 2; }
    static Trainer t;
    static Recipe r;
    Err err = {0};
    recipe_defaults(&r);
    if (recipe_load(&r, pos[0], &err)) goto fail;
    if (runctx_set_recipe(&r, cli_str(&spec, "--set"), &err)) goto fail;
    const char *dev = cli_str(&spec, "--device");
    if (dev && dev[0]) snprintf(r.device, sizeof r.device, "%s", dev); /* checked with the recipe */
    if (r.threads > 0) omp_set_num_threads(r.threads);
    if (trainer_open(&t, &r, pos[0], cli_flag(&spec, "--resume"), &err)) goto fail;
    const long start = t.start_step;
    double t_start = clock_now();
    printf("grpo train: %s, %d steps x %d prompts x %d samples, %s loss, lr %g%s, run %s%s, on %s\n", t.r.model,
           t.r.max_steps, t.r.prompts_per_step, t.r.num_generations, t.r.loss_type, t.r.learning_rate,
           t.has_ref ? ", KL to a reference" : "", t.rundir, start ? " (resumed)" : "",
           t.cuda ? trainer_cuda_device(t.cuda) : "the CPU");
    if (train_eval_hook(&t, start, &err)) goto fail; /* eval_data: the model before training */
    for (long step = start; step < t.r.max_steps; step++) {
        TrainerStepInfo in;
        if (trainer_step(&t, step, &in, &err)) goto fail;
        double el = clock_now() - t_start, eta = el / (step + 1 - start) * (t.r.max_steps - step - 1);
        char kl[32] = "";
        if (t.has_ref) snprintf(kl, sizeof kl, "  kl %.4f", in.kl);
        runctx_progress(stdout, step + 1 == t.r.max_steps,
                        "step %ld/%d  reward %.3f  accuracy %.3f  length %.1f%s  entropy %.3f  clip %.3f  %.0f tok/s  "
                        "[rollout %.1fs reward %.2fs train %.1fs log %.3fs]  ETA %.0fs",
                        step + 1, t.r.max_steps, in.reward_mean, in.accuracy, in.mean_length, kl,
                        isnan(in.entropy) ? 0 : in.entropy, in.clip_region, in.tokens_per_s, in.t_rollout, in.t_reward,
                        in.t_train, in.t_log, eta);
        /* after-step hooks */
        if (train_eval_hook(&t, step + 1, &err)) goto fail; /* eval_data: every eval_steps and at the end */
        if ((t.r.save_steps > 0 && (step + 1) % t.r.save_steps == 0) || step + 1 == t.r.max_steps)
            if (trainer_save(&t, step + 1, &err)) goto fail;
    }
    printf("grpo train: done in %.1f s; checkpoint %s/checkpoints/step-%d, rollouts %s/rollouts.db\n",
           clock_now() - t_start, t.rundir, t.r.max_steps, t.rundir);
    trainer_close(&t);
    return 0;
fail:
    fprintf(stderr, "grpo train: %s\n", err.msg);
    trainer_close(&t);
    return err.code ? err.code : 1;
}
