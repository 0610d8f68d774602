/* test_bench_device: `grpo bench decode` and `grpo bench train` (GRPO_BIN) on the
 * CPU as commands, not measurements (tests never check timings): bad usage exits
 * 2 naming the option; a tiny run prints a table and one JSON line; the figures
 * the benches derive from the model (bytes a decode step reads, FLOPs per trained
 * token) equal the formulas of docs/performance.md and deepseek-v3.md §8 computed
 * here from the config's numbers; a missing reference script leaves a grpo-only
 * result (torch_tok_s null, exit 0). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_out.h"
#include "test.h"

#define CONFIG GRPO_TESTS_DIR "/../recipes/models/dsv3-tiny-1m.json"

static char tmp[256];

static char *slurp(const char *name) { return bench_out_text(tmp, name); }
static cJSON *json_line(const char *name) { return bench_out_json(tmp, name); }

/* The config's numbers and the matmul parameters of deepseek-v3.md §8. */
typedef struct Cfg { double V, H, I, Ie, L, dense, nh, dq, dc, dn, dr, dv, E, k, shared; } Cfg;

static Cfg cfg_read(void) {
    FILE *f = fopen(CONFIG, "rb");
    char buf[4096] = {0};
    if (f) buf[fread(buf, 1, sizeof buf - 1, f)] = 0, fclose(f);
    cJSON *j = cJSON_Parse(buf);
    Cfg c = {bench_out_num(j, "vocab_size"), bench_out_num(j, "hidden_size"), bench_out_num(j, "intermediate_size"), bench_out_num(j, "moe_intermediate_size"),
             bench_out_num(j, "num_hidden_layers"), bench_out_num(j, "first_k_dense_replace"), bench_out_num(j, "num_attention_heads"),
             bench_out_num(j, "q_lora_rank"), bench_out_num(j, "kv_lora_rank"), bench_out_num(j, "qk_nope_head_dim"), bench_out_num(j, "qk_rope_head_dim"),
             bench_out_num(j, "v_head_dim"), bench_out_num(j, "n_routed_experts"), bench_out_num(j, "num_experts_per_tok"), bench_out_num(j, "n_shared_experts")};
    cJSON_Delete(j);
    return c;
}

/* Every parameter but the embedding and the routed experts (norms and router biases included). */
static double non_expert(const Cfg *c) {
    double attn = c->H * c->dq + c->dq + c->nh * (c->dn + c->dr) * c->dq + (c->dc + c->dr) * c->H + c->dc +
                  c->nh * (c->dn + c->dv) * c->dc + c->H * c->nh * c->dv + 2 * c->H;
    double dense = 3 * c->H * c->I, moe = c->E * c->H + c->E + 3 * c->H * c->Ie * c->shared;
    return c->L * attn + c->dense * dense + (c->L - c->dense) * moe + c->H + c->V * c->H;
}

static void check_decode(void) {
    const Cfg c = cfg_read();
    CHECK(test_sh("%s bench decode --device cpu --config %s --batch 0 > %s/u.out 2> %s/u.err", GRPO_BIN, CONFIG, tmp, tmp) == 2,
          "--batch 0 is bad usage");
    char *e = slurp("u.err");
    CHECK(strstr(e, "--batch") != NULL, "message names --batch: %s", e);
    free(e);
    CHECK(test_sh("%s bench decode --device tpu --config %s > %s/u.out 2> %s/u.err", GRPO_BIN, CONFIG, tmp, tmp) == 2,
          "--device tpu is bad input");
    e = slurp("u.err");
    CHECK(strstr(e, "--device") != NULL, "message names --device: %s", e);
    free(e);
    CHECK(test_sh("%s bench decode --device cpu --config %s --batch 1,3 --prompt 8 --new 6 --torch-script %s/none.py "
                  "> %s/d.out 2> %s/d.err", GRPO_BIN, CONFIG, tmp, tmp, tmp) == 0, "decode on the CPU");
    char *out = slurp("d.out");
    CHECK(strstr(out, "PyTorch reference unavailable") != NULL, "a missing reference is said: %s", out);
    free(out);
    cJSON *j = json_line("d.out");
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(j, "rows");
    CHECK(cJSON_GetArraySize(rows) == 2, "one row per batch size");
    for (int i = 0; i < cJSON_GetArraySize(rows); i++) {
        const cJSON *r = cJSON_GetArrayItem(rows, i);
        double B = i ? 3 : 1;
        CHECK(bench_out_num(r, "batch") == B, "row %d is batch %g", i, B);
        CHECK(bench_out_num(r, "tok_s") > 0 && bench_out_num(r, "step_s") > 0, "batch %g: tok/s and step time", B);
        CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r, "torch_tok_s")), "no reference: null");
        /* fp32 on the CPU: the weights a step touches + the cache at the mean length (8 + 6/2) */
        double touched = c.E * (1 - pow(1 - c.k / c.E, B));
        double w = non_expert(&c) + (c.L - c.dense) * touched * 3 * c.H * c.Ie;
        double want = 4 * (w + B * (8 + 3) * c.L * (c.dc + c.dr));
        CHECK(fabs(bench_out_num(r, "bytes_per_step") - want) <= 1e-9 * want, "batch %g: %.0f bytes per step, formula %.0f", B,
              bench_out_num(r, "bytes_per_step"), want);
    }
    cJSON_Delete(j);
}

static void check_train(void) {
    const Cfg c = cfg_read();
    CHECK(test_sh("%s bench train --device cpu --config %s --seq 1 > %s/u.out 2> %s/u.err", GRPO_BIN, CONFIG, tmp, tmp) == 2,
          "--seq 1 is bad usage");
    CHECK(test_sh("%s bench train --device cpu --config %s --seq 24 --batch 2 --steps 1 --no-reference > %s/t.out 2> %s/t.err",
                  GRPO_BIN, CONFIG, tmp, tmp) == 0, "train on the CPU");
    cJSON *j = json_line("t.out");
    CHECK(bench_out_num(j, "tok_s") > 0 && bench_out_num(j, "best_step_s") > 0, "train: tok/s and step time");
    CHECK(bench_out_num(j, "batch") == 2 && bench_out_num(j, "seq") == 24, "the shape");
    double n_act = non_expert(&c) + (c.L - c.dense) * c.k * 3 * c.H * c.Ie;
    double want = 6 * n_act + 6 * c.L * c.nh * (c.dn + c.dr + c.dv) * (24 + 1) / 2.0;
    CHECK(fabs(bench_out_num(j, "flops_per_token") - want) <= 1e-9 * want, "%.0f FLOPs per token, formula %.0f",
          bench_out_num(j, "flops_per_token"), want);
    CHECK(bench_out_num(j, "mfu") == 0, "no MFU on the CPU (no peak to divide by)");
    cJSON_Delete(j);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/test_bench_device.%d", (int)getpid());
    CHECK(test_sh("mkdir -p %s", tmp) == 0, "mkdir");
    check_decode();
    check_train();
    test_sh("rm -rf %s", tmp);
    return test_report();
}
