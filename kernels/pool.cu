// Kernels of the pool family (being written).
