/* luapat: see luapat.h. Written from the Lua 5.4 reference manual (§6.4.1
 * and the entries of string.find/match/gmatch/gsub); the matcher is a
 * backtracking recursive descent over the pattern, the design the manual's
 * semantics imply (greedy '*' '+' try the longest run first, '-' the
 * shortest, '?' one then none). tests/rewards/test_luapat.c runs it against
 * the stock string library case by case. */
#define _GNU_SOURCE /* memmem */
#include "luapat.h"

#include <ctype.h>
#include <stddef.h>
#include <string.h>

#include <lauxlib.h>

enum {
    PAT_ESC = '%',
    MAX_CAPTURES = 32, /* LUA_MAXCAPTURES: captures per pattern */
    MAX_DEPTH = 200,   /* nested pattern items before "pattern too complex" */
    CAP_OPEN = -1,     /* capture started, not closed yet */
    CAP_POS = -2,      /* position capture "()" */
    BYTES_PER_STEP = 16 /* back-reference comparison cost */
};

#define SPECIALS "^$*+?.([%-"

typedef struct Capture {
    const char *init; /* start in the subject */
    ptrdiff_t len;    /* bytes, or CAP_OPEN / CAP_POS */
} Capture;

typedef struct Match {
    const char *src, *src_end; /* subject [src, src_end), NUL after it */
    const char *p_end;         /* end of the pattern (NUL after it) */
    lua_State *L;
    int depth;                 /* recursion levels left */
    int level;                 /* captures in use */
    Capture cap[MAX_CAPTURES];
    const LuapatBudget *b;
    long left;                 /* steps left in this call */
    long mark;                 /* left at the last charge */
    int capped;                /* the allowance is call_cap (not the budget) */
} Match;

/* ---- budget -------------------------------------------------------------- */

static const LuapatBudget *budget_of(lua_State *L, int upvalue) {
    return lua_touserdata(L, lua_upvalueindex(upvalue));
}

static void steps_begin(Match *m) {
    long allow = m->b->call_cap;
    m->capped = 1;
    if (m->b->left) {
        long rest = m->b->left(m->L, m->b->ud);
        if (rest < allow) { allow = rest > 0 ? rest : 0; m->capped = 0; }
    }
    m->left = m->mark = allow;
}

/* Reports the steps used since the last charge. Called before anything that
 * can raise or run Lua code. */
static void steps_charge(Match *m) {
    long used = m->mark - m->left;
    m->mark = m->left;
    if (used > 0 && m->b->charge) m->b->charge(m->L, m->b->ud, used);
}

static void pat_error(Match *m, const char *fmt, int arg) {
    steps_charge(m);
    luaL_error(m->L, fmt, arg);
}

static void steps_exhausted(Match *m) {
    m->left = 0;
    steps_charge(m);
    if (m->capped)
        luaL_error(m->L, "pattern matching step limit exceeded (%I steps per call)", (lua_Integer)m->b->call_cap);
    luaL_error(m->L, "pattern matching step limit exceeded (the script's instruction budget is spent)");
}

static inline void step(Match *m, long n) {
    m->left -= n;
    if (m->left < 0) steps_exhausted(m);
}

/* ---- single items -------------------------------------------------------- */

/* Does c belong to class letter cl (%a, %A, ...; other letters stand for themselves)? */
static int class_has(int c, int cl) {
    int r;
    switch (tolower(cl)) {
    case 'a': r = isalpha(c); break;
    case 'c': r = iscntrl(c); break;
    case 'd': r = isdigit(c); break;
    case 'g': r = isgraph(c); break;
    case 'l': r = islower(c); break;
    case 'p': r = ispunct(c); break;
    case 's': r = isspace(c); break;
    case 'u': r = isupper(c); break;
    case 'w': r = isalnum(c); break;
    case 'x': r = isxdigit(c); break;
    case 'z': r = c == 0; break; /* Lua 5.1's NUL class: gone from the manual, still accepted by 5.4 */
    default: return cl == c;
    }
    return isupper(cl) ? !r : r != 0;
}

/* Does c belong to the set [p, close), p at '[' and close at its ']'? */
static int set_has(int c, const char *p, const char *close) {
    int want = 1;
    if (p[1] == '^') { want = 0; p++; }
    for (p++; p < close; p++) {
        if (*p == PAT_ESC) {
            p++;
            if (class_has(c, (unsigned char)*p)) return want;
        } else if (p[1] == '-' && p + 2 < close) { /* a range x-y; a '-' first or last is literal */
            if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2]) return want;
            p += 2;
        } else if ((unsigned char)*p == c) {
            return want;
        }
    }
    return !want;
}

/* End of the single-character class starting at p (where a quantifier would be). */
static const char *item_end(Match *m, const char *p) {
    char c = *p++;
    if (c == PAT_ESC) {
        if (p == m->p_end) pat_error(m, "malformed pattern (ends with '%%')", 0);
        return p + 1;
    }
    if (c != '[') return p;
    if (*p == '^') p++;
    /* the first character of a set is never its end, so "[]]" and "[^]]" hold ']' */
    do {
        if (p == m->p_end) pat_error(m, "malformed pattern (missing ']')", 0);
        if (*p++ == PAT_ESC && p < m->p_end) p++;
    } while (*p != ']');
    return p + 1;
}

/* Does the subject character at s match the class [p, ep)? */
static int item_match(Match *m, const char *s, const char *p, const char *ep) {
    if (s >= m->src_end) return 0;
    int c = (unsigned char)*s;
    switch (*p) {
    case '.': return 1;
    case PAT_ESC: return class_has(c, (unsigned char)p[1]);
    case '[': return set_has(c, p, ep - 1);
    default: return (unsigned char)*p == c;
    }
}

/* ---- the matcher --------------------------------------------------------- */

static const char *match(Match *m, const char *s, const char *p);

/* %bxy at p (pointing at x): a balanced run from s, or NULL. */
static const char *match_balance(Match *m, const char *s, const char *p) {
    if (p >= m->p_end - 1) pat_error(m, "malformed pattern (missing arguments to '%%b')", 0);
    if (*s != *p) return NULL;
    char open = p[0], close = p[1];
    int depth = 1;
    while (++s < m->src_end) {
        step(m, 1);
        if (*s == close) {
            if (--depth == 0) return s + 1;
        } else if (*s == open) {
            depth++;
        }
    }
    return NULL;
}

/* %1-%9 (digit d) at s: the text of that capture again, or NULL. */
static const char *match_backref(Match *m, const char *s, int d) {
    int k = d - '1';
    if (k < 0 || k >= m->level || m->cap[k].len == CAP_OPEN)
        pat_error(m, "invalid capture index %%%d", k + 1);
    size_t len = (size_t)m->cap[k].len; /* a position capture is huge here: never matches */
    if ((size_t)(m->src_end - s) < len) return NULL;
    step(m, (long)(len / BYTES_PER_STEP));
    return memcmp(m->cap[k].init, s, len) == 0 ? s + len : NULL;
}

/* Greedy: the longest run of [p, ep) from s first, then shorter ones. */
static const char *repeat_max(Match *m, const char *s, const char *p, const char *ep) {
    ptrdiff_t n = 0;
    while (item_match(m, s + n, p, ep)) { step(m, 1); n++; }
    for (; n >= 0; n--) {
        const char *r = match(m, s + n, ep + 1);
        if (r) return r;
    }
    return NULL;
}

/* Lazy: the rest of the pattern first, one more [p, ep) only when it fails. */
static const char *repeat_min(Match *m, const char *s, const char *p, const char *ep) {
    for (;;) {
        const char *r = match(m, s, ep + 1);
        if (r) return r;
        step(m, 1);
        if (!item_match(m, s, p, ep)) return NULL;
        s++;
    }
}

static const char *capture_open(Match *m, const char *s, const char *p, ptrdiff_t what) {
    if (m->level >= MAX_CAPTURES) pat_error(m, "too many captures", 0);
    m->cap[m->level] = (Capture){s, what};
    m->level++;
    const char *r = match(m, s, p);
    if (!r) m->level--;
    return r;
}

static const char *capture_close(Match *m, const char *s, const char *p) {
    int k = m->level - 1;
    while (k >= 0 && m->cap[k].len != CAP_OPEN) k--;
    if (k < 0) pat_error(m, "invalid pattern capture", 0);
    m->cap[k].len = s - m->cap[k].init;
    const char *r = match(m, s, p);
    if (!r) m->cap[k].len = CAP_OPEN;
    return r;
}

/* Matches pattern [p, p_end) at s; returns the end of the match or NULL.
 * Tail positions loop instead of recursing, so the recursion depth (and the
 * "pattern too complex" limit) counts only the items that must come back:
 * captures, '?' that matched, and the two repetitions. */
static const char *match(Match *m, const char *s, const char *p) {
    if (m->depth-- == 0) pat_error(m, "pattern too complex", 0);
    for (;;) {
        step(m, 1);
        if (p == m->p_end) break;
        switch (*p) {
        case '(':
            s = p[1] == ')' ? capture_open(m, s, p + 2, CAP_POS) : capture_open(m, s, p + 1, CAP_OPEN);
            goto done;
        case ')': s = capture_close(m, s, p + 1); goto done;
        case '$':
            if (p + 1 != m->p_end) break; /* a '$' inside the pattern is a plain character */
            s = s == m->src_end ? s : NULL;
            goto done;
        case PAT_ESC:
            if (p[1] == 'b') {
                if (!(s = match_balance(m, s, p + 2))) goto done;
                p += 4;
                continue;
            }
            if (p[1] == 'f') {
                p += 2;
                if (*p != '[') pat_error(m, "missing '[' after '%%f' in pattern", 0);
                const char *ep = item_end(m, p);
                int prev = s == m->src ? 0 : (unsigned char)s[-1];
                if (set_has(prev, p, ep - 1) || !set_has((unsigned char)*s, p, ep - 1)) { s = NULL; goto done; }
                p = ep;
                continue;
            }
            if (isdigit((unsigned char)p[1])) {
                if (!(s = match_backref(m, s, (unsigned char)p[1]))) goto done;
                p += 2;
                continue;
            }
            break;
        }
        const char *ep = item_end(m, p); /* a single class, then maybe a quantifier */
        int q = *ep;
        if (!item_match(m, s, p, ep)) {
            if (q == '*' || q == '?' || q == '-') { p = ep + 1; continue; } /* zero times */
            s = NULL;
            goto done;
        }
        if (q == '?') {
            const char *r = match(m, s + 1, ep + 1);
            if (r) { s = r; goto done; }
            p = ep + 1;
            continue;
        }
        if (q == '+' || q == '*') { s = repeat_max(m, q == '+' ? s + 1 : s, p, ep); goto done; }
        if (q == '-') { s = repeat_min(m, s, p, ep); goto done; }
        s++; /* exactly once */
        p = ep;
    }
done:
    m->depth++;
    return s;
}

/* ---- results ------------------------------------------------------------- */

static void match_reset(Match *m) {
    m->level = 0;
    m->depth = MAX_DEPTH;
}

static void match_init(Match *m, lua_State *L, const LuapatBudget *b, const char *s, size_t ls,
                       const char *p, size_t lp) {
    m->L = L;
    m->b = b;
    m->src = s;
    m->src_end = s + ls;
    m->p_end = p + lp;
    match_reset(m);
    steps_begin(m);
}

/* Pushes capture k of a match [s, e) (k = 0 with no captures: the whole match). */
static void push_capture(Match *m, int k, const char *s, const char *e) {
    if (k >= m->level) {
        if (k != 0) luaL_error(m->L, "invalid capture index %%%d", k + 1);
        lua_pushlstring(m->L, s, (size_t)(e - s));
        return;
    }
    ptrdiff_t len = m->cap[k].len;
    if (len == CAP_OPEN) luaL_error(m->L, "unfinished capture");
    if (len == CAP_POS) lua_pushinteger(m->L, (m->cap[k].init - m->src) + 1);
    else lua_pushlstring(m->L, m->cap[k].init, (size_t)len);
}

/* Pushes all captures (or the whole match when there are none and s is set). */
static int push_captures(Match *m, const char *s, const char *e) {
    steps_charge(m);
    int n = (m->level == 0 && s) ? 1 : m->level;
    luaL_checkstack(m->L, n, "too many captures");
    for (int k = 0; k < n; k++) push_capture(m, k, s, e);
    return n;
}

/* ---- string.find, string.match ------------------------------------------- */

/* A 1-based, possibly negative position as a 0-based offset (may exceed len). */
static size_t start_offset(lua_Integer pos, size_t len) {
    if (pos > 0) return (size_t)pos - 1;
    if (pos == 0 || pos < -(lua_Integer)len) return 0;
    return len + (size_t)pos;
}

/* Does the pattern (which may hold NULs) use no special character? */
static int is_plain(const char *p, size_t lp) {
    for (size_t i = 0; i < lp; i++)
        if (p[i] && strchr(SPECIALS, p[i])) return 0;
    return 1;
}

static int find_or_match(lua_State *L, int find) {
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_offset(luaL_optinteger(L, 3, 1), ls);
    if (init > ls) {
        luaL_pushfail(L);
        return 1;
    }
    if (find && (lua_toboolean(L, 4) || is_plain(p, lp))) {
        const char *at = lp == 0 ? s + init : memmem(s + init, ls - init, p, lp);
        /* linear, so never stopped midway; charged so that a loop of them is not free */
        const LuapatBudget *b = budget_of(L, 1);
        size_t scanned = at ? (size_t)(at - (s + init)) + lp : ls - init;
        if (b->charge && scanned >= BYTES_PER_STEP) b->charge(L, b->ud, (long)(scanned / BYTES_PER_STEP));
        if (!at) {
            luaL_pushfail(L);
            return 1;
        }
        lua_pushinteger(L, (at - s) + 1);
        lua_pushinteger(L, (lua_Integer)((size_t)(at - s) + lp));
        return 2;
    }
    int anchor = *p == '^';
    if (anchor) { p++; lp--; }
    Match m;
    match_init(&m, L, budget_of(L, 1), s, ls, p, lp);
    const char *from = s + init;
    do {
        match_reset(&m);
        const char *e = match(&m, from, p);
        if (e) {
            if (!find) return push_captures(&m, from, e);
            lua_pushinteger(L, (from - s) + 1);
            lua_pushinteger(L, e - s);
            return push_captures(&m, NULL, NULL) + 2;
        }
    } while (from++ < m.src_end && !anchor);
    steps_charge(&m);
    luaL_pushfail(L);
    return 1;
}

static int pat_find(lua_State *L) { return find_or_match(L, 1); }
static int pat_match(lua_State *L) { return find_or_match(L, 0); }

/* ---- string.gmatch ------------------------------------------------------- */

typedef struct GmatchState {
    Match m;
    const char *from;      /* where the next search starts */
    const char *last;      /* end of the last match (an empty match there is skipped) */
    const char *p;
} GmatchState;

/* Upvalues: subject, pattern, state, budget. '^' is an ordinary character here. */
static int gmatch_next(lua_State *L) {
    GmatchState *g = lua_touserdata(L, lua_upvalueindex(3));
    Match *m = &g->m;
    m->L = L; /* the iterator may run in another coroutine */
    steps_begin(m);
    for (const char *from = g->from; from <= m->src_end; from++) {
        match_reset(m);
        const char *e = match(m, from, g->p);
        if (e && e != g->last) {
            g->from = g->last = e;
            return push_captures(m, from, e);
        }
    }
    g->from = m->src_end + 1; /* exhausted: later calls return nothing at once */
    steps_charge(m);
    return 0;
}

static int pat_gmatch(lua_State *L) {
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_offset(luaL_optinteger(L, 3, 1), ls);
    if (init > ls) init = ls + 1;
    lua_settop(L, 2); /* the closure keeps both strings alive */
    GmatchState *g = lua_newuserdatauv(L, sizeof *g, 0);
    const LuapatBudget *b = budget_of(L, 1);
    g->m = (Match){.L = L, .b = b, .src = s, .src_end = s + ls, .p_end = p + lp};
    g->from = s + init;
    g->last = NULL;
    g->p = p;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushcclosure(L, gmatch_next, 4);
    return 1;
}

/* ---- string.gsub --------------------------------------------------------- */

/* Appends a replacement string: %0 the match, %1-%9 captures, %% a '%'. */
static void gsub_add_string(Match *m, luaL_Buffer *b, const char *s, const char *e) {
    lua_State *L = m->L;
    size_t n;
    const char *r = lua_tolstring(L, 3, &n);
    const char *pct;
    while ((pct = memchr(r, PAT_ESC, n)) != NULL) {
        luaL_addlstring(b, r, (size_t)(pct - r));
        char d = pct[1]; /* NUL when '%' ends the string */
        if (d == PAT_ESC) {
            luaL_addchar(b, PAT_ESC);
        } else if (d == '0') {
            luaL_addlstring(b, s, (size_t)(e - s));
        } else if (isdigit((unsigned char)d)) {
            push_capture(m, d - '1', s, e);
            luaL_addvalue(b); /* converts a position capture (a number) */
        } else {
            luaL_error(L, "invalid use of '%c' in replacement string", PAT_ESC);
        }
        n -= (size_t)(pct + 2 - r);
        r = pct + 2;
    }
    luaL_addlstring(b, r, n);
}

/* Appends the replacement of match [s, e); returns whether the text changed. */
static int gsub_add(Match *m, luaL_Buffer *b, const char *s, const char *e, int rtype) {
    lua_State *L = m->L;
    steps_charge(m);
    if (rtype == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        int n = push_captures(m, s, e);
        lua_call(L, n, 1);
    } else if (rtype == LUA_TTABLE) {
        push_capture(m, 0, s, e);
        lua_gettable(L, 3);
    } else {
        gsub_add_string(m, b, s, e);
        return 1;
    }
    if (!lua_toboolean(L, -1)) { /* nil or false: keep the matched text */
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
        return 0;
    }
    if (!lua_isstring(L, -1)) return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    luaL_addvalue(b);
    return 1;
}

static int pat_gsub(lua_State *L) {
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    int rtype = lua_type(L, 3);
    lua_Integer max_n = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    luaL_argexpected(L, rtype == LUA_TNUMBER || rtype == LUA_TSTRING || rtype == LUA_TFUNCTION || rtype == LUA_TTABLE,
                     3, "string/function/table");
    int anchor = *p == '^';
    if (anchor) { p++; lp--; }
    const LuapatBudget *bud = budget_of(L, 1);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    Match m;
    match_init(&m, L, bud, s, ls, p, lp);
    const char *from = s, *last = NULL;
    const char *copied = s; /* subject text before this is in the buffer */
    lua_Integer n = 0;
    int changed = 0;
    while (n < max_n) {
        match_reset(&m);
        const char *e = match(&m, from, p);
        if (e && e != last) {
            n++;
            luaL_addlstring(&b, copied, (size_t)(from - copied));
            changed |= gsub_add(&m, &b, from, e, rtype);
            from = last = copied = e;
        } else if (from < m.src_end) {
            from++;
        } else {
            break;
        }
        if (anchor) break;
    }
    steps_charge(&m);
    if (!changed) {
        lua_pushvalue(L, 1); /* the subject itself (a number stays a number) */
    } else {
        luaL_addlstring(&b, copied, (size_t)(m.src_end - copied));
        luaL_pushresult(&b);
    }
    lua_pushinteger(L, n);
    return 2;
}

/* ---- installation -------------------------------------------------------- */

void luapat_install(lua_State *L, int idx, const LuapatBudget *b) {
    static const luaL_Reg fns[] = {
        {"find", pat_find}, {"match", pat_match}, {"gmatch", pat_gmatch}, {"gsub", pat_gsub}, {NULL, NULL}};
    idx = lua_absindex(L, idx);
    LuapatBudget *copy = lua_newuserdatauv(L, sizeof *copy, 0);
    *copy = b ? *b : (LuapatBudget){.call_cap = LUAPAT_CALL_CAP};
    if (copy->call_cap <= 0) copy->call_cap = LUAPAT_CALL_CAP;
    for (const luaL_Reg *f = fns; f->name; f++) {
        lua_pushvalue(L, -1);
        lua_pushcclosure(L, f->func, 1);
        lua_setfield(L, idx, f->name);
    }
    lua_pop(L, 1);
}
