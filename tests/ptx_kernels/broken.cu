// Deliberately wrong or slow kernels the checkers must catch.

// Off by one: the guard lets thread n write one element past the end.
extern "C" __global__ void off_by_one_write(float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) out[i] = 1.0f;
}

// Missing __syncthreads between the shared write and the neighbour's read.
extern "C" __global__ void missing_sync(const float* in, float* out, int n) {
    __shared__ float tile[128];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    tile[threadIdx.x] = (i < n) ? in[i] : 0.0f;
    float right = tile[(threadIdx.x + 1) % blockDim.x];
    if (i < n) out[i] = right;
}

// Copy with stride: consecutive threads touch addresses `stride` elements apart.
extern "C" __global__ void strided_copy(const float* in, float* out, int n, int stride) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = in[(long)(i * stride) % n];
}

// Misaligned: a float load from a pointer that is one byte off.
extern "C" __global__ void misaligned_load(const char* bytes, float* out) {
    out[threadIdx.x] = *(const float*)(bytes + 1 + 4 * threadIdx.x);
}

// Shared reads with a lane stride: stride 1 is conflict-free, stride 32 puts every lane in bank 0.
extern "C" __global__ void shared_stride_read(float* out, int stride) {
    __shared__ float tile[1024];
    for (int i = threadIdx.x; i < 1024; i += blockDim.x) tile[i] = (float)i;
    __syncthreads();
    out[threadIdx.x] = tile[(threadIdx.x * stride) % 1024];
}

// Indexes a 4-element local array with a value read from memory: k = 4 overruns the thread's frame.
extern "C" __global__ void local_overrun(const int* k, float* out) {
    volatile float scratch[4];
    for (int j = 0; j < 4; ++j) scratch[j] = (float)j;
    out[threadIdx.x] = scratch[k[threadIdx.x]];
}

// A full-mask shuffle inside a branch only half of the warp takes.
extern "C" __global__ void divergent_shuffle(float* out) {
    float v = (float)threadIdx.x;
    if (threadIdx.x < 16) v += __shfl_down_sync(0xffffffffu, v, 1);
    out[threadIdx.x] = v;
}
