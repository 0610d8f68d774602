/* sandbox_cases: judging programs for code rewards.
 *
 * - Output comparison for stdin/stdout test cases: both texts are split into lines,
 *   each line stripped, trailing empty lines dropped; the line counts must be equal
 *   (a missing or extra line fails, unlike zip-style comparisons), and each line must
 *   match exactly or token by token, where two decimal numbers match within `tol`
 *   (absolute, or relative to the expected value) and integers must be equal.
 * - HumanEval-style assert programs: the program, the tests and `check(entry_point)`,
 *   followed by a line that prints a random per-run nonce. Success needs exit 0 AND
 *   the nonce on stdout, so exit(0) before the asserts is not a pass. (The nonce is in
 *   the program text, so code that reads its own source can still forge it; this
 *   guards against the exit-code hack, not against a targeted attack on the harness.) */
#ifndef GRPO_SANDBOX_CASES_H
#define GRPO_SANDBOX_CASES_H

#include "sandbox.h"
#include "sandbox_pool.h"

/* 1 when `actual` matches `expected` under the rules above, else 0. */
int sandbox_output_matches(const char *expected, const char *actual, double tol);

/* Assert program (malloc'd) for Python; nonce receives 32 random hex chars. NULL with
 * err set if the system random source fails. */
char *sandbox_assert_program(const char *program, const char *test, const char *entry_point,
                             char nonce[33], Err *err);
/* 1 when r exited 0 within its limits and printed the nonce on a line of its own. */
int sandbox_assert_passed(const SandboxResult *r, const char *nonce);

typedef struct SandboxCase {
    const char *input;     /* stdin (NUL-terminated) */
    const char *expected;  /* expected stdout */
} SandboxCase;

/* Runs `base` (language, code, limits) once per case, through the pool when given
 * (else sequentially with sandbox_run), and sets passed[i] to 1 when case i ran OK and
 * its output matches. Returns the number passed, or -1 with err set on a bad config. */
int sandbox_run_cases(SandboxPool *pool, const SandboxConfig *base, const SandboxCase *cases, int n,
                      double tol, int *passed, Err *err);

#endif
