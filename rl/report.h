/* report: a run's rollout store as one self-contained HTML page (inline SVG
 * plots, no scripts, no network) and as plain numbers for the terminal.
 *
 * Everything comes from the store's documented views (docs/store.md), so a
 * plot can be checked against the same query in the sqlite3 shell. Every
 * plotted series carries its numbers in data-x / data-y attributes (%.17g)
 * next to the pixel coordinates, which is what the test compares with the
 * database. It does not train, sample or change the database. */
#ifndef GRPO_REPORT_H
#define GRPO_REPORT_H

#include <stdio.h>

#include "base/err.h"
#include "store.h"

typedef struct ReportOpts {
    const char *title;           /* page title, usually the run name */
    const char *accuracy_reward; /* reward component whose value > 0 counts as correct */
    int samples;                 /* rows in the table of sampled completions */
    int rows;                    /* steps printed on the terminal (evenly spaced) */
    int completion_chars;        /* completions longer than this are cut in the table */
} ReportOpts;

/* Writes the HTML page to out. */
int report_write_html(Store *st, const ReportOpts *opts, FILE *out, Err *err);
/* Prints the run, a per-step table and the last step's reward components. */
int report_print_terminal(Store *st, const ReportOpts *opts, FILE *out, Err *err);

#endif
