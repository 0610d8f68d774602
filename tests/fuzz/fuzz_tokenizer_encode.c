/* fuzz_tokenizer_encode: libFuzzer target for tok_encode / tok_decode /
 * streaming decode on the real DeepSeek-V3 tokenizer and the tiny one. The
 * first byte picks the tokenizer and add_special; the rest is the text (any
 * bytes, invalid UTF-8 included). Checks the properties that hold for these
 * two (no normalizer, no prefix space): decode(encode(x)) is the lossy UTF-8
 * form of x, and streaming decode gives the same text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer.h"

static Tokenizer *toks[2];

static void load(void) {
    static const char *dirs[2] = {GRPO_TESTS_DIR "/fixtures/tokenizer/deepseek-v3", GRPO_TESTS_DIR "/fixtures/tokenizer/tiny"};
    for (int i = 0; i < 2; i++) {
        Err err = {0};
        if (!(toks[i] = tok_load(dirs[i], &err))) { fprintf(stderr, "%s\n", err.msg); abort(); }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!toks[0]) load();
    if (!size) return 0;
    const Tokenizer *t = toks[data[0] & 1];
    int special = (data[0] >> 1) & 1;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    TokIds ids = {0};
    TokText dec = {0}, st = {0}, clean = {0};
    Err err = {0};
    if (tok_encode(t, s, n, special, &ids, &err)) abort();
    if (tok_decode(t, ids.v, ids.n, 0, &dec, &err)) abort();
    TokStream ss = {0};
    for (size_t i = 0; i < ids.n; i++) tok_stream_push(t, &ss, ids.v[i], 0, &st, &err);
    tok_stream_flush(&ss, &st);
    tok_utf8_lossy(s, n, &clean);
    if (dec.n != clean.n || memcmp(dec.s ? dec.s : "", clean.s ? clean.s : "", dec.n)) abort();
    if (st.n != dec.n || memcmp(st.s ? st.s : "", dec.s ? dec.s : "", dec.n)) abort();
    tok_ids_free(&ids);
    tok_text_free(&dec);
    tok_text_free(&st);
    tok_text_free(&clean);
    return 0;
}
