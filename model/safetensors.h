/* safetensors: read (mmap) and write Hugging Face .safetensors files.
 *
 * Reading: one file, or a checkpoint directory with model.safetensors or a
 * sharded set listed in model.safetensors.index.json. Every header is
 * validated (offsets in range, no overlap, dtype/shape/byte-size agreement)
 * and errors name the file and the tensor. st_read_f32 converts F32, BF16, F16
 * and F8_E4M3 (with its 128x128 `<name>_scale_inv` block scales) to float.
 * Writing: deterministic (tensors sorted by name, fixed metadata), so
 * save -> load -> save is byte-identical; large sets are sharded with an index.
 * It knows nothing about which tensors a model needs (model.c does). */
#ifndef GRPO_SAFETENSORS_H
#define GRPO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef enum StDtype {
    ST_F32, ST_BF16, ST_F16, ST_F8_E4M3, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL,
    ST_NDTYPES
} StDtype;

enum { ST_MAX_DIMS = 8 };

typedef struct StTensor {
    char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    size_t nbytes;
    const void *data;    /* points into the mmap'd file */
    int shard;           /* index into Safetensors.paths */
} StTensor;

typedef struct Safetensors {
    int ntensors;
    StTensor *tensors;   /* sorted by name */
    int nshards;
    char **paths;        /* one per shard file */
    void **maps;         /* mmap base per shard */
    size_t *map_sizes;
} Safetensors;

/* path: a .safetensors file or a directory (model.safetensors or the index). */
int st_open(Safetensors *st, const char *path, Err *err);
void st_close(Safetensors *st);
const StTensor *st_find(const Safetensors *st, const char *name);
const char *st_dtype_name(StDtype d);
size_t st_dtype_size(StDtype d);
/* Converts t to float32 into out[t->numel]. F8_E4M3 needs `<name>_scale_inv`
 * (F32, [ceil(rows/128), ceil(cols/128)]) in st and is block-dequantised. */
int st_read_f32(const Safetensors *st, const StTensor *t, float *out, Err *err);

typedef struct StWrite {
    const char *name;
    StDtype dtype;       /* dtype to store; data is given in `src_dtype` */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const float *f32;    /* source values as float32 (converted to dtype), or */
    const void *raw;     /* raw bytes already in dtype (when f32 is NULL) */
} StWrite;

/* Writes one file. Tensors are sorted by name; metadata is {"format":"pt"}. */
int st_save(const char *path, const StWrite *t, int n, Err *err);
/* Writes dir/model.safetensors, or shards of at most max_shard_bytes named
 * model-0000i-of-0000N.safetensors plus model.safetensors.index.json. */
int st_save_dir(const char *dir, const StWrite *t, int n, size_t max_shard_bytes, Err *err);

/* bf16/f16/e4m3 scalar conversions (round-to-nearest-even for bf16). */
float st_bf16_to_f32(uint16_t h);
uint16_t st_f32_to_bf16(float f);
float st_f16_to_f32(uint16_t h);
uint16_t st_f32_to_f16(float f);
float st_e4m3_to_f32(uint8_t b);

#endif
