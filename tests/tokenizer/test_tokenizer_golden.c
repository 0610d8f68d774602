/* test_tokenizer_golden: our encode/decode against the ids HF tokenizers made
 * (tests/golden/make_tokenizer_golden.py) for six tokenizer.json files (the
 * real DeepSeek-V3 one and five trained in the family styles) over GSM8K
 * test, MATH-500, HumanEval and a stress file. Checks, per sample: the ids
 * (count + FNV hash, and the ids themselves where stored), decode(encode(x))
 * == x where HF round-trips, streaming decode == whole decode; and HF's
 * decode of random id sequences. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer.h"
#include "test.h"

#define FIX GRPO_TESTS_DIR "/fixtures/tokenizer"

typedef struct Texts {
    char **s;
    size_t *len;
    size_t n;
} Texts;

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    fclose(f);
    b[n] = 0;
    *len = (size_t)n;
    return b;
}

static void texts_add(Texts *t, const char *s, size_t n) {
    t->s = realloc(t->s, (t->n + 1) * sizeof *t->s);
    t->len = realloc(t->len, (t->n + 1) * sizeof *t->len);
    t->s[t->n] = malloc(n + 1);
    memcpy(t->s[t->n], s, n);
    t->s[t->n][n] = 0;
    t->len[t->n++] = n;
}

/* The samples of one corpus, built exactly as the golden script builds them. */
static int corpus_load(const char *corpus, Texts *out) {
    size_t len;
    if (!strcmp(corpus, "stress")) {
        char *b = slurp(FIX "/stress.txt", &len);
        if (!b) return -1;
        size_t start = 0;
        for (size_t i = 0; i + 3 <= len; i++)
            if (!memcmp(b + i, "\n\x1e\n", 3)) { texts_add(out, b + start, i - start); start = i + 3; i += 2; }
        texts_add(out, b + start, len - start);
        free(b);
        return 0;
    }
    const char *file = !strcmp(corpus, "gsm8k") ? "gsm8k-test.jsonl" : !strcmp(corpus, "math500") ? "math500-test.jsonl" : "humaneval.jsonl";
    const char *f1 = !strcmp(corpus, "gsm8k") ? "question" : !strcmp(corpus, "math500") ? "problem" : "prompt";
    const char *f2 = !strcmp(corpus, "gsm8k") ? "answer" : !strcmp(corpus, "math500") ? "solution" : "canonical_solution";
    char path[1024];
    snprintf(path, sizeof path, "%s/data/%s", GRPO_SHARED_DIR, file);
    char *b = slurp(path, &len);
    if (!b) return -1;
    for (char *line = strtok(b, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *row = cJSON_Parse(line);
        const char *fs[2] = {f1, f2};
        for (int k = 0; k < 2; k++) {
            const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(row, fs[k]));
            texts_add(out, v ? v : "", v ? strlen(v) : 0);
        }
        cJSON_Delete(row);
    }
    free(b);
    return 0;
}

static uint64_t fnv(const int32_t *ids, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 4; k++) h = (h ^ (((uint32_t)ids[i] >> (8 * k)) & 255)) * 0x100000001b3ull;
    return h;
}

static void check_corpus(const Tokenizer *t, const char *tok, const char *corpus, const Texts *tx) {
    char path[1024];
    snprintf(path, sizeof path, FIX "/golden/%s.%s.ids", tok, corpus);
    size_t len;
    char *g = slurp(path, &len);
    CHECK(g != NULL, "%s missing", path);
    if (!g) return;
    char *save = NULL, *line = strtok_r(g, "\n", &save);
    int shown = 0, ok = 0;
    TokText clean = {0};
    for (size_t i = 0; i < tx->n; i++, line = strtok_r(NULL, "\n", &save)) {
        if (!line) { CHECK(0, "%s: fewer lines than samples", path); break; }
        char *p = line;
        int rt = (int)strtol(p, &p, 10);
        size_t n = strtoul(p, &p, 10);
        uint64_t h = strtoull(p, &p, 16);
        TokIds ids = {0};
        Err err = {0};
        int rc = tok_encode(t, tx->s[i], tx->len[i], 1, &ids, &err);
        int same = !rc && ids.n == n && fnv(ids.v, ids.n) == h;
        if (!same && shown++ < 3) {
            fprintf(stderr, "%s:%zu: %zu ids, want %zu (hash %016llx vs %016llx)\n  ours:", path, i + 1, ids.n, n,
                    (unsigned long long)fnv(ids.v, ids.n), (unsigned long long)h);
            for (size_t k = 0; k < ids.n && k < 40; k++) fprintf(stderr, " %d", ids.v[k]);
            fprintf(stderr, "\n  want:%.300s\n  text: %.200s\n", p, tx->s[i]);
        }
        ok += same;
        CHECK(same, "%s sample %zu", path, i + 1);
        if (rt) { /* decode(encode(x)) == x, whole and streamed */
            TokIds raw = {0};
            TokText dec = {0}, st = {0};
            TokStream ss = {0};
            tok_encode(t, tx->s[i], tx->len[i], 0, &raw, &err);
            tok_decode(t, raw.v, raw.n, 0, &dec, &err);
            for (size_t k = 0; k < raw.n; k++) tok_stream_push(t, &ss, raw.v[k], 0, &st, &err);
            tok_stream_flush(&ss, &st);
            tok_utf8_lossy(tx->s[i], tx->len[i], &clean);
            CHECK(dec.n == clean.n && !memcmp(dec.s ? dec.s : "", clean.s, clean.n), "%s sample %zu: decode differs", path, i + 1);
            CHECK(st.n == dec.n && !memcmp(st.s ? st.s : "", dec.s ? dec.s : "", dec.n), "%s sample %zu: stream decode differs", path, i + 1);
            tok_ids_free(&raw);
            tok_text_free(&dec);
            tok_text_free(&st);
        }
        tok_ids_free(&ids);
    }
    printf("%-13s %-9s %zu/%zu samples identical to HF tokenizers\n", tok, corpus, (size_t)ok, tx->n);
    tok_text_free(&clean);
    free(g);
}

static int hexval(int c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

static void check_decode(const Tokenizer *t, const char *tok) {
    char path[1024];
    snprintf(path, sizeof path, FIX "/golden/%s.decode", tok);
    size_t len;
    char *g = slurp(path, &len);
    CHECK(g != NULL, "%s missing", path);
    if (!g) return;
    char *save = NULL;
    int n = 0, ok = 0;
    for (char *line = strtok_r(g, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *tab = strchr(line, '\t');
        if (!tab) continue;
        *tab = 0;
        int32_t ids[16];
        size_t k = 0;
        for (char *p = line; *p && k < 16;) {
            char *e;
            long v = strtol(p, &e, 10);
            if (e == p) break;
            ids[k++] = (int32_t)v;
            p = e;
        }
        size_t hl = strlen(tab + 1);
        char want[256];
        for (size_t i = 0; i < hl / 2 && i < sizeof want; i++) want[i] = (char)(hexval(tab[1 + 2 * i]) * 16 + hexval(tab[2 + 2 * i]));
        TokText dec = {0};
        Err err = {0};
        tok_decode(t, ids, k, 0, &dec, &err);
        int same = dec.n == hl / 2 && !memcmp(dec.s ? dec.s : "", want, dec.n);
        CHECK(same, "%s line %d: decode of [%s] differs: got '%s'", path, n + 1, line, dec.s ? dec.s : "");
        ok += same;
        n++;
        tok_text_free(&dec);
    }
    printf("%-13s decode    %d/%d id sequences identical to HF tokenizers\n", tok, ok, n);
    free(g);
}

int main(int argc, char **argv) {
    static const char *toks[] = {"deepseek-v3", "tiny", "gpt2-style", "qwen2-style", "llama3-style", "misc-style"};
    static const char *corpora[] = {"gsm8k", "math500", "humaneval", "stress"};
    Texts tx[4] = {{0}};
    for (int c = 0; c < 4; c++)
        if (corpus_load(corpora[c], &tx[c])) TEST_SKIP("corpus %s not found (shared/data)", corpora[c]);
    for (int k = 0; k < 6; k++) {
        if (argc > 1 && strcmp(argv[1], toks[k])) continue;
        char dir[1024];
        snprintf(dir, sizeof dir, FIX "/%s", toks[k]);
        Err err = {0};
        Tokenizer *t = tok_load(dir, &err);
        CHECK(t != NULL, "load %s: %s", dir, err.msg);
        if (!t) continue;
        for (int c = 0; c < 4; c++) check_corpus(t, toks[k], corpora[c], &tx[c]);
        check_decode(t, toks[k]);
        tok_free(t);
    }
    for (int c = 0; c < 4; c++) {
        for (size_t i = 0; i < tx[c].n; i++) free(tx[c].s[i]);
        free(tx[c].s);
        free(tx[c].len);
    }
    return test_report();
}
