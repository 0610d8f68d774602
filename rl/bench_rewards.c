/* bench_rewards: `grpo bench rewards`, reward scripts' throughput.
 *
 * Scores N completions built from GSM8K test rows (R1-formatted, half with
 * the right answer) with rewards/format.lua and rewards/math_accuracy.lua
 * through the RewardSet engine, on one worker and on all cores, and prints
 * scores/s. The reference measured in the same run is the same rule in plain
 * C on one core (PCRE2 match for format; mathans extract + equal for math),
 * so the ratio is what the Lua engine costs. Also printed: the one-worker
 * run's scores per CPU second, the per-core figure on a shared machine.
 * Inputs are built before the clock starts. */
#include "base/clock.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "cli.h"
#include "cmd.h"
#include "rewards/mathans.h"
#include "rewards/reward.h"

/* CPU seconds of the whole process: on a shared machine, scores per CPU
 * second is the per-core figure that contention does not distort. */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct Inputs {
    int n;
    RewardSample *s;
    cJSON **rows;
    char **texts;
} Inputs;

static int build_inputs(const char *data, int n, Inputs *in) {
    FILE *f = fopen(data, "r");
    if (!f) { fprintf(stderr, "grpo bench rewards: %s: cannot open\n", data); return -1; }
    in->n = n;
    in->s = calloc((size_t)n, sizeof *in->s);
    in->rows = calloc((size_t)n, sizeof *in->rows);
    in->texts = calloc((size_t)n, sizeof *in->texts);
    char *line = NULL;
    size_t cap = 0;
    int got = 0;
    cJSON *pool[2048];
    while (got < 2048 && getline(&line, &cap, f) > 0) {
        pool[got] = cJSON_Parse(line);
        if (pool[got]) got++;
    }
    free(line);
    fclose(f);
    if (!got) { fprintf(stderr, "grpo bench rewards: %s: no rows\n", data); return -1; }
    for (int i = 0; i < n; i++) {
        const cJSON *row = pool[i % got];
        const char *ans = cJSON_GetObjectItem(row, "answer")->valuestring;
        char gold[256];
        if (!mathans_gsm8k(ans, gold, sizeof gold)) snprintf(gold, sizeof gold, "0");
        size_t len = strlen(ans) + 512;
        in->texts[i] = malloc(len);
        /* the solution text as reasoning; every other sample answers off by one */
        snprintf(in->texts[i], len, "<think>\n%.*s\n</think>\n<answer>\nThe answer is \\boxed{%s%s}\n</answer>",
                 (int)(strstr(ans, "####") ? strstr(ans, "####") - ans : (long)strlen(ans)), ans, gold,
                 i % 2 ? "1" : "");
        in->rows[i] = cJSON_Duplicate(row, 1);
        in->s[i] = (RewardSample){.prompt = cJSON_GetObjectItem(row, "question")->valuestring,
                                  .completion = in->texts[i], .row = in->rows[i],
                                  .prompt_tokens = 100, .completion_tokens = 200, .finish_reason = "stop"};
    }
    for (int i = 0; i < got; i++) cJSON_Delete(pool[i]);
    return 0;
}

static void free_inputs(Inputs *in) {
    for (int i = 0; i < in->n; i++) { free(in->texts[i]); cJSON_Delete(in->rows[i]); }
    free(in->s);
    free(in->rows);
    free(in->texts);
}

/* Scores all inputs with script on `workers` threads; returns scores/s (wall),
 * or -1; *per_cpu gets scores per CPU second. */
static double run_engine(const char *script, int workers, const Inputs *in, double *mean, double *per_cpu) {
    Err err = {0};
    RewardOpts o = {.workers = workers};
    RewardSet *rs = reward_set_load(&script, 1, NULL, &o, &err);
    if (!rs) { fprintf(stderr, "grpo bench rewards: %s\n", err.msg); return -1; }
    RewardResult *res = calloc((size_t)in->n, sizeof *res);
    double *total = calloc((size_t)in->n, sizeof *total);
    reward_set_score(rs, in->s, in->n < 256 ? in->n : 256, res, total, &err); /* warm every state */
    reward_results_clear(res, (size_t)(in->n < 256 ? in->n : 256));
    double t0 = clock_now(), c0 = cpu_s();
    int rc = reward_set_score(rs, in->s, in->n, res, total, &err);
    double dt = clock_now() - t0;
    *per_cpu = in->n / (cpu_s() - c0);
    double sum = 0;
    for (int i = 0; i < in->n; i++) sum += res[i].has_value ? res[i].value : 0;
    *mean = sum / in->n;
    reward_results_clear(res, (size_t)in->n);
    free(res);
    free(total);
    reward_set_free(rs);
    return rc ? -1 : in->n / dt;
}

static double ref_format(const Inputs *in, double *mean) {
    const char *pat = "\\A<think>\\n.*?\\n</think>\\n<answer>\\n.*?\\n</answer>$";
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                                   PCRE2_DOTALL | PCRE2_MULTILINE | PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF,
                                   &ec, &eo, NULL);
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    double t0 = clock_now(), sum = 0;
    for (int i = 0; i < in->n; i++)
        sum += pcre2_match(re, (PCRE2_SPTR)in->s[i].completion, strlen(in->s[i].completion), 0, 0, md, NULL) >= 0;
    double dt = clock_now() - t0;
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    *mean = sum / in->n;
    return in->n / dt;
}

static double ref_math(const Inputs *in, double *mean) {
    double t0 = clock_now(), sum = 0;
    char gold[256], pred[2048];
    for (int i = 0; i < in->n; i++) {
        const char *ans = cJSON_GetObjectItem(in->s[i].row, "answer")->valuestring;
        if (!mathans_gsm8k(ans, gold, sizeof gold)) continue;
        sum += mathans_extract(in->s[i].completion, pred, sizeof pred) && mathans_equal(gold, pred);
    }
    double dt = clock_now() - t0;
    *mean = sum / in->n;
    return in->n / dt;
}

static CliOpt opts[] = {
    {"--n", "N", "100000", "completions to score per measurement", NULL},
    {"--data", "FILE", "../shared/data/gsm8k-test.jsonl", "GSM8K-style rows (question, answer)", NULL},
    {"--rewards-dir", "DIR", "rewards", "folder with format.lua and math_accuracy.lua", NULL},
    {"--workers", "N", "0", "threads for the all-cores run (0: all CPUs)", NULL},
    {0},
};

static const CliSpec spec = {"grpo bench rewards [options]",
                             "Reward scores/s (format and math) through the Lua engine on one core and on all\n"
                             "cores, against the same rule in plain C on one core.",
                             opts, 0, 0};

int bench_rewards(int argc, char **argv) {
    const char *pos[1];
    int npos, rc = cli_parse(&spec, argc, argv, pos, &npos);
    if (rc == CLI_HELP) return 0;
    if (rc != CLI_OK) return 2;
    long n, workers;
    if (cli_long(&spec, "--n", &n) || cli_long(&spec, "--workers", &workers) || n < 1) return 2;
    if (workers <= 0) workers = sysconf(_SC_NPROCESSORS_ONLN);
    Inputs in = {0};
    if (build_inputs(cli_str(&spec, "--data"), (int)n, &in)) return 2;
    const char *dir = cli_str(&spec, "--rewards-dir");
    const char *names[2] = {"format", "math_accuracy"};
    printf("%-14s %14s %14s %16s %14s %8s\n", "reward", "C ref 1 core", "Lua 1 core", "Lua 1 core/CPU-s",
           "Lua all cores", "Lua/C");
    for (int k = 0; k < 2; k++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.lua", dir, names[k]);
        double m_ref, m1, mall, cpu1, cpuall;
        double ref = k == 0 ? ref_format(&in, &m_ref) : ref_math(&in, &m_ref);
        double one = run_engine(path, 1, &in, &m1, &cpu1);
        double all = run_engine(path, (int)workers, &in, &mall, &cpuall);
        if (one < 0 || all < 0) { free_inputs(&in); return 1; }
        printf("%-14s %12.0f/s %12.0f/s %14.0f/s %12.0f/s %7.2fx   (mean reward C %.3f, Lua %.3f; %ld workers)\n",
               names[k], ref, one, cpu1, all, one / ref, m_ref, m1, workers);
    }
    free_inputs(&in);
    return 0;
}
