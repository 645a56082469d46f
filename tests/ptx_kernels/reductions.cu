// Sum reductions: one with a shared-memory tree, one with warp shuffles; each block writes a partial sum.
extern "C" __global__ void block_sum_shared(const float* x, float* partial, int n) {
    __shared__ float tile[256];
    int tid = threadIdx.x;
    int i = blockIdx.x * blockDim.x + tid;
    tile[tid] = (i < n) ? x[i] : 0.0f;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (tid < stride) tile[tid] += tile[tid + stride];
        __syncthreads();
    }
    if (tid == 0) partial[blockIdx.x] = tile[0];
}

extern "C" __global__ void block_sum_shuffle(const float* x, float* partial, int n) {
    __shared__ float warp_sums[32];
    int tid = threadIdx.x;
    float v = 0.0f;
    for (int i = blockIdx.x * blockDim.x + tid; i < n; i += blockDim.x * gridDim.x) v += x[i];
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    int lane = tid & 31, warp = tid >> 5;
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    if (warp == 0) {
        int nwarps = (blockDim.x + 31) / 32;
        v = (lane < nwarps) ? warp_sums[lane] : 0.0f;
        for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
        if (lane == 0) partial[blockIdx.x] = v;
    }
}

// A ballot-based count of positive elements per block, exercising vote and popc.
extern "C" __global__ void count_positive(const float* x, unsigned int* count, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned int ballot = __ballot_sync(0xffffffffu, i < n && x[i] > 0.0f);
    if ((threadIdx.x & 31) == 0) atomicAdd(count, __popc(ballot));
}
