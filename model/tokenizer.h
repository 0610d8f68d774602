/* tokenizer: Hugging Face tokenizer.json, encoded and decoded exactly as the
 * `tokenizers` library does, for byte-level BPE models (DeepSeek-V3/R1,
 * DeepSeek-V2, Qwen2.5/Qwen3, Llama 3, GPT-2) and plain BPE.
 *
 * Supported components (anything else is refused at load time with the
 * component's type named): normalizers NFC, NFD, NFKC, NFKD (utf8proc),
 * Lowercase, Sequence; pre-tokenizers Split (PCRE2 with Unicode classes,
 * every behavior, invert), ByteLevel, Digits, Whitespace, WhitespaceSplit,
 * Sequence; model BPE (merges as "a b" or ["a","b"], ignore_merges,
 * byte_fallback, unk); added/special tokens (matched before BPE, never split,
 * lstrip/rstrip/single_word, normalized or not); post-processors ByteLevel,
 * TemplateProcessing (single sequence), Sequence; decoder ByteLevel (or none).
 * bos/eos/pad and the chat template come from tokenizer_config.json.
 *
 * Text input that is not valid UTF-8 is first made valid the way Python's
 * bytes.decode("utf-8", "replace") and Rust's from_utf8_lossy do (each maximal
 * invalid subpart becomes U+FFFD), since HF only ever sees valid strings.
 * A loaded Tokenizer is read-only: encode/decode may run on many threads. */
#ifndef GRPO_TOKENIZER_H
#define GRPO_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef struct Tokenizer Tokenizer;

/* A growable id list; zero-initialise, free with tok_ids_free. */
typedef struct TokIds {
    int32_t *v;
    size_t n, cap;
} TokIds;

/* A growable byte string (always NUL-terminated when non-empty). */
typedef struct TokText {
    char *s;
    size_t n, cap;
} TokText;

/* Streaming decode state: the bytes of an incomplete UTF-8 character held
 * back until the next token completes it. Zero-initialise. */
typedef struct TokStream {
    unsigned char pend[4];
    int npend;
    int started; /* a token was emitted (tokenizers without a decoder join with spaces) */
} TokStream;

/* Loads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json.
 * PATH may also name a tokenizer.json file directly. */
Tokenizer *tok_load(const char *path, Err *err);
/* Loads from memory (config may be NULL). `name` is used in messages. */
Tokenizer *tok_load_mem(const char *json, size_t len, const char *config, size_t clen,
                        const char *name, Err *err);
void tok_free(Tokenizer *t);

/* Appends the ids of text[0..len) to out. add_special: apply the
 * post-processor (e.g. the bos of Llama 3), as tokenizers' add_special_tokens. */
int tok_encode(const Tokenizer *t, const char *text, size_t len, int add_special, TokIds *out,
               Err *err);
/* Appends the text of ids to out (invalid UTF-8 from partial tokens becomes
 * U+FFFD, as HF). skip_special drops special added tokens. */
int tok_decode(const Tokenizer *t, const int32_t *ids, size_t n, int skip_special, TokText *out,
               Err *err);
/* Streaming decode: appends the complete characters now available. */
int tok_stream_push(const Tokenizer *t, TokStream *s, int32_t id, int skip_special, TokText *out,
                    Err *err);
/* Ends a stream: any held-back bytes become U+FFFD. */
void tok_stream_flush(TokStream *s, TokText *out);

/* Id of a token string as written in tokenizer.json (added tokens first), or -1. */
int32_t tok_id(const Tokenizer *t, const char *token);
/* Token string of an id as written in tokenizer.json, or NULL. */
const char *tok_token(const Tokenizer *t, int32_t id);
int tok_is_special(const Tokenizer *t, int32_t id);
/* Highest id + 1 (model and added tokens). */
int32_t tok_vocab_size(const Tokenizer *t);
/* From tokenizer_config.json (falling back to added tokens); -1 when unset. */
int32_t tok_bos(const Tokenizer *t);
int32_t tok_eos(const Tokenizer *t);
int32_t tok_pad(const Tokenizer *t);
/* Token strings of bos/eos/pad ("" when unset) and the chat template (NULL if none). */
const char *tok_bos_token(const Tokenizer *t);
const char *tok_eos_token(const Tokenizer *t);
const char *tok_pad_token(const Tokenizer *t);
const char *tok_chat_template(const Tokenizer *t);

void tok_ids_push(TokIds *ids, int32_t id);
void tok_ids_free(TokIds *ids);
void tok_text_append(TokText *t, const char *s, size_t n);
void tok_text_free(TokText *t);

/* Writes the valid-UTF-8 form of s (maximal invalid subparts -> U+FFFD) into
 * out (replacing its content); returns 1 if s was already valid. */
int tok_utf8_lossy(const char *s, size_t n, TokText *out);

#endif
