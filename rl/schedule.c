/* schedule: learning-rate schedules as transformers.get_scheduler defines
 * them (optimization.py: the _lr_lambda functions), evaluated in double as
 * Python does. Declared in optim.h. Not an optimizer: it only maps a step
 * number to a learning rate. */
#include <math.h>
#include <string.h>

#include "rl/optim.h"

static const char *const sched_names[] = {"constant", "constant_with_warmup", "linear", "cosine",
                                          "cosine_with_min_lr"};
#define N_SCHED (int)(sizeof sched_names / sizeof *sched_names)

int lr_schedule_parse(const char *name, LrSchedType *out, Err *err)
{
    for (int i = 0; i < N_SCHED; i++)
        if (strcmp(name, sched_names[i]) == 0) {
            *out = (LrSchedType)i;
            return 0;
        }
    return err_set(err, ERR_INPUT,
                   "lr_scheduler_type: unknown value '%s' (constant, constant_with_warmup, linear, "
                   "cosine, cosine_with_min_lr)", name);
}

const char *lr_schedule_name(LrSchedType t)
{
    return (int)t >= 0 && (int)t < N_SCHED ? sched_names[t] : "?";
}

static double max1(double x) { return x > 1.0 ? x : 1.0; }

double lr_schedule_at(const LrSchedule *s, int64_t step)
{
    double cur = (double)step, warm = (double)s->warmup_steps, total = (double)s->total_steps;
    if (s->type == LR_CONSTANT) return s->lr;
    if (cur < warm) return s->lr * (cur / max1(warm));
    if (s->type == LR_CONSTANT_WARMUP) return s->lr;
    if (s->type == LR_LINEAR) {
        double f = (total - cur) / max1(total - warm);
        return s->lr * (f > 0.0 ? f : 0.0);
    }
    double progress = (cur - warm) / max1(total - warm);
    double f = 0.5 * (1.0 + cos(M_PI * s->num_cycles * 2.0 * progress));
    if (s->type == LR_COSINE_MIN_LR) f = f * (1.0 - s->min_lr_rate) + s->min_lr_rate;
    return s->lr * (f > 0.0 ? f : 0.0);
}

int64_t lr_warmup_steps(double ratio, int64_t total)
{
    return (int64_t)ceil(ratio * (double)total);
}
