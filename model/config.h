/* config: the Hugging Face config.json of DeepSeek-V3 / DeepSeek-V2 checkpoints.
 *
 * Parses and validates the fields that change computation, applies the loader
 * traps of reference/deepseek-v3.md §2.4 on purpose (q_lora_rank null, latent
 * norm eps 1e-6, YaRN factor vs max_position_embeddings, softmax mscale²,
 * V2 softmax gating), and derives the numbers the forward pass needs.
 * It does not know about weights (model.h) or the tokenizer. */
#ifndef GRPO_CONFIG_H
#define GRPO_CONFIG_H

#include <stddef.h>

#include "base/err.h"

enum { SCORE_SIGMOID = 0, SCORE_SOFTMAX = 1 };
enum { TOPK_NOAUX_TC = 0, TOPK_GREEDY = 1, TOPK_GROUP_LIMITED_GREEDY = 2 };

typedef struct ModelConfig {
    int is_v2;                 /* model_type deepseek_v2 (else deepseek_v3) */
    int vocab_size;            /* V */
    int hidden_size;           /* H */
    int intermediate_size;     /* dense MLP width */
    int moe_intermediate_size; /* routed expert width */
    int num_hidden_layers;     /* L */
    int first_k_dense_replace; /* layers [0,k) dense */
    int moe_layer_freq;
    int num_attention_heads;   /* n_h */
    int q_lora_rank;           /* d_q; 0 when null (plain q_proj) */
    int kv_lora_rank;          /* d_c */
    int qk_nope_head_dim;      /* d_n */
    int qk_rope_head_dim;      /* d_r */
    int v_head_dim;            /* d_v */
    int n_routed_experts;      /* E (0 = no MoE layers) */
    int n_shared_experts;
    int num_experts_per_tok;   /* k */
    int n_group, topk_group;
    int scoring_func;          /* SCORE_* */
    int topk_method;           /* TOPK_* */
    int norm_topk_prob;
    int has_correction_bias;   /* e_score_correction_bias tensors exist (noaux_tc) */
    float routed_scaling_factor;
    float rms_norm_eps;        /* block norms */
    float latent_norm_eps;     /* q_a/kv_a norms: always 1e-6 (trap 9) */
    double rope_theta;
    int max_position_embeddings;
    int rope_yarn;             /* rope_scaling.type yarn */
    double yarn_factor, yarn_beta_fast, yarn_beta_slow, yarn_mscale, yarn_mscale_all_dim;
    int yarn_original_max;
    int num_nextn_predict_layers; /* MTP depth */
    int bos_token_id, eos_token_id;
    int tie_word_embeddings;   /* must be false for DeepSeek; rejected otherwise */
    char torch_dtype[16];
    /* derived */
    int qk_head_dim;           /* d_n + d_r */
    float softmax_scale;       /* (d_n+d_r)^-0.5 * m(s, mscale_all_dim)^2 */
    float rope_amplitude;      /* m(s, mscale)/m(s, mscale_all_dim), 1 for real checkpoints */
} ModelConfig;

/* Reads and validates path (a config.json file, or a directory holding one). */
int config_load(ModelConfig *c, const char *path, Err *err);
/* Same from memory; `name` is used in messages (a file name). */
int config_parse(ModelConfig *c, const char *json, size_t len, const char *name, Err *err);
/* Writes a config.json that transformers loads (architectures, model_type, every field). */
int config_save(const ModelConfig *c, const char *path, Err *err);
/* True when layer l uses the MoE block (HF rule: l >= first_k_dense_replace, freq). */
int config_layer_is_moe(const ModelConfig *c, int l);
/* rope inverse frequencies with YaRN applied; out has d_r/2 entries. */
void config_rope_inv_freq(const ModelConfig *c, float *out);
/* Parameter counts (main model, MTP excluded) following deepseek-v3.md §2.3. */
void config_param_counts(const ModelConfig *c, double *total, double *active);

#endif
