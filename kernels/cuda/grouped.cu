// grouped: see grouped.h. One kernel, three products (MODE):
//   FWD    out[r, n]  = sum_k x[r, k]  W[n, k]     tile rows = an expert's rows
//   BWD_X  out[r, k]  = sum_n dy[r, n] W[n, k]     tile rows = an expert's rows
//   BWD_W  dW[n, k]  += sum_r dy[r, n] x[r, k]     the expert's rows are the sum
// A block computes a BM x BN output tile with 4 warps (2 x 2, 32 x 32 each),
// stepping through the sum BK at a time; the next step's operands are loaded
// into registers while the tensor cores work on the current one (two shared
// buffers). Operands are staged in shared memory in their global layout (the
// contiguous dimension stays contiguous) and WMMA reads them row- or
// column-major as the product needs, so no transpose is done anywhere.
#include <mma.h>

#include <type_traits>

#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/grouped.h"

using namespace nvcuda;

namespace {

enum { BM = 64, BN = 64, BK = 32, THREADS = 128, PAD = 8 };
enum { FWD = 0, BWD_X = 1, BWD_W = 2 };

// An OUT x IN operand tile whose IN dimension is contiguous in global memory,
// as 16-byte chunks of 8 bf16 (raw bits), CH per thread.
template <int OUT, int IN>
struct Tile {
    enum { CH = OUT * IN / 8 / THREADS, LD = IN + PAD, ELEMS = OUT * (IN + PAD) };
    uint4 v[CH];
};

// Rows [o0, o0 + OUT) x columns [i0, i0 + IN) of src [., ld] into registers;
// zeros outside o_lim x i_lim (a tile past the matrix adds nothing to the sum).
template <int OUT, int IN>
__device__ __forceinline__ void tile_fetch(Tile<OUT, IN> &t, const bf16 *src, long ld, int o0, int o_lim, int i0,
                                           int i_lim) {
    const unsigned short *s = (const unsigned short *)src;
#pragma unroll
    for (int j = 0; j < Tile<OUT, IN>::CH; j++) {
        const int c = threadIdx.x + j * THREADS, o = o0 + c / (IN / 8), i = i0 + (c % (IN / 8)) * 8;
        union {
            uint4 u;
            unsigned short h[8];
        } x;
        x.u = make_uint4(0, 0, 0, 0);
        if (o < o_lim) {
            const unsigned short *p = s + (long)o * ld + i;
            if (i + 8 <= i_lim && ((uintptr_t)p & 15) == 0)
                x.u = *(const uint4 *)p;
            else
                for (int q = 0; q < 8; q++) x.h[q] = i + q < i_lim ? p[q] : 0;
        }
        t.v[j] = x.u;
    }
}

template <int OUT, int IN>
__device__ __forceinline__ void tile_put(bf16 *dst, const Tile<OUT, IN> &t) {
#pragma unroll
    for (int j = 0; j < Tile<OUT, IN>::CH; j++) {
        const int c = threadIdx.x + j * THREADS, o = c / (IN / 8), i = (c % (IN / 8)) * 8;
        *(uint4 *)(dst + o * Tile<OUT, IN>::LD + i) = t.v[j];
    }
}

template <class L>
struct Lay;
template <>
struct Lay<wmma::row_major> {
    __device__ static int off(int r, int c, int ld) { return r * ld + c; }
};
template <>
struct Lay<wmma::col_major> {
    __device__ static int off(int r, int c, int ld) { return c * ld + r; }
};

struct Args {
    const int *start;
    int E, N, K;
    const bf16 *a;         // x (FWD), dy (BWD_X, BWD_W)
    const bf16 *b;         // x (BWD_W)
    const bf16 *const *w;  // [E] weights (FWD, BWD_X)
    void *out;             // [rows, N] (FWD) or [rows, K] (BWD_X)
    float *const *dw;      // [E] gradients (BWD_W)
    int out_f32, accumulate;
};

// The expert and row range of output tile `slot` (FWD, BWD_X): tiles are laid
// expert after expert, ceil(rows_e / BM) each; warp 0 scans the experts 32 at a
// time. Returns e = -1 for a slot past the last tile.
__device__ void slot_find(const int *start, int E, int slot, int *sh) {
    if (threadIdx.x == 0) sh[0] = -1;
    __syncthreads();
    if (threadIdx.x < 32) {
        const int lane = threadIdx.x;
        int base = 0;
        for (int e0 = 0; e0 < E; e0 += 32) {
            const int e = e0 + lane;
            const int r0 = e < E ? start[e] : 0, n = e < E ? start[e + 1] - r0 : 0;
            const int t = (n + BM - 1) / BM;
            int incl = t;
            for (int o = 1; o < 32; o <<= 1) {
                int u = __shfl_up_sync(0xffffffffu, incl, o);
                if (lane >= o) incl += u;
            }
            const int first = base + incl - t;
            if (slot >= first && slot < first + t) {
                sh[0] = e;
                sh[1] = r0 + (slot - first) * BM;
                sh[2] = min(r0 + n, sh[1] + BM);
            }
            base += __shfl_sync(0xffffffffu, incl, 31);
            if (base > slot) break;  // the same for every lane
        }
    }
    __syncthreads();
}

template <int MODE>
__global__ void __launch_bounds__(THREADS) grouped_kernel(Args g) {
    // A is [BM x BK] (m outer) except in BWD_W ([BK x BM], the sum outer: dy's rows);
    // B is [BN x BK] (n outer: W's rows) in FWD, else [BK x BN] (the sum outer).
    typedef typename std::conditional<MODE == BWD_W, Tile<BK, BM>, Tile<BM, BK> >::type TA;
    typedef typename std::conditional<MODE == FWD, Tile<BN, BK>, Tile<BK, BN> >::type TB;
    typedef typename std::conditional<MODE == BWD_W, wmma::col_major, wmma::row_major>::type LA;
    typedef typename std::conditional<MODE == FWD, wmma::col_major, wmma::row_major>::type LB;
    enum { STAGE = TA::ELEMS + TB::ELEMS, CLD = BN + 4 };
    static_assert(2 * STAGE * 2 >= BM * CLD * 4, "the output tile reuses the operand buffers");
    struct __align__(128) Smem {
        unsigned short v[2 * STAGE];  // two stages of bf16 operands, then the fp32 output tile
    };
    __shared__ Smem sm;
    bf16 *smem = (bf16 *)sm.v;
    __shared__ int where[3];
    const int warp = threadIdx.x >> 5, wm = (warp >> 1) * 32, wn = (warp & 1) * 32;

    // This block's expert, rows and output tile; the operands' sources and extents.
    int e, m0, m_lim, n0, n_lim, red;  // the tile is rows [m0, m0+BM) < m_lim, cols [n0, n0+BN) < n_lim
    const bf16 *srcA, *srcB;
    long lda, ldb;
    if (MODE == BWD_W) {
        e = blockIdx.x;
        const int r0 = g.start[e], rows = g.start[e + 1] - r0, tm = (g.N + BM - 1) / BM;
        if (rows <= 0) return;
        m0 = (blockIdx.y % tm) * BM, m_lim = g.N, n0 = (blockIdx.y / tm) * BN, n_lim = g.K, red = rows;
        srcA = g.a + (long)r0 * g.N, lda = g.N, srcB = g.b + (long)r0 * g.K, ldb = g.K;
    } else {
        slot_find(g.start, g.E, blockIdx.x, where);
        e = where[0];
        if (e < 0) return;
        m0 = 0, m_lim = where[2] - where[1], n0 = blockIdx.y * BN;
        const int in = MODE == FWD ? g.K : g.N;  // the row length of a / the sum's length
        n_lim = MODE == FWD ? g.N : g.K, red = in;
        srcA = g.a + (long)where[1] * in, lda = in, srcB = g.w[e], ldb = g.K;
    }

    TA ra;
    TB rb;
    auto fetch = [&](int kt) {
        if (MODE == BWD_W) tile_fetch(ra, srcA, lda, kt, red, m0, m_lim);
        else tile_fetch(ra, srcA, lda, m0, m_lim, kt, red);
        if (MODE == FWD) tile_fetch(rb, srcB, ldb, n0, n_lim, kt, red);
        else tile_fetch(rb, srcB, ldb, kt, red, n0, n_lim);
    };
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++) wmma::fill_fragment(acc[i][j], 0.0f);
    fetch(0);
    tile_put(smem, ra), tile_put(smem + TA::ELEMS, rb);
    __syncthreads();
    for (int kt = 0, st = 0; kt < red; kt += BK, st ^= 1) {
        const bf16 *As = smem + st * STAGE, *Bs = As + TA::ELEMS;
        if (kt + BK < red) fetch(kt + BK);  // in flight while the tensor cores work
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, LA> fa[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, LB> fb[2];
#pragma unroll
            for (int i = 0; i < 2; i++) wmma::load_matrix_sync(fa[i], As + Lay<LA>::off(wm + 16 * i, kk, TA::LD), TA::LD);
#pragma unroll
            for (int j = 0; j < 2; j++) wmma::load_matrix_sync(fb[j], Bs + Lay<LB>::off(kk, wn + 16 * j, TB::LD), TB::LD);
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 2; j++) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        }
        if (kt + BK < red) {
            bf16 *nx = smem + (st ^ 1) * STAGE;
            tile_put(nx, ra), tile_put(nx + TA::ELEMS, rb);
        }
        __syncthreads();
    }

    // The tile through shared memory (fp32), then out in rows of BN for coalesced stores.
    float *C = (float *)smem;
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++)
            wmma::store_matrix_sync(C + (wm + 16 * i) * CLD + wn + 16 * j, acc[i][j], CLD, wmma::mem_row_major);
    __syncthreads();
    for (int c = threadIdx.x; c < BM * BN; c += THREADS) {
        const int m = m0 + c / BN, n = n0 + c % BN;
        if (m >= m_lim || n >= n_lim) continue;
        const float v = C[(c / BN) * CLD + c % BN];
        if (MODE == BWD_W) {
            g.dw[e][(long)m * g.K + n] += v;
            continue;
        }
        const long o = (long)(where[1] + m) * n_lim + n;
        if (g.out_f32) {
            float *p = (float *)g.out + o;
            *p = g.accumulate ? *p + v : v;
        } else {
            bf16 *p = (bf16 *)g.out + o;
            st_bf16(p, g.accumulate ? ld_bf16(p) + v : v);
        }
    }
}

int check(const char *what, int E, int rows_max, int N, int K, Err *err) {
    if (E <= 0 || rows_max < 0 || N <= 0 || K <= 0)
        return err_set(err, ERR_INPUT, "%s: bad shape (E=%d rows_max=%d N=%d K=%d)", what, E, rows_max, N, K);
    return 0;
}

template <int MODE>
int launch(cudaStream_t s, const Args &g, int rows_max, const char *what, Err *err) {
    dim3 grid;
    if (MODE == BWD_W) {
        grid = dim3(g.E, ((g.N + BM - 1) / BM) * ((g.K + BN - 1) / BN));
    } else {
        const long slots = (rows_max + BM - 1) / BM + g.E, cols = ((MODE == FWD ? g.N : g.K) + BN - 1) / BN;
        if (rows_max == 0) return 0;
        if (slots > INT_MAX || cols > 65535)
            return err_set(err, ERR_INPUT, "%s: %ld row tiles x %ld column tiles is past the grid's limits", what, slots,
                           cols);
        grid = dim3((unsigned)slots, (unsigned)cols);
    }
    if (grid.y > 65535) return err_set(err, ERR_INPUT, "%s: weights of %d x %d are too large a grid", what, g.N, g.K);
    grouped_kernel<MODE><<<grid, THREADS, 0, s>>>(g);
    CUDA_LAUNCHED(what, err);
    return 0;
}

}  // namespace

extern "C" int cuda_grouped_fwd(cudaStream_t s, void *y, CudaDtype yt, const cuda_bf16 *x, const cuda_bf16 *const *W,
                                const int *start, int E, int rows_max, int N, int K, int accumulate, Err *err) {
    if (check("cuda_grouped_fwd", E, rows_max, N, K, err)) return -1;
    Args g = {start, E, N, K, (const bf16 *)x, NULL, (const bf16 *const *)W, y, NULL, yt == CUDA_F32, accumulate};
    return launch<FWD>(s, g, rows_max, "cuda_grouped_fwd", err);
}

extern "C" int cuda_grouped_bwd_x(cudaStream_t s, void *dx, CudaDtype dxt, const cuda_bf16 *dy,
                                  const cuda_bf16 *const *W, const int *start, int E, int rows_max, int N, int K,
                                  int accumulate, Err *err) {
    if (check("cuda_grouped_bwd_x", E, rows_max, N, K, err)) return -1;
    Args g = {start, E, N, K, (const bf16 *)dy, NULL, (const bf16 *const *)W, dx, NULL, dxt == CUDA_F32, accumulate};
    return launch<BWD_X>(s, g, rows_max, "cuda_grouped_bwd_x", err);
}

extern "C" int cuda_grouped_bwd_w(cudaStream_t s, float *const *dW, const cuda_bf16 *dy, const cuda_bf16 *x,
                                  const int *start, int E, int N, int K, Err *err) {
    if (check("cuda_grouped_bwd_w", E, 0, N, K, err)) return -1;
    Args g = {start, E, N, K, (const bf16 *)dy, (const bf16 *)x, NULL, NULL, dW, 0, 0};
    return launch<BWD_W>(s, g, 0, "cuda_grouped_bwd_w", err);
}
