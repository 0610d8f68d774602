/* mla: the small data-movement steps of multi-head latent attention that sit
 * between the projections (cuda_gemm) and the attention core (attn.h):
 * embedding rows by token id, and assembling per-head keys from kv_b_proj's
 * k_nope and the one rotary key k_pe shared by all heads (model/model_attn.c).
 * bf16 activations; the backwards sum in fp32. Not here: RoPE (rope.h), the
 * norms (norm.h). */
#ifndef GRPO_CUDA_MLA_H
#define GRPO_CUDA_MLA_H

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

/* x[N, H] = table[ids[n]] (table [V, H]; ids device [N], each in [0, V): the
 * caller checks them on the host, a kernel cannot report). */
int cuda_embed_rows(cudaStream_t s, cuda_bf16 *x, const cuda_bf16 *table, const int *ids, int N, int H, Err *err);

/* k[N, nh, dn+dr]: head h of token n is kvb[n, h*(dn+dv) .. +dn) (k_nope)
 * followed by kva[n, dc .. dc+dr) (the rotated k_pe, the same for all heads).
 * kvb [N, nh*(dn+dv)], kva [N, dc+dr]. */
int cuda_mla_keys(cudaStream_t s, cuda_bf16 *k, const cuda_bf16 *kvb, const cuda_bf16 *kva, int N, int nh, int dn,
                  int dr, int dv, int dc, Err *err);

/* Backward of cuda_embed_rows: dtable[ids[n]] += dx[n] (dtable fp32 [V, H], the
 * gradient accumulator). Deterministic: each column is summed by one thread in
 * token order (no atomics), so repeated ids add up in the CPU's order. */
int cuda_embed_rows_bwd(cudaStream_t s, float *dtable, const cuda_bf16 *dx, const int *ids, int N, int H, Err *err);

/* Backward of cuda_mla_keys: the k_nope part of dk [N, nh, dn+dr] goes to dkvb's
 * k_nope columns (dkvb's v columns are left alone), and the sum over heads of its
 * k_pe part (fp32, head order, one rounding) to dkva[n, dc .. dc+dr) (dkva's
 * first dc columns are left alone). Both overwritten. */
int cuda_mla_keys_bwd(cudaStream_t s, cuda_bf16 *dkvb, cuda_bf16 *dkva, const cuda_bf16 *dk, int N, int nh, int dn,
                      int dr, int dv, int dc, Err *err);

#ifdef __cplusplus
}
#endif
#endif
