// mla: see mla.h. Grid-stride loops over output elements: copies only, so the
// memory system is the limit and the simplest indexing is as fast as any.
#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/mla.h"

__global__ void embed_rows_kernel(bf16 *x, const bf16 *table, const int *ids, int N, int H) {
    long n_all = (long)N * H;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n_all; i += (long)gridDim.x * blockDim.x) {
        long n = i / H, d = i % H;
        x[i] = table[(long)ids[n] * H + d];
    }
}

__global__ void mla_keys_kernel(bf16 *k, const bf16 *kvb, const bf16 *kva, int N, int nh, int dn, int dr, int dv,
                                int dc) {
    const int dqk = dn + dr;
    long n_all = (long)N * nh * dqk;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n_all; i += (long)gridDim.x * blockDim.x) {
        long n = i / ((long)nh * dqk);
        int r = (int)(i % ((long)nh * dqk)), h = r / dqk, j = r % dqk;
        k[i] = j < dn ? kvb[n * nh * (dn + dv) + (long)h * (dn + dv) + j] : kva[n * (dc + dr) + dc + (j - dn)];
    }
}

// One thread per column, tokens in order: no two threads touch one element.
__global__ void embed_rows_bwd_kernel(float *dtable, const bf16 *dx, const int *ids, int N, int H) {
    int d = blockIdx.x * blockDim.x + threadIdx.x;
    if (d >= H) return;
    for (int n = 0; n < N; n++) dtable[(long)ids[n] * H + d] += ld_bf16(dx + (long)n * H + d);
}

// One thread per (token, key dim): copies the nope dims, sums the rope dims over heads.
__global__ void mla_keys_bwd_kernel(bf16 *dkvb, bf16 *dkva, const bf16 *dk, int N, int nh, int dn, int dr, int dv,
                                    int dc) {
    const int dqk = dn + dr;
    long n_all = (long)N * (nh * dn + dr);
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n_all; i += (long)gridDim.x * blockDim.x) {
        long n = i / (nh * dn + dr);
        int r = (int)(i % (nh * dn + dr));
        const bf16 *row = dk + n * nh * dqk;
        if (r < nh * dn) {
            int h = r / dn, j = r % dn;
            dkvb[n * nh * (dn + dv) + (long)h * (dn + dv) + j] = row[(long)h * dqk + j];
        } else {
            int j = r - nh * dn;
            float acc = 0.0f;
            for (int h = 0; h < nh; h++) acc += ld_bf16(row + (long)h * dqk + dn + j);
            st_bf16(dkva + n * (dc + dr) + dc + j, acc);
        }
    }
}

extern "C" int cuda_embed_rows_bwd(cudaStream_t s, float *dtable, const cuda_bf16 *dx, const int *ids, int N, int H,
                                   Err *err) {
    if (N < 0 || H <= 0) return err_set(err, ERR_INPUT, "cuda_embed_rows_bwd: bad shape N=%d H=%d", N, H);
    if (N == 0) return 0;
    embed_rows_bwd_kernel<<<(H + 127) / 128, 128, 0, s>>>(dtable, (const bf16 *)dx, ids, N, H);
    CUDA_LAUNCHED("embed_rows_bwd", err);
    return 0;
}

extern "C" int cuda_mla_keys_bwd(cudaStream_t s, cuda_bf16 *dkvb, cuda_bf16 *dkva, const cuda_bf16 *dk, int N, int nh,
                                 int dn, int dr, int dv, int dc, Err *err) {
    if (N < 0 || nh <= 0 || dn < 0 || dr < 0 || dv <= 0 || dc <= 0 || dn + dr <= 0)
        return err_set(err, ERR_INPUT, "cuda_mla_keys_bwd: bad shape N=%d nh=%d dn=%d dr=%d dv=%d dc=%d", N, nh, dn, dr,
                       dv, dc);
    if (N == 0) return 0;
    mla_keys_bwd_kernel<<<cuda_blocks((long)N * (nh * dn + dr), 256), 256, 0, s>>>(
        (bf16 *)dkvb, (bf16 *)dkva, (const bf16 *)dk, N, nh, dn, dr, dv, dc);
    CUDA_LAUNCHED("mla_keys_bwd", err);
    return 0;
}

extern "C" int cuda_embed_rows(cudaStream_t s, cuda_bf16 *x, const cuda_bf16 *table, const int *ids, int N, int H,
                               Err *err) {
    if (N < 0 || H <= 0) return err_set(err, ERR_INPUT, "cuda_embed_rows: bad shape N=%d H=%d", N, H);
    if (N == 0) return 0;
    embed_rows_kernel<<<cuda_blocks((long)N * H, 256), 256, 0, s>>>((bf16 *)x, (const bf16 *)table, ids, N, H);
    CUDA_LAUNCHED("embed_rows", err);
    return 0;
}

extern "C" int cuda_mla_keys(cudaStream_t s, cuda_bf16 *k, const cuda_bf16 *kvb, const cuda_bf16 *kva, int N, int nh,
                             int dn, int dr, int dv, int dc, Err *err) {
    if (N < 0 || nh <= 0 || dn < 0 || dr < 0 || dv <= 0 || dc <= 0 || dn + dr <= 0)
        return err_set(err, ERR_INPUT, "cuda_mla_keys: bad shape N=%d nh=%d dn=%d dr=%d dv=%d dc=%d", N, nh, dn, dr, dv,
                       dc);
    if (N == 0) return 0;
    mla_keys_kernel<<<cuda_blocks((long)N * nh * (dn + dr), 256), 256, 0, s>>>(
        (bf16 *)k, (const bf16 *)kvb, (const bf16 *)kva, N, nh, dn, dr, dv, dc);
    CUDA_LAUNCHED("mla_keys", err);
    return 0;
}
