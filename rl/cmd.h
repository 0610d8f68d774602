/* cmd: the `grpo` subcommands. Each takes argv with argv[0] = subcommand name
 * and returns the process exit code (0 ok, 1 work failed, 2 bad usage/input). */
#ifndef GRPO_CMD_H
#define GRPO_CMD_H

int cmd_init(int argc, char **argv);   /* rl/cmd_init.c */
int cmd_bench(int argc, char **argv);  /* rl/cmd_bench.c: dispatches to bench_* */

/* `grpo bench TOPIC`: one function per topic. */
int bench_model(int argc, char **argv);  /* rl/bench_model.c */

#endif
