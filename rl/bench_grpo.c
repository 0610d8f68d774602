/* bench_grpo: `grpo bench grpo`: the time split of one GRPO step (rollout /
 * reward / train / log) and tokens/s of a recipe, run through the trainer API
 * (trainer.h, the code `grpo train` runs) into a temporary run folder, next to
 * the same step in PyTorch + transformers on the same checkpoint, CPU and
 * thread count, measured in the same run by tests/golden/bench_grpo_torch.py.
 *
 * It times steps only: no checkpoints are written (trainer_save is not part of
 * a step), and the temporary run folder is removed at the end. It does not
 * check results (the tests do). */
#define _XOPEN_SOURCE 700
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/xalloc.h"
#include "cli.h"
#include "cmd.h"
#include "runctx.h"
#include "trainer.h"

enum { PH_ROLLOUT, PH_REWARD, PH_TRAIN, PH_LOG, NPH };
static const char *const phase_names[NPH] = {"rollout", "reward", "train", "log"};

/* Means over the timed steps of one side (grpo or PyTorch). */
typedef struct Split {
    double s[NPH];          /* seconds per phase */
    double gen_tokens;      /* completion tokens sampled per step */
    double loss_tokens;     /* completion tokens in the loss per step */
    double reward;          /* mean reward */
    double cpu_s;           /* process CPU seconds per step (all threads) */
    double best_s;          /* the fastest timed step, wall seconds */
    int ok;
} Split;

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double split_total(const Split *x) { return x->s[0] + x->s[1] + x->s[2] + x->s[3]; }

/* Runs warmup + steps trainer steps; fills the mean split of the timed ones. */
static int run_grpo(Recipe *r, const char *recipe_path, int warmup, int steps, Split *out, Err *err) {
    Trainer *t = xcalloc(1, sizeof *t);
    r->max_steps = warmup + steps; /* the lr schedule sees the bench's length */
    r->save_steps = 0;
    int rc = trainer_open(t, r, recipe_path, 0, err);
    for (long step = 0; !rc && step < warmup + steps; step++) {
        TrainerStepInfo in;
        double c0 = cpu_now();
        if ((rc = trainer_step(t, step, &in, err))) break;
        double cpu = cpu_now() - c0;
        fprintf(stderr, "grpo bench grpo: grpo step %ld/%d%s: rollout %.2fs reward %.3fs train %.2fs log %.3fs, %ld tokens\n",
                step + 1, warmup + steps, step < warmup ? " (warm-up)" : "", in.t_rollout, in.t_reward, in.t_train,
                in.t_log, in.tokens_generated);
        if (step < warmup) continue;
        double w = 1.0 / steps, tot = in.t_rollout + in.t_reward + in.t_train + in.t_log;
        if (step == warmup || tot < out->best_s) out->best_s = tot;
        out->s[PH_ROLLOUT] += w * in.t_rollout, out->s[PH_REWARD] += w * in.t_reward;
        out->s[PH_TRAIN] += w * in.t_train, out->s[PH_LOG] += w * in.t_log;
        out->gen_tokens += w * in.tokens_generated, out->loss_tokens += w * in.tokens_trained;
        out->reward += w * in.reward_mean, out->cpu_s += w * cpu;
    }
    trainer_close(t);
    free(t);
    out->ok = !rc;
    return rc;
}

/* Runs argv (NULL-terminated) with stdout captured; returns it (caller frees)
 * or NULL when it could not run or exited non-zero (status in *status). */
static char *run_capture(char *const argv[], int *status) {
    int fd[2];
    *status = -1;
    if (pipe(fd)) return NULL;
    fflush(stdout); /* the child must not inherit buffered output */
    pid_t pid = fork();
    if (pid < 0) { close(fd[0]), close(fd[1]); return NULL; }
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]), close(fd[1]);
        FILE *null = freopen("/dev/null", "w", stderr); /* the loading progress bars */
        (void)null;
        execvp(argv[0], argv);
        _exit(127);
    }
    close(fd[1]);
    size_t cap = 1 << 14, n = 0;
    char *buf = xmalloc(cap);
    ssize_t got;
    while ((got = read(fd[0], buf + n, cap - n - 1)) > 0)
        if ((n += (size_t)got) + 1 == cap) buf = xrealloc(buf, cap *= 2);
    buf[n] = 0;
    close(fd[0]);
    waitpid(pid, status, 0);
    if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) { free(buf); return NULL; }
    return buf;
}

static double json_num(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* The PyTorch side: the script's JSON line parsed into a Split. recipe_path is
 * the recipe as grpo resolved it (recipe_write: defaults and --set applied). */
static int run_torch(const char *script, const char *recipe_path, const char *rollout, const char *attn,
                     const char *device, int threads, int warmup, int steps, Split *out) {
    char th[16], st[16], wu[16];
    snprintf(th, sizeof th, "%d", threads), snprintf(st, sizeof st, "%d", steps), snprintf(wu, sizeof wu, "%d", warmup);
    char *argv[] = {"python3", (char *)script, "--recipe", (char *)recipe_path, "--threads", th, "--steps", st,
                    "--warmup", wu, "--rollout", (char *)rollout, "--attn", (char *)attn, "--device", (char *)device,
                    NULL};
    int status;
    char *text = run_capture(argv, &status);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!j) {
        printf("note: PyTorch reference unavailable (python3 + torch + transformers running %s, exit status %d;"
               " run it alone with --recipe to see why); grpo only\n", script, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return -1;
    }
    static const char *keys[NPH] = {"rollout_s", "reward_s", "train_s", "log_s"};
    for (int p = 0; p < NPH; p++) out->s[p] = json_num(j, keys[p]);
    out->gen_tokens = json_num(j, "gen_tokens"), out->loss_tokens = json_num(j, "loss_tokens");
    out->reward = json_num(j, "reward"), out->cpu_s = json_num(j, "cpu_s");
    out->best_s = json_num(j, "best_step_s");
    out->ok = split_total(out) > 0;
    cJSON_Delete(j);
    return out->ok ? 0 : -1;
}

/* speedup of grpo: torch time / grpo time, or grpo rate / torch rate (0 when unknown) */
static double speedup(double torch_v, double grpo_v) { return torch_v > 0 && grpo_v > 0 ? torch_v / grpo_v : 0; }

/* Rates per step: generated tokens / rollout s, loss tokens / train s, generated tokens / step s. */
static void rates(const Split *x, double r[3]) {
    double tot = split_total(x);
    r[0] = x->s[PH_ROLLOUT] > 0 ? x->gen_tokens / x->s[PH_ROLLOUT] : 0;
    r[1] = x->s[PH_TRAIN] > 0 ? x->loss_tokens / x->s[PH_TRAIN] : 0;
    r[2] = tot > 0 ? x->gen_tokens / tot : 0;
}

/* One table row: name, grpo value [%], torch value [%], speedup; "-" where there is no reference. */
static void row(const char *name, const char *fmt, double gv, double gp, double tv, double tp, double sp, int ok) {
    char g[32], gpc[16] = "", tvs[32] = "-", tpc[16] = "", sps[16] = "";
    snprintf(g, sizeof g, fmt, gv);
    if (gp >= 0) snprintf(gpc, sizeof gpc, "%.1f%%", gp);
    if (ok) {
        snprintf(tvs, sizeof tvs, fmt, tv);
        if (tp >= 0) snprintf(tpc, sizeof tpc, "%.1f%%", tp);
        if (sp > 0) snprintf(sps, sizeof sps, "%.2fx", sp);
    }
    printf("%-18s %10s %7s %10s %7s %8s\n", name, g, gpc, tvs, tpc, sps);
}

static void print_table(const Split *g, const Split *t) {
    double tg = split_total(g), tt = split_total(t), rg[3], rt[3];
    rates(g, rg), rates(t, rt);
    int ok = t->ok;
    printf("%-18s %10s %7s %10s %7s %8s\n", "per step", "grpo", "%", "torch", "%", "speedup");
    for (int p = 0; p < NPH; p++)
        row(phase_names[p], "%.3f s", g->s[p], 100 * g->s[p] / tg, t->s[p], tt > 0 ? 100 * t->s[p] / tt : 0,
            speedup(t->s[p], g->s[p]), ok);
    row("step", "%.3f s", tg, 100, tt, 100, speedup(tt, tg), ok);
    row("fastest step", "%.3f s", g->best_s, -1, t->best_s, -1, speedup(t->best_s, g->best_s), ok);
    row("step CPU time", "%.3f s", g->cpu_s, -1, t->cpu_s, -1, speedup(t->cpu_s, g->cpu_s), ok);
    row("completion tokens", "%.0f", g->gen_tokens, -1, t->gen_tokens, -1, 0, ok);
    static const char *rn[3] = {"generated tok/s", "trained tok/s", "end-to-end tok/s"};
    for (int k = 0; k < 3; k++) row(rn[k], "%.0f", rg[k], -1, rt[k], -1, speedup(rg[k], rt[k]), ok);
    row("mean reward", "%.3f", g->reward, -1, t->reward, -1, 0, ok);
}

static cJSON *split_json(const Split *x) {
    cJSON *o = cJSON_CreateObject();
    double r[3];
    rates(x, r);
    for (int p = 0; p < NPH; p++) {
        char k[32];
        snprintf(k, sizeof k, "%s_s", phase_names[p]);
        cJSON_AddNumberToObject(o, k, x->s[p]);
    }
    cJSON_AddNumberToObject(o, "step_s", split_total(x));
    cJSON_AddNumberToObject(o, "cpu_s", x->cpu_s);
    cJSON_AddNumberToObject(o, "best_step_s", x->best_s);
    cJSON_AddNumberToObject(o, "gen_tokens", x->gen_tokens);
    cJSON_AddNumberToObject(o, "loss_tokens", x->loss_tokens);
    cJSON_AddNumberToObject(o, "gen_tok_s", r[0]);
    cJSON_AddNumberToObject(o, "train_tok_s", r[1]);
    cJSON_AddNumberToObject(o, "e2e_tok_s", r[2]);
    cJSON_AddNumberToObject(o, "reward", x->reward);
    return o;
}

/* One line: {"bench": "grpo", recipe, threads, steps, "grpo": {...}, "torch": {...} | null, "speedup": {...}} */
static void print_json(const char *recipe, const char *device, int threads, int warmup, int steps, const Split *g, const Split *t) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "bench", "grpo");
    cJSON_AddStringToObject(o, "recipe", recipe);
    cJSON_AddNumberToObject(o, "threads", threads);
    cJSON_AddStringToObject(o, "device", device);
    cJSON_AddNumberToObject(o, "warmup", warmup);
    cJSON_AddNumberToObject(o, "steps", steps);
    cJSON_AddItemToObject(o, "grpo", split_json(g));
    cJSON_AddItemToObject(o, "torch", t->ok ? split_json(t) : cJSON_CreateNull());
    cJSON *sp = cJSON_CreateObject();
    for (int p = 0; p < NPH; p++) cJSON_AddNumberToObject(sp, phase_names[p], speedup(t->s[p], g->s[p]));
    cJSON_AddNumberToObject(sp, "step", speedup(split_total(t), split_total(g)));
    double rg[3], rt[3];
    rates(g, rg), rates(t, rt);
    cJSON_AddNumberToObject(sp, "e2e_tok_s", speedup(rg[2], rt[2]));
    cJSON_AddNumberToObject(sp, "cpu", speedup(t->cpu_s, g->cpu_s));
    cJSON_AddNumberToObject(sp, "best_step", speedup(t->best_s, g->best_s));
    cJSON_AddItemToObject(o, "speedup", t->ok ? sp : (cJSON_Delete(sp), cJSON_CreateNull()));
    char *line = cJSON_PrintUnformatted(o);
    printf("%s\n", line);
    free(line);
    cJSON_Delete(o);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* A bench stopped by Ctrl-C cannot remove its /tmp/grpo-bench-grpo-<pid>-XXXXXX (the
 * run's database, checkpoints, the torch side's files): the next bench removes those
 * whose process is gone. */
static void tmp_sweep(void) {
    DIR *d = opendir("/tmp");
    for (struct dirent *e; d && (e = readdir(d));) {
        int pid;
        char path[300];
        if (sscanf(e->d_name, "grpo-bench-grpo-%d-", &pid) != 1 || pid <= 0 || pid == getpid()) continue;
        if (kill(pid, 0) == 0 || errno != ESRCH) continue;
        snprintf(path, sizeof path, "/tmp/%s", e->d_name);
        nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    if (d) closedir(d);
}

static CliOpt opts[] = {
    {"--recipe", "FILE", "recipes/tiny-arith.lua", "the recipe whose step is timed", 0},
    {"--set", "KEY=VALUE[;KEY=VALUE...]", "", "recipe overrides, applied to both sides", 0},
    {"--steps", "N", "3", "timed steps (the mean is reported)", 0},
    {"--warmup", "N", "1", "untimed steps first", 0},
    {"--threads", "N", "0", "threads for both sides (0 = the recipe's threads, else all cores)", 0},
    {"--device", "cpu|cuda", "", "where both sides run (default: the recipe's device); cuda: the reference\n"
     "uses bf16 autocast with fp32 weights and AdamW", 0},
    {"--torch-script", "FILE", "tests/golden/bench_grpo_torch.py", "PyTorch reference script", 0},
    {"--torch-rollout", "MODE", "manual", "reference rollout: manual (KV-cache loop) | generate (model.generate)", 0},
    {"--torch-attn", "IMPL", "eager", "reference attention implementation: eager | sdpa", 0},
    {"--no-reference", NULL, NULL, "skip the PyTorch reference", 0},
    {0}};

static const CliSpec spec = {
    "grpo bench grpo [--recipe FILE] [--steps N] [--threads N] [--device cpu|cuda] [--no-reference]",
    "Times warm-up + N GRPO steps of a recipe through the trainer (into a temporary run folder,\n"
    "removed after) and prints the mean time split (rollout / reward / train / log), generated,\n"
    "trained and end-to-end tokens/s; then the same step in PyTorch + transformers on the same\n"
    "checkpoint, CPU and threads (tests/golden/bench_grpo_torch.py) and grpo's speedup per phase\n"
    "and end to end, as a table and one JSON line.",
    opts, 0, 0};

int bench_grpo(int argc, char **argv) {
    const char *pos[1];
    int npos, rc = cli_parse(&spec, argc, argv, pos, &npos);
    if (rc) return rc == CLI_HELP ? 0 : 2;
    long steps, warmup, threads;
    if (cli_long(&spec, "--steps", &steps) || cli_long(&spec, "--warmup", &warmup) ||
        cli_long(&spec, "--threads", &threads))
        return 2;
    if (steps < 1 || warmup < 0 || threads < 0) {
        fprintf(stderr, "grpo bench grpo: --steps must be >= 1, --warmup and --threads >= 0\n");
        return 2;
    }
    const char *recipe_path = cli_str(&spec, "--recipe"), *sets = cli_str(&spec, "--set");
    static Recipe r;
    Err err = {0};
    recipe_defaults(&r);
    if (recipe_load(&r, recipe_path, &err) || runctx_set_recipe(&r, sets, &err)) {
        fprintf(stderr, "grpo bench grpo: %s\n", err.msg);
        return err.code ? err.code : 2;
    }
    const char *dev = cli_str(&spec, "--device");
    if (dev && dev[0]) snprintf(r.device, sizeof r.device, "%s", dev);
    if (threads == 0) threads = r.threads;
    if (threads > 0) omp_set_num_threads((int)threads);
    int nthreads = omp_get_max_threads();
    r.threads = nthreads;
    tmp_sweep();
    char tmp[64];
    snprintf(tmp, sizeof tmp, "/tmp/grpo-bench-grpo-%d-XXXXXX", (int)getpid());
    if (!mkdtemp(tmp)) { perror("grpo bench grpo: mkdtemp"); return 1; }
    snprintf(r.output_dir, sizeof r.output_dir, "%s", tmp);
    snprintf(r.name, sizeof r.name, "bench");
    printf("grpo bench grpo: %s (%s), %d prompts x %d samples, <= %d new tokens, %d threads, device %s, mean of %ld "
           "steps after %ld warm-up\n", recipe_path, r.model, r.prompts_per_step, r.num_generations,
           r.max_completion_length, nthreads, r.device, steps, warmup);
    fflush(stdout);
    Split g = {0}, t = {0};
    char resolved[sizeof tmp + 16];
    snprintf(resolved, sizeof resolved, "%s/recipe.lua", tmp);
    FILE *f = fopen(resolved, "w");
    if (f) recipe_write(&r, f), fclose(f);
    rc = run_grpo(&r, recipe_path, (int)warmup, (int)steps, &g, &err);
    if (!rc && !cli_flag(&spec, "--no-reference"))
        run_torch(cli_str(&spec, "--torch-script"), resolved, cli_str(&spec, "--torch-rollout"),
                  cli_str(&spec, "--torch-attn"), r.device, nthreads, (int)warmup, (int)steps, &t);
    nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (rc) { fprintf(stderr, "grpo bench grpo: %s\n", err.msg); return err.code ? err.code : 1; }
    print_table(&g, &t);
    print_json(recipe_path, r.device, nthreads, (int)warmup, (int)steps, &g, &t);
    return 0;
}
