/* train_eval: see train_eval.h. */
#include "train_eval.h"

#include "trainer_cuda.h"

#include <stdio.h>
#include <string.h>

#include "rl/dataset.h"
#include "rl/runctx.h"

EvalOpts train_eval_opts(const Recipe *r, const RewardSet *rs) {
    EvalOpts o = evaluate_defaults();
    o.k = r->eval_num_samples;
    o.max_new_tokens = r->eval_max_new_tokens > 0 ? r->eval_max_new_tokens : r->max_completion_length;
    o.limit = r->eval_limit > 0 ? r->eval_limit : 0;
    o.seed = (uint64_t)(int64_t)r->eval_seed; /* as grpo eval reads --seed */
    o.sampling.temperature = (float)(r->eval_temperature >= 0 ? r->eval_temperature : r->temperature);
    o.sampling.top_p = r->top_p, o.sampling.top_k = r->top_k, o.sampling.min_p = r->min_p;
    o.prompt_template = r->prompt_template;
    for (int s = 0; s < r->n_stop && s < EVAL_MAX_STOP; s++) o.stop[o.n_stop++] = r->stop[s];
    int acc = runctx_accuracy_index(rs);
    o.correct = acc >= 0 ? acc : 0; /* no accuracy-like reward: the first script decides */
    o.keep_samples = 1;
    return o;
}

int train_eval_due(const Recipe *r, long start, long done) {
    if (!r->eval_data[0]) return 0;
    return done == start || done == r->max_steps || (r->eval_steps > 0 && done % r->eval_steps == 0);
}

int train_eval_hook(Trainer *t, long done, Err *err) {
    if (!train_eval_due(&t->r, t->start_step, done)) return 0;
    Dataset d = {0};
    EvalResult res = {0};
    EvalOpts o = train_eval_opts(&t->r, t->rs);
    o.progress = stdout;
    if (t->cuda) o.engine = trainer_cuda_engine(t->cuda); /* the weights being trained are on the GPU */
    int rc = -1;
    if (dataset_load(&d, t->r.eval_data, err) || evaluate(&t->m, t->tok, &d, t->rs, &o, &res, err) ||
        evaluate_store(t->st, done, t->r.eval_data, &res, err)) {
        err_wrap(err, "evaluation at step %ld", done);
        goto out;
    }
    char line[400];
    evaluate_format(&res, line, sizeof line);
    runctx_progress(stdout, 1, "eval step %ld/%d  %s  [%d rows x %d, %.1fs]", done, t->r.max_steps, line, res.rows,
                    res.k, res.seconds);
    rc = 0;
out:
    evaluate_result_free(&res);
    dataset_free(&d);
    return rc;
}
