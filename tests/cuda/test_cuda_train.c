/* test_cuda_train: training steps with the weights on the GPU (cuda_model_forward,
 * cuda_model_backward, optim_cuda_step) against the CPU's (model_forward,
 * model_backward, adamw_step), on the trained tiny-arith base, weights rounded to
 * bf16 on both sides, one fixed batch (the first B rows of its SFT data, question
 * and solution, cut to T tokens), loss = mean -log p of every next token (the base
 * learnt only the solutions, so the questions' tokens start far off, ~12.7 nats on
 * average, and the loss falls fast), AdamW (lr 3e-4, weight decay 0.1, clipping at 1):
 *  - the device step is adamw_step: applied on the CPU to the GPU's own gradients
 *    and master weights (downloaded first), it gives the GPU's new master weights
 *    (nmse of the update <= 1e-8: both fp32, the norm summed in another order), and
 *    the bf16 compute copy is the new master rounded, bit for bit;
 *  - STEPS steps: the loss falls on both, and the GPU's stays within 3% of the
 *    CPU's at every step (the gradients differ by bf16 activations, see
 *    test_cuda_model, so the two trajectories drift apart slowly);
 *  - a NaN gradient skips the step and leaves the weights as they were. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_test.h"
#include "model/cuda/model_cuda.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "rl/dataset.h"
#include "rl/optim.h"
#include "rl/optim_cuda.h"

enum { B = 3, T = 48, STEPS = 3 };

static void round_params_bf16(Model *m) {
    for (size_t i = 0; i < m->numel; i++) m->params[i] = bf16_to_f32(bf16_from_f32(m->params[i]));
}

static double mean_loss(const float *lp, const int *tg, int n) {
    double s = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (tg[i] >= 0) s -= lp[i], k++;
    return s / k;
}

/* The device step against adamw_step on the GPU's own gradients and weights. */
static void check_step_exact(Model *m, CudaModel *g, OptimCuda *oc, const AdamWOpts *ao, double lr) {
    Err err = {0};
    CudaModelBuffers bf = cuda_model_buffers(g);
    const size_t n = m->numel;
    float *w0 = malloc(sizeof(float) * n), *gr = malloc(sizeof(float) * n), *w1 = malloc(sizeof(float) * n);
    OK(cuda_model_download(g, w0, &err));
    OK(cuda_model_grads_download(g, gr, &err));
    AdamW ref;
    OK(adamw_init(&ref, ao, m->ptab, m->nparams, n, &err));
    CHECK(optim_cuda_steps(oc) == 0, "the exact check runs on the first step");
    float *wr = malloc(sizeof(float) * n);
    memcpy(wr, w0, sizeof(float) * n);
    AdamWStepInfo ci, gi;
    adamw_step(&ref, wr, gr, lr, &ci);
    OK(optim_cuda_step(oc, g, lr, &gi, &err));
    OK(cuda_model_download(g, w1, &err));
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double du = (double)(w1[i] - w0[i]) - (double)(wr[i] - w0[i]);
        num += du * du, den += (double)(wr[i] - w0[i]) * (wr[i] - w0[i]);
    }
    printf("device AdamW step vs adamw_step: grad norm %.6g / %.6g, update nmse %.2e\n", gi.grad_norm, ci.grad_norm,
           num / den);
    CHECK(fabs(gi.grad_norm - ci.grad_norm) <= 1e-5 * ci.grad_norm, "grad norm %.9g vs %.9g", gi.grad_norm, ci.grad_norm);
    CHECK(den > 0 && num / den <= 1e-8, "update nmse %.3e > 1e-8", num / den);
    cuda_bf16 *w16 = malloc(sizeof(cuda_bf16) * n);
    CU(cudaMemcpy(w16, bf.w16, sizeof(cuda_bf16) * n, cudaMemcpyDeviceToHost));
    long off = 0;
    for (int p = 0; p < m->nparams; p++) {
        const Param *t = &m->ptab[p];
        for (size_t i = 0; t->trainable && i < t->numel; i++) off += w16[t->offset + i] != bf16_from_f32(w1[t->offset + i]);
    }
    CHECK(off == 0, "%ld bf16 weights are not their master rounded", off);
    adamw_free(&ref);
    free(w0), free(gr), free(w1), free(wr), free(w16);
}

/* A NaN gradient: the step is skipped and nothing moves. */
static void check_skip(Model *m, CudaModel *g, OptimCuda *oc) {
    Err err = {0};
    CudaModelBuffers bf = cuda_model_buffers(g);
    float *w0 = malloc(sizeof(float) * m->numel), *w1 = malloc(sizeof(float) * m->numel), nan = NAN;
    OK(cuda_model_download(g, w0, &err));
    const Param *p = &m->ptab[m->nparams / 2];
    CU(cudaMemcpy(bf.grads + p->offset, &nan, sizeof nan, cudaMemcpyHostToDevice));
    int64_t before = optim_cuda_steps(oc);
    AdamWStepInfo info;
    OK(optim_cuda_step(oc, g, 1e-3, &info, &err));
    OK(cuda_model_download(g, w1, &err));
    CHECK(info.skipped && info.nonfinite >= 1 && !strcmp(info.bad_param, p->name) && optim_cuda_steps(oc) == before,
          "a NaN gradient in %s: skipped %d, nonfinite %zu, named '%s'", p->name, info.skipped, info.nonfinite,
          info.bad_param);
    CHECK(!memcmp(w0, w1, sizeof(float) * m->numel), "a skipped step moved the weights");
    free(w0), free(w1);
}

int main(void) {
    CUDA_TEST_REQUIRE_GPU();
    Err err = {0};
    Model m;
    OK(model_load(&m, GRPO_TESTS_DIR "/../recipes/tiny-arith/base", NULL, &err));
    round_params_bf16(&m);
    CudaModel *g = cuda_model_new(&m, &err);
    if (!g) op_failed("cuda_model_new", &err);
    AdamWOpts ao;
    adamw_opts_default(&ao);
    ao.weight_decay = 0.1;
    AdamW a;
    OK(adamw_init(&a, &ao, m.ptab, m.nparams, m.numel, &err));
    OptimCuda *oc = optim_cuda_new(&ao, &m, &err);
    if (!oc) op_failed("optim_cuda_new", &err);
    const int N = B * T;
    int *ids = calloc(N, sizeof(int)), *tg = malloc(sizeof(int) * N);
    float *lp = malloc(sizeof(float) * N), *dl = malloc(sizeof(float) * N);
    Tokenizer *tok = tok_load(GRPO_TESTS_DIR "/../recipes/tiny-arith", &err);
    Dataset d;
    if (!tok || dataset_load(&d, GRPO_TESTS_DIR "/../recipes/tiny-arith/sft.jsonl", &err)) op_failed("data", &err);
    int len[B], ntg = 0;
    for (int r = 0; r < B; r++) {  // question, newline, solution: a row as grpo sft sees it (no EOS)
        char text[2048];
        TokIds t = {0};
        snprintf(text, sizeof text, "%s\n%s", dataset_str(&d, r, "question", &err), dataset_str(&d, r, "solution", &err));
        OK(tok_encode(tok, text, strlen(text), 0, &t, &err));
        len[r] = t.n < (size_t)T ? (int)t.n : T;
        memcpy(ids + r * T, t.v, sizeof(int) * len[r]);
        tok_ids_free(&t);
    }
    for (int i = 0; i < N; i++) tg[i] = i % T + 1 < len[i / T] ? ids[i + 1] : -1, ntg += tg[i] >= 0;
    for (int i = 0; i < N; i++) dl[i] = tg[i] >= 0 ? -1.0f / ntg : 0.0f;
    Batch b = {B, T, ids, tg, NULL};
    model_alloc_grads(&m);
    const double lr = 3e-4;
    double lc[STEPS], lg[STEPS];
    for (int s = 0; s < STEPS; s++) {
        model_zero_grads(&m);
        OK(model_forward(&m, &b, 1.0f, lp, NULL, &err));
        lc[s] = mean_loss(lp, tg, N);
        model_backward(&m, &b, dl, NULL);
        adamw_step(&a, m.params, m.grads, lr, NULL);
        OK(cuda_model_zero_grads(g, &err));
        OK(cuda_model_forward(g, &b, 1.0f, lp, NULL, NULL, &err));
        lg[s] = mean_loss(lp, tg, N);
        OK(cuda_model_backward(g, &b, dl, NULL, &err));
        if (s == 0) check_step_exact(&m, g, oc, &ao, lr);
        else OK(optim_cuda_step(oc, g, lr, NULL, &err));
        printf("step %d: loss CPU %.5f, GPU %.5f\n", s + 1, lc[s], lg[s]);
        CHECK(fabs(lg[s] - lc[s]) <= 0.03 * lc[s], "step %d: GPU loss %.5f vs CPU %.5f", s + 1, lg[s], lc[s]);
    }
    CHECK(lc[STEPS - 1] < lc[0] && lg[STEPS - 1] < lg[0], "the loss did not fall: CPU %.4f -> %.4f, GPU %.4f -> %.4f",
          lc[0], lc[STEPS - 1], lg[0], lg[STEPS - 1]);
    OK(cuda_model_backward(g, &b, dl, NULL, &err));  // gradients of the last forward, for the skip check
    check_skip(&m, g, oc);
    optim_cuda_free(oc);
    adamw_free(&a);
    cuda_model_free(g);
    model_free(&m);
    free(ids), free(tg), free(lp), free(dl);
    dataset_free(&d);
    tok_free(tok);
    return test_report();
}
