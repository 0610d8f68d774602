/* test_sft: `grpo sft` (GRPO_BIN) on 48 rows of the tiny-arith SFT data, from the
 * shipped base checkpoint.
 *  - learning rate 0, one step over all rows: the loss it prints (packed batches)
 *    equals the mean cross-entropy this test computes with a padded model_forward
 *    per row (another path through the model), and the checkpoint it writes (f32)
 *    holds the base's parameters bit for bit;
 *  - learning rate 3e-4, four epochs (a larger rate first throws the converged
 *    base off, through Adam's first steps): the loss of the last epoch is below the
 *    first's, and the written checkpoint has a lower cross-entropy on the rows than
 *    the base (measured here, as above);
 *  - a row whose completion is not a string stops it with exit 2 naming file:line. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rl/dataset.h"
#include "rl/runctx.h"
#include "test.h"

#define REPO GRPO_TESTS_DIR "/.."
static char tmp[256];

/* grpo sft on tmp/r.lua with overrides; stdout in tmp/NAME.out. */
static int sft(const char *name, const char *sets) {
    return test_sh("cd %s && %s sft r.lua --set 'name=%s;%s' > %s.out 2> %s.err", tmp, GRPO_BIN, name, sets, name, name);
}

/* The losses printed by run NAME, in step order; returns how many. */
static int losses(const char *name, double *out, int cap) {
    char path[512], line[512];
    snprintf(path, sizeof path, "%s/%s.out", tmp, name);
    FILE *f = fopen(path, "r");
    int n = 0;
    while (f && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, " loss ");
        if (strncmp(line, "step ", 5) == 0 && p && n < cap) out[n++] = atof(p + 6);
    }
    if (f) fclose(f);
    return n;
}

/* Mean cross-entropy of model m over the completion (+ EOS) tokens of every row,
 * one padded model_forward per row. */
static double mean_nll(Model *m, const Tokenizer *tok, const Dataset *d) {
    double nll = 0;
    long n = 0;
    TokText text = {0};
    for (int i = 0; i < d->n; i++) {
        TokIds ids = {0};
        Err err = {0};
        CHECK(runctx_prompt(tok, "{question}\n", d->rows[i], &text, &ids, &err) == 0, "prompt: %s", err.msg);
        int start = (int)ids.n;
        const char *sol = cJSON_GetObjectItemCaseSensitive(d->rows[i], "solution")->valuestring;
        CHECK(tok_encode(tok, sol, strlen(sol), 0, &ids, &err) == 0, "encode: %s", err.msg);
        tok_ids_push(&ids, tok_eos(tok));
        int T = (int)ids.n, *tg = malloc(sizeof(int) * T);
        float *lp = malloc(sizeof(float) * T);
        for (int t = 0; t < T; t++) tg[t] = t >= start - 1 && t + 1 < T ? ids.v[t + 1] : -1;
        Batch b = {1, T, ids.v, tg, NULL};
        CHECK(model_forward(m, &b, 1.0f, lp, NULL, &err) == 0, "forward: %s", err.msg);
        for (int t = 0; t < T; t++)
            if (tg[t] >= 0) nll -= lp[t], n++;
        free(tg), free(lp);
        tok_ids_free(&ids);
    }
    free(text.s);
    return nll / n;
}

static double checkpoint_nll(const char *dir, const Tokenizer *tok, const Dataset *d, Model *out_keep) {
    Err err = {0};
    Model m;
    if (model_load(&m, dir, NULL, &err)) {
        CHECK(0, "loading %s: %s", dir, err.msg);
        return NAN;
    }
    double v = mean_nll(&m, tok, d);
    if (out_keep) *out_keep = m;
    else model_free(&m);
    return v;
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/grpo-test-sft-XXXXXX");
    if (!mkdtemp(tmp)) { perror("mkdtemp"); return 1; }
    CHECK(test_sh("head -48 %s/recipes/tiny-arith/sft.jsonl > %s/data.jsonl", REPO, tmp) == 0, "slice");
    char path[512];
    snprintf(path, sizeof path, "%s/r.lua", tmp);
    FILE *f = fopen(path, "w");
    fprintf(f, "return { model = '%s/recipes/tiny-arith/base', tokenizer = '%s/recipes/tiny-arith',\n"
               "  train_data = 'data.jsonl', prompt_template = '{question}\\n', completion_field = 'solution',\n"
               "  lr_scheduler_type = 'constant', warmup_ratio = 0, weight_decay = 0.1, max_prompt_length = 128,\n"
               "  max_completion_length = 128, save_dtype = 'f32', output_dir = 'runs', threads = 2 }\n",
            REPO, REPO);
    fclose(f);
    Err err = {0};
    Tokenizer *tok = tok_load(REPO "/recipes/tiny-arith", &err);
    Dataset d;
    CHECK(tok && dataset_load(&d, (snprintf(path, sizeof path, "%s/data.jsonl", tmp), path), &err) == 0, "%s", err.msg);
    if (!tok) return test_report();
    Model base;
    double base_nll = checkpoint_nll(REPO "/recipes/tiny-arith/base", tok, &d, &base);

    double l[64];
    CHECK(sft("zero", "learning_rate=0;micro_batch=48;sft_epochs=1") == 0, "lr 0 run failed (see %s/zero.err)", tmp);
    int n = losses("zero", l, 64);
    CHECK(n == 1 && fabs(l[0] - base_nll) < 1e-4, "lr 0: printed loss %.5f over %d steps, padded forward %.5f",
          n ? l[0] : NAN, n, base_nll);
    printf("lr 0: grpo sft loss %.5f, padded forward %.5f\n", n ? l[0] : NAN, base_nll);
    snprintf(path, sizeof path, "%s/runs/zero/checkpoints/final", tmp);
    Model z;
    if (model_load(&z, path, NULL, &err) == 0) {
        CHECK(z.numel == base.numel && !memcmp(z.params, base.params, sizeof(float) * base.numel),
              "lr 0 moved the weights");
        model_free(&z);
    } else {
        CHECK(0, "lr 0 checkpoint: %s", err.msg);
    }

    CHECK(sft("learn", "learning_rate=3e-4;micro_batch=16;sft_epochs=4") == 0, "training run failed (see %s/learn.err)", tmp);
    n = losses("learn", l, 64);
    CHECK(n == 12, "4 epochs of 3 steps printed %d losses", n);
    if (n == 12) {
        double first = (l[0] + l[1] + l[2]) / 3, last = (l[9] + l[10] + l[11]) / 3;
        printf("lr 3e-4: mean loss first epoch %.4f, last %.4f\n", first, last);
        CHECK(last < first, "the loss did not go down: first epoch %.4f, last %.4f", first, last);
    }
    snprintf(path, sizeof path, "%s/runs/learn/checkpoints/final", tmp);
    double after = checkpoint_nll(path, tok, &d, NULL);
    printf("cross-entropy on the rows: base %.4f, after sft %.4f\n", base_nll, after);
    CHECK(after < base_nll, "sft did not lower the cross-entropy: base %.4f, after %.4f", base_nll, after);

    CHECK(test_sh("cd %s && printf '{\"question\": \"1+1\", \"solution\": 2}\\n' > bad.jsonl", tmp) == 0, "bad data");
    CHECK(sft("bad", "train_data=bad.jsonl") == 2, "a non-string completion must exit 2");
    CHECK(test_sh("grep -q 'bad.jsonl:1: field .solution. is not a string' %s/bad.err", tmp) == 0,
          "the error must name bad.jsonl:1 and the field");

    model_free(&base);
    dataset_free(&d);
    tok_free(tok);
    if (!test_failed_) test_sh("rm -rf %s", tmp);
    return test_report();
}
