/* sandbox_policy: the seccomp filter (built with libseccomp) and the Landlock probe.
 *
 * The filter is a deny list over a default ALLOW, so that Python, sh, cc and the
 * programs they run work unchanged, while the kernel attack surface and the escape
 * routes are closed (after firejail's @default group and Docker's default profile):
 * ptrace and process_vm_*, the mount family, pivot_root/chroot, unshare/setns and
 * clone with any CLONE_NEW* flag, bpf, userfaultfd, keyctl, perf_event_open, io_uring,
 * module and reboot calls, sockets other than AF_UNIX, setsid/setpgid (so the process
 * group that the supervisor kills stays whole), raising rlimits, TIOCSTI, and signals
 * aimed at the supervisor. clone3 answers ENOSYS so libc falls back to clone, whose
 * flags can be checked; a syscall from a foreign ABI kills the process.
 *
 * It is built once per supervisor pid and exported to raw BPF, so the child installs
 * it with prctl + seccomp(2) only (no allocation between fork and exec). */
#define _GNU_SOURCE
#include "sandbox_impl.h"

#include <errno.h>
#include <stdint.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/landlock.h>

static pthread_mutex_t filter_mu = PTHREAD_MUTEX_INITIALIZER;
/* [0] the standard filter, [1] the zygote's; each cached for the pid that built it. */
static struct sock_filter *filter_insns[2];
static unsigned short filter_len[2];
static pid_t filter_pid[2];

/* Calls that simply fail with EPERM. */
static const char *const denied[] = {
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "personality",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr", "unshare", "setns",
    "bpf", "userfaultfd", "keyctl", "add_key", "request_key", "perf_event_open",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "reboot", "swapon", "swapoff", "syslog", "acct", "quotactl", "vhangup",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "iopl", "ioperm",
    "open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "fanotify_init",
    "setsid", "setpgid", "setrlimit", "pidfd_open", "pidfd_getfd", "pidfd_send_signal",
    "mbind", "migrate_pages", "move_pages", "set_mempolicy",
};

static int add_errno(scmp_filter_ctx ctx, int e, const char *name, unsigned n,
                     const struct scmp_arg_cmp *cmp) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) return 0;  // not on this architecture
    return seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(e), nr, n, cmp);
}

static int build_rules(scmp_filter_ctx ctx, pid_t sup, int zygote) {
    int rc = 0;
    for (size_t i = 0; i < sizeof denied / sizeof *denied && !rc; i++)
        rc = add_errno(ctx, EPERM, denied[i], 0, NULL);
    // clone with any namespace flag; clone3 cannot be argument-filtered, so ENOSYS.
    static const unsigned long ns_flags[] = {CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS,
                                             CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID,
                                             CLONE_NEWNET};
    for (size_t i = 0; i < sizeof ns_flags / sizeof *ns_flags && !rc; i++) {
        struct scmp_arg_cmp c = SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]);
        rc = add_errno(ctx, EPERM, "clone", 1, &c);
    }
    if (!rc) rc = add_errno(ctx, ENOSYS, "clone3", 0, NULL);
    // Sockets: AF_UNIX only (no network, no netlink, no packet sockets).
    if (!rc) {
        struct scmp_arg_cmp c = SCMP_A0(SCMP_CMP_NE, AF_UNIX, 0);
        rc = add_errno(ctx, EACCES, "socket", 1, &c);
        if (!rc) rc = add_errno(ctx, EACCES, "socketpair", 1, &c);
    }
    // prlimit64 may read limits but not set them (glibc's setrlimit uses it).
    if (!rc) {
        struct scmp_arg_cmp c = SCMP_A2(SCMP_CMP_NE, 0, 0);
        rc = add_errno(ctx, EPERM, "prlimit64", 1, &c);
    }
    // Terminal injection (CVE-2017-5226); masked compare against 64-bit tricks.
    if (!rc) {
        struct scmp_arg_cmp c = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI);
        rc = add_errno(ctx, EPERM, "ioctl", 1, &c);
    }
    // Signals to the supervisor or to everything (-1); the slot uid already blocks these
    // when we run as root, this keeps them blocked when we do not.
    const long targets[] = {sup, -sup, -1};
    for (size_t i = 0; i < (zygote ? 2u : 3u) && !rc; i++) {
        // pid_t is 32 bits: compare only the low half (the upper half is not defined).
        struct scmp_arg_cmp c = SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffu, (scmp_datum_t)(uint32_t)targets[i]);
        rc = add_errno(ctx, EPERM, "kill", 1, &c);
        if (!rc && targets[i] > 0) rc = add_errno(ctx, EPERM, "tgkill", 1, &c);
        if (!rc && targets[i] > 0) rc = add_errno(ctx, EPERM, "tkill", 1, &c);
    }
    return rc;
}

static int export_bpf(scmp_filter_ctx ctx, int which, Err *err) {
    int fd = memfd_create("grpo-seccomp", MFD_CLOEXEC);
    if (fd < 0) return err_set(err, ERR_WORK, "sandbox: memfd_create for the seccomp filter: %s", strerror(errno));
    int rc = seccomp_export_bpf(ctx, fd);
    off_t size = rc == 0 ? lseek(fd, 0, SEEK_END) : -1;
    if (size <= 0 || size % sizeof(struct sock_filter) || size / sizeof(struct sock_filter) > 0xffff) {
        close(fd);
        return err_set(err, ERR_WORK, "sandbox: exporting the seccomp filter failed (%s)", strerror(rc ? -rc : EINVAL));
    }
    struct sock_filter *insns = malloc((size_t)size);
    ssize_t got = insns ? pread(fd, insns, (size_t)size, 0) : -1;
    close(fd);
    if (got != size) {
        free(insns);
        return err_set(err, ERR_WORK, "sandbox: reading back the seccomp filter failed");
    }
    free(filter_insns[which]);
    filter_insns[which] = insns;
    filter_len[which] = (unsigned short)(size / sizeof(struct sock_filter));
    return 0;
}

static int filter_get(struct sock_fprog *prog, int which, Err *err) {
    pthread_mutex_lock(&filter_mu);
    pid_t me = getpid();
    int rc = 0;
    if (!filter_insns[which] || filter_pid[which] != me) {
        scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
        if (!ctx) {
            rc = err_set(err, ERR_WORK, "sandbox: seccomp_init failed");
        } else {
            // Foreign-ABI syscalls (int 0x80, x32) are killed, not interpreted.
            int r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
            if (!r) r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
            if (!r) r = build_rules(ctx, me, which);
            if (r) rc = err_set(err, ERR_WORK, "sandbox: building the seccomp filter: %s", strerror(-r));
            else rc = export_bpf(ctx, which, err);
            seccomp_release(ctx);
            if (!rc) filter_pid[which] = me;
        }
    }
    if (!rc) {
        prog->filter = filter_insns[which];
        prog->len = filter_len[which];
    }
    pthread_mutex_unlock(&filter_mu);
    return rc;
}

int sandbox_filter_get(struct sock_fprog *prog, Err *err) { return filter_get(prog, 0, err); }
int sandbox_filter_get_zygote(struct sock_fprog *prog, Err *err) { return filter_get(prog, 1, err); }

static int landlock_abi;
static pthread_once_t landlock_once = PTHREAD_ONCE_INIT;

static void landlock_probe(void) {
    long v = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    landlock_abi = v > 0 ? (int)v : 0;
}

int sandbox_landlock_abi(void) {
    pthread_once(&landlock_once, landlock_probe);
    return landlock_abi;
}
