/* grpolib: the `grpo` table that reward scripts see, one C module per part.
 * Each grpo_open_X pushes a plain table of functions; luaenv wraps it in a
 * read-only proxy. Internal to rewards/. */
#ifndef GRPO_GRPOLIB_H
#define GRPO_GRPOLIB_H

#include <stddef.h>

#include <cjson/cJSON.h>
#include <lua.h>

int grpo_open_re(lua_State *L);    /* lib_re.c: PCRE2 */
int grpo_open_json(lua_State *L);  /* lib_json.c: cJSON */
int grpo_open_math(lua_State *L);  /* lib_math.c: answer extraction and equivalence */
int grpo_open_http(lua_State *L);  /* lib_http.c: libcurl POST */
/* lib_sandbox.c; returns 0 (pushes nothing) when the sandbox layer is absent. */
int grpo_open_sandbox(lua_State *L);

/* JSON <-> Lua (lib_json.c). Objects become tables with string keys, arrays
 * 1-based sequences, null becomes grpo.json.null (a light userdata). */
void grpo_json_push(lua_State *L, const cJSON *v);
/* Converts the Lua value at idx; NULL with a message on cycles, functions,
 * non-finite numbers or mixed keys. */
cJSON *grpo_json_from_lua(lua_State *L, int idx, char *err, size_t n);

#endif
