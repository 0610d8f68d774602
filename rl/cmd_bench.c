/* cmd_bench: `grpo bench TOPIC [options]`; each topic prints ratios against a
 * reference measured in the same run (see the topic's --help). */
#include <stdio.h>
#include <string.h>

#include "cmd.h"

typedef struct Topic {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} Topic;

static const Topic topics[] = {
    {"tokenizer", bench_tokenizer, "single-thread encode MB/s vs HF tokenizers"},
    {"model", bench_model, "CPU forward and forward+backward tokens/s vs PyTorch eager"},
    {"sandbox", bench_sandbox, "sandboxed executions/s vs plain python3 -I -S spawns"},
    {"store", bench_store, "rollout store write throughput (rollouts/s) vs a flat file"},
    {"rewards", bench_rewards, "format and math reward scores/s, one core and all cores"},
    {"decode", bench_decode, "rollout decoding tokens/s and memory bandwidth (CPU or GPU) vs transformers generate"},
    {"train", bench_train, "training tokens/s and MFU (CPU or GPU) vs transformers + torch AdamW"},
    {"grpo", bench_grpo, "one GRPO step's time split and tokens/s vs the same step in PyTorch"},
};
enum { NTOPICS = sizeof topics / sizeof topics[0] };

static void usage(FILE *f) {
    fprintf(f, "usage: grpo bench TOPIC [options]   (grpo bench TOPIC --help)\n\ntopics:\n");
    for (int i = 0; i < NTOPICS; i++) fprintf(f, "  %-10s %s\n", topics[i].name, topics[i].summary);
}

int cmd_bench(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) { usage(stdout); return 0; }
    for (int i = 0; i < NTOPICS; i++)
        if (!strcmp(argv[1], topics[i].name)) return topics[i].run(argc - 1, argv + 1);
    fprintf(stderr, "grpo bench: unknown topic '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
