/* test_cuda_model: the whole training forward and backward on the GPU
 * (model/cuda/model_cuda.h) against the CPU model (model_forward, model_backward)
 * on the same weights:
 *  - the trained tiny-arith base (recipes/tiny-arith/base: V3, q-LoRA, YaRN,
 *    noaux_tc routing over 8 experts + 1 shared), so log-probs and entropies
 *    have the spread of a real model, not a random one's near-uniform ones;
 *  - an inline V2-style config (no q-LoRA, softmax gating with
 *    group_limited_greedy, no correction bias) with random weights.
 * Weights are rounded to bf16 on the CPU side too, so the difference measured
 * is the GPU's bf16 activations and fp32 sums, not the weights'. Rows of
 * T = 37 (not a multiple of any tile), B = 3, two temperatures; targets of
 * -1 must give exactly 0. Bounds: log-probs nmse 2e-3 (cuda_test.h's chain
 * bound 2e-4 per block, ~10 blocks deep); at most 5% of the router's expert
 * choices different (near-ties flip under bf16 inputs; a wrong routing kernel
 * changes most). Entropies and gradients are held to the CPU's own
 * sensitivity: the CPU model is run again with every weight moved by about one
 * bf16 rounding (relative N(0, 2^-8/sqrt 3)), and the GPU may differ from the
 * CPU by at most SENS_K times what that moves each result (nmse), with a floor
 * of 1e-3 (gradients; 2e-3 entropies) and a cap of 0.25: a trained model's sharp
 * softmaxes and routing near ties make some gradients move by 1.5e-2 under such
 * a nudge (and 5e-2 on the emulated GPU), while a wrong index moves them by ~1. Routed experts' tensors are taken together (a
 * flipped choice moves one token's gradient between experts). Decoding
 * (cuda_model_extend over the paged latent cache, absorbed MLA) against
 * model_extend: a two-sequence prefill of 13 and 29 tokens (every token's
 * logits), four one-token steps, and a slot copied from another: logits nmse
 * <= 2e-3, and the copy's logits bitwise equal to its source's. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_test.h"
#include "model/config.h"
#include "model/kvcache.h"
#include "model/cuda/model_cuda.h"
#include "model/model.h"

static const char *V2_CONFIG =
    "{\"model_type\": \"deepseek_v2\", \"vocab_size\": 320, \"hidden_size\": 128, \"intermediate_size\": 256,"
    " \"moe_intermediate_size\": 64, \"num_hidden_layers\": 3, \"first_k_dense_replace\": 1, \"moe_layer_freq\": 1,"
    " \"num_attention_heads\": 4, \"q_lora_rank\": null, \"kv_lora_rank\": 32, \"qk_nope_head_dim\": 16,"
    " \"qk_rope_head_dim\": 16, \"v_head_dim\": 24, \"n_routed_experts\": 8, \"n_shared_experts\": 2,"
    " \"num_experts_per_tok\": 3, \"n_group\": 4, \"topk_group\": 2, \"scoring_func\": \"softmax\","
    " \"topk_method\": \"group_limited_greedy\", \"norm_topk_prob\": false, \"routed_scaling_factor\": 1.0,"
    " \"rms_norm_eps\": 1e-6, \"rope_theta\": 10000.0, \"max_position_embeddings\": 256,"
    " \"tie_word_embeddings\": false, \"bos_token_id\": 0, \"eos_token_id\": 1}";

/* Measured under tests/cuda/emu: the GPU path's gradients differ from the CPU's by up
 * to 3.9x what the nudge does (bf16 activations, not only weights, are rounded). */
enum { SENS_K = 10 };
#define SENS_CAP 0.25 /* a wrong index or a missing term gives nmse ~1: never allow that */

static double sens_bound(double sens, double floor) {
    double b = SENS_K * sens;
    return b < floor ? floor : b > SENS_CAP ? SENS_CAP : b;
}

/* Moves every parameter by about one bf16 rounding, in place (relative N(0, 2^-8/sqrt 3)). */
static void nudge_params(Model *m, uint64_t seed) {
    uint64_t st = seed;
    for (size_t i = 0; i < m->numel; i++) m->params[i] *= 1.0f + 0.00226f * rand_normal(&st);
}

static void round_params_bf16(Model *m) {
    for (size_t i = 0; i < m->numel; i++) m->params[i] = bf16_to_f32(bf16_from_f32(m->params[i]));
}

/* The forward and backward on either side, of the padded batch b or, when pk is
 * not NULL, of the packed batch pk. */
static int cpu_fwd(Model *m, const Batch *b, const PackedBatch *pk, float t, float *lp, float *en, Err *err) {
    return pk ? model_forward_packed(m, pk, t, lp, en, err) : model_forward(m, b, t, lp, en, err);
}
static void cpu_bwd(Model *m, const Batch *b, const PackedBatch *pk, const float *dl, const float *de) {
    if (pk) model_backward_packed(m, pk, dl, de);
    else model_backward(m, b, dl, de);
}
static int gpu_fwd(CudaModel *g, const Batch *b, const PackedBatch *pk, float t, float *lp, float *en, int *load,
                   Err *err) {
    return pk ? cuda_model_forward_packed(g, pk, t, lp, en, load, err) : cuda_model_forward(g, b, t, lp, en, load, err);
}
static int gpu_bwd(CudaModel *g, const Batch *b, const PackedBatch *pk, const float *dl, const float *de, Err *err) {
    return pk ? cuda_model_backward_packed(g, pk, dl, de, err) : cuda_model_backward(g, b, dl, de, err);
}

/* Compares one forward at one temperature; ids/targets [B*T] (or pk's [ntok]). */
static void compare(const char *name, Model *m, CudaModel *g, const Batch *b, const PackedBatch *pk, float temp) {
    Err err = {0};
    const int N = pk ? pk->ntok : b->B * b->T, L = m->cfg.num_hidden_layers, E = m->cfg.n_routed_experts;
    const int *targets = pk ? pk->targets : b->targets;
    float *lc = malloc(sizeof(float) * N), *ec = malloc(sizeof(float) * N);
    float *lg = malloc(sizeof(float) * N), *eg = malloc(sizeof(float) * N);
    int *load = calloc((size_t)L * (E ? E : 1), sizeof(int));
    float *saved = malloc(sizeof(float) * m->numel), *en = malloc(sizeof(float) * N);
    memcpy(saved, m->params, sizeof(float) * m->numel);
    nudge_params(m, 99);
    OK(cpu_fwd(m, b, pk, temp, lc, en, &err));
    memcpy(m->params, saved, sizeof(float) * m->numel);
    OK(cpu_fwd(m, b, pk, temp, lc, ec, &err));  // last, so the router load is the unmoved model's
    OK(gpu_fwd(g, b, pk, temp, lg, eg, load, &err));
    double el = nmse(lg, lc, N), ee = nmse(eg, ec, N), es = nmse(en, ec, N);
    double eb = sens_bound(es, 2e-3);
    printf("%s, T=%.1f: nmse log-prob %.2e, entropy %.2e (CPU nudged by a bf16 rounding: %.2e)\n", name, temp, el, ee,
           es);
    CHECK(el <= 2e-3, "%s: log-prob nmse %.3e > 2e-3", name, el);
    CHECK(ee <= eb, "%s: entropy nmse %.3e > %.3e", name, ee, eb);
    free(saved), free(en);
    int zero_ok = 1;
    for (int i = 0; i < N; i++) zero_ok &= targets[i] >= 0 || lg[i] == 0.0f;
    CHECK(zero_ok, "%s: a position with target -1 has a non-zero log-prob", name);
    if (E) {
        long diff = 0, total = 0;
        for (long i = 0; i < (long)L * E; i++) diff += labs((long)load[i] - m->router_load[i]), total += m->router_load[i];
        printf("%s: router load differs in %ld of %ld assignments\n", name, diff / 2, total);
        CHECK(total > 0 && diff / 2 <= total / 20, "%s: router choices differ in %ld of %ld", name, diff / 2, total);
    }
    free(lc), free(ec), free(lg), free(eg), free(load);
}

/* Accumulates one tensor's squared error and squared reference into num/den. */
static void sq_err(const float *out, const float *ref, size_t n, double *num, double *den) {
    for (size_t i = 0; i < n; i++) {
        double d = (double)out[i] - ref[i];
        *num += isfinite(out[i]) ? d * d : INFINITY;
        *den += (double)ref[i] * ref[i];
    }
}

static void compare_grads(const char *name, Model *m, CudaModel *g, const Batch *b, const PackedBatch *pk,
                          uint64_t seed) {
    Err err = {0};
    const int N = pk ? pk->ntok : b->B * b->T;
    float *lp = malloc(sizeof(float) * N), *dl = malloc(sizeof(float) * N), *de = malloc(sizeof(float) * N);
    uint64_t st = seed;
    for (int i = 0; i < N; i++) dl[i] = rand_normal(&st), de[i] = 0.3f * rand_normal(&st);
    model_alloc_grads(m);
    float *saved = malloc(sizeof(float) * m->numel), *gn = malloc(sizeof(float) * m->numel);
    memcpy(saved, m->params, sizeof(float) * m->numel);
    nudge_params(m, seed + 1);
    model_zero_grads(m);
    OK(cpu_fwd(m, b, pk, 0.9f, lp, NULL, &err));
    cpu_bwd(m, b, pk, dl, de);
    memcpy(gn, m->grads, sizeof(float) * m->numel);
    memcpy(m->params, saved, sizeof(float) * m->numel);
    model_zero_grads(m);
    OK(cpu_fwd(m, b, pk, 0.9f, lp, NULL, &err));
    cpu_bwd(m, b, pk, dl, de);
    OK(cuda_model_zero_grads(g, &err));
    OK(gpu_fwd(g, b, pk, 0.9f, lp, NULL, NULL, &err));
    OK(gpu_bwd(g, b, pk, dl, de, &err));
    float *gg = malloc(sizeof(float) * m->numel);
    OK(cuda_model_grads_download(g, gg, &err));
    double xn = 0, xd = 0, sn = 0, sd = 0, worst = 0;  // routed experts together: GPU and nudged sums
    const char *worst_name = "";
    for (int i = 0; i < m->nparams; i++) {
        const Param *p = &m->ptab[i];
        if (!p->trainable) continue;
        double num = 0, den = 0, snum = 0, sden = 0;
        sq_err(gg + p->offset, m->grads + p->offset, p->numel, &num, &den);
        sq_err(gn + p->offset, m->grads + p->offset, p->numel, &snum, &sden);
        if (strstr(p->name, ".mlp.experts.")) { xn += num, xd += den, sn += snum, sd += sden; continue; }
        double e = den > 0 ? num / den : (num > 0 ? INFINITY : 0.0), es = sden > 0 ? snum / sden : 0.0;
        double bound = sens_bound(es, 1e-3);
        if (e / bound > worst) worst = e / bound, worst_name = p->name;
        if (e > bound / 2) printf("%s: gradient of %s: nmse %.2e, CPU nudged %.2e\n", name, p->name, e, es);
        CHECK(e <= bound, "%s: gradient of %s: nmse %.3e > %.3e (CPU nudged: %.3e)", name, p->name, e, bound, es);
    }
    double ee = xd > 0 ? xn / xd : (xn > 0 ? INFINITY : 0.0), es = sd > 0 ? sn / sd : 0.0;
    double eb = sens_bound(es, 1e-3);
    printf("%s: gradients: closest to its bound %s (%.2f of it); routed experts together %.2e (bound %.2e)\n", name,
           worst_name, worst, ee, eb);
    CHECK(ee <= eb, "%s: routed experts' gradients: nmse %.3e > %.3e", name, ee, eb);
    free(lp), free(dl), free(de), free(gg), free(saved), free(gn);
}

/* One extend call on both sides; compares the logits [rows, V]. */
static void extend_both(const char *name, Model *m, KvCache *kc, CudaModel *g, CudaKvCache *kg, int nseq,
                        const int *slots, const int *ntok, const int *ids, int all, float *lg) {
    Err err = {0};
    int rows = 0;
    for (int i = 0; i < nseq; i++) rows += all ? ntok[i] : 1;
    const long n = (long)rows * m->cfg.vocab_size;
    float *lc = malloc(sizeof(float) * n);
    OK(model_extend(m, kc, nseq, slots, ntok, ids, lc, all, &err));
    OK(cuda_model_extend(g, kg, nseq, slots, ntok, ids, lg, all, &err));
    double e = nmse(lg, lc, n);
    printf("%s: decode, %d sequences, %d rows of logits: nmse %.2e\n", name, nseq, rows, e);
    CHECK(e <= 2e-3, "%s: decode logits nmse %.3e > 2e-3 (%d sequences)", name, e, nseq);
    free(lc);
}

static void compare_decode(const char *name, Model *m, CudaModel *g, uint64_t seed) {
    Err err = {0};
    const int V = m->cfg.vocab_size;
    KvCache kc;
    OK(kvcache_create(&kc, &m->cfg, 3, 64, &err));
    CudaKvCache *kg = cuda_kvcache_new(g, 3, 64, 16, &err);
    if (!kg) op_failed("cuda_kvcache_new", &err);
    float *lg = malloc(sizeof(float) * 42 * V);
    int ids[42];
    uint64_t st = seed;
    for (int i = 0; i < 42; i++) ids[i] = (int)(rng_next(&st) % (uint64_t)V);
    int slots[2] = {0, 1}, ntok[2] = {13, 29};
    extend_both(name, m, &kc, g, kg, 2, slots, ntok, ids, 1, lg);
    int one[2] = {1, 1};
    for (int step = 0; step < 4; step++) {
        int next[2] = {(int)(rng_next(&st) % (uint64_t)V), (int)(rng_next(&st) % (uint64_t)V)};
        extend_both(name, m, &kc, g, kg, 2, slots, one, next, 0, lg);
    }
    kvcache_copy(&kc, 2, 0);
    OK(cuda_kvcache_copy(g, kg, 2, 0, &err));
    CHECK(cuda_kvcache_len(kg, 2) == 17, "%s: copied slot holds %d tokens, not 17", name, cuda_kvcache_len(kg, 2));
    int pair[2] = {0, 2}, same[2] = {5, 5};
    extend_both(name, m, &kc, g, kg, 2, pair, one, same, 0, lg);
    CHECK(!memcmp(lg, lg + V, sizeof(float) * V), "%s: a copied slot decodes differently from its source", name);
    int three[3] = {0, 1, 2}, ones3[3] = {1, 1, 1}, next3[3]; /* padded to 4 rows */
    for (int i = 0; i < 3; i++) next3[i] = (int)(rng_next(&st) % (uint64_t)V);
    extend_both(name, m, &kc, g, kg, 3, three, ones3, next3, 0, lg);
    int bad = 70;  // past the cache
    CHECK(cuda_model_extend(g, kg, 1, pair, &bad, ids, lg, 0, &err) == -1 && err.code == ERR_INPUT,
          "%s: extending past the cache must be refused", name);
    /* decode steps with graphs on (the first plain, the second captured, then replayed) equal
     * plain launches bit for bit; three sequences: padded to 4 rows either way */
    CudaKvCache *ka = cuda_kvcache_new(g, 3, 64, 16, &err), *kb = cuda_kvcache_new(g, 3, 64, 16, &err);
    float *la = malloc(sizeof(float) * 3 * V), *lb = malloc(sizeof(float) * 3 * V);
    int ntok3[3] = {13, 20, 9};
    OK(cuda_model_extend(g, ka, 3, three, ntok3, ids, la, 0, &err));
    OK(cuda_model_extend(g, kb, 3, three, ntok3, ids, lb, 0, &err));
    int equal = 1;
    for (int step = 0; step < 5; step++) {
        int next[3];
        for (int i = 0; i < 3; i++) next[i] = (int)(rng_next(&st) % (uint64_t)V);
        cuda_model_set_graphs(g, 1);
        OK(cuda_model_extend(g, ka, 3, three, ones3, next, la, 0, &err));
        CHECK(cuda_model_graphs(g), "%s: graph capture failed at step %d", name, step);
        cuda_model_set_graphs(g, 0);
        OK(cuda_model_extend(g, kb, 3, three, ones3, next, lb, 0, &err));
        equal &= !memcmp(la, lb, sizeof(float) * 3 * V);
    }
    cuda_model_set_graphs(g, 1);
    CHECK(equal, "%s: decode steps run as CUDA graphs differ from plain launches", name);
    free(la), free(lb);
    cuda_kvcache_free(ka), cuda_kvcache_free(kb);
    free(lg);
    cuda_kvcache_free(kg);
    kvcache_free(&kc);
}

static void run_model(const char *name, Model *m, uint64_t seed) {
    Err err = {0};
    round_params_bf16(m);
    CudaModel *g = cuda_model_new(m, &err);
    if (!g) op_failed("cuda_model_new", &err);
    const int B = 3, T = 37, N = B * T, V = m->cfg.vocab_size;
    int *ids = malloc(sizeof(int) * N), *tg = malloc(sizeof(int) * N);
    uint64_t st = seed;
    for (int i = 0; i < N; i++) ids[i] = (int)(rng_next(&st) % (uint64_t)V);
    for (int i = 0; i < N; i++) tg[i] = (i % 11 == 5) ? -1 : (i % 2 ? ids[(i + 1) % N] : (int)(rng_next(&st) % (uint64_t)V));
    Batch b = {B, T, ids, tg, NULL};
    compare(name, m, g, &b, NULL, 1.0f);
    compare(name, m, g, &b, NULL, 0.7f);
    compare_grads(name, m, g, &b, NULL, seed + 100);
    /* packed: a prompt shared by three completions (one of one token), a root alone,
     * a short prompt with a long completion; the same tokens */
    const PackSeg seg[] = {{0, 11, -1}, {11, 9, 0}, {20, 1, 0}, {21, 20, -1}, {41, 6, -1}, {47, 40, 4}, {87, 24, 0}};
    char pname[128];
    snprintf(pname, sizeof pname, "%s, packed", name);
    PackedBatch pk = {111, (int)(sizeof seg / sizeof *seg), ids, tg, seg};
    compare(pname, m, g, NULL, &pk, 1.0f);
    compare_grads(pname, m, g, NULL, &pk, seed + 300);
    /* a backward must follow a forward of the same layout */
    OK(cuda_model_forward(g, &b, 1.0f, NULL, NULL, NULL, &err));
    float *z = calloc(N, sizeof(float));
    CHECK(cuda_model_backward_packed(g, &pk, z, NULL, &err) == -1 && err.code == ERR_INPUT,
          "%s: a packed backward after a padded forward is refused", name);
    free(z);
    compare_decode(name, m, g, seed + 200);
    // Bad input is refused before anything runs on the GPU.
    ids[7] = V;
    CHECK(cuda_model_forward(g, &b, 1.0f, NULL, NULL, NULL, &err) == -1 && err.code == ERR_INPUT && strstr(err.msg, "position 7"),
          "%s: token id out of the vocabulary: %s", name, err.msg);
    free(ids), free(tg);
    cuda_model_free(g);
}

/* Decode steps' padded sizes: never fewer rows, under 8 rows of padding to 64 and under
 * 1/8 past it, and few sizes (each is a CUDA graph per length bucket). */
static void check_step_rows(void) {
    int ok = 1, sizes = 0, prev = 0;
    for (int n = 1; n <= 4096; n++) {
        const int r = cuda_model_step_rows(n);
        ok &= r >= n && (n <= 64 ? r - n < 8 : 8 * (r - n) < r);
        if (n <= 512) sizes += r != prev;
        prev = r;
    }
    CHECK(ok, "cuda_model_step_rows: a size below n, or too much padding");
    CHECK(sizes <= 40, "cuda_model_step_rows: %d sizes up to 512 rows", sizes);
    printf("decode steps padded: %d sizes up to 512 rows (64 -> %d, 65 -> %d, 300 -> %d)\n", sizes,
           cuda_model_step_rows(64), cuda_model_step_rows(65), cuda_model_step_rows(300));
}

int main(void) {
    CUDA_TEST_REQUIRE_GPU();
    check_step_rows();
    Err err = {0};
    Model m;
    OK(model_load(&m, GRPO_TESTS_DIR "/../recipes/tiny-arith/base", NULL, &err));
    run_model("tiny-arith base", &m, 1);
    model_free(&m);
    ModelConfig c;
    OK(config_parse(&c, V2_CONFIG, strlen(V2_CONFIG), "V2_CONFIG", &err));
    OK(model_create(&m, &c, NULL, &err));
    model_init_random(&m, 7, 0.1f);
    run_model("V2-style, random weights", &m, 2);
    model_free(&m);
    return test_report();
}
