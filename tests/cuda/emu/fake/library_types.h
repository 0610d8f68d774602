/* Fake library_types.h for tests/cuda/emu: the data types the fake cuBLAS knows. */
#ifndef EMU_LIBRARY_TYPES_H
#define EMU_LIBRARY_TYPES_H
typedef enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 } cudaDataType_t;
typedef cudaDataType_t cudaDataType;
#endif
