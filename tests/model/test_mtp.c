/* test_mtp: the multi-token-prediction module loads from a `grpo init`
 * checkpoint (model.layers.{L}.*) and runs: logits are finite, position t's
 * MTP logits depend on the token at t+1 (its embedding is an input) while the
 * main logits at t do not, and a model loaded without MTP refuses to run it.
 * transformers ignores the module, so there is no reference to compare with. */
#include <stdlib.h>
#include <unistd.h>

#include "model_test_util.h"
#include "test.h"

/* max |a-b| / max |a| over one row of V logits. Rows are compared with a
 * tolerance, not bitwise: an expert's batch size (which changes with other
 * tokens' routing) changes the summation order of its matrix products. */
static double row_diff(const float *a, const float *b, int V) {
    double md = 0, ma = 0;
    for (int i = 0; i < V; i++) md = fmax(md, fabs(a[i] - b[i])), ma = fmax(ma, fabs(a[i]));
    return md / (ma > 0 ? ma : 1);
}

int main(void) {
    char dir[256], cmd[1024];
    snprintf(dir, sizeof dir, "/tmp/grpo-test-mtp-%d", (int)getpid());
    snprintf(cmd, sizeof cmd, "%s init --config %s/../recipes/models/dsv3-tiny-1m.json --out %s --seed 5 > /dev/null",
             GRPO_BIN, GRPO_TESTS_DIR, dir);
    CHECK(system(cmd) == 0, "grpo init");
    Model m;
    Err err = {0};
    ModelOpts with = {.mtp = 1};
    CHECK(model_load(&m, dir, &with, &err) == 0 && m.has_mtp, "load with MTP: %s", err.msg);
    const int B = 1, T = 10, V = m.cfg.vocab_size;
    int ids[T];
    tu_batch_ids(ids, B, T, V);
    float *a = malloc(sizeof(float) * T * V), *b = malloc(sizeof(float) * T * V);
    float *ma = malloc(sizeof(float) * T * V), *mb = malloc(sizeof(float) * T * V);
    Batch bt = {B, T, ids, NULL, NULL};
    CHECK(model_mtp_logits(&m, &bt, ma, &err) == 0, "%s", err.msg);
    CHECK(model_logits(&m, &bt, a, &err) == 0, "%s", err.msg);
    int finite = 1;
    for (int i = 0; i < T * V; i++) finite &= isfinite(ma[i]);
    CHECK(finite, "MTP logits finite");
    ids[5] = (ids[5] + 1) % V; /* change the token at t = 5 */
    CHECK(model_mtp_logits(&m, &bt, mb, &err) == 0, "%s", err.msg);
    CHECK(model_logits(&m, &bt, b, &err) == 0, "%s", err.msg);
    double d_main = row_diff(a + 4L * V, b + 4L * V, V), d_mtp4 = row_diff(ma + 4L * V, mb + 4L * V, V);
    double d_mtp2 = row_diff(ma + 2L * V, mb + 2L * V, V);
    printf("change of token 5: main logits at t=4 moved %.2g, MTP logits at t=4 %.2g, MTP at t=2 %.2g\n", d_main,
           d_mtp4, d_mtp2);
    CHECK(d_main < 1e-5, "main logits at t=4 do not see token 5 (causal): %.3g", d_main);
    CHECK(d_mtp4 > 1e-3, "MTP logits at t=4 use the embedding of token 5: %.3g", d_mtp4);
    CHECK(d_mtp2 < 1e-5, "MTP logits at t=2 do not see token 5: %.3g", d_mtp2);
    model_free(&m);
    ModelOpts without = {0};
    CHECK(model_load(&m, dir, &without, &err) == 0 && !m.has_mtp, "load without MTP: %s", err.msg);
    CHECK(model_mtp_logits(&m, &bt, mb, &err) == -1 && err.code == ERR_INPUT, "no MTP module: %s", err.msg);
    model_free(&m);
    free(a), free(b), free(ma), free(mb);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    system(cmd);
    return test_report();
}
