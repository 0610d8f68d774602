/* test_sandbox_cgroup: per-run cgroup v2 limits (sandbox/sandbox_cgroup.h).
 *
 * Root: $GRPO_SANDBOX_CGROUP, else an auto-detected hierarchy (/sys/fs/cgroup as cgroup2),
 * else, when running as root, a cgroup2 hierarchy mounted on a temp dir inside a private
 * mount namespace of this process (so the mount goes away with the process even if the
 * test crashes) and unmounted at the end. Otherwise the whole test is skipped.
 *
 * Checks: the whole-tree kill through cgroup.kill (a double-forked grandchild that left
 * the session is killed, and the cgroup is removed); sandbox_run at each available tier
 * reports "cgroup":"v2", leaves a background process and no cgroup behind, and ends a
 * sleeping program at its time limit; the fork server's cgroup; memory.max containment (an OOM kill, reported as
 * `memory`) and pids.max containment when those controllers are available in the root.
 * What is not available here is printed as SKIPPED with the reason. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/sandbox.h"
#include "sandbox/sandbox_cgroup.h"
#include "sandbox/sandbox_zygote.h"
#include "test.h"

static char mounted[64];  /* our temp mount point, "" if none */

static void unmount_ours(void) {
    if (!mounted[0]) return;
    if (umount2(mounted, MNT_DETACH) < 0) fprintf(stderr, "umount %s: %s\n", mounted, strerror(errno));
    if (rmdir(mounted) < 0) fprintf(stderr, "rmdir %s: %s\n", mounted, strerror(errno));
    mounted[0] = 0;
}

static int is_cgroup2(const char *dir) {
    struct statfs s;
    return statfs(dir, &s) == 0 && s.f_type == CGROUP2_SUPER_MAGIC;
}

/* Picks the root as described above; returns a reason to skip, or NULL. */
static const char *choose_root(void) {
    const char *env = getenv("GRPO_SANDBOX_CGROUP");
    if (env && env[0] && strcmp(env, "auto")) return NULL;  // the caller's choice
    if (is_cgroup2("/sys/fs/cgroup")) return NULL;           // auto-detection will find it
    if (geteuid() != 0) return "no cgroup v2 at /sys/fs/cgroup, GRPO_SANDBOX_CGROUP unset, and not root (cannot mount one)";
    // A private mount namespace: the mount below is invisible to others and dies with us.
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return "cannot make a private mount namespace to mount cgroup2 in";
    snprintf(mounted, sizeof mounted, "/tmp/grpo-cgtest-XXXXXX");
    if (!mkdtemp(mounted)) {
        mounted[0] = 0;
        return "mkdtemp failed";
    }
    if (mount("none", mounted, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
        rmdir(mounted);
        mounted[0] = 0;
        return "mount -t cgroup2 refused here";
    }
    printf("mounted a cgroup2 hierarchy on %s (private mount namespace)\n", mounted);
    setenv("GRPO_SANDBOX_CGROUP", mounted, 1);
    return NULL;
}

/* Number of cgroups this process created under the root that still exist. */
static int leftovers(const char *root) {
    char prefix[32];
    snprintf(prefix, sizeof prefix, "grpo-%d-", (int)getpid());
    DIR *d = opendir(root);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        if (!strncmp(e->d_name, prefix, strlen(prefix))) {
            fprintf(stderr, "left behind: %s/%s\n", root, e->d_name);
            n++;
        }
    if (d) closedir(d);
    return n;
}

/* The root's cgroup.controllers, for SKIPPED lines. */
static const char *controllers(const char *root) {
    static char buf[256];
    char path[700];
    snprintf(path, sizeof path, "%s/cgroup.controllers", root);
    FILE *f = fopen(path, "r");
    buf[0] = 0;
    if (f && fgets(buf, sizeof buf, f)) buf[strcspn(buf, "\n")] = 0;
    if (f) fclose(f);
    return buf[0] ? buf : "(none)";
}

static int gone(const char *root, const char *name) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s", root, name);
    return access(path, F_OK) < 0 && errno == ENOENT;
}

/* A child joins the cgroup and double-forks a daemon that calls setsid(): it is in no
 * process group or session of ours, its parent is gone, only the cgroup still holds it.
 * fallback: close cgroup.kill first, so the kernel < 5.14 path (pid by pid) runs. */
static void test_tree_kill(const SandboxCgroupInfo *info, int fallback) {
    SandboxCgroup cg;
    Err err = {0};
    if (sandbox_cgroup_create(&cg, 5, 0, 0, &err) < 0) {
        CHECK(0, "create: %s", err.msg);
        return;
    }
    if (fallback && cg.kill_fd >= 0) {
        close(cg.kill_fd);
        cg.kill_fd = -1;
    }
    int pp[2];
    if (pipe(pp) < 0) return;
    pid_t a = fork();
    if (a == 0) {
        if (sandbox_cgroup_enter(&cg, 0) < 0) _exit(2);
        pid_t b = fork();
        if (b == 0) {
            setsid();
            if (fork() == 0) {
                alarm(60);  // never outlive a crashed test by long
                pid_t me = getpid();
                if (write(pp[1], &me, sizeof me) != sizeof me) _exit(1);
                for (;;) pause();
            }
            _exit(0);
        }
        int st;
        waitpid(b, &st, 0);
        _exit(0);
    }
    close(pp[1]);
    pid_t daemon = 0;
    CHECK(read(pp[0], &daemon, sizeof daemon) == sizeof daemon, "daemon pid");
    close(pp[0]);
    int st = 0;
    waitpid(a, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the joining child failed (status %d)", st);
    int pidfd = daemon > 0 ? (int)syscall(SYS_pidfd_open, daemon, 0) : -1;
    CHECK(pidfd >= 0 && kill(daemon, 0) == 0, "the daemon runs before the kill");
    CHECK(getsid(daemon) != getsid(0), "the daemon left our session");
    long oom = -1;
    CHECK(sandbox_cgroup_destroy(&cg, &oom, &err) == 0, "destroy: %s", err.msg);
    CHECK(oom == 0, "oom_kill %ld", oom);
    struct pollfd pf = {pidfd, POLLIN, 0};
    CHECK(pidfd >= 0 && poll(&pf, 1, 5000) == 1, "the escaped daemon %d was killed with the cgroup", (int)daemon);
    if (pidfd >= 0) close(pidfd);
    CHECK(gone(info->root, cg.name), "%s removed", cg.name);
    printf("whole-tree kill: %s, daemon that left the session killed, cgroup removed\n",
           fallback ? "pid by pid" : "cgroup.kill");
}

static const char bg_prog[] =
    "import os, time\n"
    "if os.fork() == 0:\n"
    "    time.sleep(60)\n"
    "    os._exit(0)\n"
    "print('parent done')\n";

static void test_runs(const SandboxCgroupInfo *info, int tier) {
    SandboxConfig cfg = {.lang = SANDBOX_PYTHON, .code = bg_prog, .timeout_s = 10, .memory_mb = 512, .tier = tier};
    SandboxResult r;
    Err err = {0};
    CHECK(sandbox_run(&cfg, &r, &err) == 0, "run: %s", err.msg);
    CHECK(r.status == SANDBOX_OK && !strcmp(r.out, "parent done\n"), "tier %d background: %s %s %s", tier,
          sandbox_status_name(r.status), r.message, r.err);
    CHECK(r.cgroup && !strcmp(r.cgroup, "v2"), "tier %d cgroup field %s", tier, r.cgroup ? r.cgroup : "(null)");
    sandbox_result_free(&r);
    cfg.code = "import time\ntime.sleep(30)\n";
    cfg.timeout_s = 0.5;
    CHECK(sandbox_run(&cfg, &r, &err) == 0, "run: %s", err.msg);
    CHECK(r.status == SANDBOX_TIMEOUT, "tier %d sleep: %s %s", tier, sandbox_status_name(r.status), r.message);
    sandbox_result_free(&r);
    CHECK(leftovers(info->root) == 0, "tier %d: run cgroups removed", tier);
    printf("tier %d: runs report cgroup v2, background process and timeout handled, cgroups removed\n", tier);
}

/* The fork server: one cgroup for the zygote and its runs, removed when it stops. */
static void test_zygote(const SandboxCgroupInfo *info) {
    Err err = {0};
    SandboxZygote *z = sandbox_zygote_new(9, 512, &err);
    if (!z) {
        printf("SKIPPED: zygote cgroup: %s\n", err.msg);
        return;
    }
    SandboxConfig cfg = {.lang = SANDBOX_PYTHON, .code = bg_prog, .timeout_s = 10};
    SandboxResult r;
    CHECK(sandbox_zygote_run(z, &cfg, &r, &err) == 0, "zygote run: %s", err.msg);
    CHECK(r.status == SANDBOX_OK && !strcmp(r.out, "parent done\n"), "zygote: %s %s %s", sandbox_status_name(r.status),
          r.message, r.err);
    CHECK(r.cgroup && !strcmp(r.cgroup, "v2"), "zygote cgroup field %s", r.cgroup ? r.cgroup : "(null)");
    sandbox_result_free(&r);
    sandbox_zygote_free(z);
    CHECK(leftovers(info->root) == 0, "zygote: its cgroup removed");
    printf("zygote: runs report cgroup v2, its cgroup removed when it stops\n");
}

/* memory.max: a child allocating 8x the limit is OOM-killed and memory.events says so;
 * through sandbox_run the same is a `memory` result. */
static void test_memory(const SandboxCgroupInfo *info) {
    if (!(info->features & SANDBOX_CG_MEMORY)) {
        printf("SKIPPED: memory.max containment: no memory controller for cgroups under %s "
               "(its cgroup.controllers: %s)\n", info->root, controllers(info->root));
        return;
    }
    SandboxCgroup cg;
    Err err = {0};
    if (sandbox_cgroup_create(&cg, 6, 32, 0, &err) < 0) {
        CHECK(0, "create: %s", err.msg);
        return;
    }
    pid_t a = fork();
    if (a == 0) {
        if (sandbox_cgroup_enter(&cg, 0) < 0) _exit(2);
        size_t n = 256u << 20;
        char *p = malloc(n);
        if (p) memset(p, 1, n);
        _exit(p ? 0 : 3);
    }
    int st = 0;
    waitpid(a, &st, 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "256 MiB under memory.max 32 MiB: status %d", st);
    long oom = 0;
    CHECK(sandbox_cgroup_destroy(&cg, &oom, &err) == 0, "destroy: %s", err.msg);
    CHECK(oom >= 1, "memory.events oom_kill %ld", oom);
    SandboxConfig cfg = {.lang = SANDBOX_PYTHON, .timeout_s = 20, .memory_mb = 128,
                         .code = "l = []\nwhile True:\n    l.append(b'x' * (1 << 20))\n"};
    SandboxResult r;
    CHECK(sandbox_run(&cfg, &r, &err) == 0, "run: %s", err.msg);
    CHECK(r.status == SANDBOX_MEMORY, "growing list under 128 MiB: %s %s", sandbox_status_name(r.status), r.message);
    printf("memory.max: OOM kill counted (%ld); sandboxed growing list: %s (%s)\n", oom, sandbox_status_name(r.status),
           r.message);
    sandbox_result_free(&r);
}

/* pids.max: a child in a cgroup limited to 8 tasks can start at most 7 more. */
static void test_pids(const SandboxCgroupInfo *info) {
    if (!(info->features & SANDBOX_CG_PIDS)) {
        printf("SKIPPED: pids.max containment: no pids controller for cgroups under %s "
               "(its cgroup.controllers: %s)\n", info->root, controllers(info->root));
        return;
    }
    SandboxCgroup cg;
    Err err = {0};
    if (sandbox_cgroup_create(&cg, 7, 0, 8, &err) < 0) {
        CHECK(0, "create: %s", err.msg);
        return;
    }
    pid_t a = fork();
    if (a == 0) {
        if (sandbox_cgroup_enter(&cg, 0) < 0) _exit(255);
        int ok = 0;
        for (int i = 0; i < 20; i++) {
            pid_t c = fork();
            if (c == 0) {
                alarm(60);
                pause();
                _exit(0);
            }
            ok += c > 0;
        }
        _exit(ok);  // the children stay until the cgroup is destroyed
    }
    int st = 0;
    waitpid(a, &st, 0);
    int started = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    CHECK(started == 7, "forks under pids.max 8: %d started", started);
    long oom;
    CHECK(sandbox_cgroup_destroy(&cg, &oom, &err) == 0, "destroy (kills the 7): %s", err.msg);
    printf("pids.max: %d of 20 forks started under a limit of 8 tasks\n", started);
}

int main(void) {
    const char *skip = choose_root();
    if (skip) TEST_SKIP("cgroup v2 test: %s", skip);
    const SandboxCgroupInfo *info = sandbox_cgroup_info();
    if (!info->usable) {
        unmount_ours();
        TEST_SKIP("cgroup v2 test: %s", info->report);
    }
    printf("%s\n", info->report);
    if (!(info->features & SANDBOX_CG_KILL)) printf("SKIPPED: cgroup.kill is absent (kernel < 5.14)\n");
    else test_tree_kill(info, 0);
    test_tree_kill(info, 1);
    test_runs(info, SANDBOX_TIER_SECCOMP);
    if (sandbox_probe() == SANDBOX_TIER_NAMESPACES) test_runs(info, SANDBOX_TIER_NAMESPACES);
    else printf("SKIPPED: tier 1 runs: %s\n", sandbox_probe_report());
    test_zygote(info);
    test_memory(info);
    test_pids(info);
    CHECK(leftovers(info->root) == 0, "no cgroup of this process left under %s", info->root);
    unmount_ours();
    return test_report();
}
