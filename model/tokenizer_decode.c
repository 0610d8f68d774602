/* tokenizer_decode: ids -> text as HF tokenizers' decode: each id's token
 * string (added tokens first), the ByteLevel decoder maps every symbol back
 * to its byte (a token with a non-byte-level character is taken as its UTF-8
 * as is), and the bytes become text with invalid sequences as U+FFFD. The
 * streaming form holds back the bytes of a character not yet complete. */
#include <string.h>

#include "model/tokenizer_impl.h"

/* Appends the bytes of one token (before the lossy UTF-8 step). */
static int token_bytes(const Tokenizer *t, int32_t id, int skip_special, int first, TokText *out, Err *err) {
    const char *s = tok_token(t, id);
    if (!s) return 0; /* HF decode skips ids it has no token for (e.g. a model's padded vocabulary rows) */
    if (skip_special && t->special[id]) return 0;
    size_t n = strlen(s);
    if (!t->has_decoder) { /* HF joins tokens with spaces when there is no decoder */
        if (!first) tok_text_append(out, " ", 1);
        tok_text_append(out, s, n);
        return 0;
    }
    size_t start = out->n;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += tok_utf8_decode1((const unsigned char *)s + i, n - i, &cp);
        int b = tok_cp_to_byte(cp);
        if (b < 0) { /* not byte-level: the whole token as written */
            out->n = start;
            tok_text_append(out, s, n);
            return 0;
        }
        char c = (char)b;
        tok_text_append(out, &c, 1);
    }
    return 0;
}

int tok_decode(const Tokenizer *t, const int32_t *ids, size_t n, int skip_special, TokText *out, Err *err) {
    TokText raw = {0}, clean = {0};
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) rc = token_bytes(t, ids[i], skip_special, raw.n == 0, &raw, err);
    if (!rc) {
        tok_utf8_lossy(raw.s ? raw.s : "", raw.n, &clean);
        tok_text_append(out, clean.s ? clean.s : "", clean.n);
    }
    tok_text_free(&raw);
    tok_text_free(&clean);
    return rc;
}

/* Length of the trailing bytes of s that begin a UTF-8 character but do not
 * complete it yet (and could still be completed). */
static size_t incomplete_tail(const unsigned char *s, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned c = s[n - k];
        if ((c & 0xC0) == 0x80) continue;
        size_t need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 1;
        if (need <= k) return 0;
        /* the continuation bytes so far must be allowed for this lead byte */
        if (k >= 2) {
            unsigned b = s[n - k + 1];
            unsigned lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
            unsigned hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
            if (b < lo || b > hi) return 0;
        }
        return k;
    }
    return 0;
}

int tok_stream_push(const Tokenizer *t, TokStream *s, int32_t id, int skip_special, TokText *out, Err *err) {
    TokText raw = {0}, clean = {0};
    tok_text_append(&raw, (const char *)s->pend, (size_t)s->npend);
    int rc = token_bytes(t, id, skip_special, !s->started, &raw, err);
    if (!rc && raw.n > (size_t)s->npend) s->started = 1;
    if (!rc) {
        size_t keep = incomplete_tail((const unsigned char *)raw.s, raw.n);
        tok_utf8_lossy(raw.s, raw.n - keep, &clean);
        tok_text_append(out, clean.s ? clean.s : "", clean.n);
        memcpy(s->pend, raw.s + raw.n - keep, keep);
        s->npend = (int)keep;
    }
    tok_text_free(&raw);
    tok_text_free(&clean);
    return rc;
}

void tok_stream_flush(TokStream *s, TokText *out) {
    if (!s->npend) return;
    TokText clean = {0};
    tok_utf8_lossy((const char *)s->pend, (size_t)s->npend, &clean);
    tok_text_append(out, clean.s, clean.n);
    tok_text_free(&clean);
    s->npend = 0;
}
