/* rng: splitmix64, the one generator every part of grpo uses (model init,
 * data order, synthetic data, sampling). Counter-based use goes through
 * rng_fmix64; sequential use through rng_next. Not cryptographic. */
#ifndef GRPO_RNG_H
#define GRPO_RNG_H

#include <stdint.h>

#define RNG_GOLDEN 0x9e3779b97f4a7c15ull

/* splitmix64's finaliser: a bijective mix of 64 bits. */
static inline uint64_t rng_fmix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* One splitmix64 step: advances *s and returns the next 64 random bits. */
static inline uint64_t rng_next(uint64_t *s) { return rng_fmix64(*s += RNG_GOLDEN); }

/* Uniform double in (0, 1) from 53 random bits. */
static inline double rng_uniform(uint64_t *s) { return ((rng_next(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

#endif
