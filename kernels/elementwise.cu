// Elementwise kernels of the CUDA backend: every UnaryOp, its gradient, every BinaryOp, and fill.
// Each kernel must equal the CPU function named beside it (src/backend/cpu/kernels/elementwise.rs);
// the per-device op suite checks that on the PTX VM. Kernel names are `<op code>_<dtype>`, the op
// code being `UnaryOp::name` / `BinaryOp::name` (src/backend/ops.rs). Inputs are strided views
// (broadcast axes have stride 0); outputs are dense.

// ----- unary ops: value(x, p0, p1) and derivative(x, p0, p1) -------------------------------------
// CPU: unary_value and unary_derivative; p0/p1 are the op's parameters (slope, mul/add, exponent,
// min/max, scalar), 0 when it has none.

#define UNARY(NAME, VALUE, DERIV)                                                                     \
    template <typename T> __device__ __forceinline__ T NAME##_value(T x, T p0, T p1) { return VALUE; } \
    template <typename T> __device__ __forceinline__ T NAME##_deriv(T x, T p0, T p1) { return DERIV; }

UNARY(neg, -x, T(-1))
UNARY(exp, h_exp(x), h_exp(x))
UNARY(log, h_log(x), T(1) / x)
UNARY(sqrt, h_sqrt(x), T(0.5) / h_sqrt(x))
UNARY(abs, h_abs(x), x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0)))
UNARY(square, x * x, x + x)
UNARY(recip, T(1) / x, T(-1) / (x * x))
UNARY(relu, h_max(x, T(0)), x > T(0) ? T(1) : T(0))
UNARY(leaky_relu, x > T(0) ? x : x * p0, x > T(0) ? T(1) : p0)
UNARY(sigmoid, h_sigmoid(x), h_sigmoid(x) * (T(1) - h_sigmoid(x)))
UNARY(silu, x * h_sigmoid(x), h_sigmoid(x) * (T(1) + x * (T(1) - h_sigmoid(x))))
UNARY(gelu, T(0.5) * x * (T(1) + h_erf(x * T(0.7071067811865476))),
      T(0.5) * (T(1) + h_erf(x * T(0.7071067811865476))) + x * h_exp(-(x * x) * T(0.5)) * T(0.3989422804014327))
UNARY(tanh, h_tanh(x), T(1) - h_tanh(x) * h_tanh(x))
UNARY(affine, x * p0 + p1, p0)
UNARY(powf, h_pow(x, p0), p0 * h_pow(x, p0 - T(1)))
UNARY(clamp, h_min(h_max(x, p0), p1), (x >= p0 && x <= p1) ? T(1) : T(0))
UNARY(max_scalar, h_max(x, p0), x > p0 ? T(1) : T(0))
UNARY(min_scalar, h_min(x, p0), x < p0 ? T(1) : T(0))
UNARY(positive, x > T(0) ? T(1) : T(0), T(0))

// CPU: elementwise::unary(x, layout, op)
#define UNARY_KERNEL(NAME, T, SUFFIX)                                                                   \
    extern "C" __global__ void NAME##_##SUFFIX(const T* x, StridedView xv, T* y, long long n, double p0, \
                                               double p1) {                                             \
        T a = (T)p0, b = (T)p1;                                                                         \
        GRID_STRIDE_LOOP(i, n) { y[i] = NAME##_value<T>(x[view_index(xv, i)], a, b); }                  \
    }

// CPU: elementwise::unary_grad(x, xl, grad, gl, op): grad * op'(x)
#define UNARY_GRAD_KERNEL(NAME, T, SUFFIX)                                                               \
    extern "C" __global__ void NAME##_grad_##SUFFIX(const T* x, StridedView xv, const T* g, StridedView gv, \
                                                    T* out, long long n, double p0, double p1) {            \
        T a = (T)p0, b = (T)p1;                                                                          \
        GRID_STRIDE_LOOP(i, n) { out[i] = g[view_index(gv, i)] * NAME##_deriv<T>(x[view_index(xv, i)], a, b); } \
    }

#define UNARY_ALL(NAME)                   \
    UNARY_KERNEL(NAME, float, f32)        \
    UNARY_KERNEL(NAME, double, f64)       \
    UNARY_GRAD_KERNEL(NAME, float, f32)   \
    UNARY_GRAD_KERNEL(NAME, double, f64)

UNARY_ALL(neg)
UNARY_ALL(exp)
UNARY_ALL(log)
UNARY_ALL(sqrt)
UNARY_ALL(abs)
UNARY_ALL(square)
UNARY_ALL(recip)
UNARY_ALL(relu)
UNARY_ALL(leaky_relu)
UNARY_ALL(sigmoid)
UNARY_ALL(silu)
UNARY_ALL(gelu)
UNARY_ALL(tanh)
UNARY_ALL(affine)
UNARY_ALL(powf)
UNARY_ALL(clamp)
UNARY_ALL(max_scalar)
UNARY_ALL(min_scalar)
UNARY_ALL(positive)

// ----- binary ops -----------------------------------------------------------------------------------
// CPU: elementwise::binary(a, al, b, bl, op) on operands already broadcast to one shape

#define BINARY(NAME, EXPR) \
    template <typename T> __device__ __forceinline__ T NAME##_binary(T a, T b) { return EXPR; }

BINARY(add, a + b)
BINARY(sub, a - b)
BINARY(mul, a * b)
BINARY(div, a / b)
BINARY(maximum, h_max(a, b))
BINARY(minimum, h_min(a, b))
BINARY(equal, a == b ? T(1) : T(0))

#define BINARY_KERNEL(NAME, T, SUFFIX)                                                                     \
    extern "C" __global__ void NAME##_##SUFFIX(const T* a, StridedView av, const T* b, StridedView bv, T* y, \
                                               long long n) {                                              \
        GRID_STRIDE_LOOP(i, n) { y[i] = NAME##_binary<T>(a[view_index(av, i)], b[view_index(bv, i)]); }   \
    }

#define BINARY_ALL(NAME)            \
    BINARY_KERNEL(NAME, float, f32) \
    BINARY_KERNEL(NAME, double, f64)

BINARY_ALL(add)
BINARY_ALL(sub)
BINARY_ALL(mul)
BINARY_ALL(div)
BINARY_ALL(maximum)
BINARY_ALL(minimum)
BINARY_ALL(equal)
