/* bench_sandbox: `grpo bench sandbox` — sandboxed executions per second of a trivial
 * Python program, next to plain unsandboxed `python3 -I -S -c pass` spawns measured
 * in the same run with the same parallelism (the ratio is the number to watch), and
 * the rate for one HumanEval problem run with its tests; then the same through the
 * fork server (a pool in warm mode: sandbox_zygote.h, a warm interpreter per slot).
 * Not a test: it times things. */
#define _GNU_SOURCE
#include "base/clock.h"
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "cmd.h"
#include "sandbox/sandbox_cases.h"   // defines: sandbox_assert_program, sandbox_pool_*

extern char **environ;

typedef struct Spawner {
    const char *python;
    double until;
    long runs, failures;
} Spawner;

static void *spawn_loop(void *arg) {
    Spawner *s = arg;
    char *argv[] = {(char *)s->python, "-I", "-S", "-c", "pass", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    while (clock_now() < s->until) {
        pid_t pid;
        int st = 0;
        if (posix_spawn(&pid, s->python, &fa, NULL, argv, environ) != 0 || waitpid(pid, &st, 0) < 0 ||
            !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            s->failures++;
        else
            s->runs++;
    }
    posix_spawn_file_actions_destroy(&fa);
    return NULL;
}

/* CPU seconds (user + system) of this process and its reaped children: the sandbox's
 * supervisor threads, its processes and the programs (tier 2's init reaps its tree, tier
 * 1's pid 1 is the program), or the plain spawns. Less sensitive to other load on the
 * machine than executions per second; kernel workers (namespace teardown) are not in it. */
static double cpu_used(void) {
    struct rusage a, b;
    getrusage(RUSAGE_SELF, &a);
    getrusage(RUSAGE_CHILDREN, &b);
    return a.ru_utime.tv_sec + a.ru_stime.tv_sec + b.ru_utime.tv_sec + b.ru_stime.tv_sec +
           (a.ru_utime.tv_usec + a.ru_stime.tv_usec + b.ru_utime.tv_usec + b.ru_stime.tv_usec) * 1e-6;
}

static double plain_rate(const char *python, int nthreads, double seconds, long *nruns) {
    Spawner sp[64];
    pthread_t th[64];
    double t0 = clock_now();
    for (int i = 0; i < nthreads; i++) {
        sp[i] = (Spawner){python, t0 + seconds, 0, 0};
        pthread_create(&th[i], NULL, spawn_loop, &sp[i]);
    }
    long runs = 0, fails = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        runs += sp[i].runs;
        fails += sp[i].failures;
    }
    if (fails) fprintf(stderr, "bench sandbox: %ld plain spawns failed\n", fails);
    *nruns += runs;
    return runs / (clock_now() - t0);
}

/* Runs batches of `cfg` through the pool for `seconds`; returns executions per second
 * and the number whose check failed in *bad. */
static double pool_rate(SandboxPool *pool, const SandboxConfig *cfg, double seconds, const char *nonce, long *bad,
                        long *nruns) {
    int batch = 4 * sandbox_pool_slots(pool);
    SandboxConfig cfgs[256];
    SandboxResult res[256];
    for (int i = 0; i < batch; i++) cfgs[i] = *cfg;
    long runs = 0;
    *bad = 0;
    double t0 = clock_now();
    while (clock_now() - t0 < seconds) {
        Err err = {0};
        if (sandbox_pool_run(pool, cfgs, res, batch, &err) < 0) {
            fprintf(stderr, "bench sandbox: %s\n", err.msg);
            return 0;
        }
        for (int i = 0; i < batch; i++) {
            int good = nonce ? sandbox_assert_passed(&res[i], nonce) : res[i].status == SANDBOX_OK;
            if (!good && !*bad) fprintf(stderr, "bench sandbox: a run ended %s: %s %s\n",
                                        sandbox_status_name(res[i].status), res[i].message, res[i].err);
            *bad += !good;
            sandbox_result_free(&res[i]);
        }
        runs += batch;
    }
    *nruns += runs;
    return runs / (clock_now() - t0);
}

/* HumanEval problem `index` from a JSONL file as an assert program; NULL if unreadable. */
static char *humaneval_program(const char *path, int index, char nonce[33], char *task, size_t task_len) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *line = NULL, *prog = NULL;
    size_t cap = 0;
    for (int i = 0; getline(&line, &cap, f) > 0; i++) {
        if (i != index) continue;
        cJSON *o = cJSON_Parse(line);
        const char *k[] = {"prompt", "canonical_solution", "test", "entry_point", "task_id"};
        const char *v[5];
        int ok = o != NULL;
        for (int j = 0; j < 5 && ok; j++) {
            cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k[j]);
            ok = cJSON_IsString(x);
            v[j] = ok ? x->valuestring : NULL;
        }
        if (ok) {
            size_t n = strlen(v[0]) + strlen(v[1]) + 1;
            char *code = malloc(n);
            snprintf(code, n, "%s%s", v[0], v[1]);
            prog = sandbox_assert_program(code, v[2], v[3], nonce, NULL);
            snprintf(task, task_len, "%s", v[4]);
            free(code);
        }
        cJSON_Delete(o);
        break;
    }
    free(line);
    fclose(f);
    return prog;
}

int bench_sandbox(int argc, char **argv) {
    CliOpt opts[] = {
        {"--seconds", "S", "3", "time spent on each measurement", NULL},
        {"--slots", "N", "2", "parallel sandbox slots (and plain spawner threads)", NULL},
        {"--tier", "T", "auto", "isolation tier: auto, 1 or 2", NULL},
        {"--humaneval", "FILE", "../shared/data/humaneval.jsonl", "HumanEval JSONL for the per-problem rate", NULL},
        {"--problem", "I", "0", "which HumanEval problem (line index)", NULL},
        {"--cgroup", "DIR", "", "cgroup v2 root for per-run cgroups: a delegated directory, auto or off "
                                "(empty = $GRPO_SANDBOX_CGROUP, else auto)", NULL},
        {0},
    };
    CliSpec spec = {"grpo bench sandbox [options]",
                    "Executions per second of a trivial Python program in the sandbox vs plain "
                    "`python3 -I -S -c pass` spawns at the same parallelism, and of one HumanEval problem with its tests.",
                    opts, 0, 0};
    const char *pos[1];
    int npos;
    int rc = cli_parse(&spec, argc, argv, pos, &npos);
    if (rc == CLI_HELP) return 0;
    if (rc) return 2;
    double seconds;
    long slots, problem;
    if (cli_double(&spec, "--seconds", &seconds) || cli_long(&spec, "--slots", &slots) ||
        cli_long(&spec, "--problem", &problem))
        return 2;
    if (seconds <= 0 || slots < 1 || slots > 32 || problem < 0) {
        fprintf(stderr, "grpo bench sandbox: --seconds > 0, --slots in 1..32, --problem >= 0\n");
        return 2;
    }
    const char *tier_s = cli_str(&spec, "--tier");
    int tier = !strcmp(tier_s, "1") ? 1 : !strcmp(tier_s, "2") ? 2 : 0;
    const char *cgroot = cli_str(&spec, "--cgroup");
    if (cgroot[0]) setenv("GRPO_SANDBOX_CGROUP", cgroot, 1);  // read by the probe, once
    const char *python = sandbox_tool_path(SANDBOX_PYTHON);
    if (!python) {
        fprintf(stderr, "grpo bench sandbox: no python3 found\n");
        return 1;
    }
    printf("probe: %s\n", sandbox_probe_report());
    Err err = {0};
    SandboxPool *pool = sandbox_pool_new((int)slots, &err);
    if (!pool) {
        fprintf(stderr, "grpo bench sandbox: %s\n", err.msg);
        return 1;
    }
    SandboxConfig cfg = {.lang = SANDBOX_PYTHON, .code = "pass\n", .timeout_s = 10, .memory_mb = 512, .tier = tier};
    SandboxResult one;
    sandbox_run(&cfg, &one, NULL);
    const char *iso = one.isolation ? one.isolation : "?", *cg = one.cgroup ? one.cgroup : "none";
    sandbox_result_free(&one);
    // Interleave short windows of both, so that load from other processes drifting over
    // the run hits both sides alike.
    enum { ROUNDS = 6 };
    double plain = 0, boxed = 0, plain_cpu = 0, boxed_cpu = 0;
    long bad = 0, b, plain_n = 0, boxed_n = 0, n_ignored = 0;
    for (int r = 0; r < ROUNDS; r++) {
        double c0 = cpu_used();
        plain += plain_rate(python, (int)slots, seconds / ROUNDS, &plain_n) / ROUNDS;
        double c1 = cpu_used();
        boxed += pool_rate(pool, &cfg, seconds / ROUNDS, NULL, &b, &boxed_n) / ROUNDS;
        boxed_cpu += cpu_used() - c1;
        plain_cpu += c1 - c0;
        bad += b;
    }
    double pc = plain_n ? plain_cpu * 1e3 / plain_n : 0, bc = boxed_n ? boxed_cpu * 1e3 / boxed_n : 0;
    printf("plain   %-40s %8.1f exec/s  (%ld threads; %.2f ms CPU per exec)\n", "python3 -I -S -c pass", plain, slots, pc);
    printf("sandbox %-40s %8.1f exec/s  (%ld slots, isolation %s, cgroup %s, %ld not ok; %.2f ms CPU per exec)\n",
           "trivial program", boxed, slots, iso, cg, bad, bc);
    printf("ratio   sandbox / plain                          %8.2f  (by CPU per exec: %.2f)\n",
           plain > 0 ? boxed / plain : 0, bc > 0 ? pc / bc : 0);
    char nonce[33], task[64] = "";
    char *prog = humaneval_program(cli_str(&spec, "--humaneval"), (int)problem, nonce, task, sizeof task);
    if (prog) {
        SandboxConfig he = cfg;
        he.code = prog;
        double r = pool_rate(pool, &he, seconds, nonce, &bad, &n_ignored);
        printf("sandbox %-40s %8.1f exec/s  (%ld failed the nonce check)\n", task, r, bad);
        free(prog);
    } else {
        printf("sandbox HumanEval: skipped (%s not readable)\n", cli_str(&spec, "--humaneval"));
    }
    // The fork server: the same pool API in warm mode (a zygote per slot; tier 2, root only).
    SandboxPool *warm = sandbox_pool_new((int)slots, &err);
    if (!warm || sandbox_pool_use_zygotes(warm, cfg.memory_mb, &err) < 0) {
        printf("zygote  skipped: %s\n", err.msg);
    } else {
        double zr = pool_rate(warm, &cfg, seconds, NULL, &bad, &n_ignored);
        printf("zygote  %-40s %8.1f exec/s  (%ld warm interpreters, %ld not ok)\n", "trivial program", zr, slots, bad);
        printf("ratio   zygote / plain                           %8.2f\n", plain > 0 ? zr / plain : 0);
        char znonce[33];
        char *zprog = humaneval_program(cli_str(&spec, "--humaneval"), (int)problem, znonce, task, sizeof task);
        if (zprog) {
            SandboxConfig he = cfg;
            he.code = zprog;
            double r = pool_rate(warm, &he, seconds, znonce, &bad, &n_ignored);
            printf("zygote  %-40s %8.1f exec/s  (%ld failed the nonce check)\n", task, r, bad);
            free(zprog);
        }
    }
    sandbox_pool_free(warm);
    sandbox_pool_free(pool);
    return 0;
}
