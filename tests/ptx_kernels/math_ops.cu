// A wide sweep of the math and bit functions kernels use, each result in its own output column.
#define COLS 32
extern "C" __global__ void float_math(const float* x, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i];
    float a = fabsf(v) + 0.1f;
    float* o = out + (long)i * COLS;
    o[0] = expf(v);
    o[1] = logf(a);
    o[2] = tanhf(v);
    o[3] = erff(v);
    o[4] = powf(a, 1.7f);
    o[5] = sinf(v);
    o[6] = cosf(v);
    o[7] = rsqrtf(a);
    o[8] = __fdividef(v, a);
    o[9] = floorf(v * 3.3f);
    o[10] = ceilf(v * 3.3f);
    o[11] = roundf(v * 3.3f);
    o[12] = truncf(v * 3.3f);
    o[13] = fmodf(v * 10.0f, 3.0f);
    o[14] = (float)__float2int_rn(v * 7.5f);
    o[15] = v / a;
    o[16] = sqrtf(a);
    o[17] = 1.0f / (1.0f + __expf(-v));
    o[18] = log1pf(a);
    o[19] = exp2f(v);
    o[20] = log2f(a);
    o[21] = atan2f(v, a);
    o[22] = fmaxf(v, 0.0f) + fminf(v, 0.0f) * 0.01f;
    o[23] = (float)(double)exp((double)v);
    o[24] = (float)log((double)a);
    o[25] = (float)sqrt((double)a);
    o[26] = copysignf(a, v);
    o[27] = (float)(unsigned int)(a * 100.0f);
    o[28] = isnan(v / 0.0f) ? 1.0f : (isinf(v / 0.0f) ? 2.0f : 0.0f);
    o[29] = __saturatef(v * 2.0f);
    o[30] = rintf(v * 2.5f);
    o[31] = hypotf(v, a);
}

extern "C" __global__ void int_bits(const unsigned int* x, unsigned int* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    unsigned int v = x[i];
    int s = (int)v;
    unsigned long long w = (unsigned long long)v * 2654435761ull + 12345ull;
    unsigned int* o = out + (long)i * 16;
    o[0] = __clz(v);
    o[1] = __popc(v);
    o[2] = __brev(v);
    o[3] = __ffs(s);
    o[4] = __byte_perm(v, 0x01234567u, 0x3210 ^ (i & 0x7777));
    o[5] = __funnelshift_l(v, v ^ 0xdeadbeefu, i & 31);
    o[6] = (unsigned int)(s / (i - 300 + (i == 300)));
    o[7] = (unsigned int)(s % 97);
    o[8] = v / 13u + v % 13u;
    o[9] = (unsigned int)(w >> 17) ^ (unsigned int)(w % 1000003ull);
    o[10] = (unsigned int)max(s, -12345) + (unsigned int)min(v, 777u);
    o[11] = __umulhi(v, 0x9e3779b9u) + (unsigned int)__mulhi(s, -7);
    o[12] = (unsigned int)(((long long)s * (long long)s) >> 20);
    o[13] = (v >> (i & 31)) | (unsigned int)(s >> (i & 31));
    o[14] = __popcll(w) + __clzll(w);
    o[15] = (unsigned int)abs(s) ^ (v << (i & 15));
}

// A small dynamically indexed local array (lives in local memory) and dynamic shared memory.
extern "C" __global__ void local_and_dynamic_shared(const int* idx, float* out, int n) {
    extern __shared__ float scratch[];
    float table[12];
    for (int k = 0; k < 12; ++k) table[k] = (float)(k * k) + (float)threadIdx.x;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    scratch[threadIdx.x] = (i < n) ? table[idx[i] % 12] : 0.0f;
    __syncthreads();
    if (i < n) out[i] = scratch[threadIdx.x] + scratch[(threadIdx.x + 1) % blockDim.x];
}

__constant__ float scale_table[4] = {0.5f, 1.0f, 2.0f, 4.0f};
__device__ unsigned int calls;

// Constant memory with an initializer, a device global counter, and a grid-stride loop.
extern "C" __global__ void constant_scale(const float* x, float* out, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        out[i] = x[i] * scale_table[i & 3];
        atomicAdd(&calls, 1u);
    }
}
