// Test-only kernels for the budget check (tests/kernel_budgets.rs): the same element copy of a
// rows x cols matrix, walked down its columns. `copy_coalesced_f32` reads x[i] (neighbouring
// lanes, neighbouring words); `copy_uncoalesced_f32` reads x[r * cols + c] with r the fast
// index, so neighbouring lanes read words `cols` apart: one 32-byte sector per lane.
extern "C" __global__ void copy_coalesced_f32(const float* x, float* y, int rows, int cols) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < rows * cols) {
        int r = i % rows, c = i / rows;
        y[i] = x[c * rows + r];
    }
}

extern "C" __global__ void copy_uncoalesced_f32(const float* x, float* y, int rows, int cols) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < rows * cols) {
        int r = i % rows, c = i / rows;
        y[i] = x[r * cols + c];
    }
}
