/* sandbox: run one untrusted program (Python, C or shell) and report what happened.
 *
 * A run takes a SandboxConfig (language, source, stdin, arguments, extra files, limits)
 * and fills a SandboxResult (status, exit code, capped stdout/stderr, times, and the
 * isolation tier that ran). Two tiers, probed once per process (sandbox_probe):
 *
 *   tier 1 "namespaces": new user, pid, net, mount, ipc and uts namespaces; a read-only
 *          view of /usr (and the interpreter's prefix), a private tmpfs /work, no /proc;
 *          plus everything tier 2 does.
 *   tier 2 "seccomp":    no_new_privs + a seccomp filter + rlimits + a new session whose
 *          process group is killed at the end + a private temporary directory, and a
 *          Landlock file-access ruleset (read-only system dirs, read-write work dir)
 *          where the kernel has Landlock.
 *
 * Both tiers: a distinct unprivileged uid per slot (when the caller is root), a clean
 * environment, die-with-parent, a wall-clock limit that kills the whole tree, and
 * stdout/stderr capped while the pipes are read; where a writable cgroup v2 hierarchy
 * exists, a cgroup per run (sandbox_cgroup.h: memory.max, pids.max, cgroup.kill). See
 * docs/sandbox.md.
 *
 * This module does not judge outputs: sandbox_cases.h compares outputs and runs
 * HumanEval-style assert programs; sandbox_pool.h runs many configs in parallel;
 * sandbox_zygote.h is a fork server (a warm Python per slot) for high throughput.
 * Thread-safe: sandbox_run may be called from several threads (use distinct slots). */
#ifndef GRPO_SANDBOX_H
#define GRPO_SANDBOX_H

#include <stddef.h>

#include "base/err.h"  // defines: Err

typedef enum SandboxStatus {
    SANDBOX_OK = 0,             /* exited 0 within every limit */
    SANDBOX_RUNTIME_ERROR,      /* exited non-zero (or failed to compile) */
    SANDBOX_TIMEOUT,            /* wall-clock or CPU limit */
    SANDBOX_MEMORY,             /* address-space limit hit (MemoryError, allocation failure) */
    SANDBOX_OUTPUT_LIMIT,       /* stdout/stderr over the cap, or a file over the size limit */
    SANDBOX_KILLED,             /* ended by a signal (seccomp SIGSYS, SIGSEGV, SIGKILL, ...) */
    SANDBOX_ERROR,              /* the sandbox itself could not run the program */
} SandboxStatus;

typedef enum SandboxLang { SANDBOX_PYTHON = 0, SANDBOX_C, SANDBOX_SHELL } SandboxLang;

/* Tier request: AUTO picks the strongest tier the kernel allows. */
enum { SANDBOX_TIER_AUTO = 0, SANDBOX_TIER_NAMESPACES = 1, SANDBOX_TIER_SECCOMP = 2 };

typedef struct SandboxFile {
    const char *name;  /* plain file name inside the work dir: no '/', not "." or ".." */
    const char *data;
    size_t len;
} SandboxFile;

typedef struct SandboxConfig {
    SandboxLang lang;
    const char *code;           /* program text (NUL-terminated); written to main.py/main.c/main.sh */
    const char *stdin_data;     /* NULL = empty stdin */
    size_t stdin_len;
    const char *const *args;    /* program arguments after the file name; NULL if nargs == 0 */
    int nargs;
    const SandboxFile *files;   /* extra files in the work dir */
    int nfiles;
    double timeout_s;           /* wall clock; 0 = 10 s. CPU limit = ceil(timeout) + 1 s */
    long memory_mb;             /* address-space limit; 0 = 1024 MiB */
    size_t output_cap;          /* bytes kept per stream (stdout, stderr); 0 = 1 MiB */
    int tier;                   /* SANDBOX_TIER_AUTO, _NAMESPACES or _SECCOMP */
    int slot;                   /* 0..SANDBOX_MAX_SLOTS-1: picks the uid; one run per slot at a time */
} SandboxConfig;

enum { SANDBOX_MAX_SLOTS = 64 };

typedef struct SandboxResult {
    SandboxStatus status;
    int exit_code;              /* exit status, or 128 + signal when killed by a signal */
    int signal;                 /* terminating signal, 0 if it exited */
    char *out, *err;            /* NUL-terminated, at most output_cap bytes each (malloc'd) */
    size_t out_len, err_len;
    int out_truncated, err_truncated;
    long wall_ms, cpu_ms;       /* wall clock of the whole run; user+sys CPU of the program */
    const char *isolation;      /* static string naming the tier that ran, e.g. "namespaces" */
    const char *cgroup;         /* "v2" when the run had its own cgroup (sandbox_cgroup.h), else "none" */
    char message[256];          /* why, for TIMEOUT/MEMORY/OUTPUT_LIMIT/KILLED/ERROR; "" otherwise */
} SandboxResult;

/* Runs one program. Returns 0 and fills res (whatever the program did, including
 * SANDBOX_ERROR when the sandbox could not start it); returns -1 with err set for an
 * invalid config (ERR_INPUT) or when this process ignores SIGCHLD (ERR_WORK: exit
 * statuses would be lost). Free res with sandbox_result_free (also after -1). */
int sandbox_run(const SandboxConfig *cfg, SandboxResult *res, Err *err);
void sandbox_result_free(SandboxResult *res);

/* Probes the kernel once (cached) and returns the strongest tier available:
 * SANDBOX_TIER_NAMESPACES or SANDBOX_TIER_SECCOMP; -1 if seccomp itself is unavailable. */
int sandbox_probe(void);
/* One line describing what the probe found (tiers, Landlock ABI, interpreter paths). */
const char *sandbox_probe_report(void);

/* Host uid the program of `slot` runs as (tier 1 maps it from inside uid 1000), or the
 * caller's own uid when the caller is not root and cannot switch. */
unsigned sandbox_slot_uid(int slot);

const char *sandbox_status_name(SandboxStatus s);  /* "ok", "runtime_error", ... (DESIGN.md §5) */
/* Parses "python"/"py", "c", "shell"/"sh"; returns -1 for anything else. */
int sandbox_lang_parse(const char *name, SandboxLang *out);
/* Absolute path of the interpreter or compiler used for lang (resolved once, not from the
 * caller's PATH shims: the first ELF binary reachable by an unprivileged uid), or NULL. */
const char *sandbox_tool_path(SandboxLang lang);

#endif
