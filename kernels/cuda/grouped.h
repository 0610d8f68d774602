/* grouped: the routed experts' Linear products over the rows of each expert, in
 * one launch per product, with the experts' row ranges read on the device.
 * Rows are grouped by expert (cuda_moe_permute's perm order): expert e owns
 * rows start[e] .. start[e+1] of the row buffers, start a DEVICE array [E+1].
 * Because no count comes to the host there is no synchronisation per MoE layer
 * and the products can be captured in a CUDA graph; the grid is sized from
 * rows_max (>= start[E], e.g. tokens * k) and blocks past the last expert's
 * rows exit at once.
 *
 * bf16 operands on tensor cores (WMMA 16x16x16), fp32 sums, one rounding of the
 * output: the numbers of cuda_linear_fwd / _bwd_x / _bwd_w per expert, summed
 * in another order. W and dW are DEVICE arrays of E device pointers, each
 * weight [N, K] in HF [out, in] layout. Not here: fp8, Hopper's wgmma/TMA
 * (these are plain tiled tensor-core kernels), expert parallelism. */
#ifndef GRPO_CUDA_GROUPED_H
#define GRPO_CUDA_GROUPED_H

#include "kernels/cuda/gemm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y[r] (+)= x[r] . W[e]^T for the rows r of each expert e: x [rows, K], y [rows, N]
 * of type yt; accumulate 0 overwrites. */
int cuda_grouped_fwd(cudaStream_t s, void *y, CudaDtype yt, const cuda_bf16 *x, const cuda_bf16 *const *W,
                     const int *start, int E, int rows_max, int N, int K, int accumulate, Err *err);
/* dx[r] (+)= dy[r] . W[e]: dy [rows, N], dx [rows, K] of type dxt. */
int cuda_grouped_bwd_x(cudaStream_t s, void *dx, CudaDtype dxt, const cuda_bf16 *dy, const cuda_bf16 *const *W,
                       const int *start, int E, int rows_max, int N, int K, int accumulate, Err *err);
/* dW[e] [N, K] += dy[rows of e]^T . x[rows of e] (fp32: the gradient accumulator);
 * an expert without rows is left as it is. */
int cuda_grouped_bwd_w(cudaStream_t s, float *const *dW, const cuda_bf16 *dy, const cuda_bf16 *x, const int *start,
                       int E, int N, int K, Err *err);

#ifdef __cplusplus
}
#endif
#endif
