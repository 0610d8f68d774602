/* test_config: config.json parsing, validation and the derived numbers.
 * Expected values: deepseek-v3.md §3/§4.5 tables (softmax scale, parameter
 * counts) and tests/fixtures/model/io/rope_yarn.txt, made by
 * tests/golden/make_model_io_fixtures.py from transformers' YaRN init. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/config.h"
#include "test.h"

#define TINY GRPO_SHARED_DIR "/reference/tiny-configs/"
#define FIX GRPO_TESTS_DIR "/fixtures/model/"

static int load(ModelConfig *c, const char *path) {
    Err err = {0};
    int rc = config_load(c, path, &err);
    CHECK(rc == 0, "%s: %s", path, err.msg);
    return rc;
}

static int relerr_ok(double got, double want, double tol) { return fabs(got - want) <= tol * fabs(want); }

/* Derived numbers against deepseek-v3.md §3 and §4.5. */
static void test_derived(void) {
    static const struct {
        const char *path;
        double scale, total, active, tol; /* counts rounded in the table to the shown digits */
        int low, high;
    } cases[] = {
        {TINY "dsv3-tiny-1m.json", 0.18713, 1.01e6, 0.57e6, 0.01, 0, 4},
        {TINY "dsv3-small-10m.json", 0.18990, 11.27e6, 5.52e6, 0.001, 0, 4},
        {TINY "dsv3-medium-100m.json", 0.19125, 109.7e6, 76.7e6, 0.001, 5, 12},
        {FIX "deepseek-v3-671b-config.json", 0.1352338, 671.03e9, 37.55e9, 0.0002, 10, 23},
        {FIX "io/deepseek-v2-lite-config.json", 0.1147214, 15.71e9, 2.66e9, 0.0005, 10, 23},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ModelConfig c;
        if (load(&c, cases[i].path)) continue;
        CHECK(fabs(c.softmax_scale - cases[i].scale) < 6e-6, "%s: softmax scale %.7f, table %.7f", cases[i].path,
              c.softmax_scale, cases[i].scale);
        double t, a;
        config_param_counts(&c, &t, &a);
        printf("%-45s scale %.7f  params %.5g / %.5g  (table %.5g / %.4g)\n", strrchr(cases[i].path, '/') + 1,
               c.softmax_scale, t, a, cases[i].total, cases[i].active);
        CHECK(relerr_ok(t, cases[i].total, cases[i].tol), "%s: total %.6g vs %.6g", cases[i].path, t, cases[i].total);
        CHECK(relerr_ok(a, cases[i].active, cases[i].tol), "%s: active %.6g vs %.6g", cases[i].path, a, cases[i].active);
        CHECK(c.latent_norm_eps == 1e-6f, "latent eps always 1e-6");
        CHECK(fabsf(c.rope_amplitude - 1.0f) < 1e-7f, "amplitude %g", c.rope_amplitude);
        /* the ramp ends: where inv_freq starts to differ from theta^(-2i/d), and where it is fully divided */
        int half = c.qk_rope_head_dim / 2, low = -1, high = -1;
        float f[64];
        config_rope_inv_freq(&c, f);
        for (int k = 0; k < half; k++) {
            double base = 1.0 / pow(c.rope_theta, 2.0 * k / c.qk_rope_head_dim);
            if (low < 0 && fabs(f[k] - base) > 1e-6 * base) low = k - 1 < 0 ? 0 : k - 1;
            if (high < 0 && fabs(f[k] - base / c.yarn_factor) < 1e-6 * base / c.yarn_factor) high = k;
        }
        if (cases[i].high < half) CHECK(low == cases[i].low && high == cases[i].high, "%s: ramp (%d, %d), want (%d, %d)",
                                        cases[i].path, low, high, cases[i].low, cases[i].high);
    }
    /* Moonlight-like: no YaRN -> plain 1/sqrt(192) */
    const char *nj = "{\"model_type\":\"deepseek_v3\",\"vocab_size\":64,\"hidden_size\":32,\"intermediate_size\":64,"
                     "\"num_hidden_layers\":1,\"first_k_dense_replace\":1,\"num_attention_heads\":2,\"q_lora_rank\":null,"
                     "\"kv_lora_rank\":16,\"qk_nope_head_dim\":128,\"qk_rope_head_dim\":64,\"v_head_dim\":8}";
    ModelConfig c;
    Err err = {0};
    CHECK(config_parse(&c, nj, strlen(nj), "moon.json", &err) == 0, "%s", err.msg);
    CHECK(fabs(c.softmax_scale - 0.0721688) < 1e-7, "no-yarn scale %.7f", c.softmax_scale);
    CHECK(c.q_lora_rank == 0 && !c.rope_yarn && c.n_routed_experts == 0, "dense, no q-lora");
}

/* inv_freq against transformers' _compute_yarn_parameters (float32 bits). */
static void test_rope_fixture(void) {
    static const struct { const char *name, *path; } map[] = {
        {"dsv3-tiny-1m", TINY "dsv3-tiny-1m.json"},
        {"dsv3-small-10m", TINY "dsv3-small-10m.json"},
        {"dsv3-medium-100m", TINY "dsv3-medium-100m.json"},
        {"dsv2-small-10m", FIX "io/dsv2-small-10m.json"},
        {"deepseek-v3-671b", FIX "deepseek-v3-671b-config.json"},
        {"deepseek-v2-lite", FIX "io/deepseek-v2-lite-config.json"},
    };
    FILE *f = fopen(FIX "io/rope_yarn.txt", "r");
    CHECK(f != NULL, "rope fixture missing");
    if (!f) return;
    char line[4096];
    int seen = 0;
    double worst = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        char name[64];
        int n, used;
        double attn, scale;
        if (sscanf(line, "%63s %d %lf %lf%n", name, &n, &attn, &scale, &used) != 4) continue;
        const char *path = NULL;
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
            if (!strcmp(map[i].name, name)) path = map[i].path;
        ModelConfig c;
        if (!path || load(&c, path)) continue;
        seen++;
        CHECK(n == c.qk_rope_head_dim / 2, "%s: %d frequencies", name, n);
        float got[64];
        config_rope_inv_freq(&c, got);
        char *p = line + used;
        for (int i = 0; i < n && i < 64; i++) {
            unsigned bits = (unsigned)strtoul(p, &p, 16);
            float want;
            memcpy(&want, &bits, 4);
            double rel = fabs((double)got[i] - want) / want;
            if (rel > worst) worst = rel;
            /* HF computes in float32 (pow, ramp, mix); we compute in double and round once */
            CHECK(rel <= 2.5e-7, "%s inv_freq[%d] = %.9g, transformers %.9g", name, i, got[i], want);
        }
        CHECK(fabs(c.rope_amplitude - attn) < 1e-7, "%s: amplitude %g vs HF attention_factor %g", name, c.rope_amplitude, attn);
        if (scale > 0) CHECK(fabs(c.softmax_scale - scale) < 1e-7 * scale, "%s: scale %.9g vs HF Attention.scaling %.9g", name,
                             c.softmax_scale, scale);
    }
    fclose(f);
    CHECK(seen == 6, "fixture rows %d", seen);
    printf("YaRN inv_freq vs transformers: %d configs, worst relative error %.3g (tolerance 2.5e-7)\n", seen, worst);
}

/* V2 variant: softmax, greedy, no bias, mscale² still applied (trap 7). */
static void test_v2(void) {
    ModelConfig c;
    if (load(&c, FIX "io/dsv2-small-10m.json")) return;
    CHECK(c.is_v2 && c.scoring_func == SCORE_SOFTMAX && c.topk_method == TOPK_GREEDY, "v2 gating");
    CHECK(!c.has_correction_bias && !c.norm_topk_prob && c.routed_scaling_factor == 1.0f, "v2 flags");
    CHECK(fabs(c.softmax_scale - 0.18990) < 6e-6, "v2 keeps mscale^2: %.6f", c.softmax_scale);
    ModelConfig v3;
    if (load(&v3, TINY "dsv3-small-10m.json")) return;
    CHECK(!v3.is_v2 && v3.scoring_func == SCORE_SIGMOID && v3.topk_method == TOPK_NOAUX_TC && v3.has_correction_bias,
          "v3 gating");
    CHECK(v3.q_lora_rank == 0, "q_lora_rank null -> 0");
}

/* save -> parse gives the same struct, and a second save the same bytes. */
static void test_save_roundtrip(void) {
    const char *paths[] = {TINY "dsv3-tiny-1m.json", TINY "dsv3-small-10m.json", TINY "dsv3-medium-100m.json",
                           FIX "io/dsv2-small-10m.json", FIX "deepseek-v3-671b-config.json",
                           FIX "io/deepseek-v2-lite-config.json"};
    char a[64], b[64];
    snprintf(a, sizeof a, "/tmp/grpo_cfg_a_%d.json", (int)getpid());
    snprintf(b, sizeof b, "/tmp/grpo_cfg_b_%d.json", (int)getpid());
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        ModelConfig c, d;
        Err err = {0};
        if (load(&c, paths[i])) continue;
        CHECK(config_save(&c, a, &err) == 0, "%s", err.msg);
        if (load(&d, a)) continue;
        CHECK(memcmp(&c, &d, sizeof c) == 0, "%s: struct differs after save/load", paths[i]);
        CHECK(config_save(&d, b, &err) == 0, "%s", err.msg);
        char cmd[256];
        snprintf(cmd, sizeof cmd, "cmp -s %s %s", a, b);
        CHECK(system(cmd) == 0, "%s: second save differs", paths[i]);
    }
    FILE *f = fopen(a, "r");
    char text[8192] = {0};
    if (f) { size_t n = fread(text, 1, sizeof text - 1, f); text[n] = 0; fclose(f); }
    CHECK(strstr(text, "\"q_lora_rank\":\tnull") != NULL, "q_lora_rank written as null");
    CHECK(strstr(text, "DeepseekV2ForCausalLM") != NULL, "architectures");
    CHECK(strstr(text, "\"rms_norm_eps\":\t1e-06") != NULL, "eps written as 1e-06");
    unlink(a);
    unlink(b);
}

/* The same configs as transformers v5 writes them (rope_parameters, dtype,
 * head_dim, qk_head_dim) parse to the same struct. */
static void test_hf_saved(void) {
    const char *pairs[][2] = {{TINY "dsv3-tiny-1m.json", FIX "io/hf-saved-tiny-1m.json"},
                              {FIX "io/dsv2-small-10m.json", FIX "io/hf-saved-dsv2-small-10m.json"}};
    for (int i = 0; i < 2; i++) {
        ModelConfig a, b;
        if (load(&a, pairs[i][0]) || load(&b, pairs[i][1])) continue;
        CHECK(memcmp(&a, &b, sizeof a) == 0, "%s parses differently from %s", pairs[i][1], pairs[i][0]);
    }
}

/* Bad configs: each is a one-field edit of tiny-1m; the message must name
 * the file and the field. */
static void test_bad(void) {
    FILE *f = fopen(TINY "dsv3-tiny-1m.json", "r");
    char base[8192];
    size_t n = f ? fread(base, 1, sizeof base - 1, f) : 0;
    if (f) fclose(f);
    base[n] = 0;
    static const struct { const char *from, *to, *field, *why; } cases[] = {
        {"\"vocab_size\": 512,", "", "vocab_size", "missing"},
        {"\"hidden_size\": 128", "\"hidden_size\": \"128\"", "hidden_size", "integer"},
        {"\"hidden_size\": 128", "\"hidden_size\": 128.5", "hidden_size", "fraction"},
        {"\"norm_topk_prob\": true", "\"norm_topk_prob\": 1", "norm_topk_prob", "true or false"},
        {"\"num_key_value_heads\": 4", "\"num_key_value_heads\": 2", "num_key_value_heads", "grouping"},
        {"\"n_group\": 4", "\"n_group\": 3", "n_group", "not divisible"},
        {"\"topk_group\": 2", "\"topk_group\": 5", "topk_group", "[1, n_group"},
        {"\"num_experts_per_tok\": 4", "\"num_experts_per_tok\": 9", "num_experts_per_tok", "kept groups"},
        {"\"n_group\": 4", "\"n_group\": 16", "n_group", "top 2"},
        {"\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true", "tie_word_embeddings", "untied"},
        {"\"deepseek_v3\"", "\"llama\"", "model_type", "deepseek_v3"},
        {"\"max_position_embeddings\": 1024", "\"max_position_embeddings\": 2048", "max_position_embeddings", "trap 5"},
        {"\"scoring_func\": \"sigmoid\"", "\"scoring_func\": \"softmax\"", "scoring_func", "hard-codes"},
        {"\"topk_method\": \"noaux_tc\"", "\"topk_method\": \"greedy\"", "topk_method", "hard-codes"},
        {"\"q_lora_rank\": 64", "\"q_lora_rank\": 0", "q_lora_rank", "null"},
        {"\"q_lora_rank\": 64,", "", "q_lora_rank", "missing"},
        {"\"qk_rope_head_dim\": 16", "\"qk_rope_head_dim\": 15", "qk_rope_head_dim", "even"},
        {"\"first_k_dense_replace\": 1", "\"first_k_dense_replace\": 4", "first_k_dense_replace", "exceeds"},
        {"\"type\": \"yarn\"", "\"type\": \"llama3\"", "rope_scaling.type", "yarn"},
        {"\"original_max_position_embeddings\": 256,", "", "rope_scaling.original_max_position_embeddings", "missing"},
        {"\"factor\": 4", "\"factor\": \"4\"", "rope_scaling.factor", "number"},
        {"\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", "hidden_act", "silu"},
        {"\"moe_layer_freq\": 1", "\"moe_layer_freq\": 2", "moe_layer_freq", "only 1"},
        {"\"n_routed_experts\": 16,", "", "n_routed_experts", "missing"},
        {"\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": -1", "rms_norm_eps", "(0, 1)"},
        {"\"bos_token_id\": 0", "\"bos_token_id\": 0, \"bos_token_id\": 3", "bos_token_id", "twice"},
        {"\"bos_token_id\": 0", "\"bos_token_id\": 0, \"head_dim\": 32", "head_dim", "qk_rope_head_dim"},
        {"\"rope_theta\": 10000", "\"rope_theta\": \"10000\"", "rope_theta", "number"},
        {"\"mscale\": 1.0", "\"mscale\": -1.0", "rope_scaling.mscale", ">= 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[8192];
        const char *at = strstr(base, cases[i].from);
        CHECK(at != NULL, "case %zu: pattern %s not in tiny-1m", i, cases[i].from);
        if (!at) continue;
        snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - base), base, cases[i].to, at + strlen(cases[i].from));
        ModelConfig c;
        Err err = {0};
        int rc = config_parse(&c, buf, strlen(buf), "bad-config.json", &err);
        char want[128];
        snprintf(want, sizeof want, "\"%s\"", cases[i].field);
        CHECK(rc == -1 && err.code == ERR_INPUT, "case %s: accepted", cases[i].field);
        CHECK(strstr(err.msg, "bad-config.json") && strstr(err.msg, want) && strstr(err.msg, cases[i].why),
              "case %s/%s: message '%s'", cases[i].field, cases[i].why, err.msg);
        if (i < 3) printf("  e.g. %s\n", err.msg);
    }
    /* V2 with norm_topk_prob true is refused (HF-V2 would ignore it) */
    FILE *g = fopen(FIX "io/dsv2-small-10m.json", "r");
    char v2[8192];
    n = g ? fread(v2, 1, sizeof v2 - 1, g) : 0;
    if (g) fclose(g);
    v2[n] = 0;
    char *p = strstr(v2, "\"norm_topk_prob\": false");
    CHECK(p != NULL, "v2 fixture has norm_topk_prob false");
    if (p) {
        memcpy(p, "\"norm_topk_prob\": true ", 23);
        ModelConfig c;
        Err err = {0};
        CHECK(config_parse(&c, v2, strlen(v2), "v2.json", &err) == -1 && strstr(err.msg, "norm_topk_prob"), "%s", err.msg);
    }
    ModelConfig c;
    Err err = {0};
    CHECK(config_parse(&c, "[1,2]", 5, "x.json", &err) == -1 && strstr(err.msg, "object"), "%s", err.msg);
    CHECK(config_parse(&c, "{\"a\":", 5, "x.json", &err) == -1 && strstr(err.msg, "not valid JSON"), "%s", err.msg);
    CHECK(config_parse(&c, "{} x", 4, "x.json", &err) == -1 && strstr(err.msg, "after the JSON"), "%s", err.msg);
    CHECK(config_load(&c, "/nonexistent/dir", &err) == -1 && err.code == ERR_INPUT && strstr(err.msg, "/nonexistent/dir"),
          "%s", err.msg);
}

int main(void) {
    test_derived();
    test_rope_fixture();
    test_v2();
    test_save_roundtrip();
    test_hf_saved();
    test_bad();
    return test_report();
}
