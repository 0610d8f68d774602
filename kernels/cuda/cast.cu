// cast: see cast.h. Grid-stride elementwise loops.
#include "kernels/cuda/cast.h"
#include "kernels/cuda/cuda_util.cuh"

__global__ void f32_to_bf16_kernel(bf16 *dst, const float *src, long n) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ void bf16_to_f32_kernel(float *dst, const bf16 *src, long n) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        dst[i] = __bfloat162float(src[i]);
}

extern "C" int cuda_f32_to_bf16(cudaStream_t s, cuda_bf16 *dst, const float *src, long n, Err *err) {
    if (n < 0) return err_set(err, ERR_INPUT, "cuda_f32_to_bf16: negative size %ld", n);
    if (!n) return 0;
    f32_to_bf16_kernel<<<cuda_blocks(n, 256), 256, 0, s>>>((bf16 *)dst, src, n);
    CUDA_LAUNCHED("f32_to_bf16", err);
    return 0;
}

extern "C" int cuda_bf16_to_f32(cudaStream_t s, float *dst, const cuda_bf16 *src, long n, Err *err) {
    if (n < 0) return err_set(err, ERR_INPUT, "cuda_bf16_to_f32: negative size %ld", n);
    if (!n) return 0;
    bf16_to_f32_kernel<<<cuda_blocks(n, 256), 256, 0, s>>>(dst, (const bf16 *)src, n);
    CUDA_LAUNCHED("bf16_to_f32", err);
    return 0;
}
