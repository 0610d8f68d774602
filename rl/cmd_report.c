/* cmd_report: `grpo report RUN`, the run's HTML report (rl/report) written to
 * RUN/report.html (or --out) plus its numbers on the terminal. RUN is a run
 * folder holding rollouts.db, or the database file itself. Read-only on the
 * database: it can run while the trainer writes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "cmd.h"
#include "report.h"
#include "store.h"

/* The run name: the folder's last component. */
static void run_label(const char *dir, char *out, size_t n) {
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && dir[start - 1] != '/') start--;
    snprintf(out, n, "%.*s", (int)(len - start), dir + start);
}

int cmd_report(int argc, char **argv) {
    CliOpt opts[] = {
        {"--out", "FILE", NULL, "HTML file to write (default: RUN/report.html)", NULL},
        {"--samples", "N", "24", "rows in the table of sampled completions", NULL},
        {"--rows", "N", "20", "steps printed on the terminal (evenly spaced)", NULL},
        {"--accuracy", "NAME", "auto", "reward component whose value > 0 counts as correct (auto: 'accuracy', else the first name containing it)", NULL},
        {"--cut", "BYTES", "2000", "cut completions longer than this in the table", NULL},
        {"--quiet", NULL, NULL, "do not print the numbers on the terminal", NULL},
        {0},
    };
    CliSpec spec = {"grpo report RUN [options]",
                    "Write one self-contained HTML page for a run (inline SVG plots of reward, each\n"
                    "reward component, accuracy, lengths, KL, entropy, clip fractions, learning\n"
                    "rate, timings, router load, evaluations, sampled completions) and print the\n"
                    "per-step numbers. RUN is runs/NAME or a rollouts.db file.",
                    opts, 1, 1};
    const char *pos[1];
    int npos, rc = cli_parse(&spec, argc, argv, pos, &npos);
    if (rc != CLI_OK) return rc == CLI_HELP ? 0 : 2;
    long samples, rows, cut;
    if (cli_long(&spec, "--samples", &samples) || cli_long(&spec, "--rows", &rows) ||
        cli_long(&spec, "--cut", &cut))
        return 2;
    if (samples < 1 || rows < 2 || cut < 1) {
        fprintf(stderr, "grpo report: --samples and --cut must be >= 1, --rows >= 2\n");
        return 2;
    }
    char db[4200], dir[4096], out[4200], title[256];
    struct stat sb;
    if (!stat(pos[0], &sb) && S_ISDIR(sb.st_mode)) {
        snprintf(dir, sizeof dir, "%s", pos[0]);
        snprintf(db, sizeof db, "%s/rollouts.db", pos[0]);
    } else {
        snprintf(db, sizeof db, "%s", pos[0]);
        const char *slash = strrchr(pos[0], '/');
        snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - pos[0]) : 1, slash ? pos[0] : ".");
    }
    if (stat(db, &sb)) {
        fprintf(stderr, "grpo report: %s: no such database\n", db);
        return 2;
    }
    run_label(dir, title, sizeof title);
    const char *out_opt = cli_str(&spec, "--out");
    snprintf(out, sizeof out, "%s", out_opt ? out_opt : "");
    if (!out_opt) snprintf(out, sizeof out, "%s/report.html", dir);

    ReportOpts ro = {.title = title, .accuracy_reward = cli_str(&spec, "--accuracy"),
                     .samples = (int)samples, .rows = (int)rows, .completion_chars = (int)cut};
    Err err = {0};
    Store *st = store_open_read(db, &err);
    if (!st) {
        fprintf(stderr, "grpo report: %s\n", err.msg);
        return err.code ? err.code : 1;
    }
    char acc[128] = "accuracy";
    if (!strcmp(ro.accuracy_reward, "auto")) { /* e.g. the stock math_accuracy */
        StoreTable *t = store_query(st, "SELECT DISTINCT name FROM reward_components_per_step WHERE name LIKE "
                                        "'%accuracy%' ORDER BY name <> 'accuracy', name LIMIT 1", &err);
        if (t && t->nrows && store_cell_text(t, 0, 0)) snprintf(acc, sizeof acc, "%s", store_cell_text(t, 0, 0));
        store_table_free(t);
        err_clear(&err);
        ro.accuracy_reward = acc;
    }
    /* Written next to the target and renamed, so a reader never sees half a page. */
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "grpo report: %s: cannot write\n", tmp);
        store_close(st);
        return 1;
    }
    rc = report_write_html(st, &ro, f, &err);
    if (fclose(f) && !rc) rc = err_set(&err, ERR_WORK, "%s: write failed", tmp);
    if (!rc && rename(tmp, out)) rc = err_set(&err, ERR_WORK, "%s: cannot rename to %s", tmp, out);
    if (rc) remove(tmp);
    if (!rc && !cli_flag(&spec, "--quiet")) rc = report_print_terminal(st, &ro, stdout, &err);
    store_close(st);
    if (rc) {
        fprintf(stderr, "grpo report: %s\n", err.msg);
        return err.code ? err.code : 1;
    }
    printf("report: %s\n", out);
    return 0;
}
