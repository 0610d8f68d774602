/* test_chat_template: chat templates rendered by our Jinja subset against
 * transformers' apply_chat_template (tests/golden/make_chat_golden.py) for
 * DeepSeek-R1, DeepSeek-V3, Qwen2.5 and Llama 3 templates; the tiny
 * tokenizer's own template through chat_apply; plain {field} templates;
 * and the errors unsupported or failing templates must give. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/template.h"
#include "test.h"

#define FIX GRPO_TESTS_DIR "/fixtures/tokenizer"

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    fclose(f);
    b[n] = 0;
    return b;
}

static void check_golden(void) {
    char *txt = slurp(FIX "/chat/cases.json");
    CHECK(txt != NULL, "cases.json missing");
    if (!txt) return;
    cJSON *root = cJSON_Parse(txt), *c;
    int n = 0, ok = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases")) {
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(c, "template"));
        char path[512];
        snprintf(path, sizeof path, FIX "/templates/%s.jinja", name);
        char *tpl = slurp(path);
        CHECK(tpl != NULL, "%s missing", path);
        if (!tpl) continue;
        const cJSON *exp = cJSON_GetObjectItem(c, "expected");
        TokText out = {0};
        Err err = {0};
        int gen = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt"));
        int rc = chat_render(tpl, cJSON_GetObjectItem(c, "messages"), cJSON_GetObjectItem(c, "vars"), gen, &out, &err);
        int same;
        if (cJSON_IsNull(exp)) {
            same = rc != 0 && err.code == ERR_INPUT;
        } else {
            const char *e = cJSON_GetStringValue(exp);
            same = rc == 0 && out.n == strlen(e) && !memcmp(out.s ? out.s : "", e, out.n);
            if (!same)
                fprintf(stderr, "case %d (%s, gen=%d): rc=%d %s\n--- ours ---\n%s\n--- transformers ---\n%s\n---\n", n, name, gen,
                        rc, err.msg, out.s ? out.s : "", e);
        }
        CHECK(same, "chat case %d (%s)", n, name);
        ok += same;
        n++;
        tok_text_free(&out);
        free(tpl);
    }
    printf("chat templates: %d/%d renderings identical to transformers %s\n", ok, n,
           cJSON_GetStringValue(cJSON_GetObjectItem(root, "transformers")));
    cJSON_Delete(root);
    free(txt);
}

static void check_apply_tiny(void) {
    Err err = {0};
    Tokenizer *t = tok_load(FIX "/tiny", &err);
    CHECK(t != NULL, "tiny: %s", err.msg);
    if (!t) return;
    cJSON *msgs = cJSON_Parse("[{\"role\":\"user\",\"content\":\"What is 2+2?\"}]");
    TokText out = {0};
    CHECK(chat_apply(t, msgs, 1, &out, &err) == 0, "chat_apply: %s", err.msg);
    CHECK(out.s && !strcmp(out.s, "<|bos|><｜User｜>What is 2+2?<｜Assistant｜><think>\n"), "tiny prompt: '%s'", out.s);
    TokIds ids = {0};
    tok_encode(t, out.s, out.n, 0, &ids, &err);
    CHECK(ids.n > 3 && ids.v[0] == tok_bos(t), "the rendered prompt starts with bos (%d)", ids.n ? ids.v[0] : -1);
    CHECK(ids.v[ids.n - 2] == tok_id(t, "<think>"), "<think> is one token");
    tok_ids_free(&ids);
    tok_text_free(&out);
    cJSON_Delete(msgs);
    tok_free(t);
}

static void check_plain(void) {
    cJSON *row = cJSON_Parse("{\"prompt\":\"What is 2+2?\",\"n\":3,\"nums\":[1,2]}");
    TokText out = {0};
    Err err = {0};
    CHECK(tpl_fill(tpl_builtin("r1-zero"), row, &out, &err) == 0, "%s", err.msg);
    const char *want_end = "</answer>. User: What is 2+2?. Assistant:";
    CHECK(out.n > strlen(want_end) && !strcmp(out.s + out.n - strlen(want_end), want_end), "r1-zero: %s", out.s);
    out.n = 0;
    CHECK(tpl_fill("{{x}} {n} {nums} {prompt}", row, &out, &err) == 0 && !strcmp(out.s, "{x} 3 [1,2] What is 2+2?"),
          "fill: '%s'", out.s);
    out.n = 0;
    CHECK(tpl_fill("{missing}", row, &out, &err) == -1 && err.code == ERR_INPUT && strstr(err.msg, "missing"),
          "missing field: %s", err.msg);
    CHECK(tpl_fill("{prompt", row, &out, &err) == -1 && err.code == ERR_INPUT, "unclosed: %s", err.msg);
    out.n = 0;
    CHECK(tpl_fill(tpl_builtin("qwen-math"), row, &out, &err) == 0 && strstr(out.s, "\\boxed{}.<|im_end|>"), "qwen-math: %s", out.s);
    for (int i = 0; tpl_builtin_names[i]; i++) CHECK(tpl_builtin(tpl_builtin_names[i]) != NULL, "builtin %d", i);
    CHECK(tpl_builtin("nope") == NULL, "unknown builtin");
    tok_text_free(&out);
    cJSON_Delete(row);
}

static void check_errors(void) {
    static const struct { const char *tpl, *want; } bad[] = {
        {"{% macro m() %}x{% endmacro %}", "unsupported tag 'macro'"},
        {"{{ x | wordwrap }}", "unsupported filter 'wordwrap'"},
        {"{% if x %}never closed", "missing {% endif %}"},
        {"{{ 'abc' ", "not closed"},
        {"{{ raise_exception('no system role') }}", "raise_exception: no system role"},
        {"{{ messages[0].content + undefined_var }}", "undefined"},
        {"{% for m in 3 %}{% endfor %}", "cannot loop over a int"},
        {"{{ 1 // 0 }}", "division by zero"},
        {"{% set ns.x = 1 %}", "not a namespace"},
        {"{{ (((( }}", "not closed"},
        {"{{ ) }}", "unexpected ')'"},
    };
    cJSON *msgs = cJSON_Parse("[{\"role\":\"user\",\"content\":\"hi\"}]");
    /* hostile nesting is refused, not a stack overflow */
    size_t deep = 100000;
    char *t = malloc(deep * 2 + 16), *u = malloc(deep * 16 + 16);
    strcpy(t, "{{ ");
    for (size_t i = 0; i < deep; i++) t[3 + i] = '(';
    t[3 + deep] = '1';
    for (size_t i = 0; i < deep; i++) t[4 + deep + i] = ')';
    strcpy(t + 4 + 2 * deep, " }}");
    u[0] = 0;
    for (size_t i = 0, n = 0; i < 300; i++) n += (size_t)sprintf(u + n, "{%% if 1 %%}");
    const char *deep_tpl[] = {t, u};
    for (int k = 0; k < 2; k++) {
        TokText out = {0};
        Err err = {0};
        CHECK(chat_render(deep_tpl[k], msgs, NULL, 1, &out, &err) == -1 && strstr(err.msg, "nested more than"),
              "deep nesting %d: %s", k, err.msg);
        tok_text_free(&out);
    }
    free(t);
    free(u);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        TokText out = {0};
        Err err = {0};
        int rc = chat_render(bad[i].tpl, msgs, NULL, 1, &out, &err);
        CHECK(rc == -1 && err.code == ERR_INPUT && strstr(err.msg, bad[i].want), "'%s': rc=%d msg='%s'", bad[i].tpl, rc,
              err.msg);
        tok_text_free(&out);
    }
    cJSON_Delete(msgs);
}

int main(void) {
    check_golden();
    check_apply_tiny();
    check_plain();
    check_errors();
    return test_report();
}
