/* test_sampler: the sampler's kept set and renormalised probabilities equal
 * transformers' warpers (temperature, top-k, top-p, min-p, in generate()'s
 * order) on fixed logits (tests/fixtures/rl/sampler_warpers.txt, made by
 * tests/golden/make_sampler_fixtures.py); sampled frequencies pass a
 * chi-square test (fixed seed, so deterministic); log-probs, greedy, the
 * counter-based RNG and bad input. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "rl/sampler.h"
#include "test.h"

/* chi-square 0.999 quantiles for 1..10 degrees of freedom (standard table) */
static const double CHI2_999[11] = {0, 10.828, 13.816, 16.266, 18.467, 20.515, 22.458, 24.322, 26.124, 27.877, 29.588};

typedef struct Case {
    char name[64];
    int V;
    SamplerOpts o;
    float *logits; /* [V] */
    double *ref;   /* [V] transformers' probabilities */
} Case;

static int read_cases(Case **out) {
    const char *path = GRPO_TESTS_DIR "/fixtures/rl/sampler_warpers.txt";
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[256];
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "cases %d", &n) == 1) break;
    Case *c = calloc(n, sizeof *c);
    for (int i = 0; i < n; i++) {
        float t;
        if (fscanf(f, " case %63s %d %f %d %lf %lf", c[i].name, &c[i].V, &t, &c[i].o.top_k, &c[i].o.top_p,
                   &c[i].o.min_p) != 6) {
            fclose(f);
            return -1;
        }
        c[i].o.temperature = t;
        c[i].logits = malloc(sizeof(float) * c[i].V), c[i].ref = malloc(sizeof(double) * c[i].V);
        for (int v = 0; v < c[i].V; v++)
            if (fscanf(f, "%f", &c[i].logits[v]) != 1) return fclose(f), -1;
        for (int v = 0; v < c[i].V; v++)
            if (fscanf(f, "%lf", &c[i].ref[v]) != 1) return fclose(f), -1;
    }
    fclose(f);
    *out = c;
    return n;
}

static void check_against_hf(const Case *c) {
    SamplerWork *w = sampler_work_new(c->V);
    double *p = malloc(sizeof(double) * c->V);
    Err err = {0};
    int kept = sampler_probs(&c->o, c->logits, w, p, &err), same = 1, hf_kept = 0;
    double worst = 0;
    for (int v = 0; v < c->V; v++) {
        hf_kept += c->ref[v] > 0;
        if ((p[v] > 0) != (c->ref[v] > 0)) same = 0;
        worst = fmax(worst, fabs(p[v] - c->ref[v]) / fmax(c->ref[v], 1e-3));
    }
    CHECK(kept == hf_kept && same, "%s: kept %d tokens, transformers %d (same set: %d)", c->name, kept, hf_kept, same);
    CHECK(worst < 2e-6, "%s: probabilities differ from transformers by %.3g (relative)", c->name, worst);
    /* every sampled token is in the kept set; logp_filtered = log p; logp = full log_softmax */
    double mx = -INFINITY, z = 0;
    for (int v = 0; v < c->V; v++) mx = fmax(mx, c->logits[v] / c->o.temperature);
    for (int v = 0; v < c->V; v++) z += exp(c->logits[v] / c->o.temperature - mx);
    int inside = 1;
    double lp_err = 0, lpf_err = 0;
    for (int i = 0; i < 200; i++) {
        SampleOut s;
        CHECK(sampler_sample(&c->o, c->logits, w, 99, i, 0, &s, &err) == 0, "%s", err.msg);
        if (!(c->ref[s.token] > 0)) inside = 0;
        lp_err = fmax(lp_err, fabs(s.logp - (c->logits[s.token] / c->o.temperature - mx - log(z))));
        if (c->ref[s.token] > 0) lpf_err = fmax(lpf_err, fabs(s.logp_filtered - log(c->ref[s.token])));
    }
    CHECK(inside, "%s: sampled a token transformers removes", c->name);
    CHECK(lp_err < 2e-5, "%s: full-vocabulary log-prob off by %.3g", c->name, lp_err);
    CHECK(lpf_err < 2e-5, "%s: filtered log-prob off by %.3g", c->name, lpf_err);
    free(p);
    sampler_work_free(w);
}

/* Draws n tokens (id varying, or step varying) and returns the chi-square
 * statistic against sampler_probs; *df = kept - 1; *outside counts draws of
 * removed tokens. */
static double chi_square(const SamplerOpts *o, const float *logits, int V, int n, int vary_step, int *df,
                         int *outside) {
    SamplerWork *w = sampler_work_new(V);
    double p[64] = {0}, cnt[64] = {0};
    Err err = {0};
    int kept = sampler_probs(o, logits, w, p, &err);
    for (int i = 0; i < n; i++) {
        SampleOut s;
        sampler_sample(o, logits, w, 12345, vary_step ? 7 : (uint64_t)i, vary_step ? (uint64_t)i : 3, &s, &err);
        cnt[s.token] += 1;
    }
    double x2 = 0;
    *outside = 0;
    for (int v = 0; v < V; v++) {
        if (p[v] > 0) x2 += (cnt[v] - n * p[v]) * (cnt[v] - n * p[v]) / (n * p[v]);
        else *outside += (int)cnt[v];
    }
    *df = kept - 1;
    sampler_work_free(w);
    return x2;
}

static void check_frequencies(const Case *cases, int nc) {
    const float plain[8] = {0.5f, -1.0f, 2.0f, 0.0f, 1.0f, -0.5f, 1.5f, -2.0f};
    SamplerOpts o = sampler_defaults();
    int df, outside;
    for (int vary = 0; vary < 2; vary++) {
        double x2 = chi_square(&o, plain, 8, 100000, vary, &df, &outside);
        printf("chi-square, V=8 unfiltered, %s varying: %.2f (df %d, 0.999 critical %.2f)\n", vary ? "step" : "id", x2,
               df, CHI2_999[df]);
        CHECK(df == 7 && x2 < CHI2_999[df], "unfiltered frequencies: chi2 %.2f df %d", x2, df);
    }
    for (int i = 0; i < nc; i++) {
        if (strcmp(cases[i].name, "small_v8")) continue;
        double x2 = chi_square(&cases[i].o, cases[i].logits, 8, 100000, 0, &df, &outside);
        printf("chi-square, V=8 T=%.2g top_k=%d top_p=%.2g min_p=%.2g: %.2f (df %d, 0.999 critical %.2f)\n",
               cases[i].o.temperature, cases[i].o.top_k, cases[i].o.top_p, cases[i].o.min_p, x2, df, CHI2_999[df]);
        CHECK(df >= 1 && df <= 10 && x2 < CHI2_999[df], "filtered frequencies: chi2 %.2f df %d", x2, df);
        CHECK(outside == 0, "%d draws of removed tokens", outside);
    }
}

static void check_greedy_rng_errors(void) {
    float lg[6] = {0.1f, 3.0f, -1.0f, 3.0f, 2.9f, 0.0f};
    SamplerOpts g = {.temperature = 0, .top_k = 0, .top_p = 1, .min_p = 0};
    SamplerWork *w = sampler_work_new(6);
    Err err = {0};
    SampleOut s;
    CHECK(sampler_sample(&g, lg, w, 1, 2, 3, &s, &err) == 0 && s.token == 1, "greedy takes the lowest id of a tie");
    double z = 0;
    for (int v = 0; v < 6; v++) z += exp(lg[v] - 3.0);
    CHECK(fabs(s.logp - (0 - log(z))) < 1e-6 && s.logp_filtered == 0, "greedy log-prob is log_softmax at T=1: %g",
          s.logp);
    /* the generator: same key same number; keys differ in every coordinate */
    double u = sampler_uniform(1, 2, 3);
    CHECK(u == sampler_uniform(1, 2, 3) && u >= 0 && u < 1, "uniform is a function of its key");
    CHECK(u != sampler_uniform(2, 2, 3) && u != sampler_uniform(1, 3, 3) && u != sampler_uniform(1, 2, 4) &&
              sampler_uniform(0, 1, 0) != sampler_uniform(0, 0, 1),
          "uniform changes with seed, id and step");
    double mean = 0;
    for (int i = 0; i < 100000; i++) mean += sampler_uniform(5, i, i / 7);
    mean /= 100000;
    CHECK(fabs(mean - 0.5) < 0.005, "uniform mean %.4f", mean);
    /* bad options and logits: errors, not crashes */
    SamplerOpts bad[4] = {{-1, 0, 1, 0}, {1, -2, 1, 0}, {1, 0, 1.5, 0}, {1, 0, 1, -0.1}};
    for (int i = 0; i < 4; i++)
        CHECK(sampler_check(&bad[i], &err) == -1 && err.code == ERR_INPUT, "bad option %d accepted", i);
    SamplerOpts o = sampler_defaults();
    CHECK(sampler_check(&o, &err) == 0, "defaults valid");
    float nan6[6] = {NAN, NAN, NAN, NAN, NAN, NAN}, inf6[6] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                                                                -INFINITY};
    CHECK(sampler_sample(&o, nan6, w, 1, 1, 1, &s, &err) == -1 && strstr(err.msg, "finite"), "NaN logits: %s", err.msg);
    CHECK(sampler_sample(&o, inf6, w, 1, 1, 1, &s, &err) == -1, "all -inf logits are an error");
    lg[2] = NAN; /* one NaN among finite logits is never sampled */
    int nan_drawn = 0;
    for (int i = 0; i < 1000; i++) {
        CHECK(sampler_sample(&o, lg, w, 1, i, 1, &s, &err) == 0, "%s", err.msg);
        nan_drawn += s.token == 2;
    }
    CHECK(nan_drawn == 0, "a NaN logit was sampled %d times", nan_drawn);
    sampler_work_free(w);
}

/* Many rows sampled by several threads give the tokens of one thread. */
static void check_threads(const Case *c) {
    enum { N = 512 };
    int serial[N], par[N];
    SamplerWork *w = sampler_work_new(c->V);
    Err err = {0};
    SampleOut s;
    for (int i = 0; i < N; i++) serial[i] = sampler_sample(&c->o, c->logits, w, 3, i, i % 5, &s, &err) ? -1 : s.token;
    sampler_work_free(w);
#pragma omp parallel num_threads(3)
    {
        SamplerWork *tw = sampler_work_new(c->V);
        Err e;
        SampleOut so;
#pragma omp for schedule(dynamic, 7)
        for (int i = 0; i < N; i++) par[i] = sampler_sample(&c->o, c->logits, tw, 3, i, i % 5, &so, &e) ? -1 : so.token;
        sampler_work_free(tw);
    }
    CHECK(!memcmp(serial, par, sizeof serial), "%s: threads changed the sampled tokens", c->name);
}

int main(void) {
    Case *cases = NULL;
    int nc = read_cases(&cases);
    CHECK(nc > 0, "cannot read tests/fixtures/rl/sampler_warpers.txt");
    for (int i = 0; i < nc; i++) check_against_hf(&cases[i]);
    printf("%d fixture cases compared with transformers' warpers\n", nc);
    check_frequencies(cases, nc);
    for (int i = 0; i < nc; i++) check_threads(&cases[i]);
    check_greedy_rng_errors();
    for (int i = 0; i < nc; i++) free(cases[i].logits), free(cases[i].ref);
    free(cases);
    return test_report();
}
