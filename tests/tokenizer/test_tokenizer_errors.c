/* test_tokenizer_errors: bad and unsupported tokenizer.json files give clear
 * input errors naming the component; huge and odd inputs do not crash;
 * lookups, config tokens and streaming decode; the `grpo tokenize` CLI. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "model/tokenizer.h"
#include "test.h"

#define FIX GRPO_TESTS_DIR "/fixtures/tokenizer"

static void expect_load_error(const char *json, const char *want) {
    Err err = {0};
    Tokenizer *t = tok_load_mem(json, strlen(json), NULL, 0, "test.json", &err);
    CHECK(t == NULL && err.code == ERR_INPUT && strstr(err.msg, want), "want '%s', got '%s'", want, err.msg);
    tok_free(t);
}

#define VOCAB "\"vocab\":{\"a\":0,\"b\":1,\"ab\":2}"

static void check_bad_json(void) {
    expect_load_error("{\"model\": ", "not a valid JSON");
    expect_load_error("[1,2]", "not a valid JSON object");
    expect_load_error("{}", "no \"model\"");
    expect_load_error("{\"model\":{\"type\":\"WordPiece\"," VOCAB "}}", "unsupported model type \"WordPiece\"");
    expect_load_error("{\"model\":{\"type\":\"BPE\"," VOCAB ",\"merges\":[\"a c\"]}}", "not in the vocab");
    expect_load_error("{\"model\":{\"type\":\"BPE\"," VOCAB ",\"merges\":[\"abc\"]}}", "two tokens");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-5}}}", "id must be an integer");
    expect_load_error("{\"model\":{\"type\":\"BPE\"," VOCAB "},\"pre_tokenizer\":{\"type\":\"Metaspace\"}}",
                      "unsupported pre_tokenizer type \"Metaspace\"");
    expect_load_error("{\"model\":{\"type\":\"BPE\"," VOCAB "},\"normalizer\":{\"type\":\"Replace\"}}",
                      "unsupported normalizer type \"Replace\"");
    expect_load_error("{\"model\":{\"type\":\"BPE\"," VOCAB "},\"decoder\":{\"type\":\"WordPiece\"}}",
                      "unsupported decoder type \"WordPiece\"");
    expect_load_error("{\"model\":{\"type\":\"BPE\"," VOCAB "},\"post_processor\":{\"type\":\"Weird\"}}",
                      "unsupported post_processor type \"Weird\"");
    expect_load_error("{\"model\":{\"type\":\"BPE\"," VOCAB "},\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},"
                      "\"behavior\":\"Isolated\"}}", "does not compile");
    expect_load_error("{\"model\":{\"type\":\"BPE\"," VOCAB "},\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},"
                      "\"behavior\":\"Sideways\"}}", "unsupported behavior \"Sideways\"");
    expect_load_error("{\"model\":{\"type\":\"BPE\"," VOCAB ",\"dropout\":0.1}}", "dropout");
    expect_load_error("{\"model\":{\"type\":\"BPE\"," VOCAB "},\"added_tokens\":[{\"id\":3}]}", "content");
    Err err = {0};
    CHECK(tok_load("/nonexistent/tok", &err) == NULL && err.code == ERR_INPUT && strstr(err.msg, "/nonexistent/tok"),
          "missing dir: %s", err.msg);
}

static void check_minimal(void) {
    const char *j = "{\"model\":{\"type\":\"BPE\"," VOCAB ",\"merges\":[[\"a\",\"b\"]]}}";
    Err err = {0};
    Tokenizer *t = tok_load_mem(j, strlen(j), NULL, 0, "min", &err);
    CHECK(t != NULL, "minimal BPE: %s", err.msg);
    if (!t) return;
    TokIds ids = {0};
    tok_encode(t, "abab", 4, 1, &ids, &err);
    CHECK(ids.n == 2 && ids.v[0] == 2 && ids.v[1] == 2, "abab -> [2 2], got %zu ids", ids.n);
    ids.n = 0;
    tok_encode(t, "xaz", 3, 1, &ids, &err); /* unknown chars without unk are dropped, as HF */
    CHECK(ids.n == 1 && ids.v[0] == 0, "xaz -> [0]");
    TokText out = {0};
    int32_t bad[3] = {2, 99, 2}; /* an id with no token is skipped, as HF's decode does */
    CHECK(tok_decode(t, bad, 3, 0, &out, &err) == 0 && out.n == 5 && !memcmp(out.s, "ab ab", 5), "decode skips id 99 (no decoder: joined by spaces): '%.*s'",
          (int)out.n, out.s ? out.s : "");
    tok_ids_free(&ids);
    tok_text_free(&out);
    tok_free(t);
}

static void check_deepseek_lookups(void) {
    Err err = {0};
    Tokenizer *t = tok_load(FIX "/deepseek-v3", &err);
    CHECK(t != NULL, "%s", err.msg);
    if (!t) return;
    CHECK(tok_bos(t) == 0 && tok_eos(t) == 1 && tok_pad(t) == 1, "bos/eos/pad %d %d %d", tok_bos(t), tok_eos(t), tok_pad(t));
    CHECK(tok_vocab_size(t) == 128815, "vocab size %d", tok_vocab_size(t));
    CHECK(tok_id(t, "<think>") == 128798 && tok_id(t, "</think>") == 128799, "<think> ids");
    CHECK(tok_id(t, "<｜User｜>") == 128803 && tok_id(t, "<｜Assistant｜>") == 128804, "User/Assistant ids");
    CHECK(tok_is_special(t, 0) && !tok_is_special(t, 128814), "special flags");
    CHECK(tok_token(t, 128799) && !strcmp(tok_token(t, 128799), "</think>"), "id -> token");
    CHECK(tok_id(t, "Ġthe") >= 0 && tok_id(t, "no-such-token-xyz") == -1, "vocab lookups");
    CHECK(tok_token(t, -1) == NULL && tok_token(t, 1 << 30) == NULL, "out of range");

    /* streaming: "🙂" is 4 bytes split over byte-level tokens; nothing until complete */
    const char *s = "ok 🙂 done";
    TokIds ids = {0};
    tok_encode(t, s, strlen(s), 0, &ids, &err);
    TokStream st = {0};
    TokText out = {0};
    size_t before_last = 0;
    for (size_t i = 0; i < ids.n; i++) {
        tok_stream_push(t, &st, ids.v[i], 0, &out, &err);
        for (size_t k = before_last; k < out.n; k++) /* every emitted prefix is valid UTF-8 */
            CHECK(((unsigned char)out.s[k] & 0xC0) != 0x80 || k > 0, "continuation byte first");
        TokText chk = {0};
        CHECK(tok_utf8_lossy(out.s ? out.s : "", out.n, &chk), "stream prefix not valid UTF-8 after token %zu", i);
        tok_text_free(&chk);
        before_last = out.n;
    }
    tok_stream_flush(&st, &out);
    CHECK(out.s && !strcmp(out.s, s), "stream decode '%s'", out.s);
    /* a dangling lead byte at the end becomes U+FFFD on flush */
    TokStream st2 = {0};
    TokText o2 = {0};
    int32_t lead = tok_id(t, "ð"); /* byte 0xF0 */
    CHECK(lead >= 0, "byte token for 0xF0");
    tok_stream_push(t, &st2, lead, 0, &o2, &err);
    CHECK(o2.n == 0 && st2.npend == 1, "held back");
    tok_stream_flush(&st2, &o2);
    CHECK(o2.n == 3 && !memcmp(o2.s, "\xEF\xBF\xBD", 3), "flushed as U+FFFD");
    tok_text_free(&o2);

    /* huge inputs: long runs go through the heap BPE; a 4 MB text with no crash */
    size_t big = 4u << 20;
    char *b = malloc(big + 1);
    for (size_t i = 0; i < big; i++) b[i] = "ab c\n  9x"[i % 9];
    memset(b, 'z', 300000); /* one 300k-byte word */
    memset(b + 400000, ' ', 200000);
    ids.n = 0;
    CHECK(tok_encode(t, b, big, 0, &ids, &err) == 0 && ids.n > 0, "big encode");
    out.n = 0;
    CHECK(tok_decode(t, ids.v, ids.n, 0, &out, &err) == 0 && out.n == big && !memcmp(out.s, b, big), "big round trip");
    free(b);
    tok_ids_free(&ids);
    tok_text_free(&out);
    tok_free(t);
}

static int run(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void check_cli(void) {
    char out[4096], cmd[2048];
    snprintf(cmd, sizeof cmd, "printf 'Hello world! 12345 <｜User｜>hi' | %s tokenize --tokenizer %s", GRPO_BIN, FIX "/deepseek-v3");
    CHECK(run(cmd, out, sizeof out) == 0 && !strcmp(out, "19923 2058 3 223 6895 1883 223 128803 6366\n"), "encode: '%s'", out);
    snprintf(cmd, sizeof cmd, "echo '19923 2058 3 223 6895 1883 223 128803 6366' | %s tokenize --decode --tokenizer %s",
             GRPO_BIN, FIX "/deepseek-v3");
    CHECK(run(cmd, out, sizeof out) == 0 && !strcmp(out, "Hello world! 12345 <｜User｜>hi"), "decode: '%s'", out);
    snprintf(cmd, sizeof cmd, "printf 'a b\\nc\\n' | %s tokenize --lines --tokenizer %s", GRPO_BIN, FIX "/tiny");
    CHECK(run(cmd, out, sizeof out) == 0 && strchr(out, '\n') != strrchr(out, '\n'), "--lines gives 2 lines: '%s'", out);
    snprintf(cmd, sizeof cmd, "echo '1 x 2' | %s tokenize --decode --tokenizer %s 2>&1", GRPO_BIN, FIX "/tiny");
    CHECK(run(cmd, out, sizeof out) == 2 && strstr(out, "'x' is not a token id"), "bad id: '%s'", out);
    snprintf(cmd, sizeof cmd, "echo hi | %s tokenize 2>&1", GRPO_BIN);
    CHECK(run(cmd, out, sizeof out) == 2 && strstr(out, "--tokenizer"), "missing --tokenizer: '%s'", out);
    snprintf(cmd, sizeof cmd, "echo hi | %s tokenize --tokenizer /nonexistent 2>&1", GRPO_BIN);
    CHECK(run(cmd, out, sizeof out) == 2, "bad dir exit 2: '%s'", out);
    snprintf(cmd, sizeof cmd, "echo '[{\"role\":\"user\",\"content\":\"What is 2+2?\"}]' | %s tokenize --chat --tokenizer %s",
             GRPO_BIN, FIX "/tiny");
    CHECK(run(cmd, out, sizeof out) == 0 && !strcmp(out, "<|bos|><｜User｜>What is 2+2?<｜Assistant｜><think>\n"), "--chat: '%s'", out);
    snprintf(cmd, sizeof cmd, "echo '{}' | %s tokenize --chat --tokenizer %s 2>&1", GRPO_BIN, FIX "/tiny");
    CHECK(run(cmd, out, sizeof out) == 2 && strstr(out, "JSON array"), "--chat bad input: '%s'", out);
    snprintf(cmd, sizeof cmd, "head -c 5000 /dev/zero | %s tokenize --tokenizer %s --max-bytes 100 2>&1", GRPO_BIN, FIX "/tiny");
    CHECK(run(cmd, out, sizeof out) == 2 && strstr(out, "max-bytes"), "too big: '%s'", out);
}

typedef struct Job {
    const Tokenizer *t;
    const char *text;
    size_t len;
    TokIds ids;
} Job;

static void *encode_job(void *p) {
    Job *j = p;
    Err err = {0};
    for (int r = 0; r < 20; r++) {
        j->ids.n = 0;
        tok_encode(j->t, j->text, j->len, 1, &j->ids, &err);
    }
    return NULL;
}

/* A loaded tokenizer is shared read-only by threads: same ids as one thread. */
static void check_threads(void) {
    Err err = {0};
    Tokenizer *t = tok_load(FIX "/qwen2-style", &err);
    CHECK(t != NULL, "%s", err.msg);
    if (!t) return;
    const char *text = "Ünïcödé text with numbers 12345, <|im_start|>special<|im_end|> and   spaces\n\n";
    TokIds ref = {0};
    tok_encode(t, text, strlen(text), 1, &ref, &err);
    Job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (Job){t, text, strlen(text), {0}};
        pthread_create(&th[i], NULL, encode_job, &jobs[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(jobs[i].ids.n == ref.n && !memcmp(jobs[i].ids.v, ref.v, ref.n * sizeof *ref.v), "thread %d ids differ", i);
        tok_ids_free(&jobs[i].ids);
    }
    tok_ids_free(&ref);
    tok_free(t);
}

int main(void) {
    check_threads();
    check_bad_json();
    check_minimal();
    check_deepseek_lookups();
    check_cli();
    return test_report();
}
