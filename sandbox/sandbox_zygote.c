/* sandbox_zygote: see sandbox_zygote.h.
 *
 * Wire protocol on a SOCK_SEQPACKET pair (the zygote's end is its fd 3):
 *   request  "A" arg1 NUL arg2 ... with SCM_RIGHTS [stdin memfd, stdout pipe, stderr pipe]
 *   reply 1  "<pid>"                    the run's pid (a host pid: tier 2 has no pid ns)
 *   reply 2  "<wait status> <cpu ms>"   after the run and all it left behind are gone */
#define _GNU_SOURCE
#include "sandbox_zygote.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox_cgroup.h"
#include "sandbox_impl.h"

static const char zygote_src[] =
    "import os, sys, socket, builtins, traceback, ctypes\n"
    "# Warm the modules model code imports most; each run gets a fresh copy (fork). Not\n"
    "# random: its state would be the same in every run.\n"
    "import typing, math, collections, itertools, functools, re, heapq, bisect, string\n"
    "builtins.exit = builtins.quit = sys.exit\n"
    "# compile() builds CPython's AST types on first use (0.7 ms): once here, not in every run.\n"
    "compile('', 'main.py', 'exec')\n"
    "# Keep what exists now out of the collector's way: a run's GC pass would otherwise write\n"
    "# to (and so copy) every tracked object page of the zygote.\n"
    "import gc; gc.freeze()\n"
    "ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans come back here\n"
    "sock = socket.socket(fileno=3)\n"
    "def run(args, fds):\n"
    "    sock.close()\n"
    "    for i, fd in enumerate(fds):\n"
    "        os.dup2(fd, i)\n"
    "    for fd in fds:\n"
    "        if fd > 2: os.close(fd)\n"
    "    sys.argv = ['main.py'] + args\n"
    "    g = {'__name__': '__main__', '__file__': 'main.py', '__builtins__': builtins}\n"
    "    rc = 0\n"
    "    try:\n"
    "        exec(compile(open('main.py', 'rb').read(), 'main.py', 'exec'), g)\n"
    "    except SystemExit as e:\n"
    "        if e.code is None: rc = 0\n"
    "        elif isinstance(e.code, int): rc = e.code & 255\n"
    "        else: print(e.code, file=sys.stderr); rc = 1\n"
    "    except BaseException:\n"
    "        traceback.print_exc(); rc = 1\n"
    "    for f in (sys.stdout, sys.stderr):\n"
    "        try: f.flush()\n"
    "        except BaseException: pass\n"
    "    os._exit(rc)\n"
    "while True:\n"
    "    msg, fds, _, _ = socket.recv_fds(sock, 1 << 18, 3)\n"
    "    if not msg or len(fds) != 3: break\n"
    "    args = [a.decode('utf-8', 'surrogateescape') for a in msg[1:].split(b'\\0')] if len(msg) > 1 else []\n"
    "    pid = os.fork()\n"
    "    if pid == 0: run(args, fds)\n"
    "    for fd in fds: os.close(fd)\n"
    "    sock.send(b'%d' % pid)\n"
    "    _, st, ru = os.wait4(pid, 0)\n"
    "    try: os.kill(-1, 9)  # everything else of this uid: the run's leftovers\n"
    "    except OSError: pass\n"
    "    while True:\n"
    "        try: os.waitpid(-1, 0)\n"
    "        except ChildProcessError: break\n"
    "        except InterruptedError: pass\n"
    "    sock.send(b'%d %d' % (st, int((ru.ru_utime + ru.ru_stime) * 1000)))\n";

struct SandboxZygote {
    int slot;
    long memory_mb;
    pid_t init;          /* the tier 2 init holding the zygote; -1 when not running */
    int sock;            /* our end of the socket pair */
    int status_fd;       /* the child's setup report */
    char workdir[320];
    SandboxCgroup cg;    /* the zygote's cgroup while it runs (sandbox_cgroup.h); fds -1: none */
};

static void zygote_stop(SandboxZygote *z) {
    if (z->init > 0) {
        kill(z->init, SIGTERM);  // the init kills the zygote's process group and reaps it
        double until = sandbox_now_s() + 2.0;
        int st;
        while (waitpid(z->init, &st, WNOHANG) == 0 && sandbox_now_s() < until) usleep(2000);
        kill(z->init, SIGKILL);
        waitpid(z->init, &st, WNOHANG);
    }
    if (z->sock >= 0) close(z->sock);
    if (z->status_fd >= 0) close(z->status_fd);
    long oom;
    Err e = {0};
    sandbox_cgroup_destroy(&z->cg, &oom, &e);  // ends anything left; nothing to report it to
    z->init = -1;
    z->sock = z->status_fd = -1;
}

static int zygote_start(SandboxZygote *z, Err *err) {
    SandboxConfig cfg = {.lang = SANDBOX_PYTHON, .code = "", .memory_mb = z->memory_mb, .timeout_s = 10};
    ChildPlan plan;
    SandboxEnv env;
    if (sandbox_plan_build(&plan, &cfg, SANDBOX_TIER_SECCOMP, z->workdir, err) < 0) return -1;
    sandbox_plan_env(&plan, &env);
    sandbox_plan_view(&plan, &cfg);
    plan.landlock_abi = sandbox_landlock_abi();
    plan.uid = plan.gid = sandbox_slot_uid_inner(z->slot, 1);
    plan.cpu_s = 1 << 30;  // per-run CPU time is bounded by the wall clock instead
    plan.code_name = NULL;  // the supervisor writes main.py for each run
    plan.argv[6] = zygote_src;
    plan.argv[7] = NULL;
    if (sandbox_filter_get_zygote(&plan.filter, err) < 0) return -1;
    // The zygote and all its runs share one cgroup (as in sandbox_run: memory.max is the
    // limit that ends a run, RLIMIT_AS a doubled backstop; pids.max counts the init too).
    if (sandbox_cgroup_info()->usable) {
        if (sandbox_cgroup_create(&z->cg, z->slot, z->memory_mb, plan.nproc + 1, err) < 0) return -1;
        if (sandbox_cgroup_info()->features & SANDBOX_CG_MEMORY) plan.memory_mb *= 2;
        plan.cgroup_fd = z->cg.procs_fd;
        plan.cgroup_dir = z->cg.dir_fd;
    }
    int sp[2], stp[2], null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd < 0 || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
        if (null_fd >= 0) close(null_fd);
        zygote_stop(z);
        return err_set(err, ERR_WORK, "sandbox zygote: socketpair: %s", strerror(errno));
    }
    if (pipe2(stp, O_CLOEXEC) < 0) {
        close(null_fd), close(sp[0]), close(sp[1]);
        zygote_stop(z);
        return err_set(err, ERR_WORK, "sandbox zygote: pipe: %s", strerror(errno));
    }
    plan.stdin_fd = plan.out_fd = plan.err_fd = null_fd;
    plan.extra_fd = sp[1];
    plan.status_fd = stp[1];
    pid_t pid = sandbox_start_child(&plan);
    int e = errno;
    close(null_fd);
    close(sp[1]);
    close(stp[1]);
    if (pid < 0) {
        close(sp[0]);
        close(stp[0]);
        zygote_stop(z);
        return err_set(err, ERR_WORK, "sandbox zygote: fork: %s", strerror(e));
    }
    z->init = pid;
    z->sock = sp[0];
    z->status_fd = stp[0];
    return 0;
}

static int write_file(const char *dir, const char *name, const char *data, size_t len) {
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, data + off, len - off);
        if (w <= 0) { close(fd); return -1; }
        off += (size_t)w;
    }
    return close(fd);
}

SandboxZygote *sandbox_zygote_new(int slot, long memory_mb, Err *err) {
    if (geteuid() != 0) {
        err_set(err, ERR_WORK, "sandbox zygote: needs root (a distinct slot uid; the zygote ends runs with kill(-1))");
        return NULL;
    }
    if (slot < 0 || slot >= SANDBOX_MAX_SLOTS) {
        err_set(err, ERR_INPUT, "sandbox zygote: slot %d outside 0..%d", slot, SANDBOX_MAX_SLOTS - 1);
        return NULL;
    }
    if (sandbox_probe() < 0 || !sandbox_tool_path(SANDBOX_PYTHON)) {
        err_set(err, ERR_WORK, "sandbox zygote: no seccomp or no python3 here: %s", sandbox_probe_report());
        return NULL;
    }
    SandboxZygote *z = calloc(1, sizeof *z);
    if (!z) {
        err_set(err, ERR_WORK, "sandbox zygote: out of memory");
        return NULL;
    }
    z->slot = slot;
    z->memory_mb = memory_mb ? memory_mb : 1024;
    z->init = -1;
    z->sock = z->status_fd = -1;
    z->cg = (SandboxCgroup){-1, -1, -1, ""};
    snprintf(z->workdir, sizeof z->workdir, "%s/grpo-zygote-%d-XXXXXX", sandbox_tmp_base(), (int)getpid());
    uid_t u = sandbox_slot_uid_inner(slot, 1);
    if (!mkdtemp(z->workdir) || chown(z->workdir, u, u) < 0 || zygote_start(z, err) < 0) {
        if (!err || !err->msg[0]) err_set(err, ERR_WORK, "sandbox zygote: work dir: %s", strerror(errno));
        rmdir(z->workdir);
        free(z);
        return NULL;
    }
    return z;
}

void sandbox_zygote_free(SandboxZygote *z) {
    if (!z) return;
    zygote_stop(z);
    sandbox_remove_tree(z->workdir);
    free(z);
}

/* Sends the request with the three fds. */
static int send_request(int sock, const SandboxConfig *cfg, int fds[3]) {
    size_t n = 1;
    for (int i = 0; i < cfg->nargs; i++) n += strlen(cfg->args[i]) + (i > 0);
    char *msg = malloc(n);
    if (!msg) return -1;
    size_t o = 0;
    msg[o++] = 'A';
    for (int i = 0; i < cfg->nargs; i++) {
        if (i > 0) msg[o++] = 0;
        size_t l = strlen(cfg->args[i]);
        memcpy(msg + o, cfg->args[i], l);
        o += l;
    }
    struct iovec iov = {msg, n};
    char ctl[CMSG_SPACE(3 * sizeof(int))];
    memset(ctl, 0, sizeof ctl);
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(3 * sizeof(int));
    memcpy(CMSG_DATA(cm), fds, 3 * sizeof(int));
    ssize_t w = sendmsg(sock, &mh, MSG_NOSIGNAL);
    free(msg);
    return w == (ssize_t)n ? 0 : -1;
}

/* Waits for a reply until `until`; returns its length, 0 on EOF/timeout, -1 on error. */
static ssize_t recv_reply(int sock, char *buf, size_t cap, double until) {
    for (;;) {
        int ms = (int)ceil((until - sandbox_now_s()) * 1000);
        if (ms <= 0) return 0;
        struct pollfd pf = {sock, POLLIN, 0};
        int r = poll(&pf, 1, ms);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return r;
        ssize_t n = recv(sock, buf, cap - 1, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n >= 0) buf[n] = 0;
        return n;
    }
}

static void fail(SandboxZygote *z, SandboxResult *res, const char *what) {
    res->status = SANDBOX_ERROR;
    ChildReport rep;
    if (z->status_fd >= 0 && fcntl(z->status_fd, F_SETFL, O_NONBLOCK) == 0 &&
        read(z->status_fd, &rep, sizeof rep) == (ssize_t)sizeof rep)
        snprintf(res->message, sizeof res->message, "zygote: %s (setup: %s: %s)", what, rep.what, strerror(rep.err));
    else
        snprintf(res->message, sizeof res->message, "zygote: %s", what);
    zygote_stop(z);  // restarted on the next run
}

/* Writes the run's files and sends the request; returns the run's pid, or -1 (the out/err
 * read ends are closed then). */
static pid_t zygote_submit(SandboxZygote *z, const SandboxConfig *cfg, int outp[2], int errp[2], double t0) {
    sandbox_clear_dir(z->workdir);
    int ok = write_file(z->workdir, "main.py", cfg->code, strlen(cfg->code)) == 0;
    for (int i = 0; ok && i < cfg->nfiles; i++)
        ok = write_file(z->workdir, cfg->files[i].name, cfg->files[i].data, cfg->files[i].len) == 0;
    int in_fd = ok ? sandbox_stdin_memfd(cfg) : -1;
    ok = in_fd >= 0 && pipe2(outp, O_CLOEXEC) == 0 && pipe2(errp, O_CLOEXEC) == 0;
    int fds[3] = {in_fd, outp[1], errp[1]};
    ok = ok && send_request(z->sock, cfg, fds) == 0;
    for (int i = 0; i < 3; i++) if (fds[i] >= 0) close(fds[i]);
    char reply[64];
    pid_t pid = -1;
    if (ok && recv_reply(z->sock, reply, sizeof reply, t0 + 5.0) > 0) pid = (pid_t)atoi(reply);
    if (pid <= 0) {
        if (outp[0] >= 0) close(outp[0]);
        if (errp[0] >= 0) close(errp[0]);
        return -1;
    }
    return pid;
}

/* Reads the run's output until the zygote reports its end; kills the run (through a pidfd,
 * immune to pid reuse) at the deadline or when a stream goes over the cap. Returns 1 with
 * *wstatus and *cpu set once the zygote answered, 0 if it died or went silent. */
static int zygote_wait(SandboxZygote *z, pid_t pid, Capture cap[2], double deadline, int *timed_out, int *wstatus,
                       long *cpu) {
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0), killed = 0, have = 0, over = 0;
    double give_up = deadline + 2.0;
    while (!have) {
        double t = sandbox_now_s();
        if (!killed && (t >= deadline || over)) {
            *timed_out = !over;
            if (pidfd >= 0) syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
            killed = 1;
        }
        if (t >= give_up) break;
        struct pollfd pf[3] = {{z->sock, POLLIN, 0}, {cap[0].fd, POLLIN, 0}, {cap[1].fd, POLLIN, 0}};
        int ms = (int)ceil(((killed ? give_up : deadline) - t) * 1000);
        if (poll(pf, 3, ms > 0 ? ms : 0) < 0 && errno != EINTR) break;
        for (int i = 0; i < 2; i++) {
            if (cap[i].fd < 0 || !(pf[i + 1].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            if (!sandbox_capture_read(&cap[i])) { close(cap[i].fd); cap[i].fd = -1; }
            over |= cap[i].over;
        }
        if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            char reply[64];
            ssize_t n = recv(z->sock, reply, sizeof reply - 1, 0);
            if (n <= 0) break;
            reply[n] = 0;
            have = sscanf(reply, "%d %ld", wstatus, cpu) == 2;
            if (!have) break;
        }
    }
    // Once the zygote answers, the run's tree is gone: the pipes hold only what is left.
    for (int i = 0; i < 2; i++) {
        while (have && cap[i].fd >= 0 && sandbox_capture_read(&cap[i])) {}
        if (cap[i].fd >= 0) close(cap[i].fd);
        cap[i].fd = -1;
    }
    if (pidfd >= 0) close(pidfd);
    return have;
}

int sandbox_zygote_run(SandboxZygote *z, const SandboxConfig *cfg, SandboxResult *res, Err *err) {
    memset(res, 0, sizeof *res);
    res->isolation = sandbox_landlock_abi() > 0 ? "seccomp+landlock+zygote" : "seccomp+zygote";
    if (sandbox_check_config(cfg, err) < 0) return -1;
    if (cfg->lang != SANDBOX_PYTHON) return err_set(err, ERR_INPUT, "sandbox zygote: runs Python only");
    if (z->init < 0 && zygote_start(z, err) < 0) return -1;
    res->cgroup = z->cg.dir_fd >= 0 ? "v2" : "none";  // the zygote's cgroup, shared by its runs
    long oom0 = sandbox_cgroup_oom_kills(&z->cg);
    double t0 = sandbox_now_s(), timeout = cfg->timeout_s > 0 ? cfg->timeout_s : 10.0;
    int outp[2] = {-1, -1}, errp[2] = {-1, -1};
    pid_t pid = zygote_submit(z, cfg, outp, errp, t0);
    if (pid < 0) {
        fail(z, res, "no answer from the zygote");
        res->out = calloc(1, 1);
        res->err = calloc(1, 1);
        return 0;
    }
    size_t capn = cfg->output_cap ? cfg->output_cap : (1u << 20);
    Capture cap[2] = {{outp[0], NULL, 0, capn, 0}, {errp[0], NULL, 0, capn, 0}};
    int timed_out = 0, wstatus = -1;
    long cpu = 0;
    int have = zygote_wait(z, pid, cap, t0 + timeout, &timed_out, &wstatus, &cpu);
    res->wall_ms = (long)((sandbox_now_s() - t0) * 1000);
    res->cpu_ms = cpu;
    sandbox_result_take(res, cap);
    if (!have) {
        fail(z, res, "the zygote died or did not answer");
        if (timed_out) res->status = SANDBOX_TIMEOUT;  // e.g. the run killed its zygote, then hung
        return 0;
    }
    sandbox_classify(res, wstatus, timed_out, res->out_truncated || res->err_truncated, NULL);
    sandbox_result_over(res, cap);
    long oom = sandbox_cgroup_oom_kills(&z->cg) - oom0;
    if (oom > 0 && (res->status == SANDBOX_KILLED || res->status == SANDBOX_RUNTIME_ERROR)) {
        res->status = SANDBOX_MEMORY;
        snprintf(res->message, sizeof res->message, "memory limit reached (cgroup memory.max: %ld process%s OOM-killed)",
                 oom, oom == 1 ? "" : "es");
    }
    sandbox_clear_dir(z->workdir);
    return 0;
}
