// Kernels of the conv family (being written).
