/* test_luapat: rewards/luapat.c gives the same results as Lua 5.4's own
 * string library. Hand-written edge cases (Lua chunks) and a few thousand
 * random calls (from a fixed seed) run in a stock state and in a state with
 * luapat installed (test_luapat_diff.h); every return value, its type, each
 * gmatch step and every error message must be identical. Calls that reach
 * luapat's step cap are counted and not compared (see the header). */
#include <stdint.h>

#include "base/rng.h"
#include "test.h"
#include "test_luapat_diff.h"

/* Each is run as "return <expr>". */
static const char *const hand[] = {
    /* find: plain, init, specials */
    "string.find('hello world', 'o w')", "string.find('hello', 'l')", "string.find('hello', 'xyz')",
    "string.find('hello', '')", "string.find('hello', '', 10)", "string.find('hello', '', 6)",
    "string.find('hello', '', 7)", "string.find('', '')", "string.find('', '', 1)", "string.find('', '', 2)",
    "string.find('hello', 'l', -2)", "string.find('hello', 'l', -100)", "string.find('hello', 'h', 0)",
    "string.find('hello', 'l', 4.0)", "string.find('hello', 'l', '2')", "string.find('hello', 'l', 2.5)",
    "string.find('hello', 'l', 'x')", "string.find('a.b', '.', 1, true)", "string.find('a.b', '.', 2, 1)",
    "string.find('a.b', '%.', 1, false)", "string.find('a+b', '+', 1, true)", "string.find('a+b', 'a+b')",
    "string.find('a\\0b', '\\0')", "string.find('a\\0b', '%z')", "string.find('a\\0b', '[\\0]')",
    "string.find('abc', 'b', math.mininteger)", "string.find('abc', 'b', math.maxinteger)",
    "string.find(12345, 34)", "string.find(1.5, '.', 1, true)", "string.find('abc')", "string.find()",
    "string.find({}, 'a')", "string.find('abc', 'b', {})", "('hello'):find('l+')", "('x'):find('(x)()')",
    /* match: classes and complements */
    "string.match('abc123 def', '%a+')", "string.match('abc123', '%d+')", "string.match(' \\t\\n x', '%s*()')",
    "string.match('Hello World', '%u%l+', 2)", "string.match('a,b;c', '%p')", "string.match('\\1\\31x', '%c+')",
    "string.match('a b', '%g+')", "string.match('ff 0x1F', '%x+', 3)", "string.match('a_1 b', '%w+')",
    "string.match('abc123', '%A+')", "string.match('abc123', '%D+')", "string.match('a b', '%S+%s%S')",
    "string.match('ABCdef', '%U+')", "string.match('ABCdef', '%L+')", "string.match('x.y', '%W')",
    "string.match('xyz', '%X+')", "string.match('a\\200\\255b', '[\\128-\\255]+')", "string.match('%', '%%')",
    "string.match('q', '%q')", "string.match('a.b', '%.')", "string.match('hello', '.-l')",
    /* sets */
    "string.match('a]b', '[]]')", "string.match('a]b', '[^]]+')", "string.match('a-b', '[a-]+')",
    "string.match('-ab', '[-a]+')", "string.match('b-z', '[a-c-z]+')", "string.match('a^b', '[%^b]+')",
    "string.match('a^b', '[b^]+')", "string.match('a%b', '[%%]')", "string.match('x]', '[%]]')",
    "string.match('abc', '[^%a]')", "string.match('ab12', '[%d%a]+')", "string.match('z', '[a-]')",
    "string.match('[', '[[]')", "string.match('a', '[a')", "string.match('a', '[a%')", "string.match('a', '[]')",
    "string.match('a', '[^]')", "string.match('a', '[^')", "string.match('a', '[')", "string.match('a', '[%')",
    "string.match(']', '[]-a]')", "string.match('b', '[]-a]')", "string.match('-', '[a-]')",
    /* quantifiers */
    "string.match('aaa', 'a*')", "string.match('aaa', 'a-')", "string.match('aaa', 'a-$')",
    "string.match('aaab', 'a+b')", "string.match('b', 'a+b')", "string.match('ab', 'a?ab')",
    "string.match('b', 'a?b')", "string.match('xyz', '.*')", "string.match('x', 'x**')", "string.match('x*', 'x**')",
    "string.match('a', '*')", "string.match('+a', '+a')", "string.match('?', '?')", "string.match('-x', '-x')",
    "string.match('<a><b>', '<(.-)>')", "string.match('<a><b>', '<(.*)>')", "string.match('aaa', '^(a-)a$')",
    /* anchors */
    "string.find('aXb', '^X')", "string.find('Xb', '^X')", "string.find('a^b', 'a^')", "string.find('a$b', '$b')",
    "string.find('ab', 'b$')", "string.find('ab$', 'b$')", "string.find('ab', '$')", "string.find('ab', '^$')",
    "string.find('', '^$')", "string.find('ab', '^')", "string.find('^a', '^^a')", "string.find('abc', '^b', 2)",
    /* captures, position captures, back-references */
    "string.match('key = value', '(%w+)%s*=%s*(%w+)')", "string.match('hello', '()ll()')",
    "string.find('hello', '()(l+)()')", "string.match('abc', '((a)(b))')", "string.match('abc', '()')",
    "string.match('abab', '(ab)%1')", "string.match('abcabc', '(a(b)c)%1%2?')", "string.match('aa', '(a)%0')",
    "string.match('aa', '(a)%2')", "string.match('aa', '(a%1)')", "string.match('a', '%1')",
    "string.match('xx', '()%1')", "string.match(\"'hi' \\\"no'\", '([\\'\"])(.-)%1')",
    "string.match('a', '(a')", "string.match('a', 'a)')", "string.match('a', '(()')", "string.match('a', ')')",
    "string.find('a', '(a')", "string.match('abc', '(a)(b)(c)(.-)(.-)(.-)(.-)(.-)(.-)(.-)')",
    "string.match(string.rep('a', 40), string.rep('(a)', 32))", "string.match(string.rep('a', 40), string.rep('(a)', 33))",
    "string.match(string.rep('a', 300), string.rep('a?', 199))", "string.match(string.rep('a', 300), string.rep('a?', 200))",
    "string.match(string.rep('a', 300), string.rep('a?', 260))", "string.match('a', string.rep('(', 40))",
    "string.match(string.rep('a', 250), string.rep('a*', 198) .. 'b')",
    /* %b and %f */
    "string.match('f(a(b)c) x', '%b()')", "string.match('((x)', '%b()')", "string.match('[]', '%b[]')",
    "string.match('aXbXXc', '%bXX')", "string.match('x', '%b')", "string.match('x', '%bx')", "string.match('(', '%b(')",
    "string.match('THE (quick) fox', '%f[%a]%a+')", "G('THE (quick) fox', '%f[%a]%a+')",
    "G('hello world', '%f[%w]%w+%f[%W]')", "string.find('ab', '%f[%z]')", "string.find('ab', '%f[%Z]')",
    "string.match('a', '%f')", "string.match('a', '%fa')", "string.match('a', '%f[a')", "string.find('', '%f[^a]')",
    "string.find('aaa', '%f[a]', 2)", "string.find('a\\0b', '%f[\\0]')",
    /* malformed */
    "string.match('a', '%')", "string.match('a%', 'a%')", "string.find('a', '%', 1, true)", "string.gsub('a', '%', 'x')",
    "string.match('a', '(()')", "string.gsub('abc', '%w', '%2')", "string.gsub('abc', '(%w)', '%2')",
    "string.gsub('abc', '%w', '%')", "string.gsub('abc', '%w', '%x')", "string.gsub('abc', '%w', '%\\0')",
    /* gmatch, init, empty matches */
    "G('one two  three', '%a+')", "G('k=v, a=b', '(%w+)=(%w+)')", "G('abc', '')", "G('abc', '()')",
    "G('abc', 'x*')", "G('a,b,,c', '([^,]*)')", "G('hello', '()l')", "G('abc', '.', 2)", "G('abc', '.', -1)",
    "G('abc', '.', 0)", "G('abc', '.', 4)", "G('abc', '.', 5)", "G('abc', '.', -10)", "G('', '')", "G('', '', 2)",
    "G('^a^a', '^a')", "G('aaa', 'a-')", "G('aaa', 'a*')", "G('ab', '(a)(b)()')", "G('abc', '(')",
    "G('abc', '%')", "G('a', ')')", "G(123, 2)", "G('a1b2', '%d', '2')", "string.gmatch('x')",
    "(function() local f = string.gmatch('abc', '.') f() f() f() f() return f() end)()",
    /* gsub: strings, %0-%9, %%, tables, functions, n */
    "string.gsub('hello world', 'o', '0')", "string.gsub('hello world', '(o)', '[%1]')",
    "string.gsub('hello world', '%w+', '%0 %0')", "string.gsub('hello', 'l', '%%')",
    "string.gsub('hello', '', '-')", "string.gsub('abc', '.-', '-')", "string.gsub('abc', 'b*', '-')",
    "string.gsub('hello world', '(%w+) (%w+)', '%2 %1')", "string.gsub('abc', '()', '%1')",
    "string.gsub('abc', '(b)()', '%2%1')", "string.gsub('abc', 'b', '%1')", "string.gsub('abc', 'b', '%0%0')",
    "string.gsub('abc', '%w', 'x', 2)", "string.gsub('abc', '%w', 'x', 0)", "string.gsub('abc', '%w', 'x', -1)",
    "string.gsub('abc', '%w', 'x', 2.0)", "string.gsub('abc', '%w', 'x', 2.5)", "string.gsub('abc', '%w', 'x', '1')",
    "string.gsub('abc', '^%w', 'x')", "string.gsub('abc', '^', 'x')", "string.gsub('abc', '$', 'x')",
    "string.gsub('abc', '^b', 'x')", "string.gsub('a b c', '%w', T)", "string.gsub('a b c x ab', '%w+', T)",
    "string.gsub('1 a', '%w', T)", "string.gsub('()', '()', T)", "string.gsub('abc', '', T)",
    "string.gsub('a b x y z', '%w', F)", "string.gsub('k=v', '(%w)=(%w)', F)", "string.gsub('ab', '()', F)",
    "string.gsub('abc', '%w', 5)", "string.gsub('abc', '%w', 2.5)", "string.gsub('abc', 'x', 5)",
    "string.gsub(123, '2', 'x')", "string.gsub(123, 'x', 'y')", "math.type(string.gsub(123, 'x', 'y'))",
    "string.gsub(1.5, '5', 7)", "string.gsub('abc', '%w')", "string.gsub('abc', '%w', true)",
    "string.gsub('abc', '%w', {})", "string.gsub('abc', '%w', function() return 1 end)",
    "string.gsub('abc', '%w', function() return 1.5 end)", "string.gsub('abc', '%w', function() return true end)",
    "string.gsub('abc', '%w', function() error('boom') end)", "string.gsub('abc', '%w', function() error({}) end)",
    "string.gsub('abc', '(%w', F)", "string.gsub('abc', '(%w', '%1')", "string.gsub('abc', '(%w', 'x')",
    "string.gsub('a.b', '%.', '%%.')", "string.gsub('x', 'x', '%%%0%%')", "string.gsub('', '', 'e')",
    "string.gsub('', 'x*', '%0')", "string.gsub('abc', '.', {a = 1, b = true})",
    "string.gsub('hello world', '%f[%w]%w', string.upper)", "string.gsub('$1.50', '%$(%d+)%.(%d+)', '%2c %1d')",
    "string.gsub(string.rep('ab', 10), 'ab', 'x', 3)", "select('#', string.gsub('a', 'a', 'b'))",
    /* the reward patterns */
    "string.match('<think>\\nhm\\n</think>\\n<answer>\\n42\\n</answer>', '<think>(.-)</think>%s*<answer>(.-)</answer>')",
    "string.match('<think>x</think> <answer>7</answer>', '^<think>.-</think>%s*<answer>(.-)</answer>$')",
    "string.match('#### 1,234', '####%s*([%d,%.%-]+)')", "string.find('The answer is \\\\boxed{42}.', '\\\\boxed{(.-)}')",
    "select(2, string.gsub('<think>a</think><think>b</think>', '<think>', ''))",
};
enum { NHAND = sizeof hand / sizeof hand[0] };

static lua_State *ref, *ours;
static int compared, capped, errors, misses; /* random calls: raised / found nothing */

static void compare(const char *what, const LdText *a, const LdText *b) {
    int same = ld_same(a, b);
    CHECK(same, "%s", what);
    if (!same) {
        fprintf(stderr, "   ours:  ");
        ld_print(stderr, a);
        fprintf(stderr, "\n   stock: ");
        ld_print(stderr, b);
        fprintf(stderr, "\n");
    }
    compared++;
}

static void test_hand(void) {
    char code[1024];
    for (int k = 0; k < NHAND; k++) {
        LdText a = {0}, b = {0};
        snprintf(code, sizeof code, "return %s", hand[k]);
        ld_chunk(ours, code, &a);
        if (ld_capped(&a)) {
            capped++;
        } else {
            ld_chunk(ref, code, &b);
            compare(hand[k], &a, &b);
        }
        if (getenv("LUAPAT_VERBOSE")) {
            printf("%s\n  -> ", hand[k]);
            ld_print(stdout, &a);
            printf("\n");
        }
        free(a.s);
        free(b.s);
    }
}

/* ---- random calls -------------------------------------------------------- */

static uint64_t seed = 20261123;
static int rnd(int n) { return (int)(rng_next(&seed) % (uint64_t)n); }

/* Subject bytes: few distinct characters so that patterns match often. */
static size_t gen_subject(char *out, size_t cap) {
    static const char alpha[] = "aaabbbxy  ()[]%-.^$1_,\n\tA";
    size_t n = (size_t)rnd(rnd(4) == 0 ? 40 : 14);
    for (size_t i = 0; i < n && i < cap; i++)
        out[i] = rnd(40) == 0 ? (char)rnd(256) : alpha[rnd(sizeof alpha - 1)];
    return n < cap ? n : cap;
}

static const char *const atoms[] = {
    "a", "b", "x", ".", ".", " ", "%a", "%d", "%s", "%w", "%p", "%l", "%u", "%x", "%c", "%g", "%A", "%S",
    "%W", "%D", "%%", "%.", "%(", "%]", "%-", "[ab]", "[^ab]", "[a-c]", "[%a_]", "[]]", "[^]]", "[a-]",
    "[-a]", "[%]]", "[^%s]", "[%d,]", "[%w%p]", "[b-a]", "[.]", "[$^]"};
static const char *const specials[] = {"(", ")", "()", "%1", "%2", "%0", "%b()", "%bab", "%b[]",
                                       "%f[%w]", "%f[%s]", "%f[a]", "%f[^a]", "$", "^", "%z"};
static const char *const quants[] = {"*", "+", "-", "?"};
static const char raw[] = "%[]()^$*+?.-ab";
#define SPECIALS_ "^$*+?.([%-)"

static size_t gen_pattern(char *out, size_t cap) {
    size_t n = 0;
#define PUT(str) do { const char *s_ = (str); size_t l_ = strlen(s_); if (n + l_ < cap) { memcpy(out + n, s_, l_); n += l_; } } while (0)
    if (rnd(5) == 0) PUT("^");
    int items = rnd(8);
    for (int k = 0; k < items; k++) {
        int r = rnd(20);
        if (r < 12) {
            PUT(atoms[rnd(sizeof atoms / sizeof *atoms)]);
            if (rnd(3) == 0) PUT(quants[rnd(4)]);
        } else if (r < 18) {
            PUT(specials[rnd(sizeof specials / sizeof *specials)]);
        } else if (n + 1 < cap) {
            out[n++] = raw[rnd(sizeof raw - 1)];
        }
    }
    if (rnd(6) == 0) PUT("$");
#undef PUT
    return n;
}

/* A pattern made from a piece of the subject (so it often matches): each
 * character kept literal, escaped, generalised to '.' or a class, sometimes
 * quantified or captured. */
static size_t gen_pattern_from(const char *subj, size_t ls, char *out, size_t cap) {
    static const char *const cls[] = {"%a", "%s", "%p", "%w", "[%a%d]", "[^x]"};
    size_t n = 0, from = ls ? (size_t)rnd((int)ls) : 0, len = (size_t)rnd(6);
    if (rnd(4) == 0 && n + 1 < cap) out[n++] = '^';
    for (size_t i = from; i < from + len && i < ls && n + 8 < cap; i++) {
        char c = subj[i];
        int r = rnd(10), open = rnd(8) == 0;
        if (open) out[n++] = '(';
        if (r < 2) out[n++] = '.';
        else if (r < 4) { const char *k = cls[rnd(6)]; memcpy(out + n, k, strlen(k)); n += strlen(k); }
        else if (strchr(SPECIALS_, c) || c == ']') { out[n++] = '%'; out[n++] = c; }
        else out[n++] = c;
        if (rnd(4) == 0) out[n++] = "*+-?"[rnd(4)];
        if (open) out[n++] = ')';
    }
    if (rnd(5) == 0 && n + 1 < cap) out[n++] = '$';
    return n;
}

static LdArg gen_init(void) {
    switch (rnd(6)) {
    case 0: case 1: return (LdArg){.kind = LD_NONE};
    case 2: return (LdArg){.kind = LD_INT, .i = rnd(30) - 15};
    case 3: return (LdArg){.kind = LD_INT, .i = rnd(6)};
    case 4: return (LdArg){.kind = LD_FLT, .f = rnd(8) / 2.0};
    default: return (LdArg){.kind = LD_NIL};
    }
}

static const char *const repls[] = {"x", "%0", "%1", "<%1|%2>", "%%", "%", "%3", "", "[%0%0]", "%9", "%a"};

static LdArg gen_repl(void) {
    int r = rnd(12);
    if (r < 6) { const char *s = repls[rnd(sizeof repls / sizeof *repls)]; return (LdArg){.kind = LD_STR, .s = s, .n = strlen(s)}; }
    if (r < 8) return (LdArg){.kind = LD_F};
    if (r < 10) return (LdArg){.kind = LD_T};
    if (r < 11) return (LdArg){.kind = LD_INT, .i = rnd(100)};
    return (LdArg){.kind = rnd(2) ? LD_NIL : LD_TRUE};
}

static void describe(char *buf, size_t n, int fn, const LdArg *a) {
    int w = snprintf(buf, n, "string.%s(", ld_fn[fn]);
    for (int k = 0; k < 4 && w < (int)n; k++) {
        if (a[k].kind == LD_STR) {
            w += snprintf(buf + w, n - (size_t)w, "%s\"", k ? ", " : "");
            for (size_t i = 0; i < a[k].n && w < (int)n - 8; i++) {
                unsigned char c = (unsigned char)a[k].s[i];
                w += (c >= 32 && c < 127 && c != '"' && c != '\\') ? snprintf(buf + w, n - (size_t)w, "%c", c)
                                                                   : snprintf(buf + w, n - (size_t)w, "\\%d", c);
            }
            w += snprintf(buf + w, n - (size_t)w, "\"");
        } else if (a[k].kind != LD_NONE) {
            w += snprintf(buf + w, n - (size_t)w, "%s<kind %d i=%lld f=%g>", k ? ", " : "", a[k].kind, a[k].i, a[k].f);
        }
    }
    if (w < (int)n) snprintf(buf + w, n - (size_t)w, ")");
}

static void test_random(int ncases) {
    char subj[64], pat[64], what[512];
    for (int c = 0; c < ncases; c++) {
        LdArg a[4] = {{0}};
        a[0] = (LdArg){.kind = LD_STR, .s = subj, .n = gen_subject(subj, sizeof subj)};
        size_t lp = rnd(2) ? gen_pattern(pat, sizeof pat) : gen_pattern_from(subj, a[0].n, pat, sizeof pat);
        a[1] = (LdArg){.kind = LD_STR, .s = pat, .n = lp};
        int fn = rnd(4);
        if (fn == 3) {
            a[2] = gen_repl();
            if (rnd(3) == 0) a[3] = (LdArg){.kind = LD_INT, .i = rnd(5) - 1};
        } else {
            a[2] = gen_init();
            if (fn == 0 && rnd(4) == 0) a[3] = (LdArg){.kind = rnd(2) ? LD_TRUE : LD_FALSE};
        }
        LdText x = {0}, y = {0};
        ld_run(ours, fn, a, 4, &x);
        if (ld_capped(&x)) {
            capped++;
        } else {
            ld_run(ref, fn, a, 4, &y);
            if (!ld_same(&x, &y)) describe(what, sizeof what, fn, a);
            else what[0] = 0;
            compare(what, &x, &y);
            errors += strncmp(x.s, "E:", 2) == 0;
            misses += strcmp(x.s, "#1 nil") == 0 || strncmp(x.s, "#1 function |#0", 15) == 0;
        }
        free(x.s);
        free(y.s);
    }
}

/* Stack balance and reuse: many calls in one state leave nothing behind. */
static void test_stack_clean(void) {
    int top = lua_gettop(ours);
    LdText t = {0};
    for (int k = 0; k < 200; k++) ld_chunk(ours, "return string.gsub('a b c', '%w', F), G('a b', '%a')", &t);
    CHECK(lua_gettop(ours) == top, "stack grew from %d to %d", top, lua_gettop(ours));
    free(t.s);
}

int main(int argc, char **argv) {
    int ncases = argc > 1 ? atoi(argv[1]) : 20000;
    ref = ld_state(0, 0);
    ours = ld_state(1, 2000000);
    test_hand();
    test_random(ncases);
    test_stack_clean();
    printf("compared %d calls (%d hand-written, %d random: %d raised an error, %d found nothing), "
           "%d stopped at the step cap\n", compared, NHAND, ncases, errors, misses, capped);
    CHECK(capped < ncases / 100 + 5, "too many capped calls: %d", capped);
    lua_close(ref);
    lua_close(ours);
    return test_report();
}
