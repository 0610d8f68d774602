/* model: the DeepSeek-V3 / V2 transformer on the CPU in fp32 (the reference
 * backend): weights, forward, backward, and incremental decoding.
 *
 * All parameters live in one allocation described by a table of named tensors
 * in Hugging Face layout (model.layers.L.self_attn.kv_b_proj.weight, ...);
 * gradients mirror it in a second allocation. Training forward keeps the
 * activations backward needs; the output head and the log-softmax are fused
 * and chunked so no [tokens, vocab] matrix is kept. Decoding uses the absorbed
 * MLA form over a latent cache (kvcache.h). No autograd, no tensor framework:
 * each block has an explicit _forward and _backward over preallocated buffers.
 * It does not know about GRPO, tokenizers or rewards. */
#ifndef GRPO_MODEL_H
#define GRPO_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "model/config.h"
#include "model/safetensors.h"

/* One named parameter tensor (HF name and shape [out, in] for Linear weights). */
typedef struct Param {
    char name[96];
    int ndim;
    int64_t shape[3];
    size_t numel;
    size_t offset;      /* in floats from Model.params */
    int trainable;      /* 0 for e_score_correction_bias (a buffer) */
    StDtype save_dtype; /* dtype written by model_save (as loaded, or F32) */
} Param;

/* Pointers into Model.params for one decoder layer (NULL where absent). */
typedef struct LayerW {
    float *input_norm;   /* [H] */
    float *post_norm;    /* [H] */
    float *q_a;          /* [d_q, H]            q-LoRA only */
    float *q_a_norm;     /* [d_q] */
    float *q_b;          /* [n_h*(d_n+d_r), d_q] */
    float *q;            /* [n_h*(d_n+d_r), H]  without q-LoRA */
    float *kv_a;         /* [d_c+d_r, H]  rows: latent | k_rope */
    float *kv_a_norm;    /* [d_c] */
    float *kv_b;         /* [n_h*(d_n+d_v), d_c]  per head: k_nope | v */
    float *o;            /* [H, n_h*d_v] */
    float *mlp_gate, *mlp_up, *mlp_down; /* dense: [I,H], [I,H], [H,I] */
    float *router;       /* [E, H] */
    float *router_bias;  /* [E] e_score_correction_bias (selection only) */
    float **exp_gate, **exp_up, **exp_down; /* E pointers: [I_e,H], [I_e,H], [H,I_e] */
    float *sh_gate, *sh_up, *sh_down; /* shared experts: [I_s,H], [I_s,H], [H,I_s] */
} LayerW;

/* The multi-token-prediction module (layer index L in HF names). */
typedef struct MtpW {
    float *embed;        /* [V, H] model.layers.L.embed_tokens (a copy in V3 files) */
    float *enorm, *hnorm;/* [H] */
    float *eh_proj;      /* [H, 2H]  input: [embedding ; hidden] */
    LayerW layer;
    float *head_norm;    /* [H] shared_head.norm */
    float *head;         /* [V, H] shared_head.head */
} MtpW;

typedef struct ModelActs ModelActs; /* training activations, model.c */

typedef struct Model {
    ModelConfig cfg;
    int nparams;
    Param *ptab;          /* [nparams] */
    size_t numel;         /* total floats */
    float *params;        /* [numel] */
    float *grads;         /* [numel] or NULL until model_alloc_grads */
    float *embed;         /* [V, H] */
    float *final_norm;    /* [H] */
    float *lm_head;       /* [V, H] */
    LayerW *layers;       /* [L] */
    int has_mtp;
    MtpW mtp;
    float *rope_inv_freq; /* [d_r/2] */
    ModelActs *acts;      /* training activations, sized on demand */
    /* Router load of the last forward: tokens per expert per layer [L, E]. */
    int *router_load;
} Model;

typedef struct ModelOpts {
    int mtp;              /* load/create the MTP module when the config has one */
} ModelOpts;

/* Allocates a model for cfg with parameters zeroed (no values). */
int model_create(Model *m, const ModelConfig *cfg, const ModelOpts *opts, Err *err);
void model_free(Model *m);
/* Random init as transformers does: normal(0, initializer_range) for matrices,
 * ones for norms, zeros for the correction bias. Deterministic in seed. */
void model_init_random(Model *m, uint64_t seed, float std);
/* Loads a HF checkpoint directory (config.json + safetensors). Missing or extra
 * tensors, wrong shapes or dtypes are errors naming the tensor. */
int model_load(Model *m, const char *dir, const ModelOpts *opts, Err *err);
/* Writes config.json, generation_config.json and model.safetensors (sharded above
 * max_shard_bytes, 0 = never). */
int model_save(const Model *m, const char *dir, size_t max_shard_bytes, Err *err);
const Param *model_find_param(const Model *m, const char *name);
void model_alloc_grads(Model *m);
void model_zero_grads(Model *m);

/* A batch of B rows of T tokens; row b holds len[b] valid tokens (NULL: all T).
 * targets[b*T+t] is the token whose log-prob is wanted at (b,t), or -1. */
typedef struct Batch {
    int B, T;
    const int *ids;       /* [B*T] */
    const int *targets;   /* [B*T] */
    const int *len;       /* [B] or NULL */
} Batch;

/* A packed batch: the tokens of several sequences in one flat stream, no
 * padding (docs/model.md, "Packed batches"). Segment s holds the tokens
 * ids[start .. start+len-1]. A root segment (prefix = -1) is an ordinary
 * causal sequence at positions 0..len-1. A segment with prefix = r (a root
 * placed before it) attends to all of r's tokens and then causally to its
 * own, at positions r.len .. r.len+len-1: r is a shared prompt computed once
 * for every segment that names it. Segments tile [0, ntok) in order. */
typedef struct PackSeg {
    int start, len;
    int prefix;           /* index of the root segment attended first, or -1 */
} PackSeg;

typedef struct PackedBatch {
    int ntok, nseg;
    const int *ids;       /* [ntok] */
    const int *targets;   /* [ntok] or NULL; -1 where no log-prob is wanted */
    const PackSeg *seg;   /* [nseg] */
} PackedBatch;

/* Training forward: per-token log-prob of targets under softmax(logits/temp)
 * and entropy of that distribution; keeps activations for model_backward.
 * logp/entropy are [B*T] (0 where target < 0). */
int model_forward(Model *m, const Batch *b, float temperature, float *logp, float *entropy, Err *err);
/* Backward of the last model_forward: dlogp, dentropy [B*T] (dentropy may be NULL).
 * Accumulates into m->grads. */
void model_backward(Model *m, const Batch *b, const float *dlogp, const float *dentropy);
/* The same over a packed batch: logp/entropy and dlogp/dentropy are [ntok].
 * Equal (up to fp32 rounding) to model_forward on the unpacked sequences. */
int model_forward_packed(Model *m, const PackedBatch *pb, float temperature, float *logp, float *entropy, Err *err);
/* Its checks of the layout (not of the token ids): segments continue one another and
 * cover the tokens, a prefix is an earlier root, positions stay within the context. */
int model_packed_layout_check(const ModelConfig *c, const PackedBatch *pb, Err *err);
void model_backward_packed(Model *m, const PackedBatch *pb, const float *dlogp, const float *dentropy);
/* Inference forward returning the full logits [B*T, V] (no activations kept). */
int model_logits(Model *m, const Batch *b, float *logits, Err *err);
/* MTP: logits [B*T, V] predicting token t+2 from the main hidden state at t and
 * the embedding of ids[t+1] (the last position of each row uses the pad id 0). */
int model_mtp_logits(Model *m, const Batch *b, float *logits, Err *err);

#endif
