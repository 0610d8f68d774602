/* test_decode: absorbed-MLA decoding over the latent cache gives the logits of
 * one full (naive-form) forward, to 1e-5 relative, for a batch of sequences of
 * different lengths: part prefilled in one call, the rest token by token with
 * all sequences in the same call, and a group copied from a shared prompt. */
#include "model/kvcache.h"
#include "model_test_util.h"
#include "test.h"

static double rel_err(const float *a, const float *b, int n) {
    double md = 0, mb = 0;
    for (int i = 0; i < n; i++) {
        md = fmax(md, fabs(a[i] - b[i]));
        mb = fmax(mb, fabs(b[i]));
    }
    return md / (mb > 0 ? mb : 1);
}

static void check_config(const char *name) {
    ModelConfig c;
    if (tu_load_config(&c, name)) { CHECK(0, "config %s", name); return; }
    Model m;
    Err err = {0};
    ModelOpts o = {0};
    CHECK(model_create(&m, &c, &o, &err) == 0, "%s", err.msg);
    model_init_random(&m, 11, 0.08f);
    tu_perturb(&m);
    enum { S = 3, TMAX = 150 };
    const int len[S] = {150, 13, 7}, prefill[S] = {70, 1, 4}; /* 150 > two attention row blocks */
    const int V = c.vocab_size;
    int ids[S][TMAX];
    float *ref[S];
    for (int s = 0; s < S; s++) { /* reference: one full forward per sequence */
        for (int t = 0; t < len[s]; t++) ids[s][t] = (int)((3 + 131L * t + 977L * s * s) % V);
        ref[s] = malloc(sizeof(float) * len[s] * V);
        Batch b = {1, len[s], ids[s], NULL, NULL};
        CHECK(model_logits(&m, &b, ref[s], &err) == 0, "%s", err.msg);
    }
    KvCache kv;
    CHECK(kvcache_create(&kv, &c, S + 2, TMAX, &err) == 0, "%s", err.msg);
    float *lg = malloc(sizeof(float) * TMAX * S * V);
    double worst = 0;
    /* prefill all sequences in one call, all logits */
    int slots[S] = {0, 1, 2}, ntok[S], cat[S * TMAX], n = 0;
    for (int s = 0; s < S; s++) {
        ntok[s] = prefill[s];
        for (int t = 0; t < prefill[s]; t++) cat[n++] = ids[s][t];
    }
    CHECK(model_extend(&m, &kv, S, slots, ntok, cat, lg, 1, &err) == 0, "%s", err.msg);
    for (int s = 0, off = 0; s < S; off += prefill[s], s++)
        worst = fmax(worst, rel_err(lg + (long)off * V, ref[s], prefill[s] * V));
    /* then one token per still-running sequence per call */
    for (int t = 1; t < TMAX; t++) {
        int ns = 0, sl[S], nt[S], tok[S], who[S];
        for (int s = 0; s < S; s++)
            if (prefill[s] + t - 1 < len[s]) {
                sl[ns] = s, nt[ns] = 1, tok[ns] = ids[s][prefill[s] + t - 1], who[ns] = s;
                ns++;
            }
        if (!ns) break;
        CHECK(model_extend(&m, &kv, ns, sl, nt, tok, lg, 0, &err) == 0, "%s", err.msg);
        for (int i = 0; i < ns; i++) {
            int s = who[i], p = prefill[s] + t - 1;
            double e = rel_err(lg + (long)i * V, ref[s] + (long)p * V, V);
            worst = fmax(worst, e);
        }
    }
    /* a prompt shared by a group: slot 2 holds sequence 2; copy it to slot 3
     * and extend both with the same token: identical to the full forward */
    kvcache_copy(&kv, 3, 2);
    CHECK(kv.len[3] == len[2], "slot 3 holds %d tokens", kv.len[3]);
    int ext[8];
    memcpy(ext, ids[2], sizeof(int) * 7);
    ext[7] = 42 % V;
    float *ref8 = malloc(sizeof(float) * 8 * V);
    Batch b8 = {1, 8, ext, NULL, NULL};
    CHECK(model_logits(&m, &b8, ref8, &err) == 0, "%s", err.msg);
    int gsl[2] = {2, 3}, gnt[2] = {1, 1}, gtok[2] = {ext[7], ext[7]};
    CHECK(model_extend(&m, &kv, 2, gsl, gnt, gtok, lg, 0, &err) == 0, "%s", err.msg);
    CHECK(!memcmp(lg, lg + V, sizeof(float) * V), "copied slot decodes identically");
    worst = fmax(worst, rel_err(lg + V, ref8 + 7L * V, V));
    free(ref8);
    printf("%s: worst relative logit error, cache vs full forward: %.3g (tolerance 1e-5)\n", name, worst);
    CHECK(worst < 1e-5, "%s: decode differs from the full forward: %.3g", name, worst);
    /* errors, not crashes */
    int bad_slot = 9, one = 1, tok0 = 0;
    CHECK(model_extend(&m, &kv, 1, &bad_slot, &one, &tok0, lg, 0, &err) == -1 && err.code == ERR_INPUT, "bad slot");
    int s0 = 0;
    CHECK(model_extend(&m, &kv, 1, &s0, &one, &tok0, lg, 0, &err) == -1 && strstr(err.msg, "would hold"),
          "cache overflow is an error: %s", err.msg);
    kvcache_free(&kv);
    for (int s = 0; s < S; s++) free(ref[s]);
    free(lg);
    model_free(&m);
}

int main(void) {
    check_config("dsv3-tiny-1m.json");
    check_config("dsv3-small-10m.json");
    return test_report();
}
