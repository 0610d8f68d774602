/* mathans: see mathans.h. */
#include "mathans.h"

#include <complex.h>
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ANS_MAX = 2048, NPOINTS = 3, MAX_ITEMS = 64 };
#define SET_OPEN '\x01'  /* \{ after cleaning */
#define SET_CLOSE '\x02' /* \} after cleaning */

/* ---- extraction ---------------------------------------------------------- */

static void put(char *out, size_t n, const char *s, size_t len) {
    while (len && isspace((unsigned char)*s)) { s++; len--; }
    while (len && isspace((unsigned char)s[len - 1])) len--;
    if (len >= n) len = n - 1;
    memcpy(out, s, len);
    out[len] = 0;
}

/* The content of the brace group starting at s ('{'); its length or -1. */
static long group_len(const char *s) {
    int depth = 0;
    for (long i = 0; s[i]; i++) {
        if (s[i] == '\\' && s[i + 1]) { i++; continue; }
        if (s[i] == '{') depth++;
        else if (s[i] == '}' && --depth == 0) return i - 1;
    }
    return -1;
}

static const char *last_of(const char *text, const char *needle) {
    const char *last = NULL;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle)) last = p;
    return last;
}

int mathans_boxed(const char *text, char *out, size_t n) {
    const char *b = last_of(text, "\\boxed"), *f = last_of(text, "\\fbox");
    const char *p = b > f ? b : f;
    if (!p) return 0;
    p += (p == b) ? 6 : 5;
    while (*p == ' ') p++;
    if (*p == '{') {
        long len = group_len(p);
        if (len < 0) return 0;
        put(out, n, p + 1, (size_t)len);
        return 1;
    }
    size_t len = strcspn(p, "$\n ");
    if (!len) return 0;
    put(out, n, p, len);
    return 1;
}

int mathans_gsm8k(const char *text, char *out, size_t n) {
    const char *p = last_of(text, "####");
    if (!p) return 0;
    p += 4;
    size_t len = strcspn(p, "\n");
    char tmp[ANS_MAX];
    size_t k = 0;
    for (size_t i = 0; i < len && k + 1 < sizeof tmp; i++)
        if (p[i] != ',' && p[i] != '$') tmp[k++] = p[i];
    tmp[k] = 0;
    put(out, n, tmp, k);
    return out[0] != 0;
}

int mathans_tag(const char *text, const char *tag, char *out, size_t n) {
    char open[64], close[64];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *p = last_of(text, open);
    if (!p) return 0;
    p += strlen(open);
    const char *e = strstr(p, close);
    if (!e) return 0;
    put(out, n, p, (size_t)(e - p));
    return 1;
}

int mathans_extract(const char *text, char *out, size_t n) {
    return mathans_boxed(text, out, n) || mathans_gsm8k(text, out, n) || mathans_tag(text, "answer", out, n);
}

/* ---- cleaning ------------------------------------------------------------ */

static void replace_all(char *s, const char *from, const char *to) {
    size_t fl = strlen(from), tl = strlen(to);
    char *p = s;
    while ((p = strstr(p, from))) {
        /* a command must not be a prefix of a longer one (\le vs \left) */
        if (from[0] == '\\' && isalpha((unsigned char)from[fl - 1]) && isalpha((unsigned char)p[fl])) {
            p += fl;
            continue;
        }
        if (strlen(s) - fl + tl >= ANS_MAX) return;
        memmove(p + tl, p + fl, strlen(p + fl) + 1);
        memcpy(p, to, tl);
        p += tl;
    }
}

/* \text{...}: a unit after a number is dropped, other text is unwrapped. */
static void unwrap_text(char *s) {
    static const char *const wraps[] = {"\\textbf", "\\textit", "\\mathrm", "\\mathbf", "\\mbox",
                                        "\\operatorname", "\\textrm", "\\text", NULL};
    for (int w = 0; wraps[w]; w++) {
        size_t wl = strlen(wraps[w]);
        char *p;
        while ((p = strstr(s, wraps[w]))) {
            while (p[wl] == ' ') memmove(p + wl, p + wl + 1, strlen(p + wl));
            if (p[wl] != '{') break;
            long len = group_len(p + wl);
            if (len < 0) return;
            char *q = p;
            while (q > s && q[-1] == ' ') q--;
            int unit = q > s && (isdigit((unsigned char)q[-1]) || q[-1] == '}' || q[-1] == ')');
            char *end = p + wl + 1 + len + 1; /* past the closing brace */
            if (unit && end[0] == '^') { /* m^2 after a unit goes with it */
                end++;
                if (*end == '{') { long l = group_len(end); end += l < 0 ? 0 : l + 2; }
                else if (*end) end++;
            }
            if (unit) {
                memmove(p, end, strlen(end) + 1);
            } else { /* text is compared without case, as math-verify does: \text{(C)} = (c) */
                for (long k = 0; k < len; k++) p[k] = (char)tolower((unsigned char)p[wl + 1 + k]);
                memmove(p + len, end, strlen(end) + 1);
            }
        }
    }
}

static int is_thousands(const char *s0) {
    char s[ANS_MAX];
    size_t k = 0;
    for (; *s0 && k + 1 < sizeof s; s0++) if (*s0 != ' ') s[k++] = *s0;
    s[k] = 0;
    const char *p = s + (*s == '-');
    int lead = 0;
    while (isdigit((unsigned char)p[lead])) lead++;
    if (lead < 1 || lead > 3 || p[lead] != ',') return 0;
    p += lead;
    while (*p == ',') {
        for (int k = 1; k <= 3; k++) if (!isdigit((unsigned char)p[k])) return 0;
        p += 4;
    }
    if (*p == '.') { p++; while (isdigit((unsigned char)*p)) p++; }
    return *p == 0;
}

static void clean(const char *in, char *s) {
    put(s, ANS_MAX, in, strlen(in));
    static const char *const rep[][2] = {
        {"\\\\", ","},     {"&", ","},          {"\\left", ""},     {"\\right", ""},     {"\\!", ""},       {"\\,", ""},          {"\\;", ""},
        {"\\:", ""},        {"\\ ", " "},        {"\\qquad", " "},  {"\\quad", " "},      {"\\displaystyle", ""},
        {"\\dfrac", "\\frac"}, {"\\tfrac", "\\frac"}, {"\\cdot", "*"}, {"\\times", "*"}, {"\\div", "/"},
        {"^{\\circ}", ""},  {"^\\circ", ""},     {"\\circ", ""},    {"\xc2\xb0", ""},     {"\\degree", ""},
        {"\\$", ""},        {"$", ""},           {"\\%", "%"},      {"{,}", ","},         {"\\{", "\x01"},
        {"\\}", "\x02"},    {"\\lbrace", "\x01"}, {"\\rbrace", "\x02"}, {"\\dots", ""},  {"\\ldots", ""},
        {"\\tfrac", "\\frac"}, {"\\mathrm{d}", "d"}, {"\\le", "<="}, {"\\ge", ">="}, {"\n", " "},
    };
    for (size_t i = 0; i < sizeof rep / sizeof rep[0]; i++) replace_all(s, rep[i][0], rep[i][1]);
    unwrap_text(s);
    /* "x \in [a, b]" -> "[a, b]" */
    char *in_at = strstr(s, "\\in");
    if (in_at && !isalpha((unsigned char)in_at[3])) memmove(s, in_at + 3, strlen(in_at + 3) + 1);
    size_t len = strlen(s);
    while (len && (s[len - 1] == '.' || isspace((unsigned char)s[len - 1]))) s[--len] = 0;
    char tmp[ANS_MAX];
    put(tmp, sizeof tmp, s, len);
    strcpy(s, tmp);
    if (is_thousands(s)) {
        char *w = s;
        for (char *r = s; *r; r++) if (*r != ',' && *r != ' ') *w++ = *r;
        *w = 0;
    }
}

void mathans_normalize(const char *answer, char *out, size_t n) {
    char s[ANS_MAX];
    clean(answer, s);
    for (char *p = s; *p; p++) {
        if (*p == SET_OPEN) *p = '{';
        if (*p == SET_CLOSE) *p = '}';
    }
    put(out, n, s, strlen(s));
}

/* ---- expressions ----------------------------------------------------------- */

typedef double complex cx;

typedef struct P {
    const char *s;
    int i, err, point, nvars;
    int depth; /* nesting of expr(): bounded so hostile input cannot exhaust the stack */
} P;

static int peek(P *p) {
    while (p->s[p->i] == ' ' || p->s[p->i] == '\t') p->i++;
    return (unsigned char)p->s[p->i];
}

static cx expr(P *p);
static cx unary(P *p);

/* A variable's value at the current point: fixed per name, in (0.5, 2.5).
 * Names are case-insensitive, as in math-verify (x + Y equals x + y). */
static cx var_value(P *p, const char *name, size_t len) {
    uint64_t h = 1469598103934665603ull;
    for (size_t k = 0; k < len; k++) h = (h ^ (unsigned char)tolower((unsigned char)name[k])) * 1099511628211ull;
    h ^= (uint64_t)(p->point + 1) * 0x9e3779b97f4a7c15ull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    p->nvars++;
    return 0.5 + 2.0 * (double)(h % 1000003) / 1000003.0;
}

static int cmd_name(P *p, char *name, size_t n) {
    size_t k = 0;
    p->i++; /* backslash */
    while (isalpha((unsigned char)p->s[p->i])) {
        if (k + 1 < n) name[k++] = p->s[p->i];
        p->i++;
    }
    name[k] = 0;
    return k > 0;
}

/* A LaTeX argument: {group} or one token (digit, letter, command). */
static cx arg(P *p) {
    int c = peek(p);
    if (c == '{') {
        p->i++;
        cx v = expr(p);
        if (peek(p) != '}') { p->err = 1; return 0; }
        p->i++;
        return v;
    }
    if (isdigit(c)) { p->i++; return c - '0'; }
    if (isalpha(c)) { p->i++; return var_value(p, p->s + p->i - 1, 1); }
    if (c == '\\' || c == '(') return unary(p);
    p->err = 1;
    return 0;
}

static cx c_cot(cx x) { return 1 / ctan(x); }
static cx c_sec(cx x) { return 1 / ccos(x); }
static cx c_csc(cx x) { return 1 / csin(x); }

static cx func(P *p, const char *name) {
    static const struct { const char *n; cx (*f)(cx); } fns[] = {
        {"sin", csin}, {"cos", ccos}, {"tan", ctan}, {"ln", clog}, {"log", clog}, {"exp", cexp},
        {"arcsin", casin}, {"arccos", cacos}, {"arctan", catan}, {"sinh", csinh}, {"cosh", ccosh},
        {"cot", c_cot}, {"sec", c_sec}, {"csc", c_csc},
    };
    for (size_t k = 0; k < sizeof fns / sizeof fns[0]; k++)
        if (!strcmp(name, fns[k].n)) return fns[k].f(peek(p) == '(' || peek(p) == '{' ? arg(p) : unary(p));
    p->err = 1;
    return 0;
}

static cx command(P *p) {
    char name[32];
    if (!cmd_name(p, name, sizeof name)) { p->err = 1; return 0; }
    if (!strcmp(name, "frac")) {
        cx a = arg(p), b = arg(p);
        return a / b;
    }
    if (!strcmp(name, "sqrt")) {
        cx idx = 2;
        if (peek(p) == '[') {
            p->i++;
            idx = expr(p);
            if (peek(p) != ']') { p->err = 1; return 0; }
            p->i++;
        }
        cx v = arg(p);
        if (idx == 2) return csqrt(v);
        if (cimag(v) == 0 && creal(v) < 0 && fmod(creal(idx), 2) == 1) return -cpow(-v, 1 / idx);
        return cpow(v, 1 / idx);
    }
    if (!strcmp(name, "pi")) return M_PI;
    if (!strcmp(name, "infty")) return INFINITY;
    if (!strcmp(name, "binom")) {
        cx n = arg(p), k = arg(p);
        return tgamma(creal(n) + 1) / (tgamma(creal(k) + 1) * tgamma(creal(n - k) + 1));
    }
    static const char *const greek[] = {"alpha", "beta", "gamma", "delta", "theta", "phi", "lambda",
                                        "mu", "omega", "sigma", "tau", "epsilon", "rho", NULL};
    for (int k = 0; greek[k]; k++)
        if (!strcmp(name, greek[k])) return var_value(p, name, strlen(name));
    return func(p, name);
}

static cx number(P *p) {
    double v = 0, scale = 0;
    int any = 0;
    for (;; p->i++) {
        char c = p->s[p->i];
        if (isdigit((unsigned char)c)) {
            any = 1;
            if (scale) { v += (c - '0') * scale; scale /= 10; }
            else v = v * 10 + (c - '0');
        } else if (c == '.' && !scale && isdigit((unsigned char)p->s[p->i + 1])) {
            scale = 0.1;
        } else if (c == '.' && !scale && any) {
            scale = 0.1; /* "5." */
        } else {
            break;
        }
    }
    if (!any) p->err = 1;
    if (p->s[p->i] == '_') { /* 52_8: a base subscript; math-verify reads the digits only */
        p->i++;
        if (p->s[p->i] == '{') { long l = group_len(p->s + p->i); p->i += l < 0 ? 0 : (int)l + 2; }
        else if (isdigit((unsigned char)p->s[p->i])) while (isdigit((unsigned char)p->s[p->i])) p->i++;
    }
    return v;
}

static cx primary(P *p) {
    int c = peek(p);
    if (isdigit(c) || c == '.') return number(p);
    if (c == '(' || c == '{' || c == '[') {
        int close = c == '(' ? ')' : c == '{' ? '}' : ']';
        p->i++;
        cx v = expr(p);
        if (peek(p) != close) { p->err = 1; return 0; }
        p->i++;
        return v;
    }
    if (c == '|') {
        p->i++;
        cx v = expr(p);
        if (peek(p) != '|') { p->err = 1; return 0; }
        p->i++;
        return cabs(v);
    }
    if (isalpha(c)) {
        size_t start = (size_t)p->i++;
        if (p->s[p->i] == '_') { /* x_1, x_{12} */
            p->i++;
            if (p->s[p->i] == '{') { long l = group_len(p->s + p->i); if (l < 0) { p->err = 1; return 0; } p->i += (int)l + 2; }
            else if (p->s[p->i]) p->i++;
        }
        return var_value(p, p->s + start, (size_t)p->i - start);
    }
    if (c == '\\') return command(p);
    p->err = 1;
    return 0;
}

static cx postfix(P *p) {
    cx v = primary(p);
    for (;;) {
        int c = peek(p);
        if (c == '!') {
            p->i++;
            double r = creal(v);
            if (cimag(v) != 0 || r < 0 || r != floor(r) || r > 170) { p->err = 1; return 0; }
            v = tgamma(r + 1);
        } else if (c == '%') {
            p->i++;
            v /= 100;
        } else {
            return v;
        }
    }
}

static cx power(P *p) {
    cx b = postfix(p);
    if (peek(p) != '^') return b;
    p->i++;
    cx e = (peek(p) == '{') ? arg(p) : (peek(p) == '-' || peek(p) == '+') ? unary(p) : arg(p);
    if (cimag(b) == 0 && cimag(e) == 0 && (creal(b) >= 0 || creal(e) == floor(creal(e))))
        return pow(creal(b), creal(e));
    return cpow(b, e);
}

static cx unary(P *p) {
    int c = peek(p);
    if (c == '-') { p->i++; return -unary(p); } /* component-wise: safe with inf */
    if (c == '+') { p->i++; return unary(p); }
    return power(p);
}

static int starts_primary(int c) {
    return isdigit(c) || isalpha(c) || c == '(' || c == '{' || c == '\\' || c == '.';
}

static cx term(P *p) {
    cx v = unary(p);
    while (!p->err) {
        int c = peek(p);
        if (c == '*') { p->i++; v *= unary(p); }
        else if (c == '/') { p->i++; v /= unary(p); }
        else if (starts_primary(c)) v *= power(p);
        else break;
    }
    return v;
}

static cx expr(P *p) {
    if (++p->depth > 200) { p->err = 1; return 0; }
    cx v = term(p);
    while (!p->err) {
        int c = peek(p);
        if (c == '+') { p->i++; v += term(p); }
        else if (c == '-') { p->i++; v -= term(p); }
        else break;
    }
    p->depth--;
    return v;
}

/* Evaluates s at every point; returns 1 when it parses completely. */
static int eval_points(const char *s, cx v[NPOINTS], int *has_vars) {
    for (int k = 0; k < NPOINTS; k++) {
        P p = {.s = s, .point = k};
        v[k] = expr(&p);
        if (p.err || peek(&p) != 0) return 0;
        *has_vars = p.nvars > 0;
        if (!p.nvars) { for (int j = 1; j < NPOINTS; j++) v[j] = v[0]; break; }
    }
    return 1;
}

/* constant: both sides have no variables (then the rounding rule applies). */
static int close_values(cx a, cx b, int constant) {
    double ar = creal(a), br = creal(b), ai = cimag(a), bi = cimag(b);
    if (isinf(ar) || isinf(br)) return ar == br;
    if (isnan(ar) || isnan(br) || isnan(ai) || isnan(bi)) return 0;
    double scale = fmax(1.0, fmax(cabs(a), cabs(b)));
    if (!constant) return cabs(a - b) <= 1e-9 * scale;
    if (cabs(a - b) <= 1e-12 * scale) return 1;
    /* an integer is compared exactly, as math-verify does (3 is not 3.0000001,
     * 12345678901 is not 12345678902); other values round to 6 decimals */
    if (ai == 0 && bi == 0 && (ar == floor(ar) || br == floor(br))) return 0;
    if (fabs(ar) > 1e9 || fabs(br) > 1e9) return 0;
    return round(ar * 1e6) == round(br * 1e6) && round(ai * 1e6) == round(bi * 1e6);
}

/* ---- structure ---------------------------------------------------------- */

static int is_open(int c) { return c == '(' || c == '[' || c == '{' || c == SET_OPEN; }
static int is_close(int c) { return c == ')' || c == ']' || c == '}' || c == SET_CLOSE; }

/* Splits s at top-level separators sep; returns the number of items. */
static int split_top(char *s, const char *seps, char *items[MAX_ITEMS]) {
    int n = 0, depth = 0;
    items[n++] = s;
    for (char *p = s; *p; p++) {
        if (is_open((unsigned char)*p)) depth++;
        else if (is_close((unsigned char)*p)) depth--;
        else if (depth == 0 && strchr(seps, *p)) {
            if (n == MAX_ITEMS) return -1;
            *p = 0;
            items[n++] = p + 1;
        }
    }
    return n;
}

/* Does the bracket at s[0] close at the last character? */
static int encloses(const char *s) {
    size_t len = strlen(s);
    if (len < 2 || !is_open((unsigned char)s[0]) || !is_close((unsigned char)s[len - 1])) return 0;
    int depth = 0;
    for (size_t i = 0; i < len; i++) {
        if (is_open((unsigned char)s[i])) depth++;
        else if (is_close((unsigned char)s[i]) && --depth == 0 && i != len - 1) return 0;
    }
    return 1;
}

typedef struct Shape {
    char kind[3]; /* "" scalar, "()", "[)", "{}" (set), "L" bare list, "M" matrix */
    int n;
    char *items[MAX_ITEMS];
    char buf[ANS_MAX];
} Shape;

static void shape_of(const char *answer, Shape *sh) {
    clean(answer, sh->buf);
    char *s = sh->buf;
    sh->kind[0] = 0;
    char *beg = strstr(s, "\\begin{");
    if (beg) {
        char *body = strchr(beg + 7, '}');
        char *end = body ? strstr(body, "\\end{") : NULL;
        if (body && end) {
            *end = 0;
            for (char *q = body + 1; *q; q++) if (*q == '&') *q = ',';
            char *rows = body + 1;
            replace_all(rows, "\\\\", ",");
            sh->n = split_top(rows, ",", sh->items);
            strcpy(sh->kind, "M");
            return;
        }
    }
    size_t len = strlen(s);
    if (encloses(s)) {
        char open = s[0], close = s[len - 1];
        s[len - 1] = 0;
        int n = split_top(s + 1, ",", sh->items);
        if (n >= 2 || open == SET_OPEN) {
            sh->n = n;
            sh->kind[0] = open == SET_OPEN ? '{' : open;
            sh->kind[1] = close == SET_CLOSE ? '}' : close;
            sh->kind[2] = 0;
            return;
        }
        s[len - 1] = close; /* a parenthesised scalar */
    }
    sh->n = split_top(s, ",", sh->items);
    if (sh->n >= 2) { strcpy(sh->kind, "L"); return; }
    sh->n = 1;
    sh->items[0] = s;
}

/* "y = 3x" -> "3x" when the left side is one variable; "a = b" -> "a-(b)". */
static void drop_lhs(const char *s, char *out) {
    const char *eq = strchr(s, '=');
    if (!eq || strchr(eq + 1, '=') || eq[-1] == '<' || eq[-1] == '>') { strcpy(out, s); return; }
    const char *p = s;
    while (*p == ' ') p++;
    int simple = isalpha((unsigned char)*p) || *p == '\\';
    if (*p == '\\') p++;
    while (simple && (isalnum((unsigned char)*p) || *p == '_' || *p == '{' || *p == '}' || *p == ' ') && p < eq) p++;
    if (simple && p == eq) {
        strcpy(out, eq + 1);
    } else {
        snprintf(out, ANS_MAX, "%.*s-(%s)", (int)(eq - s), s, eq + 1);
    }
}

static int texty(const char *s) {
    int letters = 0;
    for (; *s; s++) {
        if (isalpha((unsigned char)*s)) letters++;
        else if (*s != ' ' && *s != '\'' && *s != '-') return 0;
    }
    return letters >= 2;
}

static void squash(const char *s, char *out) {
    size_t k = 0;
    for (; *s && k + 1 < ANS_MAX; s++)
        if (!isspace((unsigned char)*s) && *s != '{' && *s != '}') out[k++] = (char)tolower((unsigned char)*s);
    out[k] = 0;
}

static int expr_equal(const char *a, const char *b) {
    cx va[NPOINTS], vb[NPOINTS];
    int xa = 0, xb = 0;
    if (eval_points(a, va, &xa) && eval_points(b, vb, &xb)) {
        for (int k = 0; k < NPOINTS; k++)
            if (!close_values(va[k], vb[k], !xa && !xb)) return 0;
        return 1;
    }
    char sa[ANS_MAX], sb[ANS_MAX];
    squash(a, sa);
    squash(b, sb);
    return sa[0] && !strcmp(sa, sb);
}

static int strip_percent(const char *s, char *out) {
    size_t n = strlen(s);
    while (n && s[n - 1] == ' ') n--;
    if (!n || s[n - 1] != '%') return 0;
    snprintf(out, ANS_MAX, "%.*s", (int)(n - 1), s);
    return 1;
}

static int item_equal(const char *a0, const char *b0) {
    char a[ANS_MAX], b[ANS_MAX], t[ANS_MAX];
    drop_lhs(a0, a);
    drop_lhs(b0, b);
    if (texty(a) || texty(b)) {
        char sa[ANS_MAX], sb[ANS_MAX];
        squash(a, sa);
        squash(b, sb);
        if (!strcmp(sa, sb)) return 1;
    }
    if (expr_equal(a, b)) return 1;
    /* "50%" also matches 50 (math-verify accepts either reading) */
    if (strip_percent(a, t) && expr_equal(t, b)) return 1;
    if (strip_percent(b, t) && expr_equal(a, t)) return 1;
    return 0;
}

static int unordered_equal(const Shape *a, const Shape *b) {
    int used[MAX_ITEMS] = {0};
    for (int i = 0; i < a->n; i++) {
        int found = 0;
        for (int j = 0; j < b->n && !found; j++)
            if (!used[j] && item_equal(a->items[i], b->items[j])) used[j] = found = 1;
        if (!found) return 0;
    }
    return 1;
}

int mathans_equal(const char *gold, const char *pred) {
    if (!gold || !pred) return 0;
    Shape *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    int eq = 0;
    if (!a || !b) goto out;
    shape_of(gold, a);
    shape_of(pred, b);
    if (a->n < 0 || b->n < 0 || a->n != b->n) goto out;
    int set_a = !strcmp(a->kind, "{}") || !strcmp(a->kind, "L");
    int set_b = !strcmp(b->kind, "{}") || !strcmp(b->kind, "L");
    if (set_a && set_b) { eq = unordered_equal(a, b); goto out; }
    int tuple_a = !strcmp(a->kind, "()") || !strcmp(a->kind, "L");
    int tuple_b = !strcmp(b->kind, "()") || !strcmp(b->kind, "L");
    if (strcmp(a->kind, b->kind) && !(tuple_a && tuple_b)) goto out;
    eq = 1;
    for (int i = 0; i < a->n && eq; i++) eq = item_equal(a->items[i], b->items[i]);
out:
    free(a);
    free(b);
    return eq;
}

int mathans_number(const char *answer, double *value) {
    Shape *sh = malloc(sizeof *sh);
    if (!sh) return 0;
    shape_of(answer, sh);
    int ok = 0;
    cx v[NPOINTS];
    int vars = 0;
    if (sh->n == 1 && !sh->kind[0] && eval_points(sh->items[0], v, &vars) && !vars && cimag(v[0]) == 0) {
        *value = creal(v[0]);
        ok = 1;
    }
    free(sh);
    return ok;
}
