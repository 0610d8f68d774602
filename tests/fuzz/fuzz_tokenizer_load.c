/* fuzz_tokenizer_load: libFuzzer target for the tokenizer.json loader. Input
 * is the JSON text; a tokenizer that loads must then encode and decode a
 * fixed text without failing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Err err = {0};
    Tokenizer *t = tok_load_mem((const char *)data, size, NULL, 0, "fuzz.json", &err);
    if (!t) {
        if (err.code != ERR_INPUT) abort(); /* bad input is an input error, never anything else */
        return 0;
    }
    static const char text[] = "Hello  world 123 <think>x</think> \xff \xe4\xb8\xad";
    TokIds ids = {0};
    TokText out = {0};
    if (tok_encode(t, text, sizeof text - 1, 1, &ids, &err)) abort();
    tok_decode(t, ids.v, ids.n, 1, &out, &err);
    tok_ids_free(&ids);
    tok_text_free(&out);
    tok_free(t);
    return 0;
}
