/* lib_re: grpo.re, PCRE2 regular expressions for reward scripts.
 *
 *   grpo.re.match(s, pat [, flags])       -> captures (or the whole match) | nil
 *   grpo.re.find(s, pat [, init [, flags]]) -> start, end, captures... | nil
 *   grpo.re.gmatch(s, pat [, flags])      -> iterator over matches (captures or whole)
 *   grpo.re.gsub(s, pat, repl [, flags])  -> string, count   (repl: "$1", "${name}")
 *   grpo.re.count(s, pat [, flags])       -> number of non-overlapping matches
 * flags: i (caseless), s (dot matches newline), m (multiline), x (extended).
 * Patterns are UTF-8 with Unicode classes; invalid UTF-8 in the subject does
 * not fail. Compiled patterns are cached per Lua state (JIT when available).
 * A match limit bounds backtracking; hitting it raises an error. Positions are
 * 1-based byte offsets as in string.find. */
#include <stdint.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <lauxlib.h>
#include <pcre2.h>

#include "grpolib.h"

/* PCRE2 allocates with malloc, outside the Lua memory cap, so patterns are
 * bounded in length and the cache in entries (it is dropped when full). */
enum { RE_MATCH_LIMIT = 10000000, RE_DEPTH_LIMIT = 10000, RE_HEAP_LIMIT_KB = 32768,
       RE_MAX_PATTERN = 65536, RE_CACHE_MAX = 512 };

typedef struct Re {
    pcre2_code *code;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
} Re;

static const char RE_CACHE = 0;       /* registry key of the per-state cache */
static const char RE_CACHE_COUNT = 0; /* registry key of its entry count */

/* Pushes the cache table, replacing it by an empty one when it is full. */
static void push_cache(lua_State *L, int adding) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &RE_CACHE_COUNT);
    lua_Integer n = lua_tointeger(L, -1) + adding;
    lua_pop(L, 1);
    if (n > RE_CACHE_MAX) {
        lua_newtable(L);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &RE_CACHE); /* the old entries are collected */
        n = 1;
    }
    if (adding) {
        lua_pushinteger(L, n);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &RE_CACHE_COUNT);
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &RE_CACHE);
}

static int re_gc(lua_State *L) {
    Re *r = lua_touserdata(L, 1);
    if (r->md) pcre2_match_data_free(r->md);
    if (r->mctx) pcre2_match_context_free(r->mctx);
    if (r->code) pcre2_code_free(r->code);
    r->md = NULL; r->mctx = NULL; r->code = NULL;
    return 0;
}

static uint32_t parse_flags(lua_State *L, const char *f) {
    uint32_t o = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
    for (; f && *f; f++) {
        switch (*f) {
        case 'i': o |= PCRE2_CASELESS; break;
        case 's': o |= PCRE2_DOTALL; break;
        case 'm': o |= PCRE2_MULTILINE; break;
        case 'x': o |= PCRE2_EXTENDED; break;
        default: luaL_error(L, "grpo.re: unknown flag '%c' (use i, s, m, x)", *f);
        }
    }
    return o;
}

/* Returns the compiled pattern for (pat, flags), compiling it on first use. */
static Re *re_get(lua_State *L, int pat_idx, const char *flags) {
    size_t plen;
    const char *pat = luaL_checklstring(L, pat_idx, &plen);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &RE_CACHE);
    if (flags && *flags) lua_pushfstring(L, "%s\n%s", flags, pat);
    else lua_pushvalue(L, pat_idx);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) == LUA_TUSERDATA) {
        Re *r = lua_touserdata(L, -1);
        lua_pop(L, 3);
        return r;
    }
    lua_pop(L, 1);
    if (plen > RE_MAX_PATTERN) luaL_error(L, "grpo.re: pattern longer than %d bytes", RE_MAX_PATTERN);
    Re *r = lua_newuserdatauv(L, sizeof *r, 0);
    memset(r, 0, sizeof *r);
    luaL_setmetatable(L, "grpo.re");
    int ec;
    PCRE2_SIZE eo;
    r->code = pcre2_compile((PCRE2_SPTR)pat, plen, parse_flags(L, flags), &ec, &eo, NULL);
    if (!r->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        luaL_error(L, "grpo.re: bad pattern at offset %d: %s", (int)eo, (const char *)msg);
    }
    pcre2_jit_compile(r->code, PCRE2_JIT_COMPLETE); /* falls back to the interpreter on failure */
    r->md = pcre2_match_data_create_from_pattern(r->code, NULL);
    r->mctx = pcre2_match_context_create(NULL);
    if (!r->md || !r->mctx) luaL_error(L, "grpo.re: out of memory");
    pcre2_set_match_limit(r->mctx, RE_MATCH_LIMIT);
    pcre2_set_depth_limit(r->mctx, RE_DEPTH_LIMIT);
    pcre2_set_heap_limit(r->mctx, RE_HEAP_LIMIT_KB);
    /* stack: cache, key, r -> store in the (possibly fresh) cache */
    push_cache(L, 1);
    lua_insert(L, -3);
    lua_rawset(L, -3); /* cache[key] = r (pops key and r) */
    lua_pop(L, 2);     /* the current cache and the one looked up first */
    return r;
}

/* Runs one match at byte offset start; returns 1 on match, 0 on none. */
static int re_exec(lua_State *L, Re *r, const char *s, size_t len, size_t start) {
    int rc = pcre2_match(r->code, (PCRE2_SPTR)s, len, start, 0, r->md, r->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        return luaL_error(L, "grpo.re: match failed: %s", (const char *)msg);
    }
    return 1;
}

/* Pushes the captures (or the whole match when there are none); unset groups are false. */
static int push_captures(lua_State *L, Re *r, const char *s, int whole_if_none) {
    uint32_t n = pcre2_get_ovector_count(r->md);
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md);
    uint32_t groups;
    pcre2_pattern_info(r->code, PCRE2_INFO_CAPTURECOUNT, &groups);
    if (groups == 0) {
        if (!whole_if_none) return 0;
        lua_pushlstring(L, s + ov[0], ov[1] - ov[0]);
        return 1;
    }
    luaL_checkstack(L, (int)groups, "too many captures");
    for (uint32_t g = 1; g <= groups; g++) {
        if (g < n && ov[2 * g] != PCRE2_UNSET) lua_pushlstring(L, s + ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
        else lua_pushboolean(L, 0);
    }
    return (int)groups;
}

static int re_match(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    Re *r = re_get(L, 2, luaL_optstring(L, 3, NULL));
    if (!re_exec(L, r, s, len, 0)) { lua_pushnil(L); return 1; }
    return push_captures(L, r, s, 1);
}

static int re_find(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_Integer init = luaL_optinteger(L, 3, 1);
    Re *r = re_get(L, 2, luaL_optstring(L, 4, NULL));
    if (init < 0) init = (lua_Integer)len + init + 1;
    if (init < 1) init = 1;
    if ((size_t)init > len + 1) { lua_pushnil(L); return 1; }
    if (!re_exec(L, r, s, len, (size_t)init - 1)) { lua_pushnil(L); return 1; }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md);
    lua_pushinteger(L, (lua_Integer)ov[0] + 1);
    lua_pushinteger(L, (lua_Integer)ov[1]);
    return 2 + push_captures(L, r, s, 0);
}

static int re_count(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    Re *r = re_get(L, 2, luaL_optstring(L, 3, NULL));
    size_t pos = 0;
    lua_Integer count = 0;
    while (pos <= len && re_exec(L, r, s, len, pos)) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md);
        count++;
        pos = ov[1] > ov[0] ? ov[1] : ov[1] + 1;
    }
    lua_pushinteger(L, count);
    return 1;
}

/* gmatch state in upvalues: subject, Re userdata, position. */
static int gmatch_next(lua_State *L) {
    size_t len;
    const char *s = lua_tolstring(L, lua_upvalueindex(1), &len);
    Re *r = lua_touserdata(L, lua_upvalueindex(2));
    lua_Integer pos = lua_tointeger(L, lua_upvalueindex(3));
    if (pos < 0 || (size_t)pos > len || !re_exec(L, r, s, len, (size_t)pos)) return 0;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md);
    lua_pushinteger(L, (lua_Integer)(ov[1] > ov[0] ? ov[1] : ov[1] + 1));
    lua_replace(L, lua_upvalueindex(3));
    return push_captures(L, r, s, 1);
}

static int re_gmatch(lua_State *L) {
    luaL_checkstring(L, 1);
    const char *flags = luaL_optstring(L, 3, NULL);
    re_get(L, 2, flags);
    /* fetch the userdata itself from the cache for the upvalue */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &RE_CACHE);
    if (flags && *flags) lua_pushfstring(L, "%s\n%s", flags, lua_tostring(L, 2));
    else lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    lua_pushvalue(L, 1);
    lua_insert(L, -2);
    lua_pushinteger(L, 0);
    lua_pushcclosure(L, gmatch_next, 3);
    return 1;
}

static int re_gsub(lua_State *L) {
    size_t len, rlen;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *repl = luaL_checklstring(L, 3, &rlen);
    Re *r = re_get(L, 2, luaL_optstring(L, 4, NULL));
    PCRE2_SIZE outlen = len + rlen + 64;
    for (int attempt = 0; attempt < 2; attempt++) {
        luaL_Buffer b;
        char *out = luaL_buffinitsize(L, &b, outlen + 1);
        PCRE2_SIZE cap = outlen + 1;
        int rc = pcre2_substitute(r->code, (PCRE2_SPTR)s, len, 0,
                                  PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH, r->md,
                                  r->mctx, (PCRE2_SPTR)repl, rlen, (PCRE2_UCHAR *)out, &cap);
        if (rc == PCRE2_ERROR_NOMEMORY && attempt == 0) {
            lua_pop(L, 1); /* the buffer box */
            outlen = cap;
            continue;
        }
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return luaL_error(L, "grpo.re.gsub: %s", (const char *)msg);
        }
        luaL_pushresultsize(&b, cap);
        lua_pushinteger(L, rc);
        return 2;
    }
    return luaL_error(L, "grpo.re.gsub: output size changed between passes");
}

int grpo_open_re(lua_State *L) {
    if (luaL_newmetatable(L, "grpo.re")) {
        lua_pushcfunction(L, re_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushliteral(L, "locked");
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &RE_CACHE);
    static const luaL_Reg fns[] = {{"match", re_match}, {"find", re_find},   {"gmatch", re_gmatch},
                                   {"gsub", re_gsub},   {"count", re_count}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
