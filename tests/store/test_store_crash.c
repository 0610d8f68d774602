/* test_store_crash: a writer process SIGKILLed at random moments, 25 times.
 *
 * Each round forks a writer that opens the store (creating it the first
 * time), asks for the last complete step and resumes after it, writing
 * SYNTHETIC steps (tests/store/synth.c) until it is killed 0-60 ms later
 * (every 5th round 150-210 ms),
 * so kills land in open, migration, inside step transactions and in commits
 * and checkpoints. After every kill: PRAGMA integrity_check is ok, every
 * stored step is complete (all its rows), no row belongs to a missing step,
 * steps are contiguous from 0, nothing is duplicated, and no step committed
 * before is lost. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rl/store.h"
#include "synth.h"
#include "test.h"

enum { ROUNDS = 25 };
static const SynthCfg cfg = {.prompts = 16, .group = 8, .nlayers = 3, .nexperts = 16};

static void writer(const char *db) {
    Err err = {0};
    Store *st = store_open(db, &err);
    if (!st) { fprintf(stderr, "writer: %s\n", err.msg); _exit(3); }
    long last = store_last_step(st, &err);
    StoreRun run = {.name = "crash", .model = "synthetic"};
    if (last < -1 || store_run_record(st, &run, last, &err)) { fprintf(stderr, "writer: %s\n", err.msg); _exit(3); }
    for (long s = last + 1;; s++)
        if (synth_write_step(st, &cfg, s, &err)) { fprintf(stderr, "writer step %ld: %s\n", s, err.msg); _exit(4); }
}

static double q1(Store *st, const char *sql) {
    Err err = {0};
    StoreTable *t = store_query(st, sql, &err);
    double v = t && t->nrows ? store_cell_num(t, 0, 0) : -1;
    if (!t) fprintf(stderr, "query failed: %s\n", err.msg);
    store_table_free(t);
    return v;
}

/* Checks the database after a kill; returns its last step. */
static long check_db(const char *db, int round) {
    Err err = {0};
    Store *st = store_open_read(db, &err);
    if (!st) {  /* killed before the schema was committed: nothing to check */
        CHECK(round == 0 || err.code == ERR_INPUT, "round %d: %s", round, err.msg);
        return -1;
    }
    CHECK(store_integrity_check(st, &err) == 0, "round %d: %s", round, err.msg);
    char sql[1024];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM steps s WHERE"
             " (SELECT count(*) FROM rollouts r WHERE r.step = s.step) <> %d OR"
             " (SELECT count(*) FROM prompts p WHERE p.step = s.step) <> %d OR"
             " (SELECT count(*) FROM metrics m WHERE m.step = s.step) <> %d OR"
             " (SELECT count(*) FROM router_load l WHERE l.step = s.step) <> %d OR"
             " (SELECT count(*) FROM rewards w JOIN rollouts r ON r.id = w.rollout_id WHERE r.step = s.step) <> %d OR"
             " s.num_rollouts <> %d",
             cfg.prompts * cfg.group, cfg.prompts, SYNTH_NMETRICS, cfg.nlayers * cfg.nexperts,
             cfg.prompts * cfg.group * SYNTH_NREWARDS, cfg.prompts * cfg.group);
    CHECK(q1(st, sql) == 0, "round %d: incomplete steps", round);
    CHECK(q1(st, "SELECT (SELECT count(*) FROM rollouts WHERE step NOT IN (SELECT step FROM steps))"
                 " + (SELECT count(*) FROM prompts WHERE step NOT IN (SELECT step FROM steps))"
                 " + (SELECT count(*) FROM metrics WHERE step NOT IN (SELECT step FROM steps))"
                 " + (SELECT count(*) FROM router_load WHERE step NOT IN (SELECT step FROM steps))"
                 " + (SELECT count(*) FROM rewards WHERE rollout_id NOT IN (SELECT id FROM rollouts))") == 0,
          "round %d: rows of a step that is not stored", round);
    CHECK(q1(st, "SELECT coalesce(max(step) + 1, 0) - count(*) FROM steps") == 0, "round %d: gaps", round);
    CHECK(q1(st, "SELECT count(*) - (SELECT count(*) FROM (SELECT DISTINCT step, prompt_index, sample_index"
                 " FROM rollouts)) FROM rollouts") == 0, "round %d: duplicated rollouts", round);
    long last = store_last_step(st, &err);
    if (last >= 0) {  /* the last step's content is the generator's */
        SynthRollout *ro = malloc(cfg.prompts * cfg.group * sizeof *ro);
        synth_rollouts(&cfg, last, ro);
        double sum = 0;
        for (int i = 0; i < cfg.prompts * cfg.group; i++) sum += ro[i].r.reward;
        snprintf(sql, sizeof sql, "SELECT sum(reward) FROM rollouts WHERE step = %ld", last);
        CHECK(q1(st, sql) == sum, "round %d: step %ld content", round, last);
        free(ro);
    }
    store_close(st);
    return last;
}

int main(void) {
    char dir[] = "/tmp/grpo-test-crash-XXXXXX";
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    char db[300];
    snprintf(db, sizeof db, "%s/rollouts.db", dir);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    long prev = -1;
    int killed = 0;
    for (int round = 0; round < ROUNDS; round++) {
        pid_t pid = fork();
        if (pid == 0) writer(db);
        /* round 0: killed while creating the schema; every 5th round runs longer so
         * that a loaded machine (or ASan) still commits steps between kills */
        int ms = round == 0 ? 0 : rand() % 60 + (round % 5 == 4 ? 150 : 0);
        struct timespec ts = {0, ms * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        killed += WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
        CHECK(WIFSIGNALED(status), "round %d: writer exited by itself (status %d)", round, status);
        long last = check_db(db, round);
        CHECK(last >= prev, "round %d: committed steps lost (%ld < %ld)", round, last, prev);
        printf("round %2d: killed after %2d ms, last complete step %ld\n", round, ms, last);
        prev = last;
    }
    CHECK(killed >= 20, "%d kills", killed);
    CHECK(prev >= 1, "the writer made progress across kills (last step %ld)", prev);
    /* a final clean resume: the next steps follow without duplicates */
    Err err = {0};
    Store *st = store_open(db, &err);
    CHECK(st != NULL, "reopen: %s", err.msg);
    if (st) {
        long last = store_last_step(st, &err);
        for (long s = last + 1; s < last + 4; s++)
            CHECK(synth_write_step(st, &cfg, s, &err) == 0, "resume step %ld: %s", s, err.msg);
        store_close(st);
        CHECK(check_db(db, ROUNDS) == last + 3, "resumed to step %ld", last + 3);
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (!test_failed_) (void)!system(cmd);
    return test_report();
}
