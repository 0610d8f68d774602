/* cuda_test: helpers for the CUDA op tests: skip without a GPU, device
 * buffers (poisoned with NaN bytes before a kernel writes them, so an
 * unwritten element fails the comparison), random bf16/fp32 inputs from the
 * project's splitmix64, and the normalised mean square error
 *   nmse(out, ref) = sum (out - ref)^2 / sum ref^2     (NaN or inf -> INFINITY)
 * with which every test states its bound. Inputs are rounded to bf16 first and
 * the CPU reference gets exactly those values in fp32, so the error measured
 * is the GPU's (bf16 outputs, fp32 vs double accumulation), not the inputs'. */
#ifndef GRPO_CUDA_TEST_H
#define GRPO_CUDA_TEST_H

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/err.h"
#include "base/rng.h"
#include "kernels/cuda/bf16.h"
#include "kernels/cuda/device.h"
#include "test.h"

/* Exits 77 (skipped) where there is no GPU: call first in main. */
#define CUDA_TEST_REQUIRE_GPU()                                                            \
    do {                                                                                   \
        if (cuda_device_count() <= 0) TEST_SKIP("no CUDA device on this machine");         \
    } while (0)

/* GRPO_CUDA_TEST_QUICK set (run_device.sh sets it under compute-sanitizer,
 * which slows kernels 10-100x): tests leave out their largest shapes. */
static inline int test_quick(void) { return getenv("GRPO_CUDA_TEST_QUICK") != NULL; }

/* A CUDA runtime failure ends the test (the state after it is unknown). */
#define CU(call)                                                                            \
    do {                                                                                    \
        cudaError_t e_ = (call);                                                            \
        if (e_ != cudaSuccess) {                                                            \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

static inline void op_failed(const char *what, const Err *err) {
    fprintf(stderr, "FAIL %s: %s\n", what, err->msg);
    exit(1);
}

/* An op returning non-zero ends the test with its message; needs `Err err` in scope. */
#define OK(call)                                   \
    do {                                           \
        if ((call) != 0) op_failed(#call, &err);   \
    } while (0)

/* Device allocation filled with 0xff bytes (NaN in fp32 and bf16). */
static inline void *dev_alloc(size_t bytes) {
    void *p = NULL;
    CU(cudaMalloc(&p, bytes ? bytes : 1));
    CU(cudaMemset(p, 0xff, bytes ? bytes : 1));
    return p;
}

static inline void *dev_upload(const void *h, size_t bytes) {
    void *p = dev_alloc(bytes);
    CU(cudaMemcpy(p, h, bytes, cudaMemcpyHostToDevice));
    return p;
}

static inline void dev_download(void *h, const void *d, size_t bytes) {
    CU(cudaDeviceSynchronize());
    CU(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost));
}

/* Synchronises and reports an asynchronous kernel fault. */
static inline void dev_sync(const char *what) {
    cudaError_t e = cudaDeviceSynchronize();
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess) {
        fprintf(stderr, "FAIL %s: %s\n", what, cudaGetErrorString(e));
        exit(1);
    }
}

/* Normal(0, 1) by Box-Muller from splitmix64. */
static inline float rand_normal(uint64_t *st) {
    double u1 = rng_uniform(st), u2 = rng_uniform(st);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* n values scale * N(0,1) rounded to bf16: bits into b (may be NULL), values into f. */
static inline void rand_bf16(uint64_t *st, cuda_bf16 *b, float *f, long n, float scale) {
    for (long i = 0; i < n; i++) {
        cuda_bf16 h = bf16_from_f32(scale * rand_normal(st));
        if (b) b[i] = h;
        f[i] = bf16_to_f32(h);
    }
}

static inline void bf16_to_f32_array(float *f, const cuda_bf16 *b, long n) {
    for (long i = 0; i < n; i++) f[i] = bf16_to_f32(b[i]);
}

static inline double nmse(const float *out, const float *ref, long n) {
    double num = 0, den = 0;
    for (long i = 0; i < n; i++) {
        if (!isfinite(out[i])) return INFINITY;
        double d = (double)out[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? num / den : (num > 0 ? INFINITY : 0.0);
}

/* nmse of a bf16 device result [n] against ref (downloads). */
static inline double nmse_dev_bf16(const void *d, const float *ref, long n) {
    cuda_bf16 *h = malloc(sizeof(cuda_bf16) * (n ? n : 1));
    float *f = malloc(sizeof(float) * (n ? n : 1));
    dev_download(h, d, sizeof(cuda_bf16) * n);
    bf16_to_f32_array(f, h, n);
    double e = nmse(f, ref, n);
    free(h), free(f);
    return e;
}

static inline double nmse_dev_f32(const void *d, const float *ref, long n) {
    float *f = malloc(sizeof(float) * (n ? n : 1));
    dev_download(f, d, sizeof(float) * n);
    double e = nmse(f, ref, n);
    free(f);
    return e;
}

/* Error bounds (nmse). One bf16 rounding of a result has relative error up to
 * 2^-8 and RMS about 2^-8/sqrt(3), i.e. nmse ~5e-6: a bound of 3e-5 leaves 6x
 * margin for one rounding of the output plus fp32-vs-double accumulation. A
 * chain of n roundings (e.g. gate GEMM -> SwiGLU -> down GEMM -> combine)
 * adds up to ~n x 5e-6, amplified where values cancel: 2e-4 for chains.
 * fp32-only paths (log-probs from fp32 logits, AdamW) are held to 1e-9 or
 * tighter. A wrong index or a missing barrier gives nmse of order 1. */
#define NMSE_BF16_ONE 3e-5
#define NMSE_BF16_CHAIN 2e-4
#define NMSE_F32 1e-9

#endif
