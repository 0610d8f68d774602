/* cmd_sandbox: `grpo sandbox run FILE [ARG...]` and `grpo sandbox probe`.
 *
 * run: executes FILE in the sandbox and prints one JSON object (DESIGN.md §5):
 * status, exit_code, stdout, stderr (both capped, invalid UTF-8 replaced by U+FFFD),
 * wall_ms, cpu_ms, isolation, plus cgroup ("v2" or "none"), signal, message and the
 * truncation flags.
 * Exit code 0 when the program ran (whatever its status), 1 on sandbox_error,
 * 2 on bad usage or unreadable files. probe: prints what the tier probe found. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <utf8proc.h>

#include "cli.h"
#include "cmd.h"
#include "sandbox/sandbox.h"  // defines: sandbox_run, SandboxConfig, SandboxResult
#include "base/xalloc.h"

/* Reads a whole file ("-" = stdin); NULL with a message on failure. */
static char *slurp(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "grpo sandbox: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    for (size_t got; (got = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (cap - n < 2) buf = xrealloc(buf, cap *= 2);
    }
    int bad = ferror(f);
    if (f != stdin) fclose(f);
    if (bad) {
        fprintf(stderr, "grpo sandbox: reading %s failed\n", path);
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* Valid UTF-8 copy for JSON: invalid sequences and NUL become U+FFFD. */
static char *utf8_clean(const char *s, size_t len) {
    char *out = xmalloc(len * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t n = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &cp);
        if (n <= 0 || cp == 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += 1;
        } else {
            memcpy(out + o, s + i, (size_t)n);
            o += (size_t)n;
            i += (size_t)n;
        }
    }
    out[o] = 0;
    return out;
}

static void print_result(const SandboxResult *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", sandbox_status_name(r->status));
    cJSON_AddNumberToObject(o, "exit_code", r->exit_code);
    char *out = utf8_clean(r->out, r->out_len), *err = utf8_clean(r->err, r->err_len);
    cJSON_AddStringToObject(o, "stdout", out);
    cJSON_AddStringToObject(o, "stderr", err);
    free(out);
    free(err);
    cJSON_AddNumberToObject(o, "wall_ms", (double)r->wall_ms);
    cJSON_AddNumberToObject(o, "cpu_ms", (double)r->cpu_ms);
    cJSON_AddStringToObject(o, "isolation", r->isolation ? r->isolation : "");
    cJSON_AddStringToObject(o, "cgroup", r->cgroup ? r->cgroup : "none");
    cJSON_AddNumberToObject(o, "signal", r->signal);
    cJSON_AddBoolToObject(o, "stdout_truncated", r->out_truncated);
    cJSON_AddBoolToObject(o, "stderr_truncated", r->err_truncated);
    cJSON_AddStringToObject(o, "message", r->message);
    char *text = cJSON_PrintUnformatted(o);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(o);
}

static int sandbox_cmd_run(int argc, char **argv) {
    CliOpt opts[] = {
        {"--lang", "LANG", "python", "python, c or shell", NULL},
        {"--timeout", "S", "10", "wall-clock limit in seconds (CPU limit: ceil(S)+1)", NULL},
        {"--memory", "MB", "1024", "address-space limit in MiB", NULL},
        {"--stdin", "FILE", "", "file fed to the program's stdin; empty = no input", NULL},
        {"--output-cap", "BYTES", "1048576", "bytes kept per stream; more ends the run as output_limit", NULL},
        {"--tier", "T", "auto", "isolation tier: auto, 1 (namespaces) or 2 (seccomp, no namespaces)", NULL},
        {"--cgroup", "DIR", "", "cgroup v2 root for per-run cgroups: a delegated directory, auto or off "
                                "(empty = $GRPO_SANDBOX_CGROUP, else auto)", NULL},
        {0},
    };
    CliSpec spec = {"grpo sandbox run [options] FILE [ARG...]",
                    "Runs FILE (\"-\" = stdin) in the sandbox with the given arguments and prints one JSON "
                    "object: status, exit_code, stdout, stderr, wall_ms, cpu_ms, isolation.",
                    opts, 1, 1 + 64};
    const char *pos[65];
    int npos;
    int rc = cli_parse(&spec, argc, argv, pos, &npos);
    if (rc == CLI_HELP) return 0;
    if (rc) return 2;
    SandboxConfig cfg = {0};
    long mem, capb;
    if (sandbox_lang_parse(cli_str(&spec, "--lang"), &cfg.lang) < 0) {
        fprintf(stderr, "grpo sandbox: --lang: '%s' is not python, c or shell\n", cli_str(&spec, "--lang"));
        return 2;
    }
    if (cli_double(&spec, "--timeout", &cfg.timeout_s) || cli_long(&spec, "--memory", &mem) ||
        cli_long(&spec, "--output-cap", &capb))
        return 2;
    if (cfg.timeout_s <= 0 || mem <= 0 || capb <= 0) {
        fprintf(stderr, "grpo sandbox: --timeout, --memory and --output-cap must be positive\n");
        return 2;
    }
    cfg.memory_mb = mem;
    cfg.output_cap = (size_t)capb;
    const char *tier = cli_str(&spec, "--tier");
    if (!strcmp(tier, "auto")) cfg.tier = SANDBOX_TIER_AUTO;
    else if (!strcmp(tier, "1")) cfg.tier = SANDBOX_TIER_NAMESPACES;
    else if (!strcmp(tier, "2")) cfg.tier = SANDBOX_TIER_SECCOMP;
    else {
        fprintf(stderr, "grpo sandbox: --tier: '%s' is not auto, 1 or 2\n", tier);
        return 2;
    }
    const char *cgroot = cli_str(&spec, "--cgroup");
    if (cgroot[0]) setenv("GRPO_SANDBOX_CGROUP", cgroot, 1);  // read by the probe, once
    size_t code_len, in_len = 0;
    char *code = slurp(pos[0], &code_len), *in = NULL;
    if (!code) return 2;
    if (memchr(code, 0, code_len)) {
        fprintf(stderr, "grpo sandbox: %s contains a NUL byte\n", pos[0]);
        free(code);
        return 2;
    }
    const char *in_path = cli_str(&spec, "--stdin");
    if (in_path[0] && !(in = slurp(in_path, &in_len))) {
        free(code);
        return 2;
    }
    cfg.code = code;
    cfg.stdin_data = in;
    cfg.stdin_len = in_len;
    cfg.args = (const char *const *)(pos + 1);
    cfg.nargs = npos - 1;
    SandboxResult res;
    Err err = {0};
    rc = 0;
    if (sandbox_run(&cfg, &res, &err) < 0) {
        fprintf(stderr, "grpo sandbox: %s\n", err.msg);
        rc = err.code == ERR_INPUT ? 2 : 1;
    } else {
        print_result(&res);
        rc = res.status == SANDBOX_ERROR ? 1 : 0;
        sandbox_result_free(&res);
    }
    free(code);
    free(in);
    return rc;
}

int cmd_sandbox(int argc, char **argv) {
    const char *usage = "usage: grpo sandbox run [options] FILE [ARG...]   run a program, print JSON\n"
                        "       grpo sandbox probe                         show the isolation tiers available here\n";
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "run")) return sandbox_cmd_run(argc - 1, argv + 1);
    if (!strcmp(argv[1], "probe")) {
        int t = sandbox_probe();
        printf("best tier: %d (%s)\n%s\n", t, t == 1 ? "namespaces" : t == 2 ? "seccomp" : "none",
               sandbox_probe_report());
        return t < 0 ? 1 : 0;
    }
    fprintf(stderr, "grpo sandbox: unknown action '%s'\n%s", argv[1], usage);
    return 2;
}
