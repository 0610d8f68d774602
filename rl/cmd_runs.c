/* cmd_runs: `grpo runs [DIR]`, one line per run under DIR (default runs/):
 * every DIR/NAME/rollouts.db (and DIR/rollouts.db itself) with its model,
 * start time, steps, rollouts, and the reward of its first and last step.
 * It only reads; a database that cannot be read is reported and skipped. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/xalloc.h"
#include "cli.h"
#include "cmd.h"
#include "store.h"

static const char *const summary_sql =
    "SELECT (SELECT name FROM run) AS name, (SELECT model FROM run) AS model,"
    " (SELECT started_at FROM run) AS started_at,"
    " (SELECT count(*) FROM steps) AS steps, (SELECT max(step) FROM steps) AS last_step,"
    " (SELECT sum(num_rollouts) FROM steps) AS rollouts,"
    " (SELECT avg(reward) FROM rollouts WHERE step = (SELECT min(step) FROM steps)) AS first_reward,"
    " (SELECT avg(reward) FROM rollouts WHERE step = (SELECT max(step) FROM steps)) AS last_reward,"
    " (SELECT value FROM metrics WHERE name = 'kl' ORDER BY step DESC LIMIT 1) AS last_kl,"
    " (SELECT written_at FROM steps ORDER BY step DESC LIMIT 1) AS last_write";

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void print_num(double v, const char *fmt, int width) {
    if (isnan(v)) printf("%*s", width, "-");
    else printf(fmt, width, v);
}

/* Prints one line for the database at path; returns 0, or -1 if unreadable. */
static int runs_print(const char *label, const char *path) {
    Err err = {0};
    Store *st = store_open_read(path, &err);
    StoreTable *t = st ? store_query(st, summary_sql, &err) : NULL;
    if (!t) {
        printf("%-20s  (unreadable: %s)\n", label, err.msg);
        store_close(st);
        return -1;
    }
    const char *model = store_cell_text(t, 0, 1), *started = store_cell_text(t, 0, 2);
    const char *last_write = store_cell_text(t, 0, 9);
    printf("%-20s %-24.24s %-20.19s %6.0f ", label, model ? model : "-", started ? started : "-",
           store_cell_num(t, 0, 3));
    print_num(store_cell_num(t, 0, 4), "%*.0f", 9);
    print_num(store_cell_num(t, 0, 5), "%*.0f", 10);
    print_num(store_cell_num(t, 0, 6), "%*.4f", 10);
    print_num(store_cell_num(t, 0, 7), "%*.4f", 10);
    print_num(store_cell_num(t, 0, 8), "%*.4g", 10);
    printf("  %.19s\n", last_write ? last_write : "-");
    store_table_free(t);
    store_close(st);
    return 0;
}

static int is_file(const char *path) {
    struct stat sb;
    return !stat(path, &sb) && S_ISREG(sb.st_mode);
}

int cmd_runs(int argc, char **argv) {
    CliOpt opts[] = {{0}};
    CliSpec spec = {"grpo runs [DIR]",
                    "List the runs under DIR (default runs): every DIR/NAME/rollouts.db with its\n"
                    "model, start time, steps, rollouts, mean reward of the first and last step,\n"
                    "the last kl and the time of the last step written.",
                    opts, 0, 1};
    const char *pos[1];
    int npos, rc = cli_parse(&spec, argc, argv, pos, &npos);
    if (rc != CLI_OK) return rc == CLI_HELP ? 0 : 2;
    const char *dir = npos ? pos[0] : "runs";
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "grpo runs: %s: cannot open directory\n", dir);
        return 2;
    }
    int cap = 16, n = 0;
    char **names = xmalloc(cap * sizeof *names);
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s/rollouts.db", dir, e->d_name);
        if (!is_file(path)) continue;
        if (n == cap) names = xrealloc(names, (cap *= 2) * sizeof *names);
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);

    char path[4200];
    snprintf(path, sizeof path, "%s/rollouts.db", dir);
    int self = is_file(path), failed = 0;
    if (!n && !self) printf("no runs under %s (no */rollouts.db)\n", dir);
    else
        printf("%-20s %-24s %-20s %6s %9s %10s %10s %10s %10s  %s\n", "run", "model", "started (UTC)",
               "steps", "last_step", "rollouts", "reward@1st", "reward@end", "kl@end",
               "last write (UTC)");
    if (self) failed |= runs_print(dir, path);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s/rollouts.db", dir, names[i]);
        failed |= runs_print(names[i], path);
        free(names[i]);
    }
    free(names);
    return failed ? 1 : 0;
}
