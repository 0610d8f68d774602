/* gemm: single-precision matrix multiply on the CPU (OpenMP, SIMD via GCC
 * vector extensions). Row-major, BLAS-like:
 *   C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C
 * op(A) = A (stored [M, lda]) or A^T (stored [K, lda]); same for B.
 * 6 x 2*VW micro-tiles; B is packed once per call into panels shared by all
 * threads, A is read in place; tiny M takes a dot-product path so decoding one
 * token does not pay for packing weights. Each output sums its K products in
 * an order that does not depend on the thread count. Threads over output
 * tiles unless already inside a parallel region. beta = 0 never reads C. */
#ifndef GRPO_GEMM_H
#define GRPO_GEMM_H

void gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc);

/* Weights frozen (on = 1): until gemm_weights_frozen(0), gemm_weight keeps
 * each W it sees packed (once, on first use) instead of packing it on every
 * call; the caller promises that no W passed to gemm_weight changes in
 * between (the rollout: many decode steps against the same weights).
 * gemm_weights_frozen(0) frees the packed copies. Not nested; at most 256 MB
 * of packed weights are kept (past that W is packed per call). */
void gemm_weights_frozen(int on);
/* C[M,N] = A[M,K] · W[N,K]^T + beta * C (beta 0 or 1): gemm with the frozen
 * weights' packed copy when there is one; bitwise the same result either way. */
void gemm_weight(int M, int N, int K, const float *A, const float *W, float beta, float *C);

/* y[M,N] (+)= x[M,K] · W[N,K]^T: the Linear layer (W in HF [out, in] layout). */
static inline void linear_fwd(float *y, const float *x, const float *W, int M, int N, int K, int accumulate) {
    gemm_weight(M, N, K, x, W, accumulate ? 1.0f : 0.0f, y);
}
/* dx[M,K] += dy[M,N] · W[N,K] */
static inline void linear_bwd_x(float *dx, const float *dy, const float *W, int M, int N, int K) {
    gemm(0, 0, M, K, N, 1.0f, dy, N, W, K, 1.0f, dx, K);
}
/* dW[N,K] += dy[M,N]^T · x[M,K] */
static inline void linear_bwd_w(float *dW, const float *dy, const float *x, int M, int N, int K) {
    gemm(1, 0, N, K, M, 1.0f, dy, N, x, K, 1.0f, dW, K);
}

#endif
