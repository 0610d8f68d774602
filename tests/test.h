/* test: a minimal harness for the C test programs (after redis testhelp.h).
 * CHECK records a failure and goes on; test_report prints "N passed, N failed"
 * and returns the exit code (non-zero on any failure), so ctest sees it.
 * Tests skipped for a reason print it and exit 77 (ctest SKIP_RETURN_CODE). */
#ifndef GRPO_TEST_H
#define GRPO_TEST_H

#include <math.h>
#include <stdio.h>

static int test_passed_, test_failed_;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (cond) {                                                        \
            test_passed_++;                                                \
        } else {                                                           \
            test_failed_++;                                                \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
        }                                                                  \
    } while (0)

#define TEST_SKIP(...)                            \
    do {                                          \
        printf("SKIPPED: ");                      \
        printf(__VA_ARGS__);                      \
        printf("\n");                             \
        return 77;                                \
    } while (0)

static inline int test_report(void) {
    printf("%d passed, %d failed\n", test_passed_, test_failed_);
    return test_failed_ ? 1 : 0;
}

#endif
