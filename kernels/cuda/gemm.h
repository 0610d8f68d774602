/* gemm: bf16 matrix products through cuBLASLt with fp32 accumulation, in the
 * row-major BLAS-like convention of kernels/cpu/gemm.h:
 *   C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C
 * op(A) = A (stored [M, lda]) or A^T (stored [K, lda]); same for B.
 * A and B are bf16; C is fp32 or bf16 (CudaDtype). Wrappers for the Linear
 * layer and its two backward products mirror linear_fwd / linear_bwd_x /
 * linear_bwd_w, and a strided-batched product. (The experts' products are
 * grouped.h's own kernels.)
 * A CudaBlas holds the cuBLASLt handle and its workspace; use one per stream.
 * Where cuBLASLt offers no algorithm (odd leading dimensions, unaligned rows)
 * the product goes through cublasGemmStridedBatchedEx with the same types.
 * A product's cuBLASLt plan (descriptors + the heuristic's first algorithm) is
 * built once per shape, leading dimensions and operand alignment and kept in
 * the CudaBlas (128, least recently used replaced): building one costs the host
 * more than a small expert product takes on the GPU. No autotuning, no fp8. */
#ifndef GRPO_CUDA_GEMM_H
#define GRPO_CUDA_GEMM_H

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "base/err.h"
#ifdef __cplusplus
}
#endif
#include "kernels/cuda/bf16.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { CUDA_F32 = 0, CUDA_BF16 = 1 } CudaDtype;

typedef struct CudaBlas CudaBlas;

/* Creates the cuBLASLt handle and a workspace of workspace_bytes (0: 32 MiB). */
CudaBlas *cuda_blas_new(size_t workspace_bytes, Err *err);
void cuda_blas_free(CudaBlas *h);
/* Products that reused a kept plan, and plans built, since cuda_blas_new. */
void cuda_blas_stats(const CudaBlas *h, long long *hits, long long *builds);

/* C[M,N] = alpha op(A) op(B) + beta C on stream. A, B bf16 device pointers; C of
 * type ctype. Errors (ERR_INPUT: bad shapes/leading dims; ERR_WORK: cuBLASLt
 * failed or found no algorithm) name the shapes. M, N or K == 0 is a no-op
 * except K == 0 scales C by beta. */
int cuda_gemm(CudaBlas *h, cudaStream_t stream, int transA, int transB, int M, int N, int K, float alpha,
              const cuda_bf16 *A, int lda, const cuda_bf16 *B, int ldb, float beta, void *C, CudaDtype ctype,
              int ldc, Err *err);

/* Batched: nbatch products, the i-th at A + i*strideA, B + i*strideB, C + i*strideC
 * (strides in elements). */
int cuda_gemm_batched(CudaBlas *h, cudaStream_t stream, int transA, int transB, int M, int N, int K, float alpha,
                      const cuda_bf16 *A, int lda, long long strideA, const cuda_bf16 *B, int ldb, long long strideB,
                      float beta, void *C, CudaDtype ctype, int ldc, long long strideC, int nbatch, Err *err);

/* y[M,N] (+)= x[M,K] . W[N,K]^T (W in HF [out, in] layout). */
int cuda_linear_fwd(CudaBlas *h, cudaStream_t s, void *y, CudaDtype ytype, const cuda_bf16 *x, const cuda_bf16 *W,
                    int M, int N, int K, int accumulate, Err *err);
/* dx[M,K] (+)= dy[M,N] . W[N,K] */
int cuda_linear_bwd_x(CudaBlas *h, cudaStream_t s, void *dx, CudaDtype dxtype, const cuda_bf16 *dy,
                      const cuda_bf16 *W, int M, int N, int K, int accumulate, Err *err);
/* dW[N,K] += dy[M,N]^T . x[M,K]  (dW fp32: the gradient accumulator) */
int cuda_linear_bwd_w(CudaBlas *h, cudaStream_t s, float *dW, const cuda_bf16 *dy, const cuda_bf16 *x, int M,
                      int N, int K, Err *err);

#ifdef __cplusplus
}
#endif
#endif
