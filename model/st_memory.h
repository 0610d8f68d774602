/* st_memory: parse a safetensors image that is already in memory (no file,
 * no mmap); used by the fuzz target so every input is checked exactly as
 * st_open checks a file. The buffer must outlive st; st_close frees only
 * what the parse allocated. Not part of the public safetensors.h API. */
#ifndef GRPO_ST_MEMORY_H
#define GRPO_ST_MEMORY_H

#include <stddef.h>

#include "model/safetensors.h"

/* name is used in messages, as a file name would be. */
int st_open_memory(Safetensors *st, const void *buf, size_t len, const char *name, Err *err);

#endif
