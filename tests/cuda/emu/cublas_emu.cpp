// cublas_emu.cpp: a fake cuBLAS / cuBLASLt for tests/cuda/emu (a development
// aid, not evidence of GPU correctness): only what kernels/cuda/gemm.cu calls.
// cublasLtMatmul and cublasGemmStridedBatchedEx compute the column-major
// D = alpha op(A) op(B) + beta C on the host: bf16 inputs, products summed in
// fp32 in k order, fp32 or bf16 output (round to nearest even); C is not read
// when beta is 0, as cuBLAS. Shapes, leading dimensions, types and the device
// extent of every operand are checked; a violation prints why and returns
// CUBLAS_STATUS_INVALID_VALUE. GRPO_EMU_GEMM_FALLBACK=1 makes the heuristic
// offer no algorithm, so gemm.cu's cublasGemmStridedBatchedEx path runs.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <functional>
#include <vector>

#include "fake/cublasLt.h"
#include "kernels/cuda/bf16.h"

bool emu_on_device(const void *p, size_t n);

struct EmuBlas {
    cudaStream_t s;
};
struct EmuLt {
    int dummy;
};
struct EmuLtDesc {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    cublasOperation_t ta, tb;
};
struct EmuLtLayout {
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld;
    int32_t batch;
    int64_t stride;
};
struct EmuLtPref {
    uint64_t ws;
    uint32_t align[4];
};

static cublasStatus_t bad(const char *what, const char *why) {
    fprintf(stderr, "emu cublas: %s: %s\n", what, why);
    return CUBLAS_STATUS_INVALID_VALUE;
}

static size_t tsize(cudaDataType_t t) { return t == CUDA_R_32F ? 4 : 2; }

static float load(const void *p, cudaDataType_t t, size_t i) {
    return t == CUDA_R_32F ? ((const float *)p)[i] : bf16_to_f32(((const cuda_bf16 *)p)[i]);
}

// Whether a column-major [rows, cols] matrix with leading dimension ld (batch of them) lies in device memory.
static bool extent_ok(const void *p, cudaDataType_t t, int64_t rows, int64_t cols, int64_t ld, int batch,
                      int64_t stride) {
    if (rows == 0 || cols == 0) return true;
    int64_t last = (cols - 1) * ld + rows;  // elements spanned by one matrix
    int64_t lo = 0, hi = last;
    if (batch > 1) lo = stride < 0 ? stride * (batch - 1) : 0, hi = last + (stride > 0 ? stride * (batch - 1) : 0);
    return emu_on_device((const char *)p + lo * (int64_t)tsize(t), (size_t)(hi - lo) * tsize(t));
}

// The product, column-major: D[i + j ldd] = alpha sum_p op(A)[i, p] op(B)[p, j] + beta C[i + j ldc].
static cublasStatus_t gemm_host(const char *what, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                float alpha, const void *A, cudaDataType_t at, int64_t lda, int64_t sa, const void *B,
                                cudaDataType_t bt, int64_t ldb, int64_t sb, float beta, const void *C,
                                cudaDataType_t ct, int64_t ldc, int64_t sc, void *D, cudaDataType_t dt, int64_t ldd,
                                int64_t sd, int batch) {
    if (m < 0 || n < 0 || k < 0 || batch < 1) return bad(what, "negative size or batch < 1");
    if ((ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T))
        return bad(what, "only CUBLAS_OP_N / CUBLAS_OP_T");
    if (at != CUDA_R_16BF || bt != CUDA_R_16BF) return bad(what, "A and B must be CUDA_R_16BF");
    if ((ct != CUDA_R_32F && ct != CUDA_R_16BF) || dt != ct) return bad(what, "C/D must be both fp32 or both bf16");
    const int64_t ra = ta == CUBLAS_OP_N ? m : k, ca = ta == CUBLAS_OP_N ? k : m;
    const int64_t rb = tb == CUBLAS_OP_N ? k : n, cb = tb == CUBLAS_OP_N ? n : k;
    char msg[256];
    if (lda < (ra > 1 ? ra : 1) || ldb < (rb > 1 ? rb : 1) || ldc < (m > 1 ? m : 1) || ldd < (m > 1 ? m : 1)) {
        snprintf(msg, sizeof msg, "leading dimension too small (m=%d n=%d k=%d lda=%lld ldb=%lld ldc=%lld)", m, n, k,
                 (long long)lda, (long long)ldb, (long long)ldc);
        return bad(what, msg);
    }
    if (!extent_ok(A, at, ra, ca, lda, batch, sa) || !extent_ok(B, bt, rb, cb, ldb, batch, sb) ||
        !extent_ok(D, dt, m, n, ldd, batch, sd) || (beta != 0.0f && !extent_ok(C, ct, m, n, ldc, batch, sc))) {
        snprintf(msg, sizeof msg, "an operand reaches outside its device allocation (m=%d n=%d k=%d batch=%d)", m, n, k,
                 batch);
        return bad(what, msg);
    }
    std::vector<float> a((size_t)m * k), b((size_t)n * k), d((size_t)m * n);
    for (int bi = 0; bi < batch; bi++) {
        const char *Ab = (const char *)A + bi * sa * 2, *Bb = (const char *)B + bi * sb * 2;
        for (int i = 0; i < m; i++)  // rows of op(A), contiguous in p
            for (int p = 0; p < k; p++)
                a[(size_t)i * k + p] = load(Ab, at, ta == CUBLAS_OP_N ? i + p * lda : p + i * lda);
        for (int j = 0; j < n; j++)  // columns of op(B), contiguous in p
            for (int p = 0; p < k; p++)
                b[(size_t)j * k + p] = load(Bb, bt, tb == CUBLAS_OP_N ? p + j * ldb : j + p * ldb);
        const char *Cb = (const char *)C + bi * sc * (int64_t)tsize(ct);
        char *Db = (char *)D + bi * sd * (int64_t)tsize(dt);
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                const float *x = &a[(size_t)i * k], *y = &b[(size_t)j * k];
                float s = 0.0f;
                for (int p = 0; p < k; p++) s += x[p] * y[p];
                d[(size_t)j * m + i] = alpha * s + (beta != 0.0f ? beta * load(Cb, ct, i + j * ldc) : 0.0f);
            }
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                float v = d[(size_t)j * m + i];
                if (dt == CUDA_R_32F)
                    ((float *)Db)[i + j * ldd] = v;
                else
                    ((cuda_bf16 *)Db)[i + j * ldd] = bf16_from_f32(v);
            }
    }
    return CUBLAS_STATUS_SUCCESS;
}

bool emu_capturing(cudaStream_t s); /* emu.cpp: graphs */
void emu_record(cudaStream_t s, std::function<void()> step);

// The product now, or recorded (arguments by value) when the stream is capturing a graph.
static cublasStatus_t gemm_run(cudaStream_t st, const char *what, cublasOperation_t ta, cublasOperation_t tb, int m,
                               int n, int k, float alpha, const void *A, cudaDataType_t at, int64_t lda, int64_t sa,
                               const void *B, cudaDataType_t bt, int64_t ldb, int64_t sb, float beta, const void *C,
                               cudaDataType_t ct, int64_t ldc, int64_t sc, void *D, cudaDataType_t dt, int64_t ldd,
                               int64_t sd, int batch) {
    if (emu_capturing(st)) {
        emu_record(st, [=] {
            gemm_host(what, ta, tb, m, n, k, alpha, A, at, lda, sa, B, bt, ldb, sb, beta, C, ct, ldc, sc, D, dt, ldd, sd,
                      batch);
        });
        return CUBLAS_STATUS_SUCCESS;
    }
    return gemm_host(what, ta, tb, m, n, k, alpha, A, at, lda, sa, B, bt, ldb, sb, beta, C, ct, ldc, sc, D, dt, ldd, sd,
                     batch);
}

extern "C" {
const char *cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
        case CUBLAS_STATUS_SUCCESS:
            return "CUBLAS_STATUS_SUCCESS (emu)";
        case CUBLAS_STATUS_INVALID_VALUE:
            return "CUBLAS_STATUS_INVALID_VALUE (emu)";
        case CUBLAS_STATUS_NOT_SUPPORTED:
            return "CUBLAS_STATUS_NOT_SUPPORTED (emu)";
        default:
            return "CUBLAS_STATUS_? (emu)";
    }
}
cublasStatus_t cublasCreate(cublasHandle_t *h) {
    *h = new EmuBlas();
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    h->s = s;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void *alpha, const void *A, cudaDataType_t at, int lda,
                                          long long sa, const void *B, cudaDataType_t bt, int ldb, long long sb,
                                          const void *beta, void *C, cudaDataType_t ct, int ldc, long long sc,
                                          int batch, cublasComputeType_t compute, cublasGemmAlgo_t algo) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (compute != CUBLAS_COMPUTE_32F)
        return bad("cublasGemmStridedBatchedEx", "compute type is not CUBLAS_COMPUTE_32F");
    return gemm_run(h->s, "cublasGemmStridedBatchedEx", ta, tb, m, n, k, *(const float *)alpha, A, at, lda, sa, B, bt, ldb,
                     sb, *(const float *)beta, C, ct, ldc, sc, C, ct, ldc, sc, batch);
}

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
    *h = new EmuLt();
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute, cudaDataType_t scale) {
    *d = new EmuLtDesc{compute, scale, CUBLAS_OP_N, CUBLAS_OP_N};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    delete d;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const void *buf,
                                              size_t size) {
    if ((a == CUBLASLT_MATMUL_DESC_TRANSA || a == CUBLASLT_MATMUL_DESC_TRANSB) && size == sizeof(int32_t)) {
        int32_t v;
        memcpy(&v, buf, 4);
        (a == CUBLASLT_MATMUL_DESC_TRANSA ? d->ta : d->tb) = (cublasOperation_t)v;
        return CUBLAS_STATUS_SUCCESS;
    }
    return bad("cublasLtMatmulDescSetAttribute", "attribute or size not emulated");
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t t, uint64_t rows, uint64_t cols,
                                          int64_t ld) {
    *l = new EmuLtLayout{t, rows, cols, ld, 1, 0};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    delete l;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t a,
                                                const void *buf, size_t size) {
    if (a == CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT && size == sizeof(int32_t))
        return memcpy(&l->batch, buf, 4), CUBLAS_STATUS_SUCCESS;
    if (a == CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET && size == sizeof(int64_t))
        return memcpy(&l->stride, buf, 8), CUBLAS_STATUS_SUCCESS;
    return bad("cublasLtMatrixLayoutSetAttribute", "attribute or size not emulated");
}
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    *p = new EmuLtPref{0, {256, 256, 256, 256}};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
    delete p;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t a, const void *buf,
                                                    size_t size) {
    if (a == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES && size == 8)
        return memcpy(&p->ws, buf, 8), CUBLAS_STATUS_SUCCESS;
    if (a >= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES && a <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES && size == 4)
        return memcpy(&p->align[a - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES], buf, 4), CUBLAS_STATUS_SUCCESS;
    return bad("cublasLtMatmulPreferenceSetAttribute", "attribute or size not emulated");
}
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                              cublasLtMatrixLayout_t dl, cublasLtMatmulPreference_t p, int want,
                                              cublasLtMatmulHeuristicResult_t *res, int *nres) {
    if (!h || !d || !a || !b || !c || !dl || !p || want < 1)
        return bad("cublasLtMatmulAlgoGetHeuristic", "null argument");
    *nres = 0;
    if (getenv("GRPO_EMU_GEMM_FALLBACK")) return CUBLAS_STATUS_SUCCESS;
    memset(res, 0, sizeof *res);
    res->state = CUBLAS_STATUS_SUCCESS, res->wavesCount = 1.0f;
    *nres = 1;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t la, const void *B, cublasLtMatrixLayout_t lb, const void *beta,
                              const void *C, cublasLtMatrixLayout_t lc, void *D, cublasLtMatrixLayout_t ld,
                              const cublasLtMatmulAlgo_t *algo, void *ws, size_t ws_bytes, cudaStream_t s) {
    const char *what = "cublasLtMatmul";
    if (!h || !d || !la || !lb || !lc || !ld) return bad(what, "null handle or descriptor");
    if (d->compute != CUBLAS_COMPUTE_32F || d->scale != CUDA_R_32F) return bad(what, "only fp32 compute and scale");
    const int64_t m = ld->rows, n = ld->cols;
    const int64_t am = d->ta == CUBLAS_OP_N ? la->rows : la->cols, ak = d->ta == CUBLAS_OP_N ? la->cols : la->rows;
    const int64_t bk = d->tb == CUBLAS_OP_N ? lb->rows : lb->cols, bn = d->tb == CUBLAS_OP_N ? lb->cols : lb->rows;
    char msg[256];
    if (am != m || bn != n || ak != bk || lc->rows != ld->rows || lc->cols != ld->cols) {
        snprintf(msg, sizeof msg, "shapes disagree: op(A) %lldx%lld, op(B) %lldx%lld, C %llux%llu, D %llux%llu",
                 (long long)am, (long long)ak, (long long)bk, (long long)bn, (unsigned long long)lc->rows,
                 (unsigned long long)lc->cols, (unsigned long long)m, (unsigned long long)n);
        return bad(what, msg);
    }
    if (la->batch != ld->batch || lb->batch != ld->batch || lc->batch != ld->batch)
        return bad(what, "batch counts differ");
    if (lc->type != ld->type) return bad(what, "C and D types differ");
    if (ak == 0) return bad(what, "k = 0 (cuBLASLt rejects it)");
    return gemm_run(s, what, d->ta, d->tb, (int)m, (int)n, (int)ak, *(const float *)alpha, A, la->type, la->ld,
                     la->stride, B, lb->type, lb->ld, lb->stride, *(const float *)beta, C, lc->type, lc->ld, lc->stride,
                     D, ld->type, ld->ld, ld->stride, ld->batch);
}
}
