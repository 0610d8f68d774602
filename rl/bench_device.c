/* bench_device: `grpo bench decode` and `grpo bench train`, the speed of the two
 * halves of a GRPO step on the CPU or the GPU, each next to PyTorch +
 * transformers on the same weights and device measured in the same run
 * (tests/golden/bench_decode_torch.py, bench_train_torch.py), and against the
 * device's limit where one applies:
 *  - decode: the rollout engine `grpo train` samples with (rollout_generate_on,
 *    one sample per prompt, EOS ignored so every row makes exactly --new tokens,
 *    temperature 1) at several batch sizes; tokens/s, and the memory traffic of a
 *    decode step (bf16 weights it touches + the latent cache it reads) / step time
 *    as a share of the card's peak bandwidth;
 *  - train: forward + backward (next-token cross-entropy) + AdamW over batches of
 *    --seq tokens (trainer_cuda's path on the GPU, model_forward/adamw_step on
 *    the CPU); tokens/s and model FLOPs utilisation: (6 N_act + 6 L n_h (d_qk +
 *    d_v) (S+1)/2) FLOPs per token (deepseek-v3.md §8) against the GPU's dense
 *    bf16 peak (--peak-tflops, 989 for an H100 SXM).
 * Weights: a checkpoint (--model) or a random one from --config (seed 1, std 0.02),
 * written to a temporary folder for the reference and removed after. It checks
 * no results (the tests do). */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/clock.h"
#include "base/xalloc.h"
#include "cli.h"
#include "cmd.h"
#include "model/model.h"
#include "rl/optim.h"
#include "rl/rollout.h"
#include "rl/trainer_cuda.h"
#ifdef GRPO_MODEL_CUDA_ENABLED
#include "kernels/cuda/device.h"
#include "rl/rollout_cuda.h"
#endif

/* ---- shared: weights, sizes, the reference --------------------------------------- */

typedef struct Bench {
    Model m;
    int cuda;              /* --device cuda */
    char dir[64];          /* the weights as the reference loads them */
    int tmpdir;            /* dir is ours to remove */
} Bench;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void bench_free(Bench *b) {
    if (b->tmpdir) nftw(b->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    model_free(&b->m);
}

/* Loads --model or makes --config's random model (saved for the reference unless no_ref). */
static int bench_open(Bench *b, const CliSpec *spec, int no_ref, Err *err) {
    const char *dev = cli_str(spec, "--device"), *model = cli_str(spec, "--model"), *cfgp = cli_str(spec, "--config");
    if (strcmp(dev, "cpu") && strcmp(dev, "cuda"))
        return err_set(err, ERR_INPUT, "--device must be cpu or cuda (got \"%s\")", dev);
    b->cuda = !strcmp(dev, "cuda");
#ifdef GRPO_MODEL_CUDA_ENABLED
    if (b->cuda && cuda_device_count() <= 0) return err_set(err, ERR_INPUT, "--device cuda: no CUDA device is visible");
#else
    if (b->cuda) return err_set(err, ERR_INPUT, "--device cuda: this grpo was built without the CUDA backend");
#endif
    ModelOpts mo = {0};
    if (model && model[0]) {
        snprintf(b->dir, sizeof b->dir, "%.63s", model);
        return model_load(&b->m, model, &mo, err);
    }
    ModelConfig cfg;
    if (config_load(&cfg, cfgp, err) || model_create(&b->m, &cfg, &mo, err)) return -1;
    model_init_random(&b->m, 1, 0.02f);
    if (no_ref) return 0;
    snprintf(b->dir, sizeof b->dir, "/tmp/grpo-bench-device-%d-XXXXXX", (int)getpid());
    if (!mkdtemp(b->dir)) return err_set(err, ERR_WORK, "mkdtemp %s failed", b->dir);
    b->tmpdir = 1;
    return model_save(&b->m, b->dir, 0, err);
}

/* Parameters of tensors whose name contains `part` (NULL: all), the embedding excluded. */
static double params_named(const Model *m, const char *part, int routed) {
    double n = 0;
    for (int i = 0; i < m->nparams; i++) {
        const Param *p = &m->ptab[i];
        if (strstr(p->name, "embed_tokens")) continue;
        int is_routed = strstr(p->name, ".mlp.experts.") != NULL;
        if (is_routed != routed || (part && !strstr(p->name, part))) continue;
        n += (double)p->numel;
    }
    return n;
}

/* Routed experts' parameters of one expert of one layer. */
static double expert_params(const Model *m) {
    const ModelConfig *c = &m->cfg;
    return 3.0 * c->hidden_size * c->moe_intermediate_size;
}

/* Runs the reference script (argv NULL-terminated); its stdout, or NULL (message printed). */
static char *run_reference(char *const argv[]) {
    char cmd[4096] = "";
    for (int i = 0; argv[i]; i++) {
        strncat(cmd, "'", sizeof cmd - strlen(cmd) - 1);
        strncat(cmd, argv[i], sizeof cmd - strlen(cmd) - 1);
        strncat(cmd, "' ", sizeof cmd - strlen(cmd) - 1);
    }
    strncat(cmd, "2>/dev/null", sizeof cmd - strlen(cmd) - 1);
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    size_t cap = 1 << 16, n = 0, r;
    char *out = xmalloc(cap);
    while (p && (r = fread(out + n, 1, cap - n - 1, p)) > 0) n += r;
    out[n] = 0;
    if (!p || pclose(p) != 0 || !n) {
        printf("note: PyTorch reference unavailable (python3 + torch + transformers running %s; run it alone to see "
               "why); grpo only\n", argv[1]);
        free(out);
        return NULL;
    }
    return out;
}

/* "key": number in the reference's line holding "tag" (0 when absent). */
static double ref_value(const char *out, const char *tag, const char *key) {
    const char *line = out ? strstr(out, tag) : NULL;
    if (!line) return 0;
    const char *end = strchr(line, '\n');
    char kk[64];
    snprintf(kk, sizeof kk, "\"%s\": ", key);
    const char *k = strstr(line, kk);
    return k && (!end || k < end) ? atof(k + strlen(kk)) : 0;
}

static double peak_bytes_per_s(int cuda) {
#ifdef GRPO_MODEL_CUDA_ENABLED
    if (cuda) return cuda_device_hbm_bytes_per_s();
#endif
    (void)cuda;
    return 0;
}

static const char *device_name(int cuda, char *buf, int n) {
    snprintf(buf, n, "the CPU, %d threads, fp32", omp_get_max_threads());
#ifdef GRPO_MODEL_CUDA_ENABLED
    if (cuda && cuda_device_describe(buf, n) < 0) snprintf(buf, n, "no GPU");
#endif
    return buf;
}

/* ---- decode ------------------------------------------------------------------------ */

/* Bytes a decode step of B sequences of avg_len cached tokens reads: every weight
 * but the embedding and the routed experts, the routed experts the batch touches
 * (E (1 - (1 - k/E)^B) per MoE layer, routing taken as uniform), and the cache. */
static double step_bytes(const Model *m, int B, double avg_len, int elem) {
    const ModelConfig *c = &m->cfg;
    double w = params_named(m, NULL, 0);
    int moe_layers = 0;
    for (int l = 0; l < c->num_hidden_layers; l++) moe_layers += m->layers[l].router != NULL;
    if (c->n_routed_experts) {
        double E = c->n_routed_experts, k = c->num_experts_per_tok;
        w += moe_layers * E * (1 - pow(1 - k / E, B)) * expert_params(m);
    }
    double cache = (double)B * avg_len * c->num_hidden_layers * (c->kv_lora_rank + c->qk_rope_head_dim);
    return (w + cache) * elem;
}

typedef struct DecodeRun { double total_s, prefill_s, tok_s, decode_tok_s, step_s; } DecodeRun;

static int decode_once(Bench *b, const RolloutEngine *e, int B, int prompt, int new_tokens, DecodeRun *out, Err *err) {
    const int V = b->m.cfg.vocab_size;
    int *ids = xmalloc(sizeof(int) * (size_t)B * prompt), *len = xmalloc(sizeof(int) * B);
    const int **pp = xmalloc(sizeof(int *) * B);
    for (long i = 0; i < (long)B * prompt; i++) ids[i] = (int)((7 + 7919 * i) % V); /* bench_decode_torch.py's prompts */
    for (int i = 0; i < B; i++) pp[i] = ids + (long)i * prompt, len[i] = prompt;
    RolloutOpts o = rollout_defaults();
    o.group_size = 1, o.max_new_tokens = new_tokens, o.seed = 1, o.eos_ids = len, o.n_eos = 0; /* no EOS: full length */
    RolloutResult res;
    int rc = e ? rollout_generate_on(e, &b->m.cfg, B, pp, len, &o, &res, err)
               : rollout_generate(&b->m, B, pp, len, &o, &res, err);
    if (!rc) {
        const RolloutStats *s = &res.stats;
        double dec = s->total_s - s->prefill_s;
        *out = (DecodeRun){s->total_s, s->prefill_s, s->new_tokens / s->total_s,
                           dec > 0 ? (s->new_tokens - B) / dec : 0, s->steps ? dec / s->steps : 0};
        rollout_result_free(&res);
    }
    free(ids), free(len), free(pp);
    return rc;
}

/* The line every bench here ends with: {"bench": name, "device": ..., <fields>}. */
static void json_print(cJSON *o) {
    char *line = cJSON_PrintUnformatted(o);
    printf("%s\n", line);
    free(line);
    cJSON_Delete(o);
}

static cJSON *json_head(const char *bench, const Bench *b, const char *device) {
    cJSON *o = cJSON_CreateObject();
    double total, active;
    config_param_counts(&b->m.cfg, &total, &active);
    cJSON_AddStringToObject(o, "bench", bench);
    cJSON_AddStringToObject(o, "device", device);
    cJSON_AddNumberToObject(o, "params", total);
    cJSON_AddNumberToObject(o, "active_params", active);
    return o;
}

static int decode_all(Bench *b, const int *batch, int nb, int prompt, int new_tokens, const char *ref, cJSON *rows,
                      Err *err) {
    const RolloutEngine *e = NULL;
#ifdef GRPO_MODEL_CUDA_ENABLED
    CudaModel *g = NULL;
    RolloutCuda *rc = NULL;
    RolloutEngine eng;
    if (b->cuda) {
        if (!(g = cuda_model_new(&b->m, err))) return -1;
        rc = rollout_cuda_new(g), eng = rollout_cuda_engine(rc), e = &eng;
    }
#endif
    const double peak = peak_bytes_per_s(b->cuda);
    printf("%6s %12s %12s %10s %8s %14s %10s %8s\n", "batch", "tok/s", "decode tok/s", "step ms", "GB/s",
           peak > 0 ? "of peak HBM" : "", "torch", "ratio");
    int rcode = 0;
    for (int i = 0; i < nb && !rcode; i++) {
        DecodeRun w, r;
        if ((rcode = decode_once(b, e, batch[i], prompt, 8, &w, err))) break; /* warm-up: buffers, cuBLAS plans */
        if ((rcode = decode_once(b, e, batch[i], prompt, new_tokens, &r, err))) break;
        double bytes = step_bytes(&b->m, batch[i], prompt + new_tokens / 2.0, b->cuda ? 2 : 4);
        double gbs = r.step_s > 0 ? bytes / r.step_s / 1e9 : 0;
        char tag[32], share[32] = "", ts[32] = "-", ratio[32] = "-";
        snprintf(tag, sizeof tag, "\"batch\": %d,", batch[i]);
        double t = ref_value(ref, tag, "tok_s");
        if (peak > 0) snprintf(share, sizeof share, "%.1f%%", 100 * gbs * 1e9 / peak);
        if (t > 0) snprintf(ts, sizeof ts, "%.0f", t), snprintf(ratio, sizeof ratio, "%.2fx", r.tok_s / t);
        printf("%6d %12.0f %12.0f %10.3f %8.1f %14s %10s %8s\n", batch[i], r.tok_s, r.decode_tok_s, 1e3 * r.step_s,
               gbs, share, ts, ratio);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "batch", batch[i]);
        cJSON_AddNumberToObject(o, "tok_s", r.tok_s);
        cJSON_AddNumberToObject(o, "decode_tok_s", r.decode_tok_s);
        cJSON_AddNumberToObject(o, "step_s", r.step_s);
        cJSON_AddNumberToObject(o, "prefill_s", r.prefill_s);
        cJSON_AddNumberToObject(o, "bytes_per_step", bytes);
        cJSON_AddNumberToObject(o, "peak_share", peak > 0 ? gbs * 1e9 / peak : 0);
        cJSON_AddItemToObject(o, "torch_tok_s", t > 0 ? cJSON_CreateNumber(t) : cJSON_CreateNull());
        cJSON_AddItemToArray(rows, o);
        fflush(stdout);
    }
#ifdef GRPO_MODEL_CUDA_ENABLED
    rollout_cuda_free(rc);
    cuda_model_free(g);
#endif
    return rcode;
}

static int parse_list(const char *s, int *out, int max) {
    int n = 0;
    for (char *end; *s && n < max; s = *end == ',' ? end + 1 : end) {
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0 || (*end && *end != ',')) return -1;
        out[n++] = (int)v;
    }
    return n;
}

static CliOpt common[] = {
    {"--config", "FILE", "tests/configs/dsv3-1b-a200m.json", "config.json of a random model to time", 0},
    {"--model", "DIR", "", "a checkpoint to time instead of --config's random weights", 0},
    {"--device", "cpu|cuda", "cuda", "where grpo and the reference run", 0},
    {"--no-reference", NULL, NULL, "skip the PyTorch reference", 0},
};

int bench_decode(int argc, char **argv) {
    CliOpt opts[] = {common[0], common[1], common[2], common[3],
                     {"--batch", "LIST", "1,64,256", "batch sizes (sequences decoded together)", 0},
                     {"--prompt", "N", "256", "prompt tokens per sequence", 0},
                     {"--new", "N", "1024", "new tokens per sequence", 0},
                     {"--torch-script", "FILE", "tests/golden/bench_decode_torch.py", "reference script", 0},
                     {0}};
    CliSpec spec = {"grpo bench decode [--config F | --model DIR] [--device cpu|cuda] [--batch 1,64,256]",
                    "Decoding tokens/s of the rollout engine at each batch size (random prompts, exactly --new\n"
                    "tokens, sampled at T = 1) and the memory traffic per step against the device's peak; next to\n"
                    "transformers' generate (static cache, bf16 on the GPU) on the same weights and device.",
                    opts, 0, 0};
    const char *pos[1];
    int npos, rc = cli_parse(&spec, argc, argv, pos, &npos);
    if (rc) return rc == CLI_HELP ? 0 : 2;
    long prompt, new_tokens;
    int batch[16], nb = parse_list(cli_str(&spec, "--batch"), batch, 16);
    if (cli_long(&spec, "--prompt", &prompt) || cli_long(&spec, "--new", &new_tokens)) return 2;
    if (nb <= 0 || prompt < 1 || new_tokens < 2) {
        fprintf(stderr, "grpo bench decode: --batch N[,N...], --prompt >= 1 and --new >= 2\n");
        return 2;
    }
    static Bench b;
    Err err = {0};
    int no_ref = cli_flag(&spec, "--no-reference");
    char *ref = NULL, dev[160];
    if (!bench_open(&b, &spec, no_ref, &err)) {
        double total, active;
        config_param_counts(&b.m.cfg, &total, &active);
        printf("grpo bench decode: %.1fM parameters (%.1fM active), prompt %ld + %ld new tokens, on %s\n", total / 1e6,
               active / 1e6, prompt, new_tokens, device_name(b.cuda, dev, sizeof dev));
        char ps[16], ns[16];
        snprintf(ps, sizeof ps, "%ld", prompt), snprintf(ns, sizeof ns, "%ld", new_tokens);
        char *av[] = {"python3", (char *)cli_str(&spec, "--torch-script"), "--model", b.dir, "--batch",
                      (char *)cli_str(&spec, "--batch"), "--prompt", ps, "--new", ns, "--device",
                      (char *)cli_str(&spec, "--device"), NULL};
        if (!no_ref) ref = run_reference(av);
        cJSON *o = json_head("decode", &b, dev), *rows = cJSON_AddArrayToObject(o, "rows");
        cJSON_AddNumberToObject(o, "prompt", (double)prompt);
        cJSON_AddNumberToObject(o, "new", (double)new_tokens);
        rc = decode_all(&b, batch, nb, (int)prompt, (int)new_tokens, ref, rows, &err);
        if (!rc) json_print(o);
        else cJSON_Delete(o);
    } else {
        rc = -1;
    }
    if (rc) fprintf(stderr, "grpo bench decode: %s\n", err.msg);
    free(ref);
    bench_free(&b);
    return rc ? (err.code ? err.code : 1) : 0;
}

/* ---- train ------------------------------------------------------------------------- */

/* Model FLOPs per trained token at sequence length S (deepseek-v3.md §8). */
static double flops_per_token(const Model *m, int S) {
    const ModelConfig *c = &m->cfg;
    double n_act = params_named(m, NULL, 0), moe_layers = 0;
    for (int l = 0; l < c->num_hidden_layers; l++) moe_layers += m->layers[l].router != NULL;
    n_act += moe_layers * c->num_experts_per_tok * expert_params(m);
    double attn = 6.0 * c->num_hidden_layers * c->num_attention_heads * (c->qk_head_dim + c->v_head_dim) * (S + 1) / 2.0;
    return 6 * n_act + attn;
}

typedef struct TrainSide {
    int cuda;
    TrainerCuda *g;
    AdamW opt;
} TrainSide;

/* One optimizer step over B sequences of S tokens: forward, backward of the mean cross-entropy, AdamW. */
static int train_step(Bench *b, TrainSide *t, const Batch *bt, const PackedBatch *pk, float *lp, float *dl, Err *err) {
    AdamWStepInfo info;
    if (t->g) { /* the trainer's path: B root segments of S tokens */
        if (trainer_cuda_zero_grads(t->g, err) || trainer_cuda_forward(t->g, 0, pk, 1.0f, lp, NULL, NULL, err) ||
            trainer_cuda_backward(t->g, pk, dl, err))
            return -1;
        return trainer_cuda_step(t->g, 1e-5, &info, err);
    }
    model_zero_grads(&b->m);
    if (model_forward(&b->m, bt, 1.0f, lp, NULL, err)) return -1;
    model_backward(&b->m, bt, dl, NULL);
    adamw_step(&t->opt, b->m.params, b->m.grads, 1e-5, &info);
    return 0;
}

int bench_train(int argc, char **argv) {
    CliOpt opts[] = {common[0], common[1], common[2], common[3],
                     {"--seq", "N", "2048", "tokens per sequence", 0},
                     {"--batch", "N", "4", "sequences per step", 0},
                     {"--steps", "N", "5", "timed steps (after one warm-up)", 0},
                     {"--peak-tflops", "X", "989", "the device's dense bf16 peak for MFU (H100 SXM: 989)", 0},
                     {"--torch-script", "FILE", "tests/golden/bench_train_torch.py", "reference script", 0},
                     {0}};
    CliSpec spec = {"grpo bench train [--config F | --model DIR] [--device cpu|cuda] [--seq 2048] [--batch 4]",
                    "Training tokens/s (forward, backward of the next-token cross-entropy, AdamW) and model FLOPs\n"
                    "utilisation; next to transformers + torch.optim.AdamW (bf16 autocast on the GPU, fp32\n"
                    "weights) on the same weights, shape and device.",
                    opts, 0, 0};
    const char *pos[1];
    int npos, rc = cli_parse(&spec, argc, argv, pos, &npos);
    if (rc) return rc == CLI_HELP ? 0 : 2;
    long S, B, steps;
    double peak = atof(cli_str(&spec, "--peak-tflops")) * 1e12;
    if (cli_long(&spec, "--seq", &S) || cli_long(&spec, "--batch", &B) || cli_long(&spec, "--steps", &steps)) return 2;
    if (S < 2 || B < 1 || steps < 1) { fprintf(stderr, "grpo bench train: --seq >= 2, --batch and --steps >= 1\n"); return 2; }
    static Bench b;
    TrainSide t = {0};
    Err err = {0};
    int no_ref = cli_flag(&spec, "--no-reference");
    char *ref = NULL, dev[160];
    const long N = B * S;
    int *ids = xmalloc(sizeof(int) * N), *tg = xmalloc(sizeof(int) * N);
    float *lp = xmalloc(sizeof(float) * N), *dl = xmalloc(sizeof(float) * N);
    rc = bench_open(&b, &spec, no_ref, &err);
    if (!rc) {
        const int V = b.m.cfg.vocab_size;
        for (long i = 0; i < N; i++) ids[i] = (int)((7 + 7919 * i) % V); /* bench_train_torch.py's tokens */
        for (long i = 0; i < N; i++) tg[i] = (i + 1) % S ? ids[i + 1] : -1, dl[i] = -1.0f / (float)(B * (S - 1));
        AdamWOpts ao;
        adamw_opts_default(&ao);
        rc = adamw_init(&t.opt, &ao, b.m.ptab, b.m.nparams, b.m.numel, &err);
        if (!rc && b.cuda && !(t.g = trainer_cuda_open(&b.m, NULL, &t.opt, &err))) rc = -1;
        if (!rc && !b.cuda) model_alloc_grads(&b.m);
    }
    if (!rc) {
        printf("grpo bench train: %ld x %ld tokens per step, %.3g GFLOP per token, on %s\n", B, S,
               flops_per_token(&b.m, (int)S) / 1e9, device_name(b.cuda, dev, sizeof dev));
        char ss[16], bs[16], st[16];
        snprintf(ss, sizeof ss, "%ld", S), snprintf(bs, sizeof bs, "%ld", B), snprintf(st, sizeof st, "%ld", steps);
        char *av[] = {"python3", (char *)cli_str(&spec, "--torch-script"), "--model", b.dir, "--seq", ss, "--batch", bs,
                      "--steps", st, "--device", (char *)cli_str(&spec, "--device"), NULL};
        if (!no_ref) ref = run_reference(av);
        Batch bt = {(int)B, (int)S, ids, tg, NULL};
        PackSeg *seg = xmalloc(sizeof(PackSeg) * B);
        for (long i = 0; i < B; i++) seg[i] = (PackSeg){(int)(i * S), (int)S, -1};
        PackedBatch pk = {(int)N, (int)B, ids, tg, seg};
        double best = 1e30, sum = 0;
        for (long s = 0; s <= steps && !rc; s++) {
            double t0 = clock_now();
            rc = train_step(&b, &t, &bt, &pk, lp, dl, &err);
            double dt = clock_now() - t0;
            if (s) sum += dt, best = dt < best ? dt : best; /* step 0 warms up */
        }
        if (!rc) {
            double tok_s = N * steps / sum, tt = ref_value(ref, "\"bench\"", "tok_s");
            double mfu = peak > 0 && b.cuda ? tok_s * flops_per_token(&b.m, (int)S) / peak : 0;
            char ts[32] = "-", ratio[32] = "-", mf[32] = "-";
            if (tt > 0) snprintf(ts, sizeof ts, "%.0f", tt), snprintf(ratio, sizeof ratio, "%.2fx", tok_s / tt);
            if (mfu > 0) snprintf(mf, sizeof mf, "%.1f%%", 100 * mfu);
            printf("%14s %10s %8s %12s %8s\n", "tok/s", "best s", "MFU", "torch tok/s", "ratio");
            printf("%14.0f %10.3f %8s %12s %8s\n", tok_s, best, mf, ts, ratio);
            cJSON *o = json_head("train", &b, dev);
            cJSON_AddNumberToObject(o, "batch", (double)B);
            cJSON_AddNumberToObject(o, "seq", (double)S);
            cJSON_AddNumberToObject(o, "flops_per_token", flops_per_token(&b.m, (int)S));
            cJSON_AddNumberToObject(o, "tok_s", tok_s);
            cJSON_AddNumberToObject(o, "best_step_s", best);
            cJSON_AddNumberToObject(o, "mfu", mfu);
            cJSON_AddItemToObject(o, "torch_tok_s", tt > 0 ? cJSON_CreateNumber(tt) : cJSON_CreateNull());
            json_print(o);
        }
        free(seg);
    }
    if (rc) fprintf(stderr, "grpo bench train: %s\n", err.msg);
    trainer_cuda_close(t.g);
    adamw_free(&t.opt);
    free(ids), free(tg), free(lp), free(dl), free(ref);
    bench_free(&b);
    return rc ? (err.code ? err.code : 1) : 0;
}
