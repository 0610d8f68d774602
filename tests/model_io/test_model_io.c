/* test_model_io: checkpoint directories end to end.
 * save -> load -> save is byte-identical (library and `grpo init`, single
 * file and sharded, f32 and bf16); F8 weights load through their block scales
 * and are written back as BF16; the MTP layer is skipped when not wanted; and
 * each malformed checkpoint (tensor missing, extra, wrong shape, bad config)
 * is an ERR_INPUT naming the file and the tensor/field, exit 2 from `grpo`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model/model.h"
#include "test.h"

#define TINY GRPO_SHARED_DIR "/reference/tiny-configs/dsv3-tiny-1m.json"

static char tmpdir[128];

static const char *tmp(const char *name) {
    static char buf[8][256];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static int sh(const char *fmt, const char *a, const char *b) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, fmt, a, b);
    return system(cmd);
}

/* Same set of files with the same bytes. */
static int same_dir(const char *a, const char *b) { return sh("diff -r %s %s >/dev/null", a, b) == 0; }

static void test_library_roundtrip(void) {
    ModelConfig cfg;
    Err err = {0};
    if (config_load(&cfg, TINY, &err)) { CHECK(0, "%s", err.msg); return; }
    Model m, l;
    ModelOpts mtp = {.mtp = 1};
    if (model_create(&m, &cfg, &mtp, &err)) { CHECK(0, "%s", err.msg); return; }
    model_init_random(&m, 5, 0.02f);
    for (int i = 0; i < m.nparams; i++) /* mixed dtypes, as a real checkpoint has */
        m.ptab[i].save_dtype = !m.ptab[i].trainable ? ST_F32 : (i % 3 == 0) ? ST_F16 : ST_BF16;
    const char *a = tmp("lib_a"), *b = tmp("lib_b");
    CHECK(model_save(&m, a, 0, &err) == 0, "%s", err.msg);
    if (model_load(&l, a, &mtp, &err)) { CHECK(0, "%s", err.msg); model_free(&m); return; }
    CHECK(l.nparams == m.nparams && l.has_mtp, "same table");
    int bad = 0;
    for (int i = 0; i < m.nparams && i < l.nparams; i++) {
        const Param *p = &m.ptab[i];
        CHECK(l.ptab[i].save_dtype == p->save_dtype, "%s: dtype remembered", p->name);
        for (size_t k = 0; k < p->numel; k++) {
            float v = m.params[p->offset + k];
            float want = p->save_dtype == ST_BF16 ? st_bf16_to_f32(st_f32_to_bf16(v))
                         : p->save_dtype == ST_F16 ? st_f16_to_f32(st_f32_to_f16(v)) : v;
            bad += l.params[l.ptab[i].offset + k] != want;
        }
    }
    CHECK(bad == 0, "%d loaded values differ", bad);
    CHECK(model_save(&l, b, 0, &err) == 0, "%s", err.msg);
    CHECK(same_dir(a, b), "library save -> load -> save differs");
    /* sharded the same way */
    const char *c = tmp("lib_c"), *d = tmp("lib_d");
    CHECK(model_save(&l, c, 1 << 20, &err) == 0, "%s", err.msg);
    Model s;
    if (model_load(&s, c, &mtp, &err) == 0) {
        CHECK(model_save(&s, d, 1 << 20, &err) == 0, "%s", err.msg);
        CHECK(same_dir(c, d), "sharded save -> load -> save differs");
        model_free(&s);
    } else {
        CHECK(0, "%s", err.msg);
    }
    /* without MTP: the MTP tensors are skipped, the saved config says 0 */
    ModelOpts no = {.mtp = 0};
    if (model_load(&s, a, &no, &err) == 0) {
        CHECK(!s.has_mtp && s.nparams < m.nparams, "mtp skipped (%d of %d tensors)", s.nparams, m.nparams);
        const char *e = tmp("lib_e");
        CHECK(model_save(&s, e, 0, &err) == 0, "%s", err.msg);
        Model t;
        CHECK(model_load(&t, e, &mtp, &err) == 0 && !t.has_mtp, "no-mtp checkpoint reloads: %s", err.msg);
        model_free(&t);
        model_free(&s);
    } else {
        CHECK(0, "%s", err.msg);
    }
    printf("library: save -> load -> save byte-identical (single file and 1 MB shards, F32/BF16/F16 mix)\n");
    model_free(&l);
    model_free(&m);
}

/* Rewrites dir/model.safetensors through edit(); returns 0 on success. */
typedef void (*EditFn)(StWrite *w, int *n, void *ctx);

static int rewrite(const char *dir, EditFn edit, void *ctx) {
    Safetensors st;
    Err err = {0};
    if (st_open(&st, dir, &err)) { CHECK(0, "%s", err.msg); return -1; }
    StWrite *w = calloc(st.ntensors + 4, sizeof *w);
    for (int i = 0; i < st.ntensors; i++) {
        const StTensor *t = &st.tensors[i];
        w[i] = (StWrite){.name = t->name, .dtype = t->dtype, .ndim = t->ndim, .raw = t->data};
        memcpy(w[i].shape, t->shape, sizeof t->shape);
    }
    int n = st.ntensors;
    edit(w, &n, ctx);
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    int rc = st_save(p, w, n, &err);
    CHECK(rc == 0, "%s", err.msg);
    free(w);
    st_close(&st);
    return rc;
}

static int find_w(StWrite *w, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(w[i].name, name)) return i;
    return -1;
}

static void drop_tensor(StWrite *w, int *n, void *ctx) {
    int i = find_w(w, *n, ctx);
    if (i >= 0) w[i] = w[--*n];
}

static float extra_data[4];
static void add_tensor(StWrite *w, int *n, void *ctx) {
    w[(*n)++] = (StWrite){.name = ctx, .dtype = ST_F32, .ndim = 1, .shape = {4}, .f32 = extra_data};
}

static void transpose_shape(StWrite *w, int *n, void *ctx) {
    int i = find_w(w, *n, ctx);
    if (i >= 0) { int64_t t = w[i].shape[0]; w[i].shape[0] = w[i].shape[1]; w[i].shape[1] = t; }
}

static void to_int(StWrite *w, int *n, void *ctx) {
    int i = find_w(w, *n, ctx);
    if (i >= 0) w[i].dtype = st_dtype_size(w[i].dtype) == 2 ? ST_I16 : ST_I32; /* same byte size */
}

/* q_a_proj as F8 codes with 0.5 block scales. */
static uint8_t f8_codes[64 * 128];
static float f8_scale[1] = {0.5f};
static void to_f8(StWrite *w, int *n, void *ctx) {
    int i = find_w(w, *n, ctx);
    if (i < 0) return;
    for (int k = 0; k < 64 * 128; k++) f8_codes[k] = (uint8_t)((k * 37) % 256 == 0x7f || (k * 37) % 256 == 0xff ? 0x38 : (k * 37) % 256);
    w[i].dtype = ST_F8_E4M3;
    w[i].raw = f8_codes;
    static char sname[128];
    snprintf(sname, sizeof sname, "%s_scale_inv", w[i].name);
    w[(*n)++] = (StWrite){.name = sname, .dtype = ST_F32, .ndim = 2, .shape = {1, 1}, .raw = f8_scale};
}

static void expect_load_error(const char *dir, const char *what, const char *n1, const char *n2) {
    Model m;
    Err err = {0};
    ModelOpts o = {.mtp = 1};
    int rc = model_load(&m, dir, &o, &err);
    CHECK(rc == -1 && err.code == ERR_INPUT, "%s: loaded", what);
    CHECK(strstr(err.msg, n1) && (!n2 || strstr(err.msg, n2)), "%s: message '%s'", what, err.msg);
    printf("  %-16s %s\n", what, err.msg + (strstr(err.msg, tmpdir) == err.msg ? strlen(tmpdir) + 1 : 0));
    if (rc == 0) model_free(&m);
}

static void test_bad_checkpoints(const char *src) {
    const char *t = "model.layers.1.self_attn.kv_b_proj.weight";
    const char *d = tmp("bad_missing");
    sh("cp -r %s %s", src, d);
    if (!rewrite(d, drop_tensor, (void *)t)) expect_load_error(d, "tensor missing", t, "model.safetensors");
    d = tmp("bad_extra");
    sh("cp -r %s %s", src, d);
    if (!rewrite(d, add_tensor, "model.layers.0.self_attn.rotary.bias")) expect_load_error(d, "extra tensor", "model.layers.0.self_attn.rotary.bias", "unexpected");
    d = tmp("bad_shape");
    sh("cp -r %s %s", src, d);
    if (!rewrite(d, transpose_shape, (void *)t)) expect_load_error(d, "wrong shape", t, "[32, 256]");
    d = tmp("bad_dtype");
    sh("cp -r %s %s", src, d);
    if (!rewrite(d, to_int, "model.norm.weight")) expect_load_error(d, "integer dtype", "\"model.norm.weight\"", "is not a float type");
    d = tmp("bad_config");
    sh("cp -r %s %s", src, d);
    sh("sed -i 's/\"kv_lora_rank\":/\"kv_lora_rankX\":/' %s/config.json%s", d, "");
    expect_load_error(d, "config missing", "config.json", "\"kv_lora_rank\"");
    d = tmp("bad_mismatch");
    sh("cp -r %s %s", src, d);
    sh("sed -i 's/\"kv_lora_rank\":\t32/\"kv_lora_rank\":\t16/' %s/config.json%s", d, "");
    expect_load_error(d, "config vs files", "kv_a_proj_with_mqa", "the config needs");
    d = tmp("no_weights");
    mkdir(d, 0755);
    sh("cp %s/config.json %s/", src, d);
    expect_load_error(d, "no safetensors", "no model.safetensors", NULL);
}

static void test_f8_load(const char *src) {
    const char *d = tmp("f8"), *o = tmp("f8_out");
    const char *t = "model.layers.0.self_attn.q_a_proj.weight";
    sh("cp -r %s %s", src, d);
    if (rewrite(d, to_f8, (void *)t)) return;
    Model m;
    Err err = {0};
    ModelOpts mo = {.mtp = 1};
    if (model_load(&m, d, &mo, &err)) { CHECK(0, "f8 load: %s", err.msg); return; }
    const Param *p = model_find_param(&m, t);
    int bad = 0;
    for (int k = 0; p && k < 64 * 128; k++) bad += m.params[p->offset + k] != st_e4m3_to_f32(f8_codes[k]) * 0.5f;
    CHECK(p && bad == 0 && p->save_dtype == ST_BF16, "f8 dequant: %d wrong", bad);
    CHECK(model_save(&m, o, 0, &err) == 0, "%s", err.msg);
    Safetensors st;
    if (st_open(&st, o, &err) == 0) {
        const StTensor *s = st_find(&st, t);
        char sn[128];
        snprintf(sn, sizeof sn, "%s_scale_inv", t);
        CHECK(s && s->dtype == ST_BF16 && !st_find(&st, sn), "F8 written back as BF16 without scale");
        st_close(&st);
    }
    model_free(&m);
    printf("F8_E4M3 weight with weight_scale_inv: loaded exactly, saved as BF16\n");
}

/* Runs the grpo binary; returns the exit code, output in out. */
static int run_grpo(const char *args, char *out, size_t n) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", GRPO_BIN, args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t k = fread(out, 1, n - 1, p);
    out[k] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_grpo_init(void) {
    if (access(GRPO_BIN, X_OK)) { CHECK(0, "grpo binary %s not built", GRPO_BIN); return; }
    char out[4096], args[1024];
    const char *a = tmp("init_a"), *b = tmp("init_b");
    snprintf(args, sizeof args, "init --config %s --out %s --seed 3 --dtype bf16 --max-shard-mb 2", TINY, a);
    CHECK(run_grpo(args, out, sizeof out) == 0, "grpo init: %s", out);
    Model m;
    Err err = {0};
    ModelOpts mo = {.mtp = 1};
    if (model_load(&m, a, &mo, &err) == 0) {
        CHECK(model_save(&m, b, 2 << 20, &err) == 0, "%s", err.msg);
        CHECK(same_dir(a, b), "grpo init -> load -> save differs");
        const Param *bias = model_find_param(&m, "model.layers.1.mlp.gate.e_score_correction_bias");
        CHECK(bias && bias->save_dtype == ST_F32, "bias kept F32 in a bf16 checkpoint");
        model_free(&m);
    } else {
        CHECK(0, "%s", err.msg);
    }
    printf("grpo init (bf16, 2 MB shards) -> load -> save: byte-identical\n");
    /* the same seed gives the same files */
    const char *c = tmp("init_c");
    snprintf(args, sizeof args, "init --config %s --out %s --seed 3 --dtype bf16 --max-shard-mb 2", TINY, c);
    CHECK(run_grpo(args, out, sizeof out) == 0 && same_dir(a, c), "init not deterministic");
    /* bad configs through the binary: exit 2, message names file and field */
    const char *bad = tmp("bad.json");
    sh("sed 's/\"hidden_size\": 128,//' %s > %s", TINY, bad);
    snprintf(args, sizeof args, "init --config %s --out %s", bad, tmp("x"));
    int rc = run_grpo(args, out, sizeof out);
    CHECK(rc == 2 && strstr(out, "bad.json") && strstr(out, "\"hidden_size\": missing"), "rc %d: %s", rc, out);
    printf("  grpo init, field missing -> exit %d: %s", rc, strstr(out, "bad.json") ? strstr(out, "bad.json") : out);
    sh("sed 's/\"topk_group\": 2/\"topk_group\": 6/' %s > %s", TINY, bad);
    rc = run_grpo(args, out, sizeof out);
    CHECK(rc == 2 && strstr(out, "bad.json") && strstr(out, "\"topk_group\""), "rc %d: %s", rc, out);
    printf("  grpo init, inconsistent -> exit %d: %s", rc, strstr(out, "bad.json") ? strstr(out, "bad.json") : out);
    sh("sed 's/\"vocab_size\": 512/\"vocab_size\": [512]/' %s > %s", TINY, bad);
    rc = run_grpo(args, out, sizeof out);
    CHECK(rc == 2 && strstr(out, "\"vocab_size\": must be an integer"), "rc %d: %s", rc, out);
    snprintf(args, sizeof args, "init --config %s --out %s --dtype f8", TINY, tmp("x"));
    CHECK(run_grpo(args, out, sizeof out) == 2, "bad --dtype: %s", out);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/grpo_mio_test_%d", (int)getpid());
    mkdir(tmpdir, 0755);
    test_library_roundtrip();
    test_f8_load(tmp("lib_a"));
    test_bad_checkpoints(tmp("lib_a"));
    test_grpo_init();
    sh("rm -rf %s%s", tmpdir, "");
    return test_report();
}
