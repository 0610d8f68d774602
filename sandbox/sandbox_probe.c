/* sandbox_probe: which isolation tier this kernel allows, and which interpreter and
 * compiler binaries the sandbox runs.
 *
 * Tier 1 is probed by actually running `exit 0` in it (clone with namespace flags,
 * uid maps, the read-only view, pivot_root): the only honest test in containers,
 * where any of those steps may be refused. Tools are resolved once: the first ELF
 * binary on PATH or in the usual places (pyenv-style shims are shell scripts that
 * need the caller's environment, so they are skipped), which, when we run as root
 * and switch to slot uids, every directory on the way must let others traverse. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sandbox_cgroup.h"
#include "sandbox_impl.h"

static pthread_once_t tools_once = PTHREAD_ONCE_INIT;
static char tool_path[3][PATH_MAX], tool_prefix[3][PATH_MAX];

/* An ELF file an unprivileged uid can execute (when we are root and will switch). */
static int usable(const char *path, char *real) {
    if (!realpath(path, real)) return 0;
    struct stat st;
    if (stat(real, &st) < 0 || !S_ISREG(st.st_mode)) return 0;
    int fd = open(real, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    unsigned char magic[4] = {0};
    ssize_t n = read(fd, magic, 4);
    close(fd);
    if (n != 4 || memcmp(magic, "\177ELF", 4)) return 0;
    if (geteuid() != 0) return access(real, X_OK) == 0;
    if (!(st.st_mode & S_IXOTH)) return 0;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", real);
    for (char *s = strrchr(dir, '/'); s && s != dir; s = strrchr(dir, '/')) {
        *s = 0;
        if (stat(dir, &st) < 0 || !(st.st_mode & S_IXOTH)) return 0;
    }
    return 1;
}

static void resolve(int lang, const char *env, const char *const *names, const char *const *fixed) {
    char cand[PATH_MAX], real[PATH_MAX];
    const char *over = getenv(env);
    int found = over && usable(over, real);
    const char *path = getenv("PATH");
    for (const char *p = path; !found && p && *p;) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        for (int i = 0; names[i] && !found && len > 0 && len < PATH_MAX - 64; i++) {
            snprintf(cand, sizeof cand, "%.*s/%s", (int)len, p, names[i]);
            found = usable(cand, real);
        }
        p = end ? end + 1 : NULL;
    }
    for (int i = 0; !found && fixed[i]; i++) found = usable(fixed[i], real);
    if (!found) return;
    snprintf(tool_path[lang], PATH_MAX, "%s", real);
    // <prefix>/bin/python3.x: the prefix holds the standard library and libpython.
    char pre[PATH_MAX];
    snprintf(pre, sizeof pre, "%s", real);
    for (int up = 0; up < 2; up++) {
        char *s = strrchr(pre, '/');
        if (s && s != pre) *s = 0;
    }
    static const char *const sys[] = {"/usr", "/bin", "/lib", "/sbin", NULL};
    int is_sys = 0;
    for (int i = 0; sys[i]; i++) {
        size_t l = strlen(sys[i]);
        if (!strncmp(pre, sys[i], l) && (pre[l] == 0 || pre[l] == '/')) is_sys = 1;
    }
    if (!is_sys && strcmp(pre, "/")) snprintf(tool_prefix[lang], PATH_MAX, "%s", pre);
}

static void tools_init(void) {
    static const char *const py[] = {"python3", NULL};
    static const char *const py_fixed[] = {"/usr/bin/python3", "/usr/local/bin/python3", NULL};
    static const char *const cc[] = {"cc", "gcc", "clang", NULL};
    static const char *const cc_fixed[] = {"/usr/bin/cc", "/usr/bin/gcc", NULL};
    static const char *const sh[] = {NULL};
    static const char *const sh_fixed[] = {"/bin/sh", "/usr/bin/sh", "/bin/dash", "/bin/bash", NULL};
    resolve(SANDBOX_PYTHON, "GRPO_SANDBOX_PYTHON", py, py_fixed);
    resolve(SANDBOX_C, "GRPO_SANDBOX_CC", cc, cc_fixed);
    resolve(SANDBOX_SHELL, "GRPO_SANDBOX_SH", sh, sh_fixed);
}

const char *sandbox_tool_path(SandboxLang lang) {
    if ((unsigned)lang > SANDBOX_SHELL) return NULL;
    pthread_once(&tools_once, tools_init);
    return tool_path[lang][0] ? tool_path[lang] : NULL;
}

const char *sandbox_tool_prefix(SandboxLang lang) {
    if ((unsigned)lang > SANDBOX_SHELL) return NULL;
    pthread_once(&tools_once, tools_init);
    return tool_prefix[lang][0] ? tool_prefix[lang] : NULL;
}

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static int probe_tier = -1;
static char probe_text[2048];

static void probe_init(void) {
    char why1[400] = "", why2[300] = "";
    int seccomp_ok = prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0;
    struct sock_fprog prog;
    Err err = {0};
    if (seccomp_ok && sandbox_filter_get(&prog, &err) < 0) {
        seccomp_ok = 0;
        snprintf(why2, sizeof why2, " (%s)", err.msg);
    }
    int tier1 = 0;
    if (!seccomp_ok) {
        snprintf(why1, sizeof why1, "needs seccomp");
    } else if (geteuid() != 0) {
        snprintf(why1, sizeof why1, "needs root to map a distinct uid per slot");
    } else if (!sandbox_tool_path(SANDBOX_SHELL)) {
        snprintf(why1, sizeof why1, "no /bin/sh to probe with");
    } else {
        SandboxConfig cfg = {.lang = SANDBOX_SHELL, .code = "exit 0\n", .timeout_s = 10, .memory_mb = 256};
        SandboxResult res = {0};
        if (sandbox_run_tier(&cfg, SANDBOX_TIER_NAMESPACES, &res, &err) == 0 && res.status == SANDBOX_OK) tier1 = 1;
        else snprintf(why1, sizeof why1, "refused here: %s", res.message[0] ? res.message : err.msg);
        sandbox_result_free(&res);
    }
    probe_tier = tier1 ? SANDBOX_TIER_NAMESPACES : seccomp_ok ? SANDBOX_TIER_SECCOMP : -1;
    const char *py = sandbox_tool_path(SANDBOX_PYTHON), *cc = sandbox_tool_path(SANDBOX_C);
    snprintf(probe_text, sizeof probe_text,
             "tier 1 (namespaces): %s%s; tier 2 (seccomp): %s%s, Landlock ABI %d; %s; python3: %s; cc: %s; sh: %s",
             tier1 ? "available" : "unavailable, ", why1, seccomp_ok ? "available" : "unavailable", why2,
             sandbox_landlock_abi(), sandbox_cgroup_info()->report, py ? py : "(none)", cc ? cc : "(none)",
             sandbox_tool_path(SANDBOX_SHELL) ? sandbox_tool_path(SANDBOX_SHELL) : "(none)");
}

int sandbox_probe(void) {
    pthread_once(&probe_once, probe_init);
    return probe_tier;
}

const char *sandbox_probe_report(void) {
    pthread_once(&probe_once, probe_init);
    return probe_text;
}
