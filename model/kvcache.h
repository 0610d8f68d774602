/* kvcache: the latent KV cache of absorbed-MLA decoding (deepseek-v3.md §4.6)
 * and the incremental forward over it.
 *
 * Per layer, slot and position the cache holds the RMS-normed latent c_kv
 * (d_c floats, norm weight included) and the rotated rope key k_pe (d_r
 * floats): 576 values per token and layer for V3 instead of the 40,960 of a
 * naive cache. Slots are independent sequences, so the rollout engine can
 * decode many sequences in one call, and a prompt prefilled once can be copied
 * into the G slots of its group. Contiguous per slot on the CPU; the CUDA
 * backend pages it. */
#ifndef GRPO_KVCACHE_H
#define GRPO_KVCACHE_H

#include "model/model.h"

typedef struct DecodeWork DecodeWork;

typedef struct KvCache {
    int nslots, max_len, nlayers; /* nlayers = main layers (MTP not cached) */
    int dc, dr;
    float *ckv;  /* [nlayers, nslots, max_len, d_c] */
    float *kpe;  /* [nlayers, nslots, max_len, d_r] */
    int *len;    /* [nslots] tokens held per slot */
    struct DecodeWork *work; /* model_extend's buffers, kept and grown across calls */
} KvCache;

int kvcache_create(KvCache *kv, const ModelConfig *c, int nslots, int max_len, Err *err);
void kvcache_free(KvCache *kv);
void kvcache_reset(KvCache *kv, int slot);
/* dst takes a copy of src's tokens (e.g. a prompt shared by a group). */
void kvcache_copy(KvCache *kv, int dst, int src);

/* Runs ntok[i] new tokens for slot slots[i] (i < nseq; ids concatenated in
 * that order), appending them to the cache, and writes the logits of each
 * sequence's last new token to logits[nseq, V] (all_logits: logits of every
 * new token, [sum ntok, V], instead). Router load is added to m->router_load. */
int model_extend(Model *m, KvCache *kv, int nseq, const int *slots, const int *ntok, const int *ids, float *logits,
                 int all_logits, Err *err);

#endif
