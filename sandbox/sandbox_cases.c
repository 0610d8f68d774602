/* sandbox_cases: see sandbox_cases.h. */
#define _GNU_SOURCE
#include "sandbox_cases.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* A text seen as lines: [begin, end) of each stripped line. */
typedef struct Lines {
    const char **b, **e;
    int n;
} Lines;

static int lines_split(const char *s, Lines *L) {
    int cap = 16;
    L->n = 0;
    L->b = malloc(cap * sizeof *L->b);
    L->e = malloc(cap * sizeof *L->e);
    if (!L->b || !L->e) return -1;
    for (const char *p = s;;) {
        const char *nl = strchr(p, '\n');
        const char *end = nl ? nl : p + strlen(p);
        const char *b = p, *e = end;
        while (b < e && isspace((unsigned char)*b)) b++;
        while (e > b && isspace((unsigned char)e[-1])) e--;
        if (L->n == cap) {
            cap *= 2;
            const char **nb = realloc(L->b, cap * sizeof *nb);
            if (nb) L->b = nb;
            const char **ne = realloc(L->e, cap * sizeof *ne);
            if (ne) L->e = ne;
            if (!nb || !ne) return -1;
        }
        L->b[L->n] = b;
        L->e[L->n] = e;
        L->n++;
        if (!nl) break;
        p = nl + 1;
    }
    while (L->n > 0 && L->b[L->n - 1] == L->e[L->n - 1]) L->n--;  // trailing empty lines
    return 0;
}

static void lines_free(Lines *L) {
    free(L->b);
    free(L->e);
}

/* Parses [b, e) entirely as a number; *is_int when it has no '.', exponent, inf or nan. */
static int token_number(const char *b, const char *e, double *v, int *is_int) {
    char buf[128];
    size_t n = (size_t)(e - b);
    if (n == 0 || n >= sizeof buf) return 0;
    memcpy(buf, b, n);
    buf[n] = 0;
    char *end;
    errno = 0;
    *v = strtod(buf, &end);
    if (end != buf + n || errno == ERANGE || !isfinite(*v)) return 0;
    *is_int = strpbrk(buf, ".eExXpP") == NULL;
    return 1;
}

static int tokens_match(const char *b1, const char *e1, const char *b2, const char *e2, double tol) {
    for (;;) {
        while (b1 < e1 && isspace((unsigned char)*b1)) b1++;
        while (b2 < e2 && isspace((unsigned char)*b2)) b2++;
        if (b1 == e1 || b2 == e2) return b1 == e1 && b2 == e2;
        const char *t1 = b1, *t2 = b2;
        while (t1 < e1 && !isspace((unsigned char)*t1)) t1++;
        while (t2 < e2 && !isspace((unsigned char)*t2)) t2++;
        int same = t1 - b1 == t2 - b2 && !memcmp(b1, b2, (size_t)(t1 - b1));
        if (!same) {
            double x, y;
            int xi, yi;
            if (!token_number(b1, t1, &x, &xi) || !token_number(b2, t2, &y, &yi)) return 0;
            if (xi && yi) return 0;  // two integers must be written the same way
            if (fabs(x - y) > tol * fmax(1.0, fabs(x))) return 0;
        }
        b1 = t1;
        b2 = t2;
    }
}

int sandbox_output_matches(const char *expected, const char *actual, double tol) {
    Lines a = {0}, b = {0};
    int ok = lines_split(expected, &a) == 0 && lines_split(actual, &b) == 0 && a.n == b.n;
    for (int i = 0; ok && i < a.n; i++) {
        size_t la = (size_t)(a.e[i] - a.b[i]), lb = (size_t)(b.e[i] - b.b[i]);
        if (la == lb && !memcmp(a.b[i], b.b[i], la)) continue;
        ok = tokens_match(a.b[i], a.e[i], b.b[i], b.e[i], tol);
    }
    lines_free(&a);
    lines_free(&b);
    return ok;
}

char *sandbox_assert_program(const char *program, const char *test, const char *entry_point, char nonce[33],
                             Err *err) {
    unsigned char raw[16];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
        err_set(err, ERR_WORK, "sandbox: getrandom for the nonce: %s", strerror(errno));
        return NULL;
    }
    for (int i = 0; i < 16; i++) snprintf(nonce + 2 * i, 3, "%02x", raw[i]);
    const char *fmt = "%s\n\n%s\n\ncheck(%s)\nprint('\\n%s', flush=True)\n";
    size_t n = strlen(fmt) + strlen(program) + strlen(test) + strlen(entry_point) + 33;
    char *s = malloc(n);
    if (!s) {
        err_set(err, ERR_WORK, "sandbox: out of memory building an assert program");
        return NULL;
    }
    snprintf(s, n, fmt, program, test, entry_point, nonce);
    return s;
}

int sandbox_assert_passed(const SandboxResult *r, const char *nonce) {
    if (r->status != SANDBOX_OK || r->exit_code != 0 || !r->out || r->out_truncated) return 0;
    size_t k = strlen(nonce);
    for (const char *p = r->out; (p = strstr(p, nonce)); p += k) {
        int starts = p == r->out || p[-1] == '\n';
        int ends = p[k] == 0 || p[k] == '\n';
        if (starts && ends) return 1;
    }
    return 0;
}

int sandbox_run_cases(SandboxPool *pool, const SandboxConfig *base, const SandboxCase *cases, int n, double tol,
                      int *passed, Err *err) {
    if (n <= 0) return 0;
    SandboxConfig *cfgs = calloc((size_t)n, sizeof *cfgs);
    SandboxResult *res = calloc((size_t)n, sizeof *res);
    if (!cfgs || !res) {
        free(cfgs);
        free(res);
        return err_set(err, ERR_WORK, "sandbox: out of memory for %d cases", n);
    }
    for (int i = 0; i < n; i++) {
        cfgs[i] = *base;
        cfgs[i].stdin_data = cases[i].input;
        cfgs[i].stdin_len = cases[i].input ? strlen(cases[i].input) : 0;
    }
    int rc = 0;
    if (pool) {
        rc = sandbox_pool_run(pool, cfgs, res, n, err);
    } else {
        for (int i = 0; i < n && rc == 0; i++) rc = sandbox_run(&cfgs[i], &res[i], err);
    }
    int npass = 0;
    for (int i = 0; i < n; i++) {
        passed[i] = rc == 0 && res[i].status == SANDBOX_OK && !res[i].out_truncated &&
                    sandbox_output_matches(cases[i].expected, res[i].out ? res[i].out : "", tol);
        npass += passed[i];
        sandbox_result_free(&res[i]);
    }
    free(cfgs);
    free(res);
    return rc < 0 ? -1 : npass;
}
