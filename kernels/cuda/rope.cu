// rope: see rope.h. One thread per (row, vector, pair).
#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/rope.h"

__global__ void rope_kernel(bf16 *x, const float *cs, const float *sn, int N, int nvec, int vstride, int ldx,
                            int half, float sg) {
    long t = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (t >= (long)N * nvec * half) return;
    int j = (int)(t % half);
    long rest = t / half;
    int v = (int)(rest % nvec);
    long i = rest / nvec;
    bf16 *p = x + i * ldx + (long)v * vstride + 2 * j;
    float c = cs[i * half + j], s = sg * sn[i * half + j];
    float a = ld_bf16(p), b = ld_bf16(p + 1);
    st_bf16(p, a * c - b * s);
    st_bf16(p + 1, b * c + a * s);
}

extern "C" int cuda_rope_apply(cudaStream_t s, cuda_bf16 *x, const float *cs, const float *sn, int N, int nvec,
                               int vstride, int ldx, int dr, int inverse, Err *err) {
    if (N < 0 || nvec < 0 || dr <= 0 || dr % 2 || (nvec > 1 && vstride < dr) || ldx < (nvec - 1) * vstride + dr)
        return err_set(err, ERR_INPUT, "cuda_rope_apply: bad shape N=%d nvec=%d vstride=%d ldx=%d dr=%d", N, nvec,
                       vstride, ldx, dr);
    long n = (long)N * nvec * (dr / 2);
    if (n == 0) return 0;
    rope_kernel<<<cuda_blocks(n, 256), 256, 0, s>>>((bf16 *)x, cs, sn, N, nvec, vstride, ldx, dr / 2,
                                                    inverse ? -1.0f : 1.0f);
    CUDA_LAUNCHED("rope", err);
    return 0;
}
