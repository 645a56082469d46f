// Elementwise kernels of the CUDA backend. Each kernel must equal the CPU function named beside
// it (src/backend/cpu/kernels/elementwise.rs); tests/cuda_kernels.rs checks that on the PTX VM.
// One thread per element with a grid-stride loop, so any grid size covers any length.

#define GRID_STRIDE_LOOP(i, n) \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

// CPU: unary_value(UnaryOp::Exp)
extern "C" __global__ void exp_f32(const float* x, float* y, long long n) {
    GRID_STRIDE_LOOP(i, n) { y[i] = expf(x[i]); }
}

// CPU: unary_value(UnaryOp::Sigmoid)
extern "C" __global__ void sigmoid_f32(const float* x, float* y, long long n) {
    GRID_STRIDE_LOOP(i, n) { y[i] = sigmoidf_(x[i]); }
}

// CPU: unary_value(UnaryOp::Silu)
extern "C" __global__ void silu_f32(const float* x, float* y, long long n) {
    GRID_STRIDE_LOOP(i, n) {
        float v = x[i];
        y[i] = v * sigmoidf_(v);
    }
}

// CPU: unary_value(UnaryOp::Relu)
extern "C" __global__ void relu_f32(const float* x, float* y, long long n) {
    GRID_STRIDE_LOOP(i, n) { y[i] = fmaxf(x[i], 0.0f); }
}

// CPU: unary_value(UnaryOp::Affine { mul, add })
extern "C" __global__ void affine_f32(const float* x, float* y, long long n, float mul, float add) {
    GRID_STRIDE_LOOP(i, n) { y[i] = x[i] * mul + add; }
}

// CPU: unary_grad(UnaryOp::Sigmoid): grad * s * (1 - s)
extern "C" __global__ void sigmoid_grad_f32(const float* x, const float* grad, float* out, long long n) {
    GRID_STRIDE_LOOP(i, n) {
        float s = sigmoidf_(x[i]);
        out[i] = grad[i] * s * (1.0f - s);
    }
}

// CPU: unary_grad(UnaryOp::Silu): grad * s * (1 + x (1 - s))
extern "C" __global__ void silu_grad_f32(const float* x, const float* grad, float* out, long long n) {
    GRID_STRIDE_LOOP(i, n) {
        float v = x[i];
        float s = sigmoidf_(v);
        out[i] = grad[i] * s * (1.0f + v * (1.0f - s));
    }
}

// CPU: binary(BinaryOp::Add) on same-shape dense operands
extern "C" __global__ void add_f32(const float* a, const float* b, float* y, long long n) {
    GRID_STRIDE_LOOP(i, n) { y[i] = a[i] + b[i]; }
}

// CPU: binary(BinaryOp::Mul) on same-shape dense operands
extern "C" __global__ void mul_f32(const float* a, const float* b, float* y, long long n) {
    GRID_STRIDE_LOOP(i, n) { y[i] = a[i] * b[i]; }
}
