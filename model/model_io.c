/* model_io: load and save a Model as a Hugging Face checkpoint directory
 * (config.json + safetensors + generation_config.json).
 *
 * Loading matches the checkpoint against the parameter table model_create
 * builds: every table entry must be present with the same shape; every
 * tensor in the files must be in the table, except the MTP layer when it is
 * not wanted and the F8 `*_scale_inv` tensors its weights consume. The dtype
 * each tensor came in is remembered so load -> save is byte-identical (F8 is
 * written back as BF16: there is no F8 quantiser here).
 * Not here: tokenizer files (the caller copies them) and trainer state. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/xalloc.h"
#include "model/model.h"

static int shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    int k = snprintf(buf, n, "[");
    for (int i = 0; i < ndim; i++) k += snprintf(buf + k, n > (size_t)k ? n - k : 0, "%s%lld", i ? ", " : "", (long long)shape[i]);
    return k + snprintf(buf + k, n > (size_t)k ? n - k : 0, "]");
}

/* Where to point a user for a tensor that is not there: the index or the file. */
static const char *ckpt_name(const Safetensors *st, const char *dir, char *buf, size_t n) {
    if (st->nshards == 1) return st->paths[0];
    snprintf(buf, n, "%s/model.safetensors.index.json", dir);
    return buf;
}

/* MTP tensors are model.layers.{L..L+D-1}.* in HF names. */
static int is_mtp_name(const ModelConfig *c, const char *name) {
    int l, k = 0;
    if (sscanf(name, "model.layers.%d.%n", &l, &k) != 1 || k == 0) return 0;
    return l >= c->num_hidden_layers && l < c->num_hidden_layers + c->num_nextn_predict_layers;
}

static int pname_cmp(const void *a, const void *b) {
    return strcmp((*(const Param *const *)a)->name, (*(const Param *const *)b)->name);
}

static const Param *sorted_find(const Param *const *sp, int n, const char *name) {
    Param key;
    if (strlen(name) >= sizeof key.name) return NULL; /* no table name is that long */
    snprintf(key.name, sizeof key.name, "%s", name);
    const Param *kp = &key;
    const Param *const *r = bsearch(&kp, sp, n, sizeof *sp, pname_cmp);
    return r ? *r : NULL;
}

/* A tensor in the files that the table does not hold: allowed only as an
 * F8 weight's scale, or as the unwanted MTP layer. */
static int check_extra(const Model *m, const Safetensors *st, const Param *const *sp, const StTensor *t, Err *err) {
    size_t n = strlen(t->name);
    const size_t sl = strlen("_scale_inv");
    if (n > sl && !strcmp(t->name + n - sl, "_scale_inv")) {
        char base[512];
        snprintf(base, sizeof base, "%.*s", (int)(n - sl), t->name);
        const StTensor *w = st_find(st, base);
        if (w && w->dtype == ST_F8_E4M3) return 0;
    }
    if (!m->has_mtp && is_mtp_name(&m->cfg, t->name)) return 0;
    if (sorted_find(sp, m->nparams, t->name)) return 0;
    return err_set(err, ERR_INPUT, "%s: unexpected tensor \"%s\" (not part of this %s config%s)", st->paths[t->shard],
                   t->name, m->cfg.is_v2 ? "deepseek_v2" : "deepseek_v3",
                   is_mtp_name(&m->cfg, t->name) ? "" : "; check num_hidden_layers, q_lora_rank and the expert counts");
}

static int load_tensors(Model *m, const Safetensors *st, const char *dir, Err *err) {
    char nb[4200], want[128], got[128];
    for (int i = 0; i < m->nparams; i++) {
        Param *p = &m->ptab[i];
        const StTensor *t = st_find(st, p->name);
        if (!t)
            return err_set(err, ERR_INPUT, "%s: tensor \"%s\" is missing%s", ckpt_name(st, dir, nb, sizeof nb), p->name,
                           is_mtp_name(&m->cfg, p->name) ? " (an MTP tensor: the config has num_nextn_predict_layers > 0; "
                                                           "load without MTP if the files have none)" : "");
        int same = t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
        if (!same) {
            shape_str(want, sizeof want, p->ndim, p->shape);
            shape_str(got, sizeof got, t->ndim, t->shape);
            return err_set(err, ERR_INPUT, "%s: tensor \"%s\" has shape %s, the config needs %s", st->paths[t->shard],
                           p->name, got, want);
        }
        if (st_read_f32(st, t, m->params + p->offset, err)) return -1;
        p->save_dtype = t->dtype == ST_F8_E4M3 ? ST_BF16 : t->dtype;
    }
    return 0;
}

int model_load(Model *m, const char *dir, const ModelOpts *opts, Err *err) {
    ModelConfig cfg;
    memset(m, 0, sizeof *m);
    if (config_load(&cfg, dir, err)) return -1;
    if (model_create(m, &cfg, opts, err)) return -1;
    Safetensors st;
    if (st_open(&st, dir, err)) {
        model_free(m);
        return -1;
    }
    const Param **sp = xmalloc((m->nparams + 1) * sizeof *sp);
    for (int i = 0; i < m->nparams; i++) sp[i] = &m->ptab[i];
    qsort(sp, m->nparams, sizeof *sp, pname_cmp);
    int rc = load_tensors(m, &st, dir, err);
    for (int i = 0; i < st.ntensors && !rc; i++) rc = check_extra(m, &st, sp, &st.tensors[i], err);
    free(sp);
    st_close(&st);
    if (rc) model_free(m);
    return rc;
}

static int save_generation_config(const ModelConfig *c, const char *dir, Err *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "_from_model_config", 1);
    cJSON_AddNumberToObject(o, "bos_token_id", c->bos_token_id);
    cJSON_AddNumberToObject(o, "eos_token_id", c->eos_token_id);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    FILE *f = fopen(path, "wb");
    int ok = f && fputs(s, f) >= 0 && fputc('\n', f) != EOF;
    if (f) ok = (fclose(f) == 0) && ok;
    free(s);
    return ok ? 0 : err_set(err, ERR_WORK, "%s: cannot write", path);
}

int model_save(const Model *m, const char *dir, size_t max_shard_bytes, Err *err) {
    if (mkdir(dir, 0755) && errno != EEXIST) return err_set(err, ERR_WORK, "%s: cannot create directory: %s", dir, strerror(errno));
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    ModelConfig cfg = m->cfg;
    if (!m->has_mtp) cfg.num_nextn_predict_layers = 0; /* the config must describe the files */
    if (config_save(&cfg, path, err)) return -1;
    StWrite *w = xcalloc(m->nparams + 1, sizeof *w);
    for (int i = 0; i < m->nparams; i++) {
        const Param *p = &m->ptab[i];
        w[i].name = p->name;
        w[i].dtype = p->save_dtype == ST_F8_E4M3 ? ST_BF16 : p->save_dtype;
        w[i].ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) w[i].shape[d] = p->shape[d];
        w[i].f32 = m->params + p->offset;
    }
    int rc = st_save_dir(dir, w, m->nparams, max_shard_bytes, err);
    free(w);
    if (!rc) rc = save_generation_config(&m->cfg, dir, err);
    return rc;
}
