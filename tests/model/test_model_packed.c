/* test_model_packed: the packed training forward/backward (model.h
 * PackedBatch: a group's prompt computed once as a shared prefix, no padding)
 * equals the padded path (golden-tested against transformers in
 * test_model_golden / test_model_grad) on log-probs, entropies and every
 * parameter gradient, on random tiny configs (V3 MoE with q-LoRA, q_proj with
 * d_v != d_n, V2 softmax gating) and groups of different prompt and completion
 * lengths, incl. G = 1 and one-token prompts (no prefix) and segments longer
 * than an attention row block. Also: bad packed layouts are input errors. */
#include "model/model_internal.h"
#include "model_test_util.h"
#include "test.h"

/* One group: a prompt of pl tokens and G completions of n[i] tokens. */
typedef struct Group {
    int pl, G, n[4];
} Group;

enum { MAXG = 6, MAXS = 24, MAXTOK = 2048 };

typedef struct Case {
    int ng;
    Group g[MAXG];
} Case;

static unsigned rng = 12345;
static int rnd(int n) {
    rng = rng * 1664525u + 1013904223u;
    return (int)((rng >> 8) % (unsigned)n);
}
static float rndf(void) { return (float)rnd(2000) / 1000.0f - 1.0f; }

/* Padded rows (prompt + completion, targets at pl-1+k) and the packed stream
 * as rl/trainer.c builds it, plus the map packed position -> padded position
 * and loss coefficients (prefix positions: the group's first row only). */
typedef struct Built {
    int B, T, ntok, nseg;
    int pid[MAXS * 256], ptg[MAXS * 256];
    int kid[MAXTOK], ktg[MAXTOK], map[MAXTOK];
    PackSeg seg[MAXS + MAXG];
    float kdl[MAXTOK], kde[MAXTOK];
} Built;

static void build(const Case *cs, int V, Built *b) {
    int prompt[MAXG][160], comp[MAXG][4][160];
    b->B = 0, b->T = 1;
    for (int q = 0; q < cs->ng; q++) {
        const Group *g = &cs->g[q];
        for (int k = 0; k < g->pl; k++) prompt[q][k] = rnd(V);
        for (int i = 0; i < g->G; i++) {
            for (int k = 0; k < g->n[i]; k++) comp[q][i][k] = rnd(V);
            int len = g->pl + g->n[i];
            b->T = len > b->T ? len : b->T;
            b->B++;
        }
    }
    const int T = b->T;
    for (int i = 0; i < b->B * T; i++) b->pid[i] = 0, b->ptg[i] = -1;
    int row = 0, at = 0, ns = 0;
    for (int q = 0; q < cs->ng; q++) {
        const Group *g = &cs->g[q];
        int shared = g->G >= 2 && g->pl >= 2, root = -1;
        if (shared) { /* prefix prompt[0..pl-2]; its positions map to the group's first row */
            root = ns;
            b->seg[ns++] = (PackSeg){at, g->pl - 1, -1};
            for (int k = 0; k < g->pl - 1; k++, at++)
                b->kid[at] = prompt[q][k], b->ktg[at] = prompt[q][k + 1], b->map[at] = row * T + k;
        }
        for (int i = 0; i < g->G; i++, row++) {
            int *ids = b->pid + row * T, *tg = b->ptg + row * T;
            for (int k = 0; k < g->pl; k++) ids[k] = prompt[q][k];
            for (int k = 0; k < g->n[i]; k++) ids[g->pl + k] = comp[q][i][k], tg[g->pl - 1 + k] = comp[q][i][k];
            if (i == 0) /* prompt positions carry a loss too (first row only) */
                for (int k = 0; k + 1 < g->pl; k++) tg[k] = prompt[q][k + 1];
            int k0 = shared ? g->pl - 1 : 0, len = g->pl + g->n[i] - 1 - k0;
            b->seg[ns++] = (PackSeg){at, len, root};
            for (int k = k0; k < k0 + len; k++, at++)
                b->kid[at] = ids[k], b->ktg[at] = tg[k], b->map[at] = row * T + k;
        }
    }
    b->ntok = at, b->nseg = ns;
    for (int i = 0; i < at; i++) b->kdl[i] = rndf(), b->kde[i] = 0.5f * rndf();
}

static void check_case(const char *cfgname, const Case *cs) {
    ModelConfig c;
    if (tu_load_config(&c, cfgname)) { CHECK(0, "config %s", cfgname); return; }
    Model m;
    Err err = {0};
    ModelOpts o = {0};
    CHECK(model_create(&m, &c, &o, &err) == 0, "%s", err.msg);
    model_init_random(&m, 11, 0.08f);
    tu_perturb(&m);
    static Built b;
    build(cs, c.vocab_size, &b);
    const int NP = b.B * b.T;
    float *lp = calloc(NP, sizeof(float)), *en = calloc(NP, sizeof(float)), *dl = calloc(NP, sizeof(float));
    float *de = calloc(NP, sizeof(float)), *klp = calloc(b.ntok, sizeof(float)), *ken = calloc(b.ntok, sizeof(float));
    for (int i = 0; i < b.ntok; i++) dl[b.map[i]] = b.kdl[i], de[b.map[i]] = b.kde[i];
    /* padded */
    Batch pb = {b.B, b.T, b.pid, b.ptg, NULL};
    CHECK(model_forward(&m, &pb, 0.7f, lp, en, &err) == 0, "%s", err.msg);
    model_alloc_grads(&m);
    model_zero_grads(&m);
    model_backward(&m, &pb, dl, de);
    float *gpad = malloc(sizeof(float) * m.numel);
    memcpy(gpad, m.grads, sizeof(float) * m.numel);
    /* packed */
    PackedBatch kb = {b.ntok, b.nseg, b.kid, b.ktg, b.seg};
    CHECK(model_forward_packed(&m, &kb, 0.7f, klp, ken, &err) == 0, "%s", err.msg);
    model_zero_grads(&m);
    model_backward_packed(&m, &kb, b.kdl, b.kde);
    double wl = 0, we = 0, wg = 0;
    for (int i = 0; i < b.ntok; i++) {
        wl = fmax(wl, fabs((double)klp[i] - lp[b.map[i]]));
        we = fmax(we, fabs((double)ken[i] - en[b.map[i]]));
    }
    CHECK(wl < 2e-5 && we < 2e-5, "%s: log-prob diff %.3g, entropy diff %.3g", cfgname, wl, we);
    for (int p = 0; p < m.nparams; p++) { /* per tensor, relative to its largest gradient */
        const Param *t = &m.ptab[p];
        double mx = 0, d = 0;
        for (size_t j = 0; j < t->numel; j++) {
            mx = fmax(mx, fabs(gpad[t->offset + j]));
            d = fmax(d, fabs((double)gpad[t->offset + j] - m.grads[t->offset + j]));
        }
        wg = fmax(wg, d / (mx + 1e-6));
        CHECK(d <= 1e-4 * mx + 1e-7, "%s %s: grad diff %.3g (largest grad %.3g)", cfgname, t->name, d, mx);
    }
    printf("%s: %d rows x %d padded (%d positions) vs %d packed tokens in %d segments: max |dlogp| %.2g, "
           "|dentropy| %.2g, grad diff / largest grad %.2g\n",
           cfgname, b.B, b.T, NP, b.ntok, b.nseg, wl, we, wg);
    free(lp), free(en), free(dl), free(de), free(klp), free(ken), free(gpad);
    model_free(&m);
}

static void check_bad_input(void) {
    ModelConfig c;
    if (tu_load_config(&c, "dsv3-tiny-1m.json")) return;
    Model m;
    Err err = {0};
    ModelOpts o = {0};
    CHECK(model_create(&m, &c, &o, &err) == 0, "%s", err.msg);
    int ids[6] = {1, 2, 3, 4, 5, 6};
    float lp[6];
    PackSeg gap[2] = {{0, 2, -1}, {3, 3, -1}}, fwd[2] = {{0, 3, 1}, {3, 3, -1}}, nest[3] = {{0, 2, -1}, {2, 2, 0}, {4, 2, 1}};
    PackSeg short_[1] = {{0, 5, -1}};
    const PackSeg *bad[] = {gap, fwd, nest, short_};
    int nseg[] = {2, 2, 3, 1};
    for (int k = 0; k < 4; k++) {
        PackedBatch pb = {6, nseg[k], ids, NULL, bad[k]};
        err = (Err){0};
        CHECK(model_forward_packed(&m, &pb, 1.0f, lp, NULL, &err) == -1 && err.code == ERR_INPUT,
              "bad layout %d accepted", k);
        printf("bad layout %d: %s\n", k, err.msg);
    }
    model_free(&m);
}

int main(void) {
    /* (prompt length, G, completion lengths): shared prefixes, G = 1, one-token prompt, length-1 completions */
    Case mixed = {5, {{7, 3, {4, 9, 1}}, {3, 1, {6}}, {1, 2, {5, 3}}, {12, 4, {2, 8, 5, 11}}, {2, 2, {1, 1}}}};
    check_case("dsv3-tiny-1m.json", &mixed);   /* V3: q-LoRA, sigmoid + bias, group-limited MoE */
    check_case("dsv3-small-10m.json", &mixed); /* q_proj, d_v != d_n */
    check_case("dsv2-small-10m.json", &mixed); /* V2 softmax gating */
    Case longer = {2, {{70, 3, {90, 20, 66}}, {40, 2, {130, 5}}}}; /* several row blocks, long prefix */
    check_case("dsv3-tiny-1m.json", &longer);
    check_bad_input();
    return test_report();
}
