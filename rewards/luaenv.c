/* luaenv: see luaenv.h. */
#include "luaenv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "grpolib.h"
#include "luapat.h"

enum { HOOK_EVERY = 1000 }; /* instructions between count-hook firings */

LuaEnv *luaenv_of(lua_State *L) { return *(LuaEnv **)lua_getextraspace(L); }

/* The allocator: refuses any growth past mem_limit (Lua then raises a memory
 * error or runs an emergency collection and retries). */
static void *env_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    LuaEnv *e = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        e->mem_used -= old;
        return NULL;
    }
    if (nsize > old && e->mem_used + (nsize - old) > e->mem_limit) {
        e->mem_hit = 1;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (!p) { e->mem_hit = 1; return NULL; }
    e->mem_used = e->mem_used - old + nsize;
    return p;
}

/* Count hook. After the budget runs out it re-arms itself to fire on every
 * instruction of this coroutine (others fire within HOOK_EVERY), so an error
 * caught by pcall inside the script is raised again at once. */
static void env_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    LuaEnv *e = luaenv_of(L);
    if (!e->killed && ++e->ticks * (long)HOOK_EVERY + e->pat_steps < e->instr_limit) return;
    if (!e->killed) e->killed = 1;
    lua_sethook(L, env_hook, LUA_MASKCOUNT, 1);
    luaL_error(L, "instruction budget exceeded (%ld instructions)", e->instr_limit);
}

void luaenv_arm(LuaEnv *e) {
    e->ticks = 0;
    e->pat_steps = 0;
    e->killed = 0;
    e->mem_hit = 0;
    lua_sethook(e->L, env_hook, LUA_MASKCOUNT, HOOK_EVERY);
}

/* The pattern matcher's share of the instruction budget (luapat.h). */
static long pat_left(lua_State *L, void *ud) {
    (void)ud;
    LuaEnv *e = luaenv_of(L);
    return e->killed ? 0 : e->instr_limit - e->ticks * (long)HOOK_EVERY - e->pat_steps;
}

static void pat_charge(lua_State *L, void *ud, long n) {
    (void)ud;
    luaenv_of(L)->pat_steps += n;
}

static int ro_newindex(lua_State *L) {
    const char *k = lua_tostring(L, 2);
    return luaL_error(L, "attempt to modify a read-only table (key '%s')", k ? k : "?");
}

static int ro_pairs(lua_State *L) {
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "__index");
    lua_getglobal(L, "next"); /* the real next, from the hidden globals */
    lua_insert(L, -2);
    lua_pushnil(L);
    return 3;
}

void luaenv_push_readonly(lua_State *L, int idx) {
    idx = lua_absindex(L, idx);
    lua_newtable(L);                 /* proxy */
    lua_createtable(L, 0, 4);        /* its metatable */
    lua_pushvalue(L, idx);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, ro_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, ro_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
}

/* setmetatable without __gc (see luaenv.h). */
static int safe_setmetatable(lua_State *L) {
    if (lua_type(L, 2) == LUA_TTABLE) {
        if (lua_getfield(L, 2, "__gc") != LUA_TNIL)
            return luaL_error(L, "__gc metamethods are not allowed in reward scripts");
        lua_pop(L, 1);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* xpcall whose handler runs after the stack unwinds, like pcall + call.
 * The stock xpcall runs the handler with hooks off when the error came from
 * the budget hook, so a loop in the handler could never be stopped. */
static int safe_xpcall(lua_State *L) {
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 1);
    lua_insert(L, 3); /* f, h, f, args... */
    if (lua_pcall(L, n - 2, LUA_MULTRET, 0) == LUA_OK) {
        lua_pushboolean(L, 1);
        lua_insert(L, 3);
        return lua_gettop(L) - 2;
    }
    lua_pushvalue(L, 2);
    lua_insert(L, -2);
    lua_call(L, 1, 1); /* the handler's error, if any, propagates */
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
}

/* table.move whose range is bounded: the stock one loops in C over any range
 * (table.move(t, 1, 2^40, 2) copies nils for hours), out of the hook's reach. */
enum { MOVE_MAX = 1 << 24 };
static int safe_tablemove(lua_State *L) {
    lua_Integer f = luaL_checkinteger(L, 2), e = luaL_checkinteger(L, 3);
    if (e >= f && (lua_Unsigned)e - (lua_Unsigned)f >= MOVE_MAX)
        return luaL_error(L, "table.move: range of more than %d elements", MOVE_MAX);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int grpo_log(lua_State *L) {
    LuaEnv *e = luaenv_of(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addchar(&b, '[');
    luaL_addstring(&b, e->script_name ? e->script_name : "?");
    luaL_addstring(&b, "] ");
    int n = lua_gettop(L);
    for (int i = 1; i <= n; i++) {
        if (i > 1) luaL_addchar(&b, ' ');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    const char *line = lua_tostring(L, -1);
    if (e->log) e->log(e->log_ctx, line);
    else fprintf(stderr, "%s\n", line);
    return 0;
}

/* Removes a field from the table on top. */
static void drop(lua_State *L, const char *name) {
    lua_pushnil(L);
    lua_setfield(L, -2, name);
}

/* Replaces global lib (a table) by a read-only proxy of it. */
static void protect_global(lua_State *L, const char *lib) {
    lua_getglobal(L, lib);
    luaenv_push_readonly(L, -1);
    lua_setglobal(L, lib);
    lua_pop(L, 1);
}

/* Sets grpo.<name> to a read-only proxy of the table left by open (if any). */
static void add_grpo_part(lua_State *L, const char *name, int (*open)(lua_State *)) {
    if (open(L) == 0) return;
    luaenv_push_readonly(L, -1);
    lua_setfield(L, -3, name);
    lua_pop(L, 1);
}

static int env_setup(lua_State *L) {
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},         {LUA_STRLIBNAME, luaopen_string},
        {LUA_TABLIBNAME, luaopen_table},   {LUA_MATHLIBNAME, luaopen_math},
        {LUA_UTF8LIBNAME, luaopen_utf8},   {LUA_COLIBNAME, luaopen_coroutine},
        {NULL, NULL}};
    for (const luaL_Reg *l = libs; l->func; l++) {
        luaL_requiref(L, l->name, l->func, 1);
        lua_pop(L, 1);
    }
    lua_pushglobaltable(L);
    static const char *const banned[] = {"dofile", "loadfile", "load", "print", "collectgarbage",
                                         "rawset", "require", NULL};
    for (int i = 0; banned[i]; i++) drop(L, banned[i]);
    lua_getfield(L, -1, "setmetatable");
    lua_pushcclosure(L, safe_setmetatable, 1);
    lua_setfield(L, -2, "setmetatable");
    lua_pushcfunction(L, safe_xpcall);
    lua_setfield(L, -2, "xpcall");
    lua_pop(L, 1);

    /* string.dump makes binary chunks; the string metatable must not lead
     * back to the real string table. */
    lua_getglobal(L, LUA_STRLIBNAME);
    drop(L, "dump");
    /* step-limited find/match/gmatch/gsub; this table is also the string
     * metatable's __index, so s:find(...) gets them too */
    LuapatBudget pat_budget = {.call_cap = LUAPAT_CALL_CAP, .left = pat_left, .charge = pat_charge};
    luapat_install(L, -1, &pat_budget);
    lua_pop(L, 1);
    lua_getglobal(L, LUA_TABLIBNAME);
    lua_getfield(L, -1, "move");
    lua_pushcclosure(L, safe_tablemove, 1);
    lua_setfield(L, -2, "move");
    lua_pop(L, 1);
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);

    lua_newtable(L); /* grpo */
    lua_pushcfunction(L, grpo_log);
    lua_setfield(L, -2, "log");
    add_grpo_part(L, "re", grpo_open_re);
    add_grpo_part(L, "json", grpo_open_json);
    add_grpo_part(L, "math", grpo_open_math);
    add_grpo_part(L, "http", grpo_open_http);
    add_grpo_part(L, "sandbox", grpo_open_sandbox);
    lua_setglobal(L, "grpo");

    const char *libnames[] = {LUA_STRLIBNAME, LUA_TABLIBNAME, LUA_MATHLIBNAME, LUA_UTF8LIBNAME,
                              LUA_COLIBNAME, "grpo", NULL};
    for (int i = 0; libnames[i]; i++) protect_global(L, libnames[i]);
    lua_pushglobaltable(L);
    drop(L, LUA_GNAME); /* _G: each script's environment provides its own */
    lua_pop(L, 1);
    return 0;
}

LuaEnv *luaenv_new(size_t mem_limit, long instr_limit, Err *err) {
    LuaEnv *e = calloc(1, sizeof *e);
    if (!e) { err_set(err, ERR_WORK, "lua: out of memory"); return NULL; }
    e->mem_limit = mem_limit;
    e->instr_limit = instr_limit;
    e->L = lua_newstate(env_alloc, e);
    if (!e->L) {
        free(e);
        err_set(err, ERR_WORK, "lua: cannot create a state (memory limit %zu bytes)", mem_limit);
        return NULL;
    }
    *(LuaEnv **)lua_getextraspace(e->L) = e;
    lua_pushcfunction(e->L, env_setup);
    if (lua_pcall(e->L, 0, 0, 0) != LUA_OK) {
        err_set(err, ERR_WORK, "lua: setting up the state: %s", lua_tostring(e->L, -1));
        luaenv_free(e);
        return NULL;
    }
    return e;
}

void luaenv_free(LuaEnv *e) {
    if (!e) return;
    if (e->L) lua_close(e->L);
    free(e);
}

void luaenv_error_message(LuaEnv *e, int status, char *buf, size_t n) {
    const char *msg = lua_tostring(e->L, -1);
    if (!msg) msg = luaL_typename(e->L, -1);
    if (e->killed)
        snprintf(buf, n, "instruction budget exceeded (%ld instructions)", e->instr_limit);
    else if (status == LUA_ERRMEM || e->mem_hit)
        snprintf(buf, n, "memory limit exceeded (%zu MiB): %s", e->mem_limit >> 20, msg);
    else
        snprintf(buf, n, "%s", msg);
    lua_pop(e->L, 1);
}

/* The chunk on top gets a fresh environment { _G = itself } whose reads fall
 * through to the hidden (read-only) globals and whose writes fail. */
static void set_script_env(lua_State *L) {
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, LUA_GNAME);
    lua_createtable(L, 0, 4);
    lua_pushglobaltable(L);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, ro_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_setupvalue(L, -2, 1); /* _ENV */
}

static int run_chunk(LuaEnv *e, int status, const char *what, Err *err) {
    lua_State *L = e->L;
    char msg[900];
    if (status != LUA_OK) {
        luaenv_error_message(e, status, msg, sizeof msg);
        return err_set(err, ERR_INPUT, "%s", msg);
    }
    set_script_env(L);
    luaenv_arm(e);
    status = lua_pcall(L, 0, 1, 0);
    if (status != LUA_OK) {
        luaenv_error_message(e, status, msg, sizeof msg);
        return err_set(err, ERR_INPUT, "%s: running the script: %s", what, msg);
    }
    return 0;
}

int luaenv_dofile(LuaEnv *e, const char *path, Err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(err, ERR_INPUT, "%s: cannot open the reward script", path);
    fclose(f);
    char chunk[512];
    snprintf(chunk, sizeof chunk, "@%s", path);
    e->script_name = path;
    int status = luaL_loadfilex(e->L, path, "t");
    if (status == LUA_ERRFILE) {
        lua_pop(e->L, 1);
        return err_set(err, ERR_INPUT, "%s: cannot read the reward script", path);
    }
    if (status != LUA_OK && strstr(lua_tostring(e->L, -1), "binary chunk")) {
        lua_pop(e->L, 1);
        return err_set(err, ERR_INPUT, "%s: is a binary (precompiled) chunk; only Lua source is accepted", path);
    }
    return run_chunk(e, status, path, err);
}

int luaenv_dostring(LuaEnv *e, const char *code, const char *chunkname, Err *err) {
    e->script_name = chunkname;
    int status = luaL_loadbufferx(e->L, code, strlen(code), chunkname, "t");
    if (status != LUA_OK && strstr(lua_tostring(e->L, -1), "binary chunk")) {
        lua_pop(e->L, 1);
        return err_set(err, ERR_INPUT, "%s: is a binary (precompiled) chunk; only Lua source is accepted", chunkname);
    }
    return run_chunk(e, status, chunkname, err);
}
