/* bench_store: `grpo bench store`, the rollout store's write throughput.
 *
 * Writes N synthetic rollouts (P prompts x G samples per step, K reward
 * components each, metrics and a router-load table per step) through the
 * writer API of rl/store, one transaction per step, and prints rollouts/s.
 * The reference measured in the same run is the same records appended to a
 * flat text file with stdio and fdatasync'd once per step: what logging would
 * cost without a database. The texts are generated before the clock starts. */
#include "base/clock.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/xalloc.h"
#include "cli.h"
#include "cmd.h"
#include "store.h"

enum { POOL = 4096, NLAYERS = 4, NEXPERTS = 64 };

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng_next(uint64_t *s) {  /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Word salad of about `bytes` characters: texts of realistic size and entropy. */
static char *make_text(uint64_t *rng, int bytes) {
    static const char *words[] = {"the", "answer", "is", "<think>", "</think>", "so", "we", "add",
                                  "12", "345", "+", "=", "therefore", "<answer>", "</answer>",
                                  "first", "multiply", "carry", "digit", "check"};
    char *t = xmalloc(bytes + 16);
    int n = 0;
    while (n < bytes) {
        const char *w = words[rng_next(rng) % (sizeof words / sizeof words[0])];
        n += snprintf(t + n, bytes + 16 - n, "%s ", w);
        if (n >= bytes) break;
    }
    t[bytes] = 0;
    return t;
}

/* Progress on stderr: a live line on a terminal, a plain line per quarter otherwise. */
static void progress(long done, long total) {
    static int tty = -1;
    if (tty < 0) tty = isatty(STDERR_FILENO);
    if (tty && (done % 20 == 0 || done == total))
        fprintf(stderr, "\rstore: step %ld/%ld%s", done, total, done == total ? "\n" : "");
    else if (!tty && done * 4 / total != (done - 1) * 4 / total)
        fprintf(stderr, "store: step %ld/%ld\n", done, total);
}

typedef struct BenchCfg {
    long rollouts, prompts, group, ncomp, bytes;
} BenchCfg;

/* Writes cfg->rollouts rollouts into path; returns seconds, or -1. */
static double bench_db(const char *path, const BenchCfg *cfg, char **pool, double *worst_step_s,
                       double *cpu) {
    Err err = {0};
    Store *st = store_open(path, &err);
    if (!st) { fprintf(stderr, "grpo bench store: %s\n", err.msg); return -1; }
    StoreRun run = {.name = "bench", .model = "synthetic", .recipe = "-- grpo bench store"};
    if (store_run_record(st, &run, -1, &err)) goto fail;
    static const char *names[] = {"accuracy", "format", "length", "language", "code"};
    StoreReward rw[5];
    int64_t load[NLAYERS * NEXPERTS];
    uint64_t rng = 7;
    long per_step = cfg->prompts * cfg->group, nsteps = (cfg->rollouts + per_step - 1) / per_step;
    long written = 0;
    *worst_step_s = 0;
    double t0 = clock_now(), c0 = cpu_s();
    for (long step = 0; step < nsteps; step++) {
        double ts = clock_now();
        if (store_step_begin(st, step, &err)) goto fail;
        for (long p = 0; p < cfg->prompts && written < cfg->rollouts; p++)
            for (long g = 0; g < cfg->group && written < cfg->rollouts; g++, written++) {
                uint64_t r = rng_next(&rng);
                for (int k = 0; k < cfg->ncomp; k++)
                    rw[k] = (StoreReward){names[k % 5], (double)((r >> k) & 1), NULL};
                StoreRollout ro = {
                    .prompt_index = (int)p, .sample_index = (int)g, .dataset_index = written / cfg->group,
                    .prompt = pool[(step * 131 + p) % POOL], .completion = pool[r % POOL],
                    .prompt_tokens = 60, .completion_tokens = (int)(cfg->bytes / 4),
                    .finish_reason = (r & 64) ? "length" : "stop",
                    .reward = (double)(r & 3), .advantage = ((double)(r & 3) - 1.5) / 1.1,
                    .logprob_sum = -(double)(r % 1000) / 10};
                if (store_rollout(st, &ro, rw, (int)cfg->ncomp, &err)) goto fail;
            }
        static const char *metrics[] = {"reward", "reward_std", "frac_reward_zero_std", "kl",
                                        "entropy", "clip_ratio/region_mean", "grad_norm",
                                        "learning_rate", "completions/mean_length", "step_time",
                                        "timing_s/rollout", "timing_s/reward", "timing_s/train"};
        for (size_t m = 0; m < sizeof metrics / sizeof metrics[0]; m++)
            if (store_metric(st, metrics[m], (double)(rng_next(&rng) % 1000) / 1000, &err)) goto fail;
        for (int i = 0; i < NLAYERS * NEXPERTS; i++) load[i] = (int64_t)(rng_next(&rng) % 500);
        if (store_router_load(st, 1, NLAYERS, NEXPERTS, load, &err)) goto fail;
        if (store_step_commit(st, &err)) goto fail;
        double dt = clock_now() - ts;
        if (dt > *worst_step_s) *worst_step_s = dt;
        progress(step + 1, nsteps);
    }
    double secs = clock_now() - t0;
    *cpu = cpu_s() - c0;
    store_close(st);
    /* read back what a reader sees: every rollout, once */
    st = store_open_read(path, &err);
    StoreTable *t = st ? store_query(st, "SELECT (SELECT count(*) FROM rollouts),"
                                        " (SELECT sum(num_rollouts) FROM steps)", &err) : NULL;
    int ok = t && t->nrows == 1 && store_cell_num(t, 0, 0) == cfg->rollouts &&
             store_cell_num(t, 0, 1) == cfg->rollouts;
    if (!ok && t) err_set(&err, ERR_WORK, "%s: read back %.0f rollouts, wrote %ld", path,
                          store_cell_num(t, 0, 0), cfg->rollouts);
    store_table_free(t);
    store_close(st);
    if (!ok) {
        fprintf(stderr, "grpo bench store: %s\n", err.msg);
        return -1;
    }
    return secs;
fail:
    fprintf(stderr, "grpo bench store: %s\n", err.msg);
    store_close(st);
    return -1;
}

/* The reference: the same records as text lines, one fdatasync per step. */
static double bench_flat(const char *path, const BenchCfg *cfg, char **pool, double *cpu) {
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); return -1; }
    uint64_t rng = 7;
    long per_step = cfg->prompts * cfg->group, written = 0;
    double t0 = clock_now(), c0 = cpu_s();
    for (long step = 0; written < cfg->rollouts; step++) {
        for (long i = 0; i < per_step && written < cfg->rollouts; i++, written++) {
            uint64_t r = rng_next(&rng);
            fprintf(f, "%ld\t%ld\t%ld\t%s\t%s\t%d\t%.17g\t%.17g\n", step, i / cfg->group,
                    i % cfg->group, pool[(step * 131 + i / cfg->group) % POOL], pool[r % POOL],
                    (int)(cfg->bytes / 4), (double)(r & 3), -(double)(r % 1000) / 10);
            for (int k = 0; k < cfg->ncomp; k++) fprintf(f, "\t%d", (int)((r >> k) & 1));
        }
        fflush(f);
        fdatasync(fileno(f));
    }
    double secs = clock_now() - t0;
    *cpu = cpu_s() - c0;
    fclose(f);
    return secs;
}

static double file_mb(const char *path) {
    struct stat sb;
    return stat(path, &sb) ? 0 : sb.st_size / 1e6;
}

static void remove_db(const char *path) {
    char side[4200];
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
}

int bench_store(int argc, char **argv) {
    CliOpt opts[] = {
        {"--rollouts", "N", "1000000", "rollouts to write", NULL},
        {"--prompts", "P", "64", "prompts per step", NULL},
        {"--group", "G", "8", "samples per prompt", NULL},
        {"--rewards", "K", "3", "reward components per rollout (1..5)", NULL},
        {"--bytes", "B", "400", "completion length in bytes", NULL},
        {"--db", "PATH", "/tmp/grpo-bench-store.db", "database to write (replaced)", NULL},
        {"--keep", NULL, NULL, "keep the database and the flat file afterwards", NULL},
        {0},
    };
    CliSpec spec = {"grpo bench store [options]",
                    "Write synthetic rollouts through the rollout store (one transaction per step)\n"
                    "and print rollouts/s, against appending the same records to a text file.",
                    opts, 0, 0};
    const char *pos[1];
    int npos, rc = cli_parse(&spec, argc, argv, pos, &npos);
    if (rc != CLI_OK) return rc == CLI_HELP ? 0 : 2;
    BenchCfg cfg;
    if (cli_long(&spec, "--rollouts", &cfg.rollouts) || cli_long(&spec, "--prompts", &cfg.prompts) ||
        cli_long(&spec, "--group", &cfg.group) || cli_long(&spec, "--rewards", &cfg.ncomp) ||
        cli_long(&spec, "--bytes", &cfg.bytes))
        return 2;
    if (cfg.rollouts < 1 || cfg.prompts < 1 || cfg.group < 1 || cfg.ncomp < 1 || cfg.ncomp > 5 ||
        cfg.bytes < 1 || cfg.bytes > 1000000) {
        fprintf(stderr, "grpo bench store: --rollouts, --prompts, --group, --bytes must be >= 1, "
                        "--rewards 1..5, --bytes <= 1000000\n");
        return 2;
    }
    const char *db = cli_str(&spec, "--db");
    char flat[4200];
    snprintf(flat, sizeof flat, "%s.tsv", db);
    uint64_t rng = 1;
    char **pool = xmalloc(POOL * sizeof *pool);
    for (int i = 0; i < POOL; i++) pool[i] = make_text(&rng, (int)cfg.bytes);

    remove_db(db);
    double worst = 0, cpu_db = 0, cpu_flat = 0;
    double t_db = bench_db(db, &cfg, pool, &worst, &cpu_db);
    double mb = file_mb(db);
    char wal[4200];
    snprintf(wal, sizeof wal, "%s-wal", db);
    mb += file_mb(wal);
    double t_flat = t_db < 0 ? -1 : bench_flat(flat, &cfg, pool, &cpu_flat);
    double flat_mb = file_mb(flat);
    if (!cli_flag(&spec, "--keep")) {
        remove_db(db);
        unlink(flat);
    }
    for (int i = 0; i < POOL; i++) free(pool[i]);
    free(pool);
    if (t_db < 0 || t_flat < 0) return 1;

    long per_step = cfg.prompts * cfg.group, nsteps = (cfg.rollouts + per_step - 1) / per_step;
    printf("store: %ld rollouts in %ld steps (%ld prompts x %ld samples, %ld reward components, "
           "%ld-byte completions)\n", cfg.rollouts, nsteps, cfg.prompts, cfg.group, cfg.ncomp,
           cfg.bytes);
    printf("  %-12s %9s %12s %9s %12s %9s %9s %7s\n", "", "wall_s", "rollouts/s", "cpu_s",
           "per_cpu_s", "ms/step", "worst_ms", "MB");
    printf("  %-12s %9.2f %12.0f %9.2f %12.0f %9.2f %9.2f %7.0f\n", "sqlite store", t_db,
           cfg.rollouts / t_db, cpu_db, cfg.rollouts / cpu_db, 1e3 * t_db / nsteps, 1e3 * worst, mb);
    printf("  %-12s %9.2f %12.0f %9.2f %12.0f %9.2f %9s %7.0f\n", "flat file", t_flat,
           cfg.rollouts / t_flat, cpu_flat, cfg.rollouts / cpu_flat, 1e3 * t_flat / nsteps, "-",
           flat_mb);
    printf("  read back: %ld rollouts in the database, as written\n", cfg.rollouts);
    printf("  store/flat throughput ratio: %.2f (wall), %.2f (cpu)\n", t_flat / t_db,
           cpu_flat / cpu_db);
    return 0;
}
