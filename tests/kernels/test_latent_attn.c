/* test_latent_attn: latent_attend against a double-precision softmax
 * attention written out directly (keys ka|kb, values ka), for head counts,
 * widths that are and are not multiples of the vector width, strided query
 * heads, and lengths from 1 to past a few hundred cached tokens. */
#include <stdlib.h>

#include "kernels/cpu/latent_attn.h"
#include "test.h"

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return ((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static double check(int nh, int T, int da, int db, float scale) {
    unsigned s = 7u + nh * 131u + T * 7u + da * 3u + db;
    const long lda = da + 3, ldb = db + da + 1; /* heads strided, as in the decode's q rows */
    float *qa = malloc(sizeof(float) * nh * lda), *qb = malloc(sizeof(float) * nh * ldb);
    float *ka = malloc(sizeof(float) * T * da), *kb = malloc(sizeof(float) * T * (db ? db : 1));
    float *ctx = malloc(sizeof(float) * nh * da), *sc = malloc(sizeof(float) * nh * T);
    double *p = malloc(sizeof(double) * T);
    for (long i = 0; i < nh * lda; i++) qa[i] = 2 * frand(&s);
    for (long i = 0; i < nh * ldb; i++) qb[i] = 2 * frand(&s);
    for (long i = 0; i < (long)T * da; i++) ka[i] = frand(&s);
    for (long i = 0; i < (long)T * db; i++) kb[i] = frand(&s);
    latent_attend(ctx, sc, qa, lda, qb, ldb, ka, kb, nh, T, da, db, scale);
    double worst = 0;
    for (int h = 0; h < nh; h++) {
        double mx = -1e300, sum = 0;
        for (int t = 0; t < T; t++) {
            double a = 0;
            for (int j = 0; j < da; j++) a += (double)qa[h * lda + j] * ka[(long)t * da + j];
            for (int j = 0; j < db; j++) a += (double)qb[h * ldb + j] * kb[(long)t * db + j];
            p[t] = a * scale;
            mx = p[t] > mx ? p[t] : mx;
        }
        for (int t = 0; t < T; t++) sum += (p[t] = exp(p[t] - mx));
        for (int j = 0; j < da; j++) {
            double c = 0;
            for (int t = 0; t < T; t++) c += p[t] / sum * ka[(long)t * da + j];
            worst = fmax(worst, fabs(ctx[h * da + j] - c));
        }
    }
    free(qa), free(qb), free(ka), free(kb), free(ctx), free(sc), free(p);
    return worst;
}

int main(void) {
    int cases[][4] = {{1, 1, 16, 0}, {4, 75, 64, 16}, {8, 300, 64, 16}, {3, 17, 37, 5}, {2, 9, 7, 3}, {128, 40, 512, 64}};
    double worst_all = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int nh = cases[i][0], T = cases[i][1], da = cases[i][2], db = cases[i][3];
        double w = check(nh, T, da, db, 1.0f / sqrtf((float)(da + db)) * 4.0f);
        worst_all = fmax(worst_all, w);
        CHECK(w < 2e-6, "nh=%d T=%d da=%d db=%d: worst abs error %.3g", nh, T, da, db, w);
    }
    printf("latent_attend: worst absolute context error %.3g (tolerance 2e-6; values in [-1, 1])\n", worst_all);
    return test_report();
}
