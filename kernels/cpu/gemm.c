/* gemm: (being written) */
