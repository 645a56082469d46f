// Byte histogram: per-block counts in shared memory with shared atomics, merged with global atomics.
extern "C" __global__ void histogram256(const unsigned char* data, unsigned int* bins, int n) {
    __shared__ unsigned int local_bins[256];
    for (int b = threadIdx.x; b < 256; b += blockDim.x) local_bins[b] = 0;
    __syncthreads();
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
        atomicAdd(&local_bins[data[i]], 1u);
    __syncthreads();
    for (int b = threadIdx.x; b < 256; b += blockDim.x)
        if (local_bins[b] != 0) atomicAdd(&bins[b], local_bins[b]);
}

// Float atomics into a few buckets, plus atomicMax on integers.
extern "C" __global__ void bucket_sums(const float* x, float* sums, int* max_key, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        atomicAdd(&sums[i % 5], x[i]);
        atomicMax(max_key, (int)(x[i] * 1000.0f));
    }
}
