/* template_jinja: the Jinja subset that chat templates in tokenizer_config.json
 * use, rendered as transformers does (ImmutableSandboxedEnvironment with
 * trim_blocks, lstrip_blocks, loopcontrols; tojson with ensure_ascii=False;
 * raise_exception; strftime_now). Three stages: the source is cut into text
 * and tags with Jinja's whitespace rules, tags are parsed into a small tree,
 * the tree is run over JSON-like values. All memory of one render lives in an
 * arena freed at the end. Unsupported constructs are errors naming them. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/xalloc.h"
#include "model/template.h"
#include "model/tokenizer_impl.h"

/* ---- arena -------------------------------------------------------------- */

typedef struct Chunk {
    struct Chunk *next;
    size_t used, cap;
    _Alignas(16) char data[];
} Chunk;

typedef struct Arena {
    Chunk *head;
} Arena;

static void *ar_alloc(Arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->head->used + n > a->head->cap) {
        size_t cap = n > 65536 ? n : 65536;
        Chunk *c = xmalloc(sizeof *c + cap);
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = a->head->data + a->head->used;
    a->head->used += n;
    return memset(p, 0, n);
}

static char *ar_strndup(Arena *a, const char *s, size_t n) {
    char *p = ar_alloc(a, n + 1);
    memcpy(p, s, n);
    return p;
}

static void ar_free(Arena *a) {
    for (Chunk *c = a->head, *n; c; c = n) { n = c->next; free(c); }
    a->head = NULL;
}

/* ---- values --------------------------------------------------------------- */

enum { J_UNDEF, J_NONE, J_BOOL, J_INT, J_FLOAT, J_STR, J_LIST, J_DICT, J_FUNC };
enum { F_NAMESPACE = 1, F_RAISE, F_RANGE, F_STRFTIME };

typedef struct JList JList;
typedef struct JDict JDict;

typedef struct JVal {
    int t;
    long long i; /* BOOL, INT, FUNC id */
    double f;
    const char *s; /* STR (not NUL-terminated) */
    size_t n;
    JList *l;
    JDict *d;
} JVal;

struct JList {
    JVal *v;
    size_t n, cap;
};

struct JDict { /* insertion-ordered; keys are strings */
    JVal *k, *v;
    size_t n, cap;
    int ns; /* a namespace(): attributes may be set */
};

static const JVal UNDEF = {.t = J_UNDEF}, NONE = {.t = J_NONE};

static JVal jstr(const char *s, size_t n) { return (JVal){.t = J_STR, .s = s, .n = n}; }
static JVal jbool(int b) { return (JVal){.t = J_BOOL, .i = !!b}; }
static JVal jint(long long i) { return (JVal){.t = J_INT, .i = i}; }

static void list_push(Arena *a, JList *l, JVal v) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        JVal *nv = ar_alloc(a, cap * sizeof *nv);
        if (l->n) memcpy(nv, l->v, l->n * sizeof *nv);
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = v;
}

static JVal *dict_find(const JDict *d, const char *k, size_t n) {
    for (size_t i = 0; d && i < d->n; i++)
        if (d->k[i].n == n && !memcmp(d->k[i].s, k, n)) return &d->v[i];
    return NULL;
}

static void dict_set(Arena *a, JDict *d, JVal k, JVal v) {
    JVal *p = dict_find(d, k.s, k.n);
    if (p) { *p = v; return; }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        JVal *nk = ar_alloc(a, cap * sizeof *nk), *nv = ar_alloc(a, cap * sizeof *nv);
        if (d->n) { memcpy(nk, d->k, d->n * sizeof *nk); memcpy(nv, d->v, d->n * sizeof *nv); }
        d->k = nk;
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = k;
    d->v[d->n++] = v;
}

static JVal from_json(Arena *a, const cJSON *j) {
    if (!j || cJSON_IsNull(j)) return NONE;
    if (cJSON_IsBool(j)) return jbool(cJSON_IsTrue(j));
    if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == (double)(long long)d && d < 9e15 && d > -9e15) return jint((long long)d);
        return (JVal){.t = J_FLOAT, .f = d};
    }
    if (cJSON_IsString(j)) return jstr(j->valuestring, strlen(j->valuestring));
    const cJSON *e;
    if (cJSON_IsArray(j)) {
        JList *l = ar_alloc(a, sizeof *l);
        cJSON_ArrayForEach(e, j) list_push(a, l, from_json(a, e));
        return (JVal){.t = J_LIST, .l = l};
    }
    JDict *d = ar_alloc(a, sizeof *d);
    cJSON_ArrayForEach(e, j) dict_set(a, d, jstr(e->string, strlen(e->string)), from_json(a, e));
    return (JVal){.t = J_DICT, .d = d};
}

static int truthy(JVal v) {
    switch (v.t) {
    case J_BOOL: case J_INT: return v.i != 0;
    case J_FLOAT: return v.f != 0;
    case J_STR: return v.n > 0;
    case J_LIST: return v.l->n > 0;
    case J_DICT: return v.d->n > 0;
    case J_FUNC: return 1;
    default: return 0;
    }
}

static int jequal(JVal a, JVal b) {
    if ((a.t == J_INT || a.t == J_BOOL || a.t == J_FLOAT) && (b.t == J_INT || b.t == J_BOOL || b.t == J_FLOAT))
        return (a.t == J_FLOAT ? a.f : (double)a.i) == (b.t == J_FLOAT ? b.f : (double)b.i);
    if (a.t != b.t) return 0;
    switch (a.t) {
    case J_UNDEF: case J_NONE: return 1;
    case J_STR: return a.n == b.n && !memcmp(a.s, b.s, a.n);
    case J_LIST:
        if (a.l->n != b.l->n) return 0;
        for (size_t i = 0; i < a.l->n; i++)
            if (!jequal(a.l->v[i], b.l->v[i])) return 0;
        return 1;
    case J_DICT:
        if (a.d->n != b.d->n) return 0;
        for (size_t i = 0; i < a.d->n; i++) {
            JVal *o = dict_find(b.d, a.d->k[i].s, a.d->k[i].n);
            if (!o || !jequal(a.d->v[i], *o)) return 0;
        }
        return 1;
    default: return a.i == b.i;
    }
}

/* ---- output: str() and tojson ---------------------------------------------- */

static void put(TokText *o, const char *s) { tok_text_append(o, s, strlen(s)); }

static void py_float(TokText *o, double f) {
    char b[64];
    snprintf(b, sizeof b, "%.17g", f);
    /* shortest repr that round-trips, as Python's repr */
    for (int p = 1; p <= 17; p++) {
        char c[64];
        snprintf(c, sizeof c, "%.*g", p, f);
        if (strtod(c, NULL) == f) { memcpy(b, c, sizeof c); break; }
    }
    put(o, b);
    if (!strpbrk(b, ".eninf")) put(o, ".0");
}

static void json_str(TokText *o, const char *s, size_t n) {
    put(o, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        switch (c) {
        case '"': put(o, "\\\""); break;
        case '\\': put(o, "\\\\"); break;
        case '\n': put(o, "\\n"); break;
        case '\r': put(o, "\\r"); break;
        case '\t': put(o, "\\t"); break;
        case '\b': put(o, "\\b"); break;
        case '\f': put(o, "\\f"); break;
        default:
            if (c < 0x20 || c == 0x7f) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                if (c == 0x7f) tok_text_append(o, (const char *)&c, 1); else put(o, esc);
            } else {
                tok_text_append(o, (const char *)&c, 1);
            }
        }
    }
    put(o, "\"");
}

/* json.dumps(v, ensure_ascii=False, indent=indent) (indent < 0: none). */
static void to_json(TokText *o, JVal v, int indent, int depth) {
    switch (v.t) {
    case J_UNDEF: case J_NONE: put(o, "null"); return;
    case J_BOOL: put(o, v.i ? "true" : "false"); return;
    case J_INT: { char b[32]; snprintf(b, sizeof b, "%lld", v.i); put(o, b); return; }
    case J_FLOAT: py_float(o, v.f); return;
    case J_STR: json_str(o, v.s, v.n); return;
    case J_FUNC: put(o, "null"); return;
    default: break;
    }
    int is_list = v.t == J_LIST;
    size_t n = is_list ? v.l->n : v.d->n;
    put(o, is_list ? "[" : "{");
    for (size_t i = 0; i < n; i++) {
        if (i) put(o, indent >= 0 ? "," : ", ");
        if (indent >= 0) {
            put(o, "\n");
            for (int k = 0; k < indent * (depth + 1); k++) put(o, " ");
        }
        if (!is_list) { json_str(o, v.d->k[i].s, v.d->k[i].n); put(o, ": "); }
        to_json(o, is_list ? v.l->v[i] : v.d->v[i], indent, depth + 1);
    }
    if (indent >= 0 && n) {
        put(o, "\n");
        for (int k = 0; k < indent * depth; k++) put(o, " ");
    }
    put(o, is_list ? "]" : "}");
}

static void py_repr_str(TokText *o, const char *s, size_t n) {
    int dq = memchr(s, '\'', n) && !memchr(s, '"', n);
    put(o, dq ? "\"" : "'");
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\\') put(o, "\\\\");
        else if (c == '\n') put(o, "\\n");
        else if (c == '\t') put(o, "\\t");
        else if (c == '\r') put(o, "\\r");
        else if (c == '\'' && !dq) put(o, "\\'");
        else tok_text_append(o, &c, 1);
    }
    put(o, dq ? "\"" : "'");
}

/* Python's str(v) (repr for items inside lists and dicts). */
static void to_str(TokText *o, JVal v, int repr) {
    switch (v.t) {
    case J_UNDEF: return;
    case J_NONE: put(o, "None"); return;
    case J_BOOL: put(o, v.i ? "True" : "False"); return;
    case J_INT: { char b[32]; snprintf(b, sizeof b, "%lld", v.i); put(o, b); return; }
    case J_FLOAT: py_float(o, v.f); return;
    case J_STR: if (repr) py_repr_str(o, v.s, v.n); else tok_text_append(o, v.s, v.n); return;
    case J_FUNC: put(o, "<function>"); return;
    case J_LIST:
        put(o, "[");
        for (size_t i = 0; i < v.l->n; i++) { if (i) put(o, ", "); to_str(o, v.l->v[i], 1); }
        put(o, "]");
        return;
    case J_DICT:
        put(o, "{");
        for (size_t i = 0; i < v.d->n; i++) {
            if (i) put(o, ", ");
            to_str(o, v.d->k[i], 1);
            put(o, ": ");
            to_str(o, v.d->v[i], 1);
        }
        put(o, "}");
        return;
    }
}

/* ---- template pieces: text and tags, with Jinja's whitespace rules ---------- */

enum { P_TEXT, P_VAR, P_BLOCK };

typedef struct Piece {
    int kind;
    const char *s; /* text (newlines normalized, in the arena) or the tag's inside */
    size_t n;
    int line;
} Piece;

typedef struct Render {
    Arena ar;
    Err *err;
    int failed;
    Piece *pc;
    size_t npc, ipc;
    TokText *out;
    int depth; /* block nesting while parsing */
} Render;

static int rfail(Render *r, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int rfail(Render *r, int line, const char *fmt, ...) {
    if (r->failed) return -1;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    err_set(r->err, ERR_INPUT, "chat template line %d: %s", line, msg);
    r->failed = 1;
    return -1;
}

static int line_of(const char *src, const char *p) {
    int l = 1;
    for (; src < p; src++) l += *src == '\n';
    return l;
}

static void piece_push(Render *r, int kind, const char *s, size_t n, int line) {
    if (kind == P_TEXT && !n) return;
    if (r->npc % 64 == 0) {
        Piece *np = ar_alloc(&r->ar, (r->npc + 64) * sizeof *np);
        if (r->npc) memcpy(np, r->pc, r->npc * sizeof *np);
        r->pc = np;
    }
    r->pc[r->npc++] = (Piece){kind, s, n, line};
}

/* Text between tags: \r\n and \r become \n, as Jinja's lexer does. */
static void push_text(Render *r, const char *s, size_t n, int line) {
    char *t = ar_alloc(&r->ar, n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r') { t[k++] = '\n'; if (i + 1 < n && s[i + 1] == '\n') i++; }
        else t[k++] = s[i];
    }
    piece_push(r, P_TEXT, t, k, line);
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* Finds the end marker of a tag that starts at p (after "{{" / "{%"), skipping
 * string literals and brackets ({{ {'a': {'b': 1}} }} ends at the last "}}"). */
static const char *tag_end(const char *p, const char *end, char close) {
    int depth = 0;
    for (; p + 1 < end; p++) {
        if (*p == '\'' || *p == '"') {
            char q = *p;
            for (p++; p < end && *p != q; p++)
                if (*p == '\\') p++;
            continue;
        }
        if (depth == 0 && *p == close && p[1] == '}') return p;
        if (*p == '{' || *p == '[' || *p == '(') depth++;
        else if ((*p == '}' || *p == ']' || *p == ')') && depth > 0) depth--;
    }
    return NULL;
}

static int scan(Render *r, const char *src, size_t len) {
    const char *p = src, *end = src + len;
    if (len && end[-1] == '\n') end--; /* keep_trailing_newline=False */
    int strip_next = 0, trim_nl = 0, line_start = 1;
    while (p <= end) {
        const char *t = p;
        while (t + 1 < end && !(t[0] == '{' && (t[1] == '{' || t[1] == '%' || t[1] == '#'))) t++;
        if (t + 1 >= end) t = end;
        const char *ts = p, *te = t;
        if (strip_next) while (ts < te && is_ws(*ts)) ts++;
        else if (trim_nl && ts < te && *ts == '\n') ts++;
        if (t < end) {
            char kind = t[1], mark = t + 2 < end ? t[2] : 0;
            if (mark == '-') {
                while (te > ts && is_ws(te[-1])) te--;
            } else if (mark != '+' && kind != '{') { /* lstrip_blocks */
                const char *q = te;
                while (q > ts && (q[-1] == ' ' || q[-1] == '\t')) q--;
                if ((q > ts && q[-1] == '\n') || (q == ts && (ts > p ? ts[-1] == '\n' : line_start))) te = q;
            }
        }
        push_text(r, ts, (size_t)(te - ts), line_of(src, ts));
        if (t >= end) break;
        char kind = t[1];
        const char *in = t + 2;
        if (in < end && (*in == '-' || *in == '+')) in++;
        const char *close = kind == '#' ? NULL : tag_end(in, end, kind == '{' ? '}' : '%');
        if (kind == '#') {
            for (const char *q = in; q + 1 < end; q++)
                if (q[0] == '#' && q[1] == '}') { close = q; break; }
        }
        if (!close) return rfail(r, line_of(src, t), "tag '%.2s' is not closed", t);
        const char *ie = close;
        strip_next = ie > in && ie[-1] == '-';
        if (strip_next || (ie > in && ie[-1] == '+')) ie--;
        if (kind != '#') piece_push(r, kind == '{' ? P_VAR : P_BLOCK, in, (size_t)(ie - in), line_of(src, t));
        trim_nl = kind != '{';
        p = close + 2;
        line_start = (trim_nl && p < end && *p == '\n') || (p > src && p[-1] == '\n');
    }
    return 0;
}

/* ---- expression lexer and parser -------------------------------------------- */

enum { T_EOF, T_NAME, T_STR, T_NUM, T_OP };

typedef struct Lex {
    const char *p, *end;
    int t;
    const char *s; /* token text */
    size_t n;
    Render *r;
    int line;
    int depth; /* expression nesting, bounded so a hostile template cannot exhaust the stack */
} Lex;

static void lex_next(Lex *x) {
    while (x->p < x->end && is_ws(*x->p)) x->p++;
    x->s = x->p;
    if (x->p >= x->end) { x->t = T_EOF; x->n = 0; return; }
    char c = *x->p;
    if (c == '_' || ((c | 32) >= 'a' && (c | 32) <= 'z')) {
        while (x->p < x->end && (*x->p == '_' || ((*x->p | 32) >= 'a' && (*x->p | 32) <= 'z') || (*x->p >= '0' && *x->p <= '9'))) x->p++;
        x->t = T_NAME;
    } else if (c >= '0' && c <= '9') {
        while (x->p < x->end && ((*x->p >= '0' && *x->p <= '9') || *x->p == '.' || *x->p == '_')) x->p++;
        x->t = T_NUM;
    } else if (c == '\'' || c == '"') {
        x->p++;
        while (x->p < x->end && *x->p != c) x->p += *x->p == '\\' ? 2 : 1;
        if (x->p >= x->end) { rfail(x->r, x->line, "string literal not closed"); x->t = T_EOF; return; }
        x->p++;
        x->t = T_STR;
    } else {
        static const char *two[] = {"==", "!=", "<=", ">=", "//", "**"};
        x->t = T_OP;
        x->p++;
        for (int i = 0; i < 6; i++)
            if (x->p < x->end && c == two[i][0] && *x->p == two[i][1]) { x->p++; break; }
    }
    x->n = (size_t)(x->p - x->s);
}

static int is_op(const Lex *x, const char *op) { return x->t == T_OP && x->n == strlen(op) && !memcmp(x->s, op, x->n); }
static int is_kw(const Lex *x, const char *kw) { return x->t == T_NAME && x->n == strlen(kw) && !memcmp(x->s, kw, x->n); }

static int expect(Lex *x, const char *op) {
    if (!is_op(x, op)) return rfail(x->r, x->line, "expected '%s', found '%.*s'", op, (int)x->n, x->s);
    lex_next(x);
    return 0;
}

enum { E_LIT, E_NAME, E_ATTR, E_INDEX, E_SLICE, E_CALL, E_FILTER, E_TEST, E_BIN, E_NOT, E_NEG, E_COND, E_LIST, E_DICT };

typedef struct Expr Expr;
struct Expr {
    int k, line, neg;
    JVal lit;
    const char *name; /* NAME, ATTR, FILTER, TEST, BIN (operator) */
    size_t nlen;
    Expr *a, *b, *c;
    Expr **args; /* CALL/FILTER/TEST args, LIST items, DICT k,v,k,v, SLICE start,stop,step */
    int nargs;
    const char **kwn;
    size_t *kwl;
    Expr **kwv;
    int nkw;
};

static Expr *enew(Lex *x, int k) {
    Expr *e = ar_alloc(&x->r->ar, sizeof *e);
    e->k = k;
    e->line = x->line;
    return e;
}

static Expr *parse_expr(Lex *x);
static Expr *parse_unary(Lex *x);

enum { MAX_DEPTH = 200 };

static int deeper(Lex *x) {
    if (++x->depth <= MAX_DEPTH) return 0;
    return rfail(x->r, x->line, "expression nested more than %d deep", MAX_DEPTH);
}


/* Python/Jinja string-literal escapes. */
static JVal unescape(Lex *x, const char *s, size_t n) {
    char *o = ar_alloc(&x->r->ar, n * 2 + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) { o[k++] = s[i]; continue; }
        char c = s[++i];
        int hex = c == 'x' ? 2 : c == 'u' ? 4 : c == 'U' ? 8 : 0;
        if (hex && i + hex < n) {
            char h[9] = {0};
            memcpy(h, s + i + 1, (size_t)hex);
            k += tok_utf8_encode1((uint32_t)strtoul(h, NULL, 16), o + k);
            i += (size_t)hex;
            continue;
        }
        switch (c) {
        case 'n': o[k++] = '\n'; break;
        case 't': o[k++] = '\t'; break;
        case 'r': o[k++] = '\r'; break;
        case '0': o[k++] = '\0'; break;
        case 'a': o[k++] = '\a'; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'v': o[k++] = '\v'; break;
        case '\\': case '\'': case '"': o[k++] = c; break;
        case '\n': break;
        default: o[k++] = '\\'; o[k++] = c;
        }
    }
    return jstr(o, k);
}

static int parse_args(Lex *x, Expr *e, const char *close) {
    Expr *args[32], *kwv[32];
    const char *kwn[32];
    size_t kwl[32];
    int na = 0, nk = 0;
    while (!is_op(x, close) && x->t != T_EOF && !x->r->failed) {
        if (na + nk >= 32) return rfail(x->r, x->line, "more than 32 arguments");
        if (x->t == T_NAME) { /* name=value? */
            Lex save = *x;
            const char *nm = x->s;
            size_t nl = x->n;
            lex_next(x);
            if (is_op(x, "=")) {
                lex_next(x);
                kwn[nk] = nm; kwl[nk] = nl;
                kwv[nk++] = parse_expr(x);
                if (!is_op(x, ",")) break;
                lex_next(x);
                continue;
            }
            *x = save;
        }
        args[na++] = parse_expr(x);
        if (!is_op(x, ",")) break;
        lex_next(x);
    }
    if (expect(x, close)) return -1;
    e->nargs = na;
    e->args = ar_alloc(&x->r->ar, (size_t)(na + 1) * sizeof *e->args);
    memcpy(e->args, args, (size_t)na * sizeof *args);
    e->nkw = nk;
    e->kwn = ar_alloc(&x->r->ar, (size_t)(nk + 1) * sizeof *e->kwn);
    e->kwl = ar_alloc(&x->r->ar, (size_t)(nk + 1) * sizeof *e->kwl);
    e->kwv = ar_alloc(&x->r->ar, (size_t)(nk + 1) * sizeof *e->kwv);
    memcpy(e->kwn, kwn, (size_t)nk * sizeof *kwn);
    memcpy(e->kwl, kwl, (size_t)nk * sizeof *kwl);
    memcpy(e->kwv, kwv, (size_t)nk * sizeof *kwv);
    return 0;
}

static Expr *parse_primary(Lex *x) {
    Expr *e;
    if (x->t == T_STR) {
        e = enew(x, E_LIT);
        e->lit = unescape(x, x->s + 1, x->n - 2);
        lex_next(x);
        while (x->t == T_STR) { /* adjacent literals concatenate */
            JVal more = unescape(x, x->s + 1, x->n - 2);
            char *c = ar_alloc(&x->r->ar, e->lit.n + more.n + 1);
            memcpy(c, e->lit.s, e->lit.n);
            memcpy(c + e->lit.n, more.s, more.n);
            e->lit = jstr(c, e->lit.n + more.n);
            lex_next(x);
        }
        return e;
    }
    if (x->t == T_NUM) {
        e = enew(x, E_LIT);
        char b[64];
        snprintf(b, sizeof b, "%.*s", (int)x->n, x->s);
        e->lit = memchr(b, '.', strlen(b)) ? (JVal){.t = J_FLOAT, .f = strtod(b, NULL)} : jint(strtoll(b, NULL, 10));
        lex_next(x);
        return e;
    }
    if (x->t == T_NAME) {
        e = enew(x, E_LIT);
        if (is_kw(x, "true") || is_kw(x, "True")) e->lit = jbool(1);
        else if (is_kw(x, "false") || is_kw(x, "False")) e->lit = jbool(0);
        else if (is_kw(x, "none") || is_kw(x, "None")) e->lit = NONE;
        else { e->k = E_NAME; e->name = x->s; e->nlen = x->n; }
        lex_next(x);
        return e;
    }
    if (is_op(x, "(")) {
        lex_next(x);
        e = parse_expr(x);
        if (is_op(x, ",")) { /* a tuple: treated as a list */
            Expr *l = enew(x, E_LIST);
            lex_next(x);
            if (parse_args(x, l, ")")) return l;
            Expr **a = ar_alloc(&x->r->ar, (size_t)(l->nargs + 2) * sizeof *a);
            a[0] = e;
            memcpy(a + 1, l->args, (size_t)l->nargs * sizeof *a);
            l->args = a;
            l->nargs++;
            return l;
        }
        expect(x, ")");
        return e;
    }
    if (is_op(x, "[")) {
        e = enew(x, E_LIST);
        lex_next(x);
        parse_args(x, e, "]");
        return e;
    }
    if (is_op(x, "{")) {
        e = enew(x, E_DICT);
        lex_next(x);
        Expr *kv[64];
        int n = 0;
        while (!is_op(x, "}") && x->t != T_EOF && n < 62 && !x->r->failed) {
            kv[n++] = parse_expr(x);
            if (expect(x, ":")) break;
            kv[n++] = parse_expr(x);
            if (!is_op(x, ",")) break;
            lex_next(x);
        }
        expect(x, "}");
        e->args = ar_alloc(&x->r->ar, (size_t)(n + 1) * sizeof *e->args);
        memcpy(e->args, kv, (size_t)n * sizeof *kv);
        e->nargs = n;
        return e;
    }
    rfail(x->r, x->line, "unexpected '%.*s' in expression", (int)x->n, x->s);
    return enew(x, E_LIT);
}

static Expr *parse_postfix(Lex *x) {
    Expr *e = parse_primary(x);
    while (!x->r->failed) {
        if (is_op(x, ".")) {
            lex_next(x);
            if (x->t != T_NAME && x->t != T_NUM) { rfail(x->r, x->line, "expected a name after '.'"); break; }
            Expr *a = enew(x, E_ATTR);
            a->a = e; a->name = x->s; a->nlen = x->n;
            lex_next(x);
            e = a;
        } else if (is_op(x, "[")) {
            lex_next(x);
            Expr *parts[3] = {0};
            int np = 0, slice = 0;
            for (;;) {
                if (!is_op(x, ":") && !is_op(x, "]")) parts[np] = parse_expr(x);
                if (is_op(x, ":") && np < 2) { slice = 1; np++; lex_next(x); continue; }
                break;
            }
            expect(x, "]");
            Expr *a = enew(x, slice ? E_SLICE : E_INDEX);
            a->a = e;
            if (slice) {
                a->args = ar_alloc(&x->r->ar, 3 * sizeof *a->args);
                memcpy(a->args, parts, sizeof parts);
                a->nargs = 3;
            } else {
                a->b = parts[0];
            }
            e = a;
        } else if (is_op(x, "(")) {
            lex_next(x);
            Expr *c = enew(x, E_CALL);
            c->a = e;
            parse_args(x, c, ")");
            e = c;
        } else {
            break;
        }
    }
    return e;
}

/* filters bind tighter than arithmetic: a + b | f is a + (b | f) */
static Expr *parse_filtered(Lex *x, Expr *e) {
    while (is_op(x, "|") && !x->r->failed) {
        lex_next(x);
        if (x->t != T_NAME) { rfail(x->r, x->line, "expected a filter name after '|'"); break; }
        Expr *f = enew(x, E_FILTER);
        f->a = e; f->name = x->s; f->nlen = x->n;
        lex_next(x);
        if (is_op(x, "(")) { lex_next(x); parse_args(x, f, ")"); }
        else { f->args = ar_alloc(&x->r->ar, sizeof *f->args); f->kwn = NULL; }
        e = f;
    }
    return e;
}

static Expr *parse_unary(Lex *x) {
    if (is_op(x, "-")) {
        lex_next(x);
        Expr *e = enew(x, E_NEG);
        if (deeper(x)) return e;
        e->a = parse_unary(x);
        x->depth--;
        return e;
    }
    if (is_op(x, "+")) lex_next(x);
    return parse_filtered(x, parse_postfix(x));
}

static Expr *binop(Lex *x, const char *op, Expr *a, Expr *b) {
    Expr *e = enew(x, E_BIN);
    e->name = op;
    e->a = a;
    e->b = b;
    return e;
}

static Expr *parse_mul(Lex *x) {
    Expr *e = parse_unary(x);
    static const char *ops[] = {"*", "/", "//", "%"};
    for (int again = 1; again && !x->r->failed;) {
        again = 0;
        for (int i = 0; i < 4; i++)
            if (is_op(x, ops[i])) { lex_next(x); e = binop(x, ops[i], e, parse_unary(x)); again = 1; break; }
    }
    return e;
}

static Expr *parse_add(Lex *x) {
    Expr *e = parse_mul(x);
    while (!x->r->failed && (is_op(x, "+") || is_op(x, "-") || is_op(x, "~"))) {
        const char *op = is_op(x, "+") ? "+" : is_op(x, "-") ? "-" : "~";
        lex_next(x);
        e = binop(x, op, e, parse_mul(x));
    }
    return e;
}

static Expr *parse_cmp(Lex *x) {
    Expr *e = parse_add(x);
    static const char *ops[] = {"==", "!=", "<=", ">=", "<", ">"};
    while (!x->r->failed) {
        int found = 0;
        for (int i = 0; i < 6; i++)
            if (is_op(x, ops[i])) { lex_next(x); e = binop(x, ops[i], e, parse_add(x)); found = 1; break; }
        if (found) continue;
        if (is_kw(x, "in")) { lex_next(x); e = binop(x, "in", e, parse_add(x)); continue; }
        if (is_kw(x, "not")) {
            Lex save = *x;
            lex_next(x);
            if (is_kw(x, "in")) { lex_next(x); e = binop(x, "not in", e, parse_add(x)); continue; }
            *x = save;
            break;
        }
        if (is_kw(x, "is")) {
            lex_next(x);
            Expr *t = enew(x, E_TEST);
            t->a = e;
            if (is_kw(x, "not")) { t->neg = 1; lex_next(x); }
            if (x->t != T_NAME) { rfail(x->r, x->line, "expected a test name after 'is'"); break; }
            t->name = x->s; t->nlen = x->n;
            lex_next(x);
            if (is_op(x, "(")) { lex_next(x); parse_args(x, t, ")"); }
            else if (x->t == T_STR || x->t == T_NUM || (x->t == T_NAME && !is_kw(x, "and") && !is_kw(x, "or") &&
                                                      !is_kw(x, "else") && !is_kw(x, "if"))) {
                t->args = ar_alloc(&x->r->ar, sizeof *t->args); /* `is equalto 3`: one argument */
                t->args[0] = parse_primary(x);
                t->nargs = 1;
            }
            e = t;
            continue;
        }
        break;
    }
    return e;
}

static Expr *parse_not(Lex *x) {
    if (is_kw(x, "not")) {
        lex_next(x);
        Expr *e = enew(x, E_NOT);
        if (deeper(x)) return e;
        e->a = parse_not(x);
        x->depth--;
        return e;
    }
    return parse_cmp(x);
}

static Expr *parse_and(Lex *x) {
    Expr *e = parse_not(x);
    while (is_kw(x, "and") && !x->r->failed) { lex_next(x); e = binop(x, "and", e, parse_not(x)); }
    return e;
}

static Expr *parse_or(Lex *x) {
    Expr *e = parse_and(x);
    while (is_kw(x, "or") && !x->r->failed) { lex_next(x); e = binop(x, "or", e, parse_and(x)); }
    return e;
}

static Expr *parse_expr(Lex *x) {
    if (deeper(x)) return enew(x, E_LIT);
    Expr *e = parse_or(x);
    x->depth--;
    if (is_kw(x, "if") && !x->r->failed) {
        lex_next(x);
        Expr *c = enew(x, E_COND);
        c->b = e;
        c->a = parse_or(x);
        if (is_kw(x, "else")) { lex_next(x); c->c = parse_expr(x); }
        return c;
    }
    return e;
}

/* ---- statements ------------------------------------------------------------- */

enum { N_TEXT, N_OUT, N_IF, N_FOR, N_SET, N_BREAK, N_CONTINUE };

typedef struct Node Node;
struct Node {
    int k, line;
    const char *text;
    size_t n;
    Expr *e, *cond;
    Node *body, *alt, *next;
    const char *var[2]; /* for targets / set name */
    size_t varl[2];
    int nvar;
    const char *attr; /* set ns.attr */
    size_t attrl;
};

static void lex_init(Lex *x, Render *r, const Piece *p) {
    *x = (Lex){.p = p->s, .end = p->s + p->n, .r = r, .line = p->line};
    lex_next(x);
}

static int lex_done(Lex *x) {
    if (x->t != T_EOF) return rfail(x->r, x->line, "unexpected '%.*s' at the end of a tag", (int)x->n, x->s);
    return 0;
}

static Node *parse_body(Render *r, const char *const *ends, int *which);

static Node *nnew(Render *r, int k, int line) {
    Node *n = ar_alloc(&r->ar, sizeof *n);
    n->k = k;
    n->line = line;
    return n;
}

static Node *parse_if(Render *r, Lex *x, int line) {
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    Node *n = nnew(r, N_IF, line);
    n->e = parse_expr(x);
    lex_done(x);
    int which;
    n->body = parse_body(r, ends, &which);
    if (r->failed) return n;
    if (which == 0) { /* elif: a nested if in the else branch */
        Lex y;
        lex_init(&y, r, &r->pc[r->ipc - 1]);
        lex_next(&y); /* skip "elif" */
        n->alt = parse_if(r, &y, r->pc[r->ipc - 1].line);
    } else if (which == 1) {
        static const char *const ends2[] = {"endif", NULL};
        n->alt = parse_body(r, ends2, &which);
    }
    return n;
}

static Node *parse_for(Render *r, Lex *x, int line) {
    Node *n = nnew(r, N_FOR, line);
    while (x->t == T_NAME && n->nvar < 2) {
        n->var[n->nvar] = x->s;
        n->varl[n->nvar++] = x->n;
        lex_next(x);
        if (!is_op(x, ",")) break;
        lex_next(x);
    }
    if (!is_kw(x, "in")) { rfail(r, line, "expected 'for NAME in ...'"); return n; }
    lex_next(x);
    n->e = parse_or(x); /* not parse_expr: a trailing `if` filters the loop */
    if (is_kw(x, "if")) { lex_next(x); n->cond = parse_expr(x); }
    if (is_kw(x, "recursive")) { rfail(r, line, "recursive loops are unsupported"); return n; }
    lex_done(x);
    static const char *const ends[] = {"else", "endfor", NULL};
    int which;
    n->body = parse_body(r, ends, &which);
    if (!r->failed && which == 0) {
        static const char *const ends2[] = {"endfor", NULL};
        n->alt = parse_body(r, ends2, &which);
    }
    return n;
}

static Node *parse_set(Render *r, Lex *x, int line) {
    Node *n = nnew(r, N_SET, line);
    if (x->t != T_NAME) { rfail(r, line, "expected a name after 'set'"); return n; }
    n->var[0] = x->s;
    n->varl[0] = x->n;
    n->nvar = 1;
    lex_next(x);
    if (is_op(x, ".")) {
        lex_next(x);
        n->attr = x->s;
        n->attrl = x->n;
        lex_next(x);
    }
    if (is_op(x, ",")) { rfail(r, line, "'set a, b = ...' is unsupported"); return n; }
    if (!is_op(x, "=")) { rfail(r, line, "block 'set' (without '=') is unsupported"); return n; }
    lex_next(x);
    n->e = parse_expr(x);
    lex_done(x);
    return n;
}

/* Parses pieces until one of the end keywords (index in *which) or the end. */
static Node *parse_body(Render *r, const char *const *ends, int *which) {
    Node head = {0}, *tail = &head;
    *which = -1;
    if (++r->depth > MAX_DEPTH) {
        rfail(r, r->ipc < r->npc ? r->pc[r->ipc].line : 1, "blocks nested more than %d deep", MAX_DEPTH);
        return NULL;
    }
    while (r->ipc < r->npc && !r->failed) {
        Piece *p = &r->pc[r->ipc++];
        Node *n = NULL;
        if (p->kind == P_TEXT) {
            n = nnew(r, N_TEXT, p->line);
            n->text = p->s;
            n->n = p->n;
        } else if (p->kind == P_VAR) {
            Lex x;
            lex_init(&x, r, p);
            n = nnew(r, N_OUT, p->line);
            n->e = parse_expr(&x);
            lex_done(&x);
        } else {
            Lex x;
            lex_init(&x, r, p);
            if (x.t != T_NAME) { rfail(r, p->line, "empty or malformed block tag"); break; }
            for (int i = 0; ends && ends[i]; i++)
                if (is_kw(&x, ends[i])) { *which = i; r->depth--; return head.next; }
            const char *kw = x.s;
            size_t kl = x.n;
            lex_next(&x);
            if (kl == 2 && !memcmp(kw, "if", 2)) n = parse_if(r, &x, p->line);
            else if (kl == 3 && !memcmp(kw, "for", 3)) n = parse_for(r, &x, p->line);
            else if (kl == 3 && !memcmp(kw, "set", 3)) n = parse_set(r, &x, p->line);
            else if (kl == 5 && !memcmp(kw, "break", 5)) n = nnew(r, N_BREAK, p->line);
            else if (kl == 8 && !memcmp(kw, "continue", 8)) n = nnew(r, N_CONTINUE, p->line);
            else if ((kl == 10 && !memcmp(kw, "generation", 10)) || (kl == 13 && !memcmp(kw, "endgeneration", 13)))
                continue; /* transformers' AssistantTracker markers: no output */
            else { rfail(r, p->line, "unsupported tag '%.*s'", (int)kl, kw); break; }
        }
        tail->next = n;
        tail = n;
    }
    r->depth--;
    if (ends && !r->failed) { /* the closing keyword is the last one listed */
        int last = 0;
        while (ends[last + 1]) last++;
        rfail(r, r->npc ? r->pc[r->npc - 1].line : 1, "missing {%% %s %%}", ends[last]);
    }
    return head.next;
}

/* ---- evaluation ------------------------------------------------------------- */

typedef struct Frame {
    struct Frame *up;
    JDict vars;
} Frame;

typedef struct Ctx {
    Render *r;
    Frame *f;
    int brk, cont;
} Ctx;

static JVal lookup(Ctx *c, const char *s, size_t n) {
    for (Frame *f = c->f; f; f = f->up) {
        JVal *v = dict_find(&f->vars, s, n);
        if (v) return *v;
    }
    static const struct { const char *name; int id; } fns[] = {
        {"namespace", F_NAMESPACE}, {"raise_exception", F_RAISE}, {"range", F_RANGE}, {"strftime_now", F_STRFTIME}};
    for (size_t i = 0; i < 4; i++)
        if (strlen(fns[i].name) == n && !memcmp(fns[i].name, s, n)) return (JVal){.t = J_FUNC, .i = fns[i].id};
    return UNDEF;
}

static JVal eval(Ctx *c, Expr *e);

static int name_is(const char *s, size_t n, const char *w) { return strlen(w) == n && !memcmp(s, w, n); }

static JVal str_of(Ctx *c, JVal v) {
    if (v.t == J_STR) return v;
    TokText t = {0};
    to_str(&t, v, 0);
    JVal r = jstr(ar_strndup(&c->r->ar, t.s ? t.s : "", t.n), t.n);
    tok_text_free(&t);
    return r;
}

static JVal concat(Ctx *c, JVal a, JVal b) {
    char *s = ar_alloc(&c->r->ar, a.n + b.n + 1);
    memcpy(s, a.s, a.n);
    memcpy(s + a.n, b.s, b.n);
    return jstr(s, a.n + b.n);
}

static const char *type_name(JVal v) {
    static const char *n[] = {"undefined", "none", "bool", "int", "float", "string", "list", "dict", "function"};
    return n[v.t];
}

static JVal arith(Ctx *c, Expr *e, JVal a, JVal b) {
    const char *op = e->name;
    if (a.t == J_UNDEF || b.t == J_UNDEF) {
        rfail(c->r, e->line, "'%s' on an undefined value", op);
        return UNDEF;
    }
    if (!strcmp(op, "+") && a.t == J_STR && b.t == J_STR) return concat(c, a, b);
    if (!strcmp(op, "+") && a.t == J_LIST && b.t == J_LIST) {
        JList *l = ar_alloc(&c->r->ar, sizeof *l);
        for (size_t i = 0; i < a.l->n; i++) list_push(&c->r->ar, l, a.l->v[i]);
        for (size_t i = 0; i < b.l->n; i++) list_push(&c->r->ar, l, b.l->v[i]);
        return (JVal){.t = J_LIST, .l = l};
    }
    int num = (a.t == J_INT || a.t == J_BOOL || a.t == J_FLOAT) && (b.t == J_INT || b.t == J_BOOL || b.t == J_FLOAT);
    if (!num) {
        rfail(c->r, e->line, "unsupported operands for '%s': %s and %s", op, type_name(a), type_name(b));
        return UNDEF;
    }
    if (a.t != J_FLOAT && b.t != J_FLOAT && strcmp(op, "/")) {
        long long x = a.i, y = b.i;
        if ((!strcmp(op, "//") || !strcmp(op, "%")) && y == 0) { rfail(c->r, e->line, "division by zero"); return UNDEF; }
        if (!strcmp(op, "+")) return jint(x + y);
        if (!strcmp(op, "-")) return jint(x - y);
        if (!strcmp(op, "*")) return jint(x * y);
        long long q = x / y - ((x % y != 0) && ((x < 0) != (y < 0)));
        return !strcmp(op, "//") ? jint(q) : jint(x - q * y);
    }
    double x = a.t == J_FLOAT ? a.f : (double)a.i, y = b.t == J_FLOAT ? b.f : (double)b.i;
    if (!strcmp(op, "/") && y == 0) { rfail(c->r, e->line, "division by zero"); return UNDEF; }
    double r = !strcmp(op, "+") ? x + y : !strcmp(op, "-") ? x - y : !strcmp(op, "*") ? x * y : x / y;
    return (JVal){.t = J_FLOAT, .f = r};
}

static int contains(Ctx *c, Expr *e, JVal item, JVal box) {
    if (box.t == J_STR) {
        if (item.t != J_STR) { rfail(c->r, e->line, "'in <string>' needs a string on the left"); return 0; }
        if (!item.n) return 1;
        for (size_t i = 0; i + item.n <= box.n; i++)
            if (!memcmp(box.s + i, item.s, item.n)) return 1;
        return 0;
    }
    if (box.t == J_LIST) {
        for (size_t i = 0; i < box.l->n; i++)
            if (jequal(box.l->v[i], item)) return 1;
        return 0;
    }
    if (box.t == J_DICT) return item.t == J_STR && dict_find(box.d, item.s, item.n) != NULL;
    rfail(c->r, e->line, "'in' on a %s", type_name(box));
    return 0;
}

static int compare(Ctx *c, Expr *e, JVal a, JVal b) {
    if (a.t == J_STR && b.t == J_STR) {
        int r = memcmp(a.s, b.s, a.n < b.n ? a.n : b.n);
        return r ? r : (a.n > b.n) - (a.n < b.n);
    }
    if ((a.t == J_INT || a.t == J_FLOAT || a.t == J_BOOL) && (b.t == J_INT || b.t == J_FLOAT || b.t == J_BOOL)) {
        double x = a.t == J_FLOAT ? a.f : (double)a.i, y = b.t == J_FLOAT ? b.f : (double)b.i;
        return (x > y) - (x < y);
    }
    rfail(c->r, e->line, "cannot order %s and %s", type_name(a), type_name(b));
    return 0;
}

static JVal eval_bin(Ctx *c, Expr *e) {
    const char *op = e->name;
    JVal a = eval(c, e->a);
    if (!strcmp(op, "and")) return truthy(a) ? eval(c, e->b) : a;
    if (!strcmp(op, "or")) return truthy(a) ? a : eval(c, e->b);
    JVal b = eval(c, e->b);
    if (c->r->failed) return UNDEF;
    if (!strcmp(op, "~")) return concat(c, str_of(c, a), str_of(c, b));
    if (!strcmp(op, "==")) return jbool(jequal(a, b));
    if (!strcmp(op, "!=")) return jbool(!jequal(a, b));
    if (!strcmp(op, "in")) return jbool(contains(c, e, a, b));
    if (!strcmp(op, "not in")) return jbool(!contains(c, e, a, b));
    if (op[0] == '<' || op[0] == '>') {
        int r = compare(c, e, a, b);
        return jbool(!strcmp(op, "<") ? r < 0 : !strcmp(op, ">") ? r > 0 : !strcmp(op, "<=") ? r <= 0 : r >= 0);
    }
    if (!strcmp(op, "*") && ((a.t == J_STR && b.t == J_INT) || (a.t == J_INT && b.t == J_STR))) {
        JVal s = a.t == J_STR ? a : b;
        long long k = a.t == J_INT ? a.i : b.i;
        JVal r = jstr("", 0);
        for (long long i = 0; i < k && i < 100000; i++) r = concat(c, r, s);
        return r;
    }
    return arith(c, e, a, b);
}

static long long norm_index(long long i, size_t n) { return i < 0 ? i + (long long)n : i; }

static JVal get_item(Ctx *c, JVal o, JVal k) {
    if (o.t == J_DICT && k.t == J_STR) { JVal *v = dict_find(o.d, k.s, k.n); return v ? *v : UNDEF; }
    if ((o.t == J_LIST || o.t == J_STR) && (k.t == J_INT || k.t == J_BOOL)) {
        size_t n = o.t == J_LIST ? o.l->n : o.n;
        long long i = norm_index(k.i, n);
        if (i < 0 || i >= (long long)n) return UNDEF;
        return o.t == J_LIST ? o.l->v[i] : jstr(o.s + i, 1);
    }
    (void)c;
    return UNDEF;
}

static JVal eval_slice(Ctx *c, Expr *e) {
    JVal o = eval(c, e->a);
    long long v[3];
    int set[3];
    for (int i = 0; i < 3; i++) {
        JVal x = e->args[i] ? eval(c, e->args[i]) : NONE;
        set[i] = x.t == J_INT;
        v[i] = set[i] ? x.i : 0;
    }
    long long step = set[2] ? v[2] : 1;
    if (step == 0 || (o.t != J_LIST && o.t != J_STR)) { rfail(c->r, e->line, "bad slice"); return UNDEF; }
    long long n = o.t == J_LIST ? (long long)o.l->n : (long long)o.n;
    long long lo = step > 0 ? 0 : -1, hi = step > 0 ? n : n - 1;
    long long a = set[0] ? norm_index(v[0], (size_t)n) : (step > 0 ? 0 : n - 1);
    long long b = set[1] ? norm_index(v[1], (size_t)n) : (step > 0 ? n : -1);
    if (a < lo) a = lo;
    if (a > hi) a = hi;
    if (set[1]) { if (b < lo) b = lo; if (b > hi) b = hi; }
    JList *l = ar_alloc(&c->r->ar, sizeof *l);
    TokText s = {0};
    for (long long i = a; step > 0 ? i < b : i > b; i += step) {
        if (o.t == J_LIST) list_push(&c->r->ar, l, o.l->v[i]);
        else tok_text_append(&s, o.s + i, 1);
    }
    if (o.t == J_LIST) return (JVal){.t = J_LIST, .l = l};
    JVal r = jstr(ar_strndup(&c->r->ar, s.s ? s.s : "", s.n), s.n);
    tok_text_free(&s);
    return r;
}

static JVal kwarg(Ctx *c, Expr *e, const char *name) {
    for (int i = 0; i < e->nkw; i++)
        if (name_is(e->kwn[i], e->kwl[i], name)) return eval(c, e->kwv[i]);
    return UNDEF;
}

static JVal arg(Ctx *c, Expr *e, int i, const char *kw) {
    if (i < e->nargs) return eval(c, e->args[i]);
    return kw ? kwarg(c, e, kw) : UNDEF;
}

/* Python str.strip family; chars NULL = whitespace. */
static JVal strip(JVal s, JVal chars, int left, int right) {
    size_t a = 0, b = s.n;
    const char *set = chars.t == J_STR ? chars.s : " \t\n\r\f\v";
    size_t sn = chars.t == J_STR ? chars.n : 6;
    while (left && a < b && memchr(set, s.s[a], sn)) a++;
    while (right && b > a && memchr(set, s.s[b - 1], sn)) b--;
    return jstr(s.s + a, b - a);
}

static JVal str_split(Ctx *c, JVal s, JVal sep, JVal maxs) {
    JList *l = ar_alloc(&c->r->ar, sizeof *l);
    long long max = maxs.t == J_INT ? maxs.i : -1;
    if (sep.t != J_STR) { /* runs of whitespace */
        size_t i = 0;
        while (i < s.n) {
            while (i < s.n && is_ws(s.s[i])) i++;
            if (i >= s.n) break;
            size_t j = i;
            if (max >= 0 && (long long)l->n >= max) j = s.n;
            else while (j < s.n && !is_ws(s.s[j])) j++;
            list_push(&c->r->ar, l, jstr(s.s + i, j - i));
            i = j;
        }
        return (JVal){.t = J_LIST, .l = l};
    }
    if (!sep.n) { rfail(c->r, 0, "split: empty separator"); return UNDEF; }
    size_t i = 0;
    for (size_t j = 0; j + sep.n <= s.n;) {
        if ((max < 0 || (long long)l->n < max) && !memcmp(s.s + j, sep.s, sep.n)) {
            list_push(&c->r->ar, l, jstr(s.s + i, j - i));
            j += sep.n;
            i = j;
        } else {
            j++;
        }
    }
    list_push(&c->r->ar, l, jstr(s.s + i, s.n - i));
    return (JVal){.t = J_LIST, .l = l};
}

static JVal str_replace(Ctx *c, JVal s, JVal a, JVal b) {
    if (a.t != J_STR || b.t != J_STR || !a.n) return s;
    TokText t = {0};
    for (size_t i = 0; i < s.n;) {
        if (i + a.n <= s.n && !memcmp(s.s + i, a.s, a.n)) { tok_text_append(&t, b.s, b.n); i += a.n; }
        else tok_text_append(&t, s.s + i++, 1);
    }
    JVal r = jstr(ar_strndup(&c->r->ar, t.s ? t.s : "", t.n), t.n);
    tok_text_free(&t);
    return r;
}

static JVal case_map(Ctx *c, JVal s, int mode) { /* 0 lower, 1 upper, 2 capitalize, 3 title (ASCII) */
    char *o = ar_strndup(&c->r->ar, s.s, s.n);
    int start = 1;
    for (size_t i = 0; i < s.n; i++) {
        char ch = o[i];
        int up = mode == 1 || ((mode == 2 && i == 0) || (mode == 3 && start));
        if (up && ch >= 'a' && ch <= 'z') o[i] = (char)(ch - 32);
        if (!up && ch >= 'A' && ch <= 'Z') o[i] = (char)(ch + 32);
        start = !((ch | 32) >= 'a' && (ch | 32) <= 'z');
    }
    return jstr(o, s.n);
}

static JVal call_method(Ctx *c, Expr *e, JVal o, const char *m, size_t ml) {
    if (o.t == J_STR) {
        if (name_is(m, ml, "strip")) return strip(o, arg(c, e, 0, NULL), 1, 1);
        if (name_is(m, ml, "lstrip")) return strip(o, arg(c, e, 0, NULL), 1, 0);
        if (name_is(m, ml, "rstrip")) return strip(o, arg(c, e, 0, NULL), 0, 1);
        if (name_is(m, ml, "split")) return str_split(c, o, arg(c, e, 0, "sep"), arg(c, e, 1, "maxsplit"));
        if (name_is(m, ml, "startswith") || name_is(m, ml, "endswith")) {
            JVal p = arg(c, e, 0, NULL);
            if (p.t != J_STR) { rfail(c->r, e->line, "%.*s needs a string", (int)ml, m); return UNDEF; }
            if (p.n > o.n) return jbool(0);
            return jbool(!memcmp(m[0] == 's' ? o.s : o.s + o.n - p.n, p.s, p.n));
        }
        if (name_is(m, ml, "replace")) return str_replace(c, o, arg(c, e, 0, NULL), arg(c, e, 1, NULL));
        if (name_is(m, ml, "lower")) return case_map(c, o, 0);
        if (name_is(m, ml, "upper")) return case_map(c, o, 1);
        if (name_is(m, ml, "capitalize")) return case_map(c, o, 2);
        if (name_is(m, ml, "title")) return case_map(c, o, 3);
    }
    if (o.t == J_DICT) {
        if (name_is(m, ml, "get")) {
            JVal k = arg(c, e, 0, NULL), *v = k.t == J_STR ? dict_find(o.d, k.s, k.n) : NULL;
            return v ? *v : e->nargs > 1 ? eval(c, e->args[1]) : NONE;
        }
        if (name_is(m, ml, "items") || name_is(m, ml, "keys") || name_is(m, ml, "values")) {
            JList *l = ar_alloc(&c->r->ar, sizeof *l);
            for (size_t i = 0; i < o.d->n; i++) {
                if (m[0] == 'k') { list_push(&c->r->ar, l, o.d->k[i]); continue; }
                if (m[0] == 'v') { list_push(&c->r->ar, l, o.d->v[i]); continue; }
                JList *p = ar_alloc(&c->r->ar, sizeof *p);
                list_push(&c->r->ar, p, o.d->k[i]);
                list_push(&c->r->ar, p, o.d->v[i]);
                list_push(&c->r->ar, l, (JVal){.t = J_LIST, .l = p});
            }
            return (JVal){.t = J_LIST, .l = l};
        }
    }
    rfail(c->r, e->line, "unsupported method %s.%.*s()", type_name(o), (int)ml, m);
    return UNDEF;
}

static JVal call_func(Ctx *c, Expr *e, JVal f) {
    if (f.t != J_FUNC) { rfail(c->r, e->line, "calling a %s", type_name(f)); return UNDEF; }
    switch (f.i) {
    case F_NAMESPACE: {
        JDict *d = ar_alloc(&c->r->ar, sizeof *d);
        d->ns = 1;
        for (int i = 0; i < e->nkw; i++) dict_set(&c->r->ar, d, jstr(e->kwn[i], e->kwl[i]), eval(c, e->kwv[i]));
        return (JVal){.t = J_DICT, .d = d};
    }
    case F_RAISE: {
        JVal m = str_of(c, arg(c, e, 0, NULL));
        rfail(c->r, e->line, "raise_exception: %.*s", (int)m.n, m.s);
        return UNDEF;
    }
    case F_RANGE: {
        long long a = 0, b, s = 1;
        JVal x = arg(c, e, 0, NULL), y = arg(c, e, 1, NULL), z = arg(c, e, 2, NULL);
        if (y.t == J_INT) { a = x.i; b = y.i; } else b = x.i;
        if (z.t == J_INT && z.i) s = z.i;
        JList *l = ar_alloc(&c->r->ar, sizeof *l);
        for (long long i = a; (s > 0 ? i < b : i > b) && l->n < 1000000; i += s) list_push(&c->r->ar, l, jint(i));
        return (JVal){.t = J_LIST, .l = l};
    }
    case F_STRFTIME: {
        JVal fmt = str_of(c, arg(c, e, 0, NULL));
        char f0[128], buf[256];
        snprintf(f0, sizeof f0, "%.*s", (int)fmt.n, fmt.s);
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        size_t n = strftime(buf, sizeof buf, f0, &tm);
        return jstr(ar_strndup(&c->r->ar, buf, n), n);
    }
    }
    return UNDEF;
}

static JVal eval_filter(Ctx *c, Expr *e) {
    JVal v = eval(c, e->a);
    const char *f = e->name;
    size_t fl = e->nlen;
    if (c->r->failed) return UNDEF;
    if (name_is(f, fl, "tojson")) {
        JVal ind = arg(c, e, 0, "indent");
        TokText t = {0};
        to_json(&t, v, ind.t == J_INT ? (int)ind.i : -1, 0);
        JVal r = jstr(ar_strndup(&c->r->ar, t.s ? t.s : "", t.n), t.n);
        tok_text_free(&t);
        return r;
    }
    if (name_is(f, fl, "trim")) return v.t == J_STR ? strip(v, arg(c, e, 0, NULL), 1, 1) : strip(str_of(c, v), UNDEF, 1, 1);
    if (name_is(f, fl, "length") || name_is(f, fl, "count")) {
        if (v.t == J_STR) { /* characters, not bytes */
            long long n = 0;
            for (size_t i = 0; i < v.n; i++) n += ((unsigned char)v.s[i] & 0xC0) != 0x80;
            return jint(n);
        }
        return jint(v.t == J_LIST ? (long long)v.l->n : v.t == J_DICT ? (long long)v.d->n : 0);
    }
    if (name_is(f, fl, "string")) return str_of(c, v);
    if (name_is(f, fl, "safe")) return v;
    if (name_is(f, fl, "lower")) return case_map(c, str_of(c, v), 0);
    if (name_is(f, fl, "upper")) return case_map(c, str_of(c, v), 1);
    if (name_is(f, fl, "capitalize")) return case_map(c, str_of(c, v), 2);
    if (name_is(f, fl, "title")) return case_map(c, str_of(c, v), 3);
    if (name_is(f, fl, "int")) {
        if (v.t == J_FLOAT) return jint((long long)v.f);
        if (v.t == J_STR) { char b[64]; snprintf(b, sizeof b, "%.*s", (int)v.n, v.s); return jint(strtoll(b, NULL, 10)); }
        return jint(v.t == J_INT || v.t == J_BOOL ? v.i : 0);
    }
    if (name_is(f, fl, "default") || name_is(f, fl, "d")) {
        JVal bval = arg(c, e, 1, "boolean");
        return v.t == J_UNDEF || (truthy(bval) && !truthy(v)) ? arg(c, e, 0, "default_value") : v;
    }
    if (name_is(f, fl, "first") || name_is(f, fl, "last")) {
        if (v.t != J_LIST || !v.l->n) return UNDEF;
        return f[0] == 'f' ? v.l->v[0] : v.l->v[v.l->n - 1];
    }
    if (name_is(f, fl, "join")) {
        JVal sep = arg(c, e, 0, "d");
        JVal r = jstr("", 0);
        for (size_t i = 0; v.t == J_LIST && i < v.l->n; i++) {
            if (i && sep.t == J_STR) r = concat(c, r, sep);
            r = concat(c, r, str_of(c, v.l->v[i]));
        }
        return r;
    }
    if (name_is(f, fl, "list")) return v;
    if (name_is(f, fl, "items") && v.t == J_DICT) return call_method(c, e, v, "items", 5);
    if (name_is(f, fl, "replace")) return str_replace(c, str_of(c, v), arg(c, e, 0, NULL), arg(c, e, 1, NULL));
    if (name_is(f, fl, "reverse") && v.t == J_LIST) {
        JList *l = ar_alloc(&c->r->ar, sizeof *l);
        for (size_t i = v.l->n; i > 0; i--) list_push(&c->r->ar, l, v.l->v[i - 1]);
        return (JVal){.t = J_LIST, .l = l};
    }
    rfail(c->r, e->line, "unsupported filter '%.*s'", (int)fl, f);
    return UNDEF;
}

static JVal eval_test(Ctx *c, Expr *e) {
    JVal v = eval(c, e->a);
    const char *t = e->name;
    size_t tl = e->nlen;
    int r;
    if (name_is(t, tl, "defined")) r = v.t != J_UNDEF;
    else if (name_is(t, tl, "undefined")) r = v.t == J_UNDEF;
    else if (name_is(t, tl, "none")) r = v.t == J_NONE;
    else if (name_is(t, tl, "string")) r = v.t == J_STR;
    else if (name_is(t, tl, "number")) r = v.t == J_INT || v.t == J_FLOAT;
    else if (name_is(t, tl, "integer")) r = v.t == J_INT;
    else if (name_is(t, tl, "float")) r = v.t == J_FLOAT;
    else if (name_is(t, tl, "boolean")) r = v.t == J_BOOL;
    else if (name_is(t, tl, "true")) r = v.t == J_BOOL && v.i;
    else if (name_is(t, tl, "false")) r = v.t == J_BOOL && !v.i;
    else if (name_is(t, tl, "mapping")) r = v.t == J_DICT;
    else if (name_is(t, tl, "iterable")) r = v.t == J_LIST || v.t == J_DICT || v.t == J_STR;
    else if (name_is(t, tl, "sequence")) r = v.t == J_LIST || v.t == J_DICT || v.t == J_STR;
    else if (name_is(t, tl, "equalto") || name_is(t, tl, "eq")) r = jequal(v, arg(c, e, 0, NULL));
    else if (name_is(t, tl, "ne")) r = !jequal(v, arg(c, e, 0, NULL));
    else if (name_is(t, tl, "odd") || name_is(t, tl, "even")) r = v.t == J_INT && (v.i & 1) == (t[0] == 'o');
    else { rfail(c->r, e->line, "unsupported test '%.*s'", (int)tl, t); return UNDEF; }
    return jbool(r ^ e->neg);
}

static JVal eval(Ctx *c, Expr *e) {
    if (c->r->failed) return UNDEF;
    switch (e->k) {
    case E_LIT: return e->lit;
    case E_NAME: return lookup(c, e->name, e->nlen);
    case E_ATTR: {
        JVal o = eval(c, e->a);
        if (o.t == J_DICT) { JVal *v = dict_find(o.d, e->name, e->nlen); return v ? *v : UNDEF; }
        if (o.t == J_LIST && e->name[0] >= '0' && e->name[0] <= '9') return get_item(c, o, jint(strtoll(e->name, NULL, 10)));
        return UNDEF;
    }
    case E_INDEX: { JVal o = eval(c, e->a); return get_item(c, o, eval(c, e->b)); }
    case E_SLICE: return eval_slice(c, e);
    case E_CALL:
        if (e->a->k == E_ATTR) {
            JVal o = eval(c, e->a->a);
            if (o.t == J_DICT) {
                JVal *fv = dict_find(o.d, e->a->name, e->a->nlen);
                if (fv) return call_func(c, e, *fv);
            }
            return call_method(c, e, o, e->a->name, e->a->nlen);
        }
        return call_func(c, e, eval(c, e->a));
    case E_FILTER: return eval_filter(c, e);
    case E_TEST: return eval_test(c, e);
    case E_BIN: return eval_bin(c, e);
    case E_NOT: return jbool(!truthy(eval(c, e->a)));
    case E_NEG: {
        JVal v = eval(c, e->a);
        if (v.t == J_INT) return jint(-v.i);
        if (v.t == J_FLOAT) return (JVal){.t = J_FLOAT, .f = -v.f};
        rfail(c->r, e->line, "unary '-' on a %s", type_name(v));
        return UNDEF;
    }
    case E_COND: return truthy(eval(c, e->a)) ? eval(c, e->b) : e->c ? eval(c, e->c) : UNDEF;
    case E_LIST: {
        JList *l = ar_alloc(&c->r->ar, sizeof *l);
        for (int i = 0; i < e->nargs; i++) list_push(&c->r->ar, l, eval(c, e->args[i]));
        return (JVal){.t = J_LIST, .l = l};
    }
    case E_DICT: {
        JDict *d = ar_alloc(&c->r->ar, sizeof *d);
        for (int i = 0; i + 1 < e->nargs; i += 2) {
            JVal k = eval(c, e->args[i]);
            if (k.t != J_STR) { rfail(c->r, e->line, "dict keys must be strings"); return UNDEF; }
            dict_set(&c->r->ar, d, k, eval(c, e->args[i + 1]));
        }
        return (JVal){.t = J_DICT, .d = d};
    }
    }
    return UNDEF;
}

static void exec_nodes(Ctx *c, Node *n);

static void exec_for(Ctx *c, Node *n) {
    JVal it = eval(c, n->e);
    if (c->r->failed) return;
    JList items = {0};
    if (it.t == J_LIST) items = *it.l;
    else if (it.t == J_DICT) { for (size_t i = 0; i < it.d->n; i++) list_push(&c->r->ar, &items, it.d->k[i]); }
    else if (it.t == J_STR) {
        for (size_t i = 0; i < it.n;) {
            uint32_t cp;
            int l = tok_utf8_decode1((const unsigned char *)it.s + i, it.n - i, &cp);
            list_push(&c->r->ar, &items, jstr(it.s + i, (size_t)l));
            i += (size_t)l;
        }
    } else if (it.t != J_UNDEF && it.t != J_NONE) {
        rfail(c->r, n->line, "cannot loop over a %s", type_name(it));
        return;
    } else if (it.t == J_NONE) {
        rfail(c->r, n->line, "cannot loop over none");
        return;
    }
    Frame f = {.up = c->f};
    if (n->cond) { /* `for x in xs if cond`: filter first, loop.* counts the kept ones */
        JList kept = {0};
        for (size_t i = 0; i < items.n; i++) {
            f.vars.n = 0;
            dict_set(&c->r->ar, &f.vars, jstr(n->var[0], n->varl[0]), items.v[i]);
            c->f = &f;
            int keep = truthy(eval(c, n->cond));
            c->f = f.up;
            if (keep) list_push(&c->r->ar, &kept, items.v[i]);
        }
        items = kept;
    }
    for (size_t i = 0; i < items.n && !c->r->failed; i++) {
        f.vars = (JDict){0};
        JVal x = items.v[i];
        if (n->nvar == 2) {
            if (x.t != J_LIST || x.l->n != 2) { rfail(c->r, n->line, "cannot unpack loop item into 2 names"); return; }
            dict_set(&c->r->ar, &f.vars, jstr(n->var[0], n->varl[0]), x.l->v[0]);
            dict_set(&c->r->ar, &f.vars, jstr(n->var[1], n->varl[1]), x.l->v[1]);
        } else {
            dict_set(&c->r->ar, &f.vars, jstr(n->var[0], n->varl[0]), x);
        }
        JDict *loop = ar_alloc(&c->r->ar, sizeof *loop);
        long long len = (long long)items.n, k = (long long)i;
        dict_set(&c->r->ar, loop, jstr("index", 5), jint(k + 1));
        dict_set(&c->r->ar, loop, jstr("index0", 6), jint(k));
        dict_set(&c->r->ar, loop, jstr("revindex", 8), jint(len - k));
        dict_set(&c->r->ar, loop, jstr("revindex0", 9), jint(len - k - 1));
        dict_set(&c->r->ar, loop, jstr("first", 5), jbool(k == 0));
        dict_set(&c->r->ar, loop, jstr("last", 4), jbool(k == len - 1));
        dict_set(&c->r->ar, loop, jstr("length", 6), jint(len));
        dict_set(&c->r->ar, loop, jstr("previtem", 8), k > 0 ? items.v[k - 1] : UNDEF);
        dict_set(&c->r->ar, loop, jstr("nextitem", 8), k + 1 < len ? items.v[k + 1] : UNDEF);
        dict_set(&c->r->ar, &f.vars, jstr("loop", 4), (JVal){.t = J_DICT, .d = loop});
        c->f = &f;
        exec_nodes(c, n->body);
        c->f = f.up;
        c->cont = 0;
        if (c->brk) { c->brk = 0; break; }
    }
    if (!items.n && n->alt) exec_nodes(c, n->alt);
}

static void exec_nodes(Ctx *c, Node *n) {
    for (; n && !c->r->failed && !c->brk && !c->cont; n = n->next) {
        switch (n->k) {
        case N_TEXT: tok_text_append(c->r->out, n->text, n->n); break;
        case N_OUT: {
            JVal v = eval(c, n->e);
            if (!c->r->failed) to_str(c->r->out, v, 0);
            break;
        }
        case N_IF: exec_nodes(c, truthy(eval(c, n->e)) ? n->body : n->alt); break;
        case N_FOR: exec_for(c, n); break;
        case N_SET: {
            JVal v = eval(c, n->e);
            if (c->r->failed) break;
            if (n->attr) {
                JVal ns = lookup(c, n->var[0], n->varl[0]);
                if (ns.t != J_DICT || !ns.d->ns) {
                    rfail(c->r, n->line, "'set %.*s.%.*s': not a namespace", (int)n->varl[0], n->var[0], (int)n->attrl, n->attr);
                    break;
                }
                dict_set(&c->r->ar, ns.d, jstr(n->attr, n->attrl), v);
            } else {
                dict_set(&c->r->ar, &c->f->vars, jstr(n->var[0], n->varl[0]), v);
            }
            break;
        }
        case N_BREAK: c->brk = 1; break;
        case N_CONTINUE: c->cont = 1; break;
        }
    }
}

int chat_render(const char *tpl, const cJSON *messages, const cJSON *vars, int add_generation_prompt, TokText *out,
                Err *err) {
    Render r = {.err = err, .out = out};
    size_t start = out->n;
    if (!scan(&r, tpl, strlen(tpl))) {
        Node *root = parse_body(&r, NULL, &(int){0});
        Frame top = {0};
        Ctx c = {.r = &r, .f = &top};
        /* transformers drops the keys of a message whose value is None
         * (content: None becomes undefined, not none) */
        JVal msgs = from_json(&r.ar, messages);
        for (size_t i = 0; msgs.t == J_LIST && i < msgs.l->n; i++) {
            JDict *d = msgs.l->v[i].t == J_DICT ? msgs.l->v[i].d : NULL;
            size_t k = 0;
            for (size_t j = 0; d && j < d->n; j++)
                if (d->v[j].t != J_NONE) { d->k[k] = d->k[j]; d->v[k++] = d->v[j]; }
            if (d) d->n = k;
        }
        dict_set(&r.ar, &top.vars, jstr("messages", 8), msgs);
        dict_set(&r.ar, &top.vars, jstr("add_generation_prompt", 21), jbool(add_generation_prompt));
        dict_set(&r.ar, &top.vars, jstr("tools", 5), NONE);
        dict_set(&r.ar, &top.vars, jstr("documents", 9), NONE);
        const cJSON *v;
        cJSON_ArrayForEach(v, vars) dict_set(&r.ar, &top.vars, jstr(v->string, strlen(v->string)), from_json(&r.ar, v));
        if (!r.failed) exec_nodes(&c, root);
    }
    ar_free(&r.ar);
    if (r.failed) { out->n = start; if (out->s) out->s[start] = 0; return -1; }
    return 0;
}

int chat_apply(const Tokenizer *t, const cJSON *messages, int add_generation_prompt, TokText *out, Err *err) {
    const char *tpl = tok_chat_template(t);
    if (!tpl) return err_set(err, ERR_INPUT, "the tokenizer has no chat_template (tokenizer_config.json)");
    cJSON *vars = cJSON_CreateObject();
    if (*tok_bos_token(t)) cJSON_AddStringToObject(vars, "bos_token", tok_bos_token(t));
    if (*tok_eos_token(t)) cJSON_AddStringToObject(vars, "eos_token", tok_eos_token(t));
    if (*tok_pad_token(t)) cJSON_AddStringToObject(vars, "pad_token", tok_pad_token(t));
    int rc = chat_render(tpl, messages, vars, add_generation_prompt, out, err);
    cJSON_Delete(vars);
    return rc;
}
