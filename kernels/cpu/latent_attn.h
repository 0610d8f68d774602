/* latent_attn: one query position attending over T cached tokens through a
 * single key/value head shared by all query heads, where the value is the
 * first part of the key (absorbed-MLA decoding over a latent cache,
 * deepseek-v3.md §4.6: key = c_kv | k_pe, value = c_kv). For each head h:
 *   s[h, t] = scale * (qa[h]·ka[t] + qb[h]·kb[t]),  p[h] = softmax_t(s[h]),
 *   ctx[h]  = sum_t p[h, t] ka[t].
 * fp32 with a double softmax denominator. Single-threaded: callers run many
 * query positions in parallel. Knows nothing of the model's projections. */
#ifndef GRPO_LATENT_ATTN_H
#define GRPO_LATENT_ATTN_H

/* ctx[nh, da]; qa: head h at qa + h*lda (da floats), qb at qb + h*ldb (db
 * floats); ka[T, da], kb[T, db] contiguous; sc[nh, T] scratch (left holding p). */
void latent_attend(float *ctx, float *sc, const float *qa, long lda, const float *qb, long ldb, const float *ka,
                   const float *kb, int nh, int T, int da, int db, float scale);

#endif
