/* dataset: see dataset.h. */
#include "dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"

int dataset_load(Dataset *d, const char *path, Err *err) {
    memset(d, 0, sizeof *d);
    snprintf(d->path, sizeof d->path, "%s", path);
    FILE *f = fopen(path, "r");
    if (!f) return err_set(err, ERR_INPUT, "%s: cannot open", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, cap_rows = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (!len) continue;
        cJSON *row = cJSON_ParseWithLength(line, (size_t)len);
        if (!row || !cJSON_IsObject(row)) {
            cJSON_Delete(row);
            free(line);
            fclose(f);
            dataset_free(d);
            return err_set(err, ERR_INPUT, "%s:%d: not a JSON object", path, lineno);
        }
        if (d->n == cap_rows) {
            cap_rows = cap_rows ? 2 * cap_rows : 1024;
            d->rows = xrealloc(d->rows, sizeof(cJSON *) * cap_rows);
            d->line = xrealloc(d->line, sizeof(int) * cap_rows);
        }
        d->rows[d->n] = row;
        d->line[d->n++] = lineno;
    }
    free(line);
    fclose(f);
    if (!d->n) return err_set(err, ERR_INPUT, "%s: no rows", path);
    return 0;
}

void dataset_free(Dataset *d) {
    for (int i = 0; i < d->n; i++) cJSON_Delete(d->rows[i]);
    free(d->rows);
    free(d->line);
    memset(d, 0, sizeof *d);
}

const char *dataset_str(const Dataset *d, int i, const char *field, Err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(d->rows[i], field);
    if (!v) {
        err_set(err, ERR_INPUT, "%s:%d: row has no field '%s'", d->path, d->line[i], field);
        return NULL;
    }
    if (!cJSON_IsString(v)) {
        err_set(err, ERR_INPUT, "%s:%d: field '%s' is not a string", d->path, d->line[i], field);
        return NULL;
    }
    return v->valuestring;
}
