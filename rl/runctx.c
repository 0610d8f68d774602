/* runctx: see runctx.h. */
#include "runctx.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/xalloc.h"
#include "model/template.h"

int runctx_load(const Recipe *r, Model *m, Tokenizer **tok, Err *err) {
    if (!r->model[0]) return err_set(err, ERR_INPUT, "recipe: 'model' (a checkpoint directory) is required");
    ModelOpts o = {0};
    if (model_load(m, r->model, &o, err)) return -1;
    const char *td = r->tokenizer[0] ? r->tokenizer : r->model;
    *tok = tok_load(td, err);
    if (!*tok) {
        model_free(m);
        return err_wrap(err, "tokenizer %s", td);
    }
    if (tok_vocab_size(*tok) > m->cfg.vocab_size) {
        err_set(err, ERR_INPUT, "%s/tokenizer.json has %d ids but %s/config.json field vocab_size is %d", td,
                (int)tok_vocab_size(*tok), r->model, m->cfg.vocab_size);
        tok_free(*tok);
        *tok = NULL; /* the caller's cleanup may run next */
        model_free(m);
        return -1;
    }
    return 0;
}

int runctx_prompt(const Tokenizer *tok, const char *tpl, const cJSON *row, TokText *text, TokIds *ids, Err *err) {
    text->n = 0;
    ids->n = 0;
    if (tpl_fill(tpl, row, text, err)) return -1;
    return tok_encode(tok, text->s ? text->s : "", text->n, 0, ids, err);
}

char *runctx_completion_text(const Tokenizer *tok, const RolloutSample *s, Err *err) {
    int n = s->n - (s->finish == FINISH_EOS); /* the EOS token is not part of the text */
    TokText txt = {0};
    /* int and int32_t are the same type on every supported target */
    if (tok_decode(tok, (const int32_t *)s->tokens, n > 0 ? n : 0, 0, &txt, err)) {
        free(txt.s);
        return NULL;
    }
    return txt.s ? txt.s : xstrdup("");
}

void runctx_unescape(char *dst, size_t n, const char *src) {
    size_t o = 0;
    for (size_t i = 0; src[i] && o + 1 < n; i++) dst[o++] = src[i] == '\\' && src[i + 1] == 'n' ? (i++, '\n') : src[i];
    dst[o] = 0;
}

int runctx_set_recipe(Recipe *r, const char *sets, Err *err) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", sets);
    char *save = NULL;
    for (char *a = strtok_r(buf, ";", &save); a; a = strtok_r(NULL, ";", &save))
        if (recipe_set(r, a, err)) return -1;
    return 0;
}

int runctx_mkdirs(const char *path, Err *err) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        char c = *p;
        if (c == '/' || c == 0) {
            *p = 0;
            if (mkdir(buf, 0755) && errno != EEXIST) return err_set(err, ERR_WORK, "cannot create %s: %s", buf, strerror(errno));
            *p = c;
        }
        if (!c) break;
    }
    return 0;
}

static int copy_file(const char *src, const char *dst, Err *err) {
    FILE *in = fopen(src, "rb");
    if (!in) return 0; /* optional file */
    FILE *out = fopen(dst, "wb");
    if (!out) { fclose(in); return err_set(err, ERR_WORK, "cannot write %s", dst); }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
    fclose(in);
    if (fclose(out)) return err_set(err, ERR_WORK, "cannot write %s", dst);
    return 0;
}

int runctx_save(Model *m, const char *tokdir, const char *dir, const char *dtype, Err *err) {
    int bf16 = !strcmp(dtype, "bf16");
    if (!bf16 && strcmp(dtype, "f32")) return err_set(err, ERR_INPUT, "save_dtype must be f32 or bf16, not '%s'", dtype);
    for (int i = 0; i < m->nparams; i++) m->ptab[i].save_dtype = bf16 ? ST_BF16 : ST_F32;
    if (runctx_mkdirs(dir, err) || model_save(m, dir, 0, err)) return -1;
    static const char *files[] = {"tokenizer.json", "tokenizer_config.json"};
    for (int i = 0; i < 2; i++) {
        char s[1024], d[1024];
        snprintf(s, sizeof s, "%s/%s", tokdir, files[i]);
        snprintf(d, sizeof d, "%s/%s", dir, files[i]);
        if (strcmp(s, d) && copy_file(s, d, err)) return -1;
    }
    return 0;
}

void runctx_progress(FILE *f, int final, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (isatty(fileno(f))) fprintf(f, "\r\033[K%s%s", line, final ? "\n" : "");
    else fprintf(f, "%s\n", line);
    fflush(f);
}

long runctx_stop_find(const RunStop *rs, const char *text) {
    long at = -1;
    for (int s = 0; s < rs->n; s++) {
        const char *hit = rs->stop[s][0] ? strstr(text, rs->stop[s]) : NULL;
        if (hit && (at < 0 || hit - text < at)) at = hit - text;
    }
    return at;
}

int runctx_stop_check(void *ctx, int sample, const int *tokens, int n) {
    const RunStop *rs = ctx;
    TokText txt = {0};
    Err err = {0};
    /* int and int32_t are the same type on every supported target */
    int hit = !tok_decode(rs->tok, (const int32_t *)tokens, n, 0, &txt, &err) && txt.s && runctx_stop_find(rs, txt.s) >= 0;
    free(txt.s);
    (void)sample;
    return hit;
}

int runctx_accuracy_index(const RewardSet *rs) {
    int best = -1;
    for (int j = 0; j < reward_set_count(rs); j++) {
        const char *n = reward_set_name(rs, j);
        if (!strcmp(n, "accuracy")) return j;
        if (strstr(n, "accuracy") && (best < 0 || strcmp(n, reward_set_name(rs, best)) < 0)) best = j;
    }
    return best;
}
