/* cmd_sft: `grpo sft RECIPE.lua`: next-token training on JSONL rows, for
 * base models and cold starts. Each row gives a prompt (the recipe's
 * prompt_template) and a completion (row[completion_field]); the loss is the
 * mean cross-entropy over completion tokens plus the EOS that ends them.
 * A row with no completion_field trains on the prompt text alone. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/rng.h"
#include "base/xalloc.h"
#include "cli.h"
#include "cmd.h"
#include "dataset.h"
#include "optim.h"
#include "runctx.h"

typedef struct Example { int n, start; int *ids; } Example; /* loss on ids[start..n) */

/* Tokenizes every row; rows over the length limit are skipped and counted. */
static Example *sft_examples(const Recipe *r, const Tokenizer *tok, const Dataset *d, int *nex, Err *err) {
    Example *ex = xcalloc(d->n, sizeof *ex);
    TokText text = {0};
    TokIds ids = {0};
    int n = 0, skipped = 0, limit = r->max_prompt_length + r->max_completion_length;
    int32_t eos = tok_eos(tok);
    for (int i = 0; i < d->n; i++) {
        if (runctx_prompt(tok, r->prompt_template, d->rows[i], &text, &ids, err)) {
            err_wrap(err, "%s:%d", d->path, d->line[i]);
            goto fail;
        }
        int start = (int)ids.n;
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(d->rows[i], r->completion_field);
        if (c && !cJSON_IsString(c)) {
            err_set(err, ERR_INPUT, "%s:%d: field '%s' is not a string", d->path, d->line[i], r->completion_field);
            goto fail;
        }
        if (c && tok_encode(tok, c->valuestring, strlen(c->valuestring), 0, &ids, err)) goto fail;
        if (!c) start = 1; /* plain text: every next token */
        if (eos >= 0) tok_ids_push(&ids, eos);
        if ((int)ids.n > limit || (int)ids.n < 2) { skipped++; continue; }
        ex[n].n = (int)ids.n, ex[n].start = start;
        ex[n].ids = xmalloc(sizeof(int) * ids.n);
        for (size_t k = 0; k < ids.n; k++) ex[n].ids[k] = ids.v[k];
        n++;
    }
    if (skipped) fprintf(stderr, "grpo sft: skipped %d of %d rows longer than %d tokens\n", skipped, d->n, limit);
    tok_ids_free(&ids);
    free(text.s);
    *nex = n;
    return ex;
fail:
    tok_ids_free(&ids);
    free(text.s);
    for (int k = 0; k < n; k++) free(ex[k].ids);
    free(ex);
    return NULL;
}

/* One optimizer step over examples order[b0..b1): forward/backward in micro-batches,
 * each packed (every example its own segment, no padding: model.h PackedBatch). */
static double sft_step(Model *m, Example *ex, const int *order, int b0, int b1, int micro, long *ntok_out, Err *err) {
    long ntok = 0;
    for (int i = b0; i < b1; i++) ntok += ex[order[i]].n - ex[order[i]].start;
    double loss = 0;
    for (int s = b0; s < b1; s += micro) {
        int B = b1 - s < micro ? b1 - s : micro, N = 0;
        for (int i = 0; i < B; i++) N += ex[order[s + i]].n;
        int *ids = xmalloc(sizeof(int) * N), *tg = xmalloc(sizeof(int) * N);
        float *lp = xmalloc(sizeof(float) * N), *dl = xcalloc((size_t)N, sizeof(float));
        PackSeg *seg = xmalloc(sizeof *seg * B);
        for (int i = 0, at = 0; i < B; at += ex[order[s + i]].n, i++) {
            const Example *e = &ex[order[s + i]];
            seg[i] = (PackSeg){at, e->n, -1};
            memcpy(ids + at, e->ids, sizeof(int) * e->n);
            for (int t = 0; t < e->n; t++) tg[at + t] = -1;
            for (int t = e->start - 1; t + 1 < e->n; t++) { /* position t predicts token t+1 */
                tg[at + t] = e->ids[t + 1];
                dl[at + t] = -1.0f / ntok;
            }
        }
        PackedBatch pb = {N, B, ids, tg, seg};
        int rc = model_forward_packed(m, &pb, 1.0f, lp, NULL, err);
        if (!rc) {
            for (int i = 0; i < N; i++) loss -= tg[i] >= 0 ? lp[i] : 0.0;
            model_backward_packed(m, &pb, dl, NULL);
        }
        free(ids), free(tg), free(lp), free(dl), free(seg);
        if (rc) return NAN;
    }
    *ntok_out = ntok;
    return loss / ntok;
}

/* What one run holds; sft_free releases whatever was made. */
typedef struct Sft {
    Model m;
    Tokenizer *tok;
    Dataset d;
    Example *ex;
    int nex, have_model, have_data, have_opt;
    AdamW opt;
    int *order; /* [nex] this epoch's order */
} Sft;

static void sft_free(Sft *s) {
    if (s->have_opt) adamw_free(&s->opt);
    for (int k = 0; s->ex && k < s->nex; k++) free(s->ex[k].ids);
    free(s->ex), free(s->order);
    if (s->have_data) dataset_free(&s->d);
    if (s->tok) tok_free(s->tok);
    if (s->have_model) model_free(&s->m);
}

static int sft_setup(Sft *s, const Recipe *r, Err *err) {
    if (runctx_load(r, &s->m, &s->tok, err)) return -1;
    s->have_model = 1;
    if (dataset_load(&s->d, r->train_data, err)) return -1;
    s->have_data = 1;
    if (!(s->ex = sft_examples(r, s->tok, &s->d, &s->nex, err))) return -1;
    if (!s->nex) return err_set(err, ERR_INPUT, "%s: no usable rows", r->train_data);
    AdamWOpts ao;
    adamw_opts_default(&ao);
    ao.weight_decay = r->weight_decay, ao.max_grad_norm = r->max_grad_norm;
    if (adamw_init(&s->opt, &ao, s->m.ptab, s->m.nparams, s->m.numel, err)) return -1;
    s->have_opt = 1;
    s->order = xmalloc(sizeof(int) * s->nex);
    model_alloc_grads(&s->m);
    return 0;
}

/* Steps of micro_batch examples, reshuffled each epoch; checkpoints every save_steps and at the end. */
static int sft_train(Sft *s, const Recipe *r, Err *err) {
    const int nex = s->nex, per_epoch = (nex + r->micro_batch - 1) / r->micro_batch, steps = per_epoch * r->sft_epochs;
    LrSchedule sch = {0};
    if (lr_schedule_parse(r->lr_scheduler_type, &sch.type, err)) return -1;
    sch.lr = r->learning_rate, sch.total_steps = steps, sch.num_cycles = 0.5;
    sch.warmup_steps = lr_warmup_steps(r->warmup_ratio, steps);
    uint64_t rs = (uint64_t)r->seed;
    char dir[1024];
    const char *tokdir = r->tokenizer[0] ? r->tokenizer : r->model;
    double t0 = clock_now();
    long tokens = 0;
    printf("grpo sft: %d examples, %d steps of %d, lr %g (%s), model %s\n", nex, steps, r->micro_batch,
           r->learning_rate, r->lr_scheduler_type, r->model);
    for (int step = 0; step < steps; step++) {
        if (step % per_epoch == 0) { /* reshuffle each epoch */
            for (int i = 0; i < nex; i++) s->order[i] = i;
            for (int i = nex - 1; i > 0; i--) {
                int j = (int)(rng_next(&rs) % (uint64_t)(i + 1)), t = s->order[i];
                s->order[i] = s->order[j], s->order[j] = t;
            }
        }
        int b0 = (step % per_epoch) * r->micro_batch, b1 = b0 + r->micro_batch < nex ? b0 + r->micro_batch : nex;
        model_zero_grads(&s->m);
        long nt = 0;
        double loss = sft_step(&s->m, s->ex, s->order, b0, b1, r->micro_batch, &nt, err);
        if (isnan(loss) && err->msg[0]) return -1;
        AdamWStepInfo info;
        adamw_step(&s->opt, s->m.params, s->m.grads, lr_schedule_at(&sch, step), &info);
        tokens += nt;
        double el = clock_now() - t0;
        runctx_progress(stdout, step + 1 == steps, "step %d/%d  loss %.4f  lr %.2e  grad_norm %.3f%s  %.0f tok/s  ETA %.0fs",
                        step + 1, steps, loss, info.lr, info.grad_norm, info.skipped ? " (skipped: non-finite)" : "",
                        tokens / el, el / (step + 1) * (steps - step - 1));
        if (r->save_steps > 0 && (step + 1) % r->save_steps == 0 && step + 1 < steps) {
            snprintf(dir, sizeof dir, "%s/%s/checkpoints/step-%d", r->output_dir, r->name, step + 1);
            if (runctx_save(&s->m, tokdir, dir, r->save_dtype, err)) return -1;
        }
    }
    snprintf(dir, sizeof dir, "%s/%s/checkpoints/final", r->output_dir, r->name);
    if (runctx_save(&s->m, tokdir, dir, r->save_dtype, err)) return -1;
    printf("grpo sft: wrote %s (%.1f s)\n", dir, clock_now() - t0);
    return 0;
}

int cmd_sft(int argc, char **argv) {
    CliOpt opts[] = {{"--set", "KEY=VALUE[;KEY=VALUE...]", "", "override recipe fields (';'-separated)", 0}, {0}};
    CliSpec spec = {"grpo sft RECIPE.lua [--set key=value]",
                    "Supervised next-token training on the recipe's train_data (prompt_template + completion_field),\n"
                    "with AdamW, the recipe's schedule, micro_batch rows per optimizer step and sft_epochs passes.\n"
                    "Writes output_dir/name/checkpoints/step-N/ and .../final/ (HF layout + tokenizer).\n"
                    "Recipe fields: grpo train --help.",
                    opts, 1, 1};
    const char *pos[1];
    int npos, rc = cli_parse(&spec, argc, argv, pos, &npos);
    if (rc) return rc == CLI_HELP ? 0 : 2;
    Recipe r;
    Err err = {0};
    recipe_defaults(&r);
    Sft s = {0};
    rc = recipe_load(&r, pos[0], &err) || runctx_set_recipe(&r, cli_str(&spec, "--set"), &err) ? -1 : 0;
    if (!rc && r.threads > 0) omp_set_num_threads(r.threads);
    if (!rc) rc = sft_setup(&s, &r, &err) || sft_train(&s, &r, &err) ? -1 : 0;
    sft_free(&s);
    if (!rc) return 0;
    fprintf(stderr, "grpo sft: %s\n", err.msg);
    return err.code ? err.code : 1;
}
