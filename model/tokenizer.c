/* tokenizer: loading tokenizer.json (+ tokenizer_config.json) into the tables
 * the encoder and decoder use, and the id <-> token lookups. Encoding is in
 * tokenizer_encode.c, decoding in tokenizer_decode.c. Loading refuses, with
 * the component named, anything the encoder would not reproduce exactly. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/xalloc.h"
#include "model/tokenizer_impl.h"

/* Byte-level GPT-2 pre-tokenizer regex (ByteLevel with use_regex = true). */
static const char GPT2_RE[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static char *read_file(const char *path, size_t *len, Err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) { err_set(err, ERR_INPUT, "%s: %s", path, strerror(errno)); return NULL; }
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); err_set(err, ERR_INPUT, "%s: cannot seek", path); return NULL; }
    long n = ftell(f);
    rewind(f);
    if (n < 0 || n > (1L << 31)) { fclose(f); err_set(err, ERR_INPUT, "%s: bad size", path); return NULL; }
    char *buf = malloc((size_t)n + 1);
    if (!buf) { fclose(f); err_set(err, ERR_WORK, "%s: out of memory (%ld bytes)", path, n); return NULL; }
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) { free(buf); err_set(err, ERR_WORK, "%s: short read", path); return NULL; }
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

/* Rewrites an Oniguruma pattern (what HF tokenizers compiles) for PCRE2: in
 * Unicode mode Onig's \s also matches U+0085, PCRE2's (UCP) does not. */
static char *onig_to_pcre2(const char *p) {
    size_t n = strlen(p);
    char *o = xmalloc(n * 12 + 1), *w = o;
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char d = p[++i];
            if (d == 's') w += sprintf(w, in_class ? "\\s\\x{85}" : "[\\s\\x{85}]");
            else if (d == 'S' && !in_class) w += sprintf(w, "[^\\s\\x{85}]");
            else { *w++ = '\\'; *w++ = d; }
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = 1;
            *w++ = c;
            if (p[i + 1] == '^') *w++ = p[++i];
            if (p[i + 1] == ']') *w++ = p[++i]; /* literal ] first in a class */
            continue;
        }
        if (c == ']' && in_class) in_class = 0;
        *w++ = c;
    }
    *w = 0;
    return o;
}

static pcre2_code *compile_re(const char *pat, int literal, const char *where, Err *err) {
    int ec;
    PCRE2_SIZE off;
    char *tr = literal ? xstrdup(pat) : onig_to_pcre2(pat);
    uint32_t opt = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)tr, PCRE2_ZERO_TERMINATED, opt, &ec, &off, NULL);
    free(tr);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        err_set(err, ERR_INPUT, "%s: regex /%s/ does not compile (offset %zu): %s", where, pat,
                (size_t)off, (char *)msg);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if unavailable */
    return re;
}

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jbool(const cJSON *o, const char *key, int def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static int add_pre(Tokenizer *t, PreTok p, Err *err) {
    if (t->npre >= (int)(sizeof t->pre / sizeof t->pre[0]))
        return err_set(err, ERR_INPUT, "pre_tokenizer: more than 16 steps");
    t->pre[t->npre++] = p;
    return 0;
}

static int add_split(Tokenizer *t, const char *pat, int literal, int behavior, int invert,
                     const char *where, Err *err) {
    PreTok p = {.kind = PRE_SPLIT, .behavior = behavior, .invert = invert};
    if (!(p.re = compile_re(pat, literal, where, err))) return -1;
    if (add_pre(t, p, err)) { pcre2_code_free(p.re); return -1; }
    return 0;
}

static int load_pre(Tokenizer *t, const cJSON *j, Err *err) {
    if (!j || cJSON_IsNull(j)) return 0;
    const char *type = jstr(j, "type");
    if (!type) return err_set(err, ERR_INPUT, "pre_tokenizer: missing \"type\"");
    if (t->npre && t->pre[t->npre - 1].kind == PRE_BYTELEVEL)
        return err_set(err, ERR_INPUT, "pre_tokenizer: a %s step after ByteLevel is unsupported", type);
    if (!strcmp(type, "Sequence")) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers"), *e;
        if (!cJSON_IsArray(a)) return err_set(err, ERR_INPUT, "pre_tokenizer Sequence: no \"pretokenizers\" array");
        cJSON_ArrayForEach(e, a) if (load_pre(t, e, err)) return -1;
        return 0;
    }
    if (!strcmp(type, "Split")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        const char *re = jstr(pat, "Regex"), *lit = jstr(pat, "String");
        const char *beh = jstr(j, "behavior");
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        int b = -1;
        for (int i = 0; beh && i < 5; i++)
            if (!strcmp(beh, names[i])) b = i;
        if (!re && !lit) return err_set(err, ERR_INPUT, "pre_tokenizer Split: pattern is neither Regex nor String");
        if (b < 0) return err_set(err, ERR_INPUT, "pre_tokenizer Split: unsupported behavior \"%s\"", beh ? beh : "(none)");
        return add_split(t, re ? re : lit, !re, b, jbool(j, "invert", 0), "pre_tokenizer Split", err);
    }
    if (!strcmp(type, "ByteLevel")) {
        PreTok p = {.kind = PRE_BYTELEVEL, .add_prefix_space = jbool(j, "add_prefix_space", 1),
                    .use_regex = jbool(j, "use_regex", 1)};
        if (p.use_regex && add_split(t, GPT2_RE, 0, SPLIT_ISOLATED, 0, "ByteLevel", err)) return -1;
        if (p.use_regex && p.add_prefix_space) {
            /* the prefix space must be added before the regex split */
            PreTok s = t->pre[t->npre - 1];
            t->pre[t->npre - 1] = p;
            t->bytelevel = 1;
            return add_pre(t, s, err) ? -1 : add_pre(t, (PreTok){.kind = PRE_BYTELEVEL}, err);
        }
        t->bytelevel = 1;
        return add_pre(t, p, err);
    }
    if (!strcmp(type, "Digits"))
        return add_split(t, jbool(j, "individual_digits", 0) ? "\\p{N}" : "\\p{N}+", 0, SPLIT_ISOLATED, 0,
                         "Digits", err);
    if (!strcmp(type, "Whitespace"))
        return add_split(t, "\\w+|[^\\w\\s]+", 0, SPLIT_REMOVED, 1, "Whitespace", err);
    if (!strcmp(type, "WhitespaceSplit"))
        return add_split(t, "\\s+", 0, SPLIT_REMOVED, 0, "WhitespaceSplit", err);
    return err_set(err, ERR_INPUT, "unsupported pre_tokenizer type \"%s\"", type);
}

static int load_norm(Tokenizer *t, const cJSON *j, Err *err) {
    if (!j || cJSON_IsNull(j)) return 0;
    const char *type = jstr(j, "type");
    if (!type) return err_set(err, ERR_INPUT, "normalizer: missing \"type\"");
    if (!strcmp(type, "Sequence")) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "normalizers"), *e;
        if (!cJSON_IsArray(a)) return err_set(err, ERR_INPUT, "normalizer Sequence: no \"normalizers\" array");
        cJSON_ArrayForEach(e, a) if (load_norm(t, e, err)) return -1;
        return 0;
    }
    static const struct { const char *name; int kind; } kinds[] = {
        {"NFC", NORM_NFC}, {"NFD", NORM_NFD}, {"NFKC", NORM_NFKC}, {"NFKD", NORM_NFKD}, {"Lowercase", NORM_LOWER}};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (strcmp(type, kinds[i].name)) continue;
        if (t->nnorm >= 8) return err_set(err, ERR_INPUT, "normalizer: more than 8 steps");
        t->norm[t->nnorm++] = kinds[i].kind;
        return 0;
    }
    return err_set(err, ERR_INPUT, "unsupported normalizer type \"%s\"", type);
}

static int post_add(int32_t *arr, int32_t *n, int32_t id, Err *err) {
    if (*n >= 8) return err_set(err, ERR_INPUT, "post_processor: more than 8 added tokens");
    arr[(*n)++] = id;
    return 0;
}

static int load_post(Tokenizer *t, const cJSON *j, Err *err) {
    if (!j || cJSON_IsNull(j)) return 0;
    const char *type = jstr(j, "type");
    if (!type) return err_set(err, ERR_INPUT, "post_processor: missing \"type\"");
    if (!strcmp(type, "ByteLevel")) return 0; /* offsets only */
    if (!strcmp(type, "Sequence")) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "processors"), *e;
        if (!cJSON_IsArray(a)) return err_set(err, ERR_INPUT, "post_processor Sequence: no \"processors\" array");
        cJSON_ArrayForEach(e, a) if (load_post(t, e, err)) return -1;
        return 0;
    }
    if (!strcmp(type, "TemplateProcessing")) {
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(j, "single"), *e;
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(j, "special_tokens");
        int seen_seq = 0;
        cJSON_ArrayForEach(e, single) {
            const cJSON *st = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
            if (cJSON_GetObjectItemCaseSensitive(e, "Sequence")) { seen_seq = 1; continue; }
            const char *name = jstr(st, "id");
            const cJSON *ids = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(sp, name ? name : ""), "ids"), *x;
            if (!name || !cJSON_IsArray(ids))
                return err_set(err, ERR_INPUT, "post_processor TemplateProcessing: special token \"%s\" has no ids", name ? name : "?");
            cJSON_ArrayForEach(x, ids) {
                if (!cJSON_IsNumber(x)) return err_set(err, ERR_INPUT, "post_processor: non-numeric id for \"%s\"", name);
                if (post_add(seen_seq ? t->post_post : t->post_pre, seen_seq ? &t->npost_post : &t->npost_pre,
                             (int32_t)x->valuedouble, err)) return -1;
            }
        }
        return 0;
    }
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        const cJSON *cls = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "cls"), 1);
        const cJSON *sep = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "sep"), 1);
        if (!cJSON_IsNumber(cls) || !cJSON_IsNumber(sep))
            return err_set(err, ERR_INPUT, "post_processor %s: cls/sep must be [token, id]", type);
        post_add(t->post_pre, &t->npost_pre, (int32_t)cls->valuedouble, err);
        return post_add(t->post_post, &t->npost_post, (int32_t)sep->valuedouble, err);
    }
    return err_set(err, ERR_INPUT, "unsupported post_processor type \"%s\"", type);
}

static int load_decoder(Tokenizer *t, const cJSON *j, Err *err) {
    if (!j || cJSON_IsNull(j)) return 0;
    const char *type = jstr(j, "type");
    if (!type) return err_set(err, ERR_INPUT, "decoder: missing \"type\"");
    if (!strcmp(type, "ByteLevel")) { t->has_decoder = t->decoder_bytelevel = 1; return 0; }
    if (!strcmp(type, "Sequence")) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "decoders"), *e;
        if (cJSON_GetArraySize(a) == 1) {
            cJSON_ArrayForEach(e, a) return load_decoder(t, e, err);
        }
    }
    return err_set(err, ERR_INPUT, "unsupported decoder type \"%s\"", type);
}

/* Model-space key of a vocab string: raw bytes when byte-level (each symbol
 * back to its byte), the string itself otherwise. Returns its length. */
static size_t model_key(const Tokenizer *t, const char *s, char *out) {
    size_t n = strlen(s);
    if (!t->bytelevel) { memcpy(out, s, n); return n; }
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += tok_utf8_decode1((const unsigned char *)s + i, n - i, &cp);
        int b = tok_cp_to_byte(cp);
        if (b < 0) { memcpy(out, s, n); return n; } /* not a byte-level symbol: keep as is */
        out[k++] = (char)b;
    }
    return k;
}

static int id_from(const cJSON *v, const char *what, Err *err) {
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 16777216.0 ||
        v->valuedouble != (double)(int32_t)v->valuedouble)
        return err_set(err, ERR_INPUT, "%s: id must be an integer in [0, 2^24]", what), -2;
    return (int32_t)v->valuedouble;
}

/* merges: rank r joins tokens a and b into a+b; the table maps (id a, id b)
 * to (r, id of a+b). bystr maps token strings (as in the JSON) to ids. */
static int load_merges(Tokenizer *t, const cJSON *merges, const StrMap *bystr, Err *err) {
    u64map_init(&t->merges, (size_t)cJSON_GetArraySize(merges));
    int rank = 0, rc = 0;
    char *cat = NULL;
    size_t catcap = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, merges) {
        const char *a, *b, *sp = cJSON_IsString(e) ? strchr(e->valuestring, ' ') : NULL;
        size_t la, lb;
        if (cJSON_IsString(e)) {
            if (!sp || strchr(sp + 1, ' ')) {
                rc = err_set(err, ERR_INPUT, "model.merges[%d]: \"%s\" is not two tokens separated by one space", rank,
                             e->valuestring);
                break;
            }
            a = e->valuestring;
            la = (size_t)(sp - a);
            b = sp + 1;
        } else if (cJSON_GetArraySize(e) == 2 && cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            a = cJSON_GetArrayItem(e, 0)->valuestring;
            la = strlen(a);
            b = cJSON_GetArrayItem(e, 1)->valuestring;
        } else {
            rc = err_set(err, ERR_INPUT, "model.merges[%d]: not a string or a pair of strings", rank);
            break;
        }
        lb = strlen(b);
        if (la + lb + 1 > catcap) { catcap = (la + lb + 1) * 2; cat = xrealloc(cat, catcap); }
        memcpy(cat, a, la);
        memcpy(cat + la, b, lb);
        int32_t ia = strmap_get(bystr, a, la), ib = strmap_get(bystr, b, lb), im = strmap_get(bystr, cat, la + lb);
        if (ia < 0 || ib < 0 || im < 0) {
            rc = err_set(err, ERR_INPUT, "model.merges[%d]: token %.*s + %.*s is not in the vocab", rank, (int)la, a,
                         (int)lb, b);
            break;
        }
        u64map_put(&t->merges, (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib, (uint64_t)(uint32_t)rank << 32 | (uint32_t)im);
        rank++;
    }
    free(cat);
    return rc;
}

static int load_model(Tokenizer *t, const cJSON *root, Err *err) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model");
    const char *type = jstr(m, "type");
    if (!cJSON_IsObject(m)) return err_set(err, ERR_INPUT, "no \"model\" object");
    if (type && strcmp(type, "BPE")) return err_set(err, ERR_INPUT, "unsupported model type \"%s\" (only BPE)", type);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(m, "vocab"), *merges = cJSON_GetObjectItemCaseSensitive(m, "merges");
    if (!cJSON_IsObject(vocab)) return err_set(err, ERR_INPUT, "model: \"vocab\" is not an object");
    if (merges && !cJSON_IsArray(merges) && !cJSON_IsNull(merges)) return err_set(err, ERR_INPUT, "model: \"merges\" is not an array");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(m, "dropout");
    if (cJSON_IsNumber(d) && d->valuedouble > 0) return err_set(err, ERR_INPUT, "model BPE: dropout is unsupported");
    const char *csp = jstr(m, "continuing_subword_prefix"), *ews = jstr(m, "end_of_word_suffix");
    if ((csp && *csp) || (ews && *ews))
        return err_set(err, ERR_INPUT, "model BPE: continuing_subword_prefix/end_of_word_suffix are unsupported");
    t->ignore_merges = jbool(m, "ignore_merges", 0);
    t->byte_fallback = jbool(m, "byte_fallback", 0);
    t->fuse_unk = jbool(m, "fuse_unk", 0);

    /* ids: vocab first, then added tokens may extend the range */
    int32_t maxid = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        int id = id_from(e, "model.vocab", err);
        if (id == -2) return -1;
        if (id > maxid) maxid = id;
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(root, "added_tokens")) {
        int id = id_from(cJSON_GetObjectItemCaseSensitive(e, "id"), "added_tokens", err);
        if (id == -2) return -1;
        if (id > maxid) maxid = id;
    }
    t->nids = maxid + 1;
    t->tok_str = xcalloc((size_t)t->nids + 1, sizeof *t->tok_str);
    t->special = xcalloc((size_t)t->nids + 1, 1);
    size_t arena = 0;
    cJSON_ArrayForEach(e, vocab) arena += strlen(e->string) + 1;
    t->model_bytes = xmalloc(arena + 1);
    int nv = cJSON_GetArraySize(vocab);
    strmap_init(&t->vocab, (size_t)nv);
    StrMap bystr;
    strmap_init(&bystr, (size_t)nv);
    size_t off = 0;
    cJSON_ArrayForEach(e, vocab) {
        int32_t id = (int32_t)e->valuedouble;
        free(t->tok_str[id]);
        t->tok_str[id] = xstrdup(e->string);
        size_t k = model_key(t, e->string, t->model_bytes + off);
        strmap_put(&t->vocab, t->model_bytes + off, k, id);
        strmap_put(&bystr, e->string, strlen(e->string), id); /* keys live as long as the cJSON tree */
        off += k;
    }
    t->nvocab_model = nv;
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_id[b] = t->bytelevel ? strmap_get(&t->vocab, &c, 1) : -1;
    }
    const char *unk = jstr(m, "unk_token");
    t->unk_id = unk ? strmap_get(&bystr, unk, strlen(unk)) : -1;

    int rc = load_merges(t, merges, &bystr, err);
    strmap_free(&bystr);
    return rc;
}

static void trie_init(Trie *tr) {
    tr->cap = 64;
    tr->node = xmalloc(tr->cap * sizeof *tr->node);
    tr->node[0] = (TrieNode){-1, -1, -1, 0};
    tr->n = 1;
    memset(tr->first, 0, sizeof tr->first);
}

static void trie_add(Trie *tr, const char *s, size_t n, int32_t tok) {
    int32_t cur = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        int32_t c = tr->node[cur].first_child;
        while (c >= 0 && tr->node[c].byte != b) c = tr->node[c].next_sibling;
        if (c < 0) {
            if (tr->n == tr->cap) { tr->cap *= 2; tr->node = xrealloc(tr->node, tr->cap * sizeof *tr->node); }
            c = (int32_t)tr->n++;
            tr->node[c] = (TrieNode){-1, tr->node[cur].first_child, -1, b};
            tr->node[cur].first_child = c;
        }
        cur = c;
    }
    if (tr->node[cur].tok < 0) tr->node[cur].tok = tok;
    if (n) tr->first[(unsigned char)s[0]] = 1;
}

static int load_added(Tokenizer *t, const cJSON *root, Err *err) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), *e;
    size_t n = (size_t)cJSON_GetArraySize(a), i = 0;
    t->added = xcalloc(n + 1, sizeof *t->added);
    strmap_init(&t->added_map, n);
    trie_init(&t->trie_raw);
    trie_init(&t->trie_norm);
    cJSON_ArrayForEach(e, a) {
        const char *c = jstr(e, "content");
        if (!c || !*c) return err_set(err, ERR_INPUT, "added_tokens[%zu]: missing or empty \"content\"", i);
        AddedTok *k = &t->added[i];
        k->content = xstrdup(c);
        k->len = strlen(c);
        k->id = (int32_t)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
        k->special = jbool(e, "special", 0);
        k->lstrip = jbool(e, "lstrip", 0);
        k->rstrip = jbool(e, "rstrip", 0);
        k->single_word = jbool(e, "single_word", 0);
        /* HF: special tokens are never normalized */
        k->normalized = jbool(e, "normalized", !k->special) && !k->special;
        strmap_put(&t->added_map, k->content, k->len, k->id);
        free(t->tok_str[k->id]);
        t->tok_str[k->id] = xstrdup(c);
        t->special[k->id] = (uint8_t)k->special;
        trie_add(k->normalized ? &t->trie_norm : &t->trie_raw, k->content, k->len, (int32_t)i);
        i++;
    }
    t->nadded = i;
    return 0;
}

/* bos_token etc. in tokenizer_config.json: a string or {"content": ...}. */
static char *config_token(const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsString(v)) return xstrdup(v->valuestring);
    const char *c = jstr(v, "content");
    return xstrdup(c ? c : "");
}

static int load_config(Tokenizer *t, const char *cfg_text, size_t clen, Err *err) {
    cJSON *cfg = cfg_text ? cJSON_ParseWithLength(cfg_text, clen) : NULL;
    if (cfg_text && !cJSON_IsObject(cfg)) {
        cJSON_Delete(cfg);
        return err_set(err, ERR_INPUT, "tokenizer_config.json: not a JSON object");
    }
    t->bos_tok = config_token(cfg, "bos_token");
    t->eos_tok = config_token(cfg, "eos_token");
    t->pad_tok = config_token(cfg, "pad_token");
    t->bos = *t->bos_tok ? tok_id(t, t->bos_tok) : -1;
    t->eos = *t->eos_tok ? tok_id(t, t->eos_tok) : -1;
    t->pad = *t->pad_tok ? tok_id(t, t->pad_tok) : -1;
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template"), *e;
    if (cJSON_IsString(ct)) t->chat_template = xstrdup(ct->valuestring);
    const cJSON *list = cJSON_IsArray(ct) ? ct : NULL; /* [{"name", "template"}, ...] */
    cJSON_ArrayForEach(e, list) {
        const char *name = jstr(e, "name"), *tpl = jstr(e, "template");
        if (name && tpl && !strcmp(name, "default")) t->chat_template = xstrdup(tpl);
    }
    cJSON_Delete(cfg);
    return 0;
}

Tokenizer *tok_load_mem(const char *json, size_t len, const char *config, size_t clen, const char *name,
                        Err *err) {
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(root)) {
        const char *at = cJSON_GetErrorPtr();
        err_set(err, ERR_INPUT, "%s: not a valid JSON object (near byte %ld)", name,
                at && at >= json && at <= json + len ? (long)(at - json) : -1L);
        cJSON_Delete(root);
        return NULL;
    }
    Tokenizer *t = xcalloc(1, sizeof *t);
    t->name = xstrdup(name);
    t->unk_id = t->bos = t->eos = t->pad = -1;
    int rc = load_norm(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), err);
    if (!rc) rc = load_pre(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), err);
    if (!rc) rc = load_model(t, root, err);
    if (!rc) rc = load_added(t, root, err);
    if (!rc) rc = load_post(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), err);
    if (!rc) rc = load_decoder(t, cJSON_GetObjectItemCaseSensitive(root, "decoder"), err);
    for (int i = 0; !rc && i < t->npost_pre + t->npost_post; i++) {
        int32_t id = i < t->npost_pre ? t->post_pre[i] : t->post_post[i - t->npost_pre];
        if (id >= t->nids) rc = err_set(err, ERR_INPUT, "post_processor: id %d is out of the vocab", id);
    }
    cJSON_Delete(root);
    if (!rc) rc = load_config(t, config, clen, err);
    if (rc) {
        err_wrap(err, "%s", name);
        tok_free(t);
        return NULL;
    }
    return t;
}

Tokenizer *tok_load(const char *path, Err *err) {
    struct stat st;
    char jpath[4096], cpath[4096];
    if (stat(path, &st) != 0) { err_set(err, ERR_INPUT, "%s: %s", path, strerror(errno)); return NULL; }
    if (S_ISDIR(st.st_mode)) {
        snprintf(jpath, sizeof jpath, "%s/tokenizer.json", path);
        snprintf(cpath, sizeof cpath, "%s/tokenizer_config.json", path);
    } else {
        snprintf(jpath, sizeof jpath, "%s", path);
        const char *slash = strrchr(path, '/');
        snprintf(cpath, sizeof cpath, "%.*stokenizer_config.json", slash ? (int)(slash - path + 1) : 0, path);
    }
    size_t jlen, clen = 0;
    char *json = read_file(jpath, &jlen, err);
    if (!json) return NULL;
    char *cfg = NULL;
    if (stat(cpath, &st) == 0 && !(cfg = read_file(cpath, &clen, err))) { free(json); return NULL; }
    Tokenizer *t = tok_load_mem(json, jlen, cfg, clen, jpath, err);
    free(json);
    free(cfg);
    return t;
}

void tok_free(Tokenizer *t) {
    if (!t) return;
    for (int32_t i = 0; t->tok_str && i < t->nids; i++) free(t->tok_str[i]);
    free(t->tok_str);
    free(t->special);
    free(t->model_bytes);
    strmap_free(&t->vocab);
    u64map_free(&t->merges);
    for (int i = 0; i < t->npre; i++)
        if (t->pre[i].re) pcre2_code_free(t->pre[i].re);
    for (size_t i = 0; i < t->nadded; i++) free(t->added[i].content);
    free(t->added);
    strmap_free(&t->added_map);
    free(t->trie_raw.node);
    free(t->trie_norm.node);
    free(t->bos_tok);
    free(t->eos_tok);
    free(t->pad_tok);
    free(t->chat_template);
    free(t->name);
    free(t);
}

int32_t tok_id(const Tokenizer *t, const char *token) {
    size_t n = strlen(token);
    int32_t id = strmap_get(&t->added_map, token, n);
    if (id >= 0) return id;
    char *k = xmalloc(n + 1);
    id = strmap_get(&t->vocab, k, model_key(t, token, k));
    free(k);
    return id;
}

const char *tok_token(const Tokenizer *t, int32_t id) {
    return id >= 0 && id < t->nids ? t->tok_str[id] : NULL;
}

int tok_is_special(const Tokenizer *t, int32_t id) { return id >= 0 && id < t->nids && t->special[id]; }
int32_t tok_vocab_size(const Tokenizer *t) { return t->nids; }
int32_t tok_bos(const Tokenizer *t) { return t->bos; }
int32_t tok_eos(const Tokenizer *t) { return t->eos; }
int32_t tok_pad(const Tokenizer *t) { return t->pad; }
const char *tok_bos_token(const Tokenizer *t) { return t->bos_tok ? t->bos_tok : ""; }
const char *tok_eos_token(const Tokenizer *t) { return t->eos_tok ? t->eos_tok : ""; }
const char *tok_pad_token(const Tokenizer *t) { return t->pad_tok ? t->pad_tok : ""; }
const char *tok_chat_template(const Tokenizer *t) { return t->chat_template; }
