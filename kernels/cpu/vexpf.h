/* vexpf: expf on VW floats at once, with the same bits as glibc's scalar
 * expf (2.27 and later: the table + double-precision polynomial of ARM's
 * optimized-routines, in its FMA build, which glibc picks on every CPU with
 * AVX-512). It exists so SwiGLU and the softmaxes can run vectorised without
 * changing a single result: the trainer's numbers stay bitwise what they were
 * with the libm call. Lanes outside the polynomial's range (|x| >= 88, inf,
 * NaN) go to libm's expf itself. test_vexpf checks it against expf; without
 * AVX-512 vexpf simply calls expf per lane. Internal to kernels/cpu. */
#ifndef GRPO_VEXPF_H
#define GRPO_VEXPF_H

#include "simd.h"

#include <math.h>
#include <stdint.h>

#if VW == 16
#include <immintrin.h>

/* __exp2f_data of glibc: tab[i] = bits(2^(i/32)) - (i << 47); InvLn2N = 32/ln 2;
 * C = the polynomial for 2^(r/32); SHIFT = 1.5 * 2^52 (round to integer). */
static const uint64_t vexpf_tab[32] __attribute__((aligned(64))) = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51, 0x3fef72b83c7d517b,
    0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1, 0x3fef06fe0a31b715, 0x3feef1a7373aa9cb,
    0x3feedea64c123422, 0x3feece086061892d, 0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429,
    0x3feea47eb03a5585, 0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d, 0x3feee89f995ad3ad,
    0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069, 0x3fef5818dcfba487, 0x3fef7c97337b9b5f,
    0x3fefa4afa2a490da, 0x3fefd0765b6e4540};

/* 8 lanes in double, the scalar code's operations one for one (each fma a
 * fused multiply-add there too). */
static inline __m256 vexpf_half(__m256 x) {
    const __m512d inv = _mm512_set1_pd(0x1.71547652b82fep+5), shift = _mm512_set1_pd(0x1.8p+52);
    const __m512d c0 = _mm512_set1_pd(0x1.c6af84b912394p-20), c1 = _mm512_set1_pd(0x1.ebfce50fac4f3p-13),
                  c2 = _mm512_set1_pd(0x1.62e42ff0c52d6p-6), one = _mm512_set1_pd(1.0);
    __m512d xd = _mm512_cvtps_pd(x);
    __m512d kd = _mm512_fmadd_pd(inv, xd, shift); /* z + SHIFT, rounded: ki in the low bits */
    __m512i ki = _mm512_castpd_si512(kd);
    kd = _mm512_sub_pd(kd, shift);
    __m512d r = _mm512_fmsub_pd(inv, xd, kd);
    __m512i t = _mm512_i64gather_epi64(_mm512_and_si512(ki, _mm512_set1_epi64(31)), (const void *)vexpf_tab, 8);
    t = _mm512_add_epi64(t, _mm512_slli_epi64(ki, 47));
    __m512d z = _mm512_fmadd_pd(c0, r, c1), r2 = _mm512_mul_pd(r, r);
    __m512d y = _mm512_fmadd_pd(r, c2, one);
    y = _mm512_fmadd_pd(z, r2, y);
    y = _mm512_mul_pd(y, _mm512_castsi512_pd(t));
    return _mm512_cvtpd_ps(y);
}

static inline vf vexpf(vf v) {
    __m512 x = (__m512)v;
    __m256 lo = vexpf_half(_mm512_castps512_ps256(x)), hi = vexpf_half(_mm512_extractf32x8_ps(x, 1));
    vf y = (vf)_mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
    /* glibc's fast path: abstop = (bits >> 20) & 0x7ff <= 0x42a, i.e. |x| < 2^7 * 1.375 */
    __m512i ab = _mm512_and_si512(_mm512_srli_epi32(_mm512_castps_si512(x), 20), _mm512_set1_epi32(0x7ff));
    __mmask16 big = _mm512_cmpgt_epi32_mask(ab, _mm512_set1_epi32(0x42a));
    if (__builtin_expect(big != 0, 0))
        for (int i = 0; i < VW; i++)
            if (big >> i & 1) y[i] = expf(v[i]);
    return y;
}
#else
static inline vf vexpf(vf v) {
    vf y;
    for (int i = 0; i < VW; i++) y[i] = expf(v[i]);
    return y;
}
#endif

#endif
