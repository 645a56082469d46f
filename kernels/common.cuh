// Helpers every kernel file of the CUDA backend sees first (src/backend/cuda/mod.rs prepends
// this file): the strided view of a tensor argument, the grid-stride loop, NCDHW indexing and
// math overloads so that one template body serves f32 and f64.

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

// Splits a flat NCDHW index into (plane n*C+c, d, h, w) for spatial sizes `dims`.
__device__ __forceinline__ void unflatten(long long i, const long long dims[3], long long& nc, long long& d,
                                          long long& h, long long& w) {
    w = i % dims[2];
    i /= dims[2];
    h = i % dims[1];
    i /= dims[1];
    d = i % dims[0];
    nc = i / dims[0];
}

__device__ __forceinline__ float h_exp(float x) { return expf(x); }
__device__ __forceinline__ double h_exp(double x) { return exp(x); }
__device__ __forceinline__ float h_log(float x) { return logf(x); }
__device__ __forceinline__ double h_log(double x) { return log(x); }
__device__ __forceinline__ float h_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double h_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float h_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double h_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float h_erf(float x) { return erff(x); }
__device__ __forceinline__ double h_erf(double x) { return erf(x); }
__device__ __forceinline__ float h_pow(float x, float e) { return powf(x, e); }
__device__ __forceinline__ double h_pow(double x, double e) { return pow(x, e); }
__device__ __forceinline__ float h_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double h_abs(double x) { return fabs(x); }
__device__ __forceinline__ float h_floor(float x) { return floorf(x); }
__device__ __forceinline__ double h_floor(double x) { return floor(x); }
// fmax/fmin return the non-NaN operand, as Rust's f32::max/min do.
__device__ __forceinline__ float h_max(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double h_max(double a, double b) { return fmax(a, b); }
__device__ __forceinline__ float h_min(float a, float b) { return fminf(a, b); }
__device__ __forceinline__ double h_min(double a, double b) { return fmin(a, b); }

// Separately rounded arithmetic: never contracted into a fused multiply-add, so a kernel that
// must give the CPU's bits performs exactly the CPU's operations.
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ float div_rn(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double div_rn(double a, double b) { return __ddiv_rn(a, b); }
__device__ __forceinline__ float sqrt_rn(float a) { return __fsqrt_rn(a); }
__device__ __forceinline__ double sqrt_rn(double a) { return __dsqrt_rn(a); }
template <typename T> __device__ __forceinline__ T h_sigmoid(T x) { return T(1) / (T(1) + h_exp(-x)); }
