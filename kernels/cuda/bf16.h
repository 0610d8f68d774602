/* bf16: the storage type of the CUDA backend's weights and activations as seen
 * from C. A cuda_bf16 is the raw 16 bits of a bfloat16 (the top half of an
 * IEEE fp32); device code reinterprets it as __nv_bfloat16. The host helpers
 * convert with round-to-nearest-even, as __float2bfloat16 does on the GPU, so
 * values rounded here are exactly what a kernel would store. Not a tensor type:
 * shapes travel next to the pointers. */
#ifndef GRPO_CUDA_BF16_H
#define GRPO_CUDA_BF16_H

#include <stdint.h>
#include <string.h>

typedef uint16_t cuda_bf16;

/* fp32 -> bf16, round to nearest even; NaN stays a (quiet) NaN. */
static inline cuda_bf16 bf16_from_f32(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (cuda_bf16)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (cuda_bf16)(u >> 16);
}

static inline float bf16_to_f32(cuda_bf16 h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* f rounded through bf16 (the value a bf16 buffer holds for f). */
static inline float bf16_round(float f) { return bf16_to_f32(bf16_from_f32(f)); }

#endif
