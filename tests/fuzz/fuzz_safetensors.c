/* fuzz_safetensors: libFuzzer target for the safetensors header parser.
 * Every input is parsed as a whole file image (st_open_memory runs the same
 * checks st_open runs on a file); when it is accepted, every float tensor is
 * converted, so the offsets the parser approved are also read. */
#include <stdint.h>
#include <stdlib.h>

#include "model/safetensors.h"
#include "model/st_memory.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Safetensors st;
    Err err = {0};
    if (st_open_memory(&st, data, size, "fuzz.safetensors", &err)) return 0;
    for (int i = 0; i < st.ntensors; i++) {
        const StTensor *t = &st.tensors[i];
        float *out = malloc((size_t)t->numel * sizeof(float) + 1);
        st_read_f32(&st, t, out, &err);
        free(out);
    }
    st_close(&st);
    return 0;
}
