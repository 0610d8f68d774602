/* test_grpo_fixture: reader for the plain-token golden files written by
 * tests/golden/make_grpo_fixtures.py (tests/fixtures/rl/ text files):
 *     # comment
 *     case NAME
 *     opt KEY VALUE...          (the rest of the line is the value)
 *     arr NAME COUNT v1 v2 ...  (numbers, nan, inf)
 *     end
 * Header-only, for the rl tests. Not a general parser: a malformed file is a
 * test failure (fx_next returns -1 and prints where). */
#ifndef GRPO_TEST_GRPO_FIXTURE_H
#define GRPO_TEST_GRPO_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FX_MAX_OPT 64
#define FX_MAX_ARR 48

typedef struct FxArr {
    char name[32];
    int n;
    double *v; /* [n] */
} FxArr;

typedef struct FxCase {
    char name[96];
    int nopt, narr;
    char okey[FX_MAX_OPT][32];
    char oval[FX_MAX_OPT][256];
    FxArr arr[FX_MAX_ARR];
} FxCase;

static void fx_free(FxCase *c)
{
    for (int i = 0; i < c->narr; i++) free(c->arr[i].v);
    memset(c, 0, sizeof *c);
}

/* Reads the next case; 1 = got one, 0 = end of file, -1 = malformed. */
static int fx_next(FILE *f, FxCase *c, const char *path)
{
    char *line = NULL;
    size_t cap = 0;
    int in_case = 0, lineno = 0, rc = 0;
    memset(c, 0, sizeof *c);
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        line[strcspn(line, "\n")] = 0;
        if (line[0] == '#' || line[0] == 0) continue;
        if (strncmp(line, "case ", 5) == 0) {
            snprintf(c->name, sizeof c->name, "%s", line + 5);
            in_case = 1;
        } else if (strcmp(line, "end") == 0 && in_case) {
            rc = 1;
            break;
        } else if (strncmp(line, "opt ", 4) == 0 && in_case && c->nopt < FX_MAX_OPT) {
            char *k = line + 4, *v = strchr(k, ' ');
            if (!v) { rc = -1; break; }
            *v++ = 0;
            snprintf(c->okey[c->nopt], 32, "%s", k);
            snprintf(c->oval[c->nopt], 256, "%s", v);
            c->nopt++;
        } else if (strncmp(line, "arr ", 4) == 0 && in_case && c->narr < FX_MAX_ARR) {
            FxArr *a = &c->arr[c->narr++];
            char *p = line + 4, *end;
            size_t nl = strcspn(p, " ");
            snprintf(a->name, sizeof a->name, "%.*s", (int)nl, p);
            p += nl;
            a->n = (int)strtol(p, &end, 10);
            p = end;
            a->v = malloc(sizeof(double) * (a->n > 0 ? a->n : 1));
            for (int i = 0; i < a->n; i++) {
                a->v[i] = strtod(p, &end);
                if (end == p) { rc = -1; break; }
                p = end;
            }
            if (rc) break;
        } else {
            rc = -1;
            break;
        }
    }
    if (rc < 0) fprintf(stderr, "%s: malformed fixture near line %d of this case\n", path, lineno);
    free(line);
    return rc;
}

static const char *fx_opt(const FxCase *c, const char *key)
{
    for (int i = 0; i < c->nopt; i++)
        if (strcmp(c->okey[i], key) == 0) return c->oval[i];
    return NULL;
}

static double fx_optd(const FxCase *c, const char *key)
{
    const char *v = fx_opt(c, key);
    return v ? strtod(v, NULL) : 0.0;
}

static const FxArr *fx_arr(const FxCase *c, const char *name)
{
    for (int i = 0; i < c->narr; i++)
        if (strcmp(c->arr[i].name, name) == 0) return &c->arr[i];
    return NULL;
}

/* float copy of an array (NULL when absent). */
static float *fx_floats(const FxCase *c, const char *name)
{
    const FxArr *a = fx_arr(c, name);
    if (!a) return NULL;
    float *f = malloc(sizeof(float) * (a->n > 0 ? a->n : 1));
    for (int i = 0; i < a->n; i++) f[i] = (float)a->v[i];
    return f;
}

#endif
