// Kernels of the matmul family (being written).
