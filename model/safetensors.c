/* safetensors: mmap reader and deterministic writer of .safetensors files
 * (see safetensors.h; format rules in docs/checkpoints.md).
 *
 * File = u64 little-endian header length N, N bytes of JSON, then the data.
 * The header is distrusted entirely: size limit, JSON shape, dtype, shape,
 * byte size, offsets inside the data, no two tensors overlapping, no
 * duplicate names. Errors are ERR_INPUT and name the file and the tensor.
 * Not here: which tensors a model needs (model_io.c). */
#include "model/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/xalloc.h"
#include "model/st_memory.h"

enum { ST_MAX_HEADER = 100 << 20 }; /* the safetensors library's own limit */

static const char *const dtype_names[ST_NDTYPES] = {
    "F32", "BF16", "F16", "F8_E4M3", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL"};
static const size_t dtype_sizes[ST_NDTYPES] = {4, 2, 2, 1, 8, 8, 4, 2, 1, 1, 1};

const char *st_dtype_name(StDtype d) { return (unsigned)d < ST_NDTYPES ? dtype_names[d] : "?"; }
size_t st_dtype_size(StDtype d) { return (unsigned)d < ST_NDTYPES ? dtype_sizes[d] : 0; }

/* ---- scalar conversions ------------------------------------------------- */

float st_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t st_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float st_f16_to_f32(uint16_t h) {
    uint32_t s = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
    if (e == 0x1f) {
        u = s | 0x7f800000u | (m << 13);
    } else if (e) {
        u = s | ((e + 112) << 23) | (m << 13);
    } else if (m) { /* subnormal: value m * 2^-24 */
        float f = ldexpf((float)m, -24);
        return s ? -f : f;
    } else {
        u = s;
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t st_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t s = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return s | 0x7e00;      /* NaN */
    if (a >= 0x477ff000u) return s | 0x7c00;     /* rounds to >= 65520: inf */
    if (a < 0x38800000u) {                       /* below 2^-14: subnormal or zero */
        float v = fabsf(f) * 16777216.0f;        /* in units of 2^-24, exact */
        return s | (uint16_t)lrintf(v);          /* lrintf: nearest even */
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1);   /* round mantissa to 10 bits, ties even */
    return s | (uint16_t)(((r >> 23) - 112) << 10 | ((r >> 13) & 0x3ff));
}

/* E4M3 "fn": bias 7, no infinities, S.1111.111 is NaN, max 448. */
float st_e4m3_to_f32(uint8_t b) {
    int s = b >> 7, e = (b >> 3) & 0xf, m = b & 7;
    float v;
    if (e == 15 && m == 7) v = NAN;
    else if (e == 0) v = ldexpf((float)m, -9); /* m/8 * 2^-6 */
    else v = ldexpf((float)(8 + m), e - 10);   /* (1 + m/8) * 2^(e-7) */
    return s ? -v : v;
}

/* ---- header parsing ----------------------------------------------------- */

static int dtype_parse(const char *s, StDtype *d) {
    for (int i = 0; i < ST_NDTYPES; i++)
        if (!strcmp(s, dtype_names[i])) { *d = (StDtype)i; return 0; }
    return -1;
}

/* A JSON number that is an exact non-negative integer below 2^53. */
static int json_u53(const cJSON *j, int64_t *out) {
    if (!cJSON_IsNumber(j)) return -1;
    double v = j->valuedouble;
    if (!(v >= 0 && v <= 9007199254740992.0) || v != floor(v)) return -1;
    *out = (int64_t)v;
    return 0;
}

static int tensor_parse(const cJSON *e, const char *file, size_t data_len, StTensor *t, int64_t off[2], Err *err) {
    const char *name = e->string;
    if (!cJSON_IsObject(e)) return err_set(err, ERR_INPUT, "%s: tensor \"%s\": entry is not an object", file, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) return err_set(err, ERR_INPUT, "%s: tensor \"%s\": dtype missing or not a string", file, name);
    if (dtype_parse(dt->valuestring, &t->dtype))
        return err_set(err, ERR_INPUT, "%s: tensor \"%s\": unknown dtype \"%.32s\"", file, name, dt->valuestring);
    if (!cJSON_IsArray(sh)) return err_set(err, ERR_INPUT, "%s: tensor \"%s\": shape missing or not a list", file, name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > ST_MAX_DIMS) return err_set(err, ERR_INPUT, "%s: tensor \"%s\": %d dimensions (max %d)", file, name, nd, ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    int i = 0;
    for (const cJSON *d = sh->child; d; d = d->next, i++) {
        if (json_u53(d, &t->shape[i]))
            return err_set(err, ERR_INPUT, "%s: tensor \"%s\": shape[%d] is not a non-negative integer", file, name, i);
        if (t->shape[i] && numel > (UINT64_C(1) << 53) / (uint64_t)t->shape[i])
            return err_set(err, ERR_INPUT, "%s: tensor \"%s\": shape too large", file, name);
        numel *= (uint64_t)t->shape[i];
    }
    t->numel = (int64_t)numel;
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 || json_u53(of->child, &off[0]) ||
        json_u53(of->child->next, &off[1]))
        return err_set(err, ERR_INPUT, "%s: tensor \"%s\": data_offsets must be two non-negative integers", file, name);
    if (off[0] > off[1] || (uint64_t)off[1] > data_len)
        return err_set(err, ERR_INPUT, "%s: tensor \"%s\": data_offsets [%lld, %lld] out of range (data is %zu bytes%s)",
                       file, name, (long long)off[0], (long long)off[1], data_len,
                       off[0] <= off[1] ? "; truncated file?" : "");
    t->nbytes = (size_t)numel * dtype_sizes[t->dtype];
    if ((uint64_t)(off[1] - off[0]) != numel * dtype_sizes[t->dtype]) {
        char shp[160];
        int k = snprintf(shp, sizeof shp, "[");
        for (int d = 0; d < nd && k < 120; d++) k += snprintf(shp + k, sizeof shp - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        snprintf(shp + k, sizeof shp - k, "]");
        return err_set(err, ERR_INPUT, "%s: tensor \"%s\": %s %s needs %llu bytes, data_offsets give %lld", file, name,
                       st_dtype_name(t->dtype), shp, (unsigned long long)(numel * dtype_sizes[t->dtype]),
                       (long long)(off[1] - off[0]));
    }
    return 0;
}

typedef struct Span { int64_t a, b; int idx; } Span;

static int span_cmp(const void *x, const void *y) {
    const Span *p = x, *q = y;
    return p->a < q->a ? -1 : p->a > q->a ? 1 : p->b < q->b ? -1 : p->b > q->b;
}

static int name_cmp(const void *x, const void *y) {
    return strcmp(((const StTensor *)x)->name, ((const StTensor *)y)->name);
}

/* Parses one file image (map, size) and appends its tensors to st with shard id. */
static int parse_image(Safetensors *st, const unsigned char *map, size_t size, const char *file, int shard, Err *err) {
    if (size < 8) return err_set(err, ERR_INPUT, "%s: truncated (%zu bytes, the 8-byte header length is missing)", file, size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | map[i];
    if (n > size - 8)
        return err_set(err, ERR_INPUT, "%s: header length %llu runs past the end of the file (%zu bytes): truncated?",
                       file, (unsigned long long)n, size);
    if (n > ST_MAX_HEADER) return err_set(err, ERR_INPUT, "%s: header of %llu bytes exceeds 100 MB", file, (unsigned long long)n);
    if (n < 2 || map[8] != '{') return err_set(err, ERR_INPUT, "%s: header does not start with '{'", file);
    const char *hs = (const char *)map + 8, *end = NULL;
    cJSON *h = cJSON_ParseWithLengthOpts(hs, (size_t)n, &end, 0);
    while (h && end && end < hs + n && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
    if (!h || !cJSON_IsObject(h) || !end || end != hs + n) { /* only padding spaces may follow */
        cJSON_Delete(h);
        return err_set(err, ERR_INPUT, "%s: header is not a JSON object (or has bytes after it)", file);
    }
    const unsigned char *data = map + 8 + n;
    size_t data_len = size - 8 - (size_t)n;
    int count = 0, rc = 0;
    for (const cJSON *e = h->child; e; e = e->next) count++;
    st->tensors = xrealloc(st->tensors, (st->ntensors + count + 1) * sizeof(StTensor));
    Span *sp = xmalloc((count + 1) * sizeof(Span));
    int ns = 0;
    for (const cJSON *e = h->child; e && !rc; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            if (!cJSON_IsObject(e)) rc = err_set(err, ERR_INPUT, "%s: __metadata__ is not an object", file);
            for (const cJSON *m = e->child; m && !rc; m = m->next)
                if (!cJSON_IsString(m)) rc = err_set(err, ERR_INPUT, "%s: __metadata__ value \"%s\" is not a string", file, m->string);
            continue;
        }
        StTensor t;
        memset(&t, 0, sizeof t);
        int64_t off[2] = {0, 0};
        if (tensor_parse(e, file, data_len, &t, off, err)) { rc = -1; break; }
        t.name = xstrdup(e->string);
        t.data = data + off[0];
        t.shard = shard;
        sp[ns++] = (Span){off[0], off[1], st->ntensors};
        st->tensors[st->ntensors++] = t;
    }
    cJSON_Delete(h);
    if (!rc) { /* overlap: sort by start, each non-empty span must start at or after the previous end */
        qsort(sp, ns, sizeof *sp, span_cmp);
        int64_t end = 0, start = 0;
        int prev = -1;
        for (int i = 0; i < ns && !rc; i++) {
            if (sp[i].a == sp[i].b) continue;
            if (prev >= 0 && sp[i].a < end)
                rc = err_set(err, ERR_INPUT, "%s: tensors \"%s\" and \"%s\" overlap (bytes [%lld, %lld) and [%lld, %lld))",
                             file, st->tensors[prev].name, st->tensors[sp[i].idx].name, (long long)start,
                             (long long)end, (long long)sp[i].a, (long long)sp[i].b);
            if (sp[i].b > end || prev < 0) { end = sp[i].b; start = sp[i].a; prev = sp[i].idx; }
        }
    }
    free(sp);
    return rc;
}

/* ---- opening ------------------------------------------------------------ */

static int add_shard(Safetensors *st, const char *path) {
    int i = st->nshards++;
    st->paths = xrealloc(st->paths, st->nshards * sizeof(char *));
    st->maps = xrealloc(st->maps, st->nshards * sizeof(void *));
    st->map_sizes = xrealloc(st->map_sizes, st->nshards * sizeof(size_t));
    st->paths[i] = xstrdup(path);
    st->maps[i] = NULL;
    st->map_sizes[i] = 0;
    return i;
}

static int open_file(Safetensors *st, const char *path, Err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(err, ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        close(fd);
        return err_set(err, ERR_INPUT, "%s: not a regular file", path);
    }
    int sh = add_shard(st, path);
    size_t size = (size_t)sb.st_size;
    void *map = NULL;
    if (size > 0) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            close(fd);
            return err_set(err, ERR_WORK, "%s: mmap failed: %s", path, strerror(errno));
        }
    }
    close(fd);
    st->maps[sh] = map;
    st->map_sizes[sh] = size;
    return parse_image(st, map ? map : (void *)"", size, path, sh, err);
}

/* After all shards: sort by name, reject duplicates. */
static int finish(Safetensors *st, Err *err) {
    qsort(st->tensors, st->ntensors, sizeof(StTensor), name_cmp);
    for (int i = 1; i < st->ntensors; i++)
        if (!strcmp(st->tensors[i].name, st->tensors[i - 1].name))
            return err_set(err, ERR_INPUT, "%s: tensor \"%s\" appears twice (also in %s)", st->paths[st->tensors[i].shard],
                           st->tensors[i].name, st->paths[st->tensors[i - 1].shard]);
    return 0;
}

static char *read_small(const char *path, size_t limit, size_t *len, Err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) { err_set(err, ERR_INPUT, "%s: cannot open: %s", path, strerror(errno)); return NULL; }
    char *buf = xmalloc(limit + 1);
    *len = fread(buf, 1, limit + 1, f);
    fclose(f);
    if (*len > limit) {
        free(buf);
        err_set(err, ERR_INPUT, "%s: larger than %zu bytes", path, limit);
        return NULL;
    }
    buf[*len] = 0;
    return buf;
}

static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* model.safetensors.index.json: open every shard in weight_map and check that
 * each listed tensor is in the shard the index names, and nothing else is. */
static int open_index(Safetensors *st, const char *dir, const char *ipath, Err *err) {
    size_t len;
    char *txt = read_small(ipath, 256u << 20, &len, err);
    if (!txt) return -1;
    cJSON *j = cJSON_ParseWithLength(txt, len);
    free(txt);
    const cJSON *wm = j ? cJSON_GetObjectItemCaseSensitive(j, "weight_map") : NULL;
    if (!cJSON_IsObject(wm)) {
        cJSON_Delete(j);
        return err_set(err, ERR_INPUT, "%s: not JSON with a \"weight_map\" object", ipath);
    }
    int n = cJSON_GetArraySize(wm), nf = 0, rc = 0;
    char **files = xcalloc(n + 1, sizeof(char *));
    for (const cJSON *e = wm->child; e && !rc; e = e->next) {
        if (!cJSON_IsString(e) || !e->valuestring[0] || strchr(e->valuestring, '/') || !strcmp(e->valuestring, ".."))
            rc = err_set(err, ERR_INPUT, "%s: weight_map[\"%s\"] must be a file name in the same folder", ipath, e->string);
        else
            files[nf++] = e->valuestring;
    }
    qsort(files, nf, sizeof *files, str_cmp);
    char path[4096];
    for (int i = 0; i < nf && !rc; i++) {
        if (i && !strcmp(files[i], files[i - 1])) continue;
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        rc = open_file(st, path, err);
    }
    if (!rc) rc = finish(st, err);
    for (const cJSON *e = wm->child; e && !rc; e = e->next) {
        const StTensor *t = st_find(st, e->string);
        snprintf(path, sizeof path, "%s/%s", dir, e->valuestring);
        if (!t || strcmp(st->paths[t->shard], path))
            rc = err_set(err, ERR_INPUT, "%s: tensor \"%s\" is listed for shard %s, but %s does not contain it", ipath,
                         e->string, e->valuestring, path);
    }
    for (int i = 0; i < st->ntensors && !rc; i++)
        if (!cJSON_GetObjectItemCaseSensitive(wm, st->tensors[i].name))
            rc = err_set(err, ERR_INPUT, "%s: tensor \"%s\" is not in the weight_map of %s", st->paths[st->tensors[i].shard],
                         st->tensors[i].name, ipath);
    free(files);
    cJSON_Delete(j);
    return rc;
}

int st_open(Safetensors *st, const char *path, Err *err) {
    memset(st, 0, sizeof *st);
    struct stat sb;
    int rc;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        char p[4096];
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", path);
        if (access(p, F_OK) == 0) {
            rc = open_index(st, path, p, err);
        } else {
            snprintf(p, sizeof p, "%s/model.safetensors", path);
            if (access(p, F_OK))
                return err_set(err, ERR_INPUT, "%s: no model.safetensors or model.safetensors.index.json", path);
            rc = open_file(st, p, err);
            if (!rc) rc = finish(st, err);
        }
    } else {
        rc = open_file(st, path, err);
        if (!rc) rc = finish(st, err);
    }
    if (rc) st_close(st);
    return rc;
}

int st_open_memory(Safetensors *st, const void *buf, size_t len, const char *name, Err *err) {
    memset(st, 0, sizeof *st);
    add_shard(st, name ? name : "<memory>");
    int rc = parse_image(st, len ? buf : (const void *)"", len, st->paths[0], 0, err);
    if (!rc) rc = finish(st, err);
    if (rc) st_close(st);
    return rc;
}

void st_close(Safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->ntensors; i++) free(st->tensors[i].name);
    for (int i = 0; i < st->nshards; i++) {
        if (st->maps[i]) munmap(st->maps[i], st->map_sizes[i]);
        free(st->paths[i]);
    }
    free(st->tensors);
    free(st->paths);
    free(st->maps);
    free(st->map_sizes);
    memset(st, 0, sizeof *st);
}

const StTensor *st_find(const Safetensors *st, const char *name) {
    int lo = 0, hi = st->ntensors - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(st->tensors[mid].name, name);
        if (!c) return &st->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

/* ---- conversion to float32 --------------------------------------------- */

/* Data may be unaligned in a file written by others: read through memcpy. */
static void convert(StDtype d, const unsigned char *p, float *out, size_t n) {
    switch (d) {
    case ST_F32: memcpy(out, p, n * 4); break;
    case ST_BF16:
        for (size_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, p + 2 * i, 2); out[i] = st_bf16_to_f32(h); }
        break;
    case ST_F16:
        for (size_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, p + 2 * i, 2); out[i] = st_f16_to_f32(h); }
        break;
    case ST_F64:
        for (size_t i = 0; i < n; i++) { double v; memcpy(&v, p + 8 * i, 8); out[i] = (float)v; }
        break;
    case ST_F8_E4M3:
        for (size_t i = 0; i < n; i++) out[i] = st_e4m3_to_f32(p[i]);
        break;
    default: break;
    }
}

/* w[r, c] = e4m3(w[r, c]) * s[r / 128, c / 128], edge blocks partial. */
static int dequant_f8(const Safetensors *st, const StTensor *t, float *out, Err *err) {
    const char *file = st->paths[t->shard];
    char sname[512];
    snprintf(sname, sizeof sname, "%s_scale_inv", t->name);
    const StTensor *s = st_find(st, sname);
    if (!s) return err_set(err, ERR_INPUT, "%s: tensor \"%s\" is F8_E4M3 but \"%s\" is missing", file, t->name, sname);
    if (t->ndim != 2) return err_set(err, ERR_INPUT, "%s: tensor \"%s\": F8_E4M3 needs 2 dimensions, has %d", file, t->name, t->ndim);
    int64_t R = t->shape[0], C = t->shape[1], br = (R + 127) / 128, bc = (C + 127) / 128;
    if (s->ndim != 2 || s->shape[0] != br || s->shape[1] != bc || (s->dtype != ST_F32 && s->dtype != ST_BF16))
        return err_set(err, ERR_INPUT, "%s: tensor \"%s\" must be F32 [%lld, %lld] for %s [%lld, %lld]",
                       st->paths[s->shard], sname, (long long)br, (long long)bc, t->name, (long long)R, (long long)C);
    float *scale = xmalloc((size_t)(br * bc + 1) * sizeof(float));
    convert(s->dtype, s->data, scale, (size_t)(br * bc));
    const unsigned char *w = t->data;
    for (int64_t r = 0; r < R; r++) {
        const float *srow = scale + (r / 128) * bc;
        for (int64_t c = 0; c < C; c++) out[r * C + c] = st_e4m3_to_f32(w[r * C + c]) * srow[c / 128];
    }
    free(scale);
    return 0;
}

int st_read_f32(const Safetensors *st, const StTensor *t, float *out, Err *err) {
    switch (t->dtype) {
    case ST_F32: case ST_BF16: case ST_F16: case ST_F64:
        convert(t->dtype, t->data, out, (size_t)t->numel);
        return 0;
    case ST_F8_E4M3: return dequant_f8(st, t, out, err);
    default:
        return err_set(err, ERR_INPUT, "%s: tensor \"%s\": dtype %s is not a float type", st->paths[t->shard], t->name,
                       st_dtype_name(t->dtype));
    }
}

/* ---- writing ------------------------------------------------------------ */

static int write_cmp(const void *a, const void *b) {
    return strcmp((*(const StWrite *const *)a)->name, (*(const StWrite *const *)b)->name);
}

static size_t write_numel(const StWrite *w) {
    size_t n = 1;
    for (int i = 0; i < w->ndim; i++) n *= (size_t)w->shape[i];
    return n;
}

static size_t write_bytes(const StWrite *w) { return write_numel(w) * st_dtype_size(w->dtype); }

/* Converts f32 values to dtype in chunks and writes them. */
static int write_data(FILE *f, const StWrite *w) {
    size_t n = write_numel(w), es = st_dtype_size(w->dtype);
    if (!w->f32) return fwrite(w->raw, es, n, f) == n ? 0 : -1;
    if (w->dtype == ST_F32) return fwrite(w->f32, 4, n, f) == n ? 0 : -1;
    enum { CHUNK = 1 << 16 };
    unsigned char buf[CHUNK * 8];
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t m = n - i < CHUNK ? n - i : CHUNK;
        for (size_t k = 0; k < m; k++) {
            float v = w->f32[i + k];
            if (w->dtype == ST_BF16) { uint16_t h = st_f32_to_bf16(v); memcpy(buf + 2 * k, &h, 2); }
            else if (w->dtype == ST_F16) { uint16_t h = st_f32_to_f16(v); memcpy(buf + 2 * k, &h, 2); }
            else { double d = v; memcpy(buf + 8 * k, &d, 8); }
        }
        if (fwrite(buf, es, m, f) != m) return -1;
    }
    return 0;
}

/* Header JSON: {"__metadata__":{"format":"pt"},"name":{"dtype":..,"shape":[..],"data_offsets":[a,b]},...},
 * tensors in name order, padded with spaces to a multiple of 8 bytes. */
static char *header_json(StWrite *const *w, int n, size_t *len) {
    cJSON *h = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(h, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_AddObjectToObject(h, w[i]->name);
        cJSON_AddStringToObject(e, "dtype", st_dtype_name(w[i]->dtype));
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < w[i]->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)w[i]->shape[d]));
        cJSON *of = cJSON_AddArrayToObject(e, "data_offsets");
        size_t b = write_bytes(w[i]);
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + b)));
        off += b;
    }
    char *s = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t l = strlen(s), pad = (8 - l % 8) % 8;
    s = xrealloc(s, l + pad + 1);
    memset(s + l, ' ', pad);
    s[l + pad] = 0;
    *len = l + pad;
    return s;
}

static int check_writes(const char *path, StWrite *const *w, int n, Err *err) {
    for (int i = 0; i < n; i++) {
        if ((unsigned)w[i]->dtype >= ST_NDTYPES || w[i]->ndim < 0 || w[i]->ndim > ST_MAX_DIMS)
            return err_set(err, ERR_WORK, "%s: tensor \"%s\": bad dtype or rank", path, w[i]->name);
        if (w[i]->f32 && w[i]->dtype != ST_F32 && w[i]->dtype != ST_BF16 && w[i]->dtype != ST_F16 && w[i]->dtype != ST_F64)
            return err_set(err, ERR_WORK, "%s: tensor \"%s\": cannot convert float32 to %s", path, w[i]->name,
                           st_dtype_name(w[i]->dtype));
        if (!w[i]->f32 && !w[i]->raw && write_numel(w[i]))
            return err_set(err, ERR_WORK, "%s: tensor \"%s\": no data", path, w[i]->name);
        if (i && !strcmp(w[i]->name, w[i - 1]->name))
            return err_set(err, ERR_WORK, "%s: tensor \"%s\" given twice", path, w[i]->name);
    }
    return 0;
}

/* Writes the sorted tensors to path via path.tmp + rename (never a half file). */
static int save_sorted(const char *path, StWrite *const *w, int n, Err *err) {
    if (check_writes(path, w, n, err)) return -1;
    size_t hlen;
    char *hdr = header_json(w, n, &hlen);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(hdr);
        return err_set(err, ERR_WORK, "%s: cannot create: %s", tmp, strerror(errno));
    }
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    int ok = fwrite(lenb, 1, 8, f) == 8 && fwrite(hdr, 1, hlen, f) == hlen;
    free(hdr);
    for (int i = 0; i < n && ok; i++) ok = write_data(f, w[i]) == 0;
    ok = (fflush(f) == 0) && ok && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return err_set(err, ERR_WORK, "%s: write failed: %s", path, strerror(e));
    }
    return 0;
}

static StWrite **sorted_ptrs(const StWrite *t, int n) {
    StWrite **w = xmalloc((n + 1) * sizeof *w);
    for (int i = 0; i < n; i++) w[i] = (StWrite *)&t[i];
    qsort(w, n, sizeof *w, write_cmp);
    return w;
}

int st_save(const char *path, const StWrite *t, int n, Err *err) {
    StWrite **w = sorted_ptrs(t, n);
    int rc = save_sorted(path, w, n, err);
    free(w);
    return rc;
}

/* index.json: {"metadata":{"total_size":N},"weight_map":{name: file}} */
static int save_index(const char *dir, StWrite *const *w, const int *shard_of, int n, int nsh, size_t total, Err *err) {
    cJSON *j = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(j, "metadata");
    cJSON_AddNumberToObject(meta, "total_size", (double)total);
    cJSON *wm = cJSON_AddObjectToObject(j, "weight_map");
    char name[64];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", shard_of[i] + 1, nsh);
        cJSON_AddStringToObject(wm, w[i]->name, name);
    }
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    int ok = f && fputs(s, f) >= 0 && fputc('\n', f) != EOF;
    if (f) ok = (fclose(f) == 0) && ok;
    free(s);
    if (!ok || rename(tmp, path)) {
        unlink(tmp);
        return err_set(err, ERR_WORK, "%s: write failed", path);
    }
    return 0;
}

int st_save_dir(const char *dir, const StWrite *t, int n, size_t max_shard_bytes, Err *err) {
    StWrite **w = sorted_ptrs(t, n);
    char path[4200];
    size_t total = 0;
    for (int i = 0; i < n; i++) total += write_bytes(w[i]);
    int rc = check_writes(dir, w, n, err);
    if (!rc && (max_shard_bytes == 0 || total <= max_shard_bytes)) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        rc = save_sorted(path, w, n, err);
        /* a stale index would win over the new file in st_open */
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        if (!rc) unlink(path);
        free(w);
        return rc;
    }
    /* greedy packing in name order; a tensor larger than the limit gets its own shard */
    int *shard_of = xmalloc((n + 1) * sizeof(int)), nsh = 0;
    size_t cur = 0;
    for (int i = 0; i < n; i++) {
        size_t b = write_bytes(w[i]);
        if (i == 0 || (cur > 0 && cur + b > max_shard_bytes)) { nsh++; cur = 0; }
        shard_of[i] = nsh - 1;
        cur += b;
    }
    for (int s = 0, i = 0; s < nsh && !rc; s++) {
        int j = i;
        while (j < n && shard_of[j] == s) j++;
        snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", dir, s + 1, nsh);
        rc = save_sorted(path, w + i, j - i, err);
        i = j;
    }
    if (!rc) rc = save_index(dir, w, shard_of, n, nsh, total, err);
    if (!rc) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        unlink(path);
    }
    free(shard_of);
    free(w);
    return rc;
}
