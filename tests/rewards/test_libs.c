/* test_libs: the grpo.* library as scripts see it (re, json, math, log), and
 * the engine's contract: sample fields, extras, weights and TRL nil totals. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "rtest.h"
#include "test.h"

/* Runs Lua statements (asserts) inside score; returns the error or NULL. */
static char *run_lua(const char *body) {
    static char code[8192];
    snprintf(code, sizeof code, "return { score = function(sample)\n%s\nreturn 1 end }\n", body);
    Err err = {0};
    RewardOpts o = {.workers = 1};
    RewardSet *rs = rt_load("libs.lua", code, &o, &err);
    if (!rs) return strdup(err.msg);
    RewardResult r;
    rt_score1(rs, "c", &r);
    char *e = r.error ? strdup(r.error) : NULL;
    reward_results_clear(&r, 1);
    reward_set_free(rs);
    return e;
}

#define LUA_OK_(body)                                              \
    do {                                                           \
        char *e_ = run_lua(body);                                  \
        CHECK(e_ == NULL, "lua: %s\n  in: %s", e_ ? e_ : "", body); \
        free(e_);                                                  \
    } while (0)

static void test_re(void) {
    LUA_OK_("local re = grpo.re\n"
            "assert(re.match('abc123', '\\\\d+') == '123')\n"
            "local a, b = re.match('key=val', '(\\\\w+)=(\\\\w+)'); assert(a == 'key' and b == 'val')\n"
            "assert(re.match('abc', 'x') == nil)\n"
            "assert(re.match('ABC', 'abc', 'i') == 'ABC')\n"
            "assert(re.match('a\\nb', 'a.b') == nil and re.match('a\\nb', 'a.b', 's') == 'a\\nb')\n"
            "assert(re.match('x\\ny', '^y$', 'm') == 'y')\n"
            "local s, e = re.find('hello world', 'o w'); assert(s == 5 and e == 7)\n"
            "assert(re.find('aaa', 'a', 3) == 3)\n"
            "local t = {} for w in re.gmatch('a1 b22 c333', '[a-z](\\\\d+)') do t[#t+1] = w end\n"
            "assert(#t == 3 and t[3] == '333')\n"
            "local out, n = re.gsub('a-b-c', '-', '+'); assert(out == 'a+b+c' and n == 2)\n"
            "assert(re.gsub('2024-01-05', '(\\\\d+)-(\\\\d+)-(\\\\d+)', '$3/$2/$1') == '05/01/2024')\n"
            "assert(re.count('ababab', 'ab') == 3)\n"
            "assert(re.match('héllo', '\\\\w+') == 'héllo')\n"
            "assert(re.match('\\255\\254abc', 'abc') == 'abc')\n"
            "assert(re.count('', 'x*') == 1)\n"
            "local ok, err = pcall(re.match, 'x', '(')\n"
            "assert(not ok and err:find('bad pattern'))\n"
            "ok, err = pcall(re.match, string.rep('a', 30), '(a+)+b')\n"
            "assert(ok or err:find('match failed'))\n"
            "ok, err = pcall(re.match, 'x', 'x', 'q'); assert(not ok and err:find('unknown flag'))\n"
            "local it = re.gmatch('a1b2', '\\\\d')\n"
            "for i = 1, 1200 do assert(re.match('k' .. i, 'k' .. i .. '$') == 'k' .. i) end\n"
            "assert(it() == '1' and it() == '2' and it() == nil)\n"
            "ok, err = pcall(re.match, 'x', string.rep('x', 70000)); assert(not ok and err:find('longer than'))");
}

static void test_json(void) {
    LUA_OK_("local j = grpo.json\n"
            "local v = j.decode('{\"a\": [1, 2.5, \"x\", true, null], \"b\": {\"c\": -3}}')\n"
            "assert(v.a[1] == 1 and math.type(v.a[1]) == 'integer' and v.a[2] == 2.5 and v.a[3] == 'x')\n"
            "assert(v.a[4] == true and v.a[5] == j.null and v.b.c == -3)\n"
            "local n, err = j.decode('{bad'); assert(n == nil and err:find('invalid JSON'))\n"
            "assert(j.encode({1, 2, 3}) == '[1,2,3]')\n"
            "assert(j.encode({x = 'y'}) == '{\"x\":\"y\"}')\n"
            "assert(j.encode({b = 1, a = 2, c = {z = 1, y = 2}, aa = 3}) == '{\"a\":2,\"aa\":3,\"b\":1,\"c\":{\"y\":2,\"z\":1}}')\n"
            "assert(j.decode(j.encode({k = {1, {z = false}}})).k[2].z == false)\n"
            "local t = {} t.t = t\n"
            "local ok, e = pcall(j.encode, t); assert(not ok and e:find('nesting'))\n"
            "ok, e = pcall(j.encode, {f = print or function() end}); assert(not ok)\n"
            "ok, e = pcall(j.encode, 0/0); assert(not ok and e:find('non%-finite'))");
}

static void test_math_lua(void) {
    LUA_OK_("local m = grpo.math\n"
            "assert(m.extract('so \\\\boxed{\\\\frac{1}{2}} and \\\\boxed{3}') == '3')\n"
            "assert(m.extract('nested \\\\boxed{\\\\frac{a}{\\\\sqrt{b}}}.') == '\\\\frac{a}{\\\\sqrt{b}}')\n"
            "assert(m.extract('Janet pays 18 dollars.\\n#### 1,018') == '1018')\n"
            "assert(m.extract('<answer> 7 </answer>') == '7')\n"
            "assert(m.extract('no answer here') == nil)\n"
            "assert(m.tag('<think>x</think><answer>y</answer>', 'think') == 'x')\n"
            "assert(m.equal('\\\\frac{1}{2}', '0.5') and m.equal('0.5', '1/2') and m.equal('50\\\\%', '0.5'))\n"
            "assert(m.equal('1000', '1,000') and m.equal('30', '30^\\\\circ') and m.equal('10', '10 \\\\text{ cm}'))\n"
            "assert(m.equal('2\\\\sqrt{3}', '\\\\sqrt{12}') and m.equal('x^2+1', '1+x^2') and m.equal('y = 2x+3', '2x+3'))\n"
            "assert(m.equal('\\\\{1,2\\\\}', '\\\\{2,1\\\\}') and not m.equal('(1,2)', '(2,1)'))\n"
            "assert(not m.equal('(1,2)', '[1,2]') and m.equal('\\\\text{Evelyn}', 'evelyn'))\n"
            "assert(not m.equal('288\\\\pi', '904.78') and m.equal('\\\\frac{1}{3}', '0.333333'))\n"
            "assert(not m.equal('3', '4') and not m.equal('x', 'y') and not m.equal('\\\\frac{1}{2}', '\\\\frac{2}{1}'))\n"
            "assert(not m.equal('12345678901', '12345678902') and m.equal('2', '(\\\\sqrt{2})^2'))\n"
            "assert(m.equal('1', '3 \\\\cdot \\\\frac{1}{3}') and m.equal('1.5', '1.5000001'))\n"
            /* math-verify 0.9.0's verdicts: integers exact, other numbers to 6 decimals */
            "assert(not m.equal('3', '3.0000001') and not m.equal('100', '100.0000004') and m.equal('0.5', '0.5000004'))\n"
            "assert(m.equal('\\\\frac{2}{3}', '0.666667') and not m.equal('\\\\frac{2}{3}', '0.666666'))\n"
            "assert(m.equal('x+Y', 'x+y') and m.equal('\\\\text{(C)}', 'C') and m.equal('(C)', '(c)'))\n"
            "assert(m.equal('\\\\sqrt{2}', '1.414214') and not m.equal('\\\\sqrt{2}', '1.414213'))\n"
            "assert(m.number('\\\\dfrac{3}{4}') == 0.75 and m.number('x') == nil)\n"
            "assert(m.normalize('\\\\left( 1, \\\\dfrac{1}{2} \\\\right)') == '( 1, \\\\frac{1}{2} )')");
}

typedef struct LogSink {
    pthread_mutex_t mu;
    char last[256];
    int n;
} LogSink;

static void sink(void *ctx, const char *line) {
    LogSink *s = ctx;
    pthread_mutex_lock(&s->mu);
    snprintf(s->last, sizeof s->last, "%s", line);
    s->n++;
    pthread_mutex_unlock(&s->mu);
}

/* Two scripts, weights 2 and 0.5: totals follow TRL (nil skipped, all nil -> NaN). */
static void test_totals_and_fields(void) {
    const char *a = rt_write("a.lua",
                             "return { name = 'a', weight = 2, score = function(s)\n"
                             "  grpo.log('seen', s.index)\n"
                             "  if s.kind == 'none' then return nil end\n"
                             "  return s.value, { tokens = s.completion_tokens, reason = s.finish_reason,\n"
                             "                    nested = s.row.nested } end }\n");
    const char *b = rt_write("b.lua",
                             "return { score = function(s)\n"
                             "  if s.kind ~= 'both' then return nil end\n"
                             "  return #s.prompt end }\n");
    const char *paths[2] = {a, b};
    LogSink ls = {.mu = PTHREAD_MUTEX_INITIALIZER};
    RewardOpts o = {.workers = 2, .log = sink, .log_ctx = &ls};
    Err err = {0};
    RewardSet *rs = reward_set_load(paths, 2, NULL, &o, &err);
    CHECK(rs != NULL, "load: %s", err.msg);
    if (!rs) return;
    CHECK(!strcmp(reward_set_name(rs, 0), "a") && !strcmp(reward_set_name(rs, 1), "b"), "names");
    CHECK(reward_set_weight(rs, 0) == 2 && reward_set_weight(rs, 1) == 1, "weights");
    cJSON *rows[3] = {cJSON_Parse("{\"kind\":\"both\",\"value\":3,\"index\":0,\"nested\":{\"q\":[1,2]}}"),
                      cJSON_Parse("{\"kind\":\"one\",\"value\":-1.5,\"index\":1}"),
                      cJSON_Parse("{\"kind\":\"none\",\"index\":2}")};
    RewardSample s[3];
    for (int i = 0; i < 3; i++)
        s[i] = (RewardSample){.prompt = "four", .completion = "c", .row = rows[i], .prompt_tokens = 4,
                              .completion_tokens = 10 + i, .finish_reason = i ? "length" : "stop"};
    RewardResult r[6];
    double total[3];
    CHECK(reward_set_score(rs, s, 3, r, total, &err) == 0, "score: %s", err.msg);
    CHECK(r[0].has_value && r[0].value == 3 && r[1].has_value && r[1].value == 4, "sample 0 values");
    CHECK(total[0] == 2 * 3 + 4, "total 0 = %g", total[0]);
    CHECK(total[1] == 2 * -1.5, "total 1 = %g (nil from b skipped)", total[1]);
    CHECK(isnan(total[2]), "total 2 = %g (all nil -> NaN)", total[2]);
    CHECK(r[0].extras && strstr(r[0].extras, "\"tokens\":10") && strstr(r[0].extras, "\"reason\":\"stop\"") &&
              strstr(r[0].extras, "\"nested\":{\"q\":[1,2]}"),
          "extras: %s", r[0].extras ? r[0].extras : "(null)");
    CHECK(!r[4].has_value && !r[4].error && !r[4].extras, "nil result has no error");
    CHECK(ls.n == 3 && strstr(ls.last, "[a] seen "), "log: %d lines, last '%s'", ls.n, ls.last);
    reward_results_clear(r, 6);
    for (int i = 0; i < 3; i++) cJSON_Delete(rows[i]);
    reward_set_free(rs);
    double w[2] = {0.5, -1};
    rs = reward_set_load(paths, 2, w, &o, &err);
    CHECK(rs && reward_set_weight(rs, 0) == 0.5 && reward_set_weight(rs, 1) == -1, "weight override");
    reward_set_free(rs);
}

int main(void) {
    char *neg = run_lua("assert(1 == 2, 'negative control')");
    CHECK(neg && strstr(neg, "negative control"), "a failing assert must fail: %s", neg ? neg : "(none)");
    free(neg);
    test_re();
    test_json();
    test_math_lua();
    test_totals_and_fields();
    return test_report();
}
