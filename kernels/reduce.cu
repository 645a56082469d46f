// Kernels of the reduce family (being written).
