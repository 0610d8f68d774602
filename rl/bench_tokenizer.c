/* bench_tokenizer: `grpo bench tokenizer`: single-thread encode MB/s of our
 * tokenizer on the MATH-500 + GSM8K corpus, and the same for HF tokenizers
 * measured in the same run by tests/golden/bench_tokenizer_hf.py (when python3
 * and tokenizers are present; otherwise only our numbers, said plainly).
 * The samples are every question/answer, problem/solution and
 * prompt/canonical_solution string of the JSONL files; both sides encode them
 * without special tokens, best of --repeat runs, and the token counts must agree. */
#include "base/clock.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/xalloc.h"
#include "cli.h"
#include "cmd.h"
#include "model/tokenizer.h"

typedef struct Corpus {
    char **s;
    size_t *len, n, bytes;
} Corpus;

static int corpus_add_file(Corpus *c, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "grpo bench tokenizer: cannot open %s\n", path); return -1; }
    static const char *fields[] = {"question", "answer", "problem", "solution", "prompt", "canonical_solution"};
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        lineno++;
        cJSON *row = cJSON_ParseWithLength(line, (size_t)n);
        if (!row) { fprintf(stderr, "grpo bench tokenizer: %s:%d: not JSON\n", path, lineno); continue; }
        for (size_t k = 0; k < sizeof fields / sizeof fields[0]; k++) {
            const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(row, fields[k]));
            if (!v) continue;
            c->s = xrealloc(c->s, (c->n + 1) * sizeof *c->s);
            c->len = xrealloc(c->len, (c->n + 1) * sizeof *c->len);
            c->s[c->n] = xstrdup(v);
            c->len[c->n] = strlen(v);
            c->bytes += c->len[c->n++];
        }
        cJSON_Delete(row);
    }
    free(line);
    fclose(f);
    return 0;
}

/* Runs the HF script; fills mbps/tokens/version, returns 0, or -1 with why. */
static int run_hf(const char *script, const char *tok_json, long repeat, char *const *files, int nfiles,
                  double *mbps, long *tokens, char *version, size_t vcap, char *why, size_t wcap) {
    char cmd[8192];
    int k = snprintf(cmd, sizeof cmd, "python3 '%s' '%s' %ld", script, tok_json, repeat);
    for (int i = 0; i < nfiles && k < (int)sizeof cmd - 512; i++) k += snprintf(cmd + k, sizeof cmd - k, " '%s'", files[i]);
    snprintf(cmd + k, sizeof cmd - k, " 2>/dev/null");
    if (access(script, R_OK) != 0) { snprintf(why, wcap, "%s not found; run from the repository root or give --script", script); return -1; }
    FILE *p = popen(cmd, "r");
    if (!p) { snprintf(why, wcap, "cannot run python3"); return -1; }
    char out[4096] = {0};
    size_t got = fread(out, 1, sizeof out - 1, p);
    int st = pclose(p);
    out[got] = 0;
    if (st != 0 || !got) {
        snprintf(why, wcap, WIFEXITED(st) && WEXITSTATUS(st) == 3 ? "the Python package tokenizers is not installed"
                            : WIFEXITED(st) && WEXITSTATUS(st) == 127 ? "python3 is not installed"
                                                                      : "the HF script failed (exit %d)", WEXITSTATUS(st));
        return -1;
    }
    cJSON *j = cJSON_Parse(out);
    const cJSON *m = cJSON_GetObjectItem(j, "mbps"), *t = cJSON_GetObjectItem(j, "tokens");
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(j, "version"));
    if (!cJSON_IsNumber(m) || !cJSON_IsNumber(t)) { cJSON_Delete(j); snprintf(why, wcap, "unreadable HF output"); return -1; }
    *mbps = m->valuedouble;
    *tokens = (long)t->valuedouble;
    snprintf(version, vcap, "%s", v ? v : "?");
    cJSON_Delete(j);
    return 0;
}

/* Encodes the corpus `repeat` times; keeps the best time in *best. */
static void ours_run(const Tokenizer *t, const Corpus *c, long repeat, TokIds *ids, double *best, size_t *ntok) {
    Err err = {0};
    for (long r = 0; r < repeat; r++) {
        *ntok = 0;
        double t0 = clock_now();
        for (size_t i = 0; i < c->n; i++) {
            ids->n = 0;
            tok_encode(t, c->s[i], c->len[i], 0, ids, &err);
            *ntok += ids->n;
        }
        double dt = clock_now() - t0;
        if (dt < *best) *best = dt;
    }
}

int bench_tokenizer(int argc, char **argv) {
    CliOpt opts[] = {
        {"--tokenizer", "DIR", "tests/fixtures/tokenizer/deepseek-v3", "tokenizer directory (tokenizer.json)", NULL},
        {"--data-dir", "DIR", "../shared/data", "folder with math500-test.jsonl and gsm8k-test.jsonl", NULL},
        {"--repeat", "N", "3", "runs per side; the best counts", NULL},
        {"--script", "FILE", "tests/golden/bench_tokenizer_hf.py", "the HF tokenizers side", NULL},
        {"--no-hf", NULL, NULL, "measure only our tokenizer", NULL},
        {0}};
    CliSpec spec = {"grpo bench tokenizer [options]",
                    "Single-thread encode speed (MB/s of UTF-8 input) on MATH-500 + GSM8K test, ours and HF\n"
                    "tokenizers' measured in the same run; prints the ratio. Timings on a shared machine vary.",
                    opts, 0, 0};
    const char *pos[1];
    int npos, rc = cli_parse(&spec, argc, argv, pos, &npos);
    if (rc == CLI_HELP) return 0;
    if (rc) return 2;
    long repeat;
    if (cli_long(&spec, "--repeat", &repeat) || repeat < 1) return 2;
    const char *dir = cli_str(&spec, "--tokenizer"), *data = cli_str(&spec, "--data-dir");
    char files[2][2048], tok_json[2048];
    snprintf(files[0], sizeof files[0], "%s/math500-test.jsonl", data);
    snprintf(files[1], sizeof files[1], "%s/gsm8k-test.jsonl", data);
    snprintf(tok_json, sizeof tok_json, "%s/tokenizer.json", dir);
    Corpus c = {0};
    if (corpus_add_file(&c, files[0]) || corpus_add_file(&c, files[1])) return 2;
    Err err = {0};
    Tokenizer *t = tok_load(dir, &err);
    if (!t) { fprintf(stderr, "grpo bench tokenizer: %s\n", err.msg); return err.code ? err.code : 1; }

    TokIds ids = {0};
    double best = 1e30;
    size_t ntok = 0;
    ours_run(t, &c, repeat, &ids, &best, &ntok);
    double ours = c.bytes / best / 1e6;
    printf("corpus: %zu samples, %.2f MB (MATH-500 + GSM8K test), tokenizer %s\n", c.n, c.bytes / 1e6, dir);
    printf("grpo tokenizer:   %8.2f MB/s  %9zu tokens  (single thread, best of %ld)\n", ours, ntok, repeat);
    int ret = 0;
    if (!cli_flag(&spec, "--no-hf")) {
        /* two rounds of (HF, ours): on a shared machine each side gets its best of both windows */
        double hf = 0;
        long hf_tok = 0;
        char ver[64], why[256];
        char *fl[2] = {files[0], files[1]};
        int ok = 0;
        for (int round = 0; round < 2; round++) {
            double m;
            long n;
            if (run_hf(cli_str(&spec, "--script"), tok_json, repeat, fl, 2, &m, &n, ver, sizeof ver, why, sizeof why)) break;
            ok = 1;
            if (m > hf) hf = m;
            hf_tok = n;
            ours_run(t, &c, repeat, &ids, &best, &ntok);
        }
        if (!ok) {
            printf("HF tokenizers:    not measured (%s); only our numbers are shown\n", why);
        } else {
            ours = c.bytes / best / 1e6;
            printf("grpo tokenizer:   %8.2f MB/s  (best over 3 windows interleaved with HF's 2)\n", ours);
            printf("HF tokenizers:    %8.2f MB/s  %9ld tokens  (tokenizers %s, RAYON_NUM_THREADS=1, best of 2 windows)\n",
                   hf, hf_tok, ver);
            printf("ratio (grpo / HF): %.2fx\n", ours / hf);
            if ((size_t)hf_tok != ntok) {
                fprintf(stderr, "grpo bench tokenizer: token counts differ (%zu vs %ld)\n", ntok, hf_tok);
                ret = 1;
            }
        }
    }
    tok_ids_free(&ids);
    tok_free(t);
    for (size_t i = 0; i < c.n; i++) free(c.s[i]);
    free(c.s);
    free(c.len);
    return ret;
}
