/* test_cuda_device: the CUDA backend finds the GPU; skipped where there is none. */
#include "kernels/cuda/device.h"
#include "test.h"

int main(void) {
    if (cuda_device_count() <= 0) TEST_SKIP("no CUDA device on this machine");
    char desc[256];
    CHECK(cuda_device_describe(desc, sizeof desc) == 0, "describe device 0");
    printf("device: %s\n", desc);
    return test_report();
}
