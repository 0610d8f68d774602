/* model_test_util: shared setup for the model tests: load a reference config,
 * build a model, apply the fixture perturbation (docs/golden-fixtures.md) and
 * make the fixed batch the golden script uses. */
#ifndef GRPO_MODEL_TEST_UTIL_H
#define GRPO_MODEL_TEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

static inline int tu_load_config(ModelConfig *c, const char *name) {
    char path[1024];
    Err err = {0};
    snprintf(path, sizeof path, "%s/reference/tiny-configs/%s", GRPO_SHARED_DIR, name);
    if (config_load(c, path, &err) == 0) return 0;
    snprintf(path, sizeof path, "%s/fixtures/model/%s", GRPO_TESTS_DIR, name);
    Err err2 = {0};
    if (config_load(c, path, &err2) == 0) return 0;
    fprintf(stderr, "cannot load config %s: %s / %s\n", name, err.msg, err2.msg);
    return -1;
}

/* norms: 1 + 0.2 sin(0.7 i + 0.1 len(name)); correction bias: 0.05 cos(1.1 i + 0.1 len(name)) */
static inline void tu_perturb(Model *m) {
    for (int i = 0; i < m->nparams; i++) {
        const Param *p = &m->ptab[i];
        float *w = m->params + p->offset;
        size_t n = strlen(p->name);
        if (p->ndim == 1 && n >= 11 && !strcmp(p->name + n - 11, "norm.weight"))
            for (size_t j = 0; j < p->numel; j++) w[j] = (float)(1.0 + 0.2 * sin(0.7 * j + 0.1 * n));
        if (strstr(p->name, "e_score_correction_bias"))
            for (size_t j = 0; j < p->numel; j++) w[j] = (float)(0.05 * cos(1.1 * j + 0.1 * n));
    }
}

/* ids[b][t] = (7 + 7919*(b*T+t) + 131*b) % V */
static inline void tu_batch_ids(int *ids, int B, int T, int V) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) ids[b * T + t] = (int)((7L + 7919L * (b * T + t) + 131L * b) % V);
}

#endif
