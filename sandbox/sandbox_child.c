/* sandbox_child: what runs in the child between clone and execve, and tier 1's per-slot
 * root (sandbox_child_slot_root).
 *
 * Order matters: die-with-parent; every signal handler back to default; (tier 1) enter
 * the slot's network, user and mount namespaces (the read-only root and the tmpfs /work
 * built once per slot) and unshare ipc and uts ones; (tier 2) a small reaping init (run_init)
 * starts the program in a new process group; drop to the slot uid; write the program
 * files; rlimits; (tier 2) Landlock; no_new_privs + seccomp; unblock signals; execve.
 * For C, the child first forks the compiler under the same limits and waits for it.
 *
 * Only async-signal-safe calls are used (the supervisor may be multithreaded): no
 * malloc, no stdio. The child may share the supervisor's memory (sandbox_start_child):
 * it writes nothing but its own stack. Children start from a raw clone, which skips
 * glibc's fork handlers, so glibc's view of the threads is stale there: credentials
 * change through raw syscalls (glibc's setresuid would try to signal the parent's other
 * threads and hang) and further children come from raw clones, not fork().
 *
 * A setup failure writes a ChildReport to the status pipe and exits 127; the supervisor
 * turns it into SANDBOX_ERROR (or a compile error). */
#define _GNU_SOURCE
#include "sandbox_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>  // ST_* flag values
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>


/* fork without glibc's handlers (which may wait on locks held by threads that do not
 * exist in this process). */
static pid_t raw_fork(void) { return (pid_t)syscall(SYS_clone, SIGCHLD, NULL, NULL, NULL, NULL); }

static int raw_setids(uid_t uid, gid_t gid, int clear_groups) {
    if (clear_groups && syscall(SYS_setgroups, 0, NULL) < 0) return -1;
    if (syscall(SYS_setresgid, gid, gid, gid) < 0) return -1;
    return (int)syscall(SYS_setresuid, uid, uid, uid);
}

static void report(const ChildPlan *p, int kind, const char *what, int e) {
    ChildReport r;
    memset(&r, 0, sizeof r);
    r.kind = kind;
    r.err = e;
    size_t n = strlen(what);
    if (n >= sizeof r.what) n = sizeof r.what - 1;
    memcpy(r.what, what, n);
    ssize_t w = write(p->status_fd, &r, sizeof r);
    (void)w;
}

__attribute__((noreturn)) static void die(const ChildPlan *p, const char *what) {
    report(p, CHILD_SETUP_FAILED, what, errno);
    _exit(127);
}

/* dst = a + b, bounded; returns dst. */
static char *join(char *dst, size_t cap, const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la + lb + 1 > cap) { dst[0] = 0; return dst; }
    memcpy(dst, a, la);
    memcpy(dst + la, b, lb + 1);
    return dst;
}

/* mkdir -p for an absolute path (every component). */
static int mkdirs(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n >= sizeof buf) return -1;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0755) < 0 && errno != EEXIST) return -1;
            buf[i] = c;
        }
    }
    return 0;
}

/* Remount flags for a bind of src: ours plus the ones the host mount already has
 * (a user namespace may not clear locked flags such as noexec). */
static unsigned long remount_flags(const char *src, int rdonly) {
    // statfs, not statvfs: glibc's statvfs may parse /proc/mounts (malloc) on old kernels.
    struct statfs vs;
    unsigned long fl = MS_BIND | MS_REMOUNT | MS_NOSUID | (rdonly ? MS_RDONLY : 0);
    if (statfs(src, &vs) == 0) {
        if (vs.f_flags & ST_NODEV) fl |= MS_NODEV;
        if (vs.f_flags & ST_NOEXEC) fl |= MS_NOEXEC;
        if (vs.f_flags & ST_NOATIME) fl |= MS_NOATIME;
        if (vs.f_flags & ST_NODIRATIME) fl |= MS_NODIRATIME;
        if (vs.f_flags & ST_RELATIME) fl |= MS_RELATIME;
    }
    return fl;
}

/* Makes host path `src` visible at newroot+src (a symlink is copied as a symlink). */
static void bind_path(const ChildPlan *p, const char *src, int rdonly) {
    char dst[4096], link[4096];
    struct stat st;
    if (lstat(src, &st) < 0) return;  // absent on this host: nothing to show
    join(dst, sizeof dst, p->newroot, src);
    char *slash = strrchr(dst, '/');
    *slash = 0;
    if (mkdirs(dst) < 0) die(p, "mkdir for the read-only view");
    *slash = '/';
    if (S_ISLNK(st.st_mode)) {
        ssize_t n = readlink(src, link, sizeof link - 1);
        if (n < 0) die(p, "readlink for the read-only view");
        link[n] = 0;
        if (symlink(link, dst) < 0 && errno != EEXIST) die(p, "symlink for the read-only view");
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        if (mkdir(dst, 0755) < 0 && errno != EEXIST) die(p, "mkdir for the read-only view");
    } else {
        int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) die(p, "creating a bind target");
        close(fd);
    }
    if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0) die(p, "bind mount of the read-only view");
    if (mount(NULL, dst, NULL, remount_flags(src, rdonly), NULL) < 0) die(p, "remount of a bind");
}

/* Tier 1: a tmpfs root holding read-only binds of the system dirs, a few device
 * nodes, and a tmpfs /work; no /proc, no /tmp, no host home. */
static void build_root(const ChildPlan *p) {
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die(p, "making / private");
    if (mount("tmpfs", p->newroot, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0755") < 0)
        die(p, "mounting the root tmpfs");
    for (int i = 0; i < p->nro; i++) bind_path(p, p->ro_paths[i], 1);
    static const char *const devs[] = {"/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"};
    for (int i = 0; i < 4; i++) bind_path(p, devs[i], i != 0);
    char work[256];
    join(work, sizeof work, p->newroot, "/work");
    if (mkdir(work, 0755) < 0) die(p, "mkdir /work");
    if (mount("tmpfs", work, "tmpfs", MS_NOSUID | MS_NODEV, p->tmpfs_opts) < 0) die(p, "mounting the /work tmpfs");
    char old[256];
    join(old, sizeof old, p->newroot, "/.oldroot");
    if (mkdir(old, 0700) < 0) die(p, "mkdir for pivot_root");
    if (chdir(p->newroot) < 0) die(p, "chdir to the new root");
    if (syscall(SYS_pivot_root, ".", ".oldroot") < 0) die(p, "pivot_root");
    if (umount2("/.oldroot", MNT_DETACH) < 0) die(p, "detaching the old root");
    if (rmdir("/.oldroot") < 0) die(p, "rmdir of the old root");
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
        die(p, "read-only remount of the root");
}

static void write_file(const ChildPlan *p, const char *name, const char *data, size_t len, mode_t mode) {
    int fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) die(p, "creating a program file");
    while (len > 0) {
        ssize_t w = write(fd, data, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) die(p, "writing a program file");
        data += w;
        len -= (size_t)w;
    }
    close(fd);
}

static void set_limit(const ChildPlan *p, int res, rlim_t v) {
    struct rlimit rl = {v, v};
    if (setrlimit(res, &rl) < 0) die(p, "setrlimit");
}

/* Landlock rights newer than the installed <linux/landlock.h> (values from the kernel ABI). */
enum {
    LL_FS_TRUNCATE = 1 << 14,     /* ABI 3 */
    LL_FS_IOCTL_DEV = 1 << 15,    /* ABI 5 */
    LL_NET_BIND_TCP = 1 << 0,     /* ABI 4 */
    LL_NET_CONNECT_TCP = 1 << 1,  /* ABI 4 */
    LL_SCOPE_ABSTRACT_UNIX = 1 << 0,  /* ABI 6 */
    LL_SCOPE_SIGNAL = 1 << 1,         /* ABI 6 */
};
typedef struct LandlockAttr { __u64 handled_access_fs, handled_access_net, scoped; } LandlockAttr;

/* Tier 2: read/execute on the system view, everything on the work dir, nothing else;
 * where the kernel allows it also no TCP bind/connect (ABI 4), and no signals to, or
 * abstract unix sockets of, processes outside the sandbox (ABI 6): the supervisor and
 * the init stay out of reach even when the program runs as the caller's own uid. */
static void apply_landlock(const ChildPlan *p) {
    int abi = p->landlock_abi;
    if (abi < 1) return;
    __u64 file_rw = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE;
    __u64 all = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1;
    if (abi >= 2) all |= LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3) { all |= LL_FS_TRUNCATE; file_rw |= LL_FS_TRUNCATE; }
    if (abi >= 5) { all |= LL_FS_IOCTL_DEV; file_rw |= LL_FS_IOCTL_DEV; }
    __u64 ro = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
    LandlockAttr attr = {.handled_access_fs = all};
    size_t size = sizeof attr.handled_access_fs;
    if (abi >= 4) {
        attr.handled_access_net = LL_NET_BIND_TCP | LL_NET_CONNECT_TCP;
        size += sizeof attr.handled_access_net;
    }
    if (abi >= 6) {
        attr.scoped = LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL;
        size += sizeof attr.scoped;
    }
    int rs = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
    if (rs < 0) die(p, "landlock_create_ruleset");
    for (int i = 0; i < p->nro + 2; i++) {
        const char *path = i < p->nro ? p->ro_paths[i] : i == p->nro ? p->workdir : "/dev/null";
        int fd = open(path, O_PATH | O_CLOEXEC);
        if (fd < 0) continue;  // absent on this host
        struct stat st;
        if (fstat(fd, &st) < 0) die(p, "fstat for Landlock");
        __u64 want = i < p->nro ? ro : all;
        if (!S_ISDIR(st.st_mode)) want &= file_rw;
        struct landlock_path_beneath_attr pb = {.allowed_access = want, .parent_fd = fd};
        if (syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0) die(p, "landlock_add_rule");
        close(fd);
    }
    if (syscall(SYS_landlock_restrict_self, rs, 0) < 0) die(p, "landlock_restrict_self");
    close(rs);
}

static void load_seccomp(const ChildPlan *p) {
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &p->filter) < 0) die(p, "loading the seccomp filter");
}

/* C: compile main.c into ./main in a child under the same limits (address space at least
 * 1 GiB, set in that child), then return. */
static void compile_c(const ChildPlan *p) {
    pid_t pid = raw_fork();
    if (pid < 0) die(p, "fork for the compiler");
    if (pid == 0) {
        set_limit(p, RLIMIT_AS, (rlim_t)(p->memory_mb > 1024 ? p->memory_mb : 1024) << 20);
        load_seccomp(p);
        execve(p->cc_argv[0], (char *const *)p->cc_argv, (char *const *)p->envp);
        die(p, "execve of the compiler");
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) die(p, "waiting for the compiler");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        report(p, CHILD_COMPILE_FAILED, "compilation failed", 0);
        _exit(1);
    }
}

/* Every handler back to default, and ignored signals too (an ignored SIGPIPE would
 * otherwise survive execve): the child must not run the supervisor's handlers, and the
 * program starts as from a clean shell. Signals stay blocked until execve. */
static void reset_signals(void) {
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, NULL);  // glibc's own ones: EINVAL
}

/* Tier 1: no supplementary groups (ours would follow us into the namespace, where they
 * cannot be dropped), then into the slot's namespaces: network first, while we still
 * have the rights over it, then user and mount (the prepared root, cwd at its /); private
 * ipc and uts namespaces owned by the slot's user namespace. The pid namespace came with
 * the clone. */
static void enter_namespaces(const ChildPlan *p) {
    if (syscall(SYS_setgroups, 0, NULL) < 0) die(p, "dropping supplementary groups");
    if (p->netns_fd >= 0 && setns(p->netns_fd, CLONE_NEWNET) < 0) die(p, "entering the slot's network namespace");
    if (setns(p->userns_fd, CLONE_NEWUSER) < 0) die(p, "entering the slot's user namespace");
    if (setns(p->mntns_fd, CLONE_NEWNS) < 0) die(p, "entering the slot's mount namespace");
    if (unshare(CLONE_NEWIPC | CLONE_NEWUTS | (p->netns_fd < 0 ? CLONE_NEWNET : 0)) < 0)
        die(p, "unsharing the run's namespaces");
}

void sandbox_child_slot_root(const ChildPlan *p) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) die(p, "PR_SET_PDEATHSIG");
    char c;
    if (read(p->sync_fd, &c, 1) != 1) _exit(127);  // the supervisor went away
    // Root of the namespace (mapped to the slot's setup uid): files are created by it.
    if (raw_setids(0, 0, 0) < 0) die(p, "becoming root in the user namespace");
    if (unshare(CLONE_NEWNS) < 0) die(p, "unsharing the slot's mount namespace");
    build_root(p);
    report(p, CHILD_READY, "slot root ready", 0);
    for (;;) pause();  // the supervisor keeps the namespaces and kills us
}

static void child_finish(const ChildPlan *p) __attribute__((noreturn));

/* Tier 2 keeps a small init between the supervisor and the program: a session leader
 * and child subreaper that starts the program in its own process group, reaps every
 * orphan of the tree (they would otherwise become zombies of the host's init), kills
 * the program's group when the program exits or on SIGTERM from the supervisor, and
 * exits with the program's status. */
static volatile pid_t init_prog;

static void init_on_term(int sig) {
    if (init_prog > 0) kill(-init_prog, SIGKILL);
    else _exit(128 + sig);
}

typedef struct ProgStart { const ChildPlan *plan; pid_t init_pid; } ProgStart;

/* The program's process under the init (shares the init's memory when started vfork-style). */
static int prog_main(void *arg) {
    const ProgStart *ps = arg;
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGTERM, &dfl, NULL);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != ps->init_pid) _exit(127);
    if (setpgid(0, 0) < 0) die(ps->plan, "setpgid");
    child_finish(ps->plan);
}

__attribute__((noreturn)) static void run_init(const ChildPlan *p) {
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);  // the init re-raises the program's signal below
    if (setsid() < 0) die(p, "setsid");
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) die(p, "PR_SET_CHILD_SUBREAPER");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = init_on_term;
    sigaction(SIGTERM, &sa, NULL);  // delivered once signals are unblocked below
    ProgStart ps = {p, getpid()};
    pid_t prog;
    if (!p->cc_argv[0]) {  // exec'd at once: vfork-style, nothing of ours is copied
        _Alignas(64) char stack[64 << 10];
        prog = clone(prog_main, stack + sizeof stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &ps);
    } else {  // compiled first: we stay free meanwhile
        prog = raw_fork();
        if (prog == 0) prog_main(&ps);
    }
    if (prog < 0) die(p, "starting the program");
    init_prog = prog;
    report(p, CHILD_PROGRAM_PID, "program pid", (int)prog);  // lets the supervisor sweep the group
    // Die-with-parent for the whole tree: PDEATHSIG is not inherited, so the program's own
    // children would outlive a SIGKILLed init. SIGTERM instead runs init_on_term, which
    // kills the program's group; the loop below then reaps it and exits.
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != p->parent_pid) kill(-prog, SIGKILL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    // The init never execs: drop every fd, including the pipes of other runs that a
    // multithreaded supervisor had open when it forked us (they would hold those open).
    if (syscall(SYS_close_range, 0, ~0U, 0) < 0)
        for (int fd = 0; fd < 1024; fd++) close(fd);
    int main_status = 0, have = 0;
    for (;;) {
        int st;
        pid_t w = waitpid(-1, &st, 0);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) break;  // ECHILD: the whole tree is gone
        if (w == prog) {
            main_status = st;
            have = 1;
            kill(-prog, SIGKILL);  // background descendants end with the program
        }
    }
    if (!have || WIFEXITED(main_status)) _exit(have ? WEXITSTATUS(main_status) : 127);
    int sig = WTERMSIG(main_status);
    sa.sa_handler = SIG_DFL;
    sigaction(sig, &sa, NULL);
    kill(getpid(), sig);  // not raise(): after a raw clone glibc's idea of our thread id is stale
    _exit(128 + sig);
}

void sandbox_child_main(const ChildPlan *p) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) die(p, "PR_SET_PDEATHSIG");
    reset_signals();
    // Join the run's cgroup first (while we still have the rights on it), so the program
    // and all it starts are in it (-1 when clone3 already started us there, or when
    // there is none).
    if (p->cgroup_fd >= 0 && write(p->cgroup_fd, "0", 1) != 1) die(p, "joining the run's cgroup");
    if (p->tier == SANDBOX_TIER_NAMESPACES) {
        enter_namespaces(p);
        if (setsid() < 0) die(p, "setsid");  // pid 1 of the namespace: its death ends the tree
        child_finish(p);
    }
    if (getppid() != p->parent_pid) _exit(127);  // the parent died before PDEATHSIG was armed
    run_init(p);
}

/* From the work dir's files to execve, in the program's own process. */
static void child_finish(const ChildPlan *p) {
    if (p->stdin_fd < 3 || p->out_fd < 3 || p->err_fd < 3) die(p, "pipe fds below 3");
    if (dup2(p->stdin_fd, 0) < 0 || dup2(p->out_fd, 1) < 0 || dup2(p->err_fd, 2) < 0) die(p, "dup2");
    // Close everything else now (not at exec): a C compile keeps this process alive a
    // while, and other runs' pipes inherited from a multithreaded supervisor must not
    // stay open that long. The status pipe stays until exec (it is CLOEXEC).
    int sfd = p->status_fd, keep = 3;
    if (p->extra_fd >= 0) {  // the zygote's socket becomes fd 3
        if (sfd == 3 && (sfd = fcntl(sfd, F_DUPFD_CLOEXEC, 4)) < 0) die(p, "moving the status fd");
        if (p->extra_fd != 3 && dup2(p->extra_fd, 3) < 0) die(p, "dup2 of the zygote socket");
        keep = 4;
    }
    if (sfd < keep || (sfd > keep && syscall(SYS_close_range, keep, sfd - 1, 0) < 0) ||
        syscall(SYS_close_range, sfd + 1, ~0U, 0) < 0)
        for (int fd = keep; fd < 1024; fd++)
            if (fd != sfd) close(fd);
    if (chdir(p->workdir) < 0) die(p, "chdir to the work dir");
    // setgroups is denied inside a user namespace (we wrote "deny"); tier 2 clears them.
    if (p->uid && raw_setids(p->uid, p->gid, p->tier != SANDBOX_TIER_NAMESPACES) < 0) die(p, "switching to the slot uid");
    // A credential change clears PDEATHSIG: arm it again, then make sure the supervisor did
    // not die in between (its read end of our stdout pipe would be gone: POLLERR).
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) die(p, "PR_SET_PDEATHSIG");
    struct pollfd alive = {1, POLLOUT, 0};
    if (poll(&alive, 1, 0) == 1 && (alive.revents & POLLERR)) _exit(127);
    const SandboxConfig *cfg = p->cfg;
    if (p->code_name) write_file(p, p->code_name, cfg->code, strlen(cfg->code), 0644);  // NULL: the zygote
    for (int i = 0; i < cfg->nfiles; i++)
        write_file(p, cfg->files[i].name, cfg->files[i].data, cfg->files[i].len, 0644);
    set_limit(p, RLIMIT_CORE, 0);
    set_limit(p, RLIMIT_CPU, (rlim_t)p->cpu_s);
    set_limit(p, RLIMIT_FSIZE, (rlim_t)p->fsize_mb << 20);
    set_limit(p, RLIMIT_NOFILE, (rlim_t)p->nofile);
    if (p->uid) set_limit(p, RLIMIT_NPROC, (rlim_t)p->nproc);  // per real uid: only with a slot uid
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die(p, "PR_SET_NO_NEW_PRIVS");
    if (p->tier == SANDBOX_TIER_SECCOMP) apply_landlock(p);
    // The address-space limit comes last, just before the filter and execve, in each
    // process: one that must still grow its stack under it can fault (an ASan build's
    // tens of TB of reserved shadow are over any limit, so its next stack page is refused).
    if (p->cc_argv[0]) compile_c(p);
    set_limit(p, RLIMIT_AS, (rlim_t)p->memory_mb << 20);
    load_seccomp(p);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(p->argv[0], (char *const *)p->argv, (char *const *)p->envp);
    die(p, "execve");
}
