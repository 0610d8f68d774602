/* lib_sandbox: grpo.sandbox, model-written code run through sandbox/sandbox.h.
 *
 *   grpo.sandbox.run{code = "...", lang = "python" | "c" | "shell", stdin = "...",
 *                    args = {...}, files = {["name"] = "data"}, timeout = 10, memory_mb = 1024}
 *     -> {ok, status, exit_code, stdout, stderr, wall_ms, cpu_ms, isolation, message}
 *   grpo.sandbox.humaneval{program = prompt .. completion, test = row.test,
 *                          entry_point = row.entry_point, timeout = 10}
 *     -> same table plus passed (asserts ran to the end: exit 0 and the run's nonce printed)
 * status is one of DESIGN.md §5's names (ok, runtime_error, timeout, memory,
 * output_limit, killed, sandbox_error). What the program does is reported,
 * never raised; only argument mistakes raise. Time in the sandbox is outside
 * the Lua instruction budget (the sandbox's own timeout bounds it).
 * Built only when sandbox/ is (GRPO_REWARDS_SANDBOX); otherwise grpo.sandbox
 * is absent and scripts can test `if grpo.sandbox then`. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "grpolib.h"
#include "luaenv.h"

#ifdef GRPO_REWARDS_SANDBOX
#include "sandbox/sandbox.h"
#include "sandbox/sandbox_cases.h"

enum { MAX_ARGS = 32, MAX_FILES = 16 };

static double num_field(lua_State *L, const char *k, double def) {
    int t = lua_getfield(L, 1, k);
    double v = def;
    if (t == LUA_TNUMBER) v = lua_tonumber(L, -1);
    else if (t != LUA_TNIL) luaL_error(L, "grpo.sandbox: '%s' must be a number", k);
    lua_pop(L, 1);
    return v;
}

/* Strings stay alive in the argument table while the run lasts. */
static const char *str_field(lua_State *L, const char *k, size_t *len) {
    int t = lua_getfield(L, 1, k);
    const char *s = NULL;
    if (t == LUA_TSTRING) s = lua_tolstring(L, -1, len);
    else if (t != LUA_TNIL) luaL_error(L, "grpo.sandbox: '%s' must be a string", k);
    lua_pop(L, 1);
    return s;
}

static void push_result(lua_State *L, const SandboxResult *r) {
    lua_createtable(L, 0, 10);
    lua_pushboolean(L, r->status == SANDBOX_OK);
    lua_setfield(L, -2, "ok");
    lua_pushstring(L, sandbox_status_name(r->status));
    lua_setfield(L, -2, "status");
    lua_pushinteger(L, r->exit_code);
    lua_setfield(L, -2, "exit_code");
    lua_pushlstring(L, r->out ? r->out : "", r->out ? r->out_len : 0);
    lua_setfield(L, -2, "stdout");
    lua_pushlstring(L, r->err ? r->err : "", r->err ? r->err_len : 0);
    lua_setfield(L, -2, "stderr");
    lua_pushinteger(L, r->wall_ms);
    lua_setfield(L, -2, "wall_ms");
    lua_pushinteger(L, r->cpu_ms);
    lua_setfield(L, -2, "cpu_ms");
    lua_pushstring(L, r->isolation ? r->isolation : "");
    lua_setfield(L, -2, "isolation");
    lua_pushstring(L, r->message);
    lua_setfield(L, -2, "message");
}

static void base_config(lua_State *L, SandboxConfig *c) {
    memset(c, 0, sizeof *c);
    const char *lang = str_field(L, "lang", NULL);
    if (lang && sandbox_lang_parse(lang, &c->lang)) luaL_error(L, "grpo.sandbox: unknown lang '%s'", lang);
    c->timeout_s = num_field(L, "timeout", 10);
    c->memory_mb = (long)num_field(L, "memory_mb", 1024);
    c->output_cap = (size_t)num_field(L, "output_cap", 1 << 20);
    c->slot = luaenv_of(L)->slot % SANDBOX_MAX_SLOTS;
}

/* Runs cfg and pushes the result table; the sandbox's own errors become status sandbox_error. */
static SandboxResult *run_config(lua_State *L, const SandboxConfig *c) {
    SandboxResult *r = lua_newuserdatauv(L, sizeof *r, 0); /* freed by Lua's GC; strings freed below */
    memset(r, 0, sizeof *r);
    Err err = {0};
    if (sandbox_run(c, r, &err)) {
        sandbox_result_free(r);
        memset(r, 0, sizeof *r);
        r->status = SANDBOX_ERROR;
        snprintf(r->message, sizeof r->message, "%s", err.msg);
    }
    return r;
}

static int sb_run(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    SandboxConfig c;
    base_config(L, &c);
    size_t len;
    c.code = str_field(L, "code", NULL);
    if (!c.code) return luaL_error(L, "grpo.sandbox.run: 'code' (a string) is required");
    c.stdin_data = str_field(L, "stdin", &len);
    c.stdin_len = c.stdin_data ? len : 0;
    const char *args[MAX_ARGS];
    SandboxFile files[MAX_FILES];
    if (lua_getfield(L, 1, "args") == LUA_TTABLE) {
        for (int i = 1; i <= MAX_ARGS && lua_rawgeti(L, -1, i) == LUA_TSTRING; i++) {
            args[c.nargs++] = lua_tostring(L, -1);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (lua_getfield(L, 1, "files") == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, -2) && c.nfiles < MAX_FILES) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                return luaL_error(L, "grpo.sandbox.run: files must map names to strings");
            files[c.nfiles].name = lua_tostring(L, -2);
            files[c.nfiles].data = lua_tolstring(L, -1, &files[c.nfiles].len);
            c.nfiles++;
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    c.args = c.nargs ? args : NULL;
    c.files = c.nfiles ? files : NULL;
    SandboxResult *r = run_config(L, &c);
    push_result(L, r);
    sandbox_result_free(r);
    return 1;
}

static int sb_humaneval(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    SandboxConfig c;
    base_config(L, &c);
    const char *program = str_field(L, "program", NULL), *test = str_field(L, "test", NULL);
    const char *entry = str_field(L, "entry_point", NULL);
    if (!program || !test || !entry)
        return luaL_error(L, "grpo.sandbox.humaneval: 'program', 'test' and 'entry_point' are required");
    char nonce[33];
    Err err = {0};
    char *code = sandbox_assert_program(program, test, entry, nonce, &err);
    if (!code) return luaL_error(L, "grpo.sandbox.humaneval: %s", err.msg);
    c.lang = SANDBOX_PYTHON;
    c.code = code;
    SandboxResult *r = run_config(L, &c);
    free(code);
    int passed = sandbox_assert_passed(r, nonce);
    push_result(L, r);
    sandbox_result_free(r);
    lua_pushboolean(L, passed);
    lua_setfield(L, -2, "passed");
    return 1;
}

int grpo_open_sandbox(lua_State *L) {
    static const luaL_Reg fns[] = {{"run", sb_run}, {"humaneval", sb_humaneval}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
#else
int grpo_open_sandbox(lua_State *L) {
    (void)L;
    return 0; /* no sandbox layer in this build: grpo.sandbox stays nil */
}
#endif
