/* mathans: final answers of math problems: extraction from a completion,
 * normalisation of numbers and simple LaTeX, and equivalence.
 *
 * Extraction: the last \boxed{...} (or \fbox{...}), GSM8K's "#### n", the
 * content of the last <answer>...</answer>. Equivalence: both answers are
 * cleaned (\left/\right, \dfrac/\tfrac, \text{} units after a number, ^\circ,
 * \$, thousands separators, x \in, "y =" prefixes), split into tuples,
 * intervals, sets or matrices, and each element is parsed as an expression
 * (numbers, + - * / ^, implicit products, \frac, \sqrt, \pi, \infty, %, !,
 * \sin-style functions) and evaluated in complex arithmetic at several
 * points for its variables. Equal when every point agrees (relative 1e-9);
 * constants must agree within a relative 1e-12 or, when neither is an
 * integer, round to the same 6 decimals (math-verify's float rounding).
 * Answers that do not parse are compared as lower-cased text.
 * This is a light checker, not a CAS: it is measured against math-verify by
 * tests/rewards/test_math_agree.c. */
#ifndef GRPO_MATHANS_H
#define GRPO_MATHANS_H

#include <stddef.h>

/* Each extractor writes the answer (NUL-terminated, truncated to n-1) and
 * returns 1, or returns 0 when there is none. */
int mathans_boxed(const char *text, char *out, size_t n);
int mathans_gsm8k(const char *text, char *out, size_t n);
int mathans_tag(const char *text, const char *tag, char *out, size_t n);
/* boxed, else "#### n", else <answer> content. */
int mathans_extract(const char *text, char *out, size_t n);

/* The cleaned form of an answer (what equal compares), for logging. */
void mathans_normalize(const char *answer, char *out, size_t n);

/* 1 when the answers are equivalent, else 0. */
int mathans_equal(const char *gold, const char *pred);

/* The value of a constant answer (no variables); 1 on success. */
int mathans_number(const char *answer, double *value);

#endif
