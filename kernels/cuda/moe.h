/* moe: DeepSeekMoE routing and the token permutation to experts and back on
 * the GPU, the semantics of router_fwd / mlp_fwd / mlp_bwd in model/model_moe.c
 * (deepseek-v3.md §4.7-4.10):
 *   - affinities from fp32 router logits: sigmoid (V3) or softmax (V2);
 *   - selection scores = affinity + e_score_correction_bias (selection only);
 *   - group-limited top-k: noaux_tc ranks groups by the sum of their two best
 *     scores, group_limited_greedy by the best; greedy ignores groups; ties go
 *     to the lower expert / group id;
 *   - weights = unbiased affinities of the chosen experts, divided by their sum
 *     + 1e-20 when norm_topk_prob, times routed_scaling_factor;
 *   - assignments a = n*k + j grouped by expert, stable (token order kept inside
 *     an expert, as the CPU's counting sort), so perm matches the CPU exactly.
 * The expert products themselves are cuda_grouped_fwd (grouped.h) or, for a
 * few rows per expert, cuda_moe_experts_fwd below; the router's own Linear is
 * cuda_linear_fwd into fp32 logits. Limits: E <= 1024,
 * k <= 64, n_group <= 256. Not here: expert parallelism, capacity dropping. */
#ifndef GRPO_CUDA_MOE_H
#define GRPO_CUDA_MOE_H

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "base/err.h"
#ifdef __cplusplus
}
#endif
#include "kernels/cuda/bf16.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Same values as model/config.h's SCORE_* and TOPK_* (kernels do not include the model). */
enum { CUDA_SCORE_SIGMOID = 0, CUDA_SCORE_SOFTMAX = 1 };
enum { CUDA_TOPK_NOAUX_TC = 0, CUDA_TOPK_GREEDY = 1, CUDA_TOPK_GROUP_LIMITED_GREEDY = 2 };

typedef struct CudaRouterCfg {
    int E, k;                 /* routed experts, experts per token */
    int n_group, topk_group;  /* expert groups, groups kept per token */
    int topk_method;          /* CUDA_TOPK_* */
    int scoring;              /* CUDA_SCORE_* */
    int norm_topk_prob;
    float routed_scaling_factor;
} CudaRouterCfg;

int cuda_router_check(const CudaRouterCfg *c, Err *err);

/* logits [N, E] fp32 -> scores [N, E] affinities, topk [N, k], topw [N, k] final
 * weights, topsum [N] sum of chosen affinities. bias [E] may be NULL. */
int cuda_moe_route(cudaStream_t s, const CudaRouterCfg *c, const float *logits, const float *bias, int N,
                   float *scores, int *topk, float *topw, float *topsum, Err *err);

/* Groups the N*k assignments by expert: count [E], start [E+1] (exclusive
 * offsets, start[E] = N*k), perm [N*k] (assignment ids in expert order),
 * where [N*k] (where[perm[i]] = i). One launch when N*k*E <= 2^18 (decode
 * steps), three otherwise. load [E] (NULL: none) gets count added:
 * the router load summed over calls without a trip to the host. All device arrays. */
int cuda_moe_permute(cudaStream_t s, const int *topk, int N, int k, int E, int *count, int *start, int *perm,
                     int *where, int *load, Err *err);

/* xe [N*k, H] = x[perm[i] / k] (expert inputs in perm order). */
int cuda_moe_gather(cudaStream_t s, cuda_bf16 *xe, const cuda_bf16 *x, const int *perm, int N, int k, int H,
                    Err *err);
/* out[n] (+)= sum_j topw[n*k+j] * ey[where[n*k+j]] (fp32 sum in j order, one
 * rounding); accumulate 0 overwrites. ey [N*k, H] expert outputs in perm order. */
int cuda_moe_combine(cudaStream_t s, cuda_bf16 *out, const cuda_bf16 *ey, const float *topw, const int *where,
                     int N, int k, int H, int accumulate, Err *err);

/* The routed experts' SwiGLU MLP with the experts' row counts read on the device
 * (no host synchronisation, so a decode step can be captured in a CUDA graph): for
 * each expert e and its rows r in start[e] .. start[e+1] (perm order), whose input is
 * token perm[r] / k's row of x [N, H] (read in place: no gather),
 *   eh[r] = bf16(silu(bf16(x[t] . Wg[e]^T)) * bf16(x[t] . Wu[e]^T))   [I]
 *   ey[r] = bf16(eh[r] . Wd[e]^T)                                      [H]
 * (the roundings of cuda_grouped_fwd + cuda_swiglu_fwd; fp32 sums in another
 * order). wg, wu [I, H] and wd [H, I] are DEVICE arrays of E device pointers. An
 * expert without rows reads nothing; one with rows reads each weight row once and
 * keeps it in cache for its other rows: what decoding needs (few rows per expert).
 * Prefill and training use the tensor-core products of grouped.h. eh, ey: [start[E], I], [.., H]. */
int cuda_moe_experts_fwd(cudaStream_t s, const cuda_bf16 *const *wg, const cuda_bf16 *const *wu,
                         const cuda_bf16 *const *wd, const int *start, const cuda_bf16 *x, const int *perm, int k,
                         int E, int H, int I, cuda_bf16 *eh, cuda_bf16 *ey, Err *err);

/* Backward of combine: dye [N*k, H] (perm order) = topw[a] * dout[a / k] for
 * a = perm[i]; dw [N*k] = dout[n] . ey[where[n*k+j]] (d loss / d topw). */
int cuda_moe_combine_bwd(cudaStream_t s, cuda_bf16 *dye, float *dw, const cuda_bf16 *dout, const cuda_bf16 *ey,
                         const float *topw, const int *perm, const int *where, int N, int k, int H, Err *err);
/* Backward of gather: dx[n] (+)= sum_j dxe[where[n*k+j]]. */
int cuda_moe_gather_bwd(cudaStream_t s, cuda_bf16 *dx, const cuda_bf16 *dxe, const int *where, int N, int k, int H,
                        int accumulate, Err *err);
/* Router backward through the chosen affinities (selection is not
 * differentiable): dlogit [N, E] fp32 from dw [N*k]; dlogit_bf16 (may be NULL)
 * gets a bf16 copy for the router's Linear backward. */
int cuda_moe_router_bwd(cudaStream_t s, const CudaRouterCfg *c, const float *scores, const int *topk,
                        const float *topw, const float *topsum, const float *dw, int N, float *dlogit,
                        cuda_bf16 *dlogit_bf16, Err *err);

#ifdef __cplusplus
}
#endif
#endif
