// gemm: see gemm.h. Row-major products are computed as the column-major
// transposed product: C^T[N,M] = op(B)^T[N,K] op(A)^T[K,M], so cuBLASLt's "A"
// is our B and its "B" is our A, and a row-major [r, ld] matrix is a
// column-major [ld-leading] matrix of r columns.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/gemm.h"

// The cuBLASLt descriptors of one product (column-major view: lt_A = our B with
// op = transB, lt_B = our A with op = transA, D = C^T) and the algorithm the
// heuristic chose, or none (the product goes to the fallback).
typedef struct LtPlan {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulPreference_t pref;
    cublasLtMatmulHeuristicResult_t res;
    int nres;
} LtPlan;

// What decides a plan: shapes, leading dimensions, strides, output type and the
// operands' address alignment (a heuristic answer for 256-byte aligned operands
// may not run on 2-byte aligned ones). Compared with memcmp: no padding.
typedef struct LtKey {
    int ta, tb, M, N, K, lda, ldb, ldc, nbatch, cdt;
    uint32_t al_a, al_b, al_c, pad_;
    long long sa, sb, sc;
} LtKey;

// Plans are kept because building one (five descriptors and a heuristic query)
// costs the host tens of microseconds, more than a small expert product takes
// on the GPU. PLAN_CACHE entries, least recently used replaced.
enum { PLAN_CACHE = 128 };
typedef struct CudaBlas {
    cublasLtHandle_t lt;
    cublasHandle_t blas;  // fallback when cuBLASLt offers no algorithm (e.g. odd leading dims)
    void *ws;          // workspace [ws_bytes] on the device
    size_t ws_bytes;
    LtKey key[PLAN_CACHE];
    LtPlan plan[PLAN_CACHE];
    unsigned long long used[PLAN_CACHE]; // last use (0: empty slot)
    unsigned long long clock;
    long long hits, builds;
} CudaBlas;

#define LT_TRY(call, err)                                                                                \
    do {                                                                                                 \
        cublasStatus_t s_ = (call);                                                                      \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                               \
            err_set((err), ERR_WORK, "%s:%d: %s: %s", __FILE__, __LINE__, #call, cublasGetStatusString(s_)); \
            goto fail;                                                                                   \
        }                                                                                                \
    } while (0)

extern "C" CudaBlas *cuda_blas_new(size_t workspace_bytes, Err *err) {
    CudaBlas *h = (CudaBlas *)calloc(1, sizeof *h);
    if (!h) {
        err_set(err, ERR_WORK, "cuda_blas_new: out of host memory");
        return NULL;
    }
    h->ws_bytes = workspace_bytes ? workspace_bytes : (32u << 20);
    cublasStatus_t s = cublasLtCreate(&h->lt);
    if (s != CUBLAS_STATUS_SUCCESS) {
        err_set(err, ERR_WORK, "cublasLtCreate: %s", cublasGetStatusString(s));
        free(h);
        return NULL;
    }
    s = cublasCreate(&h->blas);
    if (s != CUBLAS_STATUS_SUCCESS) {
        err_set(err, ERR_WORK, "cublasCreate: %s", cublasGetStatusString(s));
        cublasLtDestroy(h->lt);
        free(h);
        return NULL;
    }
    cudaError_t e = cudaMalloc(&h->ws, h->ws_bytes);
    if (e != cudaSuccess) {
        err_set(err, ERR_WORK, "cuda_blas_new: cudaMalloc of a %zu-byte workspace: %s", h->ws_bytes,
                cudaGetErrorString(e));
        cublasDestroy(h->blas);
        cublasLtDestroy(h->lt);
        free(h);
        return NULL;
    }
    return h;
}

static void lt_plan_free(LtPlan *p);

extern "C" void cuda_blas_free(CudaBlas *h) {
    if (!h) return;
    for (int i = 0; i < PLAN_CACHE; i++)
        if (h->used[i]) lt_plan_free(&h->plan[i]);
    cudaFree(h->ws);
    cublasDestroy(h->blas);
    cublasLtDestroy(h->lt);
    free(h);
}

// Largest power of two (<= 256) dividing the address: cuBLASLt assumes 256-byte
// alignment unless told, and MoE row offsets are not aligned.
static uint32_t ptr_align(const void *p) {
    uintptr_t a = (uintptr_t)p;
    uint32_t al = 256;
    while (al > 1 && (a & (al - 1))) al >>= 1;
    return al;
}

__global__ void scale_kernel(void *C, int ctype, int M, int N, int ldc, float beta) {
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i >= (long)M * N) return;
    long r = i / N, c = i % N;
    if (ctype == CUDA_F32) {
        float *p = (float *)C + r * ldc + c;
        *p = beta == 0.0f ? 0.0f : *p * beta;
    } else {
        bf16 *p = (bf16 *)C + r * ldc + c;
        st_bf16(p, beta == 0.0f ? 0.0f : ld_bf16(p) * beta);
    }
}

static int check_shapes(int transA, int transB, int M, int N, int K, int lda, int ldb, int ldc, int nbatch,
                        Err *err) {
    if (M < 0 || N < 0 || K < 0 || nbatch < 0)
        return err_set(err, ERR_INPUT, "cuda_gemm: negative shape M=%d N=%d K=%d batch=%d", M, N, K, nbatch);
    int need_a = transA ? M : K, need_b = transB ? K : N;
    if (lda < (need_a > 1 ? need_a : 1) || ldb < (need_b > 1 ? need_b : 1) || ldc < (N > 1 ? N : 1))
        return err_set(err, ERR_INPUT,
                       "cuda_gemm: leading dimensions too small (M=%d N=%d K=%d transA=%d transB=%d: lda=%d "
                       "needs >= %d, ldb=%d needs >= %d, ldc=%d needs >= %d)",
                       M, N, K, transA, transB, lda, need_a, ldb, need_b, ldc, N);
    return 0;
}

// cublasGemmStridedBatchedEx in the same column-major view (lt_A = our B).
static int gemm_fallback(CudaBlas *h, cudaStream_t stream, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                         int k, float alpha, const void *a, int lda, long long sa, const void *b, int ldb,
                         long long sb, float beta, void *c, cudaDataType_t cdt, int ldc, long long sc, int nbatch,
                         Err *err) {
    cublasStatus_t s = cublasSetStream(h->blas, stream);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasGemmStridedBatchedEx(h->blas, ta, tb, m, n, k, &alpha, a, CUDA_R_16BF, lda, sa, b, CUDA_R_16BF, ldb,
                                       sb, &beta, c, cdt, ldc, sc, nbatch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS)
        return err_set(err, ERR_WORK, "neither cuBLASLt nor cublasGemmStridedBatchedEx can do it: %s",
                       cublasGetStatusString(s));
    return 0;
}

static void lt_plan_free(LtPlan *p) {
    if (p->pref) cublasLtMatmulPreferenceDestroy(p->pref);
    if (p->lc) cublasLtMatrixLayoutDestroy(p->lc);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->op) cublasLtMatmulDescDestroy(p->op);
}

#define LT_SET(call) LT_TRY(call, err)

static int lt_plan_make(LtPlan *p, CudaBlas *h, const LtKey *k, Err *err) {
    cublasOperation_t ta = (cublasOperation_t)k->ta, tb = (cublasOperation_t)k->tb;
    uint64_t rows_a = ta == CUBLAS_OP_T ? k->K : k->N, cols_a = ta == CUBLAS_OP_T ? k->N : k->K;
    uint64_t rows_b = tb == CUBLAS_OP_T ? k->M : k->K, cols_b = tb == CUBLAS_OP_T ? k->K : k->M;
    uint64_t wsb = h->ws_bytes;
    memset(p, 0, sizeof *p);
    LT_SET(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT_SET(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    LT_SET(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    LT_SET(cublasLtMatrixLayoutCreate(&p->la, CUDA_R_16BF, rows_a, cols_a, k->ldb));
    LT_SET(cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_16BF, rows_b, cols_b, k->lda));
    LT_SET(cublasLtMatrixLayoutCreate(&p->lc, (cudaDataType_t)k->cdt, k->N, k->M, k->ldc));
    if (k->nbatch > 1) {
        cublasLtMatrixLayout_t l[3] = {p->la, p->lb, p->lc};
        int64_t stride[3] = {k->sb, k->sa, k->sc};
        int32_t nb = k->nbatch;
        for (int i = 0; i < 3; i++) {
            LT_SET(cublasLtMatrixLayoutSetAttribute(l[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &nb, sizeof nb));
            LT_SET(cublasLtMatrixLayoutSetAttribute(l[i], CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride[i],
                                                    sizeof stride[i]));
        }
    }
    LT_SET(cublasLtMatmulPreferenceCreate(&p->pref));
    LT_SET(cublasLtMatmulPreferenceSetAttribute(p->pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb));
    LT_SET(cublasLtMatmulPreferenceSetAttribute(p->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &k->al_b, 4));
    LT_SET(cublasLtMatmulPreferenceSetAttribute(p->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &k->al_a, 4));
    LT_SET(cublasLtMatmulPreferenceSetAttribute(p->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &k->al_c, 4));
    LT_SET(cublasLtMatmulPreferenceSetAttribute(p->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &k->al_c, 4));
    if (cublasLtMatmulAlgoGetHeuristic(h->lt, p->op, p->la, p->lb, p->lc, p->lc, p->pref, 1, &p->res, &p->nres) !=
        CUBLAS_STATUS_SUCCESS)
        p->nres = 0;  // no algorithm: the fallback does the product
    return 0;
fail:
    lt_plan_free(p);
    return -1;
}

// The cached plan for key, built on a miss (replacing the least recently used).
static const LtPlan *lt_plan_get(CudaBlas *h, const LtKey *key, Err *err) {
    int victim = 0;
    for (int i = 0; i < PLAN_CACHE; i++) {
        if (h->used[i] && memcmp(&h->key[i], key, sizeof *key) == 0) {
            h->used[i] = ++h->clock, h->hits++;
            return &h->plan[i];
        }
        if (h->used[i] < h->used[victim]) victim = i;
    }
    if (h->used[victim]) lt_plan_free(&h->plan[victim]), h->used[victim] = 0;
    if (lt_plan_make(&h->plan[victim], h, key, err)) return NULL;
    h->key[victim] = *key, h->used[victim] = ++h->clock, h->builds++;
    return &h->plan[victim];
}

extern "C" void cuda_blas_stats(const CudaBlas *h, long long *hits, long long *builds) {
    *hits = h->hits, *builds = h->builds;
}

extern "C" int cuda_gemm_batched(CudaBlas *h, cudaStream_t stream, int transA, int transB, int M, int N, int K,
                                 float alpha, const cuda_bf16 *A, int lda, long long strideA, const cuda_bf16 *B,
                                 int ldb, long long strideB, float beta, void *C, CudaDtype ctype, int ldc,
                                 long long strideC, int nbatch, Err *err) {
    if (check_shapes(transA, transB, M, N, K, lda, ldb, ldc, nbatch, err)) return -1;
    if (M == 0 || N == 0 || nbatch == 0) return 0;
    if (K == 0) {  // cuBLASLt rejects k = 0; the product is empty, C = beta C
        if (beta == 1.0f) return 0;
        for (int b = 0; b < nbatch; b++) {
            char *cb = (char *)C + (size_t)b * strideC * (ctype == CUDA_F32 ? 4 : 2);
            scale_kernel<<<cuda_blocks((long)M * N, 256), 256, 0, stream>>>(cb, ctype, M, N, ldc, beta);
            CUDA_LAUNCHED("gemm scale (K = 0)", err);
        }
        return 0;
    }
    const cudaDataType_t cdt = ctype == CUDA_F32 ? CUDA_R_32F : CUDA_R_16BF;
    cublasOperation_t ta = transB ? CUBLAS_OP_T : CUBLAS_OP_N, tb = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
    LtKey key;
    memset(&key, 0, sizeof key);
    key.ta = ta, key.tb = tb, key.M = M, key.N = N, key.K = K, key.lda = lda, key.ldb = ldb, key.ldc = ldc;
    key.nbatch = nbatch, key.cdt = cdt, key.al_a = ptr_align(A), key.al_b = ptr_align(B), key.al_c = ptr_align(C);
    if (nbatch > 1) key.sa = strideA, key.sb = strideB, key.sc = strideC;
    const LtPlan *p = lt_plan_get(h, &key, err);
    int rc = p ? 0 : -1;
    cublasStatus_t s = CUBLAS_STATUS_NOT_SUPPORTED;
    if (p && p->nres >= 1)
        s = cublasLtMatmul(h->lt, p->op, &alpha, B, p->la, A, p->lb, &beta, C, p->lc, C, p->lc, &p->res.algo, h->ws,
                           h->ws_bytes, stream);
    if (p && s == CUBLAS_STATUS_NOT_SUPPORTED)  // no cuBLASLt kernel for this alignment / leading dimension
        rc = gemm_fallback(h, stream, ta, tb, N, M, K, alpha, B, ldb, strideB, A, lda, strideA, beta, C, cdt, ldc,
                           strideC, nbatch, err);
    else if (p && s != CUBLAS_STATUS_SUCCESS)
        rc = err_set(err, ERR_WORK, "cublasLtMatmul: %s", cublasGetStatusString(s));
    if (rc)  // the shape only when something failed: this path runs for every product
        return err_wrap(err, "cuda_gemm (M=%d N=%d K=%d transA=%d transB=%d batch=%d)", M, N, K, transA, transB,
                        nbatch);
    return 0;
}

extern "C" int cuda_gemm(CudaBlas *h, cudaStream_t stream, int transA, int transB, int M, int N, int K, float alpha,
                         const cuda_bf16 *A, int lda, const cuda_bf16 *B, int ldb, float beta, void *C,
                         CudaDtype ctype, int ldc, Err *err) {
    return cuda_gemm_batched(h, stream, transA, transB, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ctype, ldc, 0,
                             1, err);
}

extern "C" int cuda_linear_fwd(CudaBlas *h, cudaStream_t s, void *y, CudaDtype ytype, const cuda_bf16 *x,
                               const cuda_bf16 *W, int M, int N, int K, int accumulate, Err *err) {
    return cuda_gemm(h, s, 0, 1, M, N, K, 1.0f, x, K, W, K, accumulate ? 1.0f : 0.0f, y, ytype, N, err);
}

extern "C" int cuda_linear_bwd_x(CudaBlas *h, cudaStream_t s, void *dx, CudaDtype dxtype, const cuda_bf16 *dy,
                                 const cuda_bf16 *W, int M, int N, int K, int accumulate, Err *err) {
    return cuda_gemm(h, s, 0, 0, M, K, N, 1.0f, dy, N, W, K, accumulate ? 1.0f : 0.0f, dx, dxtype, K, err);
}

extern "C" int cuda_linear_bwd_w(CudaBlas *h, cudaStream_t s, float *dW, const cuda_bf16 *dy, const cuda_bf16 *x,
                                 int M, int N, int K, Err *err) {
    return cuda_gemm(h, s, 1, 0, N, K, M, 1.0f, dy, N, x, K, 1.0f, dW, CUDA_F32, K, err);
}
