/* tokenizer_impl: the internals shared by tokenizer*.c (not a public API).
 * Loading lives in tokenizer.c, the encode path (added tokens, normalizers,
 * pre-tokenizers, BPE, post-processor) in tokenizer_encode.c, decode in
 * tokenizer_decode.c, hash tables in tokenizer_map.c. */
#ifndef GRPO_TOKENIZER_IMPL_H
#define GRPO_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdint.h>

#include "model/tokenizer.h"

/* Byte-string -> int32 map, open addressing; keys point into caller storage. */
typedef struct StrMap {
    const char **key;
    uint32_t *klen;
    int32_t *val;
    size_t cap, n; /* cap: power of two */
} StrMap;

/* u64 -> u64 map (merges: (left<<32|right) -> (rank<<32|merged id)). */
typedef struct U64Map {
    uint64_t *key; /* UINT64_MAX = empty */
    uint64_t *val;
    size_t cap, n;
} U64Map;

void strmap_init(StrMap *m, size_t expect);
void strmap_free(StrMap *m);
void strmap_put(StrMap *m, const char *k, size_t n, int32_t v); /* replaces */
int32_t strmap_get(const StrMap *m, const char *k, size_t n);   /* -1 if absent */
void u64map_init(U64Map *m, size_t expect);
void u64map_free(U64Map *m);
void u64map_put(U64Map *m, uint64_t k, uint64_t v); /* keeps the first value */
int u64map_get(const U64Map *m, uint64_t k, uint64_t *v);

enum { NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_LOWER };
enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_PREV, SPLIT_NEXT, SPLIT_CONTIG };
enum { PRE_SPLIT, PRE_BYTELEVEL };

typedef struct PreTok {
    int kind;
    /* PRE_SPLIT */
    pcre2_code *re;
    int behavior, invert;
    /* PRE_BYTELEVEL */
    int add_prefix_space, use_regex;
} PreTok;

typedef struct AddedTok {
    char *content;
    size_t len;
    int32_t id;
    int special, lstrip, rstrip, single_word, normalized;
} AddedTok;

/* A byte trie over added-token contents, for leftmost-longest matching. */
typedef struct TrieNode {
    int32_t first_child, next_sibling; /* -1 = none */
    int32_t tok;                       /* index into added[], -1 if not terminal */
    unsigned char byte;
} TrieNode;

typedef struct Trie {
    TrieNode *node;
    size_t n, cap;
    uint8_t first[256]; /* bytes that start some token */
} Trie;

struct Tokenizer {
    char *name;
    /* model */
    int32_t nvocab_model;   /* number of model vocab entries */
    char **tok_str;         /* [nids] token string as in tokenizer.json (NULL = hole) */
    int32_t nids;           /* highest id + 1 */
    char *model_bytes;      /* arena of model-space keys (raw bytes when byte-level) */
    StrMap vocab;           /* model-space bytes -> id */
    U64Map merges;
    int32_t byte_id[256];   /* byte-level: id of each single byte, -1 if absent */
    int bytelevel;          /* a ByteLevel pre-tokenizer is present (model sees raw bytes) */
    int ignore_merges, byte_fallback, fuse_unk;
    int32_t unk_id;
    /* pipeline */
    int norm[8], nnorm;
    PreTok pre[16];
    int npre;
    int32_t post_pre[8], npost_pre;   /* ids added before the sequence */
    int32_t post_post[8], npost_post; /* ids added after */
    int decoder_bytelevel, has_decoder;
    /* added tokens */
    AddedTok *added;
    size_t nadded;
    StrMap added_map;       /* content -> id */
    uint8_t *special;       /* [nids] 1 = special added token */
    Trie trie_raw, trie_norm;
    /* tokenizer_config.json */
    int32_t bos, eos, pad;
    char *bos_tok, *eos_tok, *pad_tok, *chat_template;
};

/* byte <-> GPT-2 byte-level unicode symbol. */
int tok_cp_to_byte(uint32_t cp); /* -1 when cp is not a byte-level symbol */
int tok_is_whitespace(uint32_t cp); /* Rust char::is_whitespace */

int tok_utf8_decode1(const unsigned char *s, size_t n, uint32_t *cp); /* bytes used, valid input */
size_t tok_utf8_encode1(uint32_t cp, char *out);

#endif
