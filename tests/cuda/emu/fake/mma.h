/* Fake mma.h for tests/cuda/emu: nvcuda::wmma for 16x16x16 bf16 -> fp32 only.
 * A fragment is a whole 16x16 matrix held by lane 0 of the warp (the real
 * per-lane layout is not modelled); each call is warp-collective: every live
 * lane of the warp must reach it (a warp barrier before and after). */
#ifndef EMU_MMA_H
#define EMU_MMA_H
#include <string.h>
#include "cuda_runtime.h"
#include "cuda_bf16.h"

namespace nvcuda {
namespace wmma {
struct row_major;
struct col_major;
struct matrix_a;
struct matrix_b;
struct accumulator;
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
    static_assert(M == 16 && N == 16 && K == 16, "emu: only 16x16x16 WMMA fragments");
    enum { num_elements = 256 };
    float v[256];  // [row][col] of the logical 16x16 matrix, lane 0's copy only
};
typedef fragment<accumulator, 16, 16, 16, float> emu_acc;

template <class L>
struct emu_lay;
template <>
struct emu_lay<row_major> {
    static int off(int r, int c, int ld) { return r * ld + c; }
};
template <>
struct emu_lay<col_major> {
    static int off(int r, int c, int ld) { return c * ld + r; }
};

template <class U, class L>
void load_matrix_sync(fragment<U, 16, 16, 16, __nv_bfloat16, L> &f, const __nv_bfloat16 *p, unsigned ld) {
    emu_warp_barrier();
    if (emu_lane() == 0)
        for (int r = 0; r < 16; r++)
            for (int c = 0; c < 16; c++) f.v[r * 16 + c] = __bfloat162float(p[emu_lay<L>::off(r, c, ld)]);
    emu_warp_barrier();
}
static inline void load_matrix_sync(emu_acc &f, const float *p, unsigned ld, layout_t l) {
    emu_warp_barrier();
    if (emu_lane() == 0)
        for (int r = 0; r < 16; r++)
            for (int c = 0; c < 16; c++) f.v[r * 16 + c] = l == mem_row_major ? p[r * ld + c] : p[c * ld + r];
    emu_warp_barrier();
}
static inline void store_matrix_sync(float *p, const emu_acc &f, unsigned ld, layout_t l) {
    emu_warp_barrier();
    if (emu_lane() == 0)
        for (int r = 0; r < 16; r++)
            for (int c = 0; c < 16; c++) (l == mem_row_major ? p[r * ld + c] : p[c * ld + r]) = f.v[r * 16 + c];
    emu_warp_barrier();
}
static inline void fill_fragment(emu_acc &f, float x) {
    emu_warp_barrier();
    if (emu_lane() == 0)
        for (int i = 0; i < 256; i++) f.v[i] = x;
    emu_warp_barrier();
}
// d = a b + c, fp32 products of the bf16 operands summed in k order.
template <class LA, class LB>
void mma_sync(emu_acc &d, const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, LA> &a,
              const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, LB> &b, const emu_acc &c) {
    emu_warp_barrier();
    if (emu_lane() == 0) {
        float t[256];
        for (int m = 0; m < 16; m++)
            for (int n = 0; n < 16; n++) {
                float s = c.v[m * 16 + n];
                for (int k = 0; k < 16; k++) s += a.v[m * 16 + k] * b.v[k * 16 + n];
                t[m * 16 + n] = s;
            }
        memcpy(d.v, t, sizeof t);
    }
    emu_warp_barrier();
}
}  // namespace wmma
}  // namespace nvcuda
#endif
