// device: see device.h.
#include <cuda_runtime.h>
#include <stdio.h>

#include "device.h"

extern "C" int cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no driver" error
        return 0;
    }
    return n;
}

extern "C" int cuda_device_describe(char *buf, int size) {
    if (cuda_device_count() <= 0) return -1;
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) return -1;
    snprintf(buf, size, "%s (sm_%d%d, %zu MiB)", p.name, p.major, p.minor, p.totalGlobalMem >> 20);
    return 0;
}

extern "C" double cuda_device_hbm_bytes_per_s(void) {
    int khz = 0, bits = 0;
    if (cuda_device_count() <= 0 || cudaDeviceGetAttribute(&khz, cudaDevAttrMemoryClockRate, 0) != cudaSuccess ||
        cudaDeviceGetAttribute(&bits, cudaDevAttrGlobalMemoryBusWidth, 0) != cudaSuccess)
        return 0;
    return 2.0 * khz * 1e3 * bits / 8.0; /* double data rate */
}
