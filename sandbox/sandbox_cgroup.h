/* sandbox_cgroup: cgroup v2 limits for sandbox runs, where a writable v2 hierarchy exists.
 *
 * Each run gets its own cgroup, ROOT/grpo-<pid>-<slot>-<seq>, created before the child
 * starts and removed after it is reaped: memory.max (+ memory.swap.max 0) and pids.max
 * when those controllers are enabled in ROOT's cgroup.subtree_control; the child is
 * born in it (clone3 CLONE_INTO_CGROUP) or, without clone3, joins it before execve
 * (sandbox_child.c writes "0" to cgroup.procs; for tier 1 the supervisor writes the pid:
 * slower, a migration waits for an RCU grace period); at the end cgroup.kill ends whatever is still in it — also
 * processes that left the session and process group — (kernel >= 5.14; older kernels:
 * SIGKILL to each pid in cgroup.procs until it is empty), memory.events' oom_kill says
 * whether the memory limit ended the run, and the directory is removed.
 *
 * ROOT: $GRPO_SANDBOX_CGROUP when it names a directory ("off" disables cgroups, "auto"
 * or unset probes): a delegated cgroup v2 directory, in whose subtree_control the
 * memory and pids controllers are enabled when its cgroup.controllers offers them.
 * Auto-detection: /sys/fs/cgroup is a cgroup2 mount (statfs magic) and our own cgroup
 * in it (from /proc/self/cgroup) is writable; controllers are then only used if they
 * are already enabled there (an auto-detected cgroup is not ours to reconfigure).
 * Probed once per process, by creating a cgroup and moving a process into it.
 *
 * The fork server (sandbox_zygote.h) keeps one such cgroup for the zygote's lifetime.
 * Not done: cpu.max (RLIMIT_CPU and the wall clock bound CPU time already). */
#ifndef GRPO_SANDBOX_CGROUP_H
#define GRPO_SANDBOX_CGROUP_H

#include <sys/types.h>

#include "base/err.h"  // defines: Err

enum { SANDBOX_CG_KILL = 1, SANDBOX_CG_MEMORY = 2, SANDBOX_CG_SWAP = 4, SANDBOX_CG_PIDS = 8 };

typedef struct SandboxCgroupInfo {
    int usable;          /* runs get a cgroup */
    unsigned features;   /* SANDBOX_CG_* available in a run's cgroup */
    char root[512];      /* where run cgroups are created */
    char report[768];    /* one line: where, what, or why not */
} SandboxCgroupInfo;

/* Probed once per process (thread-safe). */
const SandboxCgroupInfo *sandbox_cgroup_info(void);

/* One run's cgroup. fds are -1 when absent. */
typedef struct SandboxCgroup {
    int dir_fd;          /* the cgroup directory (O_RDONLY: usable for clone3 CLONE_INTO_CGROUP) */
    int procs_fd;        /* cgroup.procs, open for writing: "0" moves the writer in */
    int kill_fd;         /* cgroup.kill, open for writing; -1 before kernel 5.14 */
    char name[64];       /* directory name under the root */
} SandboxCgroup;

/* Creates the run cgroup for `slot` with memory.max = memory_mb MiB (swap 0) and
 * pids.max = pids_max where those controllers are available (<= 0: no limit). Returns 0,
 * or -1 with err set (ERR_WORK; cg is then closed). */
int sandbox_cgroup_create(SandboxCgroup *cg, int slot, long memory_mb, long pids_max, Err *err);
/* Moves process `pid` into the cgroup (0: the caller; async-signal-safe). 0 or -1. */
int sandbox_cgroup_enter(const SandboxCgroup *cg, pid_t pid);
/* SIGKILLs every process in the cgroup (cgroup.kill, or pid by pid); async-signal-safe
 * apart from the pid-by-pid fallback. 0, or -1 if that could not be done. */
int sandbox_cgroup_kill(const SandboxCgroup *cg);
/* memory.events' oom_kill count so far (0 without the memory controller). */
long sandbox_cgroup_oom_kills(const SandboxCgroup *cg);
/* Kills what is left, waits (up to 2 s) until the cgroup is empty, reads memory.events'
 * oom_kill count into *oom_kills (0 without the memory controller) and removes the
 * directory. Returns 0, or -1 with err set when the cgroup could not be emptied or removed
 * (the fds are closed either way). */
int sandbox_cgroup_destroy(SandboxCgroup *cg, long *oom_kills, Err *err);

#endif
