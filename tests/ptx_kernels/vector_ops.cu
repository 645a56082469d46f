// Elementwise kernels: a*x + y, and a fused multiply/select/min with integer indexing.
extern "C" __global__ void saxpy(float a, const float* x, const float* y, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a * x[i] + y[i];
}

extern "C" __global__ void vector_mix(const float* x, const int* k, float* out, double* out64, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i];
    int m = k[i];
    float r = (m % 3 == 0) ? fminf(v, 0.5f) : fmaxf(v * v, (float)(m >> 1));
    r += sqrtf(fabsf(v)) + expf(-v * v) + (float)(m / 7) + __int_as_float(__float_as_int(v) & 0x7fffffff);
    out[i] = r;
    out64[i] = (double)v * 3.0 - (double)m / 9.0;
}
