// attn: see attn.h. Every kernel here runs 8 warps over tiles kept in shared
// memory: operands bf16 (zero-padded to multiples of 16, rows staggered by 16
// bytes against bank conflicts), scores and accumulators fp32. Products go
// through WMMA 16x16x16 fragments, one 16x16 output tile per warp at a time
// (mma_tiles); softmax and masks are plain per-element code between
// __syncthreads. Kernels, then the launchers.
#include <mma.h>

#include "kernels/cuda/attn.h"
#include "kernels/cuda/cuda_util.cuh"

using namespace nvcuda;

enum { ATTN_THREADS = 256 };
static const size_t ATTN_SMEM_MAX = 232448;  // sm_90's opt-in shared memory per block (227 KiB)
static const int DECODE_TARGET_BLOCKS = 256; // split decoding until ~2 waves of 132 SMs

__host__ __device__ static inline int round16(int x) { return (x + 15) & ~15; }

// ---------------------------------------------------------------------------
// Tile geometry and the shared-memory map (the same code sizes it on the host
// and carves it on the device).

struct Geo {
    int Br, Bc;   // query rows (decode: heads) and key rows per tile, multiples of 16
    int dkp, dvp; // key and value widths rounded up to 16 (zero-padded in the tiles)
    int lk, lv;   // bf16 row strides of [*, dkp] and [*, dvp] tiles (+8: next row 16 bytes over)
    int ls, lp;   // fp32 [*, Bc] rows (+4) and bf16 [*, Bc] rows (+8)
    int lkf, lvf; // fp32 accumulator rows [*, dkp] and [*, dvp] (+4)
};

static Geo geo_make(int Br, int Bc, int dk, int dv) {
    Geo g;
    g.Br = Br, g.Bc = Bc, g.dkp = round16(dk), g.dvp = round16(dv);
    g.lk = g.dkp + 8, g.lv = g.dvp + 8, g.ls = Bc + 4, g.lp = Bc + 8, g.lkf = g.dkp + 4, g.lvf = g.dvp + 4;
    return g;
}

enum SmemKind { SM_FWD, SM_BWD_KV, SM_BWD_Q, SM_DECODE };

struct Smem {
    bf16 *q, *k, *v, *dout; // operand tiles: q, dout [Br, *]; k, v [Bc, *]
    bf16 *p, *ds;           // probabilities and score gradients, bf16 [Br, lp]
    float *s, *dp;          // raw scores Q K^T and dP = dO V^T, fp32 [Br, ls]
    float *acc_k, *acc_v;   // accumulators: dK [Bc, lkf] or dQ [Br, lkf]; O [Br, lvf] or dV [Bc, lvf]
    float *m, *l;           // per query row: running max and sum (forward) or lse and D (backward)
};

// Carves the pieces a kernel kind uses out of `base` (0 on the host) and returns the bytes.
__host__ __device__ static size_t smem_carve(SmemKind kind, const Geo &g, uintptr_t base, Smem *sm) {
    size_t off = 0;
#define TAKE(field, T, n) (sm->field = (T *)(base + off), off += ((size_t)(n) * sizeof(T) + 127) & ~(size_t)127)
    *sm = Smem();
    TAKE(q, bf16, g.Br * g.lk);
    TAKE(k, bf16, g.Bc * g.lk);
    TAKE(s, float, g.Br * g.ls);
    TAKE(m, float, g.Br);
    TAKE(l, float, g.Br);
    if (kind == SM_FWD || kind == SM_DECODE) {
        if (kind == SM_FWD) TAKE(v, bf16, g.Bc * g.lv); // decode: V is the first dc columns of K
        TAKE(p, bf16, g.Br * g.lp);
        TAKE(acc_v, float, g.Br * g.lvf);
    } else {
        TAKE(v, bf16, g.Bc * g.lv);
        TAKE(dout, bf16, g.Br * g.lv);
        TAKE(dp, float, g.Br * g.ls);
        TAKE(ds, bf16, g.Br * g.lp);
        if (kind == SM_BWD_KV) {
            TAKE(p, bf16, g.Br * g.lp);
            TAKE(acc_k, float, g.Bc * g.lkf);
            TAKE(acc_v, float, g.Bc * g.lvf);
        } else {
            TAKE(acc_k, float, g.Br * g.lkf);
        }
    }
#undef TAKE
    return off;
}

// The largest tiles that fit: 64x64 for V3's training dims, smaller for wide
// heads; Br is capped at max_rows (decode: the heads, rounded up to 16).
static int geo_pick(SmemKind kind, int dk, int dv, int max_rows, Geo *g, size_t *bytes) {
    static const int choice[][2] = {{64, 64}, {32, 64}, {16, 64}, {16, 32}, {16, 16}};
    Smem sm;
    for (unsigned i = 0; i < sizeof choice / sizeof *choice; i++) {
        if (choice[i][0] > max_rows && choice[i][0] > 16) continue;
        *g = geo_make(choice[i][0], choice[i][1], dk, dv);
        *bytes = smem_carve(kind, *g, 0, &sm);
        if (*bytes <= ATTN_SMEM_MAX) return 0;
    }
    return -1;
}

// ---------------------------------------------------------------------------
// Device building blocks.

// Rows [0, rows) of a bf16 tile [rows, lds] from global row r at g + r*ld,
// r < nvalid: columns [0, d) in 16-byte pieces (d % 8 == 0), columns [d, dpad)
// and rows past nvalid zeroed.
__device__ static void tile_load(bf16 *s, int lds, const bf16 *g, long ld, int rows, int nvalid, int d, int dpad) {
    const int nch = dpad >> 3;
    for (int i = threadIdx.x; i < rows * nch; i += blockDim.x) {
        int r = i / nch, c = (i - r * nch) << 3;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (r < nvalid && c < d) v = *(const uint4 *)(g + r * ld + c);
        *(uint4 *)(s + r * lds + c) = v;
    }
}

// Rows [0, rows) x columns [0, d) of an fp32 tile to global (row r at g + r*ld), fp32 or bf16.
__device__ static void tile_store(void *g, int f32, long ld, const float *s, int lds, int rows, int d) {
    for (int i = threadIdx.x; i < rows * d; i += blockDim.x) {
        int r = i / d, j = i - r * d;
        if (f32) ((float *)g)[r * ld + j] = s[r * lds + j];
        else st_bf16((bf16 *)g + r * ld + j, s[r * lds + j]);
    }
}

// Offset of logical element (r, c) of a fragment operand stored with layout L (WMMA's layout tags are
// incomplete types, hence a class template).
template <typename L> struct Lay;
template <> struct Lay<wmma::row_major> {
    __device__ static int off(int r, int c, int ld) { return r * ld + c; }
};
template <> struct Lay<wmma::col_major> {
    __device__ static int off(int r, int c, int ld) { return c * ld + r; }
};

// C[M, N] (+)= op(A)[M, K] op(B)[K, N] on shared-memory tiles (M, N, K
// multiples of 16): LA/LB row_major reads A[m][k] at A[m*lda + k] (B[k][n] at
// B[k*ldb + n]), col_major the transposed storage (A^T or B^T products
// without a copy). 16x16 output tiles are dealt to the warps in turn.
template <typename LA, typename LB>
__device__ static void mma_tiles(float *C, int ldc, const bf16 *A, int lda, const bf16 *B, int ldb, int M, int N,
                                 int K, bool accumulate) {
    const int warp = threadIdx.x >> 5, nw = blockDim.x >> 5, tn = N >> 4, nt = (M >> 4) * tn;
    for (int t = warp; t < nt; t += nw) {
        const int m0 = (t / tn) << 4, n0 = (t % tn) << 4;
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
        if (accumulate) wmma::load_matrix_sync(c, C + m0 * ldc + n0, ldc, wmma::mem_row_major);
        else wmma::fill_fragment(c, 0.0f);
        for (int k0 = 0; k0 < K; k0 += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, LA> a;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, LB> b;
            wmma::load_matrix_sync(a, A + Lay<LA>::off(m0, k0, lda), lda);
            wmma::load_matrix_sync(b, B + Lay<LB>::off(k0, n0, ldb), ldb);
            wmma::mma_sync(c, a, b, c);
        }
        wmma::store_matrix_sync(C + m0 * ldc + n0, c, ldc, wmma::mem_row_major);
    }
}

// One key tile of the online softmax (forward and decode), one warp per row.
// S [rows, ls] holds raw q.k; key c of row r counts when c < min(kvalid, diag + r)
// (diag = first query - first key + 1 for the causal mask, huge without one).
// Updates the running max m and sum l of exp(scale*s - m), writes P = that
// exponential in bf16 (0 for masked keys), and rescales the row's first
// ocols accumulator columns O[r, :] by exp(m_old - m_new).
__device__ static void softmax_tile(const float *S, int ls, bf16 *P, int lp, float *O, int lo, int ocols, float *m,
                                    float *l, int rows, int Bc, float scale, int kvalid, int diag) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int r = warp; r < rows; r += nw) {
        const int lim = min(kvalid, diag + r);
        float mx = -INFINITY;
        for (int c = lane; c < lim && c < Bc; c += 32) mx = fmaxf(mx, S[r * ls + c] * scale);
        mx = warp_max(mx);
        const float mold = m[r], mnew = fmaxf(mold, mx);
        const bool any = mnew != -INFINITY; // else every key so far is masked: nothing to add
        const float alpha = any ? expf(mold - mnew) : 1.0f;
        float sum = 0.0f;
        for (int c = lane; c < Bc; c += 32) {
            float p = any && c < lim ? expf(S[r * ls + c] * scale - mnew) : 0.0f;
            P[r * lp + c] = __float2bfloat16_rn(p);
            sum += p;
        }
        sum = warp_sum(sum);
        __syncwarp(); // every lane has read m[r], l[r] before lane 0 rewrites them
        if (lane == 0) m[r] = mnew, l[r] = l[r] * alpha + sum;
        if (alpha != 1.0f)
            for (int j = lane; j < ocols; j += 32) O[r * lo + j] *= alpha;
    }
}

// ---------------------------------------------------------------------------
// Training / prefill: the work items. A padded batch [B, T] is B root
// segments of T tokens; a packed one lists its segments (CudaAttnSeg) and the
// launcher lists the tiles (segment, first row) in device tables.

struct AttnArgs {
    const bf16 *q, *k, *v, *o, *dout; // inputs (o, dout: backward only)
    bf16 *out;                        // forward output O
    float *lse;                       // forward output [rows, nh]
    const float *lse_in, *D;          // backward inputs [rows, nh]
    void *dq, *dk, *dv;               // backward outputs, fp32 (f32) or bf16
    int f32;
    long q_ld, q_hs, k_ld, k_hs, v_ld, v_hs, o_ld, o_hs;
    int T, nh, dqk, dv_dim;           // T: padded row length (no segment table)
    int B, ntile;                     // padded: rows, and tiles per row of the kernel's tile size
    const int *seg;                   // packed: [nseg, 3] start, len, prefix; NULL = padded
    const int *tiles;                 // packed: [grid.y, 2] segment, first row of the block's tile
    const int *child, *child_start;   // packed: segments naming s as prefix, child[child_start[s] ..]
    float scale;
    Geo g;
};

struct Seg { long start, pstart; int len, plen; }; // rows of the segment and of its prefix (plen 0: none)

__device__ static Seg seg_get(const AttnArgs &a, int s) {
    Seg r;
    if (!a.seg) {
        r.start = (long)s * a.T, r.len = a.T, r.pstart = 0, r.plen = 0;
        return r;
    }
    const int p = a.seg[3 * s + 2];
    r.start = a.seg[3 * s], r.len = a.seg[3 * s + 1];
    r.pstart = p >= 0 ? a.seg[3 * p] : 0, r.plen = p >= 0 ? a.seg[3 * p + 1] : 0;
    return r;
}

// The block's tile: segment *s, first row *x0 (rows of `rows`). Padded grids
// put the last tiles of each row first (the longest, causally) when `last_first`.
__device__ static void tile_get(const AttnArgs &a, int rows, bool last_first, int *s, int *x0) {
    const int y = blockIdx.y;
    if (a.tiles) {
        *s = a.tiles[2 * y], *x0 = a.tiles[2 * y + 1];
        return;
    }
    const int t = y / a.B;
    *s = y % a.B, *x0 = (last_first ? a.ntile - 1 - t : t) * rows;
}

#define NO_MASK (1 << 30) // diag for keys that every query sees (a prefix)

// One pass of the online softmax over keys [0, klen) at rows kbase.., the
// causal mask diag (q0 - k0 + 1 relative to each key tile) or NO_MASK.
__device__ static void fwd_keys(const AttnArgs &a, const Smem &sm, const Geo &g, int h, long kbase, int klen, int q0,
                                bool causal) {
    for (int k0 = 0; k0 < klen; k0 += g.Bc) {
        const int kn = min(g.Bc, klen - k0);
        __syncthreads(); // the previous tile's P.V has finished with K, V and P
        tile_load(sm.k, g.lk, a.k + (kbase + k0) * a.k_ld + h * a.k_hs, a.k_ld, g.Bc, kn, a.dqk, g.dkp);
        tile_load(sm.v, g.lv, a.v + (kbase + k0) * a.v_ld + h * a.v_hs, a.v_ld, g.Bc, kn, a.dv_dim, g.dvp);
        __syncthreads();
        mma_tiles<wmma::row_major, wmma::col_major>(sm.s, g.ls, sm.q, g.lk, sm.k, g.lk, g.Br, g.Bc, g.dkp, false);
        __syncthreads();
        softmax_tile(sm.s, g.ls, sm.p, g.lp, sm.acc_v, g.lvf, g.dvp, sm.m, sm.l, g.Br, g.Bc, a.scale, kn,
                     causal ? q0 - k0 + 1 : NO_MASK);
        __syncthreads();
        mma_tiles<wmma::row_major, wmma::row_major>(sm.acc_v, g.lvf, sm.p, g.lp, sm.v, g.lv, g.Br, g.dvp, g.Bc, true);
    }
}

// grid (nh, query tiles): the prefix's keys (all seen), then the segment's own (causal).
static __global__ void __launch_bounds__(ATTN_THREADS) attn_fwd_kernel(AttnArgs a) {
    extern __shared__ __align__(128) unsigned char smem[];
    Smem sm;
    const Geo g = a.g;
    smem_carve(SM_FWD, g, (uintptr_t)smem, &sm);
    const int h = blockIdx.x;
    int si, q0;
    tile_get(a, g.Br, true, &si, &q0);
    const Seg sg = seg_get(a, si);
    const int qn = min(g.Br, sg.len - q0);
    const long n0 = sg.start + q0; // token row of the tile's first query
    tile_load(sm.q, g.lk, a.q + n0 * a.q_ld + h * a.q_hs, a.q_ld, g.Br, qn, a.dqk, g.dkp);
    for (int i = threadIdx.x; i < g.Br * g.lvf; i += blockDim.x) sm.acc_v[i] = 0.0f;
    for (int r = threadIdx.x; r < g.Br; r += blockDim.x) sm.m[r] = -INFINITY, sm.l[r] = 0.0f;
    fwd_keys(a, sm, g, h, sg.pstart, sg.plen, q0, false);
    fwd_keys(a, sm, g, h, sg.start, min(sg.len, q0 + g.Br), q0, true); // keys past the last query are never seen
    __syncthreads();
    for (int i = threadIdx.x; i < qn * a.dv_dim; i += blockDim.x) {
        int r = i / a.dv_dim, j = i - r * a.dv_dim;
        st_bf16(a.out + (n0 + r) * a.o_ld + h * a.o_hs + j, sm.acc_v[r * g.lvf + j] / sm.l[r]);
    }
    for (int r = threadIdx.x; r < qn; r += blockDim.x) a.lse[(n0 + r) * a.nh + h] = sm.m[r] + logf(sm.l[r]);
}

// ---------------------------------------------------------------------------
// Training: backward (flash-attention 2, deterministic).

// D[n*nh + h] = sum_j dO[n, h, j] O[n, h, j] (the CPU's rowsum(P * dP)): one warp per (token, head).
static __global__ void attn_bwd_dot_kernel(float *D, const bf16 *o, const bf16 *dout, long o_ld, long o_hs,
                                           int dv, long rows, int nh) {
    const int lane = threadIdx.x & 31;
    const long nw = (long)gridDim.x * (blockDim.x >> 5);
    for (long w = (long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); w < rows; w += nw) { // warp-uniform
        const long n = w / nh;
        const int h = (int)(w % nh);
        const bf16 *x = o + n * o_ld + h * o_hs, *y = dout + n * o_ld + h * o_hs;
        float acc = 0.0f;
        for (int j = lane; j < dv; j += 32) acc += ld_bf16(x + j) * ld_bf16(y + j);
        acc = warp_sum(acc);
        if (lane == 0) D[w] = acc;
    }
}

// Loads qn query rows from token row n0 of head h: Q, dO, and lse, D per row (0 past qn).
__device__ static void bwd_load_queries(const AttnArgs &a, const Smem &sm, long n0, int qn, int h) {
    const Geo &g = a.g;
    tile_load(sm.q, g.lk, a.q + n0 * a.q_ld + h * a.q_hs, a.q_ld, g.Br, qn, a.dqk, g.dkp);
    tile_load(sm.dout, g.lv, a.dout + n0 * a.o_ld + h * a.o_hs, a.o_ld, g.Br, qn, a.dv_dim, g.dvp);
    for (int r = threadIdx.x; r < g.Br; r += blockDim.x) {
        long i = (n0 + r) * a.nh + h;
        sm.m[r] = r < qn ? a.lse_in[i] : 0.0f;
        sm.l[r] = r < qn ? a.D[i] : 0.0f;
    }
}

// Loads kn key rows from token row n0 of head h: K and V.
__device__ static void bwd_load_keys(const AttnArgs &a, const Smem &sm, long n0, int kn, int h) {
    const Geo &g = a.g;
    tile_load(sm.k, g.lk, a.k + n0 * a.k_ld + h * a.k_hs, a.k_ld, g.Bc, kn, a.dqk, g.dkp);
    tile_load(sm.v, g.lv, a.v + n0 * a.v_ld + h * a.v_hs, a.v_ld, g.Bc, kn, a.dv_dim, g.dvp);
}

// With S = Q K^T and dP = dO V^T of the loaded tiles in shared memory:
// P = exp(scale*S - lse) where query r < qn sees key c (c < kn and c < diag + r)
// and 0 elsewhere, dS = P * (dP - D) * scale, as attn_core_bwd_padded; P kept only if want_p.
__device__ static void bwd_probs(const Smem &sm, const Geo &g, int qn, int kn, int diag, float scale, bool want_p) {
    for (int i = threadIdx.x; i < g.Br * g.Bc; i += blockDim.x) {
        const int r = i / g.Bc, c = i - r * g.Bc;
        float p = 0.0f;
        if (r < qn && c < kn && c < diag + r) p = expf(sm.s[r * g.ls + c] * scale - sm.m[r]);
        if (want_p) sm.p[r * g.lp + c] = __float2bfloat16_rn(p);
        sm.ds[r * g.lp + c] = __float2bfloat16_rn(p * (sm.dp[r * g.ls + c] - sm.l[r]) * scale);
    }
}

// S = Q K^T and dP = dO V^T for the loaded tiles.
__device__ static void bwd_scores(const Smem &sm, const Geo &g) {
    mma_tiles<wmma::row_major, wmma::col_major>(sm.s, g.ls, sm.q, g.lk, sm.k, g.lk, g.Br, g.Bc, g.dkp, false);
    mma_tiles<wmma::row_major, wmma::col_major>(sm.dp, g.ls, sm.dout, g.lv, sm.v, g.lv, g.Br, g.Bc, g.dvp, false);
}

// dV += P^T dO and dK += dS^T Q over the query tiles of rows [qbase + q_from, qbase + qlen)
// seeing the loaded key tile (key k0 of its segment: causal, or NO_MASK for a prefix's keys).
__device__ static void bwd_kv_queries(const AttnArgs &a, const Smem &sm, const Geo &g, int h, long qbase, int q_from,
                                      int qlen, int k0, int kn, bool causal) {
    for (int q0 = q_from; q0 < qlen; q0 += g.Br) {
        __syncthreads(); // the previous query tile's products are done
        bwd_load_queries(a, sm, qbase + q0, min(g.Br, qlen - q0), h);
        __syncthreads();
        bwd_scores(sm, g);
        __syncthreads();
        bwd_probs(sm, g, min(g.Br, qlen - q0), kn, causal ? q0 - k0 + 1 : NO_MASK, a.scale, true);
        __syncthreads();
        mma_tiles<wmma::col_major, wmma::row_major>(sm.acc_v, g.lvf, sm.p, g.lp, sm.dout, g.lv, g.Bc, g.dvp, g.Br,
                                                    true);
        mma_tiles<wmma::col_major, wmma::row_major>(sm.acc_k, g.lkf, sm.ds, g.lp, sm.q, g.lk, g.Bc, g.dkp, g.Br,
                                                    true);
    }
}

// dK and dV of one key tile: grid (nh, key tiles), one block sums over every
// query tile that sees its keys (so no atomics), in a fixed order: the
// segment's own queries (causal), then each segment naming it as prefix.
static __global__ void __launch_bounds__(ATTN_THREADS) attn_bwd_kv_kernel(AttnArgs a) {
    extern __shared__ __align__(128) unsigned char smem[];
    Smem sm;
    const Geo g = a.g;
    smem_carve(SM_BWD_KV, g, (uintptr_t)smem, &sm);
    const int h = blockIdx.x;
    int si, k0;
    tile_get(a, g.Bc, false, &si, &k0);
    const Seg sg = seg_get(a, si);
    const int kn = min(g.Bc, sg.len - k0);
    bwd_load_keys(a, sm, sg.start + k0, kn, h);
    for (int i = threadIdx.x; i < g.Bc * g.lkf; i += blockDim.x) sm.acc_k[i] = 0.0f;
    for (int i = threadIdx.x; i < g.Bc * g.lvf; i += blockDim.x) sm.acc_v[i] = 0.0f;
    bwd_kv_queries(a, sm, g, h, sg.start, k0 / g.Br * g.Br, sg.len, k0, kn, true); // queries before k0 see none
    for (int c = a.child ? a.child_start[si] : 0; a.child && c < a.child_start[si + 1]; c++) {
        const Seg ch = seg_get(a, a.child[c]);
        bwd_kv_queries(a, sm, g, h, ch.start, 0, ch.len, k0, kn, false);
    }
    __syncthreads();
    const size_t es = a.f32 ? sizeof(float) : sizeof(bf16);
    const long n0 = sg.start + k0;
    tile_store((char *)a.dk + (n0 * a.k_ld + h * a.k_hs) * es, a.f32, a.k_ld, sm.acc_k, g.lkf, kn, a.dqk);
    tile_store((char *)a.dv + (n0 * a.v_ld + h * a.v_hs) * es, a.f32, a.v_ld, sm.acc_v, g.lvf, kn, a.dv_dim);
}

// dQ += dS K over key rows [kbase, kbase + klen) for the loaded query tile.
__device__ static void bwd_q_keys(const AttnArgs &a, const Smem &sm, const Geo &g, int h, long kbase, int klen, int q0,
                                  int qn, bool causal) {
    for (int k0 = 0; k0 < klen; k0 += g.Bc) {
        const int kn = min(g.Bc, klen - k0);
        __syncthreads();
        bwd_load_keys(a, sm, kbase + k0, kn, h);
        __syncthreads();
        bwd_scores(sm, g);
        __syncthreads();
        bwd_probs(sm, g, qn, kn, causal ? q0 - k0 + 1 : NO_MASK, a.scale, false);
        __syncthreads();
        mma_tiles<wmma::row_major, wmma::row_major>(sm.acc_k, g.lkf, sm.ds, g.lp, sm.k, g.lk, g.Br, g.dkp, g.Bc, true);
    }
}

// dQ of one query tile: grid (nh, query tiles), longest first; recomputes
// S and dP per key tile (the price of no atomics).
static __global__ void __launch_bounds__(ATTN_THREADS) attn_bwd_q_kernel(AttnArgs a) {
    extern __shared__ __align__(128) unsigned char smem[];
    Smem sm;
    const Geo g = a.g;
    smem_carve(SM_BWD_Q, g, (uintptr_t)smem, &sm);
    const int h = blockIdx.x;
    int si, q0;
    tile_get(a, g.Br, true, &si, &q0);
    const Seg sg = seg_get(a, si);
    const int qn = min(g.Br, sg.len - q0);
    bwd_load_queries(a, sm, sg.start + q0, qn, h);
    for (int i = threadIdx.x; i < g.Br * g.lkf; i += blockDim.x) sm.acc_k[i] = 0.0f;
    bwd_q_keys(a, sm, g, h, sg.pstart, sg.plen, q0, qn, false);
    bwd_q_keys(a, sm, g, h, sg.start, min(sg.len, q0 + g.Br), q0, qn, true);
    __syncthreads();
    const size_t es = a.f32 ? sizeof(float) : sizeof(bf16);
    const long n0 = sg.start + q0;
    tile_store((char *)a.dq + (n0 * a.q_ld + h * a.q_hs) * es, a.f32, a.q_ld, sm.acc_k, g.lkf, qn, a.dqk);
}

// ---------------------------------------------------------------------------
// Decoding over the paged latent cache.

struct DecArgs {
    const bf16 *ckv, *kpe; // cache pools [npages, P, dc], [npages, P, dr]
    const int *pages;      // [nseq, max_pages]
    int npages, P, max_pages, dc, dr;
    const int *seq, *len; // [nq] (seq may be NULL)
    int max_len, chunk, nsplit, nh;
    const bf16 *qa, *qb;
    long qa_ld, qa_hs, qb_ld, qb_hs;
    float scale;
    float *part, *pm, *pl; // split partials: context [nq, nsplit, nh, dc], max and sum [nq, nsplit, nh]
    Geo g;
};

// Tokens [k0, k0 + kn) of sequence sq as rows [c_kv | k_pe | 0] of a [Bc, lk] tile (rows past kn zeroed).
__device__ static void dec_load_keys(const DecArgs &a, bf16 *s, int sq, int k0, int kn) {
    const Geo &g = a.g;
    const int nch = g.dkp >> 3;
    for (int i = threadIdx.x; i < g.Bc * nch; i += blockDim.x) {
        const int r = i / nch, c = (i - r * nch) << 3;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (r < kn && c < a.dc + a.dr) {
            const int t = k0 + r, pg = a.pages[(long)sq * a.max_pages + t / a.P];
            const long row = (long)pg * a.P + t % a.P;
            if (pg >= 0 && pg < a.npages && c < a.dc) v = *(const uint4 *)(a.ckv + row * a.dc + c);
            else if (pg >= 0 && pg < a.npages) v = *(const uint4 *)(a.kpe + row * a.dr + c - a.dc);
        }
        *(uint4 *)(s + r * g.lk + c) = v;
    }
}

// Heads [h0, h0 + Br) of query i as rows [qa | qb | 0] (heads past nh zeroed).
__device__ static void dec_load_queries(const DecArgs &a, bf16 *s, int i, int h0) {
    const Geo &g = a.g;
    const int nch = g.dkp >> 3;
    for (int j = threadIdx.x; j < g.Br * nch; j += blockDim.x) {
        const int r = j / nch, c = (j - r * nch) << 3, h = h0 + r;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (h < a.nh && c < a.dc) v = *(const uint4 *)(a.qa + i * a.qa_ld + h * a.qa_hs + c);
        else if (h < a.nh && c < a.dc + a.dr) v = *(const uint4 *)(a.qb + i * a.qb_ld + h * a.qb_hs + c - a.dc);
        *(uint4 *)(s + r * g.lk + c) = v;
    }
}

// One split of one query for a group of heads: grid (nq, head groups, splits).
// Leaves the unnormalised context, max and sum of its tokens for the combine.
static __global__ void __launch_bounds__(ATTN_THREADS) latent_split_kernel(DecArgs a) {
    extern __shared__ __align__(128) unsigned char smem[];
    Smem sm;
    const Geo g = a.g;
    smem_carve(SM_DECODE, g, (uintptr_t)smem, &sm);
    const int i = blockIdx.x, h0 = blockIdx.y * g.Br, split = blockIdx.z;
    const int L = min(a.len[i], a.max_len), t0 = split * a.chunk;
    if (t0 >= L) return; // the whole block: this split has no tokens
    const int t1 = min(L, t0 + a.chunk), sq = a.seq ? a.seq[i] : i, hn = min(g.Br, a.nh - h0);
    dec_load_queries(a, sm.q, i, h0);
    for (int j = threadIdx.x; j < g.Br * g.lvf; j += blockDim.x) sm.acc_v[j] = 0.0f;
    for (int r = threadIdx.x; r < g.Br; r += blockDim.x) sm.m[r] = -INFINITY, sm.l[r] = 0.0f;
    for (int k0 = t0; k0 < t1; k0 += g.Bc) {
        const int kn = min(g.Bc, t1 - k0);
        __syncthreads();
        dec_load_keys(a, sm.k, sq, k0, kn);
        __syncthreads();
        mma_tiles<wmma::row_major, wmma::col_major>(sm.s, g.ls, sm.q, g.lk, sm.k, g.lk, g.Br, g.Bc, g.dkp, false);
        __syncthreads();
        softmax_tile(sm.s, g.ls, sm.p, g.lp, sm.acc_v, g.lvf, g.dvp, sm.m, sm.l, g.Br, g.Bc, a.scale, kn, 1 << 29);
        __syncthreads();
        // context += P c_kv: the value is the first dc columns of the key tile
        mma_tiles<wmma::row_major, wmma::row_major>(sm.acc_v, g.lvf, sm.p, g.lp, sm.k, g.lk, g.Br, g.dvp, g.Bc, true);
    }
    __syncthreads();
    const long base = ((long)i * a.nsplit + split) * a.nh + h0;
    tile_store(a.part + base * a.dc, 1, a.dc, sm.acc_v, g.lvf, hn, a.dc);
    for (int r = threadIdx.x; r < hn; r += blockDim.x) a.pm[base + r] = sm.m[r], a.pl[base + r] = sm.l[r];
}

// ctx[i, h] = sum_s e^(m_s - M) part_s / sum_s e^(m_s - M) l_s over the splits
// that had tokens (M = max_s m_s), splits in order: one block per (query, head).
static __global__ void latent_combine_kernel(float *ctx, const float *part, const float *pm, const float *pl,
                                             const int *len, int max_len, int chunk, int nsplit, int nh, int dc) {
    const int i = blockIdx.x, h = blockIdx.y;
    const int L = min(len[i], max_len), ns = L > 0 ? (L + chunk - 1) / chunk : 0;
    float *out = ctx + ((long)i * nh + h) * dc;
    const long b0 = (long)i * nsplit * nh + h; // split s at b0 + s*nh
    float M = -INFINITY, den = 0.0f;
    for (int s = 0; s < ns; s++) M = fmaxf(M, pm[b0 + (long)s * nh]);
    for (int s = 0; s < ns; s++) den += expf(pm[b0 + (long)s * nh] - M) * pl[b0 + (long)s * nh];
    for (int j = threadIdx.x; j < dc; j += blockDim.x) {
        float acc = 0.0f;
        for (int s = 0; s < ns; s++) acc += expf(pm[b0 + (long)s * nh] - M) * part[(b0 + (long)s * nh) * dc + j];
        out[j] = ns ? acc / den : 0.0f;
    }
}

// One block per new token: its c_kv and k_pe rows into the page of its position.
static __global__ void latent_append_kernel(bf16 *ckv, bf16 *kpe, const int *pages, int npages, int P,
                                            int max_pages, int dc, int dr, const int *seq, const int *pos,
                                            const bf16 *src_c, long ldc, const bf16 *src_p, long ldp) {
    const int i = blockIdx.x, t = pos[i], sq = seq ? seq[i] : i;
    if (t < 0 || t >= max_pages * P || sq < 0) return;
    const int pg = pages[(long)sq * max_pages + t / P];
    if (pg < 0 || pg >= npages) return;
    const long row = (long)pg * P + t % P;
    for (int c = threadIdx.x * 8; c < dc; c += blockDim.x * 8)
        *(uint4 *)(ckv + row * dc + c) = *(const uint4 *)(src_c + i * ldc + c);
    for (int c = threadIdx.x * 8; c < dr; c += blockDim.x * 8)
        *(uint4 *)(kpe + row * dr + c) = *(const uint4 *)(src_p + i * ldp + c);
}

// ---------------------------------------------------------------------------
// Launchers.

static bool al16(const void *p) { return ((uintptr_t)p & 15) == 0; }
static bool m8(long x) { return x >= 0 && x % 8 == 0; }

static int attn_check(const char *fn, const CudaAttnLayout *L, float scale, Err *err) {
    if (!L || L->B < 0 || L->T < 0 || L->nh <= 0)
        return err_set(err, ERR_INPUT, "%s: bad shape B=%d T=%d nh=%d", fn, L ? L->B : -1, L ? L->T : -1,
                       L ? L->nh : -1);
    if (L->dqk <= 0 || L->dqk > 256 || L->dqk % 8 || L->dv <= 0 || L->dv > 256 || L->dv % 8)
        return err_set(err, ERR_INPUT, "%s: head dims dqk=%d dv=%d must be multiples of 8 in [8, 256]", fn, L->dqk,
                       L->dv);
    if (!m8(L->q_ld) || !m8(L->q_hs) || !m8(L->k_ld) || !m8(L->k_hs) || !m8(L->v_ld) || !m8(L->v_hs) ||
        !m8(L->o_ld) || !m8(L->o_hs))
        return err_set(err, ERR_INPUT,
                       "%s: strides must be multiples of 8 (q %ld/%ld k %ld/%ld v %ld/%ld o %ld/%ld)", fn, L->q_ld,
                       L->q_hs, L->k_ld, L->k_hs, L->v_ld, L->v_hs, L->o_ld, L->o_hs);
    if (!isfinite(scale)) return err_set(err, ERR_INPUT, "%s: softmax scale %g", fn, scale);
    return 0;
}

static AttnArgs attn_args(const CudaAttnLayout *L, float scale, const Geo &g) {
    AttnArgs a;
    memset(&a, 0, sizeof a);
    a.q_ld = L->q_ld, a.q_hs = L->q_hs, a.k_ld = L->k_ld, a.k_hs = L->k_hs;
    a.v_ld = L->v_ld, a.v_hs = L->v_hs, a.o_ld = L->o_ld, a.o_hs = L->o_hs;
    a.T = L->T, a.nh = L->nh, a.dqk = L->dqk, a.dv_dim = L->dv, a.scale = scale, a.g = g;
    a.B = L->B, a.ntile = (L->T + g.Br - 1) / g.Br; // padded query tiles per row (key tiles: set by the caller)
    return a;
}

// Picks the tiles of a kernel kind and allows its shared memory.
template <typename K>
static int attn_prepare(K kernel, SmemKind kind, int dk, int dv, int max_rows, const char *what, Geo *g,
                        size_t *bytes, Err *err) {
    if (geo_pick(kind, dk, dv, max_rows, g, bytes))
        return err_set(err, ERR_INPUT, "%s: dims %d/%d need more than %zu bytes of shared memory", what, dk, dv,
                       ATTN_SMEM_MAX);
    CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)*bytes), err);
    return 0;
}

// ---- packed batches: the work tables, built on the host per call ----

// Device scratch of a packed call: the segment table, the prefix -> segments
// lists, two tile tables (at most ntok/16 + nseg tiles each), and D [ntok, nh].
static size_t packed_table_ints(int ntok, int nseg) { return 5L * nseg + 1 + 4L * (ntok / 16 + nseg + 1); }

extern "C" size_t cuda_attn_packed_scratch_bytes(int ntok, int nseg, int nh) {
    size_t ints = (packed_table_ints(ntok, nseg) * sizeof(int) + 15) & ~(size_t)15;
    return ints + sizeof(float) * (size_t)ntok * nh;
}

static int seg_check(const char *fn, const CudaAttnLayout *L, const CudaAttnSeg *seg, int nseg, Err *err) {
    const long ntok = (long)L->B * L->T;
    if (L->B != 1 || nseg < 0 || (nseg > 0 && !seg))
        return err_set(err, ERR_INPUT, "%s: a packed layout has B = 1 and T = tokens (got B=%d), nseg=%d", fn, L->B,
                       nseg);
    for (int i = 0; i < nseg; i++) {
        const CudaAttnSeg *g = &seg[i];
        if (g->start < 0 || g->len < 0 || (long)g->start + g->len > ntok)
            return err_set(err, ERR_INPUT, "%s: segment %d [%d, +%d) outside the %ld tokens", fn, i, g->start, g->len,
                           ntok);
        if (g->prefix >= i || g->prefix < -1 || (g->prefix >= 0 && seg[g->prefix].prefix != -1))
            return err_set(err, ERR_INPUT, "%s: segment %d: prefix %d must be an earlier root segment", fn, i,
                           g->prefix);
    }
    return 0;
}

// Tiles of `rows` over every segment, into t [n, 2] (segment, first row), the
// costliest first (keys seen: prefix + causal own; for key tiles the queries
// that see them); returns n.
static int tiles_make(const CudaAttnSeg *seg, int nseg, const int *nchild_q, int rows, bool keys, int *t) {
    int n = 0;
    for (int s = 0; s < nseg; s++)
        for (int x0 = 0; x0 < seg[s].len; x0 += rows) t[2 * n] = s, t[2 * n + 1] = x0, n++;
    // by descending cost, ties in tile order
    struct TC { long cost; int i; };
    TC *tc = (TC *)malloc(sizeof(TC) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) {
        const CudaAttnSeg *g = &seg[t[2 * i]];
        const int x0 = t[2 * i + 1];
        long c;
        if (keys) c = (g->len - x0) + (long)nchild_q[t[2 * i]];
        else c = (g->prefix >= 0 ? seg[g->prefix].len : 0) + (long)(x0 + rows < g->len ? x0 + rows : g->len);
        tc[i] = TC{c, i};
    }
    qsort(tc, (size_t)n, sizeof(TC), [](const void *x, const void *y) {
        const TC *a = (const TC *)x, *b = (const TC *)y;
        return a->cost != b->cost ? (a->cost > b->cost ? -1 : 1) : (a->i - b->i);
    });
    int *copy = (int *)malloc(sizeof(int) * 2 * (size_t)(n ? n : 1));
    memcpy(copy, t, sizeof(int) * 2 * (size_t)n);
    for (int i = 0; i < n; i++) t[2 * i] = copy[2 * tc[i].i], t[2 * i + 1] = copy[2 * tc[i].i + 1];
    free(copy), free(tc);
    return n;
}

// Fills a's packed tables in scratch (uploaded on s): segments, children, and
// the tile tables of fwd/dQ rows qrows (*nq) and of key rows krows (*nk; 0 = none).
static int packed_tables(cudaStream_t st, const CudaAttnSeg *seg, int nseg, int ntok, int qrows, int krows,
                         void *scratch, AttnArgs *a, int **qtab, int *nq, int **ktab, int *nk, Err *err) {
    const size_t nints = packed_table_ints(ntok, nseg);
    int *h = (int *)calloc(nints, sizeof(int));
    int *hseg = h, *hcs = hseg + 3 * nseg, *hch = hcs + nseg + 1, *hq = hch + nseg, *hk = hq + 2 * (ntok / 16 + nseg + 1);
    int *nchq = (int *)calloc((size_t)nseg + 1, sizeof(int)); // query rows of the segments naming s as prefix
    for (int s = 0; s < nseg; s++) {
        hseg[3 * s] = seg[s].start, hseg[3 * s + 1] = seg[s].len, hseg[3 * s + 2] = seg[s].prefix;
        if (seg[s].prefix >= 0) hcs[seg[s].prefix + 1]++, nchq[seg[s].prefix] += seg[s].len;
    }
    for (int s = 0; s < nseg; s++) hcs[s + 1] += hcs[s];
    int *fill = (int *)calloc((size_t)nseg + 1, sizeof(int));
    for (int s = 0; s < nseg; s++) // in index order: the prefix's gradient sums in a fixed order
        if (seg[s].prefix >= 0) hch[hcs[seg[s].prefix] + fill[seg[s].prefix]++] = s;
    *nq = tiles_make(seg, nseg, nchq, qrows, false, hq);
    *nk = krows ? tiles_make(seg, nseg, nchq, krows, true, hk) : 0;
    free(fill), free(nchq);
    int *d = (int *)scratch;
    cudaError_t e = cudaMemcpyAsync(d, h, nints * sizeof(int), cudaMemcpyHostToDevice, st);
    free(h);
    CUDA_TRY(e, err);
    a->seg = d, a->child_start = d + 3 * nseg, a->child = a->child_start + nseg + 1;
    *qtab = (int *)a->child + nseg, *ktab = *qtab + 2 * (ntok / 16 + nseg + 1);
    return 0;
}

static int grid_check(const char *fn, long tiles, Err *err) {
    if (tiles > 65535) return err_set(err, ERR_INPUT, "%s: %ld tiles of work, more than a grid's 65535", fn, tiles);
    return 0;
}

// The forward of a padded (seg NULL) or packed batch.
static int attn_fwd_run(cudaStream_t s, const CudaAttnLayout *L, const CudaAttnSeg *seg, int nseg, float scale,
                        const cuda_bf16 *q, const cuda_bf16 *k, const cuda_bf16 *v, cuda_bf16 *o, float *lse,
                        void *scratch, Err *err) {
    if (attn_check("cuda_attn_fwd", L, scale, err)) return -1;
    if (!al16(q) || !al16(k) || !al16(v))
        return err_set(err, ERR_INPUT, "cuda_attn_fwd: q, k, v must be 16-byte aligned");
    if (seg && seg_check("cuda_attn_fwd_packed", L, seg, nseg, err)) return -1;
    if (L->B == 0 || L->T == 0 || (seg && nseg == 0)) return 0;
    Geo g;
    size_t bytes;
    if (attn_prepare(attn_fwd_kernel, SM_FWD, L->dqk, L->dv, 64, "cuda_attn_fwd", &g, &bytes, err)) return -1;
    AttnArgs a = attn_args(L, scale, g);
    a.q = (const bf16 *)q, a.k = (const bf16 *)k, a.v = (const bf16 *)v, a.out = (bf16 *)o, a.lse = lse;
    long tiles = (long)L->B * a.ntile;
    if (seg) {
        int *qt, *kt, nq, nk;
        if (packed_tables(s, seg, nseg, L->T, g.Br, 0, scratch, &a, &qt, &nq, &kt, &nk, err)) return -1;
        a.tiles = qt, tiles = nq;
    }
    if (grid_check("cuda_attn_fwd", tiles, err)) return -1;
    if (!tiles) return 0;
    attn_fwd_kernel<<<dim3(L->nh, (unsigned)tiles), ATTN_THREADS, bytes, s>>>(a);
    CUDA_LAUNCHED("attn_fwd", err);
    return 0;
}

extern "C" int cuda_attn_fwd(cudaStream_t s, const CudaAttnLayout *L, float scale, const cuda_bf16 *q,
                             const cuda_bf16 *k, const cuda_bf16 *v, cuda_bf16 *o, float *lse, Err *err) {
    return attn_fwd_run(s, L, NULL, 0, scale, q, k, v, o, lse, NULL, err);
}

extern "C" int cuda_attn_fwd_packed(cudaStream_t s, const CudaAttnLayout *L, const CudaAttnSeg *seg, int nseg,
                                    float scale, const cuda_bf16 *q, const cuda_bf16 *k, const cuda_bf16 *v,
                                    cuda_bf16 *o, float *lse, void *scratch, Err *err) {
    if (!seg && nseg) return err_set(err, ERR_INPUT, "cuda_attn_fwd_packed: no segments given");
    static const CudaAttnSeg none = {0, 0, -1};
    return attn_fwd_run(s, L, seg ? seg : &none, nseg, scale, q, k, v, o, lse, scratch, err);
}

extern "C" size_t cuda_attn_bwd_scratch_bytes(const CudaAttnLayout *L) {
    return sizeof(float) * (size_t)L->B * L->T * L->nh;
}

static int attn_bwd_run(cudaStream_t s, const CudaAttnLayout *L, const CudaAttnSeg *seg, int nseg, float scale,
                        const cuda_bf16 *q, const cuda_bf16 *k, const cuda_bf16 *v, const cuda_bf16 *o,
                        const float *lse, const cuda_bf16 *dout, void *dq, void *dk, void *dv, CudaDtype gtype,
                        void *scratch, Err *err) {
    if (attn_check("cuda_attn_bwd", L, scale, err)) return -1;
    if (!al16(q) || !al16(k) || !al16(v) || !al16(dout))
        return err_set(err, ERR_INPUT, "cuda_attn_bwd: q, k, v, dout must be 16-byte aligned");
    if (gtype != CUDA_F32 && gtype != CUDA_BF16)
        return err_set(err, ERR_INPUT, "cuda_attn_bwd: gradient type %d", (int)gtype);
    if (seg && seg_check("cuda_attn_bwd_packed", L, seg, nseg, err)) return -1;
    if (L->B == 0 || L->T == 0 || (seg && nseg == 0)) return 0;
    Geo gkv, gq;
    size_t bkv, bq;
    if (attn_prepare(attn_bwd_kv_kernel, SM_BWD_KV, L->dqk, L->dv, 64, "cuda_attn_bwd", &gkv, &bkv, err) ||
        attn_prepare(attn_bwd_q_kernel, SM_BWD_Q, L->dqk, L->dv, 64, "cuda_attn_bwd", &gq, &bq, err))
        return -1;
    const long rows = (long)L->B * L->T * L->nh;
    float *D = (float *)scratch;
    AttnArgs a = attn_args(L, scale, gkv);
    int *qt = NULL, *kt = NULL, nq = 0, nk = 0;
    if (seg) {
        const size_t ints = (packed_table_ints(L->T, nseg) * sizeof(int) + 15) & ~(size_t)15;
        D = (float *)((char *)scratch + ints);
        if (packed_tables(s, seg, nseg, L->T, gq.Br, gkv.Bc, scratch, &a, &qt, &nq, &kt, &nk, err)) return -1;
    }
    const long kvtiles = seg ? nk : (long)L->B * ((L->T + gkv.Bc - 1) / gkv.Bc);
    const long qtiles = seg ? nq : (long)L->B * ((L->T + gq.Br - 1) / gq.Br);
    if (grid_check("cuda_attn_bwd", kvtiles, err) || grid_check("cuda_attn_bwd", qtiles, err)) return -1;
    attn_bwd_dot_kernel<<<cuda_blocks(rows * 32, ATTN_THREADS), ATTN_THREADS, 0, s>>>(
        D, (const bf16 *)o, (const bf16 *)dout, L->o_ld, L->o_hs, L->dv, rows, L->nh);
    CUDA_LAUNCHED("attn_bwd (D)", err);
    a.q = (const bf16 *)q, a.k = (const bf16 *)k, a.v = (const bf16 *)v, a.o = (const bf16 *)o;
    a.dout = (const bf16 *)dout, a.lse_in = lse, a.D = D, a.dq = dq, a.dk = dk, a.dv = dv;
    a.f32 = gtype == CUDA_F32;
    a.ntile = (L->T + gkv.Bc - 1) / gkv.Bc, a.tiles = kt;
    if (kvtiles) attn_bwd_kv_kernel<<<dim3(L->nh, (unsigned)kvtiles), ATTN_THREADS, bkv, s>>>(a);
    CUDA_LAUNCHED("attn_bwd (dK, dV)", err);
    a.g = gq, a.ntile = (L->T + gq.Br - 1) / gq.Br, a.tiles = qt;
    if (qtiles) attn_bwd_q_kernel<<<dim3(L->nh, (unsigned)qtiles), ATTN_THREADS, bq, s>>>(a);
    CUDA_LAUNCHED("attn_bwd (dQ)", err);
    return 0;
}

extern "C" int cuda_attn_bwd(cudaStream_t s, const CudaAttnLayout *L, float scale, const cuda_bf16 *q,
                             const cuda_bf16 *k, const cuda_bf16 *v, const cuda_bf16 *o, const float *lse,
                             const cuda_bf16 *dout, void *dq, void *dk, void *dv, CudaDtype gtype, void *scratch,
                             Err *err) {
    return attn_bwd_run(s, L, NULL, 0, scale, q, k, v, o, lse, dout, dq, dk, dv, gtype, scratch, err);
}

extern "C" int cuda_attn_bwd_packed(cudaStream_t s, const CudaAttnLayout *L, const CudaAttnSeg *seg, int nseg,
                                    float scale, const cuda_bf16 *q, const cuda_bf16 *k, const cuda_bf16 *v,
                                    const cuda_bf16 *o, const float *lse, const cuda_bf16 *dout, void *dq, void *dk,
                                    void *dv, CudaDtype gtype, void *scratch, Err *err) {
    if (!seg && nseg) return err_set(err, ERR_INPUT, "cuda_attn_bwd_packed: no segments given");
    static const CudaAttnSeg none = {0, 0, -1};
    return attn_bwd_run(s, L, seg ? seg : &none, nseg, scale, q, k, v, o, lse, dout, dq, dk, dv, gtype, scratch, err);
}

// How a decode launch is cut: tiles (Br heads x Bc tokens), head groups, and
// splits of `chunk` tokens (a multiple of Bc), enough for ~2 waves of blocks.
struct DecPlan {
    Geo g;
    size_t bytes;
    int nhg, chunk, nsplit;
};

static int latent_plan(int nq, int nh, int dc, int dr, int max_len, DecPlan *p) {
    if (geo_pick(SM_DECODE, dc + dr, dc, round16(nh), &p->g, &p->bytes)) return -1;
    const int Bc = p->g.Bc;
    p->nhg = (nh + p->g.Br - 1) / p->g.Br;
    long per_split = (long)nq * p->nhg;
    int want = (int)((DECODE_TARGET_BLOCKS + per_split - 1) / per_split);
    int most = (max_len + Bc - 1) / Bc; // one tile per split at most
    int ns = want < most ? want : most;
    if (ns < 1) ns = 1;
    int per = (max_len + ns - 1) / ns;
    p->chunk = per < Bc ? Bc : (per + Bc - 1) / Bc * Bc;
    p->nsplit = max_len > 0 ? (max_len + p->chunk - 1) / p->chunk : 1;
    return 0;
}

static int latent_check(const char *fn, const CudaLatentCache *c, Err *err) {
    if (!c || c->dc <= 0 || c->dc % 8 || c->dr < 0 || c->dr % 8 || c->P <= 0 || c->max_pages <= 0 || c->npages < 0)
        return err_set(err, ERR_INPUT, "%s: bad cache dc=%d dr=%d page=%d max_pages=%d npages=%d", fn,
                       c ? c->dc : -1, c ? c->dr : -1, c ? c->P : -1, c ? c->max_pages : -1, c ? c->npages : -1);
    if (!al16(c->ckv) || !al16(c->kpe))
        return err_set(err, ERR_INPUT, "%s: cache pools must be 16-byte aligned", fn);
    return 0;
}

// Enough for every call with at most nq queries and max_len: fewer queries get more
// splits, so the product nq' * nsplit is not monotonic in nq'; nsplit is at most the
// plan's ns, itself min(want(nq'), tiles of max_len), and grows with max_len.
extern "C" size_t cuda_latent_attend_scratch_bytes(int nq, int nh, int dc, int dr, int max_len) {
    DecPlan p;
    if (nq <= 0 || nh <= 0 || dc <= 0 || max_len < 0 || latent_plan(nq, nh, dc, dr, max_len, &p)) return 0;
    const int most = max_len > 0 ? (max_len + p.g.Bc - 1) / p.g.Bc : 1;
    long units = 0;
    for (int q = 1; q <= nq; q++) {
        long per_split = (long)q * p.nhg, want = (DECODE_TARGET_BLOCKS + per_split - 1) / per_split;
        long ns = want < most ? want : most, u = (long)q * (ns < 1 ? 1 : ns);
        units = u > units ? u : units;
    }
    return sizeof(float) * (size_t)units * nh * (dc + 2);
}

extern "C" int cuda_latent_attend(cudaStream_t s, const CudaLatentCache *c, int nq, const int *seq, const int *len,
                                  int max_len, int nh, float scale, const cuda_bf16 *qa, long qa_ld, long qa_hs,
                                  const cuda_bf16 *qb, long qb_ld, long qb_hs, float *ctx, void *scratch,
                                  Err *err) {
    if (latent_check("cuda_latent_attend", c, err)) return -1;
    if (nq < 0 || nh <= 0 || max_len < 0 || (long)max_len > (long)c->max_pages * c->P || !isfinite(scale))
        return err_set(err, ERR_INPUT, "cuda_latent_attend: nq=%d nh=%d max_len=%d (table holds %ld) scale %g", nq,
                       nh, max_len, (long)c->max_pages * c->P, scale);
    if (!m8(qa_ld) || !m8(qa_hs) || !m8(qb_ld) || !m8(qb_hs) || !al16(qa) || !al16(qb))
        return err_set(err, ERR_INPUT,
                       "cuda_latent_attend: query strides (%ld/%ld, %ld/%ld) must be multiples of 8, pointers "
                       "16-byte aligned", qa_ld, qa_hs, qb_ld, qb_hs);
    if (nq == 0) return 0;
    DecPlan p;
    if (latent_plan(nq, nh, c->dc, c->dr, max_len, &p))
        return err_set(err, ERR_INPUT, "cuda_latent_attend: dc=%d dr=%d need more than %zu bytes of shared memory",
                       c->dc, c->dr, ATTN_SMEM_MAX);
    CUDA_TRY(cudaFuncSetAttribute(latent_split_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)p.bytes),
             err);
    DecArgs a;
    memset(&a, 0, sizeof a);
    a.ckv = (const bf16 *)c->ckv, a.kpe = (const bf16 *)c->kpe, a.pages = c->pages;
    a.npages = c->npages, a.P = c->P, a.max_pages = c->max_pages, a.dc = c->dc, a.dr = c->dr;
    a.seq = seq, a.len = len, a.max_len = max_len, a.chunk = p.chunk, a.nsplit = p.nsplit, a.nh = nh;
    a.qa = (const bf16 *)qa, a.qb = (const bf16 *)qb, a.qa_ld = qa_ld, a.qa_hs = qa_hs, a.qb_ld = qb_ld;
    a.qb_hs = qb_hs, a.scale = scale, a.g = p.g;
    const long nparts = (long)nq * p.nsplit * nh;
    a.part = (float *)scratch, a.pm = a.part + nparts * c->dc, a.pl = a.pm + nparts;
    if (max_len > 0) {
        latent_split_kernel<<<dim3(nq, p.nhg, p.nsplit), ATTN_THREADS, p.bytes, s>>>(a);
        CUDA_LAUNCHED("latent_attend (splits)", err);
    }
    latent_combine_kernel<<<dim3(nq, nh), 128, 0, s>>>(ctx, a.part, a.pm, a.pl, len, max_len, p.chunk, p.nsplit, nh,
                                                       c->dc);
    CUDA_LAUNCHED("latent_attend (combine)", err);
    return 0;
}

extern "C" int cuda_latent_append(cudaStream_t s, const CudaLatentCache *c, int n, const int *seq, const int *pos,
                                  const cuda_bf16 *ckv, long ckv_ld, const cuda_bf16 *kpe, long kpe_ld, Err *err) {
    if (latent_check("cuda_latent_append", c, err)) return -1;
    if (n < 0 || !m8(ckv_ld) || !m8(kpe_ld) || !al16(ckv) || !al16(kpe))
        return err_set(err, ERR_INPUT,
                       "cuda_latent_append: n=%d, leading dims %ld/%ld must be multiples of 8, rows 16-byte aligned",
                       n, ckv_ld, kpe_ld);
    if (n == 0) return 0;
    latent_append_kernel<<<n, 64, 0, s>>>((bf16 *)c->ckv, (bf16 *)c->kpe, c->pages, c->npages, c->P, c->max_pages,
                                          c->dc, c->dr, seq, pos, (const bf16 *)ckv, ckv_ld, (const bf16 *)kpe, kpe_ld);
    CUDA_LAUNCHED("latent_append", err);
    return 0;
}
