// Device functions that stay calls in the PTX: by-value scalars and structs, a return value, a nested
// call and a local array in the callee; plus printf and assert.
// NVRTC ships no <assert.h>: declare the runtime's failure hook the way that header does.
extern "C" __device__ void __assertfail(const char* msg, const char* file, unsigned int line, const char* fn, unsigned long size);
#define device_assert(cond) ((cond) ? (void)0 : __assertfail(#cond, __FILE__, __LINE__, __func__, 1))
struct Pair { float a; float b; int k; };

__device__ __noinline__ float weigh(float v, int k) {
    float table[6];
    for (int j = 0; j < 6; ++j) table[j] = v * (float)j;
    return table[k % 6] + 1.0f;
}

__device__ __noinline__ float combine(Pair p) {
    if (p.k < 0) return -1.0f;
    return weigh(p.a, p.k) * p.b;
}

extern "C" __global__ void call_chain(const float* x, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    Pair p = {x[i], 0.5f, i - 3};
    out[i] = combine(p);
    if (i == 0) printf("first output %f\n", out[i]);
}

extern "C" __global__ void checked_index(const int* idx, int* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    device_assert(idx[i] >= 0);
    out[i] = idx[i] * 2;
}

extern "C" __global__ void say_hello(int n) {
    if (threadIdx.x < 2)
        printf("block %d thread %u: %s %5.2f %lld %c\n", blockIdx.x, threadIdx.x, "hi", 0.5f * threadIdx.x,
               (long long)n << 33, 'A' + threadIdx.x);
}
