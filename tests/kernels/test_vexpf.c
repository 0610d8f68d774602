/* test_vexpf: vexpf against libm's expf bit for bit (a sweep over every 251st
 * float bit pattern, both signs, plus the edges of its fast path: +-88,
 * +-104, denormal results, inf, NaN), and swiglu_fwd / swiglu_bwd against the
 * scalar formulas they replaced, bit for bit, at lengths with and without a
 * tail, and exp_shifted against expf(x - shift). The full 2^32 sweep of
 * vexpf (0 mismatches) was run by hand: see docs/performance.md. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/vexpf.h"
#include "test.h"

static int same(float a, float b) { return !memcmp(&a, &b, sizeof a) || (isnan(a) && isnan(b)); }

static void check_sweep(void) {
    long bad = 0, n = 0;
    vf x;
    int k = 0;
    for (uint64_t b = 0; b < (1ull << 32); b += 251) {
        uint32_t u = (uint32_t)b;
        memcpy(&x[k], &u, sizeof u);
        if (++k < VW) continue;
        vf y = vexpf(x);
        for (int i = 0; i < VW; i++, n++) bad += !same(y[i], expf(x[i]));
        k = 0;
    }
    CHECK(bad == 0, "vexpf: %ld of %ld swept inputs differ from expf", bad, n);
    const float edge[] = {88.0f, -88.0f, 88.72f, 88.73f, -87.33f, -103.9f, -104.0f, -150.0f, 0.0f, -0.0f,
                          1e-30f, -1e-30f, INFINITY, -INFINITY, NAN, 0x1.5bf0a8p+6f, 0x1.5bfp+6f, -0x1.9fe368p+6f};
    const int ne = sizeof edge / sizeof edge[0];
    bad = 0;
    for (int s = 0; s < ne; s++) {
        for (int i = 0; i < VW; i++) x[i] = edge[(s + i) % ne] * (i & 1 ? 1.0f : nextafterf(1.0f, 2.0f));
        vf y = vexpf(x);
        for (int i = 0; i < VW; i++) bad += !same(y[i], expf(x[i]));
    }
    CHECK(bad == 0, "vexpf: %ld edge inputs differ from expf", bad);
}

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return ((*s >> 8) & 0xffff) / 4096.0f - 8.0f;
}

static void check_swiglu(long n) {
    unsigned s = 11u + (unsigned)n;
    float *g = malloc(sizeof(float) * n * 8), *u = g + n, *dh = u + n, *h = dh + n, *dg = h + n, *du = dg + n,
          *rh = du + n, *rdg = rh + n;
    float *rdu = malloc(sizeof(float) * n);
    for (long i = 0; i < n; i++) g[i] = frand(&s), u[i] = frand(&s) / 8, dh[i] = frand(&s) / 8;
    g[0] = -100.0f; /* a lane outside the polynomial's range */
    swiglu_fwd(h, g, u, n);
    swiglu_bwd(dg, du, dh, g, u, n);
    long bad = 0;
    for (long i = 0; i < n; i++) { /* the scalar code swiglu had before vexpf */
        rh[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
        float sg = 1.0f / (1.0f + expf(-g[i]));
        float silu = g[i] * sg;
        rdu[i] = dh[i] * silu;
        rdg[i] = dh[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
        bad += !same(h[i], rh[i]) + !same(dg[i], rdg[i]) + !same(du[i], rdu[i]);
    }
    CHECK(bad == 0, "swiglu n=%ld: %ld outputs differ from the scalar formulas", n, bad);
    free(g), free(rdu);
}

static void check_exp_shifted(long n) {
    unsigned s = 5u + (unsigned)n;
    float *x = malloc(sizeof(float) * n * 2), *ref = x + n, mx = 3.25f;
    for (long i = 0; i < n; i++) x[i] = frand(&s) * 12, ref[i] = expf(x[i] - mx);
    exp_shifted(x, n, mx);
    long bad = 0;
    for (long i = 0; i < n; i++) bad += !same(x[i], ref[i]);
    CHECK(bad == 0, "exp_shifted n=%ld: %ld outputs differ from expf(x - shift)", n, bad);
    free(x);
}

int main(void) {
    check_sweep();
    for (long n = 1; n < 70; n += 3) check_exp_shifted(n);
    const long ns[] = {1, 7, 16, 37, 4096, 70001};
    for (int i = 0; i < 6; i++) check_swiglu(ns[i]);
    return test_report();
}
