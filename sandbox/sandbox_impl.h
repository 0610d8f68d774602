/* sandbox_impl: internals shared by the sandbox modules (not part of the public API).
 *
 * sandbox_policy.c builds the seccomp filter once in the supervisor (libseccomp, then
 * exported as raw BPF) so the child only needs two syscalls to install it; it also holds
 * the Landlock helper. sandbox_child.c is the code that runs between fork and execve:
 * it may only use async-signal-safe calls (no malloc, no stdio). */
#ifndef GRPO_SANDBOX_IMPL_H
#define GRPO_SANDBOX_IMPL_H

#include <linux/filter.h>
#include <sys/types.h>

#include "sandbox.h"

/* The seccomp program for this supervisor process (rules name its pid), built on first
 * use and cached per pid. Returns 0 or -1 with err set. */
int sandbox_filter_get(struct sock_fprog *prog, Err *err);
/* The zygote's variant: also allows kill(-1), which the zygote uses after each run to end
 * whatever the run left behind (everything of the slot uid but itself). */
int sandbox_filter_get_zygote(struct sock_fprog *prog, Err *err);

/* Runs at the given tier without consulting the probe (the probe itself uses it). */
int sandbox_run_tier(const SandboxConfig *cfg, int tier, SandboxResult *res, Err *err);

/* Install prefix of the interpreter for lang when it lives outside /usr (e.g. a pyenv
 * or conda tree) and must be added to the read-only view; NULL otherwise. */
const char *sandbox_tool_prefix(SandboxLang lang);

/* Landlock ABI version of the running kernel, 0 when absent (cached). */
int sandbox_landlock_abi(void);

/* Everything the child needs, prepared by the supervisor before fork. */
enum { SANDBOX_MAX_ARGV = 64, SANDBOX_MAX_RO = 16 };

typedef struct ChildPlan {
    int tier;
    const SandboxConfig *cfg;
    const char *code_name;              /* "main.py", "main.c", "main.sh" */
    const char *argv[SANDBOX_MAX_ARGV + 8];
    const char *envp[8];
    const char *workdir;                /* tier 2: host temp dir; tier 1: "/work" */
    const char *ro_paths[SANDBOX_MAX_RO]; /* read-only view (tier 1 binds, tier 2 Landlock) */
    int nro;
    uid_t uid;                          /* outside uid for the slot (0 = keep ours) */
    gid_t gid;
    int stdin_fd, out_fd, err_fd;       /* become fds 0, 1, 2 */
    int extra_fd;                       /* becomes fd 3 when >= 0 (the zygote's socket) */
    int status_fd;                      /* CLOEXEC pipe: setup errors written here */
    int userns_fd, mntns_fd, netns_fd;  /* tier 1: the slot's namespaces to enter (netns -1: a new one) */
    int sync_fd;                        /* the slot root's helper: read end; written once maps are set */
    int cgroup_fd;                      /* the run cgroup's cgroup.procs (write "0" to join); -1: none */
    int cgroup_dir;                     /* the run cgroup's directory (clone3 CLONE_INTO_CGROUP); -1: none */
    struct sock_fprog filter;
    int landlock_abi;
    long memory_mb, cpu_s, fsize_mb, nproc, nofile;
    pid_t parent_pid;
    const char *cc_argv[16];            /* C only: the compile command; cc_argv[0] NULL otherwise */
    char newroot[64];                   /* tier 1: where the new root is assembled ("/tmp") */
    char tmpfs_opts[96];                /* tier 1: mount options of the /work tmpfs */
} ChildPlan;

/* What a child that failed before execve writes to the status pipe. */
/* CHILD_PROGRAM_PID: tier 2's init names the program's pid (= its process group) in `err`. */
/* CHILD_READY: the slot root's helper has built it. */
enum { CHILD_SETUP_FAILED = 1, CHILD_COMPILE_FAILED = 2, CHILD_PROGRAM_PID = 3, CHILD_READY = 4 };
typedef struct ChildReport {
    int kind;
    int err;        /* errno */
    char what[56];
} ChildReport;

/* Python is started as `python3 -E -s -S -B -c SANDBOX_PY_BOOT ARGS`: -S skips site (and
 * its start-up cost), so the bootstrap restores exit()/quit() (site defines them and model
 * code uses them), then runs main.py as __main__. It uses exec(source), not
 * exec(compile(source, 'main.py', ...)): CPython's compile() builds its AST types on first
 * use, which costs about 1 ms per run (15% of a trivial run). Frames of exec'd source are
 * named "<string>", so an excepthook (the traceback module is imported only then) prints
 * the traceback as `python3 main.py` would: the bootstrap's frame dropped, the others and
 * a SyntaxError named main.py with its source lines, chained exceptions included. */
#define SANDBOX_PY_BOOT                                                                  \
    "import sys,builtins\n"                                                             \
    "builtins.exit=builtins.quit=sys.exit;sys.argv[0]='main.py';__file__='main.py'\n"    \
    "def _tb(t,v,tb):\n"                                                                \
    " import traceback\n"                                                               \
    " e=traceback.TracebackException(t,v,tb,lookup_lines=False);x=e;del e.stack[:1]\n"   \
    " while x:\n"                                                                       \
    "  for f in x.stack:\n"                                                             \
    "   if f.filename=='<string>':f.filename='main.py'\n"                               \
    "  if getattr(x,'filename',0)=='<string>':x.filename='main.py'\n"                   \
    "  x=x.__cause__ or x.__context__\n"                                                \
    " sys.stderr.write(''.join(e.format()))\n"                                          \
    "sys.excepthook=_tb;del builtins,_tb\n"                                             \
    "exec(open('main.py','rb').read())"

/* ---- supervisor helpers shared by sandbox.c and sandbox_zygote.c ---- */

typedef struct Capture {
    int fd;
    char *buf;
    size_t len, cap;
    int over;  /* more than cap bytes arrived */
} Capture;

typedef struct SandboxEnv { char home[320], tmp[320]; } SandboxEnv;

double sandbox_now_s(void);
/* Base directory of tier 2's and the zygote's work dirs ($GRPO_SANDBOX_TMPDIR or /tmp). */
const char *sandbox_tmp_base(void);
int sandbox_check_config(const SandboxConfig *c, Err *err);
/* Sets res->status/exit_code/signal/message from a wait status (-1: lost), the kill reason
 * and the child's setup report (NULL if none); res->err must already hold stderr. */
struct ChildReport;
void sandbox_classify(SandboxResult *res, int wstatus, int timed_out, int over, const struct ChildReport *rep);
uid_t sandbox_slot_uid_inner(int slot, int inner);
int sandbox_capture_read(Capture *c);  /* 0 on EOF, 1 if more may come */
void sandbox_remove_tree(const char *dir);
/* Empties dir (not following symlinks, not crossing mounts) but keeps it; 0 when it is
 * empty afterwards, -1 otherwise. */
int sandbox_clear_dir(const char *dir);
/* stdin as a memfd at offset 0 (the child reads it like a file; the supervisor never
 * blocks on it or gets SIGPIPE); -1 on failure. */
int sandbox_stdin_memfd(const SandboxConfig *cfg);
/* Moves the captured streams into res (buffers, lengths, truncation flags). */
void sandbox_result_take(SandboxResult *res, Capture cap[2]);
/* For an output_limit result: names the stream and the cap in res->message. */
void sandbox_result_over(SandboxResult *res, const Capture cap[2]);
int sandbox_plan_build(ChildPlan *plan, const SandboxConfig *cfg, int tier, const char *workdir, Err *err);
void sandbox_plan_env(ChildPlan *plan, SandboxEnv *env);
void sandbox_plan_view(ChildPlan *plan, const SandboxConfig *cfg);
/* Starts the child (which runs sandbox_child_main) with all signals blocked around the
 * clone; returns its pid or -1 with errno. */
pid_t sandbox_start_child(ChildPlan *plan);

/* Runs in the child; never returns (execve or _exit(127) after writing the reason). */
void sandbox_child_main(const ChildPlan *plan) __attribute__((noreturn));
/* Tier 1's per-slot root, in a helper born in the slot's new user namespace: waits on
 * sync_fd for its maps, builds the read-only view (ro_paths) and the tmpfs /work under
 * newroot in a new mount namespace, pivots into it, reports CHILD_READY on the status
 * pipe and waits to be killed (the supervisor keeps the namespaces by fd). */
void sandbox_child_slot_root(const ChildPlan *plan) __attribute__((noreturn));

#endif
