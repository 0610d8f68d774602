/* Fake cuda_bf16.h for tests/cuda/emu: __nv_bfloat16 as its raw 16 bits, with
 * the conversions the kernels use (round to nearest even, as the GPU). */
#ifndef EMU_CUDA_BF16_H
#define EMU_CUDA_BF16_H
#include "kernels/cuda/bf16.h"

struct __nv_bfloat16 {
    unsigned short __x;
    __nv_bfloat16() = default;
    __nv_bfloat16(float f) : __x(bf16_from_f32(f)) {}
    operator float() const { return bf16_to_f32(__x); }
};
static inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
static inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
static inline float __bfloat162float(__nv_bfloat16 h) { return bf16_to_f32(h.__x); }
#endif
