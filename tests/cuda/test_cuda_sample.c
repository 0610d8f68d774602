/* test_cuda_sample: GPU sampling (kernels/cuda/sample.h) against
 * sampler_sample of rl/sampler.c. The GPU computes the uniforms from (seed,
 * id, step) with cuda_sample_uniforms, which must equal sampler_uniform bit
 * for bit; then, for every filter combination (temperature, top-k, top-p,
 * min-p, greedy) and several vocabulary sizes, every row must pick the same
 * token as the CPU, with the same log-probs. Logits are quantised to quarter
 * units so that exact ties occur (tie order decides top-k, top-p and the
 * draw), and some rows hold -inf and NaN entries; a row of NaNs must report
 * -1 on the GPU where the CPU reports an error. Skipped without a GPU. */
#include <string.h>

#include "cuda_test.h"
#include "kernels/cuda/sample.h"
#include "rl/sampler.h"

static uint64_t rng = 0x73616d70;
static Err err;

static void check_config(const SamplerOpts *so, int B, int V, uint64_t seed, uint64_t step) {
    long n = (long)B * V;
    float *logits = malloc(4 * n);
    for (long i = 0; i < n; i++) logits[i] = roundf(12.0f * rand_normal(&rng)) / 4.0f;
    for (int b = 0; b < B; b++) {
        float *r = logits + (long)b * V;
        if (b % 7 == 1) r[rng_next(&rng) % V] = -INFINITY;
        if (b % 11 == 2) r[rng_next(&rng) % V] = NAN;
    }
    if (B > 3) /* a row with no finite maximum */
        for (int v = 0; v < V; v++) logits[3L * V + v] = NAN;
    uint64_t *ids = malloc(sizeof(uint64_t) * B);
    double *u = malloc(sizeof(double) * B);
    for (int b = 0; b < B; b++) ids[b] = 1000003ull * b + (uint64_t)V;
    float *d_logits = dev_upload(logits, 4 * n);
    uint64_t *d_ids = dev_upload(ids, sizeof(uint64_t) * B);
    double *d_u = dev_alloc(sizeof(double) * B);
    int *d_tok = dev_alloc(sizeof(int) * B);
    float *d_lp = dev_alloc(4L * B), *d_lpf = dev_alloc(4L * B);
    void *scratch = dev_alloc(cuda_sample_scratch_bytes(B, V));
    CudaSamplerOpts go = {so->temperature, so->top_k, so->top_p, so->min_p};
    OK(cuda_sample_uniforms(0, seed, d_ids, step, B, d_u, &err));
    OK(cuda_sample(0, &go, d_logits, B, V, V, d_u, d_tok, d_lp, d_lpf, scratch, &err));
    dev_sync("sample");
    int *tok = malloc(sizeof(int) * B);
    float *lp = malloc(4L * B), *lpf = malloc(4L * B);
    dev_download(u, d_u, sizeof(double) * B);
    dev_download(tok, d_tok, sizeof(int) * B);
    dev_download(lp, d_lp, 4L * B);
    dev_download(lpf, d_lpf, 4L * B);
    SamplerWork *w = sampler_work_new(V);
    int same_u = 1, mism = 0, lp_bad = 0;
    for (int b = 0; b < B; b++) {
        same_u &= u[b] == sampler_uniform(seed, ids[b], step);
        SampleOut out;
        Err e2 = {0};
        int rc = sampler_sample(so, logits + (long)b * V, w, seed, ids[b], step, &out, &e2);
        if (rc != 0) {
            mism += tok[b] != -1;
            continue;
        }
        if (out.token != tok[b]) {
            if (mism < 5)
                fprintf(stderr, "  row %d: cpu token %d (logp %g), gpu %d (logp %g)\n", b, out.token, out.logp,
                        tok[b], lp[b]);
            mism++;
            continue;
        }
        if (isnan(out.logp)) lp_bad += !isnan(lp[b]); /* greedy over a row holding a NaN */
        else lp_bad += !(fabsf(lp[b] - out.logp) <= 1e-5f * fmaxf(1.0f, fabsf(out.logp)));
        lp_bad += !(fabsf(lpf[b] - out.logp_filtered) <= 1e-5f * fmaxf(1.0f, fabsf(out.logp_filtered)));
    }
    CHECK(same_u, "the device uniforms differ from sampler_uniform");
    CHECK(mism == 0, "T=%g top_k=%d top_p=%g min_p=%g V=%d: %d of %d rows picked another token", so->temperature,
          so->top_k, so->top_p, so->min_p, V, mism, B);
    CHECK(lp_bad == 0, "T=%g top_k=%d top_p=%g min_p=%g V=%d: %d log-probs differ", so->temperature, so->top_k,
          so->top_p, so->min_p, V, lp_bad);
    printf("sample T=%.1f top_k=%3d top_p=%.2f min_p=%.2f V=%6d: %d/%d tokens differ, %d log-probs\n",
           so->temperature, so->top_k, so->top_p, so->min_p, V, mism, B, lp_bad);
    sampler_work_free(w);
    cudaFree(d_logits), cudaFree(d_ids), cudaFree(d_u), cudaFree(d_tok), cudaFree(d_lp), cudaFree(d_lpf);
    cudaFree(scratch);
    free(logits), free(ids), free(u), free(tok), free(lp), free(lpf);
}

int main(void) {
    CUDA_TEST_REQUIRE_GPU();
    const SamplerOpts opts[] = {
        {1.0f, 0, 1.0, 0.0},    {0.7f, 50, 1.0, 0.0},  {1.0f, 0, 0.9, 0.0},   {0.8f, 100, 0.95, 0.05},
        {1.2f, 0, 1.0, 0.1},    {0.0f, 0, 1.0, 0.0},   {1.0f, 1, 1.0, 0.0},   {1.0f, 0, 0.01, 0.0},
        {0.6f, 20, 0.5, 0.0},   {1.0f, 0, 0.3, 0.02},
    };
    const int vocab[] = {1, 7, 1000, 32000, 129280};
    for (unsigned i = 0; i < sizeof opts / sizeof *opts; i++)
        for (unsigned j = 0; j < (test_quick() ? 3 : sizeof vocab / sizeof *vocab); j++)
            check_config(&opts[i], vocab[j] > 32000 ? 16 : 48, vocab[j], 42 + i, 7 + j);
    Err e2 = {0};
    CudaSamplerOpts bad = {1.0f, 0, 1.5, 0.0};
    CHECK(cuda_sample(0, &bad, NULL, 1, 8, 8, NULL, NULL, NULL, NULL, NULL, &e2) == -1 && e2.code == ERR_INPUT,
          "top_p > 1 must be refused");
    return test_report();
}
