/* device: CUDA device discovery for the --device cuda backend. Callable from C.
 * It does not run model code; the ops live beside it in kernels/cuda/. */
#ifndef GRPO_CUDA_DEVICE_H
#define GRPO_CUDA_DEVICE_H

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices; 0 when there is no GPU or no driver. */
int cuda_device_count(void);
/* Writes "NAME (sm_XY, N MiB)" for device 0 into buf; returns -1 if none. */
int cuda_device_describe(char *buf, int size);
/* Peak memory bandwidth of device 0 in bytes/s (2 x memory clock x bus width), 0 if none. */
double cuda_device_hbm_bytes_per_s(void);

#ifdef __cplusplus
}
#endif
#endif
