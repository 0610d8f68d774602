// head: see head.h. Per chunk of rows: one cuBLASLt product into fp32 logits,
// then one thread block per row for the softmax statistics (forward) or the
// logit gradients (backward), then the two backward products.
#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/head.h"

enum { HEAD_THREADS = 512 };

extern "C" size_t cuda_head_scratch_bytes(int chunk, int V) {
    size_t z = (size_t)chunk * V * sizeof(float);
    z = (z + 255) & ~(size_t)255;  // the bf16 part starts 256-byte aligned
    return z + (size_t)chunk * V * sizeof(bf16);
}

static bf16 *dz_part(void *scratch, int chunk, int V) {
    size_t z = (size_t)chunk * V * sizeof(float);
    z = (z + 255) & ~(size_t)255;
    return (bf16 *)((char *)scratch + z);
}

// z[i, :] /= tau in place, then lse, ent, logp of row n0 + i.
__global__ void head_fwd_rows(float *z, int V, float tau, const int *targets, int n0,
                              float *logp, float *lse, float *ent) {
    __shared__ float sh[32];
    float *r = z + (long)blockIdx.x * V;
    float mx = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float t = r[v] / tau;  // division as the CPU does it (not a multiply by 1/tau)
        r[v] = t;
        mx = fmaxf(mx, t);
    }
    mx = block_max(mx, sh);
    float s = 0.0f, sz = 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float e = expf(r[v] - mx);
        s += e;
        sz += e * r[v];
    }
    s = block_sum_f(s, sh);
    sz = block_sum_f(sz, sh);
    if (threadIdx.x == 0) {
        int n = n0 + blockIdx.x;
        float l = mx + logf(s);
        int tgt = targets ? targets[n] : -1;
        lse[n] = l;
        ent[n] = l - sz / s;
        if (logp) logp[n] = tgt >= 0 && tgt < V ? r[tgt] - l : 0.0f;
    }
}

__global__ void head_bwd_rows(const float *z, bf16 *dz, int V, float tau, const int *targets, int n0,
                              const float *lse, const float *ent, const float *dlogp, const float *dent) {
    const int n = n0 + blockIdx.x;
    const float *r = z + (long)blockIdx.x * V;
    bf16 *d = dz + (long)blockIdx.x * V;
    const int tgt = targets && targets[n] < V ? targets[n] : -1;  // out-of-range ids count as no target
    const float gl = tgt >= 0 && dlogp ? dlogp[n] : 0.0f, ge = dent ? dent[n] : 0.0f;
    const float l = lse[n], h = ent[n];
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float lp = r[v] / tau - l, p = expf(lp);
        float g = (-gl * p - ge * p * (lp + h)) / tau;
        if (v == tgt) g += gl / tau;
        st_bf16(d + v, g);
    }
}

static int head_check(int N, int H, int V, float tau, int chunk, Err *err) {
    if (N < 0 || H <= 0 || V <= 0 || chunk <= 0)
        return err_set(err, ERR_INPUT, "cuda_head: bad shape N=%d H=%d V=%d chunk=%d", N, H, V, chunk);
    if (!(tau > 0)) return err_set(err, ERR_INPUT, "cuda_head: temperature must be > 0 (got %g)", tau);
    return 0;
}

extern "C" int cuda_head_fwd(CudaBlas *h, cudaStream_t s, const cuda_bf16 *x, const cuda_bf16 *W,
                             const int *targets, int N, int H, int V, float temperature, float *logp, float *lse,
                             float *ent, void *scratch, int chunk, Err *err) {
    if (head_check(N, H, V, temperature, chunk, err)) return -1;
    float *z = (float *)scratch;
    for (int n0 = 0; n0 < N; n0 += chunk) {
        int cn = N - n0 < chunk ? N - n0 : chunk;
        if (cuda_linear_fwd(h, s, z, CUDA_F32, x + (size_t)n0 * H, W, cn, V, H, 0, err))
            return err_wrap(err, "cuda_head_fwd: logits of rows %d..%d", n0, n0 + cn);
        head_fwd_rows<<<cn, HEAD_THREADS, 0, s>>>(z, V, temperature, targets, n0, logp, lse, ent);
        CUDA_LAUNCHED("head_fwd_rows", err);
    }
    return 0;
}

extern "C" int cuda_head_bwd(CudaBlas *h, cudaStream_t s, const cuda_bf16 *x, const cuda_bf16 *W,
                             const int *targets, int N, int H, int V, float temperature, const float *lse,
                             const float *ent, const float *dlogp, const float *dent, cuda_bf16 *dx,
                             int accumulate_dx, float *dW, void *scratch, int chunk, Err *err) {
    if (head_check(N, H, V, temperature, chunk, err)) return -1;
    float *z = (float *)scratch;
    bf16 *dz = dz_part(scratch, chunk, V);
    for (int n0 = 0; n0 < N; n0 += chunk) {
        int cn = N - n0 < chunk ? N - n0 : chunk;
        if (cuda_linear_fwd(h, s, z, CUDA_F32, x + (size_t)n0 * H, W, cn, V, H, 0, err))
            return err_wrap(err, "cuda_head_bwd: logits of rows %d..%d", n0, n0 + cn);
        head_bwd_rows<<<cn, HEAD_THREADS, 0, s>>>(z, dz, V, temperature, targets, n0, lse, ent, dlogp, dent);
        CUDA_LAUNCHED("head_bwd_rows", err);
        if (dx && cuda_linear_bwd_x(h, s, dx + (size_t)n0 * H, CUDA_BF16, (const cuda_bf16 *)dz, W, cn, V, H,
                                    accumulate_dx, err))
            return err_wrap(err, "cuda_head_bwd: d hidden of rows %d..%d", n0, n0 + cn);
        if (dW && cuda_linear_bwd_w(h, s, dW, (const cuda_bf16 *)dz, x + (size_t)n0 * H, cn, V, H, err))
            return err_wrap(err, "cuda_head_bwd: d lm_head from rows %d..%d", n0, n0 + cn);
    }
    return 0;
}
