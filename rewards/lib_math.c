/* lib_math: grpo.math, the Lua face of mathans.h.
 *   grpo.math.extract(text)   -> last \boxed{}, else "#### n", else <answer> content; or nil
 *   grpo.math.boxed(text), grpo.math.gsm8k(text), grpo.math.tag(text, name) -> string | nil
 *   grpo.math.normalize(ans)  -> the cleaned form equal() compares
 *   grpo.math.equal(a, b)     -> boolean (numeric and light symbolic equivalence)
 *   grpo.math.number(ans)     -> number | nil (constant answers only) */
#include <lauxlib.h>

#include "grpolib.h"
#include "mathans.h"

enum { OUT_MAX = 2048 };

static int push_or_nil(lua_State *L, int found, const char *s) {
    if (found) lua_pushstring(L, s);
    else lua_pushnil(L);
    return 1;
}

static int m_extract(lua_State *L) {
    char out[OUT_MAX];
    return push_or_nil(L, mathans_extract(luaL_checkstring(L, 1), out, sizeof out), out);
}
static int m_boxed(lua_State *L) {
    char out[OUT_MAX];
    return push_or_nil(L, mathans_boxed(luaL_checkstring(L, 1), out, sizeof out), out);
}
static int m_gsm8k(lua_State *L) {
    char out[OUT_MAX];
    return push_or_nil(L, mathans_gsm8k(luaL_checkstring(L, 1), out, sizeof out), out);
}
static int m_tag(lua_State *L) {
    char out[OUT_MAX];
    return push_or_nil(L, mathans_tag(luaL_checkstring(L, 1), luaL_checkstring(L, 2), out, sizeof out), out);
}
static int m_normalize(lua_State *L) {
    char out[OUT_MAX];
    mathans_normalize(luaL_checkstring(L, 1), out, sizeof out);
    lua_pushstring(L, out);
    return 1;
}
static int m_equal(lua_State *L) {
    lua_pushboolean(L, mathans_equal(luaL_checkstring(L, 1), luaL_checkstring(L, 2)));
    return 1;
}
static int m_number(lua_State *L) {
    double v;
    if (mathans_number(luaL_checkstring(L, 1), &v)) lua_pushnumber(L, v);
    else lua_pushnil(L);
    return 1;
}

int grpo_open_math(lua_State *L) {
    static const luaL_Reg fns[] = {{"extract", m_extract}, {"boxed", m_boxed},         {"gsm8k", m_gsm8k},
                                   {"tag", m_tag},         {"normalize", m_normalize}, {"equal", m_equal},
                                   {"number", m_number},   {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
