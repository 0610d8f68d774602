/* fuzz_luapat: libFuzzer target for rewards/luapat.c, differential against
 * the stock Lua 5.4 string library (tests/rewards/test_luapat_diff.h). The
 * input is: one control byte (which function, which optional arguments),
 * then the pattern and the subject separated by the first 0xFF byte (both
 * may hold any other byte, NULs included). Ours runs with a cap of 200 000
 * steps; when it stops there the stock call is skipped. Any difference in
 * results or error messages aborts.
 *   build-h-fuzz/tests/fuzz/fuzz_luapat -max_total_time=60 -max_len=256 tests/fuzz/corpus/luapat */
#include <stdint.h>

#include "tests/rewards/test_luapat_diff.h"

static lua_State *ref, *ours;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (!ref) {
        ref = ld_state(0, 0);
        ours = ld_state(1, 200000);
    }
    unsigned ctl = data[0];
    const char *p = (const char *)data + 1;
    size_t rest = size - 1;
    const char *sep = memchr(p, 0xFF, rest);
    size_t lp = sep ? (size_t)(sep - p) : rest;
    const char *s = sep ? sep + 1 : "";
    size_t ls = sep ? rest - lp - 1 : 0;

    int fn = ctl & 3;
    LdArg a[4] = {{.kind = LD_STR, .s = s, .n = ls}, {.kind = LD_STR, .s = p, .n = lp}};
    static const char *const repls[] = {"<%0>", "%1%2", "%%", "x%", "%3", ""};
    if (fn == 3) {
        switch ((ctl >> 2) & 7) {
        case 0: case 1: a[2] = (LdArg){.kind = LD_STR, .s = repls[(ctl >> 5) % 6], .n = strlen(repls[(ctl >> 5) % 6])}; break;
        case 2: case 3: a[2] = (LdArg){.kind = LD_F}; break;
        case 4: case 5: a[2] = (LdArg){.kind = LD_T}; break;
        case 6: a[2] = (LdArg){.kind = LD_INT, .i = 5}; break;
        default: a[2] = (LdArg){.kind = LD_NIL}; break;
        }
        if (ctl & 0x80) a[3] = (LdArg){.kind = LD_INT, .i = (ctl >> 5 & 3) - 1};
    } else {
        if (ctl & 4) a[2] = (LdArg){.kind = LD_INT, .i = (int)(ctl >> 4) - 8};
        if (fn == 0 && (ctl & 8)) a[3] = (LdArg){.kind = LD_TRUE};
    }
    LdText x = {0}, y = {0};
    ld_run(ours, fn, a, 4, &x);
    if (!ld_capped(&x)) {
        ld_run(ref, fn, a, 4, &y);
        if (!ld_same(&x, &y)) {
            fprintf(stderr, "luapat differs from the stock string.%s:\n  ours:  ", ld_fn[fn]);
            ld_print(stderr, &x);
            fprintf(stderr, "\n  stock: ");
            ld_print(stderr, &y);
            fprintf(stderr, "\n");
            abort();
        }
    }
    free(x.s);
    free(y.s);
    return 0;
}
