// norm: see norm.h.
#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/norm.h"

enum { NORM_THREADS = 256 };

__global__ void rmsnorm_fwd_kernel(bf16 *y, float *rstd, const bf16 *x, const bf16 *w, int D, int ldx, int ldy,
                                   float eps) {
    __shared__ float sh[32];
    const bf16 *xi = x + (long)blockIdx.x * ldx;
    bf16 *yi = y + (long)blockIdx.x * ldy;
    float ss = 0.0f;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float v = ld_bf16(xi + d);
        ss += v * v;
    }
    ss = block_sum_f(ss, sh);
    float r = rsqrtf(ss / D + eps);
    if (rstd && threadIdx.x == 0) rstd[blockIdx.x] = r;
    for (int d = threadIdx.x; d < D; d += blockDim.x) st_bf16(yi + d, ld_bf16(w + d) * (ld_bf16(xi + d) * r));
}

__global__ void rmsnorm_bwd_dx_kernel(bf16 *dx, const bf16 *dy, const bf16 *x, const bf16 *w, const float *rstd,
                                      int D, int ldx, int lddx, int accumulate) {
    __shared__ float sh[32];
    const long i = blockIdx.x;
    const bf16 *xi = x + i * ldx, *dyi = dy + i * D;
    bf16 *dxi = dx + i * lddx;
    const float r = rstd[i];
    float dot = 0.0f;
    for (int d = threadIdx.x; d < D; d += blockDim.x) dot += ld_bf16(w + d) * ld_bf16(dyi + d) * ld_bf16(xi + d);
    dot = block_sum_f(dot, sh);
    const float c = dot * r * r * r / D;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float g = r * ld_bf16(w + d) * ld_bf16(dyi + d) - ld_bf16(xi + d) * c;
        st_bf16(dxi + d, accumulate ? ld_bf16(dxi + d) + g : g);
    }
}

// dw[d] += sum_i dy[i,d] x[i,d] rstd[i]: one thread per column, rows in order
// (deterministic; coalesced across the warp).
__global__ void rmsnorm_bwd_dw_kernel(float *dw, const bf16 *dy, const bf16 *x, const float *rstd, int N, int D,
                                      int ldx) {
    int d = blockIdx.x * blockDim.x + threadIdx.x;
    if (d >= D) return;
    float acc = 0.0f;
    for (int i = 0; i < N; i++) acc += ld_bf16(dy + (long)i * D + d) * ld_bf16(x + (long)i * ldx + d) * rstd[i];
    dw[d] += acc;
}

static int norm_check(int N, int D, int ldx, int ldo, Err *err) {
    if (N < 0 || D <= 0 || ldx < D || ldo < D)
        return err_set(err, ERR_INPUT, "cuda_rmsnorm: bad shape N=%d D=%d ldx=%d ld(out)=%d", N, D, ldx, ldo);
    return 0;
}

extern "C" int cuda_rmsnorm_fwd(cudaStream_t s, cuda_bf16 *y, float *rstd, const cuda_bf16 *x, const cuda_bf16 *w,
                                int N, int D, int ldx, int ldy, float eps, Err *err) {
    if (norm_check(N, D, ldx, ldy, err)) return -1;
    if (N == 0) return 0;
    rmsnorm_fwd_kernel<<<N, NORM_THREADS, 0, s>>>((bf16 *)y, rstd, (const bf16 *)x, (const bf16 *)w, D, ldx, ldy,
                                                  eps);
    CUDA_LAUNCHED("rmsnorm_fwd", err);
    return 0;
}

extern "C" int cuda_rmsnorm_bwd(cudaStream_t s, cuda_bf16 *dx, float *dw, const cuda_bf16 *dy, const cuda_bf16 *x,
                                const cuda_bf16 *w, const float *rstd, int N, int D, int ldx, int lddx,
                                int accumulate, Err *err) {
    if (norm_check(N, D, ldx, lddx, err)) return -1;
    if (N == 0) return 0;
    rmsnorm_bwd_dx_kernel<<<N, NORM_THREADS, 0, s>>>((bf16 *)dx, (const bf16 *)dy, (const bf16 *)x,
                                                     (const bf16 *)w, rstd, D, ldx, lddx, accumulate);
    CUDA_LAUNCHED("rmsnorm_bwd (dx)", err);
    if (dw) {
        rmsnorm_bwd_dw_kernel<<<cuda_blocks(D, 256), 256, 0, s>>>(dw, (const bf16 *)dy, (const bf16 *)x, rstd, N, D,
                                                                  ldx);
        CUDA_LAUNCHED("rmsnorm_bwd (dw)", err);
    }
    return 0;
}
