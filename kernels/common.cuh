// Helpers every kernel file of the CUDA backend sees first (src/backend/cuda/mod.rs prepends
// this file): the strided view of a tensor argument and the grid-stride loop.

#define HEPAR_MAX_RANK 8

// Shape, strides and offset of a tensor view, passed by value. Same layout as
// src/backend/cuda/view.rs `StridedView`.
struct StridedView {
    int rank;
    int contiguous;
    long long offset;
    long long shape[HEPAR_MAX_RANK];
    long long strides[HEPAR_MAX_RANK];
};

// Storage index of logical (row-major) element i of the view.
__device__ __forceinline__ long long view_index(const StridedView& v, long long i) {
    if (v.contiguous) return v.offset + i;
    long long idx = v.offset;
    for (int d = v.rank - 1; d >= 0; --d) {
        long long n = v.shape[d];
        idx += (i % n) * v.strides[d];
        i /= n;
    }
    return idx;
}

// One thread per item; any grid covers any length, so launches may use fewer blocks than items.
#define GRID_STRIDE_LOOP(i, n) \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)
