/* engine: the RewardSet of reward.h. Loads scripts into one hardened Lua
 * state per worker, scores samples on worker threads, and turns each score
 * call's outcome into a RewardResult. A state whose script ran out of budget
 * or memory is thrown away and rebuilt, so nothing a script left behind
 * (huge upvalues, a half-run coroutine) reaches the next sample. */
#include "reward.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "grpolib.h" /* defines: grpo_json_push, grpo_json_from_lua */
#include "luaenv.h"  /* defines: LuaEnv, luaenv_* */

typedef struct Script {
    char *path;
    char *name;
    double weight;
    int weight_override;
} Script;

typedef struct Worker {
    LuaEnv *env;     /* NULL until first used, or after a failed rebuild */
    int *refs;       /* [nscripts] registry refs of the score functions */
    char broken[512];/* why the state could not be built, if it could not */
} Worker;

struct RewardSet {
    int n;
    Script *scripts;
    RewardOpts opts;
    int nworkers;
    Worker *workers;
};

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* "rewards/format.lua" -> "format" */
static char *default_name(const char *path) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    char *s = dup_str(b);
    if (!s) return NULL;
    size_t n = strlen(s);
    if (n > 4 && !strcmp(s + n - 4, ".lua")) s[n - 4] = 0;
    return s;
}

/* Validates the table a script returned (on top) and stores its score
 * function as ref; on the first worker also reads name and weight. */
static int take_script(RewardSet *rs, Worker *w, int k, int first, Err *err) {
    lua_State *L = w->env->L;
    Script *sc = &rs->scripts[k];
    if (!lua_istable(L, -1))
        return err_set(err, ERR_INPUT, "%s: the script must return a table {name=, weight=, score=}, got %s",
                       sc->path, luaL_typename(L, -1));
    if (lua_getfield(L, -1, "score") != LUA_TFUNCTION)
        return err_set(err, ERR_INPUT, "%s: the returned table has no function 'score'", sc->path);
    w->refs[k] = luaL_ref(L, LUA_REGISTRYINDEX);
    if (first) {
        int t = lua_getfield(L, -1, "name");
        if (t == LUA_TSTRING) sc->name = dup_str(lua_tostring(L, -1));
        else if (t != LUA_TNIL) return err_set(err, ERR_INPUT, "%s: field 'name' must be a string", sc->path);
        else sc->name = default_name(sc->path);
        lua_pop(L, 1);
        t = lua_getfield(L, -1, "weight");
        if (t == LUA_TNUMBER) {
            double wt = lua_tonumber(L, -1);
            if (!isfinite(wt)) return err_set(err, ERR_INPUT, "%s: field 'weight' is not finite", sc->path);
            if (!sc->weight_override) sc->weight = wt;
        } else if (t != LUA_TNIL) {
            return err_set(err, ERR_INPUT, "%s: field 'weight' must be a number", sc->path);
        }
        lua_pop(L, 1);
        if (!sc->name) return err_set(err, ERR_WORK, "out of memory");
    }
    lua_pop(L, 1);
    return 0;
}

static void worker_close(Worker *w) {
    luaenv_free(w->env);
    w->env = NULL;
}

static int worker_open(RewardSet *rs, Worker *w, int first, Err *err) {
    w->env = luaenv_new(rs->opts.mem_limit, rs->opts.instr_limit, err);
    if (!w->env) return -1;
    w->env->log = rs->opts.log;
    w->env->log_ctx = rs->opts.log_ctx;
    w->env->slot = (int)(w - rs->workers);
    for (int k = 0; k < rs->n; k++) {
        if (luaenv_dofile(w->env, rs->scripts[k].path, err) || take_script(rs, w, k, first, err)) {
            worker_close(w);
            return -1;
        }
    }
    lua_settop(w->env->L, 0);
    return 0;
}

RewardSet *reward_set_load(const char *const *paths, int n, const double *weights,
                           const RewardOpts *opts, Err *err) {
    if (n <= 0) { err_set(err, ERR_INPUT, "no reward scripts given"); return NULL; }
    RewardSet *rs = calloc(1, sizeof *rs);
    if (!rs) { err_set(err, ERR_WORK, "out of memory"); return NULL; }
    if (opts) rs->opts = *opts;
    if (!rs->opts.mem_limit) rs->opts.mem_limit = (size_t)128 << 20;
    if (!rs->opts.instr_limit) rs->opts.instr_limit = 50000000;
    rs->nworkers = rs->opts.workers > 0 ? rs->opts.workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (rs->nworkers < 1) rs->nworkers = 1;
    rs->n = n;
    rs->scripts = calloc((size_t)n, sizeof *rs->scripts);
    rs->workers = calloc((size_t)rs->nworkers, sizeof *rs->workers);
    if (!rs->scripts || !rs->workers) goto oom;
    for (int k = 0; k < n; k++) {
        rs->scripts[k].path = dup_str(paths[k]);
        if (!rs->scripts[k].path) goto oom;
        rs->scripts[k].weight = 1.0;
        if (weights) { rs->scripts[k].weight = weights[k]; rs->scripts[k].weight_override = 1; }
    }
    for (int i = 0; i < rs->nworkers; i++) {
        rs->workers[i].refs = calloc((size_t)n, sizeof(int));
        if (!rs->workers[i].refs) goto oom;
    }
    /* Worker 0 is built now so that script errors surface at load time. */
    if (worker_open(rs, &rs->workers[0], 1, err)) {
        reward_set_free(rs);
        return NULL;
    }
    return rs;
oom:
    err_set(err, ERR_WORK, "out of memory loading reward scripts");
    reward_set_free(rs);
    return NULL;
}

void reward_set_free(RewardSet *rs) {
    if (!rs) return;
    for (int i = 0; rs->workers && i < rs->nworkers; i++) {
        worker_close(&rs->workers[i]);
        free(rs->workers[i].refs);
    }
    for (int k = 0; rs->scripts && k < rs->n; k++) {
        free(rs->scripts[k].path);
        free(rs->scripts[k].name);
    }
    free(rs->workers);
    free(rs->scripts);
    free(rs);
}

int reward_set_count(const RewardSet *rs) { return rs->n; }
const char *reward_set_name(const RewardSet *rs, int k) { return rs->scripts[k].name; }
double reward_set_weight(const RewardSet *rs, int k) { return rs->scripts[k].weight; }

static void push_opt_int(lua_State *L, const char *key, long v) {
    if (v < 0) return;
    lua_pushinteger(L, v);
    lua_setfield(L, -2, key);
}

/* Builds the sample table (protected: it allocates under the memory cap). */
static int build_sample(lua_State *L) {
    const RewardSample *s = lua_touserdata(L, 1);
    int nrow = s->row ? cJSON_GetArraySize(s->row) : 0;
    lua_createtable(L, 0, 7 + nrow);
    if (s->row && cJSON_IsObject(s->row)) {
        grpo_json_push(L, s->row);
        for (const cJSON *c = s->row->child; c; c = c->next) {
            if (!c->string) continue;
            lua_getfield(L, -1, c->string);
            lua_setfield(L, -3, c->string);
        }
        lua_setfield(L, -2, "row");
    }
    lua_pushstring(L, s->prompt ? s->prompt : "");
    lua_setfield(L, -2, "prompt");
    lua_pushstring(L, s->completion ? s->completion : "");
    lua_setfield(L, -2, "completion");
    push_opt_int(L, "prompt_tokens", s->prompt_tokens);
    push_opt_int(L, "completion_tokens", s->completion_tokens);
    if (s->finish_reason) {
        lua_pushstring(L, s->finish_reason);
        lua_setfield(L, -2, "finish_reason");
    }
    return 1;
}

static void set_error(RewardResult *r, const char *msg) {
    free(r->error);
    r->error = dup_str(msg);
    r->has_value = 0;
}

/* Reads score's (value, extras) from the top two stack slots into r. */
static void take_return(lua_State *L, RewardResult *r) {
    char msg[300];
    int vt = lua_type(L, -2);
    if (vt == LUA_TNUMBER) {
        double v = lua_tonumber(L, -2);
        if (isnan(v)) { set_error(r, "score returned NaN"); return; }
        if (isinf(v)) { set_error(r, v > 0 ? "score returned inf" : "score returned -inf"); return; }
        r->value = v;
        r->has_value = 1;
    } else if (vt != LUA_TNIL) {
        snprintf(msg, sizeof msg, "score returned a %s, expected a number or nil", lua_typename(L, vt));
        set_error(r, msg);
        return;
    }
    int et = lua_type(L, -1);
    if (et == LUA_TNIL) return;
    if (et != LUA_TTABLE) {
        snprintf(msg, sizeof msg, "score's second value must be a table of extras, got a %s", lua_typename(L, et));
        set_error(r, msg);
        return;
    }
    cJSON *j = grpo_json_from_lua(L, -1, msg, sizeof msg);
    if (!j) {
        char m2[400];
        snprintf(m2, sizeof m2, "extras: %s", msg);
        set_error(r, m2);
        return;
    }
    r->extras = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
}

/* Scores one sample with every script; out has rs->n slots. */
static void score_sample(RewardSet *rs, Worker *w, const RewardSample *s, RewardResult *out) {
    memset(out, 0, sizeof *out * (size_t)rs->n);
    if (!w->env && !w->broken[0]) {
        Err err = {0};
        if (worker_open(rs, w, 0, &err)) snprintf(w->broken, sizeof w->broken, "%s", err.msg);
    }
    if (!w->env) {
        for (int k = 0; k < rs->n; k++) set_error(&out[k], w->broken);
        return;
    }
    LuaEnv *e = w->env;
    lua_State *L = e->L;
    char msg[900];
    lua_settop(L, 0);
    luaenv_arm(e);
    lua_pushcfunction(L, build_sample);
    lua_pushlightuserdata(L, (void *)s);
    int st = lua_pcall(L, 1, 1, 0);
    int rebuild = 0;
    if (st != LUA_OK) {
        luaenv_error_message(e, st, msg, sizeof msg);
        for (int k = 0; k < rs->n; k++) set_error(&out[k], msg);
        rebuild = 1;
    }
    for (int k = 0; k < rs->n && !rebuild; k++) {
        e->script_name = rs->scripts[k].name;
        lua_rawgeti(L, LUA_REGISTRYINDEX, w->refs[k]);
        lua_pushvalue(L, 1);
        luaenv_arm(e);
        st = lua_pcall(L, 1, 2, 0);
        if (st != LUA_OK) {
            luaenv_error_message(e, st, msg, sizeof msg);
            set_error(&out[k], msg);
            rebuild = e->killed || e->mem_hit || st == LUA_ERRMEM;
            continue;
        }
        take_return(L, &out[k]);
        lua_pop(L, 2);
    }
    lua_settop(L, 0);
    if (rebuild) worker_close(w); /* rebuilt on the next sample */
}

double reward_total(const RewardSet *rs, const RewardResult *res) {
    double t = 0;
    int any = 0;
    for (int k = 0; k < rs->n; k++) {
        if (!res[k].has_value) continue;
        t += rs->scripts[k].weight * res[k].value;
        any = 1;
    }
    return any ? t : NAN;
}

typedef struct Job {
    RewardSet *rs;
    const RewardSample *samples;
    int nsamples;
    RewardResult *out;
    atomic_int next;
} Job;

typedef struct Arg {
    Job *job;
    Worker *w;
} Arg;

static void *worker_main(void *p) {
    Arg *a = p;
    Job *j = a->job;
    for (;;) {
        int i = atomic_fetch_add(&j->next, 1);
        if (i >= j->nsamples) break;
        score_sample(j->rs, a->w, &j->samples[i], &j->out[(size_t)i * j->rs->n]);
    }
    return NULL;
}

int reward_set_score(RewardSet *rs, const RewardSample *samples, int nsamples,
                     RewardResult *out, double *total, Err *err) {
    Job job = {.rs = rs, .samples = samples, .nsamples = nsamples, .out = out};
    atomic_init(&job.next, 0);
    int nt = rs->nworkers < nsamples ? rs->nworkers : nsamples;
    pthread_t tid[nt > 0 ? nt : 1];
    Arg args[nt > 0 ? nt : 1];
    int started = 0, rc = 0;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, (size_t)16 << 20); /* Lua's C recursion, PCRE2, curl */
    for (int t = 1; t < nt; t++) {
        args[t] = (Arg){&job, &rs->workers[t]};
        if (pthread_create(&tid[t], &attr, worker_main, &args[t])) {
            rc = err_set(err, ERR_WORK, "cannot start reward worker thread %d", t);
            break;
        }
        started = t;
    }
    pthread_attr_destroy(&attr);
    if (nt > 0) { /* the calling thread is worker 0 */
        args[0] = (Arg){&job, &rs->workers[0]};
        worker_main(&args[0]);
    }
    for (int t = 1; t <= started; t++) pthread_join(tid[t], NULL);
    if (total)
        for (int i = 0; i < nsamples; i++) total[i] = reward_total(rs, &out[(size_t)i * rs->n]);
    return rc;
}

void reward_results_clear(RewardResult *res, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(res[i].error);
        free(res[i].extras);
        res[i] = (RewardResult){0};
    }
}
