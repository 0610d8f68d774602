/* test_model_golden: the CPU model against transformers' DeepseekV3ForCausalLM /
 * DeepseekV2ForCausalLM in float32 (fixtures made by
 * tests/golden/make_model_fixtures.py, described in docs/golden-fixtures.md):
 * logits of the checkpoint exactly as `grpo init` wrote it, then, with norms
 * and the correction bias perturbed, logits, loss and the gradient of every
 * trainable parameter. Prints the tolerance and the worst error seen. */
#include "model/model.h"
#include "model/safetensors.h"
#include "model_test_util.h"
#include "test.h"

typedef struct Case { const char *name, *config; double tol_logit, tol_grad; } Case;

static float *fx_f32(const Safetensors *st, const char *name, int64_t *numel) {
    const StTensor *t = st_find(st, name);
    if (!t) return NULL;
    float *out = malloc(sizeof(float) * (t->numel ? t->numel : 1));
    Err err = {0};
    if (st_read_f32(st, t, out, &err)) { free(out); return NULL; }
    if (numel) *numel = t->numel;
    return out;
}

/* max |a - ref| / max |ref| over the fixture's columns */
static double logit_err(const float *full, int N, int V, const float *ref, const int32_t *cols, int nc) {
    double md = 0, mr = 0;
    for (int n = 0; n < N; n++)
        for (int j = 0; j < nc; j++) {
            double r = ref[(long)n * nc + j], a = full[(long)n * V + cols[j]];
            md = fmax(md, fabs(a - r));
            mr = fmax(mr, fabs(r));
        }
    return md / (mr > 0 ? mr : 1);
}

static void run_case(const Case *k) {
    char path[1024];
    snprintf(path, sizeof path, "%s/fixtures/model/%s.safetensors", GRPO_TESTS_DIR, k->name);
    Safetensors st;
    Err err = {0};
    if (st_open(&st, path, &err)) { CHECK(0, "fixture %s: %s", k->name, err.msg); return; }
    ModelConfig c;
    if (tu_load_config(&c, k->config)) { CHECK(0, "config %s", k->config); st_close(&st); return; }
    const StTensor *ti = st_find(&st, "input_ids"), *tc = st_find(&st, "logit_cols");
    CHECK(ti && ti->ndim == 2 && tc, "%s: input_ids/logit_cols in fixture", k->name);
    if (!ti || !tc) { st_close(&st); return; }
    const int B = (int)ti->shape[0], T = (int)ti->shape[1], N = B * T, V = c.vocab_size, nc = (int)tc->numel;
    const int32_t *ids32 = ti->data, *cols = tc->data;
    int *ids = malloc(sizeof(int) * N), *tg = malloc(sizeof(int) * N);
    for (int i = 0; i < N; i++) ids[i] = ids32[i];
    for (int i = 0; i < N; i++) tg[i] = (i % T) + 1 < T ? ids[i + 1] : -1;
    Model m;
    ModelOpts o = {0};
    CHECK(model_create(&m, &c, &o, &err) == 0, "%s", err.msg);
    model_init_random(&m, 1234, 0.02f); /* = grpo init --seed 1234 (std = initializer_range 0.02) */
    float *lg = malloc(sizeof(float) * N * V);
    Batch b = {B, T, ids, tg, NULL};
    float *ref = fx_f32(&st, "init_logits", NULL);
    CHECK(ref && model_logits(&m, &b, lg, &err) == 0, "%s: init logits %s", k->name, err.msg);
    double e_init = ref ? logit_err(lg, N, V, ref, cols, nc) : 1;
    free(ref);
    tu_perturb(&m);
    ref = fx_f32(&st, "logits", NULL);
    CHECK(ref && model_logits(&m, &b, lg, &err) == 0, "%s: logits %s", k->name, err.msg);
    double e_logit = ref ? logit_err(lg, N, V, ref, cols, nc) : 1;
    free(ref);
    /* loss = mean CE over B*(T-1) positions; its gradient through model_backward */
    float *lp = malloc(sizeof(float) * N), *dl = malloc(sizeof(float) * N);
    CHECK(model_forward(&m, &b, 1.0f, lp, NULL, &err) == 0, "%s", err.msg);
    double loss = 0;
    for (int i = 0; i < N; i++) loss -= lp[i];
    loss /= B * (T - 1);
    for (int i = 0; i < N; i++) dl[i] = -1.0f / (B * (T - 1));
    float *rl = fx_f32(&st, "loss", NULL);
    double e_loss = rl ? fabs(loss - rl[0]) / fabs(rl[0]) : 1;
    printf("%s: loss %.7f, transformers %.7f\n", k->name, loss, rl ? rl[0] : NAN);
    free(rl);
    model_alloc_grads(&m);
    model_zero_grads(&m);
    model_backward(&m, &b, dl, NULL);
    double e_grad = 0, e_norm = 0;
    int ngrad = 0;
    char worst_name[128] = "";
    for (int i = 0; i < m.nparams; i++) {
        const Param *p = &m.ptab[i];
        if (!p->trainable) continue;
        char key[160];
        snprintf(key, sizeof key, "grad.%s", p->name);
        int64_t n = 0;
        float *rg = fx_f32(&st, key, &n);
        CHECK(rg != NULL, "%s: fixture has no %s", k->name, key);
        if (!rg) continue;
        const float *g = m.grads + p->offset;
        double md = 0, mr = 0, norm = 0;
        for (size_t j = 0; j < p->numel; j++) norm += (double)g[j] * g[j];
        for (int64_t j = 0; j < n; j++) {
            size_t idx = (size_t)p->numel <= 4096 ? (size_t)j : (size_t)(((uint64_t)j * 2654435761ull) % p->numel);
            md = fmax(md, fabs(g[idx] - rg[j]));
            mr = fmax(mr, fabs(rg[j]));
        }
        free(rg);
        snprintf(key, sizeof key, "gradnorm.%s", p->name);
        float *rn = fx_f32(&st, key, NULL);
        if (rn) {
            double en = fabs(sqrt(norm) - rn[0]) / (rn[0] > 0 ? rn[0] : 1);
            e_norm = fmax(e_norm, en);
            CHECK(en < k->tol_grad, "%s %s: gradient norm %.6g vs %.6g", k->name, p->name, sqrt(norm), rn[0]);
            mr = fmax(mr, rn[0] / sqrt((double)p->numel)); /* scale for near-zero samples */
        }
        free(rn);
        double e = md / (mr > 0 ? mr : 1);
        if (e > e_grad) { e_grad = e; snprintf(worst_name, sizeof worst_name, "%s", p->name); }
        CHECK(e < k->tol_grad, "%s %s: gradient max error %.3g of max |ref|", k->name, p->name, e);
        ngrad++;
    }
    printf("%s: %d x %d tokens; relative errors (tolerance logits %.0e, grads %.0e):\n"
           "  init logits %.3g | logits %.3g | loss %.3g | %d gradients: worst %.3g (%s), norms %.3g\n",
           k->name, B, T, k->tol_logit, k->tol_grad, e_init, e_logit, e_loss, ngrad, e_grad, worst_name, e_norm);
    CHECK(e_init < k->tol_logit, "%s init logits %.3g", k->name, e_init);
    CHECK(e_logit < k->tol_logit, "%s logits %.3g", k->name, e_logit);
    CHECK(e_loss < k->tol_logit, "%s loss %.3g", k->name, e_loss);
    free(lg), free(lp), free(dl), free(ids), free(tg);
    model_free(&m);
    st_close(&st);
}

int main(int argc, char **argv) {
    /* fp32 on both sides: differences come from summation order only */
    static const Case cases[] = {
        {"tiny-1m", "dsv3-tiny-1m.json", 1e-5, 3e-5},
        {"small-10m", "dsv3-small-10m.json", 1e-5, 3e-5},
        {"small-10m-v2", "dsv2-small-10m.json", 1e-5, 3e-5},
        {"medium-100m", "dsv3-medium-100m.json", 1e-5, 3e-5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (argc < 2 || !strcmp(argv[1], cases[i].name)) run_case(&cases[i]);
    return test_report();
}
