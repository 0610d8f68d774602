/* test_cuda_adamw: the GPU optimizer step (kernels/cuda/adamw.h) against
 * adamw_step of rl/optim.c over several steps on a parameter table with odd
 * tensor sizes, a frozen buffer, no-decay norms, weight decay, a clipped and an
 * unclipped step, and a step skipped for a NaN gradient. Everything is fp32 on
 * both sides; they differ only by FMA contraction and summation order, so
 * parameters and moments are held to nmse 1e-12 and the norm to 1e-9
 * relative. Skipped without a GPU. */
#include <string.h>

#include "cuda_test.h"
#include "kernels/cuda/adamw.h"
#include "rl/optim.h"

static uint64_t rng = 0x6164616d;
static Err err;

int main(void) {
    CUDA_TEST_REQUIRE_GPU();
    enum { NP = 5 };
    const struct { const char *name; size_t numel; int trainable; } spec[NP] = {
        {"model.layers.0.mlp.gate_proj.weight", 300001, 1},
        {"model.layers.0.input_layernorm.weight", 1000, 1},
        {"model.layers.0.mlp.gate.e_score_correction_bias", 7, 0},
        {"model.norm.weight", 1, 1},
        {"lm_head.weight", 65537, 1},
    };
    Param ptab[NP];
    CudaParamSpan spans[NP];
    size_t numel = 0;
    AdamWOpts o;
    adamw_opts_default(&o);
    o.weight_decay = 0.1;
    for (int i = 0; i < NP; i++) {
        memset(&ptab[i], 0, sizeof ptab[i]);
        snprintf(ptab[i].name, sizeof ptab[i].name, "%s", spec[i].name);
        ptab[i].ndim = 1, ptab[i].shape[0] = (int64_t)spec[i].numel, ptab[i].numel = spec[i].numel;
        ptab[i].offset = numel, ptab[i].trainable = spec[i].trainable;
        spans[i] = (CudaParamSpan){numel, spec[i].numel, spec[i].trainable, optim_decays(&ptab[i], o.decay_rule)};
        numel += spec[i].numel;
    }
    AdamW a;
    if (adamw_init(&a, &o, ptab, NP, numel, &err)) op_failed("adamw_init", &err);
    CudaAdamWOpts go = {o.beta1, o.beta2, o.eps, o.weight_decay, o.max_grad_norm};
    float *p = malloc(4 * numel), *g = malloc(4 * numel), *buf = malloc(4 * numel);
    cuda_bf16 *pb = malloc(2 * numel);
    for (size_t i = 0; i < numel; i++) p[i] = 0.02f * rand_normal(&rng);
    float *d_p = dev_upload(p, 4 * numel), *d_g = dev_alloc(4 * numel), *d_m = dev_alloc(4 * numel);
    float *d_v = dev_alloc(4 * numel);
    cuda_bf16 *d_pb = dev_alloc(2 * numel);
    CU(cudaMemset(d_m, 0, 4 * numel));
    CU(cudaMemset(d_v, 0, 4 * numel));
    void *scratch = dev_alloc(cuda_adamw_scratch_bytes(NP));
    int64_t step = 0;
    /* grad scales: the first steps are clipped (norm >> 1), the later not; step 4 holds a NaN */
    const float scale[] = {0.05f, 0.01f, 1e-4f, 1e-3f, 2e-4f};
    const double lr[] = {1e-3, 5e-4, 2e-3, 1e-3, 1e-3};
    for (int s = 0; s < 5; s++) {
        for (size_t i = 0; i < numel; i++) g[i] = scale[s] * rand_normal(&rng);
        if (s == 3) g[ptab[4].offset + 12345] = NAN;
        CU(cudaMemcpy(d_g, g, 4 * numel, cudaMemcpyHostToDevice));
        AdamWStepInfo ci;
        CudaAdamWInfo gi;
        int cs = adamw_step(&a, p, g, lr[s], &ci);
        int gs = cuda_adamw_step(0, &go, spans, NP, d_p, d_g, d_m, d_v, d_pb, &step, lr[s], scratch, &gi, &err);
        if (gs < 0) op_failed("cuda_adamw_step", &err);
        dev_sync("adamw step");
        CHECK(cs == gs && gi.skipped == ci.skipped, "step %d: skipped cpu=%d gpu=%d", s, cs, gs);
        CHECK(step == a.step, "step %d: step counter cpu=%lld gpu=%lld", s, (long long)a.step, (long long)step);
        if (ci.skipped) {
            CHECK(gi.nonfinite == ci.nonfinite && gi.bad_span == 4, "step %d: non-finite count %zu vs %zu, span %d",
                  s, gi.nonfinite, ci.nonfinite, gi.bad_span);
        } else {
            double rel = fabs(gi.grad_norm - ci.grad_norm) / ci.grad_norm;
            CHECK(rel < 1e-9, "step %d: grad norm gpu %.17g cpu %.17g", s, gi.grad_norm, ci.grad_norm);
            CHECK(fabs(gi.clip_coef - ci.clip_coef) < 1e-7, "step %d: clip coef gpu %g cpu %g", s, gi.clip_coef,
                  ci.clip_coef);
        }
        double ep = nmse_dev_f32(d_p, p, numel), em = nmse_dev_f32(d_m, a.m, numel);
        double ev = nmse_dev_f32(d_v, a.v, numel);
        CHECK(ep < 1e-12 && em < 1e-12 && ev < 1e-12, "step %d: nmse params %.3g m %.3g v %.3g", s, ep, em, ev);
        if (!ci.skipped) {
            double eg = nmse_dev_f32(d_g, g, numel); /* clipped in place on both sides */
            CHECK(eg < 1e-12, "step %d: clipped grads nmse %.3g", s, eg);
            /* the bf16 copy is the fp32 result rounded, for trainable tensors */
            dev_download(buf, d_p, 4 * numel);
            dev_download(pb, d_pb, 2 * numel);
            long bad = 0;
            for (int i = 0; i < NP; i++)
                for (size_t j = 0; spans[i].trainable && j < spans[i].numel; j++)
                    bad += pb[spans[i].offset + j] != bf16_from_f32(buf[spans[i].offset + j]);
            CHECK(bad == 0, "step %d: %ld bf16 weights are not the rounded fp32 weights", s, bad);
        }
        printf("step %d: lr %g norm %.6g clip %.4g skipped %d\n", s, lr[s], ci.grad_norm, ci.clip_coef, ci.skipped);
    }
    /* the frozen buffer never moves */
    dev_download(buf, d_p, 4 * numel);
    CHECK(memcmp(buf + ptab[2].offset, p + ptab[2].offset, 4 * ptab[2].numel) == 0, "frozen tensor changed");
    cudaFree(d_p), cudaFree(d_g), cudaFree(d_m), cudaFree(d_v), cudaFree(d_pb), cudaFree(scratch);
    adamw_free(&a);
    free(p), free(g), free(buf), free(pb);
    return test_report();
}
