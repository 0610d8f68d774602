/* rollout: G sampled completions for each of P prompts, batched together.
 *
 * Each prompt is prefilled once (one model_extend over all its tokens) into
 * the first slot of its group and the latent cache is copied to the group's
 * other G-1 slots (kvcache_copy); then every unfinished sample advances by one
 * token per step, all of them in one model_extend call. A sample stops on an
 * EOS id (the EOS token is kept, finish "eos"), when the caller's stop
 * callback says so (finish "stop": stop strings live with the tokenizer, which
 * this module does not know), or at its token limit (finish "length").
 *
 * Sample i = p*G + g draws its random numbers from (seed, sample_base + i,
 * token index) (sampler.h), so a run is reproducible and independent of the
 * thread count. A bad prompt (empty, an id outside the vocabulary, or no room
 * in the context) fails only its own group: its samples get finish "error"
 * and a message; the other prompts are generated as usual.
 *
 * It does not tokenize, compute rewards or store anything. */
#ifndef GRPO_ROLLOUT_H
#define GRPO_ROLLOUT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "model/model.h"
#include "rl/sampler.h"

typedef enum FinishReason {
    FINISH_NONE = 0, /* still running (never in a returned result) */
    FINISH_EOS,      /* "eos": sampled an EOS id (included as the last token) */
    FINISH_STOP,     /* "stop": the stop callback returned 1 (the last token is kept) */
    FINISH_LENGTH,   /* "length": max_new_tokens, or the context, reached */
    FINISH_ERROR,    /* "error": the prompt was refused; see RolloutSample.error */
} FinishReason;

const char *finish_reason_name(FinishReason r);

/* Called after each sampled token that is not EOS, for sample = p*G + g;
 * tokens[0..n) is its completion so far (the new token last). Return 1 to
 * stop it (finish "stop", the token kept). Called from one thread, in sample
 * order, so ctx needs no locking. */
typedef int (*RolloutStopFn)(void *ctx, int sample, const int *tokens, int n);

typedef struct RolloutOpts {
    SamplerOpts sampling;
    int group_size;       /* G samples per prompt (TRL num_generations, default 8) */
    int max_new_tokens;   /* per sample (TRL max_completion_length, default 512) */
    const int *eos_ids;   /* NULL: the model config's eos_token_id; else n_eos ids (may be 0) */
    int n_eos;
    uint64_t seed;
    uint64_t sample_base; /* RNG id of sample i is sample_base + i: give each step its own range */
    int max_seq_len;      /* prompt + completion limit, 0 = max_position_embeddings (smaller of the two) */
    int prefill_tokens;   /* prompt tokens per prefill call (whole prompts), 0 = 8192 */
    RolloutStopFn stop;   /* NULL: no stop strings */
    void *stop_ctx;
} RolloutOpts;

/* TRL-like defaults: G 8, 512 new tokens, sampler_defaults(), config EOS. */
RolloutOpts rollout_defaults(void);

typedef struct RolloutSample {
    int prompt, index;    /* p and g: sample p*G + g */
    int n;                /* completion tokens */
    int *tokens;          /* [n] */
    float *logp;          /* [n] log_softmax(logits / T)[token], full vocabulary (T = 1 when greedy) */
    float *logp_filtered; /* [n] log-prob under the filtered distribution actually sampled */
    double logp_sum;      /* sum of logp */
    FinishReason finish;
    double seconds;       /* from the start of the call until this sample finished */
    char error[256];      /* set when finish == FINISH_ERROR */
} RolloutSample;

typedef struct RolloutStats {
    int prompts, samples, failed_prompts;
    long prompt_tokens;   /* prefilled (once per group) */
    long new_tokens;      /* sampled, all samples */
    int steps;            /* decode calls */
    double prefill_s, decode_s, sample_s, total_s; /* sample_s: time in the sampler */
    double tokens_per_s;  /* new_tokens / total_s */
    size_t cache_bytes;   /* latent KV cache allocated for the call */
    int cache_slots, cache_len;
} RolloutStats;

typedef struct RolloutResult {
    int nsamples;         /* P * G */
    RolloutSample *s;     /* [nsamples], sample p*G + g */
    RolloutStats stats;
} RolloutResult;

/* Where the model runs for a rollout: rollout_generate uses the CPU model
 * (model_extend, kvcache.h, sampler.h); rollout_cuda.h gives the GPU's. The
 * engine owns a latent cache of nslots sequences and a buffer of nslots rows
 * of logits; rollout.c does the rest (slots, limits, finishing, stop strings). */
typedef struct RolloutEngine {
    void *ctx;
    /* A cache of nslots x max_len positions and nslots logits rows; *bytes: the cache's size. */
    int (*open)(void *ctx, int nslots, int max_len, size_t *bytes, Err *err);
    void (*close)(void *ctx);
    /* model_extend: ntok[i] new tokens for slot slots[i]; the logits of each
     * sequence's last token go to rows row0 .. row0 + nseq - 1. */
    int (*extend)(void *ctx, int nseq, const int *slots, const int *ntok, const int *ids, int row0, Err *err);
    /* kvcache_copy: slot dst takes a copy of src's cache. */
    int (*copy)(void *ctx, int dst, int src, Err *err);
    /* out[k] = sampler_sample(o, logits row row[k], seed, id[k], step). Returns -1
     * with *bad = k when row k holds no finite maximum (or -1 and *bad = -1 on a
     * failure of the engine, err set). */
    int (*sample)(void *ctx, const SamplerOpts *o, int n, const int *row, uint64_t seed, const uint64_t *id,
                  uint64_t step, SampleOut *out, int *bad, Err *err);
} RolloutEngine;

/* Generates G completions for each prompts[p][0..prompt_len[p]). Returns 0
 * when the call ran (individual prompts may have failed: FINISH_ERROR), -1 for
 * bad options (ERR_INPUT) or a failure of the model (ERR_WORK), with res
 * emptied (stats kept). The cache is
 * allocated for the call: P*G slots of max(prompt_len) + max_new_tokens - 1
 * positions (capped by the context). Free the result with rollout_result_free. */
int rollout_generate(Model *m, int P, const int *const *prompts, const int *prompt_len, const RolloutOpts *o,
                     RolloutResult *res, Err *err);
/* The same on an engine; cfg is the model's configuration (vocabulary, context, EOS). */
int rollout_generate_on(const RolloutEngine *e, const ModelConfig *cfg, int P, const int *const *prompts,
                        const int *prompt_len, const RolloutOpts *o, RolloutResult *res, Err *err);
void rollout_result_free(RolloutResult *res);

/* One line: samples, tokens, prefill/decode/sampler seconds, tokens/s, cache MB. */
void rollout_stats_print(const RolloutStats *st, FILE *f);

#endif
