// swiglu: see swiglu.h. Grid-stride loops, one element per thread step.
#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/swiglu.h"

__global__ void swiglu_fwd_kernel(bf16 *h, const bf16 *g, const bf16 *u, long n) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        float gi = ld_bf16(g + i);
        st_bf16(h + i, gi / (1.0f + expf(-gi)) * ld_bf16(u + i));
    }
}

__global__ void swiglu_bwd_kernel(bf16 *dg, bf16 *du, const bf16 *dh, const bf16 *g, const bf16 *u, long n) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        float gi = ld_bf16(g + i), ui = ld_bf16(u + i), d = ld_bf16(dh + i);
        float sg = 1.0f / (1.0f + expf(-gi));
        st_bf16(du + i, d * gi * sg);
        st_bf16(dg + i, d * ui * sg * (1.0f + gi * (1.0f - sg)));
    }
}

extern "C" int cuda_swiglu_fwd(cudaStream_t s, cuda_bf16 *h, const cuda_bf16 *g, const cuda_bf16 *u, long n,
                               Err *err) {
    if (n < 0) return err_set(err, ERR_INPUT, "cuda_swiglu_fwd: negative size %ld", n);
    if (n == 0) return 0;
    swiglu_fwd_kernel<<<cuda_blocks(n, 256), 256, 0, s>>>((bf16 *)h, (const bf16 *)g, (const bf16 *)u, n);
    CUDA_LAUNCHED("swiglu_fwd", err);
    return 0;
}

extern "C" int cuda_swiglu_bwd(cudaStream_t s, cuda_bf16 *dg, cuda_bf16 *du, const cuda_bf16 *dh,
                               const cuda_bf16 *g, const cuda_bf16 *u, long n, Err *err) {
    if (n < 0) return err_set(err, ERR_INPUT, "cuda_swiglu_bwd: negative size %ld", n);
    if (n == 0) return 0;
    swiglu_bwd_kernel<<<cuda_blocks(n, 256), 256, 0, s>>>((bf16 *)dg, (bf16 *)du, (const bf16 *)dh,
                                                          (const bf16 *)g, (const bf16 *)u, n);
    CUDA_LAUNCHED("swiglu_bwd", err);
    return 0;
}
