/* test_hostile: hostile reward scripts are contained. Each case is a script
 * whose score misbehaves on the completion "evil" and returns 1 otherwise;
 * the evil sample must yield an error naming the cause, and the next sample
 * on the same set must score normally (the process and the set go on). */
#include <lauxlib.h>
#include <lualib.h>

#include "rtest.h"
#include "test.h"

typedef struct Case {
    const char *name;
    const char *evil; /* Lua statements run when sample.completion == "evil" */
    const char *want; /* substring of the error; a|b: either */
} Case;

static const Case cases[] = {
    {"runtime_error", "error('boom')", "hostile_runtime_error.lua:2: boom"},
    {"index_nil", "local t = nil; return t.x", "attempt to index a nil value"},
    {"non_number_string", "return 'high'", "score returned a string"},
    {"non_number_table", "return {}", "score returned a table"},
    {"non_number_bool", "return true", "score returned a boolean"},
    {"nan", "return 0/0", "score returned NaN"},
    {"inf", "return math.huge", "score returned inf"},
    {"neg_inf", "return -1/0", "score returned -inf"},
    {"bad_extras", "return 1, 'x'", "second value must be a table"},
    {"cyclic_extras", "local t = {} t.t = t return 1, t", "extras:"},
    {"infinite_loop", "while true do end", "instruction budget exceeded"},
    {"loop_pcall_swallow", "while true do pcall(function() while true do end end) end",
     "instruction budget exceeded"},
    {"loop_xpcall_swallow",
     "while true do xpcall(function() while true do end end, function() while true do end end) end",
     "instruction budget exceeded"},
    {"loop_in_error_handler", "xpcall(error, function() while true do end end)", "instruction budget exceeded"},
    {"string_rep_bomb", "local s = string.rep('x', 1 << 30) return #s", "memory limit exceeded"},
    {"string_rep_doubling", "local s = 'x' while true do s = s .. s end", "memory limit exceeded"},
    {"table_bomb", "local t = {} for i = 1, 1e12 do t[i] = string.rep('x', 4096) .. i end", "memory limit exceeded"},
    {"rep_bomb_pcall", "local t = {} while true do pcall(string.rep, 'x', 1 << 28) t[#t+1] = string.rep('y', 1 << 20) end",
     "memory limit exceeded"},
    {"deep_recursion", "local function f(n) return 1 + f(n + 1) end return f(1)", "stack overflow|memory limit exceeded"},
    {"deep_c_recursion", "local function f() return pcall(f) end f() error('unreachable?')", ""},
    {"coroutine_loop", "local co = coroutine.wrap(function() while true do end end) co()",
     "instruction budget exceeded"},
    {"coroutine_swallow",
     "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
     "instruction budget exceeded"},
    {"coroutine_yield_outside", "coroutine.yield(1)", "attempt to yield from outside a coroutine"},
    {"coroutine_nested_pcall",
     "local co = coroutine.create(function() while true do pcall(coroutine.yield) end end)\n"
     "while true do coroutine.resume(co) end",
     "instruction budget exceeded"},
    {"io_open", "return io.open('/etc/passwd')", "global 'io'"},
    {"os_execute", "return os.execute('true')", "global 'os'"},
    {"debug_lib", "return debug.getregistry()", "global 'debug'"},
    {"require", "return require('os')", "global 'require'"},
    {"load", "return load('return 1')()", "global 'load'"},
    {"loadfile", "return loadfile('/etc/passwd')", "global 'loadfile'"},
    {"dofile", "return dofile('/etc/passwd')", "global 'dofile'"},
    {"string_dump", "return string.dump(function() end)", "field 'dump'"},
    {"collectgarbage", "collectgarbage('stop')", "global 'collectgarbage'"},
    {"set_global", "x = 1", "read-only table (key 'x')"},
    {"set_global_via_G", "_G.x = 1", "read-only table (key 'x')"},
    {"replace_library_fn", "string.upper = function() return 'pwned' end", "read-only table (key 'upper')"},
    {"replace_grpo", "grpo.re = nil", "read-only table (key 're')"},
    {"rawset_global", "rawset(_G, 'x', 1)", "global 'rawset'"},
    {"unlock_G", "setmetatable(_G, nil)", "cannot change a protected metatable"},
    {"unlock_string", "setmetatable(string, {})", "cannot change a protected metatable"},
    {"string_metatable", "getmetatable('').__index.upper = nil", "attempt to index a nil value"},
    {"table_move_c_loop", "local t = {} table.move(t, 1, 1 << 40, 2)", "table.move: range"},
    {"table_move_ok", "local t = table.move({1, 2, 3}, 1, 3, 2) assert(t[4] == 3) error('fine')", "fine"},
    {"gc_finalizer", "setmetatable({}, {__gc = function() while true do end end})", "__gc metamethods"},
};
enum { NCASES = sizeof cases / sizeof cases[0] };

static char script[4096];

/* Does msg contain one of the '|'-separated alternatives in want? */
static int has_any(const char *msg, const char *want) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", want);
    for (char *save, *t = strtok_r(buf, "|", &save); t; t = strtok_r(NULL, "|", &save))
        if (strstr(msg, t)) return 1;
    return !*want;
}

static void run_case(const Case *c) {
    if (getenv("RTEST_VERBOSE")) fprintf(stderr, "case %s\n", c->name);
    char name[96];
    snprintf(name, sizeof name, "hostile_%s.lua", c->name);
    snprintf(script, sizeof script,
             "return { name = '%s', score = function(sample)\n"
             "  if sample.completion == 'evil' then %s end\n"
             "  return 1 end }\n",
             c->name, c->evil);
    RewardOpts o = {.workers = 1, .mem_limit = 32 << 20, .instr_limit = 2000000};
    Err err = {0};
    RewardSet *rs = rt_load(name, script, &o, &err);
    CHECK(rs != NULL, "%s: load: %s", c->name, err.msg);
    if (!rs) return;
    RewardResult r;
    rt_score1(rs, "evil", &r);
    CHECK(!r.has_value, "%s: evil sample has a value %g", c->name, r.value);
    CHECK(r.error && has_any(r.error, c->want), "%s: error '%s' lacks '%s'", c->name,
          r.error ? r.error : "(none)", c->want);
    reward_results_clear(&r, 1);
    rt_score1(rs, "good", &r);
    CHECK(r.has_value && r.value == 1 && !r.error, "%s: next sample: value %g error %s", c->name, r.value,
          r.error ? r.error : "-");
    reward_results_clear(&r, 1);
    reward_set_free(rs);
}

static void test_syntax_error(void) {
    Err err = {0};
    RewardSet *rs = rt_load("syntax.lua", "return {\n score = function(s)\n  return 1 +\n end }\n", NULL, &err);
    CHECK(!rs, "syntax error loaded");
    CHECK(strstr(err.msg, "syntax.lua:4:") != NULL, "message lacks file:line: %s", err.msg);
    CHECK(err.code == ERR_INPUT, "code %d", err.code);
}

static void test_bad_shapes(void) {
    Err err = {0};
    CHECK(!rt_load("noret.lua", "local x = 1\n", NULL, &err), "no return loaded");
    CHECK(strstr(err.msg, "noret.lua: the script must return a table") != NULL, "%s", err.msg);
    CHECK(!rt_load("noscore.lua", "return {name='x'}\n", NULL, &err), "no score loaded");
    CHECK(strstr(err.msg, "no function 'score'") != NULL, "%s", err.msg);
    CHECK(!rt_load("badw.lua", "return {score=function() end, weight='2'}\n", NULL, &err), "bad weight");
    CHECK(strstr(err.msg, "'weight' must be a number") != NULL, "%s", err.msg);
    RewardOpts o = {.workers = 1, .instr_limit = 1000000};
    CHECK(!rt_load("toploop.lua", "while true do end\n", &o, &err), "top-level loop loaded");
    CHECK(strstr(err.msg, "instruction budget exceeded") != NULL, "%s", err.msg);
    CHECK(!rt_load("topio.lua", "io.write('x')\n", &o, &err), "top-level io loaded");
    CHECK(strstr(err.msg, "topio.lua:1:") != NULL, "%s", err.msg);
    const char *missing = "/nonexistent/dir/x.lua";
    CHECK(!reward_set_load(&missing, 1, NULL, NULL, &err), "missing file loaded");
    CHECK(strstr(err.msg, missing) != NULL, "%s", err.msg);
}

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
    (void)L;
    return fwrite(p, 1, sz, ud) == sz ? 0 : 1;
}

/* A precompiled chunk, made with lua_dump in a plain state, must be refused. */
static void test_binary_chunk(void) {
    lua_State *L = luaL_newstate();
    const char *src = "return { score = function() return 1 end }";
    CHECK(luaL_loadstring(L, src) == LUA_OK, "compile");
    const char *path = rt_write("binary.lua", "");
    FILE *f = fopen(path, "wb");
    lua_dump(L, dump_writer, f, 0);
    fclose(f);
    lua_close(L);
    Err err = {0};
    RewardSet *rs = reward_set_load(&path, 1, NULL, NULL, &err);
    CHECK(!rs, "binary chunk loaded");
    CHECK(strstr(err.msg, "binary") && strstr(err.msg, "binary.lua"), "message: %s", err.msg);
    reward_set_free(rs);
}

/* Hostile work across many samples on several workers: every evil sample
 * fails, every good one scores, in the right slots. */
static void test_parallel_mix(void) {
    const char *code =
        "return { name = 'mix', score = function(s)\n"
        "  if s.completion == 'loop' then while true do end end\n"
        "  if s.completion == 'bomb' then local t = {} while true do t[#t+1] = string.rep('x', 1<<16) end end\n"
        "  return tonumber(s.completion) end }\n";
    RewardOpts o = {.workers = 4, .mem_limit = 16 << 20, .instr_limit = 1000000};
    Err err = {0};
    RewardSet *rs = rt_load("mix.lua", code, &o, &err);
    CHECK(rs != NULL, "load: %s", err.msg);
    if (!rs) return;
    enum { N = 64 };
    RewardSample s[N];
    char texts[N][16];
    for (int i = 0; i < N; i++) {
        if (i % 8 == 3) snprintf(texts[i], 16, "loop");
        else if (i % 8 == 5) snprintf(texts[i], 16, "bomb");
        else snprintf(texts[i], 16, "%d", i);
        s[i] = (RewardSample){.prompt = "", .completion = texts[i], .prompt_tokens = -1, .completion_tokens = -1};
    }
    RewardResult r[N];
    double total[N];
    CHECK(reward_set_score(rs, s, N, r, total, &err) == 0, "score: %s", err.msg);
    int ok = 1;
    for (int i = 0; i < N; i++) {
        if (i % 8 == 3) ok &= !r[i].has_value && r[i].error && strstr(r[i].error, "budget") && isnan(total[i]);
        else if (i % 8 == 5) ok &= !r[i].has_value && r[i].error && strstr(r[i].error, "memory");
        else ok &= r[i].has_value && r[i].value == i && total[i] == i;
    }
    CHECK(ok, "mixed batch results wrong");
    reward_results_clear(r, N);
    reward_set_free(rs);
}

/* Allocation failure at every point of building a state, loading the stock
 * math_accuracy script and scoring (after Lua's testes/memerr.lua): memory caps
 * from 4 KiB up in 1 KiB steps must either fail cleanly at load, or load and
 * then score or report an error; never crash or leak. */
static void test_memory_steps(void) {
    const char *path = GRPO_TESTS_DIR "/../rewards/math_accuracy.lua";
    int loaded = 0, failed = 0, scored = 0;
    for (size_t cap = 4096; cap <= (size_t)160 << 10; cap += 1024) {
        RewardOpts o = {.workers = 1, .mem_limit = cap, .instr_limit = 1000000};
        Err err = {0};
        RewardSet *rs = reward_set_load(&path, 1, NULL, &o, &err);
        if (!rs) {
            failed++;
            CHECK(err.msg[0] != 0, "cap %zu: failed without a message", cap);
            continue;
        }
        loaded++;
        cJSON *row = cJSON_Parse("{\"answer\": \"#### 12\"}");
        RewardSample s = {.prompt = "p", .completion = "so \\boxed{12}", .row = row, .prompt_tokens = -1,
                          .completion_tokens = -1};
        RewardResult r;
        reward_set_score(rs, &s, 1, &r, NULL, &err);
        CHECK(r.has_value || r.error, "cap %zu: neither value nor error", cap);
        scored += r.has_value && r.value == 1;
        reward_results_clear(&r, 1);
        cJSON_Delete(row);
        reward_set_free(rs);
    }
    CHECK(failed > 0 && loaded > 0 && scored > 0, "memory steps: %d failed, %d loaded, %d scored", failed, loaded,
          scored);
}

int main(void) {
    test_memory_steps();
    test_syntax_error();
    test_bad_shapes();
    test_binary_chunk();
    for (int i = 0; i < NCASES; i++) run_case(&cases[i]);
    test_parallel_mix();
    return test_report();
}
