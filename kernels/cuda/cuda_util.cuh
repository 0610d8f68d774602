/* cuda_util: internal helpers shared by the kernels/cuda modules (not part of
 * the C API): turning CUDA and cuBLAS status codes into Err records that name
 * the call, file and line, bf16 loads/stores, and block reductions. Include
 * only from .cu files. */
#ifndef GRPO_CUDA_UTIL_CUH
#define GRPO_CUDA_UTIL_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <limits.h>
#include <stdint.h>

extern "C" {
#include "base/err.h"
}
#include "kernels/cuda/bf16.h"

typedef __nv_bfloat16 bf16;

/* Returns -1 from the enclosing function with err set when a CUDA call fails. */
#define CUDA_TRY(call, err)                                                                              \
    do {                                                                                                 \
        cudaError_t e_ = (call);                                                                         \
        if (e_ != cudaSuccess)                                                                           \
            return err_set((err), ERR_WORK, "%s:%d: %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
    } while (0)

/* After a kernel launch: catches bad launch configurations (not asynchronous faults). */
#define CUDA_LAUNCHED(what, err)                                                                         \
    do {                                                                                                 \
        cudaError_t e_ = cudaGetLastError();                                                             \
        if (e_ != cudaSuccess)                                                                           \
            return err_set((err), ERR_WORK, "%s:%d: launching %s: %s", __FILE__, __LINE__, (what),       \
                           cudaGetErrorString(e_));                                                      \
    } while (0)

static inline int cuda_blocks(long n, int threads) {
    long b = (n + threads - 1) / threads;
    return (int)(b < 1 ? 1 : (b > 65535L * 32 ? 65535L * 32 : b));
}

__device__ __forceinline__ float ld_bf16(const bf16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void st_bf16(bf16 *p, float v) { *p = __float2bfloat16_rn(v); }

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Block-wide sums; every thread gets the result. blockDim.x must be a
 * multiple of 32 (<= 1024); `sh` is __shared__ scratch of 32 elements. The
 * leading __syncthreads protects sh when called twice in a row. One function
 * per type (block_sum_f, block_sum_d, block_sum_u64), written once by a macro. */
#define DEFINE_BLOCK_SUM(name, T)                                                  \
    __device__ inline T name(T v, T *sh) {                                         \
        int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;   \
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o); \
        __syncthreads();                                                           \
        if (lane == 0) sh[w] = v;                                                  \
        __syncthreads();                                                           \
        if (w == 0) {                                                              \
            T r = lane < nw ? sh[lane] : (T)0;                                     \
            for (int o = 16; o > 0; o >>= 1) r += __shfl_xor_sync(0xffffffffu, r, o); \
            if (lane == 0) sh[0] = r;                                              \
        }                                                                          \
        __syncthreads();                                                           \
        return sh[0];                                                              \
    }
DEFINE_BLOCK_SUM(block_sum_f, float)
DEFINE_BLOCK_SUM(block_sum_d, double)
DEFINE_BLOCK_SUM(block_sum_u64, unsigned long long)

/* Block-wide max, as block_sum_f. */
__device__ inline float block_max(float v, float *sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (w == 0) {
        float r = lane < nw ? sh[lane] : -INFINITY;
        r = warp_max(r);
        if (lane == 0) sh[0] = r;
    }
    __syncthreads();
    return sh[0];
}

// Block argmax over (v, i): larger v wins, equal v -> lower i. Every thread gets it.
__device__ inline int block_argmax(float v, int i, float *sv, int *si) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, v, o);
        int oi = __shfl_xor_sync(0xffffffffu, i, o);
        if (ov > v || (ov == v && oi < i)) v = ov, i = oi;
    }
    __syncthreads();
    if (lane == 0) sv[w] = v, si[w] = i;
    __syncthreads();
    if (w == 0) {
        v = lane < nw ? sv[lane] : -INFINITY;
        i = lane < nw ? si[lane] : INT_MAX;
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, v, o);
            int oi = __shfl_xor_sync(0xffffffffu, i, o);
            if (ov > v || (ov == v && oi < i)) v = ov, i = oi;
        }
        if (lane == 0) si[0] = i;
    }
    __syncthreads();
    return si[0];
}

#endif
