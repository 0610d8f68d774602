/* cmd_init: `grpo init --config CONFIG.json --out DIR`: a randomly
 * initialised checkpoint in Hugging Face layout (config.json,
 * model.safetensors, generation_config.json), loadable by transformers and
 * by `grpo` itself. Initialisation follows transformers: normal(0, std) for
 * matrices, ones for norms, zeros for the correction bias (model_init_random).
 * It writes no tokenizer: copy tokenizer.json / tokenizer_config.json beside
 * it when the model is to be sampled. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "runctx.h"
#include "cmd.h"
#include "model/model.h"

/* initializer_range from the config file, when it has one (the parsed
 * ModelConfig has no field for it: it does not change computation). */
static double config_init_std(const char *path, double def) {
    FILE *f = fopen(path, "rb");
    if (!f) return def;
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    cJSON *j = cJSON_ParseWithLength(buf, n);
    const cJSON *r = j ? cJSON_GetObjectItemCaseSensitive(j, "initializer_range") : NULL;
    double v = cJSON_IsNumber(r) && r->valuedouble > 0 ? r->valuedouble : def;
    cJSON_Delete(j);
    return v;
}

int cmd_init(int argc, char **argv) {
    CliOpt opts[] = {
        {"--config", "FILE", NULL, "config.json of a deepseek_v3 / deepseek_v2 model", NULL},
        {"--out", "DIR", NULL, "output checkpoint directory (created)", NULL},
        {"--seed", "N", "0", "random seed", NULL},
        {"--std", "X", "config", "init std; 'config' = the config's initializer_range, else 0.02", NULL},
        {"--dtype", "f32|bf16", "f32", "dtype of the saved weights (e_score_correction_bias stays f32)", NULL},
        {"--max-shard-mb", "N", "0", "split model.safetensors into shards of at most N MB (0 = one file)", NULL},
        {"--no-mtp", NULL, NULL, "leave out the multi-token-prediction layer (config gets num_nextn_predict_layers 0)", NULL},
        {0},
    };
    CliSpec spec = {"grpo init --config CONFIG.json --out DIR [options]",
                    "Write a random-initialised checkpoint (Hugging Face layout) from a config.json.", opts, 0, 0};
    const char *pos[1];
    int npos, rc = cli_parse(&spec, argc, argv, pos, &npos);
    if (rc == CLI_HELP) return 0;
    if (rc != CLI_OK) return 2;
    long seed, shard_mb;
    if (cli_require(&spec, "--config") || cli_require(&spec, "--out") || cli_long(&spec, "--seed", &seed) ||
        cli_long(&spec, "--max-shard-mb", &shard_mb))
        return 2;
    const char *cfg_path = cli_str(&spec, "--config"), *out = cli_str(&spec, "--out");
    const char *dtype = cli_str(&spec, "--dtype"), *std_s = cli_str(&spec, "--std");
    if (strcmp(dtype, "f32") && strcmp(dtype, "bf16")) {
        fprintf(stderr, "grpo init: --dtype must be f32 or bf16, not '%s'\n", dtype);
        return 2;
    }
    if (shard_mb < 0) {
        fprintf(stderr, "grpo init: --max-shard-mb must be >= 0\n");
        return 2;
    }
    Err err = {0};
    ModelConfig cfg;
    if (config_load(&cfg, cfg_path, &err)) {
        fprintf(stderr, "grpo init: %s\n", err.msg);
        return err.code ? err.code : 1;
    }
    double std;
    if (!strcmp(std_s, "config")) {
        std = config_init_std(cfg_path, 0.02);
    } else if (cli_double(&spec, "--std", &std) || !(std >= 0)) {
        fprintf(stderr, "grpo init: --std must be a number >= 0\n");
        return 2;
    }
    int bf16 = !strcmp(dtype, "bf16");
    snprintf(cfg.torch_dtype, sizeof cfg.torch_dtype, "%s", bf16 ? "bfloat16" : "float32");
    ModelOpts mo = {.mtp = !cli_flag(&spec, "--no-mtp")};
    if (!mo.mtp) cfg.num_nextn_predict_layers = 0; /* the files then agree with the config */
    Model m;
    if (model_create(&m, &cfg, &mo, &err)) {
        fprintf(stderr, "grpo init: %s\n", err.msg);
        return err.code ? err.code : 1;
    }
    model_init_random(&m, (uint64_t)seed, (float)std);
    for (int i = 0; i < m.nparams; i++) /* as in V3 checkpoints: the bias buffer stays fp32 */
        m.ptab[i].save_dtype = bf16 && m.ptab[i].trainable ? ST_BF16 : ST_F32;
    double nparam = 0;
    for (int i = 0; i < m.nparams; i++) nparam += (double)m.ptab[i].numel;
    rc = runctx_mkdirs(out, &err) ? -1 : model_save(&m, out, (size_t)shard_mb << 20, &err);
    if (rc) fprintf(stderr, "grpo init: %s\n", err.msg);
    else fprintf(stderr, "grpo init: wrote %s (%d tensors, %.2f M parameters, %s, seed %ld, std %g)\n", out, m.nparams,
                 nparam / 1e6, dtype, seed, std);
    model_free(&m);
    return rc ? (err.code ? err.code : 1) : 0;
}
