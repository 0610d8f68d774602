// moe: see moe.h. Routing: one thread block per token, the selection rounds
// as block-wide argmax reductions (ties to the lower id, as the CPU's scan).
// Permutation: one warp per expert scans the assignments in order with
// ballots, which keeps token order inside an expert (stable, deterministic).
#include <limits.h>

#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/moe.h"

enum { ROUTE_THREADS = 128, MAX_E = 1024, MAX_K = 64, MAX_G = 256 };

extern "C" int cuda_router_check(const CudaRouterCfg *c, Err *err) {
    int G = c->n_group > 0 ? c->n_group : 1;
    if (c->E <= 0 || c->E > MAX_E || c->k <= 0 || c->k > MAX_K || c->k > c->E)
        return err_set(err, ERR_INPUT, "cuda_moe: need 0 < k <= 64, k <= E <= 1024 (E=%d k=%d)", c->E, c->k);
    if (G > MAX_G || c->E % G)
        return err_set(err, ERR_INPUT, "cuda_moe: n_group %d must divide E=%d and be <= 256", G, c->E);
    if (c->scoring != CUDA_SCORE_SIGMOID && c->scoring != CUDA_SCORE_SOFTMAX)
        return err_set(err, ERR_INPUT, "cuda_moe: unknown scoring function %d", c->scoring);
    if (c->topk_method < CUDA_TOPK_NOAUX_TC || c->topk_method > CUDA_TOPK_GROUP_LIMITED_GREEDY)
        return err_set(err, ERR_INPUT, "cuda_moe: unknown topk_method %d", c->topk_method);
    if (G > 1 && c->topk_method != CUDA_TOPK_GREEDY &&
        (c->topk_group <= 0 || c->topk_group > G || c->topk_group * (c->E / G) < c->k))
        return err_set(err, ERR_INPUT, "cuda_moe: topk_group %d of %d groups of %d experts cannot hold k=%d",
                       c->topk_group, G, c->E / G, c->k);
    return 0;
}

__global__ void route_kernel(CudaRouterCfg c, const float *logits, const float *bias, float *scores, int *topk,
                             float *topw, float *topsum) {
    extern __shared__ float dyn[];
    const int E = c.E, k = c.k, G = c.n_group > 0 ? c.n_group : 1, per = E / G;
    float *aff = dyn, *sel = dyn + E;
    unsigned char *allowed = (unsigned char *)(dyn + 2 * E);
    __shared__ float gscore[MAX_G], shf[32], sv[32];
    __shared__ double shd[32];
    __shared__ int si[32], top[MAX_K];
    __shared__ unsigned char keep[MAX_G];
    const long n = blockIdx.x;
    const float *l = logits + n * E;
    if (c.scoring == CUDA_SCORE_SOFTMAX) {  // as the CPU: float max, double sum, float quotient
        float mx = -INFINITY;
        for (int e = threadIdx.x; e < E; e += blockDim.x) mx = fmaxf(mx, l[e]);
        mx = block_max(mx, shf);
        double sum = 0;
        for (int e = threadIdx.x; e < E; e += blockDim.x) sum += (aff[e] = expf(l[e] - mx));
        sum = block_sum_d(sum, shd);
        for (int e = threadIdx.x; e < E; e += blockDim.x) aff[e] = (float)(aff[e] / sum);
    } else {
        for (int e = threadIdx.x; e < E; e += blockDim.x) aff[e] = 1.0f / (1.0f + expf(-l[e]));
    }
    for (int e = threadIdx.x; e < E; e += blockDim.x) {
        sel[e] = aff[e] + (bias ? bias[e] : 0.0f);
        allowed[e] = 1;
        scores[n * E + e] = aff[e];
    }
    __syncthreads();
    if (G > 1 && c.topk_method != CUDA_TOPK_GREEDY) {
        for (int g = threadIdx.x; g < G; g += blockDim.x) {
            const float *s = sel + g * per;
            if (c.topk_method == CUDA_TOPK_NOAUX_TC) {  // sum of the two best in the group
                float b1 = -INFINITY, b2 = -INFINITY;
                for (int i = 0; i < per; i++) {
                    if (s[i] > b1) b2 = b1, b1 = s[i];
                    else if (s[i] > b2) b2 = s[i];
                }
                gscore[g] = b1 + (per > 1 ? b2 : 0.0f);
            } else {
                float b = -INFINITY;
                for (int i = 0; i < per; i++) b = s[i] > b ? s[i] : b;
                gscore[g] = b;
            }
            keep[g] = 0;
        }
        __syncthreads();
        if (threadIdx.x == 0)  // topk_group is small: a serial scan, as the CPU
            for (int r = 0; r < c.topk_group; r++) {
                int best = -1;
                for (int g = 0; g < G; g++)
                    if (!keep[g] && (best < 0 || gscore[g] > gscore[best])) best = g;
                keep[best] = 1;
            }
        __syncthreads();
        for (int e = threadIdx.x; e < E; e += blockDim.x) allowed[e] = keep[e / per];
        __syncthreads();
    }
    for (int j = 0; j < k; j++) {
        float bv = -INFINITY;
        int bi = INT_MAX;
        for (int e = threadIdx.x; e < E; e += blockDim.x)  // ascending e: first max kept
            if (allowed[e] && (bi == INT_MAX || sel[e] > bv)) bv = sel[e], bi = e;
        int best = block_argmax(bv, bi, sv, si);
        if (threadIdx.x == 0) top[j] = best, allowed[best] = 0;
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        float sum = 0.0f, tw[MAX_K];
        for (int j = 0; j < k; j++) sum += (tw[j] = aff[top[j]]);
        float scale = c.routed_scaling_factor / (c.norm_topk_prob ? sum + 1e-20f : 1.0f);
        for (int j = 0; j < k; j++) {
            topk[n * k + j] = top[j];
            topw[n * k + j] = tw[j] * scale;
        }
        topsum[n] = sum;
    }
}

extern "C" int cuda_moe_route(cudaStream_t s, const CudaRouterCfg *c, const float *logits, const float *bias, int N,
                              float *scores, int *topk, float *topw, float *topsum, Err *err) {
    if (cuda_router_check(c, err)) return -1;
    if (N < 0) return err_set(err, ERR_INPUT, "cuda_moe_route: negative token count %d", N);
    if (N == 0) return 0;
    size_t shm = (size_t)c->E * 2 * sizeof(float) + c->E;
    route_kernel<<<N, ROUTE_THREADS, shm, s>>>(*c, logits, bias, scores, topk, topw, topsum);
    CUDA_LAUNCHED("moe route", err);
    return 0;
}

__global__ void perm_count_kernel(const int *topk, int total, int *count) {
    const int e = blockIdx.x, lane = threadIdx.x;
    int cnt = 0;
    for (int base = 0; base < total; base += 32) {
        int i = base + lane;
        unsigned mask = __ballot_sync(0xffffffffu, i < total && topk[i] == e);
        cnt += __popc(mask);
    }
    if (lane == 0) count[e] = cnt;
}

__global__ void perm_scan_kernel(const int *count, int *start, int E, int *load) {
    if (threadIdx.x) return;
    start[0] = 0;
    for (int e = 0; e < E; e++) start[e + 1] = start[e] + count[e];
    if (load)
        for (int e = 0; e < E; e++) load[e] += count[e];
}

__global__ void perm_fill_kernel(const int *topk, int total, const int *start, int *perm, int *where) {
    const int e = blockIdx.x, lane = threadIdx.x;
    int pos = start[e];
    for (int base = 0; base < total; base += 32) {
        int i = base + lane;
        int flag = i < total && topk[i] == e;
        unsigned mask = __ballot_sync(0xffffffffu, flag);
        if (flag) {
            int p = pos + __popc(mask & ((1u << lane) - 1u));
            perm[p] = i;
            where[i] = p;
        }
        pos += __popc(mask);
    }
}

// The three kernels above in one block, for few assignments (a decode step): one
// launch instead of three; warp w counts and fills experts w, w + 32, ...
__global__ void perm_small_kernel(const int *topk, int total, int E, int *count, int *start, int *perm, int *where,
                                  int *load) {
    extern __shared__ int at[];  // [E]: counts, then starts
    const int lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    for (int e = threadIdx.x >> 5; e < E; e += nw) {
        int cnt = 0;
        for (int base = 0; base < total; base += 32) cnt += __popc(__ballot_sync(0xffffffffu, base + lane < total && topk[base + lane] == e));
        if (lane == 0) at[e] = cnt;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int acc = 0;
        for (int e = 0; e < E; e++) {
            const int c = at[e];
            count[e] = c, start[e] = acc, at[e] = acc, acc += c;
            if (load) load[e] += c;
        }
        start[E] = acc;
    }
    __syncthreads();
    for (int e = threadIdx.x >> 5; e < E; e += nw) {
        int pos = at[e];
        for (int base = 0; base < total; base += 32) {
            const int i = base + lane, flag = i < total && topk[i] == e;
            const unsigned mask = __ballot_sync(0xffffffffu, flag);
            if (flag) {
                const int p = pos + __popc(mask & ((1u << lane) - 1u));
                perm[p] = i, where[i] = p;
            }
            pos += __popc(mask);
        }
    }
}

extern "C" int cuda_moe_permute(cudaStream_t s, const int *topk, int N, int k, int E, int *count, int *start,
                                int *perm, int *where, int *load, Err *err) {
    if (N < 0 || k <= 0 || E <= 0)
        return err_set(err, ERR_INPUT, "cuda_moe_permute: bad shape N=%d k=%d E=%d", N, k, E);
    const int total = N * k;
    if ((long)total * E <= (1L << 18)) { /* each warp scans every assignment per expert: cheap only when few */
        perm_small_kernel<<<1, 1024, sizeof(int) * E, s>>>(topk, total, E, count, start, perm, where, load);
        CUDA_LAUNCHED("moe permute (one block)", err);
        return 0;
    }
    perm_count_kernel<<<E, 32, 0, s>>>(topk, total, count);
    CUDA_LAUNCHED("moe permute (count)", err);
    perm_scan_kernel<<<1, 32, 0, s>>>(count, start, E, load);
    CUDA_LAUNCHED("moe permute (offsets)", err);
    perm_fill_kernel<<<E, 32, 0, s>>>(topk, total, start, perm, where);
    CUDA_LAUNCHED("moe permute (fill)", err);
    return 0;
}

__global__ void gather_kernel(bf16 *xe, const bf16 *x, const int *perm, long total, int k, int H) {
    for (long t = blockIdx.x * (long)blockDim.x + threadIdx.x; t < total * H; t += (long)gridDim.x * blockDim.x) {
        long i = t / H;
        int d = (int)(t % H);
        xe[t] = x[(long)(perm[i] / k) * H + d];
    }
}

__global__ void combine_kernel(bf16 *out, const bf16 *ey, const float *topw, const int *where, int N, int k, int H,
                               int accumulate) {
    for (long t = blockIdx.x * (long)blockDim.x + threadIdx.x; t < (long)N * H; t += (long)gridDim.x * blockDim.x) {
        long n = t / H;
        int d = (int)(t % H);
        float acc = 0.0f;
        for (int j = 0; j < k; j++) {
            long a = n * k + j;
            acc += topw[a] * ld_bf16(ey + (long)where[a] * H + d);
        }
        st_bf16(out + t, accumulate ? ld_bf16(out + t) + acc : acc);
    }
}

extern "C" int cuda_moe_gather(cudaStream_t s, cuda_bf16 *xe, const cuda_bf16 *x, const int *perm, int N, int k,
                               int H, Err *err) {
    long total = (long)N * k;
    if (N < 0 || k <= 0 || H <= 0) return err_set(err, ERR_INPUT, "cuda_moe_gather: bad shape N=%d k=%d H=%d", N, k, H);
    if (!total) return 0;
    gather_kernel<<<cuda_blocks(total * H, 256), 256, 0, s>>>((bf16 *)xe, (const bf16 *)x, perm, total, k, H);
    CUDA_LAUNCHED("moe gather", err);
    return 0;
}

extern "C" int cuda_moe_combine(cudaStream_t s, cuda_bf16 *out, const cuda_bf16 *ey, const float *topw,
                                const int *where, int N, int k, int H, int accumulate, Err *err) {
    if (N < 0 || k <= 0 || H <= 0) return err_set(err, ERR_INPUT, "cuda_moe_combine: bad shape N=%d k=%d H=%d", N, k, H);
    if (!N) return 0;
    combine_kernel<<<cuda_blocks((long)N * H, 256), 256, 0, s>>>((bf16 *)out, (const bf16 *)ey, topw, where, N, k,
                                                                  H, accumulate);
    CUDA_LAUNCHED("moe combine", err);
    return 0;
}

/* Warp w of block (e, y) owns output j = y*EXP_WARPS + w of expert e: the dot
 * product of each of the expert's rows with weight row j, lanes striding over K. */
#define EXP_WARPS 8

__device__ __forceinline__ float row_dot(const bf16 *w, const bf16 *x, int K, int lane) {
    float acc = 0.0f;
    if ((K & 7) == 0 && (((uintptr_t)w | (uintptr_t)x) & 15) == 0) { /* 16-byte loads: 8 values */
        const uint4 *w4 = (const uint4 *)w, *x4 = (const uint4 *)x;
        for (int c = lane; c < K / 8; c += 32) {
            uint4 a = w4[c], b = x4[c];
            const unsigned aw[4] = {a.x, a.y, a.z, a.w}, bw[4] = {b.x, b.y, b.z, b.w};
            for (int q = 0; q < 4; q++) /* a word holds two bf16: the element of lower index in its low half */
                acc += __uint_as_float(aw[q] << 16) * __uint_as_float(bw[q] << 16) +
                       __uint_as_float(aw[q] & 0xffff0000u) * __uint_as_float(bw[q] & 0xffff0000u);
        }
    } else {
        for (int d = lane; d < K; d += 32) acc += ld_bf16(w + d) * ld_bf16(x + d);
    }
    return warp_sum(acc);
}

__global__ void experts_gate_up_kernel(const bf16 *const *wg, const bf16 *const *wu, const int *start, const bf16 *xs,
                                       const int *perm, int k, int H, int I, bf16 *eh) {
    const int e = blockIdx.x, lane = threadIdx.x & 31, j = blockIdx.y * EXP_WARPS + (threadIdx.x >> 5);
    const int r0 = start[e], r1 = start[e + 1];
    if (j >= I || r0 == r1) return;
    const bf16 *g = wg[e] + (long)j * H, *u = wu[e] + (long)j * H;
    for (int r = r0; r < r1; r++) {
        const bf16 *x = xs + (long)(perm[r] / k) * H; /* the token's row itself: no gathered copy */
        float gv = __bfloat162float(__float2bfloat16_rn(row_dot(g, x, H, lane)));
        float uv = __bfloat162float(__float2bfloat16_rn(row_dot(u, x, H, lane)));
        if (lane == 0) st_bf16(eh + (long)r * I + j, gv / (1.0f + expf(-gv)) * uv);
    }
}

__global__ void experts_down_kernel(const bf16 *const *wd, const int *start, const bf16 *eh, int H, int I, bf16 *ey) {
    const int e = blockIdx.x, lane = threadIdx.x & 31, j = blockIdx.y * EXP_WARPS + (threadIdx.x >> 5);
    const int r0 = start[e], r1 = start[e + 1];
    if (j >= H || r0 == r1) return;
    const bf16 *w = wd[e] + (long)j * I;
    for (int r = r0; r < r1; r++) {
        float v = row_dot(w, eh + (long)r * I, I, lane);
        if (lane == 0) st_bf16(ey + (long)r * H + j, v);
    }
}

extern "C" int cuda_moe_experts_fwd(cudaStream_t s, const cuda_bf16 *const *wg, const cuda_bf16 *const *wu,
                                    const cuda_bf16 *const *wd, const int *start, const cuda_bf16 *x, const int *perm,
                                    int k, int E, int H, int I, cuda_bf16 *eh, cuda_bf16 *ey, Err *err) {
    if (E <= 0 || H <= 0 || I <= 0 || k <= 0 || E > 65535)
        return err_set(err, ERR_INPUT, "cuda_moe_experts_fwd: bad shape E=%d k=%d H=%d I=%d", E, k, H, I);
    dim3 gu(E, (I + EXP_WARPS - 1) / EXP_WARPS), dn(E, (H + EXP_WARPS - 1) / EXP_WARPS);
    experts_gate_up_kernel<<<gu, 32 * EXP_WARPS, 0, s>>>((const bf16 *const *)wg, (const bf16 *const *)wu, start,
                                                         (const bf16 *)x, perm, k, H, I, (bf16 *)eh);
    CUDA_LAUNCHED("moe experts (gate, up)", err);
    experts_down_kernel<<<dn, 32 * EXP_WARPS, 0, s>>>((const bf16 *const *)wd, start, (const bf16 *)eh, H, I,
                                                      (bf16 *)ey);
    CUDA_LAUNCHED("moe experts (down)", err);
    return 0;
}

__global__ void combine_bwd_dye_kernel(bf16 *dye, const bf16 *dout, const float *topw, const int *perm, long total,
                                       int k, int H) {
    for (long t = blockIdx.x * (long)blockDim.x + threadIdx.x; t < total * H; t += (long)gridDim.x * blockDim.x) {
        long i = t / H;
        int d = (int)(t % H), a = perm[i];
        st_bf16(dye + t, topw[a] * ld_bf16(dout + (long)(a / k) * H + d));
    }
}

// One block per assignment a = n*k + j: dw[a] = dout[n] . ey[where[a]].
__global__ void combine_bwd_dw_kernel(float *dw, const bf16 *dout, const bf16 *ey, const int *where, int k, int H) {
    __shared__ float sh[32];
    const long a = blockIdx.x, n = a / k;
    const bf16 *y = ey + (long)where[a] * H, *g = dout + n * H;
    float acc = 0.0f;
    for (int d = threadIdx.x; d < H; d += blockDim.x) acc += ld_bf16(g + d) * ld_bf16(y + d);
    acc = block_sum_f(acc, sh);
    if (threadIdx.x == 0) dw[a] = acc;
}

extern "C" int cuda_moe_combine_bwd(cudaStream_t s, cuda_bf16 *dye, float *dw, const cuda_bf16 *dout,
                                    const cuda_bf16 *ey, const float *topw, const int *perm, const int *where, int N,
                                    int k, int H, Err *err) {
    long total = (long)N * k;
    if (N < 0 || k <= 0 || H <= 0)
        return err_set(err, ERR_INPUT, "cuda_moe_combine_bwd: bad shape N=%d k=%d H=%d", N, k, H);
    if (!total) return 0;
    combine_bwd_dye_kernel<<<cuda_blocks(total * H, 256), 256, 0, s>>>((bf16 *)dye, (const bf16 *)dout, topw, perm,
                                                                       total, k, H);
    CUDA_LAUNCHED("moe combine backward (d expert outputs)", err);
    if (dw) {
        combine_bwd_dw_kernel<<<(unsigned)total, 128, 0, s>>>(dw, (const bf16 *)dout, (const bf16 *)ey, where, k, H);
        CUDA_LAUNCHED("moe combine backward (d weights)", err);
    }
    return 0;
}

__global__ void gather_bwd_kernel(bf16 *dx, const bf16 *dxe, const int *where, int N, int k, int H, int accumulate) {
    for (long t = blockIdx.x * (long)blockDim.x + threadIdx.x; t < (long)N * H; t += (long)gridDim.x * blockDim.x) {
        long n = t / H;
        int d = (int)(t % H);
        float acc = 0.0f;
        for (int j = 0; j < k; j++) acc += ld_bf16(dxe + (long)where[n * k + j] * H + d);
        st_bf16(dx + t, accumulate ? ld_bf16(dx + t) + acc : acc);
    }
}

extern "C" int cuda_moe_gather_bwd(cudaStream_t s, cuda_bf16 *dx, const cuda_bf16 *dxe, const int *where, int N,
                                   int k, int H, int accumulate, Err *err) {
    if (N < 0 || k <= 0 || H <= 0)
        return err_set(err, ERR_INPUT, "cuda_moe_gather_bwd: bad shape N=%d k=%d H=%d", N, k, H);
    if (!N) return 0;
    gather_bwd_kernel<<<cuda_blocks((long)N * H, 256), 256, 0, s>>>((bf16 *)dx, (const bf16 *)dxe, where, N, k, H,
                                                                     accumulate);
    CUDA_LAUNCHED("moe gather backward", err);
    return 0;
}

__global__ void router_bwd_kernel(CudaRouterCfg c, const float *scores, const int *topk, const float *topw,
                                  const float *topsum, const float *dw, float *dlogit, bf16 *dlogit_bf16) {
    extern __shared__ float ds[];  // [E]
    __shared__ double shd[32];
    const int E = c.E, k = c.k;
    const long n = blockIdx.x;
    const float *sc = scores + n * E;
    for (int e = threadIdx.x; e < E; e += blockDim.x) ds[e] = 0.0f;
    __syncthreads();
    if (threadIdx.x == 0) {  // k terms: serial, in the CPU's order and precision
        const int *top = topk + n * k;
        const float *tw = topw + n * k, *g = dw + n * k;
        const float rsf = c.routed_scaling_factor;
        if (c.norm_topk_prob) {  // w_j = rsf * s_j / (S + eps)
            float S = topsum[n] + 1e-20f;
            double cross = 0;
            for (int j = 0; j < k; j++) cross += (double)g[j] * tw[j];
            for (int j = 0; j < k; j++) ds[top[j]] += (float)(((double)(g[j] * rsf) - cross) / S);
        } else {
            for (int j = 0; j < k; j++) ds[top[j]] += g[j] * rsf;
        }
    }
    __syncthreads();
    double dot = 0;
    if (c.scoring == CUDA_SCORE_SOFTMAX) {
        for (int e = threadIdx.x; e < E; e += blockDim.x) dot += (double)ds[e] * sc[e];
        dot = block_sum_d(dot, shd);
    }
    for (int e = threadIdx.x; e < E; e += blockDim.x) {
        float v = c.scoring == CUDA_SCORE_SOFTMAX ? sc[e] * (ds[e] - (float)dot) : ds[e] * sc[e] * (1.0f - sc[e]);
        dlogit[n * E + e] = v;
        if (dlogit_bf16) st_bf16(dlogit_bf16 + n * E + e, v);
    }
}

extern "C" int cuda_moe_router_bwd(cudaStream_t s, const CudaRouterCfg *c, const float *scores, const int *topk,
                                   const float *topw, const float *topsum, const float *dw, int N, float *dlogit,
                                   cuda_bf16 *dlogit_bf16, Err *err) {
    if (cuda_router_check(c, err)) return -1;
    if (N < 0) return err_set(err, ERR_INPUT, "cuda_moe_router_bwd: negative token count %d", N);
    if (!N) return 0;
    router_bwd_kernel<<<N, ROUTE_THREADS, (size_t)c->E * sizeof(float), s>>>(*c, scores, topk, topw, topsum, dw,
                                                                             dlogit, (bf16 *)dlogit_bf16);
    CUDA_LAUNCHED("moe router backward", err);
    return 0;
}
