/* test_luapat_diff: the differential harness shared by test_luapat.c and
 * tests/fuzz/fuzz_luapat.c. One case (a string-library call with its
 * arguments, or a Lua chunk) runs in two plain Lua 5.4 states, the stock one
 * and one whose string.find/match/gmatch/gsub are rewards/luapat.c's; each
 * outcome (every return value with its exact type, gmatch's whole iteration,
 * or the error message) is written as text, and the two texts must be equal.
 * Ours runs first: when it stops at its step cap the stock call is skipped
 * (the stock matcher could run for hours on the same input). */
#ifndef GRPO_TEST_LUAPAT_DIFF_H
#define GRPO_TEST_LUAPAT_DIFF_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "rewards/luapat.h"

typedef struct LdText {
    char *s;
    size_t n, cap;
} LdText;

static void ld_put(LdText *t, const char *s, size_t n) {
    if (t->n + n + 1 > t->cap) {
        t->cap = (t->n + n + 1) * 2;
        t->s = realloc(t->s, t->cap);
        if (!t->s) { perror("realloc"); exit(1); }
    }
    memcpy(t->s + t->n, s, n);
    t->n += n;
    t->s[t->n] = 0;
}

static void ld_putf(LdText *t, const char *fmt, long long v) {
    char b[64];
    int n = snprintf(b, sizeof b, fmt, v);
    ld_put(t, b, (size_t)n);
}

/* Globals both states share: a replacement table and function for gsub, and
 * G(...) which runs a whole gmatch iteration into one string. */
static const char ld_prelude[] =
    "T = {a = '<A>', b = 7, c = false, x = {}, ab = 2.5, ['1'] = 'one', [''] = 'E'}\n"
    "F = function(...)\n"
    "  local n = select('#', ...)\n"
    "  local a = ...\n"
    "  if a == 'x' then return nil elseif a == 'y' then return {} elseif a == 'z' then return false end\n"
    "  local t = {}\n"
    "  for i = 1, n do local v = select(i, ...) t[i] = math.type(v) or type(v) t[i] = t[i] .. ':' .. tostring(v) end\n"
    "  return '[' .. table.concat(t, ',') .. ']'\n"
    "end\n"
    "G = function(...)\n"
    "  local it = string.gmatch(...)\n"
    "  local r = {}\n"
    "  for i = 1, 100 do\n"
    "    local x = table.pack(it())\n"
    "    if x[1] == nil then break end\n"
    "    for j = 1, x.n do x[j] = (math.type(x[j]) or type(x[j])) .. ':' .. tostring(x[j]) end\n"
    "    r[#r + 1] = table.concat(x, ',', 1, x.n)\n"
    "  end\n"
    "  return table.concat(r, ';')\n"
    "end\n";

/* A state with the stock library (ours = 0) or with luapat installed with
 * call_cap steps per call. */
static lua_State *ld_state(int ours, long call_cap) {
    lua_State *L = luaL_newstate();
    if (!L) { fprintf(stderr, "luaL_newstate failed\n"); exit(1); }
    luaL_openlibs(L);
    if (ours) {
        LuapatBudget b = {.call_cap = call_cap};
        lua_getglobal(L, "string");
        luapat_install(L, -1, &b);
        lua_pop(L, 1);
    }
    if (luaL_dostring(L, ld_prelude) != LUA_OK) {
        fprintf(stderr, "prelude: %s\n", lua_tostring(L, -1));
        exit(1);
    }
    return L;
}

/* Appends the values at stack [from, top] to t. */
static void ld_values(lua_State *L, int from, LdText *t) {
    int top = lua_gettop(L);
    ld_putf(t, "#%lld", top - from + 1);
    for (int i = from; i <= top; i++) {
        size_t n;
        const char *s;
        switch (lua_type(L, i)) {
        case LUA_TSTRING:
            s = lua_tolstring(L, i, &n);
            ld_putf(t, " s%lld:", (long long)n);
            ld_put(t, s, n);
            break;
        case LUA_TNUMBER:
            if (lua_isinteger(L, i)) {
                ld_putf(t, " i%lld", (long long)lua_tointeger(L, i));
            } else {
                char b[64];
                ld_put(t, b, (size_t)snprintf(b, sizeof b, " f%.17g", lua_tonumber(L, i)));
            }
            break;
        case LUA_TBOOLEAN: ld_put(t, lua_toboolean(L, i) ? " true" : " false", lua_toboolean(L, i) ? 5 : 6); break;
        case LUA_TNIL: ld_put(t, " nil", 4); break;
        default: ld_put(t, " ", 1); ld_put(t, luaL_typename(L, i), strlen(luaL_typename(L, i)));
        }
    }
}

/* Runs the function and its nargs arguments on top; appends the outcome. A
 * returned function (gmatch's iterator) is called until it returns nothing
 * or nil, at most 64 times. */
static void ld_call(lua_State *L, int nargs, LdText *t) {
    int base = lua_gettop(L) - nargs;
    if (lua_pcall(L, nargs, LUA_MULTRET, 0) != LUA_OK) {
        ld_put(t, "E:", 2);
        ld_values(L, base, t);
        lua_settop(L, base - 1);
        return;
    }
    ld_values(L, base, t);
    if (lua_gettop(L) == base && lua_type(L, base) == LUA_TFUNCTION) {
        for (int k = 0; k < 64; k++) {
            lua_pushvalue(L, base);
            int st = lua_pcall(L, 0, LUA_MULTRET, 0);
            ld_put(t, st == LUA_OK ? " |" : " |E:", st == LUA_OK ? 2 : 4);
            ld_values(L, base + 1, t);
            int done = st != LUA_OK || lua_gettop(L) == base || lua_isnil(L, base + 1);
            lua_settop(L, base);
            if (done) break;
        }
    }
    lua_settop(L, base - 1);
}

/* Runs a chunk ("return ...") and appends its outcome. */
static inline void ld_chunk(lua_State *L, const char *code, LdText *t) {
    if (luaL_loadstring(L, code) != LUA_OK) {
        ld_put(t, "SYNTAX:", 7);
        ld_values(L, lua_gettop(L), t);
        lua_pop(L, 1);
        return;
    }
    ld_call(L, 0, t);
}

/* One argument of a generated call. */
typedef enum { LD_NONE, LD_NIL, LD_STR, LD_INT, LD_FLT, LD_TRUE, LD_FALSE, LD_T, LD_F, LD_EMPTY } LdKind;
typedef struct LdArg {
    LdKind kind;
    const char *s; /* LD_STR: bytes (may hold NULs) */
    size_t n;
    long long i;
    double f;
} LdArg;

static const char *const ld_fn[4] = {"find", "match", "gmatch", "gsub"};

/* Calls string.<ld_fn[fn]>(args...) (trailing LD_NONE are left out). */
static void ld_run(lua_State *L, int fn, const LdArg *a, int nargs, LdText *t) {
    while (nargs > 0 && a[nargs - 1].kind == LD_NONE) nargs--;
    lua_getglobal(L, "string");
    lua_getfield(L, -1, ld_fn[fn]);
    lua_remove(L, -2);
    for (int k = 0; k < nargs; k++) {
        switch (a[k].kind) {
        case LD_NONE:
        case LD_NIL: lua_pushnil(L); break;
        case LD_STR: lua_pushlstring(L, a[k].s, a[k].n); break;
        case LD_INT: lua_pushinteger(L, a[k].i); break;
        case LD_FLT: lua_pushnumber(L, a[k].f); break;
        case LD_TRUE: lua_pushboolean(L, 1); break;
        case LD_FALSE: lua_pushboolean(L, 0); break;
        case LD_T: lua_getglobal(L, "T"); break;
        case LD_F: lua_getglobal(L, "F"); break;
        case LD_EMPTY: lua_newtable(L); break;
        }
    }
    ld_call(L, nargs, t);
}

/* Texts hold NULs (subjects and captures may): compare and search by length. */
static int ld_capped(const LdText *t) {
    static const char msg[] = "pattern matching step limit exceeded";
    for (size_t i = 0; i + sizeof msg - 1 <= t->n; i++)
        if (memcmp(t->s + i, msg, sizeof msg - 1) == 0) return 1;
    return 0;
}

static int ld_same(const LdText *a, const LdText *b) {
    return a->n == b->n && (a->n == 0 || memcmp(a->s, b->s, a->n) == 0);
}

/* Writes t to f with NULs and other control bytes as \ddd. */
static void ld_print(FILE *f, const LdText *t) {
    for (size_t i = 0; i < t->n; i++) {
        unsigned char c = (unsigned char)t->s[i];
        if (c >= 32 && c < 127) fputc(c, f);
        else fprintf(f, "\\%03d", c);
    }
}

#endif
