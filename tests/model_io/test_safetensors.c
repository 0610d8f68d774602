/* test_safetensors: the safetensors reader/writer.
 * References: files written by the safetensors library and PyTorch casts
 * (tests/fixtures/model/io/, made by tests/golden/make_model_io_fixtures.py):
 * bf16/f16 conversions both ways, all 256 float8_e4m3fn codes, 128x128 block
 * dequantisation with partial edge blocks, a sharded set written by
 * huggingface_hub. Then our writer (round trip, determinism, sharding) and
 * one malformed file per rule, each with a message naming file and tensor. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/safetensors.h"
#include "test.h"

#define FIX GRPO_TESTS_DIR "/fixtures/model/io/"

static char tmpdir[128];

static const char *tmp(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static int same_bits(float a, float b) { return (isnan(a) && isnan(b)) || !memcmp(&a, &b, 4); }

static float *read_all(const Safetensors *st, const char *name) {
    const StTensor *t = st_find(st, name);
    CHECK(t != NULL, "tensor %s missing", name);
    if (!t) return NULL;
    float *v = malloc(t->numel * sizeof(float) + 4);
    Err err = {0};
    if (st_read_f32(st, t, v, &err)) {
        CHECK(0, "%s", err.msg);
        free(v);
        return NULL;
    }
    return v;
}

/* bf16/f16 against torch's casts, both directions. */
static void test_dtypes_vs_torch(void) {
    Safetensors st;
    Err err = {0};
    if (st_open(&st, FIX "dtypes.safetensors", &err)) { CHECK(0, "%s", err.msg); return; }
    const StTensor *tf = st_find(&st, "f32"), *tb = st_find(&st, "bf16"), *th = st_find(&st, "f16");
    CHECK(tf && tb && th && tb->dtype == ST_BF16 && th->dtype == ST_F16, "dtypes fixture layout");
    if (!tf || !tb || !th) { st_close(&st); return; }
    float *x = read_all(&st, "f32"), *b = read_all(&st, "bf16"), *h = read_all(&st, "f16");
    float *bw = read_all(&st, "bf16_as_f32"), *hw = read_all(&st, "f16_as_f32");
    int bad_b = 0, bad_h = 0, bad_bw = 0, bad_hw = 0;
    for (int64_t i = 0; i < tf->numel; i++) {
        uint16_t rb, rh;
        memcpy(&rb, (const char *)tb->data + 2 * i, 2);
        memcpy(&rh, (const char *)th->data + 2 * i, 2);
        bad_b += !same_bits(b[i], bw[i]);
        bad_h += !same_bits(h[i], hw[i]);
        bad_bw += st_f32_to_bf16(x[i]) != rb;
        bad_hw += st_f32_to_f16(x[i]) != rh;
        if (st_f32_to_f16(x[i]) != rh && bad_hw < 4) fprintf(stderr, "f16 of %.9g: ours %04x torch %04x\n", x[i], st_f32_to_f16(x[i]), rh);
    }
    printf("bf16/f16 vs torch over %lld values: read mismatches %d/%d, write mismatches %d/%d\n", (long long)tf->numel,
           bad_b, bad_h, bad_bw, bad_hw);
    CHECK(!bad_b && !bad_h && !bad_bw && !bad_hw, "conversions differ from torch");
    free(x), free(b), free(h), free(bw), free(hw);
    st_close(&st);
}

static void test_e4m3_codes(void) {
    FILE *f = fopen(FIX "e4m3_codes.txt", "r");
    CHECK(f != NULL, "e4m3 fixture");
    if (!f) return;
    char line[128];
    int n = 0, bad = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned code, bits;
        if (sscanf(line, "%u %x", &code, &bits) != 2) continue;
        float want;
        memcpy(&want, &bits, 4);
        if (!same_bits(st_e4m3_to_f32((uint8_t)code), want)) {
            bad++;
            fprintf(stderr, "e4m3 %02x: ours %g torch %g\n", code, st_e4m3_to_f32((uint8_t)code), want);
        }
        n++;
    }
    fclose(f);
    CHECK(n == 256 && bad == 0, "e4m3: %d codes, %d wrong", n, bad);
    CHECK(st_e4m3_to_f32(0x7e) == 448.0f && isnan(st_e4m3_to_f32(0x7f)) && isnan(st_e4m3_to_f32(0xff)), "e4m3 max/NaN");
    printf("e4m3: %d codes match torch.float8_e4m3fn\n", n);
}

static void test_fp8_block(void) {
    Safetensors st;
    Err err = {0};
    if (st_open(&st, FIX "fp8_block.safetensors", &err)) { CHECK(0, "%s", err.msg); return; }
    const StTensor *w = st_find(&st, "w.weight");
    CHECK(w && w->dtype == ST_F8_E4M3 && w->shape[0] == 136 && w->shape[1] == 260, "fp8 fixture layout");
    float *got = read_all(&st, "w.weight"), *want = read_all(&st, "expected");
    int bad = 0;
    for (int64_t i = 0; got && want && i < w->numel; i++) bad += !same_bits(got[i], want[i]);
    CHECK(got && want && bad == 0, "fp8 block dequant: %d of %lld differ from PyTorch", bad, (long long)w->numel);
    printf("fp8 128x128 block dequant [136, 260] (partial edge blocks): %d mismatches vs PyTorch\n", bad);
    free(got), free(want);
    st_close(&st);
    /* an F8 weight without its scale is an error naming both */
    uint8_t raw[4] = {0x38, 0x40, 0xb8, 0x7e};
    StWrite t = {.name = "x.weight", .dtype = ST_F8_E4M3, .ndim = 2, .shape = {2, 2}, .raw = raw};
    const char *p = tmp("f8_noscale.safetensors");
    CHECK(st_save(p, &t, 1, &err) == 0, "%s", err.msg);
    if (st_open(&st, p, &err) == 0) {
        float out[4];
        CHECK(st_read_f32(&st, st_find(&st, "x.weight"), out, &err) == -1 && strstr(err.msg, "x.weight_scale_inv") &&
                  strstr(err.msg, "f8_noscale.safetensors"), "%s", err.msg);
        st_close(&st);
    }
}

/* Ours -> ours: values, dtypes, header format, determinism. */
static void test_roundtrip(void) {
    enum { N = 300 };
    float v[N];
    for (int i = 0; i < N; i++) v[i] = (float)(sin(i * 0.37) * pow(10.0, (i % 13) - 6));
    StWrite t[3] = {
        {.name = "z.f32", .dtype = ST_F32, .ndim = 2, .shape = {20, 15}, .f32 = v},
        {.name = "a.bf16", .dtype = ST_BF16, .ndim = 1, .shape = {N}, .f32 = v},
        {.name = "m.f16", .dtype = ST_F16, .ndim = 3, .shape = {3, 10, 10}, .f32 = v},
    };
    Err err = {0};
    const char *p1 = tmp("rt1.safetensors"), *p2 = tmp("rt2.safetensors");
    CHECK(st_save(p1, t, 3, &err) == 0, "%s", err.msg);
    StWrite r[3] = {t[2], t[0], t[1]}; /* order of the call must not matter */
    CHECK(st_save(p2, r, 3, &err) == 0, "%s", err.msg);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cmp -s %s %s", p1, p2);
    CHECK(system(cmd) == 0, "writer not deterministic");
    FILE *f = fopen(p1, "rb");
    unsigned char head[64] = {0};
    if (f) { CHECK(fread(head, 1, 64, f) == 64, "short file"); fclose(f); }
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | head[i];
    CHECK(hl % 8 == 0, "header length %llu not a multiple of 8", (unsigned long long)hl);
    CHECK(!memcmp(head + 8, "{\"__metadata__\":{\"format\":\"pt\"},\"a.bf16\"", 40), "header starts %.40s", head + 8);
    Safetensors st;
    if (st_open(&st, p1, &err)) { CHECK(0, "%s", err.msg); return; }
    CHECK(st.ntensors == 3 && !strcmp(st.tensors[0].name, "a.bf16") && !strcmp(st.tensors[2].name, "z.f32"), "sorted");
    float *a = read_all(&st, "a.bf16"), *m = read_all(&st, "m.f16"), *z = read_all(&st, "z.f32");
    int bad = 0;
    for (int i = 0; a && m && z && i < N; i++) {
        bad += !same_bits(z[i], v[i]);
        bad += !same_bits(a[i], st_bf16_to_f32(st_f32_to_bf16(v[i])));
        bad += !same_bits(m[i], st_f16_to_f32(st_f32_to_f16(v[i])));
    }
    CHECK(bad == 0, "round trip: %d values differ", bad);
    const StTensor *mt = st_find(&st, "m.f16");
    CHECK(mt && mt->ndim == 3 && mt->shape[1] == 10 && mt->nbytes == 600, "shape kept");
    /* rewriting what we read (raw) gives the same file */
    StWrite back[3];
    for (int i = 0; i < 3; i++) {
        const StTensor *s = &st.tensors[i];
        back[i] = (StWrite){.name = s->name, .dtype = s->dtype, .ndim = s->ndim, .raw = s->data};
        memcpy(back[i].shape, s->shape, sizeof s->shape);
    }
    const char *p3 = tmp("rt3.safetensors");
    CHECK(st_save(p3, back, 3, &err) == 0, "%s", err.msg);
    snprintf(cmd, sizeof cmd, "cmp -s %s %s", p1, p3);
    CHECK(system(cmd) == 0, "raw rewrite differs");
    free(a), free(m), free(z);
    st_close(&st);
    /* the Python library's reader is the other reference: the golden script
     * reads our files in its --check-init mode (transformers loading) */
}

static void test_sharded(void) {
    Safetensors st, ex;
    Err err = {0};
    if (st_open(&st, FIX "sharded", &err)) { CHECK(0, "%s", err.msg); return; }
    if (st_open(&ex, FIX "sharded_expected.safetensors", &err)) { CHECK(0, "%s", err.msg); st_close(&st); return; }
    CHECK(st.nshards == 3 && st.ntensors == 7, "HF sharded set: %d shards %d tensors", st.nshards, st.ntensors);
    int bad = 0;
    for (int i = 0; i < st.ntensors; i++) {
        char en[128];
        snprintf(en, sizeof en, "expect.%s", st.tensors[i].name);
        float *g = read_all(&st, st.tensors[i].name), *w = read_all(&ex, en);
        for (int64_t k = 0; g && w && k < st.tensors[i].numel; k++) bad += !same_bits(g[k], w[k]);
        free(g), free(w);
    }
    CHECK(bad == 0, "sharded read: %d values differ", bad);
    /* ours: write the same tensors sharded, read back */
    StWrite w[8];
    for (int i = 0; i < st.ntensors; i++) {
        const StTensor *s = &st.tensors[i];
        w[i] = (StWrite){.name = s->name, .dtype = s->dtype, .ndim = s->ndim, .raw = s->data};
        memcpy(w[i].shape, s->shape, sizeof s->shape);
    }
    const char *d = tmp("shards");
    mkdir(d, 0755);
    CHECK(st_save_dir(d, w, st.ntensors, 20000, &err) == 0, "%s", err.msg);
    Safetensors ours;
    if (st_open(&ours, d, &err) == 0) {
        CHECK(ours.nshards == 3 && ours.ntensors == 7, "our shards: %d, tensors %d", ours.nshards, ours.ntensors);
        for (int i = 0; i < ours.ntensors && i < st.ntensors; i++)
            CHECK(!strcmp(ours.tensors[i].name, st.tensors[i].name) &&
                      !memcmp(ours.tensors[i].data, st.tensors[i].data, st.tensors[i].nbytes), "tensor %d", i);
        CHECK(strstr(ours.paths[0], "model-00001-of-00003.safetensors") != NULL, "shard name %s", ours.paths[0]);
        st_close(&ours);
    } else {
        CHECK(0, "%s", err.msg);
    }
    char ip[512], txt[4096] = {0};
    snprintf(ip, sizeof ip, "%s/model.safetensors.index.json", d);
    FILE *f = fopen(ip, "r");
    if (f) { size_t n = fread(txt, 1, sizeof txt - 1, f); txt[n] = 0; fclose(f); }
    CHECK(strstr(txt, "\"total_size\":\t48060") != NULL, "index total_size: %s", txt);
    /* index pointing a tensor at the wrong shard: error naming both */
    char *at = strstr(txt, "\"t00\":\t\"model-00001-of-00003");
    CHECK(at != NULL, "index layout");
    if (at) {
        memcpy(at + strlen("\"t00\":\t\"model-0000"), "2", 1);
        f = fopen(ip, "w");
        fputs(txt, f);
        fclose(f);
        CHECK(st_open(&ours, d, &err) == -1 && strstr(err.msg, "\"t00\"") && strstr(err.msg, "model-00002-of-00003") &&
                  strstr(err.msg, "does not contain"), "%s", err.msg);
        printf("  e.g. %s\n", err.msg);
    }
    /* unsharded save into the same folder removes the stale index */
    CHECK(st_save_dir(d, w, st.ntensors, 0, &err) == 0, "%s", err.msg);
    CHECK(access(ip, F_OK) != 0, "stale index removed");
    CHECK(st_open(&ours, d, &err) == 0 && ours.nshards == 1, "%s", err.msg);
    st_close(&ours);
    st_close(&ex);
    st_close(&st);
}

/* Writes an 8-byte length + header (padded) + data bytes. */
static const char *write_raw(const char *name, const char *hdr, size_t data_len, long hlen_override) {
    const char *p = tmp(name);
    FILE *f = fopen(p, "wb");
    uint64_t hl = hlen_override >= 0 ? (uint64_t)hlen_override : strlen(hdr);
    for (int i = 0; i < 8; i++) fputc((int)((hl >> (8 * i)) & 0xff), f);
    fputs(hdr, f);
    for (size_t i = 0; i < data_len; i++) fputc(0, f);
    fclose(f);
    return p;
}

static void expect_bad(const char *what, const char *path, const char *needle1, const char *needle2) {
    Safetensors st;
    Err err = {0};
    int rc = st_open(&st, path, &err);
    CHECK(rc == -1 && err.code == ERR_INPUT, "%s: accepted", what);
    CHECK(strstr(err.msg, strrchr(path, '/') + 1) && strstr(err.msg, needle1) && (!needle2 || strstr(err.msg, needle2)),
          "%s: message '%s'", what, err.msg);
    printf("  %-22s %s\n", what, err.msg + (strstr(err.msg, tmpdir) == err.msg ? strlen(tmpdir) + 1 : 0));
    if (rc == 0) st_close(&st);
}

static void test_bad_files(void) {
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    /* sanity: the good one opens */
    Safetensors st;
    Err err = {0};
    CHECK(st_open(&st, write_raw("good.safetensors", ok, 16, -1), &err) == 0, "%s", err.msg);
    st_close(&st);
    FILE *f = fopen(tmp("tiny.safetensors"), "wb");
    fputs("abc", f);
    fclose(f);
    expect_bad("file < 8 bytes", tmp("tiny.safetensors"), "truncated", NULL);
    expect_bad("truncated data", write_raw("trunc.safetensors", ok, 10, -1), "\"a\"", "truncated");
    expect_bad("header past EOF", write_raw("hlen.safetensors", ok, 16, 100000), "header length 100000", "past the end");
    expect_bad("offsets out of range",
               write_raw("range.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 12, -1),
               "\"a\"", "out of range");
    expect_bad("offsets reversed",
               write_raw("rev.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 12, -1), "\"a\"",
               "out of range");
    expect_bad("overlap",
               write_raw("overlap.safetensors",
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                         12, -1),
               "\"a\" and \"b\" overlap", NULL);
    expect_bad("unknown dtype",
               write_raw("dtype.safetensors", "{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, -1),
               "\"a\"", "unknown dtype \"F33\"");
    expect_bad("bytes != shape",
               write_raw("size.safetensors", "{\"a\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, -1),
               "\"a\"", "BF16 [3] needs 6 bytes");
    expect_bad("duplicate name",
               write_raw("dup.safetensors",
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                         8, -1),
               "\"a\" appears twice", NULL);
    expect_bad("shape not ints",
               write_raw("shape.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 8, -1),
               "\"a\"", "shape[0]");
    expect_bad("not JSON", write_raw("json.safetensors", "{\"a\":", 8, -1), "not a JSON object", NULL);
    expect_bad("trailing bytes",
               write_raw("trail.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}xx", 4, -1),
               "bytes after it", NULL);
    expect_bad("missing file", tmp("nonexistent.safetensors"), "cannot open", NULL);
    /* a header full of zero-size tensors at the same offset is legal */
    CHECK(st_open(&st, write_raw("empty.safetensors",
                                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                                 "\"b\":{\"dtype\":\"I64\",\"shape\":[1,0],\"data_offsets\":[0,0]}}",
                                 0, -1),
                  &err) == 0,
          "%s", err.msg);
    st_close(&st);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/grpo_st_test_%d", (int)getpid());
    mkdir(tmpdir, 0755);
    test_dtypes_vs_torch();
    test_e4m3_codes();
    test_fp8_block();
    test_roundtrip();
    test_sharded();
    test_bad_files();
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_report();
}
