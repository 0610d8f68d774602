// sample: see sample.h. One block per row. Every "which token" question (the
// k-th largest logit, the top-p cut, the drawn token) is a search for the
// smallest key K whose cumulative mass over the kept tokens exceeds a
// threshold, done 8 bits at a time with a shared-memory histogram.
#include <math.h>

#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/sample.h"

enum { SAMPLE_THREADS = 1024 };
enum { KEY_VALUE = 0, KEY_VALUE_ID = 1, KEY_ID = 2 };

// Order-preserving map of a float to uint32 (-0 and +0 equal, as float compare).
__device__ __forceinline__ uint32_t fkey(float f) {
    uint32_t b = __float_as_uint(f);
    if (b == 0x80000000u) b = 0;
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__device__ __forceinline__ uint64_t skey(int mode, const float *s, int i) {
    if (mode == KEY_ID) return (uint64_t)i;
    uint64_t hi = (uint64_t)fkey(s[i]) << 32;
    return mode == KEY_VALUE ? hi : hi | (uint64_t)(0xffffffffu - (uint32_t)i);  // equal values: higher id first
}

typedef struct SearchShared {
    double mass[256];
    unsigned cnt[256];
    uint64_t prefix;
    double below;
    int fallback;
} SearchShared;

// Smallest key K over kept tokens with mass(key <= K) > thr; the largest kept
// key when none (the CPU's "last in order" fallback). mass = e[i], or 1 when e
// is NULL (counting). Bytes [lo_shift, hi_shift] of the key are searched.
__device__ uint64_t key_search(int mode, const float *s, const double *e, const unsigned char *keep, int V,
                               double thr, int hi_shift, int lo_shift, SearchShared *sh) {
    if (threadIdx.x == 0) sh->prefix = 0, sh->below = 0, sh->fallback = 0;
    for (int shift = hi_shift; shift >= lo_shift; shift -= 8) {
        for (int b = threadIdx.x; b < 256; b += blockDim.x) sh->mass[b] = 0, sh->cnt[b] = 0;
        __syncthreads();
        const uint64_t prefix = sh->prefix;
        for (int i = threadIdx.x; i < V; i += blockDim.x) {
            if (!keep[i]) continue;
            uint64_t k = skey(mode, s, i);
            if (shift < 56 && (k >> (shift + 8)) != (prefix >> (shift + 8))) continue;
            int b = (int)((k >> shift) & 255);
            atomicAdd(&sh->mass[b], e ? e[i] : 1.0);
            atomicAdd(&sh->cnt[b], 1u);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            double acc = sh->below;
            int chosen = -1, last = -1;
            double before_last = acc;
            for (int b = 0; b < 256; b++) {
                if (!sh->cnt[b]) continue;
                if (!sh->fallback && acc + sh->mass[b] > thr) {
                    chosen = b;
                    break;
                }
                last = b, before_last = acc;
                acc += sh->mass[b];
            }
            if (chosen < 0) chosen = last, acc = before_last, sh->fallback = 1;
            if (chosen < 0) chosen = 0;  // nothing kept under this prefix (cannot happen)
            sh->prefix = prefix | ((uint64_t)chosen << shift);
            sh->below = acc;
        }
        __syncthreads();
    }
    uint64_t r = sh->prefix;
    __syncthreads();
    return r;
}

__device__ double row_sum_kept(const double *e, const unsigned char *keep, int V, double *shd) {
    double z = 0;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        if (!keep || keep[i]) z += e[i];
    return block_sum_d(z, shd);
}

typedef struct RowOut {
    int *token;
    float *logp, *logp_filtered;
} RowOut;

__global__ void __launch_bounds__(SAMPLE_THREADS) sample_kernel(CudaSamplerOpts o, const float *logits, int V, int ldl, const double *u, float *s_all,
                              double *e_all, unsigned char *keep_all, RowOut out) {
    __shared__ SearchShared sh;
    __shared__ double shd[32];
    __shared__ float sv[32];
    __shared__ int si[32];
    const long row = blockIdx.x;
    const float *l = logits + row * ldl;
    float *s = s_all + row * V;
    double *e = e_all + row * V;
    unsigned char *keep = keep_all + row * V;
    const float T = o.temperature;
    const int greedy = T == 0.0f;
    // s = logits / T (NaN -> -inf); argmax, lowest id on ties
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float v = greedy ? l[i] : l[i] / T;
        v = isnan(v) ? -INFINITY : v;
        s[i] = v;
        if (bi == INT_MAX || v > bv) bv = v, bi = i;
    }
    const int am = block_argmax(bv, bi, sv, si);
    const float mx = s[am];
    if (!isfinite(mx)) {
        if (threadIdx.x == 0) {
            out.token[row] = -1;
            if (out.logp) out.logp[row] = NAN;
            if (out.logp_filtered) out.logp_filtered[row] = NAN;
        }
        return;
    }
    // float subtraction then double exp, as the CPU (its full log-prob sums these)
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        e[i] = exp((double)(s[i] - mx));
        keep[i] = 1;
    }
    __syncthreads();
    const double zall = row_sum_kept(e, NULL, V, shd);
    if (greedy) {  // the CPU's greedy scans the raw logits: a NaN at id 0 is an error, any NaN makes logp NaN
        double nans = 0;
        for (int i = threadIdx.x; i < V; i += blockDim.x) nans += isnan(l[i]) ? 1.0 : 0.0;
        nans = block_sum_d(nans, shd);
        if (threadIdx.x == 0) {
            out.token[row] = isnan(l[0]) ? -1 : am;
            if (out.logp) out.logp[row] = isnan(l[0]) || nans > 0 ? NAN : s[am] - (mx + (float)log(zall));
            if (out.logp_filtered) out.logp_filtered[row] = 0.0f;
        }
        return;
    }
    if (o.top_k > 0 && o.top_k < V) {  // keep s >= the k-th largest s: count(key <= K) > V - k
        uint64_t K = key_search(KEY_VALUE, s, NULL, keep, V, (double)(V - o.top_k), 56, 32, &sh);
        for (int i = threadIdx.x; i < V; i += blockDim.x) keep[i] = skey(KEY_VALUE, s, i) >= K;
        __syncthreads();
    }
    const int top_p = o.top_p < 1.0;
    if (top_p) {  // remove the ascending prefix whose cumulative mass stays <= (1 - top_p) z
        double z1 = row_sum_kept(e, keep, V, shd);
        uint64_t K = key_search(KEY_VALUE_ID, s, e, keep, V, (1.0 - o.top_p) * z1, 56, 0, &sh);
        for (int i = threadIdx.x; i < V; i += blockDim.x)
            if (keep[i] && skey(KEY_VALUE_ID, s, i) < K) keep[i] = 0;
        __syncthreads();
    }
    if (o.min_p > 0) {  // p / p_max = e
        for (int i = threadIdx.x; i < V; i += blockDim.x)
            if (e[i] < o.min_p) keep[i] = 0;
        __syncthreads();
    }
    const double z = row_sum_kept(e, keep, V, shd);
    const double target = u[row] * z;
    int tok;
    if (top_p) {
        uint64_t K = key_search(KEY_VALUE_ID, s, e, keep, V, target, 56, 0, &sh);
        tok = (int)(0xffffffffu - (uint32_t)(K & 0xffffffffu));
    } else {
        tok = (int)key_search(KEY_ID, s, e, keep, V, target, 24, 0, &sh);
    }
    if (tok < 0 || tok >= V) tok = am;  // unreachable: the argmax is always kept
    if (threadIdx.x == 0) {
        out.token[row] = tok;
        if (out.logp) out.logp[row] = s[tok] - (mx + (float)log(zall));
        if (out.logp_filtered) out.logp_filtered[row] = (float)(log(e[tok]) - log(z));
    }
}

extern "C" size_t cuda_sample_scratch_bytes(int B, int V) {
    size_t n = (size_t)(B > 0 ? B : 1) * (V > 0 ? V : 1);
    size_t a = (n * sizeof(float) + 255) & ~(size_t)255;
    size_t b = (n * sizeof(double) + 255) & ~(size_t)255;
    return a + b + n;
}

extern "C" int cuda_sample(cudaStream_t st, const CudaSamplerOpts *o, const float *logits, int B, int V, int ldl,
                           const double *u, int *token, float *logp, float *logp_filtered, void *scratch, Err *err) {
    if (!(o->temperature >= 0) || isinf(o->temperature))
        return err_set(err, ERR_INPUT, "cuda_sample: temperature must be >= 0 and finite (got %g)", o->temperature);
    if (o->top_k < 0) return err_set(err, ERR_INPUT, "cuda_sample: top_k must be >= 0, 0 = off (got %d)", o->top_k);
    if (!(o->top_p >= 0 && o->top_p <= 1))
        return err_set(err, ERR_INPUT, "cuda_sample: top_p must be in [0, 1], 1 = off (got %g)", o->top_p);
    if (!(o->min_p >= 0 && o->min_p <= 1))
        return err_set(err, ERR_INPUT, "cuda_sample: min_p must be in [0, 1], 0 = off (got %g)", o->min_p);
    if (B < 0 || V <= 0 || ldl < V)
        return err_set(err, ERR_INPUT, "cuda_sample: bad shape B=%d V=%d ldl=%d", B, V, ldl);
    if (!B) return 0;
    size_t n = (size_t)B * V;
    float *s_all = (float *)scratch;
    double *e_all = (double *)((char *)scratch + ((n * sizeof(float) + 255) & ~(size_t)255));
    unsigned char *keep = (unsigned char *)e_all + ((n * sizeof(double) + 255) & ~(size_t)255);
    RowOut out = {token, logp, logp_filtered};
    sample_kernel<<<B, SAMPLE_THREADS, 0, st>>>(*o, logits, V, ldl, u, s_all, e_all, keep, out);
    CUDA_LAUNCHED("sample", err);
    return 0;
}

__device__ __forceinline__ uint64_t fmix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// sampler_uniform of rl/sampler.c: splitmix64's finaliser chained over seed, id, step.
__global__ void uniforms_kernel(uint64_t seed, const uint64_t *ids, uint64_t step, int B, double *u) {
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= B) return;
    const uint64_t g = 0x9e3779b97f4a7c15ull;
    uint64_t h = fmix64(seed + g);
    h = fmix64(h ^ (ids[b] * g + 0x632be59bd9b4e019ull));
    h = fmix64(h ^ (step * g + 0x85157af5ull));
    u[b] = (double)(h >> 11) * 0x1.0p-53;
}

extern "C" int cuda_sample_uniforms(cudaStream_t s, uint64_t seed, const uint64_t *ids, uint64_t step, int B,
                                    double *u, Err *err) {
    if (B < 0) return err_set(err, ERR_INPUT, "cuda_sample_uniforms: negative batch %d", B);
    if (!B) return 0;
    uniforms_kernel<<<cuda_blocks(B, 128), 128, 0, s>>>(seed, ids, step, B, u);
    CUDA_LAUNCHED("sample uniforms", err);
    return 0;
}
