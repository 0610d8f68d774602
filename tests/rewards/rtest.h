/* rtest: helpers shared by the rewards tests: write a script to a temp file,
 * load it, score one completion. */
#ifndef GRPO_RTEST_H
#define GRPO_RTEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rewards/reward.h"

/* Writes code to a fresh file under /tmp; returns its path (static buffer ring). */
static inline const char *rt_write(const char *name, const char *code) {
    static char paths[8][256];
    static int slot;
    static char dir[128];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/grpo-rtest-XXXXXX");
        if (!mkdtemp(dir)) { perror("mkdtemp"); exit(1); }
    }
    char *p = paths[slot++ % 8];
    snprintf(p, 256, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) { perror(p); exit(1); }
    fputs(code, f);
    fclose(f);
    return p;
}

static inline RewardSet *rt_load(const char *name, const char *code, const RewardOpts *o, Err *err) {
    const char *p = rt_write(name, code);
    return reward_set_load(&p, 1, NULL, o, err);
}

/* Scores one completion with a one-script set; fills *r (caller clears). */
static inline void rt_score1(RewardSet *rs, const char *completion, RewardResult *r) {
    RewardSample s = {.prompt = "p", .completion = completion, .prompt_tokens = -1, .completion_tokens = -1};
    Err err = {0};
    memset(r, 0, sizeof *r);
    if (reward_set_score(rs, &s, 1, r, NULL, &err)) fprintf(stderr, "score: %s\n", err.msg);
}

#endif
