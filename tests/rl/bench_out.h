/* bench_out: reading what a `grpo bench` command wrote, for the tests that run one
 * (test_bench_grpo, test_bench_device): the file's text, its JSON line, a number. */
#ifndef GRPO_TEST_BENCH_OUT_H
#define GRPO_TEST_BENCH_OUT_H

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The contents of dir/name (caller frees), "" when missing. */
static inline char *bench_out_text(const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    char *buf = calloc(1, 1 << 16);
    if (f) buf[fread(buf, 1, (1 << 16) - 1, f)] = 0, fclose(f);
    return buf;
}

/* The JSON line of dir/name (the line starting with {"bench"), parsed, or NULL. */
static inline cJSON *bench_out_json(const char *dir, const char *name) {
    char *out = bench_out_text(dir, name), *p = strstr(out, "{\"bench\"");
    cJSON *j = p ? cJSON_Parse(p) : NULL;
    free(out);
    return j;
}

/* o's number at key, -1 when absent or not a number. */
static inline double bench_out_num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

#endif
