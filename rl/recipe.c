/* recipe: see recipe.h. */
#include "recipe.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

typedef enum { T_STR, T_INT, T_DBL, T_BOOL, T_STRS, T_DBLS } FieldType;

typedef struct Field {
    const char *name;
    FieldType type;
    size_t off, size;  /* size: bytes of a string, or the list capacity */
    size_t count_off;  /* lists: offset of the int count */
    size_t elem;       /* string lists: bytes per entry */
    const char *def;   /* default, as text */
    const char *help;
} Field;

#define S(f, d, h) {#f, T_STR, offsetof(Recipe, f), sizeof(((Recipe *)0)->f), 0, 0, d, h}
#define I(f, d, h) {#f, T_INT, offsetof(Recipe, f), 0, 0, 0, d, h}
#define D(f, d, h) {#f, T_DBL, offsetof(Recipe, f), 0, 0, 0, d, h}
#define B(f, d, h) {#f, T_BOOL, offsetof(Recipe, f), 0, 0, 0, d, h}

static const Field fields[] = {
    S(name, "run", "run name: the run is written to output_dir/name"),
    S(output_dir, "runs", "folder holding the runs"),
    S(model, "", "checkpoint directory in Hugging Face layout (config.json + safetensors)"),
    S(tokenizer, "", "tokenizer directory (tokenizer.json); empty = the model directory"),
    S(train_data, "", "training data, JSONL"),
    S(prompt_template, "{question}\n", "prompt text with {field} placeholders filled from each row"),
    S(completion_field, "solution", "sft: the row field holding the target completion"),
    {"rewards", T_STRS, offsetof(Recipe, rewards), RECIPE_MAX_REWARDS, offsetof(Recipe, n_rewards),
     sizeof(((Recipe *)0)->rewards[0]), "{}",
     "reward scripts (Lua files), summed with reward_weights"},
    {"reward_weights", T_DBLS, offsetof(Recipe, reward_weights), RECIPE_MAX_REWARDS, 0, 0, "{}",
     "weight per reward script (default 1 each)"},
    {"stop", T_STRS, offsetof(Recipe, stop), 4, offsetof(Recipe, n_stop), sizeof(((Recipe *)0)->stop[0]), "{}",
     "stop strings: a completion ends when its text contains one; rewards and the store see the text before it"},
    I(num_generations, "8", "G: completions sampled per prompt (TRL num_generations)"),
    I(prompts_per_step, "8", "prompts per training step (each gives G completions)"),
    I(max_prompt_length, "512", "prompts longer than this (tokens) are skipped, counted and reported"),
    I(max_completion_length, "512", "new tokens per completion (TRL default)"),
    D(temperature, "1.0", "sampling temperature (TRL default 1.0)"),
    D(top_p, "1.0", "nucleus sampling (1 = off)"),
    I(top_k, "0", "top-k sampling (0 = off)"),
    D(min_p, "0.0", "min-p sampling (0 = off)"),
    S(loss_type, "dapo", "dapo | grpo | bnpo | dr_grpo (see docs/grpo.md)"),
    S(scale_rewards, "group", "advantage scaling: group | batch | none"),
    S(importance_sampling_level, "token", "token | sequence (GSPO)"),
    D(beta, "0.0", "KL coefficient against the frozen reference model (0 = no reference loaded)"),
    D(epsilon, "0.2", "clip range: ratio clipped below at 1 - epsilon"),
    D(epsilon_high, "0.2", "upper clip: 1 + epsilon_high (DAPO: 0.28)"),
    I(num_iterations, "1", "mu: optimisation passes over each batch of rollouts"),
    B(mask_truncated_completions, "false", "exclude completions cut by max_completion_length from the loss"),
    S(kl_estimator, "k3", "KL estimator when beta > 0: k3 (TRL, verl low_var_kl) | k1 | k2 (see docs/grpo.md)"),
    S(ref_model, "", "frozen reference checkpoint when beta > 0; empty = the run's initial model"),
    B(sync_ref_model, "false", "TRL: every ref_model_sync_steps, ref = alpha * policy + (1 - alpha) * ref"),
    I(ref_model_sync_steps, "512", "steps between reference re-syncs (TRL default 512)"),
    D(ref_model_mixup_alpha, "0.6", "alpha of the reference re-sync (TRL default 0.6; 1 = copy the policy)"),
    B(dynamic_sampling, "false", "DAPO: drop groups whose rewards are all equal and sample more prompts to refill"),
    I(max_num_gen_batches, "0", "dynamic sampling: generation rounds per step at most (verl; 0 = no limit)"),
    I(max_steps, "100", "training steps"),
    D(learning_rate, "1e-6", "peak learning rate (TRL default 1e-6)"),
    D(weight_decay, "0.0", "AdamW weight decay"),
    D(max_grad_norm, "1.0", "global gradient-norm clip"),
    D(warmup_ratio, "0.0", "share of max_steps with linear warmup"),
    S(lr_scheduler_type, "linear", "constant | constant_with_warmup | linear | cosine"),
    I(micro_batch, "16", "sequences per forward/backward pass (gradient accumulation over the step)"),
    I(seed, "42", "seed for sampling and data order"),
    I(save_steps, "0", "checkpoint every N steps (0 = only at the end)"),
    I(threads, "0", "CPU threads (0 = all cores)"),
    S(device, "cpu", "where the model runs: cpu | cuda (rollouts, training and AdamW on the GPU; docs/cuda.md)"),
    I(sft_epochs, "1", "sft: passes over train_data"),
    D(router_bias_gamma, "0.0", "MoE router bias update speed (aux-loss-free balancing), 0 = off"),
    S(save_dtype, "f32", "dtype of written checkpoints: f32 (exact resume) | bf16 (half the size)"),
    S(eval_data, "", "evaluation data, JSONL: evaluated before training, every eval_steps and at the end (\"\" = off)"),
    I(eval_steps, "0", "evaluate every N steps (0 = only before training and at the end)"),
    I(eval_num_samples, "4", "evaluation: k samples per row (pass@1 over k, pass@k, maj@k)"),
    I(eval_max_new_tokens, "0", "evaluation: new tokens per completion (0 = max_completion_length)"),
    I(eval_limit, "0", "evaluation: the first N rows of eval_data (0 = all)"),
    D(eval_temperature, "-1", "evaluation: sampling temperature (-1 = temperature; 0 = greedy)"),
    I(eval_seed, "1234", "evaluation: sampling seed (grpo eval's default --seed, so the numbers match it)"),
};
enum { NFIELDS = sizeof fields / sizeof fields[0] };

static const Field *field_find(const char *name) {
    for (int i = 0; i < NFIELDS; i++)
        if (!strcmp(fields[i].name, name)) return &fields[i];
    return NULL;
}

/* Sets a scalar field from text; lists take a comma-separated value. */
static int field_set_text(Recipe *r, const Field *f, const char *v, Err *err) {
    char *p = (char *)r + f->off, *end;
    errno = 0;
    switch (f->type) {
    case T_STR:
        if (strlen(v) >= f->size) return err_set(err, ERR_INPUT, "recipe field %s: value too long", f->name);
        strcpy(p, v);
        return 0;
    case T_INT: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end) return err_set(err, ERR_INPUT, "recipe field %s: '%s' is not an integer", f->name, v);
        *(int *)p = (int)x;
        return 0;
    }
    case T_DBL: {
        double x = strtod(v, &end);
        if (errno || end == v || *end) return err_set(err, ERR_INPUT, "recipe field %s: '%s' is not a number", f->name, v);
        *(double *)p = x;
        return 0;
    }
    case T_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "1")) *(int *)p = 1;
        else if (!strcmp(v, "false") || !strcmp(v, "0")) *(int *)p = 0;
        else return err_set(err, ERR_INPUT, "recipe field %s: '%s' is not true/false", f->name, v);
        return 0;
    case T_STRS:
    case T_DBLS: {
        int n = 0;
        const char *s = v;
        if (*s == '{') s++;
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", s);
        size_t bl = strlen(buf);
        if (bl && buf[bl - 1] == '}') buf[bl - 1] = 0;
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
            while (*tok == ' ' || *tok == '"') tok++;
            size_t tl = strlen(tok);
            while (tl && (tok[tl - 1] == ' ' || tok[tl - 1] == '"')) tok[--tl] = 0;
            if (!tl) continue;
            if (n >= (int)f->size) return err_set(err, ERR_INPUT, "recipe field %s: more than %zu entries", f->name, f->size);
            if (f->type == T_STRS) {
                snprintf((char *)r + f->off + (size_t)n * f->elem, f->elem, "%s", tok);
            } else {
                double x = strtod(tok, &end);
                if (end == tok || *end) return err_set(err, ERR_INPUT, "recipe field %s: '%s' is not a number", f->name, tok);
                ((double *)p)[n] = x;
            }
            n++;
        }
        if (f->type == T_STRS) *(int *)((char *)r + f->count_off) = n;
        return 0;
    }
    }
    return 0;
}

void recipe_defaults(Recipe *r) {
    memset(r, 0, sizeof *r);
    for (int i = 0; i < NFIELDS; i++) field_set_text(r, &fields[i], fields[i].def, NULL);
    for (int i = 0; i < RECIPE_MAX_REWARDS; i++) r->reward_weights[i] = 1.0;
}

int recipe_set(Recipe *r, const char *assignment, Err *err) {
    const char *eq = strchr(assignment, '=');
    if (!eq) return err_set(err, ERR_INPUT, "--set %s: expected key=value", assignment);
    char key[64];
    snprintf(key, sizeof key, "%.*s", (int)(eq - assignment), assignment);
    const Field *f = field_find(key);
    if (!f) return err_set(err, ERR_INPUT, "--set: unknown recipe field '%s' (grpo train --help lists them)", key);
    return field_set_text(r, f, eq + 1, err);
}

/* Reads the Lua value on top of the stack into field f. */
static int field_from_lua(Recipe *r, const Field *f, lua_State *L, const char *path, Err *err) {
    char buf[4096];
    int t = lua_type(L, -1);
    if (f->type == T_STRS || f->type == T_DBLS) {
        if (t == LUA_TSTRING || t == LUA_TNUMBER) return field_set_text(r, f, lua_tostring(L, -1), err);
        if (t != LUA_TTABLE) return err_set(err, ERR_INPUT, "%s: field %s must be a list", path, f->name);
        size_t n = lua_rawlen(L, -1), used = 0;
        buf[0] = 0;
        for (size_t i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, (lua_Integer)i);
            const char *s = lua_tostring(L, -1);
            if (!s) { lua_pop(L, 1); return err_set(err, ERR_INPUT, "%s: %s[%zu] must be a string or number", path, f->name, i); }
            used += snprintf(buf + used, sizeof buf - used, "%s%s", i > 1 ? "," : "", s);
            lua_pop(L, 1);
        }
        return field_set_text(r, f, buf, err);
    }
    if (f->type == T_BOOL) {
        if (t != LUA_TBOOLEAN) return err_set(err, ERR_INPUT, "%s: field %s must be true or false", path, f->name);
        *(int *)((char *)r + f->off) = lua_toboolean(L, -1);
        return 0;
    }
    if (f->type == T_STR ? t != LUA_TSTRING : t != LUA_TNUMBER)
        return err_set(err, ERR_INPUT, "%s: field %s must be a %s", path, f->name, f->type == T_STR ? "string" : "number");
    if (f->type == T_INT && !lua_isinteger(L, -1))
        return err_set(err, ERR_INPUT, "%s: field %s must be an integer", path, f->name);
    if (field_set_text(r, f, lua_tostring(L, -1), err)) return err_wrap(err, "%s", path);
    return 0;
}

int recipe_load(Recipe *r, const char *path, Err *err) {
    lua_State *L = luaL_newstate();
    if (!L) return err_set(err, ERR_WORK, "%s: cannot create a Lua state", path);
    luaL_openlibs(L); /* a recipe is the user's own configuration, like a Python config file */
    int rc = 0;
    if (luaL_loadfile(L, path) || lua_pcall(L, 0, 1, 0)) {
        rc = err_set(err, ERR_INPUT, "recipe %s", lua_tostring(L, -1));
        goto done;
    }
    if (!lua_istable(L, -1)) {
        rc = err_set(err, ERR_INPUT, "%s: a recipe must return a table", path);
        goto done;
    }
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        const Field *f = key ? field_find(key) : NULL;
        if (!f) {
            rc = err_set(err, ERR_INPUT, "%s: unknown recipe field '%s' (grpo train --help lists them)", path,
                         key ? key : "(not a name)");
            goto done;
        }
        if ((rc = field_from_lua(r, f, L, path, err))) goto done;
        lua_pop(L, 1);
    }
done:
    lua_close(L);
    return rc;
}

static void field_print(const Recipe *r, const Field *f, FILE *out) {
    const char *p = (const char *)r + f->off;
    switch (f->type) {
    case T_STR: {
        fputc('"', out);
        for (const char *c = p; *c; c++)
            if (*c == '\n') fputs("\\n", out);
            else if (*c == '"' || *c == '\\') fprintf(out, "\\%c", *c);
            else fputc(*c, out);
        fputc('"', out);
        break;
    }
    case T_INT: fprintf(out, "%d", *(const int *)p); break;
    case T_DBL: fprintf(out, "%.17g", *(const double *)p); break;
    case T_BOOL: fprintf(out, "%s", *(const int *)p ? "true" : "false"); break;
    case T_STRS: {
        int n = *(const int *)((const char *)r + f->count_off);
        fputc('{', out);
        for (int i = 0; i < n; i++) fprintf(out, "%s\"%s\"", i ? ", " : "", p + (size_t)i * f->elem);
        fputc('}', out);
        break;
    }
    case T_DBLS: {
        fputc('{', out);
        for (int i = 0; i < r->n_rewards; i++) fprintf(out, "%s%.17g", i ? ", " : "", ((const double *)p)[i]);
        fputc('}', out);
        break;
    }
    }
}

void recipe_write(const Recipe *r, FILE *f) {
    fprintf(f, "-- the recipe as run (defaults and --set overrides applied)\nreturn {\n");
    for (int i = 0; i < NFIELDS; i++) {
        fprintf(f, "  %s = ", fields[i].name);
        field_print(r, &fields[i], f);
        fprintf(f, ",\n");
    }
    fprintf(f, "}\n");
}

void recipe_help(FILE *f) {
    static const char *tn[] = {"string", "integer", "number", "boolean", "list", "list"};
    fprintf(f, "recipe fields (a Lua table returned by the recipe file; override with --set key=value):\n");
    for (int i = 0; i < NFIELDS; i++)
        fprintf(f, "  %-28s %-8s default %-12s %s\n", fields[i].name, tn[fields[i].type],
                !fields[i].def[0] ? "\"\"" : strchr(fields[i].def, '\n') ? "\"{question}\\n\"" : fields[i].def,
                fields[i].help);
}
