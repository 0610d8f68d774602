/* model_cuda: the DeepSeek-V3 / V2 model on the GPU, built from the kernels/cuda ops:
 * bf16 weights and activations, fp32 accumulation, fp32 norms' rstd, router logits,
 * affinities, log-probs and entropies. The CPU model (model.h) is the reference it is
 * tested against (tests/cuda/test_cuda_model.c).
 *
 * A CudaModel holds a bf16 copy of a Model's parameters (same table, same offsets) and
 * an fp32 master copy (what AdamW will update), and the saved activations of the last
 * training forward, layer by layer, in the CPU's order, so that the backward can follow.
 *
 * Here: the training forward and backward over a padded or a packed batch
 * (model_forward's, model_forward_packed's and the backwards' contracts), gradients in
 * fp32 on the device; incremental decoding over a paged latent cache (model_extend's
 * contract, model_cuda_decode.c). AdamW is rl/optim_cuda.h, sampling
 * kernels/cuda/sample.h (driven by rl/rollout_cuda.c). Not here: MTP.
 * Written without a GPU (none was lent): run under tests/cuda/emu only so far. */
#ifndef GRPO_MODEL_CUDA_H
#define GRPO_MODEL_CUDA_H

#include "model/model.h"

typedef struct CudaModel CudaModel;

/* Uploads m's parameters (bf16 compute copy + fp32 master) to the current device. */
CudaModel *cuda_model_new(const Model *m, Err *err);
void cuda_model_free(CudaModel *g);
/* Uploads m's parameters again (same config), e.g. after the CPU changed them. */
int cuda_model_upload(CudaModel *g, const Model *m, Err *err);
/* The same for the parameters [offset, offset + n) only (e.g. a router's bias). */
int cuda_model_upload_span(CudaModel *g, const Model *m, size_t offset, size_t n, Err *err);

/* Training forward, as model_forward: logp/entropy (host, [B*T], 0 where the target is
 * < 0; either may be NULL) of softmax(logits / temperature). Keeps the activations.
 * Router load of the forward goes to load [L, E] (host) when non-NULL. */
int cuda_model_forward(CudaModel *g, const Batch *b, float temperature, float *logp, float *entropy, int *load,
                       Err *err);

/* The same over a packed batch (model_forward_packed's contract): logp/entropy [ntok].
 * Each segment's prefix is computed once, as on the CPU. */
int cuda_model_forward_packed(CudaModel *g, const PackedBatch *pb, float temperature, float *logp, float *entropy,
                              int *load, Err *err);

/* Backward of the last cuda_model_forward (same batch): dlogp, dentropy host [B*T]
 * (dentropy may be NULL). Adds into the device gradients (fp32, zeroed on first use). */
int cuda_model_backward(CudaModel *g, const Batch *b, const float *dlogp, const float *dentropy, Err *err);
/* Backward of the last cuda_model_forward_packed (same packed batch): dlogp, dentropy [ntok]. */
int cuda_model_backward_packed(CudaModel *g, const PackedBatch *pb, const float *dlogp, const float *dentropy,
                               Err *err);
int cuda_model_zero_grads(CudaModel *g, Err *err);
/* Copies the gradients to host [numel] (Model.params' offsets; 0 where none). */
int cuda_model_grads_download(CudaModel *g, float *host, Err *err);

/* The device buffers an optimizer updates in place: fp32 master weights, fp32 gradients
 * (NULL before the first backward or cuda_model_zero_grads), the bf16 compute copy
 * (the optimizer refreshes it from the master), all [numel] at Model.params' offsets;
 * stream: the cudaStream_t every call of this model runs on. */
typedef struct CudaModelBuffers {
    float *master, *grads;
    uint16_t *w16;
    size_t numel;
    void *stream;
} CudaModelBuffers;
CudaModelBuffers cuda_model_buffers(CudaModel *g);
const ModelConfig *cuda_model_config(const CudaModel *g);
/* Copies the fp32 master weights to host [numel] (e.g. to save a checkpoint). */
int cuda_model_download(CudaModel *g, float *host, Err *err);

/* The paged latent cache of decoding (kvcache.h's on the GPU, bf16): nslots
 * sequences of up to max_len tokens in pages of `page` tokens. */
typedef struct CudaKvCache CudaKvCache;
CudaKvCache *cuda_kvcache_new(const CudaModel *g, int nslots, int max_len, int page, Err *err);
void cuda_kvcache_free(CudaKvCache *kv);
void cuda_kvcache_reset(CudaKvCache *kv, int slot);
int cuda_kvcache_len(const CudaKvCache *kv, int slot);
/* dst takes a copy of src's tokens (a prompt shared by a group). */
int cuda_kvcache_copy(const CudaModel *g, CudaKvCache *kv, int dst, int src, Err *err);
/* model_extend on the GPU: ntok[i] new tokens for slot slots[i] (ids concatenated),
 * appended to the cache; logits (host) of each sequence's last new token [nseq, V],
 * or of every new token [sum ntok, V] with all_logits. (No router load: rollouts do
 * not train the router; the training forward reports it.) */
int cuda_model_extend(CudaModel *g, CudaKvCache *kv, int nseq, const int *slots, const int *ntok, const int *ids,
                      float *logits, int all_logits, Err *err);
/* Decode steps (one new token per sequence) as CUDA graphs: on by
 * default, off with GRPO_CUDA_GRAPHS=0 in the environment or here (and by itself
 * after a capture that fails). The results are the same either way, bit for bit. */
void cuda_model_set_graphs(CudaModel *g, int on);
int cuda_model_graphs(const CudaModel *g);
/* The same with the logits left on the device: written to logits (device, room for
 * logits_rows rows of V), or, when NULL, to the cache's own buffer, valid until the
 * next call. Asynchronous on the model's stream. A decode step (one new token per
 * sequence, no all_logits) runs padded to cuda_model_step_rows(nseq) rows when they
 * fit in the buffer (the rows past nseq are padding), else unpadded. */
int cuda_model_extend_dev(CudaModel *g, CudaKvCache *kv, int nseq, const int *slots, const int *ntok, const int *ids,
                          float *logits, int logits_rows, int all_logits, Err *err);
/* The rows a decode step of n sequences is padded to: powers of two to 8, then
 * multiples of 8, or of the largest power of two <= n/8 past 128 (under 8 rows of
 * padding to 64, under 1/8 past it: while a step is bound by reading the weights,
 * padding rows cost little). A batch that shrinks as samples finish then meets a
 * few sizes, each with its CUDA graph. */
int cuda_model_step_rows(int n);

#endif
