/* gemm: see gemm.h.
 *
 * Loop order (GotoBLAS): op(B) is packed into NR-wide panels once per call,
 * not once per row tile: a serial call packs one KC x NC block at a time and
 * runs every MC-row tile of C against it while it sits in cache; a parallel
 * call packs up to KSUP rows x TEAM_BUF floats at once, shared by the team,
 * so it has two barriers per chunk (usually one chunk, and the second barrier
 * is the end of the parallel region), then threads take
 * (row tile, NC block) pairs. op(A) is not packed: the micro-kernel broadcasts
 * its elements straight from A (rows of A, or columns for A^T), except a last
 * partial 6-row panel, which is copied zero-padded. Each C element sums its K
 * products in the same order on either path, so results are bitwise the same
 * at any thread count (and the same as the packing-per-tile version before).
 * gemm_weight (linear_fwd) can keep each weight packed whole between
 * gemm_weights_frozen(1) and (0) (a rollout), in the serial order's layout,
 * and then packs nothing per call; the same tiles in the same order, so the
 * same bits. */
#include "gemm.h"
#include "simd.h"

#include <omp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARGS(...) __VA_ARGS__

enum { MR = 6, NR = 2 * VW, KC = 256, MC = 96, NC = 256 };
/* A parallel call packs B for up to KSUP rows of K and TEAM_BUF floats (4 MB) at once. */
enum { KSUP = 4096, TEAM_BUF = 1 << 20 };

/* acc = op(A) micro-panel [MR][kc] x packed B panel [kc][NR]; element (r, k)
 * of the A panel is a[r*rs + k*cs]. C tile = (store ? 0 : C) + alpha*acc
 * (mr x nr valid). Inlined into each caller so rs/cs are constants where
 * they can be. store replaces the memset of a beta = 0 product: 0 + x has the
 * same bits as the old memset-then-add. */
static inline __attribute__((always_inline)) void micro_core(int kc, const float *restrict a, long rs, long cs,
                                                             const float *restrict b, float *c, int ldc, int mr,
                                                             int nr, float alpha, int store) {
    vf acc[MR][2];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = (vf){0};
    for (int k = 0; k < kc; k++) {
        vf b0 = vload(b + k * NR), b1 = vload(b + k * NR + VW);
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            vf av = vbcast(a[r * rs + k * cs]);
            acc[r][0] += av * b0;
            acc[r][1] += av * b1;
        }
    }
    vf al = vbcast(alpha);
    if (mr == MR && nr == NR) {
        for (int r = 0; r < MR; r++) {
            float *cr = c + (size_t)r * ldc;
            vf c0 = store ? (vf){0} : vload(cr), c1 = store ? (vf){0} : vload(cr + VW);
            vstore(cr, c0 + al * acc[r][0]);
            vstore(cr + VW, c1 + al * acc[r][1]);
        }
        return;
    }
    float tmp[MR * NR];
    for (int r = 0; r < MR; r++) {
        vstore(tmp + r * NR, acc[r][0]);
        vstore(tmp + r * NR + VW, acc[r][1]);
    }
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nr; j++) {
            float *cj = c + (size_t)r * ldc + j;
            *cj = (store ? 0.0f : *cj) + alpha * tmp[r * NR + j];
        }
}

/* The three A layouts, each a specialised copy of the micro-kernel. */
static void micro_packed(int kc, const float *a, const float *b, float *c, int ldc, int mr, int nr, float alpha,
                         int store) {
    micro_core(kc, a, 1, MR, b, c, ldc, mr, nr, alpha, store);
}
static void micro_rows(int kc, const float *a, long lda, const float *b, float *c, int ldc, int nr, float alpha,
                       int store) {
    micro_core(kc, a, lda, 1, b, c, ldc, MR, nr, alpha, store);
}
static void micro_cols(int kc, const float *a, long lda, const float *b, float *c, int ldc, int nr, float alpha,
                       int store) {
    micro_core(kc, a, 1, lda, b, c, ldc, MR, nr, alpha, store);
}

/* Ap[k][r] = op(A)(i0 + r, k0 + k) for r < mr, zero-padded to MR rows. */
static void pack_a_edge(float *Ap, int transA, const float *A, int lda, int i0, int mr, int k0, int kc) {
    for (int k = 0; k < kc; k++)
        for (int r = 0; r < MR; r++) {
            size_t i = (size_t)(i0 + r), kk = (size_t)(k0 + k);
            Ap[k * MR + r] = r >= mr ? 0.0f : transA ? A[kk * lda + i] : A[i * lda + kk];
        }
}

/* Transposes the VW x VW block t[i][j] in place, one index bit per round:
 * round d swaps the off-diagonal d x d sub-blocks (two-source shuffles). */
#define SWAP_ROUND(d, LO, HI)                                                                                         \
    for (int i = 0; i < VW; i++)                                                                                      \
        if (!(i & (d))) {                                                                                             \
            vf a = t[i], b = t[i + (d)];                                                                              \
            t[i] = __builtin_shufflevector(a, b, LO), t[i + (d)] = __builtin_shufflevector(a, b, HI);                 \
        }
static inline void transpose_block(vf t[VW]) {
#if VW == 16
    SWAP_ROUND(8, ARGS(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23),
               ARGS(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31))
    SWAP_ROUND(4, ARGS(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27),
               ARGS(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31))
    SWAP_ROUND(2, ARGS(0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29),
               ARGS(2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31))
    SWAP_ROUND(1, ARGS(0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30),
               ARGS(1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31))
#else
    SWAP_ROUND(4, ARGS(0, 1, 2, 3, 8, 9, 10, 11), ARGS(4, 5, 6, 7, 12, 13, 14, 15))
    SWAP_ROUND(2, ARGS(0, 1, 8, 9, 4, 5, 12, 13), ARGS(2, 3, 10, 11, 6, 7, 14, 15))
    SWAP_ROUND(1, ARGS(0, 8, 2, 10, 4, 12, 6, 14), ARGS(1, 9, 3, 11, 5, 13, 7, 15))
#endif
}

/* One NR-wide panel: Bp[k][j] = op(B)(k0 + k, j0 + j) for j < nr, zero-padded.
 * B^T (a weight in [out, in] layout) is transposed VW x VW blocks at a time in
 * registers; this copy runs once per weight and call, so for the few rows of a
 * decode step it is a large share of the product. */
static void pack_b_panel(float *dst, int transB, const float *B, int ldb, int k0, int kc, int j0, int nr) {
    if (!transB) {
        for (int k = 0; k < kc; k++) {
            const float *src = B + (size_t)(k0 + k) * ldb + j0;
            if (nr == NR) {
                vstore(dst + k * NR, vload(src)), vstore(dst + k * NR + VW, vload(src + VW));
                continue;
            }
            memcpy(dst + k * NR, src, nr * sizeof(float));
            for (int j = nr; j < NR; j++) dst[k * NR + j] = 0.0f;
        }
        return;
    }
    const float *src = B + (size_t)j0 * ldb + k0;
    const int kv = kc / VW * VW; /* k below kv: whole VW x VW blocks */
    int k;
    for (int jb = 0; jb < NR; jb += VW) { /* VW rows of B at a time: VW streams (a cold weight comes from L3) */
        if (jb + VW <= nr) {
            for (k = 0; k < kv; k += VW) {
                vf t[VW];
                for (int j = 0; j < VW; j++) {
                    const float *r = src + (size_t)(jb + j) * ldb + k;
                    __builtin_prefetch(r + 2 * VW);
                    t[j] = vload(r);
                }
                transpose_block(t);
                for (int q = 0; q < VW; q++) vstore(dst + (k + q) * NR + jb, t[q]);
            }
            continue;
        }
        for (k = 0; k < kv; k++)
            for (int j = jb; j < jb + VW; j++) dst[k * NR + j] = j < nr ? src[(size_t)j * ldb + k] : 0.0f;
    }
    for (k = kv; k < kc; k++)
        for (int j = 0; j < NR; j++) dst[k * NR + j] = j < nr ? src[(size_t)j * ldb + k] : 0.0f;
}

/* Small M: one dot product (or axpy) per output, vectorised along K or N. */
static void gemm_small_m(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                         const float *B, int ldb, float *C, int ldc) {
    int par = !omp_in_parallel() && (long)N * K > 32768;
    if (transB) {
#pragma omp parallel for if (par) schedule(static)
        for (int j = 0; j < N; j++) {
            const float *bj = B + (size_t)j * ldb;
            for (int i = 0; i < M; i++) {
                float s = 0.0f;
                if (!transA) {
                    const float *ai = A + (size_t)i * lda;
#pragma omp simd reduction(+ : s)
                    for (int k = 0; k < K; k++) s += ai[k] * bj[k];
                } else {
                    for (int k = 0; k < K; k++) s += A[(size_t)k * lda + i] * bj[k];
                }
                C[(size_t)i * ldc + j] += alpha * s;
            }
        }
        return;
    }
    int nchunk = (N + 255) / 256;
#pragma omp parallel for if (par) schedule(static)
    for (int ch = 0; ch < nchunk; ch++) {
        int j0 = ch * 256, j1 = j0 + 256 < N ? j0 + 256 : N;
        for (int i = 0; i < M; i++) {
            float *ci = C + (size_t)i * ldc;
            for (int k = 0; k < K; k++) {
                float a = alpha * (transA ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]);
                if (a == 0.0f) continue;
                const float *bk = B + (size_t)k * ldb;
#pragma omp simd
                for (int j = j0; j < j1; j++) ci[j] += a * bk[j];
            }
        }
    }
}

/* Per-thread packing buffers (b: the shared B block of a call this thread
 * started; a: this thread's edge A panel), freed by the key's destructor when
 * an OpenMP thread exits (a _Thread_local pointer would leak them). */
typedef struct Scratch { float *buf[2]; size_t cap[2]; } Scratch;
enum { SCRATCH_A, SCRATCH_B };
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p) {
    Scratch *s = p;
    free(s->buf[0]), free(s->buf[1]);
    free(s);
}
static void scratch_key_make(void) { pthread_key_create(&scratch_key, scratch_free); }

static float *scratch(int which, size_t n) {
    pthread_once(&scratch_once, scratch_key_make);
    Scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) abort();
        pthread_setspecific(scratch_key, s);
    }
    if (n > s->cap[which]) {
        free(s->buf[which]);
        s->buf[which] = aligned_alloc(64, ((n * sizeof(float)) + 63) & ~(size_t)63);
        if (!s->buf[which]) abort(); /* a few hundred KB; nothing sensible to do without it */
        s->cap[which] = n;
    }
    return s->buf[which];
}

typedef struct Gemm {
    int transA, transB, M, N, K;
    float alpha;
    const float *A, *B;
    int lda, ldb, ldc;
    float *C;
    int store; /* beta = 0: the first K block writes C instead of adding to it */
} Gemm;

/* C rows [i0, i0+MC) x cols [j0, j0+nc) (+)= op(A) rows x the packed block Bp
 * (op(B) rows [k0, k0+kc)). */
static void gemm_tile(const Gemm *g, const float *Bp, int i0, int k0, int kc, int j0, int nc) {
    const int mc = g->M - i0 < MC ? g->M - i0 : MC, mfull = mc / MR * MR, store = g->store && k0 == 0;
    float *Ap = NULL;
    if (mfull < mc) { /* partial last panel: copy it, zero-padded */
        Ap = scratch(SCRATCH_A, (size_t)KC * MR);
        pack_a_edge(Ap, g->transA, g->A, g->lda, i0 + mfull, mc - mfull, k0, kc);
    }
    for (int jp = 0; jp < nc; jp += NR) {
        const int nr = nc - jp < NR ? nc - jp : NR;
        const float *bp = Bp + (size_t)jp * kc;
        float *c = g->C + (size_t)i0 * g->ldc + j0 + jp;
        for (int ip = 0; ip < mfull; ip += MR) {
            float *ci = c + (size_t)ip * g->ldc;
            if (g->transA)
                micro_cols(kc, g->A + (size_t)k0 * g->lda + i0 + ip, g->lda, bp, ci, g->ldc, nr, g->alpha, store);
            else
                micro_rows(kc, g->A + (size_t)(i0 + ip) * g->lda + k0, g->lda, bp, ci, g->ldc, nr, g->alpha, store);
        }
        if (Ap) micro_packed(kc, Ap, bp, c + (size_t)mfull * g->ldc, g->ldc, mc - mfull, nr, g->alpha, store);
    }
}

/* Serial: B packed one KC x NC block at a time and kept in cache while every
 * row tile runs against it. */
static void gemm_serial(const Gemm *g, float *Bp) {
    const int mt = (g->M + MC - 1) / MC;
    for (int j0 = 0; j0 < g->N; j0 += NC) {
        const int nc = g->N - j0 < NC ? g->N - j0 : NC, np = (nc + NR - 1) / NR;
        for (int k0 = 0; k0 < g->K; k0 += KC) {
            const int kc = g->K - k0 < KC ? g->K - k0 : KC;
            for (int p = 0; p < np; p++)
                pack_b_panel(Bp + (size_t)p * NR * kc, g->transB, g->B, g->ldb, k0, kc, j0 + p * NR,
                             nc - p * NR < NR ? nc - p * NR : NR);
            for (int t = 0; t < mt; t++) gemm_tile(g, Bp, t * MC, k0, kc, j0, nc);
        }
    }
}

/* Columns of B packed per barrier in a parallel call for kn rows of K: as
 * many NC blocks as fit in TEAM_BUF floats (at least one). */
static int team_cols(int N, int kn) {
    int kp = (kn + KC - 1) / KC * KC, ns = TEAM_BUF / kp / NC * NC;
    ns = ns < NC ? NC : ns;
    return ns < N ? ns : N;
}

/* Team (every thread of a parallel region calls it): B is packed for a chunk
 * of up to KSUP rows of K and as many columns as fit in the buffer, so a call
 * has few barriers (a thread descheduled on a shared machine stalls every
 * barrier, and usually it has two); then each thread takes whole (row tile,
 * NC block) pairs and runs their K blocks in order. */
static void gemm_team(const Gemm *g, float *Bp) {
    const int mt = (g->M + MC - 1) / MC;
    for (int ks = 0; ks < g->K; ks += KSUP) {
        const int kn = g->K - ks < KSUP ? g->K - ks : KSUP, nkb = (kn + KC - 1) / KC, ns = team_cols(g->N, kn);
        for (int js = 0; js < g->N; js += ns) {
            const int nsc = g->N - js < ns ? g->N - js : ns, np = (nsc + NR - 1) / NR, nb = (nsc + NC - 1) / NC;
            const size_t blk = (size_t)KC * np * NR; /* floats per packed KC block of the chunk */
#pragma omp for schedule(static)
            for (int q = 0; q < nkb * np; q++) {
                int kb = q / np, p = q % np, k0 = ks + kb * KC, kc = g->K - k0 < KC ? g->K - k0 : KC;
                pack_b_panel(Bp + kb * blk + (size_t)p * NR * kc, g->transB, g->B, g->ldb, k0, kc, js + p * NR,
                             nsc - p * NR < NR ? nsc - p * NR : NR);
            }
#pragma omp for schedule(dynamic, 1) nowait
            for (int w = 0; w < mt * nb; w++) {
                int t = w / nb, j0 = js + (w % nb) * NC, nc = js + nsc - j0 < NC ? js + nsc - j0 : NC;
                for (int kb = 0; kb < nkb; kb++) {
                    int k0 = ks + kb * KC, kc = g->K - k0 < KC ? g->K - k0 : KC;
                    gemm_tile(g, Bp + kb * blk + (size_t)(j0 - js) * kc, t * MC, k0, kc, j0, nc);
                }
            }
            if (js + ns < g->N || ks + KSUP < g->K) { /* Bp is packed again: wait for every tile */
#pragma omp barrier
            }
        }
    }
}

/* Whole op(B) packed once, for gemm_weight: block (j0, k0) of the serial
 * order at j0 * K + np * NR * k0 (np: panels of the NC block; NC is a multiple
 * of NR, so the blocks before j0 hold j0 columns of K rows each). */
static size_t prepacked_floats(int N, int K) { return (size_t)((N + NR - 1) / NR) * NR * K; }

static void prepack(float *Bf, int transB, const float *B, int ldb, int N, int K) {
    for (int j0 = 0; j0 < N; j0 += NC) {
        const int nc = N - j0 < NC ? N - j0 : NC, np = (nc + NR - 1) / NR;
        for (int k0 = 0; k0 < K; k0 += KC) {
            const int kc = K - k0 < KC ? K - k0 : KC;
            float *blk = Bf + (size_t)j0 * K + (size_t)np * NR * k0;
            for (int p = 0; p < np; p++)
                pack_b_panel(blk + (size_t)p * NR * kc, transB, B, ldb, k0, kc, j0 + p * NR,
                             nc - p * NR < NR ? nc - p * NR : NR);
        }
    }
}

/* The product against a prepacked B: every (row tile, NC block) runs its K
 * blocks in order, as in gemm_serial / gemm_team, so the bits are the same. */
static void gemm_prepacked(const Gemm *g, const float *Bf) {
    const int mt = (g->M + MC - 1) / MC, nb = (g->N + NC - 1) / NC;
    const int par = !omp_in_parallel() && (double)g->M * g->N * g->K > 2e5 && omp_get_max_threads() > 1;
#pragma omp parallel for if (par) schedule(dynamic, 1)
    for (int w = 0; w < mt * nb; w++) {
        const int t = w / nb, j0 = (w % nb) * NC, nc = g->N - j0 < NC ? g->N - j0 : NC, np = (nc + NR - 1) / NR;
        for (int k0 = 0; k0 < g->K; k0 += KC)
            gemm_tile(g, Bf + (size_t)j0 * g->K + (size_t)np * NR * k0, t * MC, k0, g->K - k0 < KC ? g->K - k0 : KC,
                      j0, nc);
    }
}

/* The weight cache of gemm_weight: open addressing on B's address, filled
 * lazily under a mutex (decode calls it from inside parallel regions). */
typedef struct WEntry { const float *B; int N, K; float *Bf; } WEntry;
enum { WCACHE_MAX_BYTES = 256 << 20 }; /* past this, weights are packed per call as before */
static struct {
    int on, n, cap; /* cap: a power of two */
    size_t bytes;
    WEntry *e;
    pthread_mutex_t mu;
} wc = {.mu = PTHREAD_MUTEX_INITIALIZER};

static size_t wc_slot(const float *B, int cap) {
    return (size_t)(((uintptr_t)B >> 4) * 0x9E3779B97F4A7C15ull >> 20) & (size_t)(cap - 1);
}

static int wc_grow(void) {
    int cap = wc.cap ? 2 * wc.cap : 256;
    WEntry *e = calloc((size_t)cap, sizeof *e);
    if (!e) return -1;
    for (int i = 0; i < wc.cap; i++)
        if (wc.e[i].B) {
            size_t s = wc_slot(wc.e[i].B, cap);
            while (e[s].B) s = (s + 1) & (size_t)(cap - 1);
            e[s] = wc.e[i];
        }
    free(wc.e);
    wc.e = e, wc.cap = cap;
    return 0;
}

/* The packed copy of B (N x K, ldb = K), packing it on first use; NULL when
 * the cache is off, full or out of memory (the caller packs per call). */
static const float *wc_get(const float *B, int N, int K) {
    const float *Bf = NULL;
    pthread_mutex_lock(&wc.mu);
    if (!wc.on) goto out;
    size_t s = wc.cap ? wc_slot(B, wc.cap) : 0;
    for (; wc.cap && wc.e[s].B; s = (s + 1) & (size_t)(wc.cap - 1))
        if (wc.e[s].B == B && wc.e[s].N == N && wc.e[s].K == K) {
            Bf = wc.e[s].Bf;
            goto out;
        }
    const size_t bytes = prepacked_floats(N, K) * sizeof(float);
    if (wc.bytes + bytes > WCACHE_MAX_BYTES || ((wc.n + 1) * 2 > wc.cap && wc_grow())) goto out;
    float *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!p) goto out;
    prepack(p, 1, B, K, N, K);
    for (s = wc_slot(B, wc.cap); wc.e[s].B; s = (s + 1) & (size_t)(wc.cap - 1)) {}
    wc.e[s] = (WEntry){B, N, K, p};
    wc.n++, wc.bytes += bytes, Bf = p;
out:
    pthread_mutex_unlock(&wc.mu);
    return Bf;
}

void gemm_weights_frozen(int on) {
    pthread_mutex_lock(&wc.mu);
    if (!on) {
        for (int i = 0; i < wc.cap; i++) free(wc.e[i].Bf);
        free(wc.e);
        wc.e = NULL, wc.n = wc.cap = 0, wc.bytes = 0;
    }
    wc.on = on;
    pthread_mutex_unlock(&wc.mu);
}

void gemm_weight(int M, int N, int K, const float *A, const float *W, float beta, float *C) {
    const float *Bf = M >= 4 && K > 0 && N > 0 && (beta == 0.0f || beta == 1.0f) &&
                      __atomic_load_n(&wc.on, __ATOMIC_RELAXED) ? wc_get(W, N, K) : NULL;
    if (!Bf) {
        gemm(0, 1, M, N, K, 1.0f, A, K, W, K, beta, C, N);
        return;
    }
    Gemm g = {0, 1, M, N, K, 1.0f, A, W, K, K, N, C, beta == 0.0f};
    gemm_prepacked(&g, Bf);
}

void gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
          int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    int blocked = M >= 4 && K > 0 && alpha != 0.0f;
    if (beta != 1.0f && !(blocked && beta == 0.0f)) {
        for (int i = 0; i < M; i++) {
            float *ci = C + (size_t)i * ldc;
            if (beta == 0.0f) memset(ci, 0, N * sizeof(float));
            else for (int j = 0; j < N; j++) ci[j] *= beta;
        }
    }
    if (K <= 0 || alpha == 0.0f) return;
    if (!blocked) {
        gemm_small_m(transA, transB, M, N, K, alpha, A, lda, B, ldb, C, ldc);
        return;
    }
    Gemm g = {transA, transB, M, N, K, alpha, A, B, lda, ldb, ldc, C, beta == 0.0f};
    const size_t ncp = ((N < NC ? N : NC) + NR - 1) / NR * NR;
    if (omp_in_parallel() || (double)M * N * K <= 2e5 || omp_get_max_threads() == 1) {
        gemm_serial(&g, scratch(SCRATCH_B, KC * ncp));
        return;
    }
    const int kn = K < KSUP ? K : KSUP;
    const size_t kp = (kn + KC - 1) / KC * KC, nsp = (team_cols(N, kn) + NR - 1) / NR * NR;
    float *Bp = scratch(SCRATCH_B, kp * nsp);
#pragma omp parallel
    gemm_team(&g, Bp);
}
