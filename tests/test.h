/* test: a minimal harness for the C test programs (after redis testhelp.h).
 * CHECK records a failure and goes on; test_report prints "N passed, N failed"
 * and returns the exit code (non-zero on any failure), so ctest sees it.
 * Tests skipped for a reason print it and exit 77 (ctest SKIP_RETURN_CODE). */
#ifndef GRPO_TEST_H
#define GRPO_TEST_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

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

/* Runs a shell command built like printf; its exit code, or -1 when a signal ended it. */
static inline int test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int test_sh(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static inline int test_report(void) {
    printf("%d passed, %d failed\n", test_passed_, test_failed_);
    return test_failed_ ? 1 : 0;
}

#endif
