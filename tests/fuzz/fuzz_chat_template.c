/* fuzz_chat_template: libFuzzer target for the Jinja subset: the input is a
 * template, rendered over a fixed conversation; it must render or fail with
 * an input error, never crash or loop. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static cJSON *msgs, *vars;
    if (!msgs) {
        msgs = cJSON_Parse("[{\"role\":\"system\",\"content\":\"sys\"},{\"role\":\"user\",\"content\":\"hi\"},"
                           "{\"role\":\"assistant\",\"content\":\"<think>a</think>b\",\"tool_calls\":[{\"type\":\"function\","
                           "\"function\":{\"name\":\"f\",\"arguments\":{\"x\":1}}}]}]");
        vars = cJSON_Parse("{\"bos_token\":\"<s>\",\"eos_token\":\"</s>\"}");
    }
    char *tpl = malloc(size + 1);
    memcpy(tpl, data, size);
    tpl[size] = 0;
    TokText out = {0};
    Err err = {0};
    if (chat_render(tpl, msgs, vars, 1, &out, &err) && err.code != ERR_INPUT) abort();
    tok_text_free(&out);
    free(tpl);
    return 0;
}
