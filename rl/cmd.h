/* cmd: the `grpo` subcommands. Each takes argv with argv[0] = subcommand name
 * and returns the process exit code (0 ok, 1 work failed, 2 bad usage/input). */
#ifndef GRPO_CMD_H
#define GRPO_CMD_H

int cmd_init(int argc, char **argv);   /* rl/cmd_init.c */
int cmd_tokenize(int argc, char **argv); /* rl/cmd_tokenize.c */
int cmd_bench(int argc, char **argv);  /* rl/cmd_bench.c: dispatches to bench_* */
int cmd_data(int argc, char **argv);   /* rl/cmd_data.c: synthetic task data */
int cmd_sft(int argc, char **argv);    /* rl/cmd_sft.c */
int cmd_train(int argc, char **argv);  /* rl/cmd_train.c */
int cmd_eval(int argc, char **argv);   /* rl/cmd_eval.c */
int cmd_sample(int argc, char **argv); /* rl/cmd_sample.c */
int cmd_sandbox(int argc, char **argv); /* rl/cmd_sandbox.c */
int cmd_runs(int argc, char **argv);   /* rl/cmd_runs.c */
int cmd_report(int argc, char **argv); /* rl/cmd_report.c */
int cmd_reward(int argc, char **argv); /* rl/cmd_reward.c */

/* `grpo bench TOPIC`: one function per topic. */
int bench_model(int argc, char **argv);  /* rl/bench_model.c */
int bench_tokenizer(int argc, char **argv); /* rl/bench_tokenizer.c */
int bench_sandbox(int argc, char **argv); /* rl/bench_sandbox.c */
int bench_store(int argc, char **argv);  /* rl/bench_store.c */
int bench_rewards(int argc, char **argv); /* rl/bench_rewards.c */
int bench_grpo(int argc, char **argv);   /* rl/bench_grpo.c */
int bench_decode(int argc, char **argv); /* rl/bench_device.c */
int bench_train(int argc, char **argv);  /* rl/bench_device.c */

#endif
