/* lib_http: grpo.http.post for remote verifiers and judges, on libcurl.
 *
 *   local r = grpo.http.post{url = "http://127.0.0.1:8000/judge",
 *                            body = "text" or a table (sent as JSON),
 *                            headers = {["X-Key"] = "v"} or {"X-Key: v"},
 *                            timeout = 10, retries = 2, backoff = 0.5,
 *                            max_bytes = 8 MiB}
 *   r.ok, r.status, r.body, r.json (when the body parses as JSON), r.error, r.attempts
 *
 * Network failures, timeouts (total, so a slow body counts), 5xx and 429 are
 * retried with exponential backoff; the final failure is returned in
 * r.error, never raised. Only argument mistakes raise. http and https only,
 * no redirects. Time spent here is outside the instruction budget; the
 * timeout and retries bound it.
 *
 * libcurl is loaded with dlopen on the first post, not linked: it brings ~30 shared
 * libraries (TLS, Kerberos, LDAP, ...), and every mapping in grpo's address space is
 * copied again by each fork (the sandbox's tier 2 init, a C program's compile), so
 * most runs, which never post, should not carry them. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <lauxlib.h>

#include "grpolib.h"

/* The soname of libcurl's ABI 4, the one curl.h describes since 2006. */
#define CURL_SONAME "libcurl.so.4"

static struct {
    CURLcode (*global_init)(long);
    CURL *(*easy_init)(void);
    void (*easy_reset)(CURL *);
    void (*easy_cleanup)(CURL *);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    CURLcode (*easy_perform)(CURL *);
    const char *(*easy_strerror)(CURLcode);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
    char error[300]; /* why loading failed; empty when it worked */
} curl;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_load(void) {
    void *h = dlopen(CURL_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(curl.error, sizeof curl.error, "cannot load %s (Debian: libcurl4): %s", CURL_SONAME, dlerror());
        return;
    }
    static const char *const names[] = {"curl_global_init", "curl_easy_init", "curl_easy_reset",
        "curl_easy_cleanup", "curl_easy_setopt", "curl_easy_getinfo", "curl_easy_perform",
        "curl_easy_strerror", "curl_slist_append", "curl_slist_free_all"};
    void **slots[] = {(void **)&curl.global_init, (void **)&curl.easy_init, (void **)&curl.easy_reset,
        (void **)&curl.easy_cleanup, (void **)&curl.easy_setopt, (void **)&curl.easy_getinfo,
        (void **)&curl.easy_perform, (void **)&curl.easy_strerror, (void **)&curl.slist_append,
        (void **)&curl.slist_free_all};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(*slots[i] = dlsym(h, names[i]))) {
            snprintf(curl.error, sizeof curl.error, "%s has no %s", CURL_SONAME, names[i]);
            return;
        }
    }
    if (curl.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        snprintf(curl.error, sizeof curl.error, "curl_global_init failed");
}

typedef struct Body {
    char *p;
    size_t len, cap, max;
    int too_big;
} Body;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud) {
    Body *b = ud;
    size_t n = size * nmemb;
    if (b->len + n > b->max) { b->too_big = 1; return 0; }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, ptr, n);
    b->len += n;
    b->p[b->len] = 0;
    return n;
}

typedef struct PostArgs {
    const char *url;
    const char *body;
    size_t body_len;
    struct curl_slist *headers;
    long timeout_ms, retries, max_bytes;
    double backoff;
} PostArgs;

static double opt_number(lua_State *L, const char *key, double def) {
    int t = lua_getfield(L, 1, key);
    double v = def;
    if (t == LUA_TNUMBER) v = lua_tonumber(L, -1);
    else if (t != LUA_TNIL) luaL_error(L, "grpo.http.post: '%s' must be a number", key);
    lua_pop(L, 1);
    return v;
}

/* Reads the argument table; the JSON-encoded body (if any) stays on the stack. */
static void read_args(lua_State *L, PostArgs *a) {
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_getfield(L, 1, "url") != LUA_TSTRING) luaL_error(L, "grpo.http.post: 'url' (a string) is required");
    a->url = lua_tostring(L, -1);
    lua_pop(L, 1); /* the table keeps the string alive */
    /* numbers first: the header list below is malloc'd and must not leak on an argument error */
    a->timeout_ms = (long)(opt_number(L, "timeout", 10) * 1000);
    a->retries = (long)opt_number(L, "retries", 2);
    a->backoff = opt_number(L, "backoff", 0.5);
    a->max_bytes = (long)opt_number(L, "max_bytes", 8 << 20);
    if (a->timeout_ms < 1) a->timeout_ms = 1;
    if (a->retries < 0) a->retries = 0;
    if (a->retries > 10) a->retries = 10;
    int bt = lua_getfield(L, 1, "body");
    a->headers = NULL;
    if (bt == LUA_TTABLE) {
        char err[200];
        cJSON *j = grpo_json_from_lua(L, -1, err, sizeof err);
        if (!j) luaL_error(L, "grpo.http.post: body: %s", err);
        char *s = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        lua_pop(L, 1);
        lua_pushstring(L, s ? s : "null");
        free(s);
        a->headers = curl.slist_append(NULL, "Content-Type: application/json");
    } else if (bt != LUA_TSTRING && bt != LUA_TNIL) {
        luaL_error(L, "grpo.http.post: 'body' must be a string or a table");
    }
    a->body = lua_tolstring(L, -1, &a->body_len); /* NULL for nil */
    if (lua_getfield(L, 1, "headers") == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            char line[1024];
            if (lua_type(L, -2) == LUA_TSTRING)
                snprintf(line, sizeof line, "%s: %s", lua_tostring(L, -2), luaL_tolstring(L, -1, NULL));
            else
                snprintf(line, sizeof line, "%s", luaL_tolstring(L, -1, NULL));
            lua_pop(L, 2);
            a->headers = curl.slist_append(a->headers, line);
        }
    }
    lua_pop(L, 1);
}

static int body_gc(lua_State *L) {
    Body *b = lua_touserdata(L, 1);
    free(b->p);
    b->p = NULL;
    return 0;
}

static Body *body_new(lua_State *L) {
    Body *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    if (luaL_newmetatable(L, "grpo.http.body")) {
        lua_pushcfunction(L, body_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return b;
}

static void sleep_s(double s) {
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* One attempt. Returns 1 when done (success, or a failure retrying cannot fix),
 * 0 when worth retrying; *status is the HTTP status (0 without a response). */
static int post_once(CURL *c, const PostArgs *a, Body *b, long *status, char *error, size_t en) {
    char cerr[CURL_ERROR_SIZE] = "";
    curl.easy_reset(c);
    b->len = 0;
    b->too_big = 0;
    b->max = (size_t)a->max_bytes;
    curl.easy_setopt(c, CURLOPT_URL, a->url);
    curl.easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl.easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl.easy_setopt(c, CURLOPT_POST, 1L);
    curl.easy_setopt(c, CURLOPT_POSTFIELDS, a->body ? a->body : "");
    curl.easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(a->body ? a->body_len : 0));
    curl.easy_setopt(c, CURLOPT_HTTPHEADER, a->headers);
    curl.easy_setopt(c, CURLOPT_TIMEOUT_MS, a->timeout_ms);
    curl.easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl.easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl.easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    CURLcode rc = curl.easy_perform(c);
    *status = 0;
    if (rc == CURLE_OK) {
        curl.easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
        if (*status < 500 && *status != 429) {
            error[0] = 0;
            return 1;
        }
        snprintf(error, en, "HTTP %ld from %s", *status, a->url);
        return 0;
    }
    if (b->too_big) { /* retrying would not make it smaller */
        snprintf(error, en, "response from %s larger than %ld bytes", a->url, a->max_bytes);
        return 1;
    }
    snprintf(error, en, "%s: %s", a->url, cerr[0] ? cerr : curl.easy_strerror(rc));
    return 0;
}

static void push_response(lua_State *L, const Body *b, long status, long attempts, const char *error) {
    lua_createtable(L, 0, 6);
    lua_pushboolean(L, error[0] == 0 && status >= 200 && status < 300);
    lua_setfield(L, -2, "ok");
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    lua_pushinteger(L, attempts);
    lua_setfield(L, -2, "attempts");
    lua_pushlstring(L, b->p ? b->p : "", b->p ? b->len : 0);
    lua_setfield(L, -2, "body");
    if (b->p && b->len) {
        cJSON *j = cJSON_ParseWithLength(b->p, b->len);
        if (j) {
            grpo_json_push(L, j);
            cJSON_Delete(j);
            lua_setfield(L, -2, "json");
        }
    }
    if (error[0]) {
        lua_pushstring(L, error);
        lua_setfield(L, -2, "error");
    }
}

static int http_post(lua_State *L) {
    pthread_once(&curl_once, curl_load);
    if (curl.error[0]) return luaL_error(L, "grpo.http.post: %s", curl.error);
    PostArgs a;
    read_args(L, &a);
    CURL *c = curl.easy_init();
    if (!c) {
        curl.slist_free_all(a.headers);
        return luaL_error(L, "grpo.http.post: cannot create a curl handle");
    }
    Body *b = body_new(L); /* a userdata, so the buffer is freed whatever happens next */
    char error[512] = "";
    long status = 0, attempt;
    for (attempt = 1;; attempt++) {
        if (post_once(c, &a, b, &status, error, sizeof error) || attempt > a.retries) break;
        sleep_s(a.backoff * (double)(1L << (attempt - 1)));
    }
    curl.easy_cleanup(c);
    curl.slist_free_all(a.headers);
    if (!error[0] && (status < 200 || status >= 300)) snprintf(error, sizeof error, "HTTP %ld from %s", status, a.url);
    push_response(L, b, status, attempt, error);
    return 1;
}

int grpo_open_http(lua_State *L) {
    static const luaL_Reg fns[] = {{"post", http_post}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
