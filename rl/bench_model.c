/* bench_model: `grpo bench model`: CPU forward and forward+backward tokens/s
 * of the fp32 reference at a few batch x length shapes, next to PyTorch eager
 * on the same config measured in the same run by
 * tests/golden/bench_model_torch.py (when python3 with torch is available). */
#include "base/clock.h"
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cmd.h"
#include "model/model.h"

typedef struct Shape { int B, T; } Shape;

static int parse_shapes(const char *s, Shape *out, int max) {
    int n = 0;
    while (*s && n < max) {
        int B, T, used;
        if (sscanf(s, "%dx%d%n", &B, &T, &used) != 2 || B <= 0 || T <= 0) return -1;
        out[n++] = (Shape){B, T};
        s += used;
        if (*s == ',') s++;
        else if (*s) return -1;
    }
    return n;
}

/* Median-free and simple: best of `iters` timed runs after one warm-up. */
static void time_model(Model *m, Shape sh, int iters, double *fwd, double *fb) {
    int N = sh.B * sh.T, V = m->cfg.vocab_size;
    int *ids = malloc(sizeof(int) * N), *tg = malloc(sizeof(int) * N);
    float *lp = malloc(sizeof(float) * N), *dl = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++) ids[i] = (int)((7L + 7919L * i) % V), tg[i] = (int)((11L + 104729L * i) % V);
    for (int i = 0; i < N; i++) dl[i] = -1.0f / N;
    Batch b = {sh.B, sh.T, ids, tg, NULL};
    Err err = {0};
    *fwd = *fb = 1e30;
    for (int it = 0; it <= iters; it++) {
        double t0 = clock_now();
        model_forward(m, &b, 1.0f, lp, NULL, &err);
        double t1 = clock_now();
        model_backward(m, &b, dl, NULL);
        double t2 = clock_now();
        if (it == 0) continue; /* warm-up */
        if (t1 - t0 < *fwd) *fwd = t1 - t0;
        if (t2 - t0 < *fb) *fb = t2 - t0;
    }
    free(ids), free(tg), free(lp), free(dl);
}

/* Runs the PyTorch reference; returns its JSON lines (caller frees) or NULL. */
static char *run_torch(const char *script, const char *config, const char *shapes, int threads, int iters) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "python3 '%s' --config '%s' --shapes '%s' --threads %d --iters %d 2>/dev/null", script,
             config, shapes, threads, iters);
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap);
    size_t r;
    while ((r = fread(out + n, 1, cap - n - 1, p)) > 0) n += r;
    out[n] = 0;
    if (pclose(p) != 0 || !n) { free(out); return NULL; }
    return out;
}

/* Finds "key": number in the JSON line for shape "BxT". */
static double torch_value(const char *json, Shape sh, const char *key) {
    char tag[64];
    snprintf(tag, sizeof tag, "\"shape\": \"%dx%d\"", sh.B, sh.T);
    const char *line = json ? strstr(json, tag) : NULL;
    if (!line) return 0;
    const char *end = strchr(line, '\n');
    char kk[64];
    snprintf(kk, sizeof kk, "\"%s\": ", key);
    const char *k = strstr(line, kk);
    if (!k || (end && k > end)) return 0;
    return atof(k + strlen(kk));
}

int bench_model(int argc, char **argv) {
    CliOpt opts[] = {
        {"--config", "FILE", NULL, "config.json of the model to time (required)", 0},
        {"--shapes", "LIST", "1x128,4x128,8x256", "batch x length shapes, comma separated", 0},
        {"--iters", "N", "3", "timed iterations per shape (best is reported)", 0},
        {"--threads", "N", "0", "threads for both sides (0 = all cores)", 0},
        {"--torch-script", "FILE", "tests/golden/bench_model_torch.py", "PyTorch reference script", 0},
        {"--no-torch", NULL, NULL, "skip the PyTorch reference", 0},
        {0}};
    CliSpec spec = {"grpo bench model --config CONFIG.json [options]",
                    "Times the CPU fp32 forward and forward+backward (log-probs of targets, backward through\n"
                    "every parameter) and, in the same run, PyTorch eager on the same config; prints tokens/s\n"
                    "and the ratio grpo / PyTorch.",
                    opts, 0, 0};
    const char *pos[1];
    int npos, rc = cli_parse(&spec, argc, argv, pos, &npos);
    if (rc) return rc == CLI_HELP ? 0 : 2;
    long iters, threads;
    if (cli_require(&spec, "--config") || cli_long(&spec, "--iters", &iters) || cli_long(&spec, "--threads", &threads))
        return 2;
    Shape shapes[16];
    int ns = parse_shapes(cli_str(&spec, "--shapes"), shapes, 16);
    if (ns <= 0) { fprintf(stderr, "grpo bench model: --shapes: expected BxT[,BxT...]\n"); return 2; }
    if (threads > 0) omp_set_num_threads((int)threads);
    int nthreads = omp_get_max_threads();
    ModelConfig cfg;
    Err err = {0};
    if (config_load(&cfg, cli_str(&spec, "--config"), &err)) { fprintf(stderr, "grpo: %s\n", err.msg); return err.code; }
    Model m;
    ModelOpts mo = {0};
    if (model_create(&m, &cfg, &mo, &err)) { fprintf(stderr, "grpo: %s\n", err.msg); return 1; }
    model_init_random(&m, 1, 0.02f);
    model_alloc_grads(&m);
    char *tj = NULL;
    if (!cli_flag(&spec, "--no-torch")) {
        tj = run_torch(cli_str(&spec, "--torch-script"), cli_str(&spec, "--config"), cli_str(&spec, "--shapes"),
                       nthreads, (int)iters);
        if (!tj) printf("note: PyTorch reference unavailable (python3 + torch + transformers, script %s); grpo only\n",
                        cli_str(&spec, "--torch-script"));
    }
    double total, active;
    config_param_counts(&cfg, &total, &active);
    printf("model %s: %.2fM parameters (%.2fM active), %d threads, fp32\n", cli_str(&spec, "--config"), total / 1e6,
           active / 1e6, nthreads);
    printf("%-8s %14s %14s %8s %16s %16s %8s\n", "shape", "fwd tok/s", "torch fwd", "ratio", "fwd+bwd tok/s",
           "torch fwd+bwd", "ratio");
    for (int i = 0; i < ns; i++) {
        double tf, tb;
        time_model(&m, shapes[i], (int)iters, &tf, &tb);
        double n = shapes[i].B * shapes[i].T, f = n / tf, fb = n / tb;
        double rf = torch_value(tj, shapes[i], "fwd_tok_s"), rb = torch_value(tj, shapes[i], "fwdbwd_tok_s");
        char s[32];
        snprintf(s, sizeof s, "%dx%d", shapes[i].B, shapes[i].T);
        printf("%-8s %14.0f %14.0f %7.2fx %16.0f %16.0f %7.2fx\n", s, f, rf, rf > 0 ? f / rf : 0, fb, rb,
               rb > 0 ? fb / rb : 0);
    }
    free(tj);
    model_free(&m);
    return 0;
}
