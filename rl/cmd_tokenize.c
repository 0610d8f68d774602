/* cmd_tokenize: `grpo tokenize --tokenizer DIR [--decode]`: text on stdin ->
 * token ids on stdout (space-separated, one line), or with --decode ids ->
 * text. --lines treats every input line as its own text (or id list), one
 * output line each. Input that is not valid UTF-8 is encoded as HF would see
 * it after a lossy decode (U+FFFD); bad ids are usage errors (exit 2).
 * --chat renders a JSON message list with the tokenizer's chat template. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "cli.h"
#include "cmd.h"
#include "model/template.h"
#include "model/tokenizer.h"

static char *read_all(FILE *f, size_t max, size_t *len, int *too_big) {
    size_t cap = 1 << 16, n = 0;
    char *b = xmalloc(cap);
    size_t got;
    *too_big = 0;
    while ((got = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n > max) { *too_big = 1; break; }
        if (cap - n - 1 == 0) b = xrealloc(b, cap *= 2);
    }
    b[n] = 0;
    *len = n;
    return b;
}

static int encode_one(const Tokenizer *t, const char *s, size_t n, int special, int show, TokIds *ids) {
    Err err = {0};
    ids->n = 0;
    if (tok_encode(t, s, n, special, ids, &err)) {
        fprintf(stderr, "grpo tokenize: %s\n", err.msg);
        return err.code ? err.code : 1;
    }
    for (size_t i = 0; i < ids->n; i++) {
        if (show) printf("%s%d:%s", i ? " " : "", ids->v[i], tok_token(t, ids->v[i]));
        else printf(i ? " %d" : "%d", ids->v[i]);
    }
    putchar('\n');
    return 0;
}

/* Parses the ids of one line (or the whole input) and prints their text. */
static int decode_one(const Tokenizer *t, const char *s, size_t n, int lineno, int skip, TokIds *ids) {
    ids->n = 0;
    const char *p = s, *end = s + n;
    while (p < end) {
        while (p < end && strchr(" \t\r\n,", *p)) p++;
        if (p >= end) break;
        char *e;
        errno = 0;
        long v = strtol(p, &e, 10);
        if (e == p || errno || v < 0 || v >= tok_vocab_size(t)) {
            int k = 0;
            while (p + k < end && !strchr(" \t\r\n,", p[k]) && k < 40) k++;
            fprintf(stderr, "grpo tokenize: stdin line %d: '%.*s' is not a token id (0..%d)\n", lineno, k, p,
                    tok_vocab_size(t) - 1);
            return 2;
        }
        tok_ids_push(ids, (int32_t)v);
        p = e;
    }
    TokText out = {0};
    Err err = {0};
    if (tok_decode(t, ids->v, ids->n, skip, &out, &err)) {
        fprintf(stderr, "grpo tokenize: stdin line %d: %s\n", lineno, err.msg);
        return 2;
    }
    fwrite(out.s ? out.s : "", 1, out.n, stdout);
    tok_text_free(&out);
    return 0;
}

/* --chat: renders a JSON array of messages with the tokenizer's chat template. */
static int chat_one(const Tokenizer *t, const char *in, size_t len, int gen) {
    cJSON *msgs = cJSON_ParseWithLength(in, len);
    if (!cJSON_IsArray(msgs)) {
        cJSON_Delete(msgs);
        fprintf(stderr, "grpo tokenize: stdin: --chat wants a JSON array of {\"role\", \"content\"} messages\n");
        return 2;
    }
    TokText out = {0};
    Err err = {0};
    int rc = chat_apply(t, msgs, gen, &out, &err);
    if (rc) fprintf(stderr, "grpo tokenize: %s\n", err.msg);
    else fwrite(out.s ? out.s : "", 1, out.n, stdout);
    tok_text_free(&out);
    cJSON_Delete(msgs);
    return rc ? (err.code ? err.code : 1) : 0;
}

int cmd_tokenize(int argc, char **argv) {
    CliOpt opts[] = {
        {"--tokenizer", "DIR", NULL, "folder with tokenizer.json (+ tokenizer_config.json), or the tokenizer.json", NULL},
        {"--decode", NULL, NULL, "read token ids, print text", NULL},
        {"--lines", NULL, NULL, "one text (or id list) per input line, one output line each", NULL},
        {"--no-special", NULL, NULL, "encode without the post-processor's special tokens (e.g. Llama 3's bos)", NULL},
        {"--skip-special", NULL, NULL, "decode: leave special tokens out", NULL},
        {"--show-tokens", NULL, NULL, "encode: print id:token pairs", NULL},
        {"--chat", NULL, NULL, "stdin is a JSON array of messages: print the prompt the tokenizer's chat template renders", NULL},
        {"--no-generation-prompt", NULL, NULL, "--chat: leave out the assistant turn's opening", NULL},
        {"--max-bytes", "N", "1073741824", "refuse more input than this", NULL},
        {0}};
    CliSpec spec = {"grpo tokenize --tokenizer DIR [--decode] [options] < input",
                    "Reads text on stdin and prints its token ids, space-separated, as HF tokenizers'\n"
                    "encode (add_special_tokens=True unless --no-special); with --decode reads ids\n"
                    "(separated by spaces, commas or newlines) and prints the text.",
                    opts, 0, 0};
    const char *pos[1];
    int npos, rc = cli_parse(&spec, argc, argv, pos, &npos);
    if (rc == CLI_HELP) return 0;
    if (rc || cli_require(&spec, "--tokenizer")) return 2;
    long max;
    if (cli_long(&spec, "--max-bytes", &max) || max < 0) return 2;
    Err err = {0};
    Tokenizer *t = tok_load(cli_str(&spec, "--tokenizer"), &err);
    if (!t) { fprintf(stderr, "grpo tokenize: %s\n", err.msg); return err.code ? err.code : 1; }
    size_t len;
    int too_big;
    char *in = read_all(stdin, (size_t)max, &len, &too_big);
    int decode = cli_flag(&spec, "--decode"), lines = cli_flag(&spec, "--lines");
    int special = !cli_flag(&spec, "--no-special"), skip = cli_flag(&spec, "--skip-special");
    int show = cli_flag(&spec, "--show-tokens");
    TokIds ids = {0};
    rc = 0;
    if (!too_big && cli_flag(&spec, "--chat")) {
        rc = chat_one(t, in, len, !cli_flag(&spec, "--no-generation-prompt"));
    } else if (too_big) {
        fprintf(stderr, "grpo tokenize: stdin: more than --max-bytes %ld bytes\n", max);
        rc = 2;
    } else if (!lines) {
        rc = decode ? decode_one(t, in, len, 1, skip, &ids) : encode_one(t, in, len, special, show, &ids);
    } else {
        int lineno = 0;
        for (size_t a = 0; a < len && !rc;) {
            const char *nl = memchr(in + a, '\n', len - a);
            size_t e = nl ? (size_t)(nl - in) : len;
            lineno++;
            if (decode) {
                rc = decode_one(t, in + a, e - a, lineno, skip, &ids);
                if (!rc) putchar('\n');
            } else {
                rc = encode_one(t, in + a, e - a, special, show, &ids);
            }
            a = e + 1;
        }
    }
    tok_ids_free(&ids);
    free(in);
    tok_free(t);
    return rc;
}
