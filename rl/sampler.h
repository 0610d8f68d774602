/* sampler: picks the next token from one row of logits [V].
 *
 * Filters in the order and with the semantics of Hugging Face transformers'
 * sampling warpers as GenerationMixin._get_logits_processor chains them
 * (transformers 5.23): temperature, then top-k, then top-p, then min-p (see
 * docs/rollouts.md for why this order and how vLLM's differs). Temperature 0
 * means greedy (argmax, lowest id on ties). Random numbers come from a
 * counter-based generator keyed by (seed, sample id, step), so a sample's
 * tokens depend neither on which other samples share its batch nor on the
 * thread count.
 *
 * For every sampled token it reports two log-probabilities:
 *   logp          log_softmax(logits / T)[token] over the FULL vocabulary,
 *                 computed with the same float operations as model_forward,
 *                 so it is the quantity the trainer recomputes (T = 1 for greedy);
 *   logp_filtered the log of the renormalised probability over the kept set
 *                 (what was actually sampled from; 0 for greedy).
 * It does not run the model, know about tokenizers or hold any state between
 * calls beyond a scratch buffer. */
#ifndef GRPO_SAMPLER_H
#define GRPO_SAMPLER_H

#include <stdint.h>

#include "base/err.h"

typedef struct SamplerOpts {
    float temperature; /* > 0 samples from softmax(logits / T); 0 = greedy. TRL default 1.0 */
    int top_k;         /* keep tokens whose scaled logit >= the k-th largest (ties kept); 0 = off */
    double top_p;      /* nucleus: drop the least likely tokens whose cumulative mass <= 1 - top_p; 1 = off */
    double min_p;      /* drop tokens with p < min_p * p_max; 0 = off */
} SamplerOpts;

/* TRL's GRPOConfig defaults: T 1.0, top_k 0, top_p 1.0, min_p off. */
SamplerOpts sampler_defaults(void);
/* Checks ranges (T >= 0 finite, top_k >= 0, top_p in [0,1], min_p in [0,1]). */
int sampler_check(const SamplerOpts *o, Err *err);

/* Scratch for one row of V logits; one per thread. */
typedef struct SamplerWork SamplerWork;
SamplerWork *sampler_work_new(int V);
void sampler_work_free(SamplerWork *w);

typedef struct SampleOut {
    int token;
    float logp;          /* log_softmax(logits / T)[token], full vocabulary */
    float logp_filtered; /* log p(token) under the filtered, renormalised distribution */
} SampleOut;

/* Samples one token from logits [V] with the random number u(seed, id, step).
 * Returns -1 (ERR_WORK) when the logits hold no finite maximum (NaN / inf). */
int sampler_sample(const SamplerOpts *o, const float *logits, SamplerWork *w, uint64_t seed, uint64_t id,
                   uint64_t step, SampleOut *out, Err *err);

/* The distribution sampler_sample draws from: probs [V], renormalised over the
 * kept tokens, 0 elsewhere (one-hot at the argmax for greedy). Returns the
 * number of kept tokens, or -1 as sampler_sample. */
int sampler_probs(const SamplerOpts *o, const float *logits, SamplerWork *w, double *probs, Err *err);

/* The counter-based uniform in [0, 1) (53 bits): splitmix64's finaliser
 * chained over seed, id and step. */
double sampler_uniform(uint64_t seed, uint64_t id, uint64_t step);

#endif
