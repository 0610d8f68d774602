/* dataset: JSONL files of rows (one JSON object per line), kept as cJSON.
 * Errors name the file and line. It does not tokenize or template. */
#ifndef GRPO_DATASET_H
#define GRPO_DATASET_H

#include <cjson/cJSON.h>

#include "base/err.h"

typedef struct Dataset {
    char path[512];
    int n;
    cJSON **rows;  /* [n] objects */
    int *line;     /* [n] 1-based line numbers in the file */
} Dataset;

/* Reads every non-empty line; a line that is not a JSON object is an error. */
int dataset_load(Dataset *d, const char *path, Err *err);
void dataset_free(Dataset *d);
/* The string field of row i, or NULL with err naming file:line and field. */
const char *dataset_str(const Dataset *d, int i, const char *field, Err *err);

#endif
