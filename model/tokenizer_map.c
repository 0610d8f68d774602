/* tokenizer_map: hash tables, the GPT-2 byte<->symbol map, UTF-8 helpers and
 * the growable id/text buffers used by the tokenizer. No tokenizer logic. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "model/tokenizer_impl.h"

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
    }
    uint64_t w = 0;
    memcpy(&w, s + i, n - i);
    h = (h ^ w) * 0x94D049BB133111EBull;
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ull;
    return x ^ (x >> 33);
}

static size_t pow2_for(size_t expect) {
    size_t cap = 16;
    while (cap < expect * 2 + 16) cap <<= 1;
    return cap;
}

void strmap_init(StrMap *m, size_t expect) {
    m->cap = pow2_for(expect);
    m->n = 0;
    m->key = xcalloc(m->cap, sizeof *m->key);
    m->klen = xcalloc(m->cap, sizeof *m->klen);
    m->val = xcalloc(m->cap, sizeof *m->val);
}

void strmap_free(StrMap *m) {
    free(m->key);
    free(m->klen);
    free(m->val);
    memset(m, 0, sizeof *m);
}

static void strmap_grow(StrMap *m) {
    StrMap g;
    strmap_init(&g, m->cap);
    for (size_t i = 0; i < m->cap; i++)
        if (m->key[i]) strmap_put(&g, m->key[i], m->klen[i], m->val[i]);
    strmap_free(m);
    *m = g;
}

void strmap_put(StrMap *m, const char *k, size_t n, int32_t v) {
    if ((m->n + 1) * 2 > m->cap) strmap_grow(m);
    size_t mask = m->cap - 1, i = hash_bytes(k, n) & mask;
    while (m->key[i]) {
        if (m->klen[i] == n && !memcmp(m->key[i], k, n)) { m->val[i] = v; return; }
        i = (i + 1) & mask;
    }
    m->key[i] = k;
    m->klen[i] = (uint32_t)n;
    m->val[i] = v;
    m->n++;
}

int32_t strmap_get(const StrMap *m, const char *k, size_t n) {
    if (!m->cap) return -1;
    size_t mask = m->cap - 1, i = hash_bytes(k, n) & mask;
    while (m->key[i]) {
        if (m->klen[i] == n && !memcmp(m->key[i], k, n)) return m->val[i];
        i = (i + 1) & mask;
    }
    return -1;
}

void u64map_init(U64Map *m, size_t expect) {
    m->cap = pow2_for(expect);
    m->n = 0;
    m->key = xmalloc(m->cap * sizeof *m->key);
    memset(m->key, 0xff, m->cap * sizeof *m->key);
    m->val = xmalloc(m->cap * sizeof *m->val);
}

void u64map_free(U64Map *m) {
    free(m->key);
    free(m->val);
    memset(m, 0, sizeof *m);
}

void u64map_put(U64Map *m, uint64_t k, uint64_t v) {
    if ((m->n + 1) * 2 > m->cap) {
        U64Map g;
        u64map_init(&g, m->cap);
        for (size_t i = 0; i < m->cap; i++)
            if (m->key[i] != UINT64_MAX) u64map_put(&g, m->key[i], m->val[i]);
        u64map_free(m);
        *m = g;
    }
    size_t mask = m->cap - 1, i = hash_u64(k) & mask;
    while (m->key[i] != UINT64_MAX) {
        if (m->key[i] == k) return; /* first (lowest-rank) merge wins, as HF */
        i = (i + 1) & mask;
    }
    m->key[i] = k;
    m->val[i] = v;
    m->n++;
}

int u64map_get(const U64Map *m, uint64_t k, uint64_t *v) {
    if (!m->cap) return 0;
    size_t mask = m->cap - 1, i = hash_u64(k) & mask;
    while (m->key[i] != UINT64_MAX) {
        if (m->key[i] == k) { *v = m->val[i]; return 1; }
        i = (i + 1) & mask;
    }
    return 0;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the
 * other 68 bytes to U+0100.. in byte order. */
static uint16_t b2c[256];
static int16_t c2b[512];
static pthread_once_t map_once = PTHREAD_ONCE_INIT;

static void map_build(void) {
    for (int i = 0; i < 512; i++) c2b[i] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        b2c[b] = printable ? (uint16_t)b : (uint16_t)(256 + n++);
        c2b[b2c[b]] = (int16_t)b;
    }
}

static void map_init(void) { pthread_once(&map_once, map_build); }

int tok_cp_to_byte(uint32_t cp) {
    map_init();
    return cp < 512 ? c2b[cp] : -1;
}

int tok_is_whitespace(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

int tok_utf8_decode1(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned c = s[0];
    if (c < 0x80 || n < 2) { *cp = c; return 1; }
    if (c < 0xE0) { *cp = ((c & 0x1F) << 6) | (s[1] & 0x3F); return 2; }
    if (c < 0xF0 || n < 4) {
        if (n < 3) { *cp = c; return 1; }
        *cp = ((c & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    *cp = ((c & 0x07) << 18) | ((s[1] & 0x3F) << 12) | ((s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    return 4;
}

size_t tok_utf8_encode1(uint32_t cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid UTF-8 character at s, or 0 with *bad set to the length
 * of the maximal subpart (the bytes one U+FFFD replaces; Unicode 6.0 §3.9 /
 * WHATWG, which Python and Rust both follow). */
static size_t utf8_valid1(const unsigned char *s, size_t n, size_t *bad) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        *bad = 1;
        return 0;
    }
    size_t i = 1;
    for (; i <= need; i++) {
        if (i >= n) { *bad = i; return 0; }
        unsigned b = s[i];
        unsigned l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (b < l || b > h) { *bad = i; return 0; }
    }
    return need + 1;
}

int tok_utf8_lossy(const char *s, size_t n, TokText *out) {
    out->n = 0;
    const unsigned char *u = (const unsigned char *)s;
    int valid = 1;
    size_t i = 0, run = 0;
    while (i < n) {
        size_t bad = 0, k = utf8_valid1(u + i, n - i, &bad);
        if (k) { i += k; continue; }
        valid = 0;
        tok_text_append(out, s + run, i - run);
        tok_text_append(out, "\xEF\xBF\xBD", 3);
        i += bad;
        run = i;
    }
    tok_text_append(out, s + run, n - run);
    return valid;
}

void tok_ids_push(TokIds *ids, int32_t id) {
    if (ids->n == ids->cap) {
        ids->cap = ids->cap ? ids->cap * 2 : 64;
        ids->v = xrealloc(ids->v, ids->cap * sizeof *ids->v);
    }
    ids->v[ids->n++] = id;
}

void tok_ids_free(TokIds *ids) {
    free(ids->v);
    memset(ids, 0, sizeof *ids);
}

void tok_text_append(TokText *t, const char *s, size_t n) {
    if (t->n + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 64;
        while (cap < t->n + n + 1) cap *= 2;
        t->s = xrealloc(t->s, cap);
        t->cap = cap;
    }
    if (n) memcpy(t->s + t->n, s, n);
    t->n += n;
    t->s[t->n] = 0;
}

void tok_text_free(TokText *t) {
    free(t->s);
    memset(t, 0, sizeof *t);
}
