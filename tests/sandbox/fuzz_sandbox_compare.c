/* fuzz_sandbox_compare: libFuzzer target for sandbox_output_matches (the stdin/stdout
 * judge parses every token of untrusted output as a possible number). Input: expected,
 * a NUL byte, actual. Checks, besides memory safety: a text always matches itself, and
 * the verdict does not depend on which side has extra trailing blank lines.
 *   CC=clang cmake -B build-fuzz -DGRPO_FUZZ=ON -DGRPO_CUDA=OFF
 *   cmake --build build-fuzz --target fuzz_sandbox_compare
 *   build-fuzz/tests/sandbox/fuzz_sandbox_compare -max_total_time=60 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox/sandbox_cases.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 3);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    const char *expected = buf;
    const char *actual = memchr(buf, 0, size) ? buf + strlen(buf) + 1 : "";
    if (actual > buf + size) actual = "";
    int m = sandbox_output_matches(expected, actual, 1e-6);
    if (!sandbox_output_matches(expected, expected, 1e-6)) abort();  // reflexive
    if (!sandbox_output_matches(actual, actual, 0)) abort();
    // Trailing blank lines never change the verdict.
    size_t n = strlen(actual);
    char *padded = malloc(n + 3);
    if (padded) {
        memcpy(padded, actual, n);
        memcpy(padded + n, "\n\n", 3);
        if (sandbox_output_matches(expected, padded, 1e-6) != m) abort();
        free(padded);
    }
    free(buf);
    return 0;
}
