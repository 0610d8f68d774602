/* test_store_concurrent: readers while the writer writes.
 *
 * A writer process writes SYNTHETIC steps (tests/store/synth.c) as fast as it
 * can; meanwhile this process runs the plain sqlite3 shell (no .timeout set,
 * as a user would) in a loop, and a second process reads through
 * store_open_read/store_query in a loop. Every query must succeed (no
 * "database is locked"), see a consistent snapshot (rollouts = steps x P x G
 * within one statement) and a step count that never goes back. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rl/store.h"
#include "synth.h"
#include "test.h"

enum { STEPS = 400 };
static const SynthCfg cfg = {.prompts = 16, .group = 8, .nlayers = 3, .nexperts = 16};

static const char *const snapshot_sql =
    "SELECT (SELECT count(*) FROM steps), (SELECT count(*) FROM rollouts) = (SELECT count(*) FROM steps) * 128,"
    " (SELECT count(*) FROM rewards) = (SELECT count(*) FROM rollouts) * 2";

/* ready: a pipe's write end; one byte once the store is open. Readers start only
 * then, as a user's queries start while training runs: with no connection held,
 * the shell's own close would checkpoint the WAL under an exclusive lock (what a
 * slow writer start-up under ASan exposed), which is not the case under test. */
static void writer(const char *db, int ready) {
    Err err = {0};
    Store *st = store_open(db, &err);
    if (!st) { fprintf(stderr, "writer: %s\n", err.msg); _exit(3); }
    if (write(ready, "r", 1) != 1) _exit(5);
    close(ready);
    for (long s = 0; s < STEPS; s++)
        if (synth_write_step(st, &cfg, s, &err)) { fprintf(stderr, "writer: %s\n", err.msg); _exit(4); }
    store_close(st);
    _exit(0);
}

/* Reads through the store API until it sees the last step; exit code = failures. */
static void api_reader(const char *db) {
    int fails = 0, n = 0;
    long prev = 0;
    while (prev < STEPS && n < 100000) {
        Err err = {0};
        Store *st = store_open_read(db, &err);
        StoreTable *t = st ? store_query(st, snapshot_sql, &err) : NULL;
        if (!t || t->nrows != 1 || store_cell_num(t, 0, 1) != 1 || store_cell_num(t, 0, 2) != 1 ||
            store_cell_num(t, 0, 0) < prev) {
            fprintf(stderr, "api reader: %s\n", t ? "inconsistent snapshot" : err.msg);
            fails++;
        }
        if (t) prev = (long)store_cell_num(t, 0, 0);
        store_table_free(t);
        store_close(st);
        n++;
    }
    printf("api reader: %d queries, %d failed\n", n, fails);
    fflush(stdout);
    _exit(fails ? 1 : 0);
}

int main(void) {
    if (system("sqlite3 -version > /dev/null 2>&1") != 0) TEST_SKIP("the sqlite3 shell is not installed");
    char dir[] = "/tmp/grpo-test-concurrent-XXXXXX";
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    char db[300], cmd[1200];
    snprintf(db, sizeof db, "%s/rollouts.db", dir);
    Err err = {0};
    Store *st = store_open(db, &err);  /* the schema exists before anyone reads */
    CHECK(st != NULL, "create: %s", err.msg);
    store_close(st);

    int ready[2];
    CHECK(pipe(ready) == 0, "pipe");
    pid_t w = fork();
    if (w == 0) writer(db, ready[1]);
    close(ready[1]);
    char byte;
    CHECK(read(ready[0], &byte, 1) == 1, "the writer did not open the store");
    close(ready[0]);
    pid_t r = fork();
    if (r == 0) api_reader(db);
    snprintf(cmd, sizeof cmd,
             "sqlite3 -bail '%s' '%s; SELECT step, reward_mean FROM reward_per_step ORDER BY step DESC LIMIT 1;"
             " SELECT step, kl, learning_rate FROM step_metrics ORDER BY step DESC LIMIT 1;' 2>&1", db, snapshot_sql);
    int queries = 0, shell_fail = 0, done = 0, rstatus = 0;
    long prev = 0;
    while (!done) {
        int status;
        done = waitpid(w, &status, WNOHANG) == w;  /* one more query after the writer ends */
        if (done) CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer status %d", status);
        /* ... once the API reader is gone too. With the writer's connection closed, the
         * shell's close is the last one (it checkpoints and removes the WAL) and the API
         * reader's next open rebuilds the WAL index, under exclusive locks that a shell
         * without .timeout can meet ("database is locked", seen once under load): not
         * the case under test, where the trainer holds its connection open. */
        if (done) waitpid(r, &rstatus, 0);
        FILE *p = popen(cmd, "r");
        char line[512], out[2048] = "";
        while (fgets(line, sizeof line, p)) strncat(out, line, sizeof out - strlen(out) - 1);
        int rc = pclose(p);
        long steps = -1;
        int ok1 = 0, ok2 = 0;
        int parsed = sscanf(out, "%ld|%d|%d", &steps, &ok1, &ok2) == 3;
        if (rc != 0 || !parsed || !ok1 || !ok2 || steps < prev || strstr(out, "locked") || strstr(out, "rror")) {
            shell_fail++;
            fprintf(stderr, "sqlite3 shell (rc %d): %s\n", rc, out);
        }
        if (parsed) prev = steps;
        queries++;
    }
    CHECK(WIFEXITED(rstatus) && WEXITSTATUS(rstatus) == 0, "store API reader failed");
    printf("sqlite3 shell: %d queries while writing, %d failed; final steps %ld\n", queries, shell_fail, prev);
    CHECK(shell_fail == 0, "%d shell queries failed", shell_fail);
    CHECK(queries >= 3, "only %d shell queries ran during the write", queries);
    CHECK(prev == STEPS, "final step count %ld", prev);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (!test_failed_) (void)!system(cmd);
    return test_report();
}
