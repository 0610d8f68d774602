/* sandbox: the supervisor side of one run (see sandbox.h).
 *
 * Validates the config, prepares everything the child needs (argv, environment,
 * seccomp program, pipes, stdin as a memfd, the tier 2 temp dir, tier 1's per-slot
 * user and network namespaces), starts the child (sandbox_start_child), and supervises it: reads stdout/stderr up to the cap, enforces the wall
 * clock, has the whole tree killed at the end (tier 2: the child is a small init that
 * kills the program's process group and reaps it; tier 1: the pid namespace dies with
 * its init), reaps, and classifies the outcome. Also the helpers sandbox_zygote.c
 * shares (sandbox_impl.h). */
#define _GNU_SOURCE
#include "sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sandbox_cgroup.h"
#include "sandbox_impl.h"

enum { NS_INNER_UID = 1000, MAX_INPUT_BYTES = 64 << 20, MAX_ARGS_BYTES = 128 << 10 };
enum { FILE_CAP_MB = 64, SLOT_WORK_MB = FILE_CAP_MB + 16 };  /* per file; tier 1's /work tmpfs */

static const char *const status_names[] = {"ok", "runtime_error", "timeout", "memory",
                                           "output_limit", "killed", "sandbox_error"};

const char *sandbox_status_name(SandboxStatus s) {
    return (unsigned)s < sizeof status_names / sizeof *status_names ? status_names[s] : "sandbox_error";
}

int sandbox_lang_parse(const char *name, SandboxLang *out) {
    if (!strcmp(name, "python") || !strcmp(name, "py") || !strcmp(name, "python3")) *out = SANDBOX_PYTHON;
    else if (!strcmp(name, "c")) *out = SANDBOX_C;
    else if (!strcmp(name, "shell") || !strcmp(name, "sh")) *out = SANDBOX_SHELL;
    else return -1;
    return 0;
}

void sandbox_result_free(SandboxResult *res) {
    if (!res) return;
    free(res->out);
    free(res->err);
    res->out = res->err = NULL;
}

double sandbox_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int valid_name(const char *n) {
    return n && n[0] && !strchr(n, '/') && strcmp(n, ".") && strcmp(n, "..") && strlen(n) < 256 &&
           strcmp(n, "main.py") && strcmp(n, "main.c") && strcmp(n, "main.sh") && strcmp(n, "main");
}

int sandbox_check_config(const SandboxConfig *c, Err *err) {
    if (!c->code) return err_set(err, ERR_INPUT, "sandbox: config.code is NULL");
    if ((unsigned)c->lang > SANDBOX_SHELL) return err_set(err, ERR_INPUT, "sandbox: config.lang %d is not a language", (int)c->lang);
    if (c->nargs < 0 || c->nargs > SANDBOX_MAX_ARGV || (c->nargs && !c->args))
        return err_set(err, ERR_INPUT, "sandbox: config.nargs %d outside 0..%d", c->nargs, SANDBOX_MAX_ARGV);
    size_t total = strlen(c->code) + c->stdin_len;
    size_t argbytes = 0;
    for (int i = 0; i < c->nargs; i++) {
        if (!c->args[i]) return err_set(err, ERR_INPUT, "sandbox: config.args[%d] is NULL", i);
        argbytes += strlen(c->args[i]) + 1;
    }
    if (argbytes > MAX_ARGS_BYTES)
        return err_set(err, ERR_INPUT, "sandbox: config.args hold %zu bytes, more than %d", argbytes, MAX_ARGS_BYTES);
    if (c->nfiles < 0 || (c->nfiles && !c->files)) return err_set(err, ERR_INPUT, "sandbox: config.nfiles %d", c->nfiles);
    for (int i = 0; i < c->nfiles; i++) {
        if (!valid_name(c->files[i].name))
            return err_set(err, ERR_INPUT, "sandbox: config.files[%d].name '%s' is not a plain file name (or is reserved)",
                           i, c->files[i].name ? c->files[i].name : "(null)");
        if (c->files[i].len && !c->files[i].data) return err_set(err, ERR_INPUT, "sandbox: config.files[%d].data is NULL", i);
        total += c->files[i].len;
    }
    if (total > MAX_INPUT_BYTES) return err_set(err, ERR_INPUT, "sandbox: code + stdin + files are %zu bytes, more than %d", total, MAX_INPUT_BYTES);
    if (c->stdin_len && !c->stdin_data) return err_set(err, ERR_INPUT, "sandbox: config.stdin_data is NULL");
    if (c->timeout_s < 0 || c->timeout_s > 3600 || isnan(c->timeout_s))
        return err_set(err, ERR_INPUT, "sandbox: config.timeout_s %g outside 0..3600", c->timeout_s);
    if (c->memory_mb < 0 || c->memory_mb > (1 << 20)) return err_set(err, ERR_INPUT, "sandbox: config.memory_mb %ld", c->memory_mb);
    if (c->tier < 0 || c->tier > SANDBOX_TIER_SECCOMP) return err_set(err, ERR_INPUT, "sandbox: config.tier %d", c->tier);
    if (c->slot < 0 || c->slot >= SANDBOX_MAX_SLOTS)
        return err_set(err, ERR_INPUT, "sandbox: config.slot %d outside 0..%d", c->slot, SANDBOX_MAX_SLOTS - 1);
    return 0;
}

/* Outside uids: each supervisor pid gets its own block so two processes on one host do
 * not share RLIMIT_NPROC counts; slot s uses base+2s (namespace root) and base+2s+1. */
uid_t sandbox_slot_uid_inner(int slot, int inner) {
    return (uid_t)(100000 + (getpid() % 8192) * 2 * SANDBOX_MAX_SLOTS + 2 * slot + inner);
}

unsigned sandbox_slot_uid(int slot) { return geteuid() == 0 ? (unsigned)sandbox_slot_uid_inner(slot, 1) : (unsigned)geteuid(); }

/* ---- output capture ---- */


/* Reads what is available; returns 0 on EOF, 1 if more may come. */
int sandbox_capture_read(Capture *c) {
    char tmp[65536];
    ssize_t n = read(c->fd, tmp, sizeof tmp);
    if (n < 0) return errno == EINTR || errno == EAGAIN ? 1 : 0;
    if (n == 0) return 0;
    size_t keep = (size_t)n;
    if (c->len + keep > c->cap) {
        keep = c->cap - c->len;
        c->over = 1;
    }
    if (keep) {
        char *nb = realloc(c->buf, c->len + keep + 1);
        if (!nb) { c->over = 1; return 0; }
        c->buf = nb;
        memcpy(c->buf + c->len, tmp, keep);
        c->len += keep;
        c->buf[c->len] = 0;
    }
    return 1;
}

/* ---- the tier 2 work dir ---- */

/* Where tier 2 and the fork server make their work dirs: $GRPO_SANDBOX_TMPDIR when it is an
 * absolute path to a directory (at most 200 bytes), else /tmp. A tmpfs there saves the
 * per-run cost of a disk file system's mkdir/rmdir (milliseconds of wall time on this VM's
 * ext4 with online discard), at the price of RAM for what programs write (each file is
 * capped at 64 MiB; with a cgroup memory.max, tmpfs pages count against the run's limit). */
static char tmp_base[256] = "/tmp";
static pthread_once_t tmp_once = PTHREAD_ONCE_INIT;

/* Work dirs are named grpo-sandbox-<pid>-XXXXXX (grpo-zygote-... for the fork server). A
 * supervisor that was killed cannot remove its own, so the first run of a later process
 * removes those whose process is gone and that have not changed for 10 minutes (no run
 * lasts that long; the age also guards against a pid of another pid namespace that shares
 * this directory). */
static void tmp_sweep(void) {
    DIR *d = opendir(tmp_base);
    time_t now = time(NULL);
    for (struct dirent *e; d && (e = readdir(d));) {
        int pid;
        char kind[16], path[512];
        struct stat st;
        if (sscanf(e->d_name, "grpo-%15[a-z]-%d-", kind, &pid) != 2 || (strcmp(kind, "sandbox") && strcmp(kind, "zygote")))
            continue;
        if (pid <= 0 || pid == getpid() || kill(pid, 0) == 0 || errno != ESRCH) continue;
        snprintf(path, sizeof path, "%s/%s", tmp_base, e->d_name);
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode) && now - st.st_mtime > 600) sandbox_remove_tree(path);
    }
    if (d) closedir(d);
}

static void tmp_base_init(void) {
    const char *e = getenv("GRPO_SANDBOX_TMPDIR");
    struct stat st;
    if (e && e[0] == '/' && strlen(e) <= 200 && stat(e, &st) == 0 && S_ISDIR(st.st_mode))
        snprintf(tmp_base, sizeof tmp_base, "%s", e);
    tmp_sweep();
}

const char *sandbox_tmp_base(void) {
    pthread_once(&tmp_once, tmp_base_init);
    return tmp_base;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    if (flag == FTW_DP || flag == FTW_D) return rmdir(path) < 0 ? 0 : 0;
    unlink(path);
    return 0;
}

void sandbox_remove_tree(const char *dir) {
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
    rmdir(dir);
}

static int dir_entries(DIR *d) {
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    return n;
}

int sandbox_clear_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (e->d_type == DT_DIR) sandbox_remove_tree(path);
        else unlink(path);
    }
    rewinddir(d);
    int left = dir_entries(d);
    closedir(d);
    return left ? -1 : 0;
}

/* ---- starting the child ---- */

static int write_proc(pid_t pid, const char *file, const char *text) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Tier 1: maps inner root to the slot's setup uid and NS_INNER_UID to its program uid. */
static int write_maps(pid_t pid, int slot) {
    char map[128];
    snprintf(map, sizeof map, "0 %u 1\n%d %u 1\n", (unsigned)sandbox_slot_uid_inner(slot, 0), NS_INNER_UID,
             (unsigned)sandbox_slot_uid_inner(slot, 1));
    if (write_proc(pid, "setgroups", "deny") < 0 && errno != ENOENT) return -1;
    if (write_proc(pid, "uid_map", map) < 0) return -1;
    return write_proc(pid, "gid_map", map);
}

/* Tier 1's long-lived namespaces: a user, a mount and a network namespace per slot, made
 * on the slot's first run and entered (setns) by the child of each later run, while the
 * pid, ipc and uts namespaces are new for each run.
 * - The user namespace maps inner 0 to the slot's setup uid and NS_INNER_UID to its
 *   program uid. Made once, the supervisor writes no uid maps per run and the child waits
 *   for no handshake, which is what lets it start posix_spawn-style (sandbox_start_child).
 * - The mount namespace holds the read-only view and the tmpfs /work, built once
 *   (sandbox_child_slot_root); /work is emptied after each run. Building them per run
 *   cost ~20 mount calls, and detaching the old root and tearing the namespace down each
 *   waited for an expedited RCU grace period: the CPUs sat idle ~9% of the time.
 * - The network namespace is empty and owned by our own user namespace, so a run holds no
 *   capability over it (its loopback stays down). Making and tearing down one per run
 *   (loopback registration, sysctl tables, the cleanup_net worker) cost more CPU than all
 *   the rest of the set-up.
 * Runs of a slot never overlap and each run's processes are gone when it ends, so nothing
 * passes from run to run through them: a user namespace keeps only keyrings (keyctl,
 * add_key and request_key are denied), programs can neither mount nor unmount (no
 * capability, and seccomp), the only writable place is /work, which is emptied (a slot
 * whose /work cannot be emptied is dropped and made anew), and the network namespace has
 * no interface up (an abstract unix socket dies with its process). */
typedef struct SlotNs { int made, user, mnt, net, work; } SlotNs;  /* work: /work, O_PATH */
static pthread_mutex_t slotns_mu = PTHREAD_MUTEX_INITIALIZER;
static SlotNs slot_ns[SANDBOX_MAX_SLOTS];
static int netns_broken;   /* making one failed: each run gets its own */
static pid_t slotns_owner; /* a forked copy of the supervisor makes its own */

static void slot_ns_drop(SlotNs *s) {
    int fds[] = {s->user, s->mnt, s->net, s->work};
    for (int i = 0; i < 4; i++) if (fds[i] >= 0) close(fds[i]);
    memset(s, 0, sizeof *s);
}

/* An empty network namespace owned by our user namespace; -1 if none can be made. */
static int netns_make(void) {
    int back = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC), fd = -1;
    if (back >= 0 && unshare(CLONE_NEWNET) == 0) {  // this thread only, and back at once
        fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (setns(back, CLONE_NEWNET) < 0) abort();  // cannot happen to a root that just left it
    }
    if (back >= 0) close(back);
    return fd;
}

/* Waits (up to 10 s) for the helper's first report; 1 when it is CHILD_READY. */
static int helper_ready(int fd, ChildReport *rep) {
    struct pollfd pf = {fd, POLLIN, 0};
    memset(rep, 0, sizeof *rep);
    return poll(&pf, 1, 10000) == 1 && read(fd, rep, sizeof *rep) == (ssize_t)sizeof *rep && rep->kind == CHILD_READY;
}

/* The slot's user and mount namespaces: a helper is born in a new user namespace, we
 * write its maps, it builds the root in a new mount namespace; we keep both namespaces
 * and /work by fd, and the helper goes. 0, or -1 with errno (EIO: the helper failed,
 * its reason in *why). */
static int slot_root_make(int slot, SlotNs *s, char *why, size_t whyn) {
    ChildPlan hp;
    memset(&hp, 0, sizeof hp);
    hp.tier = SANDBOX_TIER_NAMESPACES;
    snprintf(hp.newroot, sizeof hp.newroot, "/tmp");
    snprintf(hp.tmpfs_opts, sizeof hp.tmpfs_opts, "size=%dm,nr_inodes=4096,mode=0700,uid=%d,gid=%d",
             SLOT_WORK_MB, NS_INNER_UID, NS_INNER_UID);
    sandbox_plan_view(&hp, NULL);
    int syncp[2], stp[2];
    if (pipe2(syncp, O_CLOEXEC) < 0) return -1;
    if (pipe2(stp, O_CLOEXEC) < 0) { close(syncp[0]), close(syncp[1]); return -1; }
    hp.sync_fd = syncp[0];
    hp.status_fd = stp[1];
    pid_t pid = (pid_t)syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid == 0) sandbox_child_slot_root(&hp);
    int e = errno;
    close(syncp[0]);
    close(stp[1]);
    ChildReport rep;
    int ok = pid > 0 && write_maps(pid, slot) == 0 && write(syncp[1], "x", 1) == 1 && helper_ready(stp[0], &rep);
    if (pid > 0 && !ok) e = rep.kind == CHILD_SETUP_FAILED ? rep.err : EIO, snprintf(why, whyn, "%s", rep.what);
    if (ok) {
        char path[64];
        const char *what[] = {"ns/user", "ns/mnt", "root/work"};
        int *fd[] = {&s->user, &s->mnt, &s->work};
        for (int i = 0; i < 3 && ok; i++) {
            snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, what[i]);
            ok = (*fd[i] = open(path, (i == 2 ? O_PATH | O_DIRECTORY : O_RDONLY) | O_CLOEXEC)) >= 0;
            if (!ok) e = errno, snprintf(why, whyn, "opening %s of the slot's helper", what[i]);
        }
    }
    close(syncp[1]);
    close(stp[0]);
    if (pid > 0) kill(pid, SIGKILL), waitpid(pid, NULL, 0);
    errno = e;
    return ok ? 0 : -1;
}

/* Fills the plan's namespace fds from the slot's (made on first use); the fd of its /work
 * in *work. 0, or -1 with errno and the reason in why. */
static int slot_ns_get(int slot, ChildPlan *plan, int *work, char *why, size_t whyn) {
    pthread_mutex_lock(&slotns_mu);
    if (slotns_owner != getpid()) {
        for (int i = 0; i < SANDBOX_MAX_SLOTS; i++)
            if (slot_ns[i].made) slot_ns_drop(&slot_ns[i]);
        slotns_owner = getpid();
    }
    SlotNs *s = &slot_ns[slot];
    int rc = 0;
    if (!s->made) {
        *s = (SlotNs){1, -1, -1, -1, -1};
        snprintf(why, whyn, "making the slot's user namespace");
        rc = slot_root_make(slot, s, why, whyn);
        if (rc == 0 && !netns_broken && (s->net = netns_make()) < 0) netns_broken = 1;
        if (rc < 0) {
            int e = errno;
            slot_ns_drop(s);  // try again next run
            errno = e;
        }
    }
    plan->userns_fd = s->user;
    plan->mntns_fd = s->mnt;
    plan->netns_fd = s->net;
    *work = s->work;
    pthread_mutex_unlock(&slotns_mu);
    return rc;
}

/* After a tier 1 run: empties the slot's /work, or drops the slot's namespaces so that the
 * next run gets new ones when something is left. */
static void slot_work_clear(int slot, int work) {
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/self/fd/%d", work);
    if (sandbox_clear_dir(dir) == 0) return;
    pthread_mutex_lock(&slotns_mu);
    if (slot_ns[slot].made && slot_ns[slot].work == work) slot_ns_drop(&slot_ns[slot]);
    pthread_mutex_unlock(&slotns_mu);
}

/* clone3's arguments up to `cgroup` (CLONE_ARGS_SIZE_VER2), spelled out here because
 * <linux/sched.h> clashes with <sched.h> on some systems. */
typedef struct Clone3Args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
} Clone3Args;
#define GRPO_CLONE_INTO_CGROUP 0x200000000ULL

/* A child as by fork (plus namespace `flags`), born inside the cgroup `cgdir` when that is
 * >= 0: clone3 CLONE_INTO_CGROUP (kernel >= 5.7). Moving a process into a cgroup after
 * the fact takes the cgroup threadgroup lock for writing, which waits for an RCU grace
 * period: milliseconds of latency per run. Without clone3 (ENOSYS, or a seccomp profile
 * refusing it) *placed stays 0 and the child joins by itself. Raw clone: the child runs
 * async-signal-safe code only, so glibc's fork handlers are not needed. Returns the pid,
 * 0 in the child, -1 with errno. */
static pid_t clone_child(long flags, int cgdir, int *placed) {
    *placed = 0;
    if (cgdir >= 0) {
        Clone3Args a = {.flags = (uint64_t)flags | GRPO_CLONE_INTO_CGROUP, .exit_signal = SIGCHLD, .cgroup = (uint64_t)cgdir};
        pid_t pid = (pid_t)syscall(SYS_clone3, &a, sizeof a);
        if (pid >= 0) {
            *placed = 1;
            return pid;
        }
    }
    // Raw clone without a new stack behaves like fork; glibc's clone() wrapper needs one.
    return (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
}

static int child_entry(void *plan) { sandbox_child_main(plan); }

/* Two ways to start the child. At tier 1 a program that is exec'd straight after set-up
 * (Python, shell) starts posix_spawn-style: CLONE_VM | CLONE_VFORK on a stack of its own, so the
 * kernel copies none of the supervisor's memory (copying the page tables of a large
 * process, then the copy-on-write faults on both sides until execve, was the biggest
 * part of the supervisor's cost per run), and this thread sleeps until the child has
 * exec'd or failed. The child only reads the plan and writes its own stack (and errno,
 * this thread's, which is asleep). Fork-style instead: tier 2's child, which stays as
 * the program's init (its init starts the program vfork-style, see sandbox_child.c); a C
 * program, which the child compiles before exec while this thread must stay free to
 * supervise; a run with a cgroup, born in it through clone3 (which would need a stack
 * switch in assembly to run on a stack of its own). Signals
 * are blocked around the clone so that no handler of ours runs in the child; the child
 * resets every handler and unblocks just before execve. */
pid_t sandbox_start_child(ChildPlan *plan) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    long ns = plan->tier == SANDBOX_TIER_NAMESPACES ? CLONE_NEWPID : 0;
    pid_t pid;
    if (ns && !plan->cc_argv[0] && plan->cgroup_dir < 0) {
        _Alignas(64) char stack[64 << 10];  // the child's, while this frame sleeps
        pid = clone(child_entry, stack + sizeof stack, CLONE_VM | CLONE_VFORK | ns | SIGCHLD, plan);
    } else {
        int placed;
        pid = clone_child(ns, plan->cgroup_dir, &placed);
        if (pid == 0) {
            if (placed) plan->cgroup_fd = -1;  // (our copy of the plan) already in the cgroup
            sandbox_child_main(plan);
        }
    }
    int e = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return pid;
}

/* ---- building the plan ---- */

/* Tier 2 as non-root runs the program with our uid, and without Landlock nothing stops it
 * from opening /proc/<supervisor>/mem for writing (seccomp sees no paths) and rewriting this
 * process: an escape. A non-dumpable process's /proc files need CAP_SYS_PTRACE, so we become
 * one (and so do the inits we fork), once. What it costs the caller: no core dumps, and
 * attaching a debugger or profiler then needs root. */
static void undumpable(void) { prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); }

static void supervisor_guard(int tier) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (tier == SANDBOX_TIER_SECCOMP && geteuid() != 0 && sandbox_landlock_abi() == 0) pthread_once(&once, undumpable);
}

int sandbox_plan_build(ChildPlan *plan, const SandboxConfig *cfg, int tier, const char *workdir, Err *err) {
    supervisor_guard(tier);
    memset(plan, 0, sizeof *plan);
    plan->tier = tier;
    plan->cfg = cfg;
    plan->workdir = workdir;
    plan->parent_pid = getpid();
    plan->extra_fd = -1;
    plan->cgroup_fd = plan->cgroup_dir = -1;
    plan->userns_fd = plan->mntns_fd = plan->netns_fd = plan->sync_fd = -1;
    long mem = cfg->memory_mb ? cfg->memory_mb : 1024;
    double timeout = cfg->timeout_s > 0 ? cfg->timeout_s : 10.0;
    plan->memory_mb = mem;
    plan->cpu_s = (long)ceil(timeout) + 1;
    plan->fsize_mb = FILE_CAP_MB;
    plan->nproc = 64;
    plan->nofile = 64;
    const char *tool = sandbox_tool_path(cfg->lang);
    if (!tool) {
        static const char *const what[] = {"python3", "cc", "sh"};
        return err_set(err, ERR_WORK, "sandbox: no %s usable by an unprivileged uid was found", what[cfg->lang]);
    }
    int n = 0;
    if (cfg->lang == SANDBOX_PYTHON) {
        plan->code_name = "main.py";
        const char *pre[] = {tool, "-E", "-s", "-S", "-B", "-c", SANDBOX_PY_BOOT};
        for (int i = 0; i < 7; i++) plan->argv[n++] = pre[i];
    } else if (cfg->lang == SANDBOX_SHELL) {
        plan->code_name = "main.sh";
        plan->argv[n++] = tool;
        plan->argv[n++] = "main.sh";
    } else {
        plan->code_name = "main.c";
        const char *cc[] = {tool, "-O1", "-pipe", "-w", "-std=gnu11", "-o", "main", "main.c", "-lm", NULL};
        memcpy(plan->cc_argv, cc, sizeof cc);
        plan->argv[n++] = "./main";
    }
    for (int i = 0; i < cfg->nargs; i++) plan->argv[n++] = cfg->args[i];
    plan->argv[n] = NULL;
    return 0;
}

/* Environment: fixed, nothing inherited from the caller. */

void sandbox_plan_env(ChildPlan *plan, SandboxEnv *env) {
    snprintf(env->home, sizeof env->home, "HOME=%s", plan->workdir);
    snprintf(env->tmp, sizeof env->tmp, "TMPDIR=%s", plan->workdir);
    plan->envp[0] = "PATH=/usr/local/bin:/usr/bin:/bin";
    plan->envp[1] = env->home;
    plan->envp[2] = env->tmp;
    plan->envp[3] = "LANG=C.UTF-8";
    plan->envp[4] = NULL;
}

/* The read-only view: system dirs plus the prefix of an interpreter living elsewhere
 * (cfg NULL: of every language's, for tier 1's per-slot root). */
void sandbox_plan_view(ChildPlan *plan, const SandboxConfig *cfg) {
    static const char *const sys[] = {"/usr", "/bin", "/lib", "/lib64", "/lib32", "/libx32", "/sbin",
                                      "/etc/ld.so.cache", "/etc/alternatives"};
    for (size_t i = 0; i < sizeof sys / sizeof *sys; i++) plan->ro_paths[plan->nro++] = sys[i];
    for (int lang = SANDBOX_PYTHON; lang <= SANDBOX_SHELL; lang++) {
        if (cfg && (SandboxLang)lang != cfg->lang) continue;
        const char *prefix = sandbox_tool_prefix((SandboxLang)lang);
        int seen = 0;
        for (int i = 0; i < plan->nro && prefix; i++) seen |= !strcmp(plan->ro_paths[i], prefix);
        if (prefix && !seen) plan->ro_paths[plan->nro++] = prefix;
    }
}

/* ---- supervision ---- */

void sandbox_classify(SandboxResult *res, int wstatus, int timed_out, int over, const ChildReport *rep) {
    res->status = SANDBOX_OK;
    if (wstatus == -1) {
        res->status = SANDBOX_ERROR;
        snprintf(res->message, sizeof res->message, "the sandboxed process was reaped by someone else "
                 "(SIGCHLD ignored or a waitpid(-1) in this process?)");
        return;
    }
    if (WIFEXITED(wstatus)) res->exit_code = WEXITSTATUS(wstatus);
    if (WIFSIGNALED(wstatus)) {
        res->signal = WTERMSIG(wstatus);
        res->exit_code = 128 + res->signal;
    }
    if (rep && rep->kind == CHILD_SETUP_FAILED) {
        res->status = SANDBOX_ERROR;
        snprintf(res->message, sizeof res->message, "sandbox setup failed: %s: %s", rep->what, strerror(rep->err));
    } else if (over) {
        res->status = SANDBOX_OUTPUT_LIMIT;  // the message names the stream (run_tier)
    } else if (timed_out) {
        res->status = SANDBOX_TIMEOUT;
        snprintf(res->message, sizeof res->message, "wall-clock limit reached");
    } else if (rep && rep->kind == CHILD_COMPILE_FAILED) {
        res->status = SANDBOX_RUNTIME_ERROR;
        snprintf(res->message, sizeof res->message, "compilation failed");
    } else if (res->signal) {
        int s = res->signal;
        res->status = s == SIGXCPU ? SANDBOX_TIMEOUT : s == SIGXFSZ ? SANDBOX_OUTPUT_LIMIT : SANDBOX_KILLED;
        snprintf(res->message, sizeof res->message, "%s (signal %d%s)",
                 s == SIGXCPU ? "CPU limit reached" : s == SIGXFSZ ? "file size limit reached" : "killed by a signal",
                 s, s == SIGSYS ? ", seccomp" : "");
    } else if (res->exit_code != 0) {
        res->status = SANDBOX_RUNTIME_ERROR;
        const char *e = res->err ? res->err : "";
        // The address-space limit surfaces as an allocation failure the program reports.
        if (strstr(e, "MemoryError") || strstr(e, "Cannot allocate memory") || strstr(e, "std::bad_alloc")) {
            res->status = SANDBOX_MEMORY;
            snprintf(res->message, sizeof res->message, "memory limit reached");
        } else if (strstr(e, "File too large") || strstr(e, "No space left on device")) {
            res->status = SANDBOX_OUTPUT_LIMIT;
            snprintf(res->message, sizeof res->message, "file size limit reached");
        }
    }
}

/* Ends the tree. Tier 2: SIGTERM asks the init to kill the program's process group and
 * reap it. Tier 1: SIGKILL to the pid namespace's init ends every process in it. */
static void send_kill(pid_t pid, int tier) { kill(pid, tier == SANDBOX_TIER_SECCOMP ? SIGTERM : SIGKILL); }

static int child_exited(pid_t pid) {
    siginfo_t si = {0};
    return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid;
}

/* Reads stdout/stderr until the child exits (then drains what is left), the wall clock
 * runs out, or a stream goes over the cap. Returns the wait status. */
static int supervise(pid_t pid, int tier, const SandboxCgroup *cg, Capture cap[2], double deadline, int *timed_out,
                     int *over, struct rusage *ru) {
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    int open_streams = 2, done = 0, kill_sent = 0, wstatus = 0;
    double drain_until = 0, hard_kill_at = 0;
    for (;;) {
        double t = sandbox_now_s();
        if (!done && !kill_sent && t >= deadline) {
            *timed_out = 1;
            send_kill(pid, tier);
            kill_sent = 1;
            hard_kill_at = t + 1.0;
        }
        if (!done && kill_sent && t >= hard_kill_at) {
            kill(pid, SIGKILL);  // the init did not finish in time
            // Everything at once. Not earlier: tier 2's init must outlive its tree to reap
            // it (killed first, its orphans would go to the host's init as zombies).
            if (cg) sandbox_cgroup_kill(cg);
            hard_kill_at = t + 3600;
        }
        if (done && (open_streams == 0 || t >= drain_until)) break;
        struct pollfd pf[3];
        int np = 0, idx[2] = {-1, -1}, pid_at = -1;
        for (int i = 0; i < 2; i++)
            if (cap[i].fd >= 0) { idx[i] = np; pf[np++] = (struct pollfd){cap[i].fd, POLLIN, 0}; }
        if (!done && pidfd >= 0) { pid_at = np; pf[np++] = (struct pollfd){pidfd, POLLIN, 0}; }
        double until = done ? drain_until : kill_sent ? hard_kill_at : deadline;
        int ms = (int)ceil((until - t) * 1000);
        if (pidfd < 0 && !done && ms > 5) ms = 5;  // no pidfd (old kernel): poll waitid
        if (ms < 0) ms = 0;
        if (poll(pf, (nfds_t)np, ms) < 0 && errno != EINTR) break;
        for (int i = 0; i < 2; i++) {
            if (idx[i] < 0 || !(pf[idx[i]].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            if (!sandbox_capture_read(&cap[i])) { close(cap[i].fd); cap[i].fd = -1; open_streams--; }
            if (cap[i].over && !*over) {
                *over = 1;
                if (!done && !kill_sent) {
                    send_kill(pid, tier);
                    kill_sent = 1;
                    hard_kill_at = sandbox_now_s() + 1.0;
                }
            }
        }
        if (!done && ((pid_at >= 0 && (pf[pid_at].revents & POLLIN)) || pidfd < 0) && child_exited(pid)) {
            done = 1;
            // Tier 2's init exits only after the whole tree is gone and tier 1's namespace
            // dies with its init, so the pipes close promptly; this bounds the wait anyway.
            drain_until = sandbox_now_s() + 0.25;
        }
    }
    kill(pid, SIGKILL);  // no-op after a normal exit (a zombie until reaped below)
    pid_t w;
    while ((w = wait4(pid, &wstatus, 0, ru)) < 0 && errno == EINTR) {}
    if (w < 0) wstatus = -1;  // reaped by someone else: reported as a sandbox error
    if (pidfd >= 0) close(pidfd);
    return wstatus;
}

/* Tier 2's private work dir, one per slot, owned by the slot uid when we can switch to
 * it: made on the slot's first run, emptied after each (a dir that cannot be emptied is
 * removed and the next run gets a new one), removed at exit (a killed supervisor's are
 * swept by a later process, see tmp_sweep). Per run, mkdtemp + chown + removing the dir
 * cost more wall time than the rest of the set-up on a disk file system. */
static pthread_mutex_t slot_dir_mu = PTHREAD_MUTEX_INITIALIZER;
static char slot_dir[SANDBOX_MAX_SLOTS][280];
static pid_t slot_dir_owner;

static void slot_dirs_remove(void) {
    pthread_mutex_lock(&slot_dir_mu);
    for (int i = 0; i < SANDBOX_MAX_SLOTS && slot_dir_owner == getpid(); i++)
        if (slot_dir[i][0]) sandbox_remove_tree(slot_dir[i]), slot_dir[i][0] = 0;
    pthread_mutex_unlock(&slot_dir_mu);
}

static int workdir_get(char *dir, size_t n, int slot, SandboxResult *res) {
    pthread_mutex_lock(&slot_dir_mu);
    if (slot_dir_owner != getpid()) {  // a forked copy of the supervisor: the dirs are not ours
        if (!slot_dir_owner) atexit(slot_dirs_remove);
        memset(slot_dir, 0, sizeof slot_dir);
        slot_dir_owner = getpid();
    }
    char *d = slot_dir[slot];
    int rc = 0;
    if (!d[0]) {
        snprintf(d, sizeof slot_dir[slot], "%s/grpo-sandbox-%d-XXXXXX", sandbox_tmp_base(), (int)getpid());
        uid_t u = sandbox_slot_uid_inner(slot, 1);
        if (!mkdtemp(d)) {
            snprintf(res->message, sizeof res->message, "mkdtemp under %s: %s", sandbox_tmp_base(), strerror(errno));
            rc = -1;
        } else if (geteuid() == 0 && chown(d, u, u) < 0) {
            snprintf(res->message, sizeof res->message, "chown of the work dir: %s", strerror(errno));
            rmdir(d);
            rc = -1;
        }
        if (rc < 0) d[0] = 0;
    }
    snprintf(dir, n, "%s", d);
    pthread_mutex_unlock(&slot_dir_mu);
    return rc;
}

/* After a tier 2 run, whose processes are all gone. */
static void workdir_clear(const char *dir, int slot) {
    if (sandbox_clear_dir(dir) == 0) return;
    pthread_mutex_lock(&slot_dir_mu);
    if (!strcmp(slot_dir[slot], dir)) sandbox_remove_tree(dir), slot_dir[slot][0] = 0;
    pthread_mutex_unlock(&slot_dir_mu);
}

int sandbox_stdin_memfd(const SandboxConfig *cfg) {
    int fd = memfd_create("grpo-stdin", MFD_CLOEXEC);
    for (size_t off = 0; fd >= 0 && off < cfg->stdin_len;) {
        ssize_t w = write(fd, cfg->stdin_data + off, cfg->stdin_len - off);
        if (w > 0) off += (size_t)w;
        else { close(fd); fd = -1; }
    }
    if (fd >= 0 && lseek(fd, 0, SEEK_SET) != 0) { close(fd); fd = -1; }
    return fd;
}

void sandbox_result_take(SandboxResult *res, Capture cap[2]) {
    res->out = cap[0].buf ? cap[0].buf : calloc(1, 1);
    res->err = cap[1].buf ? cap[1].buf : calloc(1, 1);
    cap[0].buf = cap[1].buf = NULL;
    res->out_len = cap[0].len;
    res->err_len = cap[1].len;
    res->out_truncated = cap[0].over;
    res->err_truncated = cap[1].over;
}

void sandbox_result_over(SandboxResult *res, const Capture cap[2]) {
    if (res->status == SANDBOX_OUTPUT_LIMIT && (cap[0].over || cap[1].over))
        snprintf(res->message, sizeof res->message, "%s over the cap of %zu bytes", cap[0].over ? "stdout" : "stderr",
                 cap[0].over ? cap[0].cap : cap[1].cap);
}

/* Reads the child's reports (all written before their writers exited, hence non-blocking:
 * a concurrent run's child may briefly hold an inherited copy of the write end). Tier 2's
 * init names the program first; a setup or compile failure may follow. Returns 1 when
 * *rep holds a failure. */
static int read_reports(int fd, int tier, ChildReport *rep) {
    ChildReport one;
    int have = 0;
    fcntl(fd, F_SETFL, O_NONBLOCK);
    while (read(fd, &one, sizeof one) == (ssize_t)sizeof one) {
        if (one.kind == CHILD_PROGRAM_PID) {
            // If the init was killed (a program running as our own uid can do that when we
            // are not root and Landlock cannot scope signals), the program's group may
            // outlive it: sweep it. Its pid cannot be reused while group members live.
            if (tier == SANDBOX_TIER_SECCOMP && one.err > 1) kill(-(pid_t)one.err, SIGKILL);
        } else {
            *rep = one;
            have = 1;
        }
    }
    return have;
}

/* Prepares the plan for a validated cfg at tier (uid, view, environment, filter); 0, or
 * -1 with res->message set (no interpreter, no filter: the sandbox cannot run). */
static int plan_prepare(ChildPlan *plan, SandboxEnv *env, const SandboxConfig *cfg, int tier, const char *workdir,
                        int *slot_work, SandboxResult *res) {
    Err e = {0};
    if (sandbox_plan_build(plan, cfg, tier, workdir, &e) < 0 || sandbox_filter_get(&plan->filter, &e) < 0) {
        snprintf(res->message, sizeof res->message, "%s", e.msg);
        return -1;
    }
    sandbox_plan_env(plan, env);
    sandbox_plan_view(plan, cfg);
    plan->landlock_abi = sandbox_landlock_abi();
    if (tier == SANDBOX_TIER_NAMESPACES) {
        plan->uid = plan->gid = NS_INNER_UID;
        char why[64];
        if (slot_ns_get(cfg->slot, plan, slot_work, why, sizeof why) < 0) {
            snprintf(res->message, sizeof res->message, "tier 1 slot %d: %s: %s", cfg->slot, why, strerror(errno));
            return -1;
        }
    } else if (geteuid() == 0) plan->uid = plan->gid = sandbox_slot_uid_inner(cfg->slot, 1);
    return 0;
}

/* Starts the child with its pipes; returns its pid (out/err/status read ends in the
 * arrays), or -1 with res->message set and every fd closed. */
static pid_t launch(ChildPlan *plan, const SandboxConfig *cfg, int outp[2], int errp[2], int stp[2], SandboxResult *res) {
    int in_fd = sandbox_stdin_memfd(cfg);
    int ok = in_fd >= 0 && pipe2(outp, O_CLOEXEC) == 0 && pipe2(errp, O_CLOEXEC) == 0 && pipe2(stp, O_CLOEXEC) == 0;
    pid_t pid = -1;
    if (ok) {
        plan->stdin_fd = in_fd;
        plan->out_fd = outp[1];
        plan->err_fd = errp[1];
        plan->status_fd = stp[1];
        pid = sandbox_start_child(plan);
    }
    int e = errno;
    int child_side[] = {in_fd, outp[1], errp[1], stp[1]};
    for (int i = 0; i < 4; i++) if (child_side[i] >= 0) close(child_side[i]);
    if (pid < 0) {
        snprintf(res->message, sizeof res->message, "starting the sandboxed process: %s", strerror(e));
        int rest[] = {outp[0], errp[0], stp[0]};
        for (int i = 0; i < 3; i++) if (rest[i] >= 0) close(rest[i]);
    }
    return pid;
}

/* The run's cgroup (sandbox_cgroup.h): memory.max = the memory limit (C: at least the
 * compiler's 1 GiB), pids.max = the process limit + 1 (tier 2's init). Where memory.max
 * applies, it is the limit that ends a program (the kernel's OOM killer, reported as
 * `memory`), and RLIMIT_AS is doubled to a backstop against huge untouched reservations:
 * under RLIMIT_AS alone Python gets a catchable MemoryError instead. 0, or -1 with
 * res->message set. */
static int cgroup_prepare(SandboxCgroup *cg, ChildPlan *plan, SandboxResult *res) {
    long mem = plan->memory_mb;
    if (plan->cc_argv[0] && mem < 1024) mem = 1024;
    Err e = {0};
    if (sandbox_cgroup_create(cg, plan->cfg->slot, mem, plan->nproc + 1, &e) < 0) {
        snprintf(res->message, sizeof res->message, "%s", e.msg);
        return -1;
    }
    if (sandbox_cgroup_info()->features & SANDBOX_CG_MEMORY) plan->memory_mb *= 2;
    plan->cgroup_fd = cg->procs_fd;
    plan->cgroup_dir = cg->dir_fd;
    return 0;
}

/* Ends what is left in the cgroup and removes it; an OOM kill there makes a failed run
 * a `memory` one. */
static void cgroup_finish(SandboxCgroup *cg, SandboxResult *res) {
    long oom = 0;
    Err e = {0};
    if (sandbox_cgroup_destroy(cg, &oom, &e) < 0 && res->status != SANDBOX_ERROR) {
        res->status = SANDBOX_ERROR;  // something of the run could not be ended
        snprintf(res->message, sizeof res->message, "%s", e.msg);
    }
    if (oom > 0 && (res->status == SANDBOX_KILLED || res->status == SANDBOX_RUNTIME_ERROR)) {
        res->status = SANDBOX_MEMORY;
        snprintf(res->message, sizeof res->message, "memory limit reached (cgroup memory.max: %ld process%s OOM-killed)",
                 oom, oom == 1 ? "" : "es");
    }
}

/* One run at a validated config and a chosen tier; always fills res. */
static void run_tier(const SandboxConfig *cfg, int tier, SandboxResult *res) {
    char workdir[320] = "/work";
    res->status = SANDBOX_ERROR;  // until the run gets far enough to be classified
    if (tier == SANDBOX_TIER_SECCOMP && workdir_get(workdir, sizeof workdir, cfg->slot, res) < 0) return;
    ChildPlan plan;
    SandboxEnv env;
    int outp[2] = {-1, -1}, errp[2] = {-1, -1}, stp[2] = {-1, -1};
    double t0 = sandbox_now_s();
    pid_t pid = -1;
    SandboxCgroup cg = {-1, -1, -1, ""};
    int use_cg = sandbox_cgroup_info()->usable;
    res->cgroup = use_cg ? "v2" : "none";
    int slot_work = -1;
    if (plan_prepare(&plan, &env, cfg, tier, workdir, &slot_work, res) == 0 &&
        (!use_cg || cgroup_prepare(&cg, &plan, res) == 0))
        pid = launch(&plan, cfg, outp, errp, stp, res);
    if (pid > 0) {
        size_t capn = cfg->output_cap ? cfg->output_cap : (1u << 20);
        Capture cap[2] = {{outp[0], NULL, 0, capn, 0}, {errp[0], NULL, 0, capn, 0}};
        double timeout = cfg->timeout_s > 0 ? cfg->timeout_s : 10.0;
        int timed_out = 0, over = 0;
        struct rusage ru = {0};
        int wstatus = supervise(pid, tier, use_cg ? &cg : NULL, cap, t0 + timeout, &timed_out, &over, &ru);
        res->wall_ms = (long)((sandbox_now_s() - t0) * 1000);
        res->cpu_ms = ru.ru_utime.tv_sec * 1000 + ru.ru_utime.tv_usec / 1000 + ru.ru_stime.tv_sec * 1000 +
                      ru.ru_stime.tv_usec / 1000;
        for (int i = 0; i < 2; i++) if (cap[i].fd >= 0) close(cap[i].fd);
        ChildReport rep;
        int have = read_reports(stp[0], tier, &rep);
        close(stp[0]);
        sandbox_result_take(res, cap);
        sandbox_classify(res, wstatus, timed_out, over, have ? &rep : NULL);
        sandbox_result_over(res, cap);
    }
    if (use_cg) cgroup_finish(&cg, res);
    if (tier == SANDBOX_TIER_SECCOMP) workdir_clear(workdir, cfg->slot);
    if (slot_work >= 0) slot_work_clear(cfg->slot, slot_work);  // the run's processes are all gone
}

int sandbox_run(const SandboxConfig *cfg, SandboxResult *res, Err *err) {
    memset(res, 0, sizeof *res);
    if (!cfg) return err_set(err, ERR_INPUT, "sandbox: config is NULL");
    if (sandbox_check_config(cfg, err) < 0) return -1;
    struct sigaction chld;
    if (sigaction(SIGCHLD, NULL, &chld) == 0 && (chld.sa_handler == SIG_IGN || (chld.sa_flags & SA_NOCLDWAIT)))
        return err_set(err, ERR_WORK, "sandbox: SIGCHLD is ignored in this process, so exit statuses are lost; "
                       "restore its default disposition before running sandboxes");
    int best = sandbox_probe();
    int tier = cfg->tier ? cfg->tier : best;
    res->isolation = tier == SANDBOX_TIER_NAMESPACES ? "namespaces" : "seccomp";
    res->cgroup = "none";
    if (best < 0 || (tier == SANDBOX_TIER_NAMESPACES && best != SANDBOX_TIER_NAMESPACES)) {
        res->status = SANDBOX_ERROR;
        snprintf(res->message, sizeof res->message, "tier %d is not available here: %s", tier, sandbox_probe_report());
        res->out = calloc(1, 1);
        res->err = calloc(1, 1);
        return 0;
    }
    if (tier == SANDBOX_TIER_SECCOMP && sandbox_landlock_abi() > 0) res->isolation = "seccomp+landlock";
    return sandbox_run_tier(cfg, tier, res, err);
}

/* Used by the probe: runs at a given tier without consulting the probe. */
int sandbox_run_tier(const SandboxConfig *cfg, int tier, SandboxResult *res, Err *err) {
    (void)err;  // the config was validated by the caller; failures land in res
    run_tier(cfg, tier, res);
    if (!res->out) res->out = calloc(1, 1);
    if (!res->err) res->err = calloc(1, 1);
    return 0;
}
