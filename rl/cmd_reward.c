/* cmd_reward: `grpo reward SCRIPT.lua... --data DATA.jsonl [--completions FILE.jsonl]`.
 *
 * Tries reward scripts offline (DESIGN.md §5): for every data row (and the
 * completion on the same line of --completions, or the row's own completion
 * field) it prints one JSON object: index, reward (number or null), error
 * (null or the message), plus the script's extras. With several scripts,
 * reward is the weighted total (TRL nil semantics) and `rewards` lists each
 * script's value and error by name. Progress and a summary go to stderr
 * (a counter on a terminal, a line every 10240 samples otherwise). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "cmd.h"
#include "rewards/reward.h"

enum { BATCH = 512, MAX_SCRIPTS = 32 };

typedef struct Lines {
    FILE *f;
    const char *path;
    long lineno;
    char *buf;
    size_t cap;
} Lines;

/* Next JSON object of a JSONL file (blank lines skipped); 0 at EOF, -1 on bad input. */
static int next_object(Lines *in, cJSON **out) {
    ssize_t n;
    while ((n = getline(&in->buf, &in->cap, in->f)) > 0) {
        in->lineno++;
        char *p = in->buf;
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
        if (!*p) continue;
        *out = cJSON_Parse(p);
        if (!cJSON_IsObject(*out)) {
            fprintf(stderr, "grpo reward: %s:%ld: not a JSON object\n", in->path, in->lineno);
            cJSON_Delete(*out);
            return -1;
        }
        return 1;
    }
    return 0;
}

static const char *field_str(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static long field_long(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(v) ? (long)v->valuedouble : -1;
}

static void add_number_or_null(cJSON *o, const char *k, int has, double v) {
    if (has && isfinite(v)) cJSON_AddNumberToObject(o, k, v);
    else cJSON_AddNullToObject(o, k);
}

static void add_extras(cJSON *o, const char *extras) {
    cJSON *x = extras ? cJSON_Parse(extras) : NULL;
    for (cJSON *c = x ? x->child : NULL; c;) {
        cJSON *next = c->next;
        if (!cJSON_GetObjectItemCaseSensitive(o, c->string))
            cJSON_AddItemToObject(o, c->string, cJSON_DetachItemViaPointer(x, c));
        c = next;
    }
    cJSON_Delete(x);
}

typedef struct Stats {
    long n, scored, errors;
    double sum;
} Stats;

static void print_batch(RewardSet *rs, long first, int n, RewardResult *res, double *total, Stats *st) {
    int k = reward_set_count(rs);
    for (int i = 0; i < n; i++) {
        RewardResult *r = &res[(size_t)i * k];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "index", (double)(first + i));
        add_number_or_null(o, "reward", !isnan(total[i]), total[i]);
        const char *err = NULL;
        for (int j = 0; j < k && !err; j++) err = r[j].error;
        if (err) cJSON_AddStringToObject(o, "error", err);
        else cJSON_AddNullToObject(o, "error");
        if (k > 1) {
            cJSON *per = cJSON_AddObjectToObject(o, "rewards");
            for (int j = 0; j < k; j++) {
                cJSON *c = cJSON_AddObjectToObject(per, reward_set_name(rs, j));
                add_number_or_null(c, "reward", r[j].has_value, r[j].value);
                if (r[j].error) cJSON_AddStringToObject(c, "error", r[j].error);
                add_extras(c, r[j].extras);
            }
        } else {
            add_extras(o, r[0].extras);
        }
        char *s = cJSON_PrintUnformatted(o);
        puts(s);
        free(s);
        cJSON_Delete(o);
        st->n++;
        if (err) st->errors++;
        if (!isnan(total[i])) { st->scored++; st->sum += total[i]; }
    }
    fflush(stdout);
}

static CliOpt opts[] = {
    {"--data", "FILE", NULL, "dataset rows, JSONL (fields become sample.<field>)", NULL},
    {"--completions", "FILE", NULL, "JSONL with a `completion` field per data line (default: the rows' own)", NULL},
    {"--completion-field", "NAME", "completion", "field holding the completion", NULL},
    {"--prompt-field", "NAME", "prompt", "field holding the prompt (falls back to question, problem)", NULL},
    {"--workers", "N", "0", "scoring threads, one Lua state each (0: all CPUs)", NULL},
    {"--mem-mb", "MB", "128", "memory cap per Lua state", NULL},
    {"--instructions", "N", "50000000", "Lua instruction budget per score call", NULL},
    {"--limit", "N", "0", "score at most N rows (0: all)", NULL},
    {0},
};

static const CliSpec spec = {
    "grpo reward SCRIPT.lua [SCRIPT.lua...] --data DATA.jsonl [--completions FILE.jsonl] [options]",
    "Scores completions with reward scripts and prints one JSON object per sample:\n"
    "index, reward (number or null), error (null or the message), plus the script's extras.\n"
    "Several scripts: reward is their weighted total and `rewards` holds each one.",
    opts, 1, MAX_SCRIPTS};

typedef struct Input {
    Lines data, comp;           /* comp.f is NULL without --completions */
    const char *cfield, *pfield;
} Input;

/* Reads the next sample (its row and completion line stay owned by *row and
 * *comp); 1 on success, 0 at the end of the data, -1 on bad input (message printed). */
static int read_sample(Input *in, cJSON **row, cJSON **comp, RewardSample *s) {
    *comp = NULL;
    int got = next_object(&in->data, row);
    if (got <= 0) return got;
    const cJSON *src = *row;
    if (in->comp.f) {
        int g = next_object(&in->comp, comp);
        if (g <= 0) {
            if (!g) fprintf(stderr, "grpo reward: %s: fewer lines than %s (%ld)\n", in->comp.path, in->data.path,
                            in->data.lineno);
            cJSON_Delete(*row);
            return -1;
        }
        src = *comp;
    }
    const char *prompt = field_str(*row, in->pfield);
    if (!prompt) prompt = field_str(*row, "question");
    if (!prompt) prompt = field_str(*row, "problem");
    const char *field = in->comp.f ? "completion" : in->cfield;
    const char *c = field_str(src, field);
    if (!c) {
        const Lines *l = in->comp.f ? &in->comp : &in->data;
        fprintf(stderr, "grpo reward: %s:%ld: no string field '%s'\n", l->path, l->lineno, field);
        cJSON_Delete(*row);
        cJSON_Delete(*comp);
        return -1;
    }
    *s = (RewardSample){.prompt = prompt ? prompt : "", .completion = c, .row = *row,
                        .prompt_tokens = field_long(src, "prompt_tokens"),
                        .completion_tokens = field_long(src, "completion_tokens"),
                        .finish_reason = field_str(src, "finish_reason")};
    return 1;
}

static int open_input(Input *in) {
    in->data.f = fopen(in->data.path, "r");
    if (!in->data.f) { fprintf(stderr, "grpo reward: %s: cannot open\n", in->data.path); return -1; }
    if (in->comp.path && !(in->comp.f = fopen(in->comp.path, "r"))) {
        fprintf(stderr, "grpo reward: %s: cannot open\n", in->comp.path);
        fclose(in->data.f);
        return -1;
    }
    return 0;
}

static void close_input(Input *in) {
    free(in->data.buf);
    free(in->comp.buf);
    fclose(in->data.f);
    if (in->comp.f) fclose(in->comp.f);
}

/* Reads, scores and prints batches until the data (or --limit) ends; returns the exit code. */
static int score_all(RewardSet *rs, Input *in, long limit, Stats *st) {
    int k = reward_set_count(rs), status = 0, eof = 0;
    cJSON *rows[BATCH], *comps[BATCH];
    RewardSample samples[BATCH];
    double total[BATCH];
    RewardResult *res = calloc((size_t)BATCH * k, sizeof *res);
    if (!res) { fprintf(stderr, "grpo reward: out of memory\n"); return 1; }
    while (!eof && !status) {
        int n = 0;
        while (n < BATCH && (!limit || st->n + n < limit)) {
            int got = read_sample(in, &rows[n], &comps[n], &samples[n]);
            if (got <= 0) { status = got < 0 ? 2 : 0; eof = 1; break; }
            n++;
        }
        if (limit && st->n + n >= limit) eof = 1;
        Err err = {0};
        if (n && !status && reward_set_score(rs, samples, n, res, total, &err)) {
            fprintf(stderr, "grpo reward: %s\n", err.msg);
            status = 1;
        }
        if (n && !status) {
            print_batch(rs, st->n, n, res, total, st);
            if (isatty(STDERR_FILENO)) fprintf(stderr, "\rgrpo reward: %ld scored", st->n);
            else if (st->n % (BATCH * 20) == 0) fprintf(stderr, "grpo reward: %ld scored\n", st->n);
        }
        reward_results_clear(res, (size_t)n * k);
        for (int i = 0; i < n; i++) { cJSON_Delete(rows[i]); cJSON_Delete(comps[i]); }
    }
    free(res);
    return status;
}

int cmd_reward(int argc, char **argv) {
    const char *pos[MAX_SCRIPTS];
    int npos, rc = cli_parse(&spec, argc, argv, pos, &npos);
    if (rc == CLI_HELP) return 0;
    if (rc != CLI_OK || cli_require(&spec, "--data") != CLI_OK) return 2;
    long workers, mem, instr, limit;
    if (cli_long(&spec, "--workers", &workers) || cli_long(&spec, "--mem-mb", &mem) ||
        cli_long(&spec, "--instructions", &instr) || cli_long(&spec, "--limit", &limit))
        return 2;
    RewardOpts ro = {.workers = (int)workers, .mem_limit = (size_t)mem << 20, .instr_limit = instr};
    Err err = {0};
    RewardSet *rs = reward_set_load(pos, npos, NULL, &ro, &err);
    if (!rs) {
        fprintf(stderr, "grpo reward: %s\n", err.msg);
        return err.code ? err.code : 1;
    }
    Input in = {.data = {.path = cli_str(&spec, "--data")}, .comp = {.path = cli_str(&spec, "--completions")},
                .cfield = cli_str(&spec, "--completion-field"), .pfield = cli_str(&spec, "--prompt-field")};
    if (open_input(&in)) { reward_set_free(rs); return 2; }
    Stats st = {0};
    int status = score_all(rs, &in, limit, &st);
    if (isatty(STDERR_FILENO)) fprintf(stderr, "\r");
    fprintf(stderr, "grpo reward: %ld samples, %ld scored, mean reward %.4f, %ld with errors\n", st.n, st.scored,
            st.scored ? st.sum / st.scored : 0.0, st.errors);
    close_input(&in);
    reward_set_free(rs);
    return status;
}
