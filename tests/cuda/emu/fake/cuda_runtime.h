/* Fake cuda_runtime.h for tests/cuda/emu: the runtime API (cuda_runtime_api.h)
 * and, in C++ (the rewritten .cu files), the device-side emulation (emu.h). */
#ifndef EMU_CUDA_RUNTIME_H
#define EMU_CUDA_RUNTIME_H
#include "cuda_runtime_api.h"
#ifdef __cplusplus
#include "../emu.h"
#endif
#endif
