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
    {"bench", cmd_bench, "measure speed against a reference measured in the same run"},
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
