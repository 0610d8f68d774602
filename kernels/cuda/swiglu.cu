// swiglu: see swiglu.h. Grid-stride loops, one element per thread step.
#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/swiglu.h"

__global__ void swiglu_fwd_kernel(bf16 *h, const bf16 *g, const bf16 *u, long rows, int I, long ld) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < rows * I; i += (long)gridDim.x * blockDim.x) {
        const long o = i / I * ld + i % I;
        float gi = ld_bf16(g + o);
        st_bf16(h + i, gi / (1.0f + expf(-gi)) * ld_bf16(u + o));
    }
}

__global__ void swiglu_bwd_kernel(bf16 *dg, bf16 *du, const bf16 *dh, const bf16 *g, const bf16 *u, long rows, int I,
                                  long ld) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < rows * I; i += (long)gridDim.x * blockDim.x) {
        const long o = i / I * ld + i % I;
        float gi = ld_bf16(g + o), ui = ld_bf16(u + o), d = ld_bf16(dh + i);
        float sg = 1.0f / (1.0f + expf(-gi));
        st_bf16(du + o, d * gi * sg);
        st_bf16(dg + o, d * ui * sg * (1.0f + gi * (1.0f - sg)));
    }
}

static int check(const char *what, long rows, int I, long ld, Err *err) {
    if (rows < 0 || I < 0 || ld < I)
        return err_set(err, ERR_INPUT, "%s: bad shape (rows=%ld I=%d ld=%ld)", what, rows, I, ld);
    return 0;
}

extern "C" int cuda_swiglu_fwd(cudaStream_t s, cuda_bf16 *h, const cuda_bf16 *g, const cuda_bf16 *u, long rows, int I,
                               long ld, Err *err) {
    if (check("cuda_swiglu_fwd", rows, I, ld, err)) return -1;
    if (rows * I == 0) return 0;
    swiglu_fwd_kernel<<<cuda_blocks(rows * I, 256), 256, 0, s>>>((bf16 *)h, (const bf16 *)g, (const bf16 *)u, rows, I,
                                                                ld);
    CUDA_LAUNCHED("swiglu_fwd", err);
    return 0;
}

extern "C" int cuda_swiglu_bwd(cudaStream_t s, cuda_bf16 *dg, cuda_bf16 *du, const cuda_bf16 *dh, const cuda_bf16 *g,
                               const cuda_bf16 *u, long rows, int I, long ld, Err *err) {
    if (check("cuda_swiglu_bwd", rows, I, ld, err)) return -1;
    if (rows * I == 0) return 0;
    swiglu_bwd_kernel<<<cuda_blocks(rows * I, 256), 256, 0, s>>>((bf16 *)dg, (bf16 *)du, (const bf16 *)dh,
                                                                (const bf16 *)g, (const bf16 *)u, rows, I, ld);
    CUDA_LAUNCHED("swiglu_bwd", err);
    return 0;
}
