/* emu.h: device-side CUDA emulated on the CPU, for the kernels/cuda sources
 * after gen.py has rewritten them (tests/cuda/emu/run.sh builds and runs).
 * A development aid only: it checks indexing, tiling, barriers, the order of
 * operations and the host logic; it is NOT evidence of GPU correctness (no real
 * warp scheduling or lockstep, no memory model, no tensor-core fragment
 * layouts, no timing, fp32 maths from the host libm).
 *
 * Model: one kernel launch runs its blocks one after another; the threads of a
 * block are fibers (user-space contexts) on one OS thread, switched only at
 * barriers: __syncthreads (all live threads of the block), and warp-collective
 * calls (__syncwarp, shuffles, ballots, WMMA: all live lanes of the warp).
 * Between barriers each thread runs alone, so atomics are plain operations.
 * __shared__ variables are function statics (one copy, shared by the block's
 * threads and reused by the next block, filled with NaN bytes when a block
 * first reaches the declaration); dynamic shared memory is NaN-filled per block. A barrier that can never complete
 * (threads waiting at different barriers) aborts with the kernel's name. */
#ifndef EMU_H
#define EMU_H
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <functional>
#include <tuple>

#include "fake/cuda_runtime_api.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __shared__ static
#define __constant__ static
#define __align__(n) alignas(n)

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct uint3 {
    unsigned x, y, z;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
struct alignas(8) uint2 {
    unsigned x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) float2 {
    float x, y;
};
static inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return uint4{a, b, c, d}; }
static inline uint2 make_uint2(unsigned a, unsigned b) { return uint2{a, b}; }
static inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }
static inline float2 make_float2(float a, float b) { return float2{a, b}; }

// The running fiber (CUDA thread) and the block being run.
struct EmuThread {
    uint3 tid;
    int lin, warp, lane, state;
    void *sp;
};
extern EmuThread *emu_cur;
extern uint3 emu_block_idx;
extern dim3 emu_block_dim, emu_grid_dim;
#define threadIdx (emu_cur->tid)
#define blockIdx emu_block_idx
#define blockDim emu_block_dim
#define gridDim emu_grid_dim
enum { warpSize = 32 };

void emu_syncthreads();
void emu_warp_barrier();
uint64_t emu_warp_exchange(uint64_t v, int src_lane);  // value of lane src_lane (own if src is out of the warp)
unsigned emu_warp_ballot(int pred);
unsigned char *emu_dyn_smem();
extern unsigned long emu_block_serial;  // counts blocks run, from 1
// After each static __shared__ declaration (gen.py): NaN bytes once per block, so a read before any write shows.
#define EMU_SHARED_POISON(x)                                                                                    \
    do {                                                                                                        \
        static unsigned long emu_seen_;                                                                         \
        if (emu_seen_ != emu_block_serial) emu_seen_ = emu_block_serial, memset((void *)&(x), 0xff, sizeof(x)); \
    } while (0)
static inline int emu_lane() { return emu_cur->lane; }

#define __syncthreads() emu_syncthreads()
static inline void __syncwarp(unsigned mask = 0xffffffffu) { (void)mask, emu_warp_barrier(); }
static inline void __threadfence() {}
static inline void __threadfence_block() {}

template <class T>
static inline T emu_shfl_from(T v, int src) {
    static_assert(sizeof(T) <= 8, "emu: shuffle of a type wider than 8 bytes");
    uint64_t u = 0;
    memcpy(&u, &v, sizeof v);
    u = emu_warp_exchange(u, src);
    memcpy(&v, &u, sizeof v);
    return v;
}
template <class T>
static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    int base = emu_lane() & ~(width - 1);
    return emu_shfl_from(v, base + (src & (width - 1)));
}
template <class T>
static inline T __shfl_xor_sync(unsigned mask, T v, int m, int width = 32) {
    int l = emu_lane(), s = l ^ m;
    return emu_shfl_from(v, (s & ~(width - 1)) == (l & ~(width - 1)) ? s : l);
}
template <class T>
static inline T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32) {
    int l = emu_lane(), s = l + (int)d;
    return emu_shfl_from(v, (s & ~(width - 1)) == (l & ~(width - 1)) ? s : l);
}
template <class T>
static inline T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32) {
    int l = emu_lane(), s = l - (int)d;
    return emu_shfl_from(v, s >= (l & ~(width - 1)) ? s : l);
}
static inline unsigned __ballot_sync(unsigned mask, int p) { return emu_warp_ballot(p) & mask; }
static inline int __any_sync(unsigned mask, int p) { return (emu_warp_ballot(p) & mask) != 0; }
static inline int __all_sync(unsigned mask, int p) { return (emu_warp_ballot(!p) & mask) == 0; }
static inline unsigned __activemask() { return emu_warp_ballot(1); }

// min/max as CUDA's overloads: any two arithmetic types; float ones ignore NaN as fminf.
template <class A, class B>
static inline auto min(A a, B b) -> decltype(a + b) {
    return b < a ? b : a;
}
template <class A, class B>
static inline auto max(A a, B b) -> decltype(a + b) {
    return a < b ? b : a;
}
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }

static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
static inline unsigned __float_as_uint(float f) {
    unsigned u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float __uint_as_float(unsigned u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline int __float_as_int(float f) {
    int u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float __int_as_float(int u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline long long __double_as_longlong(double d) {
    long long u;
    memcpy(&u, &d, 8);
    return u;
}
static inline double __longlong_as_double(long long u) {
    double d;
    memcpy(&d, &u, 8);
    return d;
}
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
static inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline unsigned __brev(unsigned x) {
    unsigned r = 0;
    for (int i = 0; i < 32; i++) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}
template <class T>
static inline T __ldg(const T *p) {
    return *p;
}

// Atomics: one thread runs at a time, so a plain read-modify-write is atomic.
template <class T, class U>
static inline T atomicAdd(T *p, U v) {
    T o = *p;
    *p = (T)(o + v);
    return o;
}
template <class T, class U>
static inline T atomicSub(T *p, U v) {
    T o = *p;
    *p = (T)(o - v);
    return o;
}
template <class T, class U>
static inline T atomicMax(T *p, U v) {
    T o = *p;
    if (o < (T)v) *p = (T)v;
    return o;
}
template <class T, class U>
static inline T atomicMin(T *p, U v) {
    T o = *p;
    if ((T)v < o) *p = (T)v;
    return o;
}
template <class T, class U>
static inline T atomicExch(T *p, U v) {
    T o = *p;
    *p = (T)v;
    return o;
}
template <class T, class U>
static inline T atomicOr(T *p, U v) {
    T o = *p;
    *p = o | (T)v;
    return o;
}
template <class T, class U>
static inline T atomicAnd(T *p, U v) {
    T o = *p;
    *p = o & (T)v;
    return o;
}
template <class T>
static inline T atomicCAS(T *p, T cmp, T v) {
    T o = *p;
    if (o == cmp) *p = v;
    return o;
}

// Launches (gen.py turns k<<<g, b, smem, s>>>(args) into emu_launch("k", k, emu_cfg(g, b, smem, s), body) where
// body holds the arguments evaluated at the launch and calls k(args)).
struct EmuCfg {
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
};
static inline EmuCfg emu_cfg(dim3 g, dim3 b, size_t smem = 0, cudaStream_t s = 0) { return EmuCfg{g, b, smem, s}; }
void emu_run(const char *name, const void *kernel, EmuCfg cfg, void (*body)(void *), void *ctx);
/* Whether s is capturing a graph; emu_record appends a step to its graph. */
bool emu_capturing(cudaStream_t s);
void emu_record(cudaStream_t s, std::function<void()> step);
template <class K, class F>
static inline void emu_launch(const char *name, K kernel, EmuCfg cfg, F body) {
    if (emu_capturing(cfg.stream)) { // body holds copies of its arguments (gen.py): replayable
        emu_record(cfg.stream, [name, kernel, cfg, body]() mutable {
            emu_run(name, (const void *)kernel, cfg, [](void *c) { (*(F *)c)(); }, &body);
        });
        return;
    }
    emu_run(
        name, (const void *)kernel, cfg, [](void *c) { (*(F *)c)(); }, &body);
}

template <class T>
static inline cudaError_t cudaFuncSetAttribute(T *f, enum cudaFuncAttribute a, int v) {
    return cudaFuncSetAttribute((const void *)f, a, v);
}
#endif
