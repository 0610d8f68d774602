/* lib_json: grpo.json.encode / decode for reward scripts, on cJSON.
 * Also the JSON <-> Lua conversion the engine uses for dataset rows and
 * extras. Not a streaming parser; documents are whole strings. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "grpolib.h"

enum { JSON_MAX_DEPTH = 200 };

/* grpo.json.null: a unique light userdata (the address of this object). */
static const char json_null_tag = 0;
#define JSON_NULL ((void *)&json_null_tag)

static void push_value(lua_State *L, const cJSON *v, int depth) {
    luaL_checkstack(L, 4, "JSON nesting too deep");
    if (depth > JSON_MAX_DEPTH) luaL_error(L, "JSON nesting deeper than %d", JSON_MAX_DEPTH);
    if (cJSON_IsString(v)) {
        lua_pushstring(L, v->valuestring);
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0) lua_pushinteger(L, (lua_Integer)d);
        else lua_pushnumber(L, d);
    } else if (cJSON_IsBool(v)) {
        lua_pushboolean(L, cJSON_IsTrue(v));
    } else if (cJSON_IsArray(v)) {
        lua_createtable(L, cJSON_GetArraySize(v), 0);
        int i = 1;
        for (const cJSON *c = v->child; c; c = c->next) {
            push_value(L, c, depth + 1);
            lua_rawseti(L, -2, i++);
        }
    } else if (cJSON_IsObject(v)) {
        lua_createtable(L, 0, 4);
        for (const cJSON *c = v->child; c; c = c->next) {
            push_value(L, c, depth + 1);
            lua_setfield(L, -2, c->string ? c->string : "");
        }
    } else {
        lua_pushlightuserdata(L, JSON_NULL);
    }
}

void grpo_json_push(lua_State *L, const cJSON *v) { push_value(L, v, 0); }

/* A table is an array when its keys are exactly 1..n (n >= 1). */
static int table_is_array(lua_State *L, int idx, lua_Integer *n) {
    lua_Integer count = 0, max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1)) { lua_pop(L, 1); return 0; }
        lua_Integer k = lua_tointeger(L, -1);
        if (k < 1) { lua_pop(L, 1); return 0; }
        if (k > max) max = k;
        count++;
    }
    *n = max;
    return count > 0 && count == max;
}

/* Orders an object's members by key: Lua's table order changes from one
 * process to the next, and logged extras should be the same text every run. */
static void sort_keys(cJSON *obj) {
    cJSON *head = NULL, *c = obj->child;
    while (c) {
        cJSON *next = c->next, **at = &head;
        while (*at && strcmp((*at)->string, c->string) <= 0) at = &(*at)->next;
        c->next = *at, *at = c;
        c = next;
    }
    cJSON *prev = NULL;
    for (c = head; c; prev = c, c = c->next) c->prev = prev;
    if (head) head->prev = prev; /* cJSON keeps the tail in child->prev */
    obj->child = head;
}

static cJSON *from_lua(lua_State *L, int idx, int depth, char *err, size_t n) {
    idx = lua_absindex(L, idx);
    if (depth > JSON_MAX_DEPTH) { snprintf(err, n, "table nesting deeper than %d (a cycle?)", JSON_MAX_DEPTH); return NULL; }
    if (!lua_checkstack(L, 4)) { snprintf(err, n, "Lua stack exhausted"); return NULL; }
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return cJSON_CreateNull();
    case LUA_TBOOLEAN: return cJSON_CreateBool(lua_toboolean(L, idx));
    case LUA_TNUMBER: {
        double d = lua_tonumber(L, idx);
        if (!isfinite(d)) { snprintf(err, n, "cannot encode a non-finite number"); return NULL; }
        return cJSON_CreateNumber(d);
    }
    case LUA_TSTRING: return cJSON_CreateString(lua_tostring(L, idx));
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == JSON_NULL) return cJSON_CreateNull();
        break;
    case LUA_TTABLE: {
        lua_Integer len;
        if (table_is_array(L, idx, &len)) {
            cJSON *arr = cJSON_CreateArray();
            for (lua_Integer i = 1; i <= len; i++) {
                lua_rawgeti(L, idx, i);
                cJSON *c = from_lua(L, -1, depth + 1, err, n);
                lua_pop(L, 1);
                if (!c) { cJSON_Delete(arr); return NULL; }
                cJSON_AddItemToArray(arr, c);
            }
            return arr;
        }
        cJSON *obj = cJSON_CreateObject();
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            char key[64];
            const char *k;
            if (lua_type(L, -2) == LUA_TSTRING) {
                k = lua_tostring(L, -2);
            } else if (lua_isinteger(L, -2)) {
                snprintf(key, sizeof key, "%lld", (long long)lua_tointeger(L, -2));
                k = key;
            } else {
                lua_pop(L, 2);
                cJSON_Delete(obj);
                snprintf(err, n, "table keys must be strings or integers");
                return NULL;
            }
            cJSON *c = from_lua(L, -1, depth + 1, err, n);
            lua_pop(L, 1);
            if (!c) { lua_pop(L, 1); cJSON_Delete(obj); return NULL; }
            cJSON_AddItemToObject(obj, k, c);
        }
        sort_keys(obj);
        return obj;
    }
    default: break;
    }
    snprintf(err, n, "cannot encode a %s", luaL_typename(L, idx));
    return NULL;
}

cJSON *grpo_json_from_lua(lua_State *L, int idx, char *err, size_t n) {
    return from_lua(L, idx, 0, err, n);
}

static int json_encode(lua_State *L) {
    luaL_checkany(L, 1);
    char err[256];
    cJSON *j = grpo_json_from_lua(L, 1, err, sizeof err);
    if (!j) return luaL_error(L, "grpo.json.encode: %s", err);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) return luaL_error(L, "grpo.json.encode: out of memory");
    lua_pushstring(L, s);
    free(s);
    return 1;
}

/* Returns the value, or nil and a message: bad JSON is data, not a bug. */
static int json_decode(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(s, len, &end, 0);
    if (!j) {
        lua_pushnil(L);
        lua_pushfstring(L, "invalid JSON near byte %d", end ? (int)(end - s) + 1 : 1);
        return 2;
    }
    grpo_json_push(L, j);
    cJSON_Delete(j);
    return 1;
}

int grpo_open_json(lua_State *L) {
    static const luaL_Reg fns[] = {{"encode", json_encode}, {"decode", json_decode}, {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_pushlightuserdata(L, JSON_NULL);
    lua_setfield(L, -2, "null");
    return 1;
}
