/* task_arith: the synthetic arithmetic reasoning task of the tiny demo.
 *
 * Multi-step word problems ("Mia has 7 pens. She buys 5 more. ...") whose
 * chain of thought is one equation per step, written as
 *   <think>\n7 + 5 = 12\n12 - 3 = 9\n</think>\n<answer>\n9\n</answer>
 * (the open-r1 layout the stock format reward checks)
 * Generated deterministically from a seed; train and test splits use disjoint
 * seeds. An SFT variant degrades a share of the solutions on purpose (a wrong
 * step carried to a wrong answer, or missing think/answer tags) so the base
 * model is imperfect and GRPO has something to fix. It is not a benchmark of
 * anything but the toolkit. */
#ifndef GRPO_TASK_ARITH_H
#define GRPO_TASK_ARITH_H

#include <stdint.h>
#include <stdio.h>

typedef struct ArithOpts {
    int min_steps, max_steps;  /* operations per problem */
    int max_value;             /* the running value stays in [0, max_value] */
    int max_operand;           /* added/subtracted amounts are in [1, max_operand]; factors 2..4 */
    double p_wrong;            /* share of solutions with a wrong step (SFT data only) */
    double p_noformat;         /* share of solutions without think/answer tags */
} ArithOpts;

/* One problem. Strings are NUL-terminated in fixed buffers. */
typedef struct ArithItem {
    char question[512];
    char solution[512];   /* chain of thought + answer, possibly degraded */
    long answer;          /* the correct final answer */
} ArithItem;

void arith_item(uint64_t seed, uint64_t index, const ArithOpts *o, ArithItem *it);
/* Writes n JSONL rows {"question","answer","solution"} to f. */
void arith_write_jsonl(FILE *f, uint64_t seed, long n, const ArithOpts *o);

#endif
