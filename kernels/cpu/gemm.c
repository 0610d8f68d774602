/* gemm: see gemm.h. */
#include "gemm.h"

#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__)
#define VW 16
#else
#define VW 8
#endif
typedef float vf __attribute__((vector_size(VW * 4)));

enum { MR = 6, NR = 2 * VW, KC = 256, MC = 96, NC = 256 };

static inline vf vload(const float *p) { vf v; __builtin_memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float *p, vf v) { __builtin_memcpy(p, &v, sizeof v); }
/* not (vf){0} + x: without -fno-signed-zeros that costs a real add per broadcast */
#if VW == 16
#define VBCAST(x) ((vf){x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x})
#else
#define VBCAST(x) ((vf){x, x, x, x, x, x, x, x})
#endif
static inline vf vbcast(float x) { return VBCAST(x); }

/* acc = a-panel [kc][MR] x b-panel [kc][NR]; C tile (+)= alpha*acc (mr x nr valid). */
static void micro(int kc, const float *restrict a, const float *restrict b, float *c, int ldc, int mr, int nr,
                  float alpha) {
    vf acc[MR][2];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = (vf){0};
    for (int k = 0; k < kc; k++) {
        vf b0 = vload(b + k * NR), b1 = vload(b + k * NR + VW);
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            vf av = vbcast(a[k * MR + r]);
            acc[r][0] += av * b0;
            acc[r][1] += av * b1;
        }
    }
    vf al = vbcast(alpha);
    if (mr == MR && nr == NR) {
        for (int r = 0; r < MR; r++) {
            float *cr = c + (size_t)r * ldc;
            vstore(cr, vload(cr) + al * acc[r][0]);
            vstore(cr + VW, vload(cr + VW) + al * acc[r][1]);
        }
        return;
    }
    float tmp[MR * NR];
    for (int r = 0; r < MR; r++) {
        vstore(tmp + r * NR, acc[r][0]);
        vstore(tmp + r * NR + VW, acc[r][1]);
    }
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nr; j++) c[(size_t)r * ldc + j] += alpha * tmp[r * NR + j];
}

/* Ap[p][k][r] = op(A)(i0 + p*MR + r, k0 + k), zero-padded to full panels. */
static void pack_a(float *Ap, int transA, const float *A, int lda, int i0, int mc, int k0, int kc) {
    for (int p = 0; p < mc; p += MR) {
        int mr = mc - p < MR ? mc - p : MR;
        float *dst = Ap + (size_t)p * kc;
        for (int k = 0; k < kc; k++) {
            for (int r = 0; r < mr; r++) {
                size_t i = (size_t)(i0 + p + r), kk = (size_t)(k0 + k);
                dst[k * MR + r] = transA ? A[kk * lda + i] : A[i * lda + kk];
            }
            for (int r = mr; r < MR; r++) dst[k * MR + r] = 0.0f;
        }
    }
}

/* Bp[p][k][j] = op(B)(k0 + k, j0 + p*NR + j), zero-padded. */
static void pack_b(float *Bp, int transB, const float *B, int ldb, int k0, int kc, int j0, int nc) {
    for (int p = 0; p < nc; p += NR) {
        int nr = nc - p < NR ? nc - p : NR;
        float *dst = Bp + (size_t)p * kc;
        if (!transB) {
            for (int k = 0; k < kc; k++) {
                const float *src = B + (size_t)(k0 + k) * ldb + j0 + p;
                memcpy(dst + k * NR, src, nr * sizeof(float));
                for (int j = nr; j < NR; j++) dst[k * NR + j] = 0.0f;
            }
        } else {
            const float *src = B + (size_t)(j0 + p) * ldb + k0;
            int k = 0;
            for (; k + 8 <= kc; k += 8) { /* 8 k at a time: each source row read as one 32-byte run */
                for (int j = 0; j < nr; j++) {
                    const float *sj = src + (size_t)j * ldb + k;
                    for (int q = 0; q < 8; q++) dst[(k + q) * NR + j] = sj[q];
                }
                for (int j = nr; j < NR; j++)
                    for (int q = 0; q < 8; q++) dst[(k + q) * NR + j] = 0.0f;
            }
            for (; k < kc; k++)
                for (int j = 0; j < NR; j++) dst[k * NR + j] = j < nr ? src[(size_t)j * ldb + k] : 0.0f;
        }
    }
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

/* Per-thread packing buffer, freed by the key's destructor when an OpenMP
 * thread exits (a _Thread_local pointer would leak it). */
typedef struct Scratch { float *buf; size_t cap; } Scratch;
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p) {
    Scratch *s = p;
    free(s->buf);
    free(s);
}
static void scratch_key_make(void) { pthread_key_create(&scratch_key, scratch_free); }

static float *scratch(size_t n) {
    pthread_once(&scratch_once, scratch_key_make);
    Scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) abort();
        pthread_setspecific(scratch_key, s);
    }
    if (n > s->cap) {
        free(s->buf);
        s->buf = aligned_alloc(64, ((n * sizeof(float)) + 63) & ~(size_t)63);
        if (!s->buf) abort(); /* a few hundred KB; nothing sensible to do without it */
        s->cap = n;
    }
    return s->buf;
}

void gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
          int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (beta != 1.0f) {
        for (int i = 0; i < M; i++) {
            float *ci = C + (size_t)i * ldc;
            if (beta == 0.0f) memset(ci, 0, N * sizeof(float));
            else for (int j = 0; j < N; j++) ci[j] *= beta;
        }
    }
    if (K <= 0 || alpha == 0.0f) return;
    if (M < 4) {
        gemm_small_m(transA, transB, M, N, K, alpha, A, lda, B, ldb, C, ldc);
        return;
    }
    int mt = (M + MC - 1) / MC, nt = (N + NC - 1) / NC;
    int par = !omp_in_parallel() && (double)M * N * K > 2e5;
#pragma omp parallel for if (par) schedule(dynamic, 1)
    for (int t = 0; t < mt * nt; t++) {
        int i0 = (t / nt) * MC, j0 = (t % nt) * NC;
        int mc = M - i0 < MC ? M - i0 : MC, nc = N - j0 < NC ? N - j0 : NC;
        int mcp = (mc + MR - 1) / MR * MR, ncp = (nc + NR - 1) / NR * NR;
        float *buf = scratch((size_t)KC * (mcp + ncp));
        float *Ap = buf, *Bp = buf + (size_t)KC * mcp;
        for (int k0 = 0; k0 < K; k0 += KC) {
            int kc = K - k0 < KC ? K - k0 : KC;
            pack_a(Ap, transA, A, lda, i0, mc, k0, kc);
            pack_b(Bp, transB, B, ldb, k0, kc, j0, nc);
            for (int jp = 0; jp < nc; jp += NR) {
                int nr = nc - jp < NR ? nc - jp : NR;
                for (int ip = 0; ip < mc; ip += MR) {
                    int mr = mc - ip < MR ? mc - ip : MR;
                    micro(kc, Ap + (size_t)ip * kc, Bp + (size_t)jp * kc, C + (size_t)(i0 + ip) * ldc + j0 + jp, ldc,
                          mr, nr, alpha);
                }
            }
        }
    }
}
