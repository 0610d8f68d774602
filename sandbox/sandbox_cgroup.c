/* sandbox_cgroup: see sandbox_cgroup.h. The probe (where the root is, which controllers a
 * run's cgroup gets, whether a process can be moved in) runs once; each run then costs a
 * mkdir, two or three small writes, one write to cgroup.kill and an rmdir. */
#define _GNU_SOURCE
#include "sandbox_cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static SandboxCgroupInfo info;
static int root_fd = -1;  /* O_PATH fd of info.root, opened by the probe */
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static atomic_ulong run_seq;

static int is_cgroup2(const char *dir) {
    struct statfs s;
    return statfs(dir, &s) == 0 && s.f_type == CGROUP2_SUPER_MAGIC;
}

/* Reads a small file under dirfd into buf (NUL-terminated); length or -1. */
static ssize_t read_at(int dirfd, const char *file, char *buf, size_t cap) {
    int fd = openat(dirfd, file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    return n;
}

static int write_at(int dirfd, const char *file, const char *text) {
    int fd = openat(dirfd, file, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = write(fd, text, strlen(text));
    int e = errno;
    close(fd);
    errno = e;
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Is `word` one of the space-separated words of `list`? */
static int has_word(const char *list, const char *word) {
    size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)); p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == 0 || p[n] == ' ' || p[n] == '\n')) return 1;
    return 0;
}

/* Our own cgroup path in the v2 hierarchy ("0::/a/b" in /proc/self/cgroup). */
static int own_cgroup(char *out, size_t cap) {
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f) return -1;
    char line[1024];
    int found = -1;
    while (found < 0 && fgets(line, sizeof line, f)) {
        if (strncmp(line, "0::", 3)) continue;
        line[strcspn(line, "\n")] = 0;
        snprintf(out, cap, "%s", line + 3);
        found = 0;
    }
    fclose(f);
    return found;
}

/* A configured (delegated) root is ours: offer memory and pids to the run cgroups. */
static void enable_controllers(int dirfd) {
    char have[512], on[512];
    if (read_at(dirfd, "cgroup.controllers", have, sizeof have) < 0) return;
    if (read_at(dirfd, "cgroup.subtree_control", on, sizeof on) < 0) return;
    static const char *const want[] = {"memory", "pids"};
    for (int i = 0; i < 2; i++) {
        char cmd[16];
        snprintf(cmd, sizeof cmd, "+%s", want[i]);
        if (has_word(have, want[i]) && !has_word(on, want[i])) (void)write_at(dirfd, "cgroup.subtree_control", cmd);
    }
}

/* Removes run cgroups left empty by supervisors that died (named grpo-<pid>-...). A
 * populated one is never touched: rmdir fails with EBUSY. */
static void sweep_stale(void) {
    int fd = openat(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0) close(fd);
        return;
    }
    for (struct dirent *e; (e = readdir(d));) {
        int pid;
        if (sscanf(e->d_name, "grpo-%d-", &pid) != 1 || pid == getpid()) continue;
        if (kill(pid, 0) < 0 && errno == ESRCH) unlinkat(root_fd, e->d_name, AT_REMOVEDIR);
    }
    closedir(d);
}

static void close_fds(SandboxCgroup *cg) {
    int *fds[] = {&cg->dir_fd, &cg->procs_fd, &cg->kill_fd};
    for (int i = 0; i < 3; i++) {
        if (*fds[i] >= 0) close(*fds[i]);
        *fds[i] = -1;
    }
}

/* mkdir ROOT/name, set the limits the features allow, open the fds. */
static int cg_make(SandboxCgroup *cg, unsigned features, long memory_mb, long pids_max, Err *err) {
    if (mkdirat(root_fd, cg->name, 0755) < 0)
        return err_set(err, ERR_WORK, "sandbox cgroup: mkdir %s/%s: %s", info.root, cg->name, strerror(errno));
    const char *what = "opening it";
    char num[32];
    cg->dir_fd = openat(root_fd, cg->name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);  // also for clone3
    int ok = cg->dir_fd >= 0;
    if (ok && (features & SANDBOX_CG_MEMORY) && memory_mb > 0) {
        snprintf(num, sizeof num, "%ld", memory_mb << 20);
        what = "memory.max";
        ok = write_at(cg->dir_fd, "memory.max", num) == 0;
        if (ok && (features & SANDBOX_CG_SWAP)) {
            what = "memory.swap.max";
            ok = write_at(cg->dir_fd, "memory.swap.max", "0") == 0;
        }
    }
    if (ok && (features & SANDBOX_CG_PIDS) && pids_max > 0) {
        snprintf(num, sizeof num, "%ld", pids_max);
        what = "pids.max";
        ok = write_at(cg->dir_fd, "pids.max", num) == 0;
    }
    if (ok) {
        what = "cgroup.procs";
        cg->procs_fd = openat(cg->dir_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
        ok = cg->procs_fd >= 0;
    }
    if (ok && (features & SANDBOX_CG_KILL)) {
        what = "cgroup.kill";
        cg->kill_fd = openat(cg->dir_fd, "cgroup.kill", O_WRONLY | O_CLOEXEC);
        ok = cg->kill_fd >= 0;
    }
    if (ok) return 0;
    int e = errno;
    close_fds(cg);
    unlinkat(root_fd, cg->name, AT_REMOVEDIR);
    return err_set(err, ERR_WORK, "sandbox cgroup: %s/%s: %s: %s", info.root, cg->name, what, strerror(e));
}

/* Creates a cgroup, finds what it offers, and moves a child process into it. */
static int probe_cgroup(char *why, size_t cap) {
    SandboxCgroup cg = {-1, -1, -1, ""};
    snprintf(cg.name, sizeof cg.name, "grpo-%d-probe", (int)getpid());
    Err err = {0};
    if (cg_make(&cg, 0, 0, 0, &err) < 0) {
        snprintf(why, cap, "%s", err.msg);
        return -1;
    }
    static const struct { const char *file; unsigned bit; } files[] = {
        {"cgroup.kill", SANDBOX_CG_KILL}, {"memory.max", SANDBOX_CG_MEMORY},
        {"memory.swap.max", SANDBOX_CG_SWAP}, {"pids.max", SANDBOX_CG_PIDS}};
    for (int i = 0; i < 4; i++)
        if (faccessat(cg.dir_fd, files[i].file, F_OK, 0) == 0) info.features |= files[i].bit;
    pid_t pid = fork();
    if (pid == 0) _exit(sandbox_cgroup_enter(&cg, 0) == 0 ? 0 : 1);
    int st = -1;
    while (pid > 0 && waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    int joined = pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (!joined) snprintf(why, cap, "moving a process into %s/%s failed", info.root, cg.name);
    long oom;
    if (sandbox_cgroup_destroy(&cg, &oom, &err) < 0 && joined) {
        snprintf(why, cap, "%s", err.msg);
        joined = 0;
    }
    return joined ? 0 : -1;
}

/* Finds the root: $GRPO_SANDBOX_CGROUP, else our own cgroup under a cgroup2 /sys/fs/cgroup. */
static int find_root(int *configured, char *why, size_t cap) {
    const char *env = getenv("GRPO_SANDBOX_CGROUP");
    *configured = env && env[0] && strcmp(env, "auto");
    if (*configured && !strcmp(env, "off")) {
        snprintf(why, cap, "disabled (GRPO_SANDBOX_CGROUP=off)");
        return -1;
    }
    if (*configured) {
        if (!is_cgroup2(env)) {
            snprintf(why, cap, "GRPO_SANDBOX_CGROUP=%s is not a directory in a cgroup v2 hierarchy", env);
            return -1;
        }
        snprintf(info.root, sizeof info.root, "%s", env);
        return 0;
    }
    char own[400];
    if (!is_cgroup2("/sys/fs/cgroup")) {
        snprintf(why, cap, "/sys/fs/cgroup is not a cgroup v2 mount (set GRPO_SANDBOX_CGROUP to a delegated v2 directory)");
        return -1;
    }
    if (own_cgroup(own, sizeof own) < 0) {
        snprintf(why, cap, "no cgroup v2 entry in /proc/self/cgroup");
        return -1;
    }
    snprintf(info.root, sizeof info.root, "/sys/fs/cgroup%s", strcmp(own, "/") ? own : "");
    if (access(info.root, W_OK) < 0) {
        snprintf(why, cap, "our cgroup %s is not writable (%s)", info.root, strerror(errno));
        return -1;
    }
    return 0;
}

static void probe(void) {
    char why[512] = "";
    int configured = 0;
    if (find_root(&configured, why, sizeof why) == 0) {
        root_fd = open(info.root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root_fd < 0) snprintf(why, sizeof why, "open %s: %s", info.root, strerror(errno));
    }
    if (root_fd >= 0) {
        if (configured) enable_controllers(root_fd);
        sweep_stale();
        info.usable = probe_cgroup(why, sizeof why) == 0;
    }
    if (!info.usable) {
        info.features = 0;
        snprintf(info.report, sizeof info.report, "cgroup v2: none (%s)", why);
        return;
    }
    unsigned f = info.features;
    snprintf(info.report, sizeof info.report, "cgroup v2: %s (kill: %s; memory.max: %s; pids.max: %s)", info.root,
             f & SANDBOX_CG_KILL ? "cgroup.kill" : "pid by pid (kernel < 5.14)",
             f & SANDBOX_CG_MEMORY ? (f & SANDBOX_CG_SWAP ? "yes, swap 0" : "yes") : "no controller",
             f & SANDBOX_CG_PIDS ? "yes" : "no controller");
}

const SandboxCgroupInfo *sandbox_cgroup_info(void) {
    pthread_once(&probe_once, probe);
    return &info;
}

int sandbox_cgroup_create(SandboxCgroup *cg, int slot, long memory_mb, long pids_max, Err *err) {
    const SandboxCgroupInfo *in = sandbox_cgroup_info();
    cg->dir_fd = cg->procs_fd = cg->kill_fd = -1;
    if (!in->usable) return err_set(err, ERR_WORK, "sandbox cgroup: unavailable: %s", in->report);
    snprintf(cg->name, sizeof cg->name, "grpo-%d-%d-%lu", (int)getpid(), slot, atomic_fetch_add(&run_seq, 1));
    return cg_make(cg, in->features, memory_mb, pids_max, err);
}

int sandbox_cgroup_enter(const SandboxCgroup *cg, pid_t pid) {
    char buf[16], *p = buf + sizeof buf;
    unsigned v = (unsigned)pid;
    do *--p = (char)('0' + v % 10); while ((v /= 10));  // no snprintf: called between fork and exec
    ssize_t n = buf + sizeof buf - p;
    return write(cg->procs_fd, p, (size_t)n) == n ? 0 : -1;
}

/* Pre-5.14 kernels: SIGKILL each listed pid; returns how many were listed, -1 on error. */
static int kill_listed(const SandboxCgroup *cg) {
    char buf[4096];
    ssize_t n = read_at(cg->dir_fd, "cgroup.procs", buf, sizeof buf);
    if (n < 0) return -1;
    int count = 0;
    for (char *p = buf, *end; *p; p = end) {
        long pid = strtol(p, &end, 10);
        if (end == p) break;
        if (pid > 0) kill((pid_t)pid, SIGKILL), count++;
    }
    return count;
}

int sandbox_cgroup_kill(const SandboxCgroup *cg) {
    if (cg->kill_fd >= 0) return write(cg->kill_fd, "1", 1) == 1 ? 0 : -1;
    return cg->dir_fd >= 0 && kill_listed(cg) >= 0 ? 0 : -1;
}

static long events_field(int dirfd, const char *file, const char *key) {
    char buf[1024];
    if (read_at(dirfd, file, buf, sizeof buf) <= 0) return 0;
    size_t n = strlen(key);
    for (char *p = buf; (p = strstr(p, key)); p += n)
        if ((p == buf || p[-1] == '\n') && p[n] == ' ') return strtol(p + n + 1, NULL, 10);
    return 0;
}

long sandbox_cgroup_oom_kills(const SandboxCgroup *cg) {
    if (cg->dir_fd < 0 || !(info.features & SANDBOX_CG_MEMORY)) return 0;
    return events_field(cg->dir_fd, "memory.events", "oom_kill");
}

int sandbox_cgroup_destroy(SandboxCgroup *cg, long *oom_kills, Err *err) {
    *oom_kills = 0;
    if (cg->dir_fd < 0) {
        close_fds(cg);
        return 0;
    }
    sandbox_cgroup_kill(cg);
    *oom_kills = sandbox_cgroup_oom_kills(cg);
    // Killed processes leave asynchronously: retry the rmdir (EBUSY while populated).
    struct timespec nap = {0, 100 * 1000};
    int rc = -1, e = 0;
    for (int i = 0; i < 2000 && rc < 0; i++) {
        rc = unlinkat(root_fd, cg->name, AT_REMOVEDIR);
        e = errno;
        if (rc == 0 || e != EBUSY) break;
        if (i % 50 == 49) sandbox_cgroup_kill(cg);  // a fork raced the kill (no cgroup.kill)
        nanosleep(&nap, NULL);
        if (nap.tv_nsec < 1000 * 1000) nap.tv_nsec *= 2;
    }
    close_fds(cg);
    if (rc < 0) return err_set(err, ERR_WORK, "sandbox cgroup: removing %s/%s: %s", info.root, cg->name, strerror(e));
    return 0;
}
