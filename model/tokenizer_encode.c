/* tokenizer_encode: text -> ids, in the order HF tokenizers runs its
 * pipeline: added tokens that are not normalized are cut out of the raw
 * text; each remaining section is normalized, cut again at normalized added
 * tokens, pre-tokenized (Split / ByteLevel steps, each acting on the pieces
 * of the previous one), and every piece goes through BPE; then the
 * post-processor adds its tokens. BPE merges by rank through a hash table,
 * lowest rank first, leftmost on ties (HF's order), with a linear scan for
 * short pieces and a binary heap for long ones. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "base/xalloc.h"
#include "model/tokenizer_impl.h"

typedef struct Span {
    size_t off, len; /* into Work.buf */
} Span;

typedef struct SpanList {
    Span *v;
    size_t n, cap;
} SpanList;

typedef struct HeapEnt {
    uint32_t rank, pos, right;
} HeapEnt;

/* Scratch for one encode call. */
typedef struct Work {
    TokText buf;          /* the section being pre-tokenized, plus pieces made by prefix spaces */
    SpanList a, b, seg;   /* pieces now / next / regex segments of one piece (off = start, len = end, plus flag) */
    uint8_t *segm;        /* [seg.cap] segment is a match */
    size_t segm_cap;
    pcre2_match_data *md;
    int32_t *sym, *nxt, *prv, *pmid; /* [n] BPE symbols */
    uint32_t *prk;
    size_t cap;
    HeapEnt *heap;
    size_t nheap, heap_cap;
    TokText norm;
    int match_error; /* a PCRE2 error code other than no-match, 0 if none */
} Work;

static void spans_push(SpanList *l, size_t off, size_t len) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = (Span){off, len};
}

/* ---- BPE ---------------------------------------------------------------- */

static uint32_t pair_rank(const Tokenizer *t, int32_t a, int32_t b, int32_t *merged) {
    uint64_t v;
    if (a < 0 || b < 0 || !u64map_get(&t->merges, (uint64_t)(uint32_t)a << 32 | (uint32_t)b, &v)) return UINT32_MAX;
    *merged = (int32_t)(uint32_t)v;
    return (uint32_t)(v >> 32);
}

static void work_reserve(Work *w, size_t n) {
    if (n <= w->cap) return;
    w->cap = n * 2;
    w->sym = xrealloc(w->sym, w->cap * sizeof *w->sym);
    w->nxt = xrealloc(w->nxt, w->cap * sizeof *w->nxt);
    w->prv = xrealloc(w->prv, w->cap * sizeof *w->prv);
    w->pmid = xrealloc(w->pmid, w->cap * sizeof *w->pmid);
    w->prk = xrealloc(w->prk, w->cap * sizeof *w->prk);
}

static void heap_push(Work *w, HeapEnt e) {
    if (w->nheap == w->heap_cap) {
        w->heap_cap = w->heap_cap ? w->heap_cap * 2 : 256;
        w->heap = xrealloc(w->heap, w->heap_cap * sizeof *w->heap);
    }
    size_t i = w->nheap++;
    while (i) {
        size_t p = (i - 1) / 2;
        HeapEnt q = w->heap[p];
        if (q.rank < e.rank || (q.rank == e.rank && q.pos < e.pos)) break;
        w->heap[i] = q;
        i = p;
    }
    w->heap[i] = e;
}

static HeapEnt heap_pop(Work *w) {
    HeapEnt top = w->heap[0], e = w->heap[--w->nheap];
    size_t i = 0, n = w->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && (w->heap[c + 1].rank < w->heap[c].rank ||
                          (w->heap[c + 1].rank == w->heap[c].rank && w->heap[c + 1].pos < w->heap[c].pos)))
            c++;
        if (e.rank < w->heap[c].rank || (e.rank == w->heap[c].rank && e.pos < w->heap[c].pos)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = e;
    return top;
}

/* Merges symbols sym[0..n) (linked by nxt/prv) until no pair has a rank. */
static void bpe_merge(const Tokenizer *t, Work *w, size_t n) {
    for (size_t i = 0; i < n; i++) {
        w->nxt[i] = i + 1 < n ? (int32_t)i + 1 : -1;
        w->prv[i] = (int32_t)i - 1;
        w->prk[i] = i + 1 < n ? pair_rank(t, w->sym[i], w->sym[i + 1], &w->pmid[i]) : UINT32_MAX;
    }
    if (n <= 48) {
        for (;;) {
            int32_t best = -1;
            uint32_t br = UINT32_MAX;
            for (int32_t i = 0; i >= 0; i = w->nxt[i])
                if (w->prk[i] < br) { br = w->prk[i]; best = i; }
            if (best < 0) return;
            int32_t j = w->nxt[best];
            w->sym[best] = w->pmid[best];
            w->nxt[best] = w->nxt[j];
            if (w->nxt[j] >= 0) w->prv[w->nxt[j]] = best;
            w->prk[best] = w->nxt[best] >= 0 ? pair_rank(t, w->sym[best], w->sym[w->nxt[best]], &w->pmid[best]) : UINT32_MAX;
            int32_t p = w->prv[best];
            if (p >= 0) w->prk[p] = pair_rank(t, w->sym[p], w->sym[best], &w->pmid[p]);
        }
    }
    w->nheap = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (w->prk[i] != UINT32_MAX) heap_push(w, (HeapEnt){w->prk[i], (uint32_t)i, (uint32_t)i + 1});
    while (w->nheap) {
        HeapEnt e = heap_pop(w);
        int32_t i = (int32_t)e.pos, j = (int32_t)e.right;
        if (w->sym[i] < 0 || w->nxt[i] != j || w->prk[i] != e.rank) continue; /* stale */
        int32_t merged = -1;
        if (pair_rank(t, w->sym[i], w->sym[j], &merged) != e.rank) continue;
        w->sym[i] = merged;
        w->sym[j] = -1;
        w->nxt[i] = w->nxt[j];
        if (w->nxt[j] >= 0) w->prv[w->nxt[j]] = i;
        int32_t k = w->nxt[i], p = w->prv[i];
        w->prk[i] = k >= 0 ? pair_rank(t, w->sym[i], w->sym[k], &w->pmid[i]) : UINT32_MAX;
        if (w->prk[i] != UINT32_MAX) heap_push(w, (HeapEnt){w->prk[i], (uint32_t)i, (uint32_t)k});
        if (p >= 0) {
            w->prk[p] = pair_rank(t, w->sym[p], w->sym[i], &w->pmid[p]);
            if (w->prk[p] != UINT32_MAX) heap_push(w, (HeapEnt){w->prk[p], (uint32_t)p, (uint32_t)i});
        }
    }
}

/* Initial symbols of a piece in a non-byte-level BPE: one per character,
 * unknown ones through byte_fallback <0xXX>, else unk (fused if fuse_unk), else dropped. */
static size_t bpe_chars(const Tokenizer *t, Work *w, const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = tok_utf8_decode1((const unsigned char *)s + i, n - i, &cp);
        int32_t id = strmap_get(&t->vocab, s + i, (size_t)l);
        if (id >= 0) { w->sym[k++] = id; i += l; continue; }
        if (t->byte_fallback) {
            int all = 1;
            size_t k0 = k;
            for (int b = 0; b < l; b++) {
                char name[8];
                snprintf(name, sizeof name, "<0x%02X>", (unsigned char)s[i + b]);
                int32_t bid = strmap_get(&t->vocab, name, 6);
                if (bid < 0) { all = 0; break; }
                w->sym[k++] = bid;
            }
            if (all) { i += l; continue; }
            k = k0;
        }
        if (t->unk_id >= 0 && !(t->fuse_unk && k && w->sym[k - 1] == t->unk_id)) w->sym[k++] = t->unk_id;
        i += l;
    }
    return k;
}

static void bpe_piece(const Tokenizer *t, Work *w, const char *s, size_t n, TokIds *out) {
    if (!n) return;
    if (t->ignore_merges) {
        int32_t id = strmap_get(&t->vocab, s, n);
        if (id >= 0) { tok_ids_push(out, id); return; }
    }
    work_reserve(w, n);
    size_t k = 0;
    if (t->bytelevel) {
        for (size_t i = 0; i < n; i++) {
            int32_t id = t->byte_id[(unsigned char)s[i]];
            if (id >= 0) w->sym[k++] = id;
            else if (t->unk_id >= 0) w->sym[k++] = t->unk_id;
        }
    } else {
        k = bpe_chars(t, w, s, n);
    }
    if (k > 1) bpe_merge(t, w, k);
    for (int32_t i = k ? 0 : -1; i >= 0; i = w->nxt[i]) {
        tok_ids_push(out, w->sym[i]);
        if (k == 1) break;
    }
}

/* ---- pre-tokenizers --------------------------------------------------------- */

static void seg_push(Work *w, size_t a, size_t e, int m) {
    spans_push(&w->seg, a, e);
    if (w->seg.n > w->segm_cap) {
        w->segm_cap = w->seg.cap;
        w->segm = xrealloc(w->segm, w->segm_cap);
    }
    w->segm[w->seg.n - 1] = (uint8_t)m;
}

/* Cuts one piece by a Split step, appending the resulting pieces to `to`.
 * The fold over (segment, is_match) follows HF's NormalizedString::split. */
static void split_piece(const PreTok *p, Work *w, Span sp, SpanList *to) {
    const char *s = w->buf.s + sp.off;
    w->seg.n = 0;
    size_t pos = 0, prev = 0;
    while (pos <= sp.len) {
        int rc = pcre2_match(p->re, (PCRE2_SPTR)s, sp.len, pos, PCRE2_NO_UTF_CHECK, w->md, NULL);
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) /* JIT stack exhausted: the interpreter uses the heap */
            rc = pcre2_match(p->re, (PCRE2_SPTR)s, sp.len, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, w->md, NULL);
        if (rc < 0) {
            if (rc != PCRE2_ERROR_NOMATCH && !w->match_error) w->match_error = rc;
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
        size_t a = ov[0], e = ov[1];
        if (e <= a) { /* empty match: no cut, move one character on */
            if (a >= sp.len) break;
            uint32_t cp;
            pos = a + (size_t)tok_utf8_decode1((const unsigned char *)s + a, sp.len - a, &cp);
            continue;
        }
        if (a > prev) seg_push(w, prev, a, p->invert);
        seg_push(w, a, e, !p->invert);
        prev = pos = e;
    }
    if (prev < sp.len) seg_push(w, prev, sp.len, p->invert);
    size_t first = to->n, ns = w->seg.n;
    int prev_match = 0;
    if (p->behavior == SPLIT_NEXT) { /* HF folds from the right, then reverses */
        for (size_t r = 0; r < ns; r++) {
            size_t i = ns - 1 - r, a = w->seg.v[i].off, e = w->seg.v[i].len;
            int m = w->segm[i];
            if (m && !prev_match && to->n > first) {
                Span *l = &to->v[to->n - 1];
                l->len += l->off - (sp.off + a);
                l->off = sp.off + a;
            } else {
                spans_push(to, sp.off + a, e - a);
            }
            prev_match = m;
        }
        for (size_t i = first, j = to->n - 1; i < j; i++, j--) {
            Span x = to->v[i];
            to->v[i] = to->v[j];
            to->v[j] = x;
        }
        return;
    }
    for (size_t i = 0; i < ns; i++) {
        size_t a = w->seg.v[i].off, e = w->seg.v[i].len;
        int m = w->segm[i];
        switch (p->behavior) {
        case SPLIT_REMOVED:
            if (!m) spans_push(to, sp.off + a, e - a);
            break;
        case SPLIT_ISOLATED: spans_push(to, sp.off + a, e - a); break;
        case SPLIT_PREV:
            if (m && !prev_match && to->n > first) to->v[to->n - 1].len = sp.off + e - to->v[to->n - 1].off;
            else spans_push(to, sp.off + a, e - a);
            break;
        case SPLIT_CONTIG:
            if (m == prev_match && to->n > first) to->v[to->n - 1].len = sp.off + e - to->v[to->n - 1].off;
            else spans_push(to, sp.off + a, e - a);
            break;
        }
        prev_match = m;
    }
}

/* Makes t->n grow by extra bytes (content undefined until written). */
static void text_grow(TokText *t, size_t extra) {
    if (t->n + extra + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 64;
        while (cap < t->n + extra + 1) cap *= 2;
        t->s = xrealloc(t->s, cap);
        t->cap = cap;
    }
    t->n += extra;
    t->s[t->n] = 0;
}

static void pretokenize(const Tokenizer *t, Work *w, TokIds *out) {
    w->a.n = 0;
    spans_push(&w->a, 0, w->buf.n);
    for (int k = 0; k < t->npre; k++) {
        const PreTok *p = &t->pre[k];
        w->b.n = 0;
        for (size_t i = 0; i < w->a.n; i++) {
            Span sp = w->a.v[i];
            if (p->kind == PRE_BYTELEVEL) {
                if (p->add_prefix_space && sp.len && w->buf.s[sp.off] != ' ') {
                    size_t off = w->buf.n;
                    text_grow(&w->buf, sp.len + 1); /* grow first: the source lives in buf */
                    w->buf.s[off] = ' ';
                    memcpy(w->buf.s + off + 1, w->buf.s + sp.off, sp.len);
                    sp = (Span){off, sp.len + 1};
                }
                spans_push(&w->b, sp.off, sp.len);
            } else {
                split_piece(p, w, sp, &w->b);
            }
        }
        SpanList tmp = w->a;
        w->a = w->b;
        w->b = tmp;
    }
    for (size_t i = 0; i < w->a.n; i++)
        if (w->a.v[i].len) bpe_piece(t, w, w->buf.s + w->a.v[i].off, w->a.v[i].len, out);
}

/* ---- normalizers ------------------------------------------------------------ */

static int is_ascii(const char *s, size_t n) {
    unsigned char acc = 0;
    for (size_t i = 0; i < n; i++) acc |= (unsigned char)s[i];
    return acc < 0x80;
}

static void normalize(const Tokenizer *t, Work *w, const char *s, size_t n) {
    w->buf.n = 0;
    tok_text_append(&w->buf, s, n);
    for (int k = 0; k < t->nnorm; k++) {
        if (t->norm[k] == NORM_LOWER) {
            w->norm.n = 0;
            for (size_t i = 0; i < w->buf.n;) {
                uint32_t cp;
                char enc[4];
                i += tok_utf8_decode1((const unsigned char *)w->buf.s + i, w->buf.n - i, &cp);
                /* U+0130 is the one unconditional multi-character lowercase mapping
                 * (SpecialCasing.txt) that Rust's char::to_lowercase applies and
                 * utf8proc's simple mapping does not */
                if (cp == 0x130) tok_text_append(&w->norm, "i\xCC\x87", 3);
                else tok_text_append(&w->norm, enc, tok_utf8_encode1((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), enc));
            }
        } else if (is_ascii(w->buf.s, w->buf.n)) {
            continue; /* every Unicode normalization form leaves ASCII as it is */
        } else {
            static const int opts[] = {
                [NORM_NFC] = UTF8PROC_STABLE | UTF8PROC_COMPOSE,
                [NORM_NFD] = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE,
                [NORM_NFKC] = UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT,
                [NORM_NFKD] = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT};
            utf8proc_uint8_t *o = NULL;
            utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)w->buf.s, (utf8proc_ssize_t)w->buf.n, &o,
                                              (utf8proc_option_t)opts[t->norm[k]]);
            if (r < 0) { free(o); continue; } /* cannot happen on valid UTF-8; keep the text */
            w->norm.n = 0;
            tok_text_append(&w->norm, (const char *)o, (size_t)r);
            free(o);
        }
        TokText tmp = w->buf;
        w->buf = w->norm;
        w->norm = tmp;
    }
}

/* ---- added tokens ----------------------------------------------------------- */

static int is_word_char(const char *s, size_t n, int before) {
    /* the character just before s+n (before=1) or at s (before=0) */
    uint32_t cp;
    if (before) {
        size_t i = n;
        while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) i--;
        if (i > 0) i--;
        tok_utf8_decode1((const unsigned char *)s + i, n - i, &cp);
    } else {
        tok_utf8_decode1((const unsigned char *)s, n, &cp);
    }
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
           (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO);
}

/* Finds the leftmost-longest added token in s[from..n); returns its index or -1. */
static int32_t trie_find(const Trie *tr, const char *s, size_t n, size_t from, size_t *at, size_t *len) {
    for (size_t i = from; i < n; i++) {
        if (!tr->first[(unsigned char)s[i]]) continue;
        int32_t cur = 0, best = -1;
        size_t blen = 0;
        for (size_t j = i; j < n; j++) {
            int32_t c = tr->node[cur].first_child;
            while (c >= 0 && tr->node[c].byte != (unsigned char)s[j]) c = tr->node[c].next_sibling;
            if (c < 0) break;
            cur = c;
            if (tr->node[c].tok >= 0) { best = tr->node[c].tok; blen = j + 1 - i; }
        }
        if (best >= 0) { *at = i; *len = blen; return best; }
    }
    return -1;
}

typedef void (*SectionFn)(const Tokenizer *t, Work *w, const char *s, size_t n, TokIds *out);

/* Cuts s at the added tokens of trie, emitting token ids and calling fn on the text between. */
static void split_added(const Tokenizer *t, Work *w, const Trie *tr, const char *s, size_t n, SectionFn fn,
                        TokIds *out) {
    size_t prev = 0, from = 0, at, len;
    while (tr->n > 1 && from < n) {
        int32_t k = trie_find(tr, s, n, from, &at, &len);
        if (k < 0) break;
        const AddedTok *a = &t->added[k];
        size_t start = at, stop = at + len;
        if (a->single_word && ((start > 0 && is_word_char(s, start, 1)) || (stop < n && is_word_char(s + stop, n - stop, 0)))) {
            from = at + 1;
            continue;
        }
        if (a->lstrip) {
            while (start > prev) {
                size_t i = start - 1;
                while (i > prev && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
                uint32_t cp;
                tok_utf8_decode1((const unsigned char *)s + i, start - i, &cp);
                if (!tok_is_whitespace(cp)) break;
                start = i;
            }
        }
        if (a->rstrip) {
            while (stop < n) {
                uint32_t cp;
                int l = tok_utf8_decode1((const unsigned char *)s + stop, n - stop, &cp);
                if (!tok_is_whitespace(cp)) break;
                stop += (size_t)l;
            }
        }
        if (start > prev) fn(t, w, s + prev, start - prev, out);
        tok_ids_push(out, a->id);
        prev = from = stop;
    }
    if (prev < n) fn(t, w, s + prev, n - prev, out);
}

static void section_norm(const Tokenizer *t, Work *w, const char *s, size_t n, TokIds *out) {
    /* text after normalization and normalized added tokens: pre-tokenize it */
    w->buf.n = 0;
    tok_text_append(&w->buf, s, n);
    pretokenize(t, w, out);
}

static void section_raw(const Tokenizer *t, Work *w, const char *s, size_t n, TokIds *out) {
    if (!t->nnorm && t->trie_norm.n <= 1) {
        w->buf.n = 0;
        tok_text_append(&w->buf, s, n);
        pretokenize(t, w, out);
        return;
    }
    normalize(t, w, s, n);
    char *copy = xmalloc(w->buf.n + 1);
    size_t cn = w->buf.n;
    memcpy(copy, w->buf.s, cn);
    split_added(t, w, &t->trie_norm, copy, cn, section_norm, out);
    free(copy);
}

int tok_encode(const Tokenizer *t, const char *text, size_t len, int add_special, TokIds *out, Err *err) {
    TokText clean = {0};
    if (!tok_utf8_lossy(text, len, &clean)) { text = clean.s; len = clean.n; }
    Work w = {0};
    w.md = pcre2_match_data_create(8, NULL);
    if (add_special)
        for (int i = 0; i < t->npost_pre; i++) tok_ids_push(out, t->post_pre[i]);
    split_added(t, &w, &t->trie_raw, text, len, section_raw, out);
    if (add_special)
        for (int i = 0; i < t->npost_post; i++) tok_ids_push(out, t->post_post[i]);
    int rc = 0;
    if (w.match_error) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(w.match_error, msg, sizeof msg);
        rc = err_set(err, ERR_INPUT, "%s: pre-tokenizer regex failed on a %zu-byte text: %s", t->name, len, (char *)msg);
    }
    pcre2_match_data_free(w.md);
    tok_text_free(&clean);
    tok_text_free(&w.buf);
    tok_text_free(&w.norm);
    free(w.a.v); free(w.b.v); free(w.seg.v); free(w.segm);
    free(w.sym); free(w.nxt); free(w.prv); free(w.pmid); free(w.prk); free(w.heap);
    return rc;
}
