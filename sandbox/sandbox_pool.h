/* sandbox_pool: N sandbox slots running in parallel behind one queue.
 *
 * Each slot is a worker thread with its own uid (so RLIMIT_NPROC is per slot); a batch
 * of configs is queued and sandbox_pool_run returns when every one has a result.
 * Several threads may submit batches to one pool at once. Slots are taken from a
 * process-wide set (1..SANDBOX_MAX_SLOTS-1), so two pools never share a uid; slot 0 is
 * left for direct sandbox_run calls. */
#ifndef GRPO_SANDBOX_POOL_H
#define GRPO_SANDBOX_POOL_H

#include "sandbox.h"

typedef struct SandboxPool SandboxPool;

/* Starts nslots workers (1..SANDBOX_MAX_SLOTS-1). NULL with err set on failure. */
SandboxPool *sandbox_pool_new(int nslots, Err *err);
int sandbox_pool_slots(const SandboxPool *pool);
/* Warm mode: from now on, Python configs that do not ask for tier 1 and whose memory_mb
 * is 0 or equal to `memory_mb` run through a zygote per slot (sandbox_zygote.h: tier 2,
 * a fresh fork of a warm interpreter, several times faster); others run as before.
 * Needs root; returns -1 with err set (and changes nothing) otherwise. */
int sandbox_pool_use_zygotes(SandboxPool *pool, long memory_mb, Err *err);
/* Runs cfgs[0..n) (their .slot is ignored) and fills res[0..n). Returns 0; -1 with err
 * set if some config was invalid (that result has status SANDBOX_ERROR and the message;
 * the others still ran). Free each result with sandbox_result_free. */
int sandbox_pool_run(SandboxPool *pool, const SandboxConfig *cfgs, SandboxResult *res, int n, Err *err);
/* Waits for queued work, stops the workers and releases the slots. */
void sandbox_pool_free(SandboxPool *pool);

#endif
