/* sandbox_pool: see sandbox_pool.h. A mutex-protected FIFO of jobs; each batch
 * counts its outstanding jobs and its submitter waits on the pool's `done` condition. */
#include "sandbox_pool.h"

#include <unistd.h>

#include "sandbox_zygote.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct Batch {
    int remaining;
    int failed;
    Err err;
} Batch;

typedef struct Job {
    const SandboxConfig *cfg;
    SandboxResult *res;
    Batch *batch;
    struct Job *next;
} Job;

typedef struct Worker {
    SandboxPool *pool;
    int slot;
    pthread_t thread;
    SandboxZygote *zygote;  /* warm mode: started on first use, by this worker */
} Worker;

struct SandboxPool {
    int nslots;
    Worker *workers;
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    Job *head, *tail;
    int stop;
    long warm_mb;  /* > 0: warm mode with this zygote memory limit */
};

static pthread_mutex_t slots_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned char slot_used[SANDBOX_MAX_SLOTS] = {1};  // slot 0: direct sandbox_run calls

static int slot_acquire(void) {
    pthread_mutex_lock(&slots_mu);
    int s = -1;
    for (int i = 1; i < SANDBOX_MAX_SLOTS && s < 0; i++)
        if (!slot_used[i]) { slot_used[i] = 1; s = i; }
    pthread_mutex_unlock(&slots_mu);
    return s;
}

static void slot_release(int s) {
    pthread_mutex_lock(&slots_mu);
    if (s > 0 && s < SANDBOX_MAX_SLOTS) slot_used[s] = 0;
    pthread_mutex_unlock(&slots_mu);
}

static void *worker_main(void *arg) {
    Worker *w = arg;
    SandboxPool *p = w->pool;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stop) pthread_cond_wait(&p->work, &p->mu);
        if (!p->head) break;  // stopping and the queue is empty
        Job *j = p->head;
        p->head = j->next;
        if (!p->head) p->tail = NULL;
        long warm = p->warm_mb;
        pthread_mutex_unlock(&p->mu);
        SandboxConfig cfg = *j->cfg;
        cfg.slot = w->slot;
        Err err = {0};
        int rc;
        if (warm > 0 && cfg.lang == SANDBOX_PYTHON && cfg.tier != SANDBOX_TIER_NAMESPACES &&
            (cfg.memory_mb == 0 || cfg.memory_mb == warm) &&
            (w->zygote || (w->zygote = sandbox_zygote_new(w->slot, warm, &err)))) {
            rc = sandbox_zygote_run(w->zygote, &cfg, j->res, &err);
        } else {
            err_clear(&err);
            rc = sandbox_run(&cfg, j->res, &err);
        }
        if (rc < 0) {
            j->res->status = SANDBOX_ERROR;
            snprintf(j->res->message, sizeof j->res->message, "%s", err.msg);
        }
        pthread_mutex_lock(&p->mu);
        if (rc < 0 && !j->batch->failed) {
            j->batch->failed = 1;
            j->batch->err = err;
        }
        j->batch->remaining--;
        pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

SandboxPool *sandbox_pool_new(int nslots, Err *err) {
    if (nslots < 1 || nslots >= SANDBOX_MAX_SLOTS) {
        err_set(err, ERR_INPUT, "sandbox pool: %d slots, expected 1..%d", nslots, SANDBOX_MAX_SLOTS - 1);
        return NULL;
    }
    sandbox_probe();  // probe once before the workers start forking
    SandboxPool *p = calloc(1, sizeof *p);
    Worker *ws = calloc((size_t)nslots, sizeof *ws);
    if (!p || !ws) {
        free(p);
        free(ws);
        err_set(err, ERR_WORK, "sandbox pool: out of memory");
        return NULL;
    }
    p->workers = ws;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int i = 0; i < nslots; i++) {
        ws[i].pool = p;
        ws[i].slot = slot_acquire();
        if (ws[i].slot < 0 || pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]) != 0) {
            slot_release(ws[i].slot);
            err_set(err, ERR_WORK, "sandbox pool: could not start slot %d of %d (slots in use or no threads)", i, nslots);
            sandbox_pool_free(p);
            return NULL;
        }
        p->nslots = i + 1;
    }
    return p;
}

int sandbox_pool_slots(const SandboxPool *pool) { return pool->nslots; }

int sandbox_pool_use_zygotes(SandboxPool *p, long memory_mb, Err *err) {
    if (geteuid() != 0) return err_set(err, ERR_WORK, "sandbox pool: zygotes need root (a distinct uid per slot)");
    if (memory_mb < 0) return err_set(err, ERR_INPUT, "sandbox pool: zygote memory %ld MiB", memory_mb);
    pthread_mutex_lock(&p->mu);
    p->warm_mb = memory_mb ? memory_mb : 1024;
    pthread_mutex_unlock(&p->mu);
    return 0;
}

int sandbox_pool_run(SandboxPool *p, const SandboxConfig *cfgs, SandboxResult *res, int n, Err *err) {
    if (n <= 0) return 0;
    Job *jobs = calloc((size_t)n, sizeof *jobs);
    if (!jobs) return err_set(err, ERR_WORK, "sandbox pool: out of memory for %d jobs", n);
    Batch b = {.remaining = n};
    for (int i = 0; i < n; i++) jobs[i] = (Job){&cfgs[i], &res[i], &b, i + 1 < n ? &jobs[i + 1] : NULL};
    pthread_mutex_lock(&p->mu);
    if (p->tail) p->tail->next = &jobs[0];
    else p->head = &jobs[0];
    p->tail = &jobs[n - 1];
    pthread_cond_broadcast(&p->work);
    while (b.remaining > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    free(jobs);
    if (b.failed) {
        if (err) *err = b.err;
        return -1;
    }
    return 0;
}

void sandbox_pool_free(SandboxPool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nslots; i++) {
        pthread_join(p->workers[i].thread, NULL);
        sandbox_zygote_free(p->workers[i].zygote);
        slot_release(p->workers[i].slot);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    free(p->workers);
    free(p);
}
