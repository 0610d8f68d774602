/* fuzz_mathans: libFuzzer target for the answer parser (rewards/mathans.c).
 * The input is split at the first newline into a "gold" and a "completion";
 * every extractor, normalize, number and equal run on them.
 *   CC=clang cmake -B build-fuzz -DGRPO_FUZZ=ON -DGRPO_CUDA=OFF
 *   cmake --build build-fuzz --target fuzz_mathans
 *   build-fuzz/tests/rewards/fuzz_mathans -max_total_time=60 tests/rewards/fuzz_corpus */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rewards/mathans.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    char *nl = memchr(buf, '\n', size);
    const char *gold = buf, *comp = nl ? nl + 1 : buf;
    if (nl) *nl = 0;
    char out[4096], norm[4096];
    double v;
    mathans_boxed(comp, out, sizeof out);
    mathans_gsm8k(comp, out, sizeof out);
    mathans_tag(comp, "answer", out, sizeof out);
    if (mathans_extract(comp, out, sizeof out)) mathans_equal(gold, out);
    mathans_equal(gold, comp);
    mathans_normalize(gold, norm, sizeof norm);
    mathans_number(gold, &v);
    free(buf);
    return 0;
}
