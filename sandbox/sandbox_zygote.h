/* sandbox_zygote: a warm Python per slot — a fork server inside the sandbox.
 *
 * One tier 2 sandbox (seccomp + Landlock + rlimits + the slot uid) runs a Python
 * "zygote" that has started once; each run is a fresh fork of it (so no state passes
 * between runs), executes main.py as __main__ with the run's stdin/stdout/stderr, and
 * is ended together with everything it left behind (kill(-1) as the slot uid, from
 * the zygote, which is a child subreaper). The supervisor writes the run's files into
 * the work dir, which it empties after every run, and applies the same wall clock and
 * output caps as sandbox_run; a zygote that dies is restarted on the next run.
 *
 * Differences from sandbox_run: Python only; tier 2 only; needs root (the slot uid must
 * be distinct, since kill(-1) ends every process of it); the memory limit is the
 * zygote's (fixed at creation; with cgroup v2, sandbox_cgroup.h, one cgroup holds the
 * zygote and its runs, so memory.max and pids.max are shared with the zygote) and there is no per-run RLIMIT_CPU (the wall clock
 * still applies); each run starts with the zygote's modules already imported (os, sys,
 * socket, traceback, ctypes, typing, math, collections, itertools, functools, re, heapq,
 * bisect, string) and its hash seed. One run at a time per zygote. */
#ifndef GRPO_SANDBOX_ZYGOTE_H
#define GRPO_SANDBOX_ZYGOTE_H

#include "sandbox.h"

typedef struct SandboxZygote SandboxZygote;

/* Starts a zygote on `slot` with an address-space limit of memory_mb (0 = 1024). NULL with
 * err set when the zygote cannot be used here (not root, no python3, no seccomp). */
SandboxZygote *sandbox_zygote_new(int slot, long memory_mb, Err *err);
/* Like sandbox_run (cfg->lang must be SANDBOX_PYTHON; cfg->tier, slot and memory_mb are
 * ignored). Returns 0 with res filled, or -1 with err set for an invalid config. */
int sandbox_zygote_run(SandboxZygote *z, const SandboxConfig *cfg, SandboxResult *res, Err *err);
void sandbox_zygote_free(SandboxZygote *z);

#endif
