/* main: the `grpo` binary; dispatches to the subcommand table. */
#include <stdio.h>
#include <string.h>

#include "cmd.h"

#ifndef GRPO_VERSION
#define GRPO_VERSION "0.0.0"
#endif

typedef struct Command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} Command;

static const Command commands[] = {
    {"data", cmd_data, "write the synthetic arithmetic task of the tiny demo as JSONL"},
    {"train", cmd_train, "GRPO training from a Lua recipe; every rollout goes to SQLite"},
    {"eval", cmd_eval, "pass@1 / pass@k / maj@k and reward means of a checkpoint on a JSONL set"},
    {"sample", cmd_sample, "sample completions of a prompt from a checkpoint"},
    {"sft", cmd_sft, "supervised next-token training on JSONL (base models, cold starts)"},
    {"bench", cmd_bench, "measure speed against a reference measured in the same run"},
    {"tokenize", cmd_tokenize, "encode text to token ids (or --decode ids to text) with a tokenizer.json"},
    {"sandbox", cmd_sandbox, "run an untrusted program in the sandbox and print JSON (see docs/sandbox.md)"},
    {"init", cmd_init, "write a random-initialised checkpoint (HF layout) from a config.json"},
    {"runs", cmd_runs, "list the runs under a directory with their key numbers"},
    {"report", cmd_report, "write an HTML report (inline SVG plots) of a run and print its numbers"},
    {"reward", cmd_reward, "score completions with reward scripts (Lua) and print JSON per sample"},
};
enum { NCOMMANDS = sizeof commands / sizeof commands[0] };

static void usage(FILE *f) {
    fprintf(f,
            "grpo %s: reinforcement-learning post-training for DeepSeek-V3-style models\n\n"
            "usage: grpo COMMAND [options]   (grpo COMMAND --help for every option)\n\ncommands:\n",
            GRPO_VERSION);
    for (int i = 0; i < NCOMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) { printf("grpo %s\n", GRPO_VERSION); return 0; }
    for (int i = 0; i < NCOMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "grpo: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
