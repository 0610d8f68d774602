/* cli: see cli.h. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static CliOpt *find(const CliSpec *spec, const char *name, size_t len) {
    for (CliOpt *o = spec->opts; o && o->name; o++)
        if (strlen(o->name) == len && !strncmp(o->name, name, len)) return o;
    return NULL;
}

static void help(const CliSpec *spec) {
    printf("usage: %s\n\n%s\n", spec->usage, spec->summary);
    if (!spec->opts || !spec->opts->name) return;
    printf("\noptions:\n");
    for (CliOpt *o = spec->opts; o->name; o++) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", o->name, o->meta ? " " : "", o->meta ? o->meta : "");
        printf("  %-24s %s", left, o->help);
        if (o->meta) printf(" (default: %s)", o->def ? o->def : "none");
        printf("\n");
    }
    printf("  %-24s %s\n", "--help", "show this help");
}

int cli_parse(const CliSpec *spec, int argc, char **argv, const char **pos, int *npos) {
    *npos = 0;
    for (CliOpt *o = spec->opts; o && o->name; o++) o->val = o->meta ? o->def : "0";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { help(spec); return CLI_HELP; }
        if (a[0] == '-' && a[1] && (a[1] == '-' ? a[2] != 0 : !(a[1] >= '0' && a[1] <= '9'))) { /* --name or -k */
            const char *eq = strchr(a, '=');
            CliOpt *o = find(spec, a, eq ? (size_t)(eq - a) : strlen(a));
            if (!o) {
                fprintf(stderr, "grpo: unknown option '%s' (see %s --help)\n", a, spec->usage);
                return CLI_BAD;
            }
            if (!o->meta) {
                if (eq) { fprintf(stderr, "grpo: option %s takes no value\n", o->name); return CLI_BAD; }
                o->val = "1";
            } else if (eq) {
                o->val = eq + 1;
            } else if (i + 1 < argc) {
                o->val = argv[++i];
            } else {
                fprintf(stderr, "grpo: option %s needs a value (%s)\n", o->name, o->meta);
                return CLI_BAD;
            }
            continue;
        }
        if (*npos >= spec->max_pos) {
            fprintf(stderr, "grpo: unexpected argument '%s'\nusage: %s\n", a, spec->usage);
            return CLI_BAD;
        }
        pos[(*npos)++] = a;
    }
    if (*npos < spec->min_pos) {
        fprintf(stderr, "grpo: missing arguments\nusage: %s\n", spec->usage);
        return CLI_BAD;
    }
    return CLI_OK;
}

const char *cli_str(const CliSpec *spec, const char *name) {
    CliOpt *o = find(spec, name, strlen(name));
    return o ? o->val : NULL;
}

int cli_flag(const CliSpec *spec, const char *name) {
    const char *v = cli_str(spec, name);
    return v && !strcmp(v, "1");
}

int cli_require(const CliSpec *spec, const char *name) {
    const char *v = cli_str(spec, name);
    if (v && *v) return CLI_OK;
    fprintf(stderr, "grpo: %s is required\nusage: %s\n", name, spec->usage);
    return CLI_BAD;
}

int cli_long(const CliSpec *spec, const char *name, long *out) {
    const char *v = cli_str(spec, name);
    if (!v) { fprintf(stderr, "grpo: %s is required\n", name); return CLI_BAD; }
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end) {
        fprintf(stderr, "grpo: %s: '%s' is not an integer\n", name, v);
        return CLI_BAD;
    }
    *out = x;
    return CLI_OK;
}

int cli_double(const CliSpec *spec, const char *name, double *out) {
    const char *v = cli_str(spec, name);
    if (!v) { fprintf(stderr, "grpo: %s is required\n", name); return CLI_BAD; }
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end) {
        fprintf(stderr, "grpo: %s: '%s' is not a number\n", name, v);
        return CLI_BAD;
    }
    *out = x;
    return CLI_OK;
}
