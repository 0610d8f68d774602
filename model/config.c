/* config: parse, validate, derive and write the Hugging Face config.json of
 * DeepSeek-V3 / V2 checkpoints (see config.h and docs/checkpoints.md).
 *
 * Every field that changes computation is checked for presence, type and
 * consistency, and every message names the file and the field. The loader
 * traps of reference/deepseek-v3.md §2.4 are decided here, once:
 *   1 q_lora_rank null -> 0 (plain q_proj); 0 itself is rejected (HF would
 *     build an empty q_a_proj).
 *   2 deepseek_v3 is always sigmoid + noaux_tc + correction bias (HF
 *     hard-codes it); a v3 config that says otherwise is rejected.
 *   3 deepseek_v2 is always softmax and never renormalises; norm_topk_prob
 *     true is rejected rather than silently ignored.
 *   5 YaRN: max_position_embeddings must equal factor * original, else error.
 *   6 the YaRN correction range uses original_max_position_embeddings.
 *   7 the softmax scale carries m(s, mscale_all_dim)^2 for V2 as well.
 *   8 rope_interleave false is rejected (only the interleaved form exists).
 *   9 the latent norms use eps 1e-6 whatever rms_norm_eps says.
 * It does not know about tensors (model.c, safetensors.c). */
#include "model/config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/xalloc.h"

/* ---- typed field access ------------------------------------------------ */

typedef struct Ctx {
    const cJSON *root;
    const char *file;
    const char *prefix; /* "" or "rope_scaling." for nested objects */
    Err *err;
} Ctx;

static int bad(Ctx *x, const char *field, const char *what) {
    return err_set(x->err, ERR_INPUT, "%s: field \"%s%s\": %s", x->file, x->prefix, field, what);
}

/* The object member `key`, NULL when absent. JSON null counts as absent
 * only where the caller says so (q_lora_rank, n_group). */
static const cJSON *field(const cJSON *obj, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

/* Integer field; required==0 leaves *out = def when absent. Rejects non-numbers,
 * fractions and values outside [lo, hi]. */
static int get_int(Ctx *x, const cJSON *obj, const char *key, int required, int def, long lo, long hi, int *out) {
    const cJSON *f = field(obj, key);
    if (!f || cJSON_IsNull(f)) {
        if (required) return bad(x, key, "missing (required)");
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(f)) return bad(x, key, "must be an integer");
    double v = f->valuedouble;
    if (v != floor(v)) return bad(x, key, "must be an integer, not a fraction");
    if (v < (double)lo || v > (double)hi) {
        char m[128];
        snprintf(m, sizeof m, "%.17g is out of range [%ld, %ld]", v, lo, hi);
        return bad(x, key, m);
    }
    *out = (int)v;
    return 0;
}

static int get_num(Ctx *x, const cJSON *obj, const char *key, int required, double def, double *out) {
    const cJSON *f = field(obj, key);
    if (!f || cJSON_IsNull(f)) {
        if (required) return bad(x, key, "missing (required)");
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(f)) return bad(x, key, "must be a number");
    if (!isfinite(f->valuedouble)) return bad(x, key, "must be finite");
    *out = f->valuedouble;
    return 0;
}

static int get_bool(Ctx *x, const cJSON *obj, const char *key, int def, int *out) {
    const cJSON *f = field(obj, key);
    if (!f || cJSON_IsNull(f)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(f)) return bad(x, key, "must be true or false");
    *out = cJSON_IsTrue(f) ? 1 : 0;
    return 0;
}

/* String field; *out = NULL when absent and not required. */
static int get_str(Ctx *x, const cJSON *obj, const char *key, int required, const char **out) {
    const cJSON *f = field(obj, key);
    *out = NULL;
    if (!f || cJSON_IsNull(f)) return required ? bad(x, key, "missing (required)") : 0;
    if (!cJSON_IsString(f)) return bad(x, key, "must be a string");
    *out = f->valuestring;
    return 0;
}

/* bos/eos: an integer or (eos in newer HF files) a list of integers; the
 * first one is kept. */
static int get_token_id(Ctx *x, const char *key, int def, int *out) {
    const cJSON *f = field(x->root, key);
    if (f && cJSON_IsArray(f)) {
        const cJSON *first = cJSON_GetArrayItem(f, 0);
        if (!first || !cJSON_IsNumber(first) || first->valuedouble != floor(first->valuedouble) ||
            first->valuedouble < 0 || first->valuedouble > 2147483647.0)
            return bad(x, key, "must be a non-negative integer or a non-empty list of them");
        *out = (int)first->valuedouble;
        return 0;
    }
    return get_int(x, x->root, key, 0, def, -1, 2147483647L, out);
}

/* ---- YaRN helpers ------------------------------------------------------- */

/* m(s, a) = 0.1 a ln s + 1, and 1 when s <= 1 (HF yarn_get_mscale). */
static double yarn_m(double s, double a) { return s <= 1.0 ? 1.0 : 0.1 * a * log(s) + 1.0; }

/* Dimension index at which a frequency completes `rot` turns over L_orig. */
static double yarn_corr(double rot, int d, double theta, double lorig) {
    return d * log(lorig / (rot * 2.0 * M_PI)) / (2.0 * log(theta));
}

/* rope_scaling (legacy) or rope_parameters (transformers v5). */
static int parse_rope(Ctx *x, ModelConfig *c) {
    const cJSON *rs = field(x->root, "rope_scaling");
    const char *rsname = "rope_scaling";
    if (!rs || cJSON_IsNull(rs)) {
        rs = field(x->root, "rope_parameters");
        rsname = "rope_parameters";
    }
    if (get_num(x, x->root, "rope_theta", 0, 10000.0, &c->rope_theta)) return -1;
    c->rope_yarn = 0;
    if (!rs || cJSON_IsNull(rs)) return 0;
    if (!cJSON_IsObject(rs)) return bad(x, rsname, "must be an object or null");
    Ctx sub = {rs, x->file, !strcmp(rsname, "rope_scaling") ? "rope_scaling." : "rope_parameters.", x->err};
    const char *type = NULL, *rtype = NULL;
    if (get_str(&sub, rs, "type", 0, &type) || get_str(&sub, rs, "rope_type", 0, &rtype)) return -1;
    if (!type) type = rtype;
    if (field(rs, "rope_theta") &&
        get_num(&sub, rs, "rope_theta", 0, c->rope_theta, &c->rope_theta))
        return -1;
    if (!type || !strcmp(type, "default")) return 0;
    if (strcmp(type, "yarn")) return bad(&sub, "type", "only \"yarn\" (or \"default\") RoPE scaling is supported");
    c->rope_yarn = 1;
    double orig = 0;
    if (get_num(&sub, rs, "original_max_position_embeddings", 1, 0, &orig)) return -1;
    if (orig < 1 || orig != floor(orig) || orig > 2147483647.0)
        return bad(&sub, "original_max_position_embeddings", "must be a positive integer");
    c->yarn_original_max = (int)orig;
    /* HF derives a missing factor from max_position_embeddings / original. */
    if (get_num(&sub, rs, "factor", 0, (double)c->max_position_embeddings / orig, &c->yarn_factor) ||
        get_num(&sub, rs, "beta_fast", 0, 32.0, &c->yarn_beta_fast) ||
        get_num(&sub, rs, "beta_slow", 0, 1.0, &c->yarn_beta_slow) ||
        get_num(&sub, rs, "mscale", 0, 0.0, &c->yarn_mscale) ||
        get_num(&sub, rs, "mscale_all_dim", 0, 0.0, &c->yarn_mscale_all_dim))
        return -1;
    if (c->yarn_beta_fast == 0) c->yarn_beta_fast = 32.0; /* HF: `or 32` */
    if (c->yarn_beta_slow == 0) c->yarn_beta_slow = 1.0;
    if (!(c->yarn_factor >= 1.0)) return bad(&sub, "factor", "must be >= 1");
    if (c->yarn_beta_fast <= c->yarn_beta_slow || c->yarn_beta_slow <= 0)
        return bad(&sub, "beta_fast", "need beta_fast > beta_slow > 0");
    if (c->yarn_mscale < 0 || c->yarn_mscale_all_dim < 0)
        return bad(&sub, "mscale", "mscale and mscale_all_dim must be >= 0");
    int truncate = 1;
    if (get_bool(&sub, rs, "truncate", 1, &truncate)) return -1;
    if (!truncate) return bad(&sub, "truncate", "only the truncated correction range (true) is supported");
    if (field(rs, "attention_factor"))
        return bad(&sub, "attention_factor", "an explicit attention_factor is not supported (use mscale / mscale_all_dim)");
    /* Trap 5: recent HF versions disagree on whether factor or
     * max_position_embeddings / original wins; insist they agree. */
    if (fabs(c->yarn_factor * orig - c->max_position_embeddings) > 1e-6 * c->max_position_embeddings) {
        char m[256];
        snprintf(m, sizeof m,
                 "%d != factor (%g) x original_max_position_embeddings (%d); transformers versions disagree "
                 "on which one wins, so they must agree (deepseek-v3.md §2.4 trap 5)",
                 c->max_position_embeddings, c->yarn_factor, c->yarn_original_max);
        return bad(x, "max_position_embeddings", m);
    }
    return 0;
}

/* ---- model_type-specific gating ----------------------------------------- */

static int parse_gating(Ctx *x, ModelConfig *c) {
    const char *sf = NULL, *tm = NULL;
    if (get_str(x, x->root, "scoring_func", 0, &sf) || get_str(x, x->root, "topk_method", 0, &tm)) return -1;
    if (!c->is_v2) {
        /* Trap 2: HF-V3 ignores both fields and always runs sigmoid + noaux_tc. */
        if (sf && strcmp(sf, "sigmoid"))
            return bad(x, "scoring_func", "deepseek_v3 always uses \"sigmoid\" (transformers hard-codes it); "
                                          "use model_type deepseek_v2 for softmax gating");
        if (tm && strcmp(tm, "noaux_tc"))
            return bad(x, "topk_method", "deepseek_v3 always uses \"noaux_tc\" (transformers hard-codes it)");
        c->scoring_func = SCORE_SIGMOID;
        c->topk_method = TOPK_NOAUX_TC;
        c->has_correction_bias = c->n_routed_experts > 0;
        return get_bool(x, x->root, "norm_topk_prob", 1, &c->norm_topk_prob);
    }
    if (sf && strcmp(sf, "softmax"))
        return bad(x, "scoring_func", "deepseek_v2 always uses \"softmax\" (transformers hard-codes it)");
    c->scoring_func = SCORE_SOFTMAX;
    c->has_correction_bias = 0;
    if (!tm || !strcmp(tm, "greedy"))
        c->topk_method = TOPK_GREEDY;
    else if (!strcmp(tm, "group_limited_greedy"))
        c->topk_method = TOPK_GROUP_LIMITED_GREEDY;
    else
        return bad(x, "topk_method", "deepseek_v2 supports \"greedy\" or \"group_limited_greedy\"");
    /* Trap 3: HF-V2 never renormalises; refuse a flag it would ignore. */
    if (get_bool(x, x->root, "norm_topk_prob", 0, &c->norm_topk_prob)) return -1;
    if (c->norm_topk_prob)
        return bad(x, "norm_topk_prob", "deepseek_v2 never renormalises the top-k weights (transformers "
                                         "ignores this flag); set it to false");
    return 0;
}

static int check_experts(Ctx *x, ModelConfig *c) {
    int L = c->num_hidden_layers, any_moe = c->first_k_dense_replace < L;
    int E = c->n_routed_experts;
    if (!any_moe) return 0;
    if (E < 1) return bad(x, "n_routed_experts", "must be >= 1 when layers >= first_k_dense_replace use MoE");
    if (c->moe_intermediate_size < 1) return bad(x, "moe_intermediate_size", "missing or < 1 (required for MoE layers)");
    if (c->num_experts_per_tok < 1 || c->num_experts_per_tok > E)
        return bad(x, "num_experts_per_tok", "must be in [1, n_routed_experts]");
    if (c->topk_method == TOPK_GREEDY) return 0; /* groups unused */
    char m[256];
    if (E % c->n_group) {
        snprintf(m, sizeof m, "n_routed_experts (%d) is not divisible by n_group (%d)", E, c->n_group);
        return bad(x, "n_group", m);
    }
    if (c->topk_group < 1 || c->topk_group > c->n_group) {
        snprintf(m, sizeof m, "topk_group (%d) must be in [1, n_group = %d]", c->topk_group, c->n_group);
        return bad(x, "topk_group", m);
    }
    int per = E / c->n_group;
    if (c->topk_method == TOPK_NOAUX_TC && per < 2) {
        snprintf(m, sizeof m, "noaux_tc scores a group by its top 2 experts, but there are %d per group (%d / %d)",
                 per, E, c->n_group);
        return bad(x, "n_group", m);
    }
    if (c->num_experts_per_tok > c->topk_group * per) {
        snprintf(m, sizeof m, "%d experts per token but only %d in the %d kept groups of %d",
                 c->num_experts_per_tok, c->topk_group * per, c->topk_group, per);
        return bad(x, "num_experts_per_tok", m);
    }
    return 0;
}

/* ---- top level ---------------------------------------------------------- */

/* model_type and the integer sizes, incl. q_lora_rank (trap 1) and the
 * fields transformers derives. */
static int parse_dims(Ctx *x, ModelConfig *c) {
    const cJSON *r = x->root;
    const long BIG = 1L << 30;
    const char *mt = NULL;
    if (get_str(x, r, "model_type", 1, &mt)) return -1;
    if (!strcmp(mt, "deepseek_v3")) c->is_v2 = 0;
    else if (!strcmp(mt, "deepseek_v2")) c->is_v2 = 1;
    else return bad(x, "model_type", "must be \"deepseek_v3\" or \"deepseek_v2\"");

    if (get_int(x, r, "vocab_size", 1, 0, 1, BIG, &c->vocab_size) ||
        get_int(x, r, "hidden_size", 1, 0, 1, BIG, &c->hidden_size) ||
        get_int(x, r, "intermediate_size", 1, 0, 1, BIG, &c->intermediate_size) ||
        get_int(x, r, "num_hidden_layers", 1, 0, 1, 100000, &c->num_hidden_layers) ||
        get_int(x, r, "num_attention_heads", 1, 0, 1, 100000, &c->num_attention_heads) ||
        get_int(x, r, "kv_lora_rank", 1, 0, 1, BIG, &c->kv_lora_rank) ||
        get_int(x, r, "qk_nope_head_dim", 1, 0, 1, BIG, &c->qk_nope_head_dim) ||
        get_int(x, r, "qk_rope_head_dim", 1, 0, 2, BIG, &c->qk_rope_head_dim) ||
        get_int(x, r, "v_head_dim", 1, 0, 1, BIG, &c->v_head_dim) ||
        get_int(x, r, "first_k_dense_replace", 1, 0, 0, 100000, &c->first_k_dense_replace))
        return -1;
    /* MoE fields are required as soon as one layer is MoE: transformers'
     * defaults for them are V3-671B's (256 experts, 8 groups), never what a
     * small config meant. Groups are optional for V2 greedy routing. */
    int moe = c->first_k_dense_replace < c->num_hidden_layers;
    int groups = moe && !c->is_v2;
    if (get_int(x, r, "moe_layer_freq", 0, 1, 1, 100000, &c->moe_layer_freq) ||
        get_int(x, r, "n_routed_experts", moe, 0, 0, 1 << 20, &c->n_routed_experts) ||
        get_int(x, r, "n_shared_experts", moe, 0, 0, 1 << 20, &c->n_shared_experts) ||
        get_int(x, r, "moe_intermediate_size", moe, 0, 0, BIG, &c->moe_intermediate_size) ||
        get_int(x, r, "num_experts_per_tok", moe, 0, 0, 1 << 20, &c->num_experts_per_tok) ||
        get_int(x, r, "n_group", groups, 1, 1, 1 << 20, &c->n_group) ||
        get_int(x, r, "topk_group", groups, 1, 1, 1 << 20, &c->topk_group) ||
        get_int(x, r, "num_nextn_predict_layers", 0, 0, 0, 16, &c->num_nextn_predict_layers) ||
        get_int(x, r, "max_position_embeddings", 0, c->is_v2 ? 2048 : 4096, 1, 2147483647L,
                &c->max_position_embeddings) ||
        get_token_id(x, "bos_token_id", c->is_v2 ? 1 : 0, &c->bos_token_id) ||
        get_token_id(x, "eos_token_id", c->is_v2 ? 2 : 1, &c->eos_token_id))
        return -1;
    if (c->qk_rope_head_dim % 2) return bad(x, "qk_rope_head_dim", "must be even (RoPE rotates pairs)");

    /* Trap 1: null means a plain q_proj. The key itself must be there: HF's
     * default for a missing key is 1536, which would be a silent surprise. */
    const cJSON *q = field(r, "q_lora_rank");
    if (!q) return bad(x, "q_lora_rank", "missing (required; null means a plain q_proj)");
    if (cJSON_IsNull(q)) c->q_lora_rank = 0;
    else if (!cJSON_IsNumber(q) || q->valuedouble != floor(q->valuedouble) || q->valuedouble < 1 ||
             q->valuedouble > BIG)
        return bad(x, "q_lora_rank", "must be a positive integer, or null for a plain q_proj");
    else c->q_lora_rank = (int)q->valuedouble;

    int kvh = c->num_attention_heads;
    if (get_int(x, r, "num_key_value_heads", 0, kvh, 1, 100000, &kvh)) return -1;
    if (kvh != c->num_attention_heads) {
        char m[160];
        snprintf(m, sizeof m, "%d != num_attention_heads (%d); MLA has no key/value head grouping", kvh,
                 c->num_attention_heads);
        return bad(x, "num_key_value_heads", m);
    }
    /* transformers v5 writes these derived fields; they must agree */
    int hd = c->qk_rope_head_dim, qkd = c->qk_nope_head_dim + c->qk_rope_head_dim;
    if (get_int(x, r, "head_dim", 0, hd, 1, BIG, &hd) || get_int(x, r, "qk_head_dim", 0, qkd, 1, BIG, &qkd)) return -1;
    if (hd != c->qk_rope_head_dim) return bad(x, "head_dim", "must equal qk_rope_head_dim (transformers sets it so)");
    if (qkd != c->qk_nope_head_dim + c->qk_rope_head_dim)
        return bad(x, "qk_head_dim", "must equal qk_nope_head_dim + qk_rope_head_dim");
    if (c->first_k_dense_replace > c->num_hidden_layers) return bad(x, "first_k_dense_replace", "exceeds num_hidden_layers");
    /* transformers ignores moe_layer_freq (every layer >= k is MoE); other
     * codes use l % freq. Only 1 means the same thing everywhere. */
    if (c->moe_layer_freq != 1) return bad(x, "moe_layer_freq", "only 1 is supported (transformers ignores other values)");
    return 0;
}

/* Norm eps, scaling, flags that must have their only supported value, dtype. */
static int parse_scalars(Ctx *x, ModelConfig *c) {
    const cJSON *r = x->root;
    double d = 0;
    if (get_num(x, r, "rms_norm_eps", 0, 1e-6, &d)) return -1;
    if (!(d > 0 && d < 1)) return bad(x, "rms_norm_eps", "must be in (0, 1)");
    c->rms_norm_eps = (float)d;
    c->latent_norm_eps = 1e-6f; /* trap 9 */
    if (get_num(x, r, "routed_scaling_factor", 0, c->is_v2 ? 1.0 : 2.5, &d)) return -1;
    if (!(d > 0)) return bad(x, "routed_scaling_factor", "must be > 0");
    c->routed_scaling_factor = (float)d;

    if (get_bool(x, r, "tie_word_embeddings", 0, &c->tie_word_embeddings)) return -1;
    if (c->tie_word_embeddings) return bad(x, "tie_word_embeddings", "DeepSeek models have an untied lm_head; true is not supported");
    int flag = 0;
    if (get_bool(x, r, "attention_bias", 0, &flag)) return -1;
    if (flag) return bad(x, "attention_bias", "true is not supported (no DeepSeek checkpoint has attention biases)");
    if (get_bool(x, r, "mlp_bias", 0, &flag)) return -1;
    if (flag) return bad(x, "mlp_bias", "true is not supported");
    if (get_bool(x, r, "rope_interleave", 1, &flag)) return -1;
    if (!flag) return bad(x, "rope_interleave", "false is not supported (real checkpoints use interleaved RoPE)");
    const char *s = NULL;
    if (get_str(x, r, "hidden_act", 0, &s)) return -1;
    if (s && strcmp(s, "silu")) return bad(x, "hidden_act", "only \"silu\" is supported");

    const char *dt = NULL;
    if (get_str(x, r, "torch_dtype", 0, &dt) || (!dt && get_str(x, r, "dtype", 0, &dt))) return -1;
    if (!dt) dt = "bfloat16";
    if (strcmp(dt, "float32") && strcmp(dt, "bfloat16") && strcmp(dt, "float16"))
        return bad(x, "torch_dtype", "must be \"float32\", \"bfloat16\" or \"float16\"");
    snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s", dt);
    return 0;
}

/* quantization_config, when present: only V3's FP8 128x128 blocks. */
static int parse_quant(Ctx *x) {
    const cJSON *qc = field(x->root, "quantization_config");
    if (qc && !cJSON_IsNull(qc)) {
        Ctx sub = {qc, x->file, "quantization_config.", x->err};
        const char *qm = NULL, *fmt = NULL;
        if (!cJSON_IsObject(qc)) return bad(x, "quantization_config", "must be an object");
        if (get_str(&sub, qc, "quant_method", 1, &qm) || get_str(&sub, qc, "fmt", 0, &fmt)) return -1;
        if (strcmp(qm, "fp8") || (fmt && strcmp(fmt, "e4m3")))
            return bad(x, "quantization_config", "only fp8 e4m3 block quantisation is supported");
        const cJSON *bs = field(qc, "weight_block_size");
        if (bs && !(cJSON_IsArray(bs) && cJSON_GetArraySize(bs) == 2 && cJSON_IsNumber(cJSON_GetArrayItem(bs, 0)) &&
                    cJSON_GetArrayItem(bs, 0)->valuedouble == 128 && cJSON_IsNumber(cJSON_GetArrayItem(bs, 1)) &&
                    cJSON_GetArrayItem(bs, 1)->valuedouble == 128))
            return bad(&sub, "weight_block_size", "only [128, 128] is supported");
    }
    return 0;
}

static int parse_fields(Ctx *x, ModelConfig *c) {
    if (parse_dims(x, c) || parse_scalars(x, c) || parse_quant(x)) return -1;
    if (parse_gating(x, c) || check_experts(x, c) || parse_rope(x, c)) return -1;
    if (c->is_v2 && c->hidden_size % c->num_attention_heads)
        return bad(x, "hidden_size", "transformers' DeepseekV2Config requires a multiple of num_attention_heads");
    if (c->n_routed_experts == 0) c->num_experts_per_tok = 0;
    return 0;
}

static void derive(ModelConfig *c) {
    c->qk_head_dim = c->qk_nope_head_dim + c->qk_rope_head_dim;
    double scale = 1.0 / sqrt((double)c->qk_head_dim);
    double amp = 1.0;
    if (c->rope_yarn) {
        double s = c->yarn_factor, a = c->yarn_mscale_all_dim;
        /* Trap 7: applied for V2 too (HF-V2 only after PR #47435). HF skips it
         * when mscale_all_dim is 0 or absent. */
        if (a > 0) scale *= yarn_m(s, a) * yarn_m(s, a);
        /* HF attention_factor: m(s,mscale)/m(s,mscale_all_dim) if both set, else m(s,1). */
        amp = (c->yarn_mscale > 0 && a > 0) ? yarn_m(s, c->yarn_mscale) / yarn_m(s, a) : yarn_m(s, 1.0);
    }
    c->softmax_scale = (float)scale;
    c->rope_amplitude = (float)amp;
}

int config_parse(ModelConfig *c, const char *json, size_t len, const char *name, Err *err) {
    memset(c, 0, sizeof *c);
    const char *file = name ? name : "config.json";
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    while (root && end && end < json + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
    if (root && end != json + len) { /* Python's json refuses trailing data too */
        cJSON_Delete(root);
        return err_set(err, ERR_INPUT, "%s: unexpected data after the JSON object (byte %ld)", file, (long)(end - json));
    }
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = (at && at >= json && at <= json + len) ? (long)(at - json) : -1;
        return err_set(err, ERR_INPUT, "%s: not valid JSON (near byte %ld)", file, off);
    }
    Ctx x = {root, file, "", err};
    int rc = 0;
    if (!cJSON_IsObject(root)) {
        rc = err_set(err, ERR_INPUT, "%s: the top level must be a JSON object", file);
    } else {
        /* Python's json keeps the last of duplicate keys, cJSON the first: refuse. */
        for (const cJSON *a = root->child; a && !rc; a = a->next)
            for (const cJSON *b = a->next; b; b = b->next)
                if (a->string && b->string && !strcmp(a->string, b->string)) {
                    rc = bad(&x, a->string, "appears twice");
                    break;
                }
        if (!rc) rc = parse_fields(&x, c);
    }
    cJSON_Delete(root);
    if (rc) return -1;
    derive(c);
    return 0;
}

int config_load(ModelConfig *c, const char *path, Err *err) {
    char file[4096];
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        snprintf(file, sizeof file, "%s/config.json", path);
    else
        snprintf(file, sizeof file, "%s", path);
    FILE *f = fopen(file, "rb");
    if (!f) return err_set(err, ERR_INPUT, "%s: cannot open config", file);
    enum { MAX_CONFIG = 16 << 20 };
    char *buf = xmalloc(MAX_CONFIG + 1);
    size_t n = fread(buf, 1, MAX_CONFIG + 1, f);
    int rerr = ferror(f);
    fclose(f);
    int rc;
    if (rerr) rc = err_set(err, ERR_INPUT, "%s: read error", file);
    else if (n > MAX_CONFIG) rc = err_set(err, ERR_INPUT, "%s: larger than 16 MB, not a config.json", file);
    else rc = config_parse(c, buf, n, file, err);
    free(buf);
    return rc;
}

/* ---- derived numbers --------------------------------------------------- */

int config_layer_is_moe(const ModelConfig *c, int l) {
    return c->n_routed_experts > 0 && l >= c->first_k_dense_replace &&
           (l % (c->moe_layer_freq ? c->moe_layer_freq : 1)) == 0;
}

/* deepseek-v3.md §4.4, in double, rounded once to float. */
void config_rope_inv_freq(const ModelConfig *c, float *out) {
    const int d = c->qk_rope_head_dim, half = d / 2;
    const double theta = c->rope_theta;
    double low = 0, high = 0;
    if (c->rope_yarn) {
        /* Trap 6: the range comes from original_max_position_embeddings. */
        low = floor(yarn_corr(c->yarn_beta_fast, d, theta, c->yarn_original_max));
        high = ceil(yarn_corr(c->yarn_beta_slow, d, theta, c->yarn_original_max));
        if (low < 0) low = 0;
        if (high > d - 1) high = d - 1;
        if (low == high) high += 0.001;
    }
    for (int i = 0; i < half; i++) {
        double f = 1.0 / pow(theta, (2.0 * i) / d);
        if (c->rope_yarn) {
            double ramp = (i - low) / (high - low);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            f = f / c->yarn_factor * ramp + f * (1.0 - ramp);
        }
        out[i] = (float)f;
    }
}

/* Attention parameters of one layer (§2.3). */
static double attn_params(const ModelConfig *c) {
    double H = c->hidden_size, nh = c->num_attention_heads, dq = c->q_lora_rank, dc = c->kv_lora_rank;
    double dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    double q = dq > 0 ? H * dq + dq + dq * nh * (dn + dr) : H * nh * (dn + dr);
    return q + H * (dc + dr) + dc + dc * nh * (dn + dv) + nh * dv * H;
}

void config_param_counts(const ModelConfig *c, double *total, double *active) {
    double H = c->hidden_size, V = c->vocab_size, E = c->n_routed_experts, k = c->num_experts_per_tok;
    double Ie = c->moe_intermediate_size, ns = c->n_shared_experts;
    double dense = 3.0 * H * c->intermediate_size;
    double moe_fixed = ns * 3.0 * H * Ie + E * H + (c->has_correction_bias ? E : 0);
    double per_layer = attn_params(c) + 2.0 * H;
    double t = 2.0 * V * H + H, a = t;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        t += per_layer;
        a += per_layer;
        if (config_layer_is_moe(c, l)) {
            t += E * 3.0 * H * Ie + moe_fixed;
            a += k * 3.0 * H * Ie + moe_fixed;
        } else {
            t += dense;
            a += dense;
        }
    }
    if (total) *total = t;
    if (active) *active = a;
}

/* ---- writing ------------------------------------------------------------ */

/* Shortest decimal that reads back as the same value, always with a '.' or
 * an exponent: transformers' strict config classes refuse an int ("0") in a
 * float field, and 1e-6f must be written "1e-06", not 9.99999997e-07. */
static cJSON *num_item(double v, int is_float) {
    char buf[48];
    for (int p = is_float ? 6 : 15; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, v);
        if (is_float ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".eEn")) strcat(buf, ".0");
    return cJSON_CreateRaw(buf);
}

static cJSON *float_item(float v) { return num_item(v, 1); }
static void add_real(cJSON *o, const char *k, double v) { cJSON_AddItemToObject(o, k, num_item(v, 0)); }

static void add_int(cJSON *o, const char *k, int v) { cJSON_AddItemToObject(o, k, cJSON_CreateNumber(v)); }

int config_save(const ModelConfig *c, const char *path, Err *err) {
    cJSON *o = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString(c->is_v2 ? "DeepseekV2ForCausalLM" : "DeepseekV3ForCausalLM"));
    cJSON_AddStringToObject(o, "model_type", c->is_v2 ? "deepseek_v2" : "deepseek_v3");
    add_int(o, "vocab_size", c->vocab_size);
    add_int(o, "hidden_size", c->hidden_size);
    add_int(o, "intermediate_size", c->intermediate_size);
    add_int(o, "moe_intermediate_size", c->moe_intermediate_size);
    add_int(o, "num_hidden_layers", c->num_hidden_layers);
    add_int(o, "first_k_dense_replace", c->first_k_dense_replace);
    add_int(o, "moe_layer_freq", c->moe_layer_freq ? c->moe_layer_freq : 1);
    add_int(o, "num_attention_heads", c->num_attention_heads);
    add_int(o, "num_key_value_heads", c->num_attention_heads);
    if (c->q_lora_rank) add_int(o, "q_lora_rank", c->q_lora_rank);
    else cJSON_AddNullToObject(o, "q_lora_rank");
    add_int(o, "kv_lora_rank", c->kv_lora_rank);
    add_int(o, "qk_nope_head_dim", c->qk_nope_head_dim);
    add_int(o, "qk_rope_head_dim", c->qk_rope_head_dim);
    add_int(o, "v_head_dim", c->v_head_dim);
    add_int(o, "n_routed_experts", c->n_routed_experts);
    add_int(o, "n_shared_experts", c->n_shared_experts);
    add_int(o, "num_experts_per_tok", c->num_experts_per_tok);
    add_int(o, "n_group", c->n_group ? c->n_group : 1);
    add_int(o, "topk_group", c->topk_group ? c->topk_group : 1);
    cJSON_AddStringToObject(o, "scoring_func", c->scoring_func == SCORE_SOFTMAX ? "softmax" : "sigmoid");
    cJSON_AddStringToObject(o, "topk_method", c->topk_method == TOPK_NOAUX_TC ? "noaux_tc"
                                              : c->topk_method == TOPK_GREEDY ? "greedy"
                                                                              : "group_limited_greedy");
    cJSON_AddBoolToObject(o, "norm_topk_prob", c->norm_topk_prob);
    cJSON_AddItemToObject(o, "routed_scaling_factor", float_item(c->routed_scaling_factor));
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    cJSON_AddItemToObject(o, "rms_norm_eps", float_item(c->rms_norm_eps));
    add_real(o, "rope_theta", c->rope_theta);
    add_int(o, "max_position_embeddings", c->max_position_embeddings);
    if (c->rope_yarn) {
        cJSON *rs = cJSON_AddObjectToObject(o, "rope_scaling");
        cJSON_AddStringToObject(rs, "type", "yarn");
        add_real(rs, "factor", c->yarn_factor);
        add_int(rs, "original_max_position_embeddings", c->yarn_original_max);
        add_real(rs, "beta_fast", c->yarn_beta_fast);
        add_real(rs, "beta_slow", c->yarn_beta_slow);
        if (c->yarn_mscale > 0) add_real(rs, "mscale", c->yarn_mscale);
        if (c->yarn_mscale_all_dim > 0) add_real(rs, "mscale_all_dim", c->yarn_mscale_all_dim);
    } else {
        cJSON_AddNullToObject(o, "rope_scaling");
    }
    cJSON_AddBoolToObject(o, "attention_bias", 0);
    add_real(o, "attention_dropout", 0.0);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", 0);
    add_int(o, "num_nextn_predict_layers", c->num_nextn_predict_layers);
    add_int(o, "bos_token_id", c->bos_token_id);
    add_int(o, "eos_token_id", c->eos_token_id);
    cJSON_AddStringToObject(o, "torch_dtype", c->torch_dtype[0] ? c->torch_dtype : "float32");
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(text);
        return err_set(err, ERR_WORK, "%s: cannot create config", path);
    }
    int ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    ok = (fclose(f) == 0) && ok;
    free(text);
    return ok ? 0 : err_set(err, ERR_WORK, "%s: write error", path);
}
