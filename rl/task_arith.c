/* task_arith: see task_arith.h. */
#include "task_arith.h"

#include <string.h>

#include <cjson/cJSON.h>

#include "base/rng.h"

static uint64_t mix(uint64_t z) { return rng_fmix64(z + RNG_GOLDEN); }

typedef struct Rng { uint64_t s; } Rng;
static uint64_t rnext(Rng *r) { return mix(r->s++ * 0x2545f4914f6cdd1dull + 0x12345); }
static long rint_in(Rng *r, long lo, long hi) { return lo + (long)(rnext(r) % (uint64_t)(hi - lo + 1)); }
static double runif(Rng *r) { return (rnext(r) >> 11) * (1.0 / 9007199254740992.0); }

static const char *names[] = {"Mia", "Leo", "Ava", "Sam", "Zoe", "Ben", "Ivy", "Max", "Eli", "Ada", "Tom", "Kim"};
static const char *items[] = {"apples", "pens", "coins", "books", "stickers", "marbles", "cards", "shells"};

enum { OP_ADD, OP_SUB, OP_MUL };

/* One step's sentence for op with operand b. */
static void step_text(char *buf, size_t n, int op, long b, const char *who, const char *item, Rng *r) {
    int v = (int)rint_in(r, 0, 1);
    switch (op) {
    case OP_ADD:
        snprintf(buf, n, v ? " %s buys %ld more." : " %s finds %ld more %s.", who, b, item);
        break;
    case OP_SUB:
        snprintf(buf, n, v ? " %s gives away %ld." : " %s loses %ld %s.", who, b, item);
        break;
    default:
        snprintf(buf, n, v ? " Then the number of %s is multiplied by %ld." : " %s gets %ld times as many %s.",
                 v ? item : who, b, item);
        break;
    }
}

void arith_item(uint64_t seed, uint64_t index, const ArithOpts *o, ArithItem *it) {
    Rng r = {mix(seed * RNG_GOLDEN ^ mix(index))};
    const char *who = names[rint_in(&r, 0, 11)], *item = items[rint_in(&r, 0, 7)];
    int steps = (int)rint_in(&r, o->min_steps, o->max_steps);
    long x = rint_in(&r, 2, o->max_value / 2);
    char q[512], think[512], s[160];
    snprintf(q, sizeof q, "%s has %ld %s.", who, x, item);
    think[0] = 0;
    int wrong_at = runif(&r) < o->p_wrong ? (int)rint_in(&r, 0, steps - 1) : -1;
    long shown = x; /* the value the written solution carries (wrong after a bad step) */
    for (int k = 0; k < steps; k++) {
        int op;
        long b;
        for (;;) { /* pick an op that keeps the true value in range */
            op = (int)rint_in(&r, 0, 2);
            if (op == OP_ADD) { b = rint_in(&r, 1, o->max_operand); if (x + b <= o->max_value) break; }
            else if (op == OP_SUB) { if (x < 2) continue; b = rint_in(&r, 1, x - 1 < o->max_operand ? x - 1 : o->max_operand); break; }
            else { b = rint_in(&r, 2, 4); if (x * b <= o->max_value) break; }
        }
        step_text(s, sizeof s, op, b, who, item, &r);
        strncat(q, s, sizeof q - strlen(q) - 1);
        long nx = op == OP_ADD ? x + b : op == OP_SUB ? x - b : x * b;
        long ns = op == OP_ADD ? shown + b : op == OP_SUB ? shown - b : shown * b;
        if (k == wrong_at) ns += rint_in(&r, 0, 1) ? rint_in(&r, 1, 3) : -rint_in(&r, 1, 3);
        snprintf(s, sizeof s, "%ld %c %ld = %ld\n", shown, op == OP_ADD ? '+' : op == OP_SUB ? '-' : '*', b, ns);
        strncat(think, s, sizeof think - strlen(think) - 1);
        x = nx, shown = ns;
    }
    snprintf(s, sizeof s, " How many %s does %s have now?", item, who);
    strncat(q, s, sizeof q - strlen(q) - 1);
    snprintf(it->question, sizeof it->question, "%s", q);
    it->answer = x;
    if (runif(&r) < o->p_noformat)
        snprintf(it->solution, sizeof it->solution, "%sSo the answer is %ld.", think, shown);
    else
        snprintf(it->solution, sizeof it->solution, "<think>\n%s</think>\n<answer>\n%ld\n</answer>", think, shown);
}

void arith_write_jsonl(FILE *f, uint64_t seed, long n, const ArithOpts *o) {
    for (long i = 0; i < n; i++) {
        ArithItem it;
        arith_item(seed, (uint64_t)i, o, &it);
        cJSON *row = cJSON_CreateObject();
        char ans[32];
        snprintf(ans, sizeof ans, "%ld", it.answer);
        cJSON_AddStringToObject(row, "question", it.question);
        cJSON_AddStringToObject(row, "answer", ans);
        cJSON_AddStringToObject(row, "solution", it.solution);
        char *line = cJSON_PrintUnformatted(row);
        fprintf(f, "%s\n", line);
        cJSON_free(line);
        cJSON_Delete(row);
    }
}
