// Kernels of the upsample family (being written).
