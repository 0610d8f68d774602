/* luaenv: one hardened Lua 5.4 state for running untrusted reward scripts.
 *
 * What it enforces (reference/sandbox.md §11, after Redis script_lua.c):
 *   - only base, string, table, math, utf8, coroutine and the grpo library;
 *     no io, os, package, debug, load, loadfile, dofile, print, collectgarbage,
 *     rawset or string.dump;
 *   - every library table, grpo's tables and the global table are read-only
 *     (proxies with a locked metatable); each script gets its own read-only
 *     environment, so `x = 1` at any level is an error;
 *   - text chunks only (binary chunks are refused);
 *   - a memory cap through the allocator;
 *   - an instruction budget per call through a count hook; once exceeded the
 *     hook fires on every instruction of every coroutine, so pcall, xpcall
 *     and coroutine.resume inside the script cannot swallow it;
 *   - __gc metamethods are refused (finalizers run with hooks off, so a loop
 *     in one could not be stopped); xpcall's handler runs after unwinding
 *     (it would also run with hooks off); table.move's range is bounded.
 *   - string.find/match/gmatch/gsub are rewards/luapat.c's: each pattern
 *     matching step is charged to the same budget (1 step = 1 instruction),
 *     with a cap per call, so backtracking inside one C call is bounded too.
 * It does not bound time spent inside other C functions (an HTTP request, a
 * sandbox run); those have their own limits. */
#ifndef GRPO_LUAENV_H
#define GRPO_LUAENV_H

#include <stddef.h>

#include <lua.h>

#include "base/err.h"

typedef struct LuaEnv {
    lua_State *L;
    size_t mem_used, mem_limit;  /* bytes */
    int mem_hit;                 /* an allocation was refused since the last arm */
    long instr_limit;            /* VM instructions per armed call */
    long ticks;                  /* count-hook firings since the last arm */
    long pat_steps;              /* pattern-matching steps charged since the last arm */
    int killed;                  /* the budget ran out since the last arm */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
    const char *script_name;     /* prefix for grpo.log lines */
    int slot;                    /* worker index: picks the sandbox slot */
} LuaEnv;

LuaEnv *luaenv_new(size_t mem_limit, long instr_limit, Err *err);
void luaenv_free(LuaEnv *e);

/* Resets the instruction budget and the memory flag before a call. */
void luaenv_arm(LuaEnv *e);

/* Loads and runs a script file (text only) in its own read-only environment
 * under the budget; leaves its first return value on the stack. Errors name
 * path:line for syntax errors and runtime errors. */
int luaenv_dofile(LuaEnv *e, const char *path, Err *err);

/* Same for a string (tests, `grpo reward -e`). */
int luaenv_dostring(LuaEnv *e, const char *code, const char *chunkname, Err *err);

/* The LuaEnv that owns L (any coroutine of it). */
LuaEnv *luaenv_of(lua_State *L);

/* Error message of a failed call on top of the stack, with the budget or
 * memory cause named; pops it. status is lua_pcall's result. */
void luaenv_error_message(LuaEnv *e, int status, char *buf, size_t n);

/* Pushes a read-only proxy of the table at idx. */
void luaenv_push_readonly(lua_State *L, int idx);

#endif
