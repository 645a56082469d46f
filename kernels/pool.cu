// Pooling kernels of the CUDA backend: max and average pooling over dense NCDHW data (2D is depth
// 1), forward and backward. CPU twins in src/backend/cpu/kernels/pool.rs. Every window visits its
// taps in the CPU's order (depth, height, width), so forward values are the CPU's bits. Backward
// passes are gathers (one thread per input element sums the gradients of the windows holding it,
// in the order the CPU's scatter adds them): deterministic whatever the launch shape, no atomics.

// Sizes of a pooling, as src/backend/cuda/pool.rs `PoolParams` (same field order, all 64-bit).
struct PoolParams {
    long long planes;  // batch * channels
    long long in[3];   // input (depth, height, width)
    long long out[3];  // output (depth, height, width)
    long long kernel[3];
    long long stride[3];
    long long pad[3];
    long long dil[3];
    long long count_include_pad;
};

// The window taps of output `o` on `axis` that lie inside the input: first + k * dil, k < count.
// CPU: valid_taps
struct Taps {
    long long first;
    long long count;
};

__device__ __forceinline__ Taps valid_taps(const PoolParams& p, int a, long long o) {
    long long start = o * p.stride[a] - p.pad[a];
    long long step = p.dil[a];
    long long skip = start < 0 ? (-start + step - 1) / step : 0;
    long long first = start + skip * step;
    long long len = p.in[a];
    long long count = 0;
    if (first < len && skip < p.kernel[a]) {
        count = (len - 1 - first) / step + 1;
        if (count > p.kernel[a] - skip) count = p.kernel[a] - skip;
    }
    Taps t;
    t.first = first > 0 ? first : 0;
    t.count = count;
    return t;
}

// Average pooling's divisor factor on one axis: the window clipped to the padded input when the
// padding counts, else the taps inside the input. CPU: average_window
__device__ __forceinline__ long long average_size(const PoolParams& p, int a, long long o, const Taps& t) {
    if (!p.count_include_pad) return t.count;
    long long start = o * p.stride[a] - p.pad[a];
    long long end = start + p.kernel[a];
    long long limit = p.in[a] + p.pad[a];
    if (end > limit) end = limit;
    return end - start;
}

template <typename T> __device__ __forceinline__ T neg_infinity();
template <> __device__ __forceinline__ float neg_infinity<float>() { return __int_as_float(0xff800000); }
template <> __device__ __forceinline__ double neg_infinity<double>() {
    return __longlong_as_double(0xfff0000000000000ULL);
}

// One thread per output: the window's maximum (NaN wins, later NaNs replace earlier ones, ties keep
// the first) and its index within the input plane, `(d * H + h) * W + w`. Padding never wins; a
// window of -inf keeps the index of its first tap, as the CPU does.
template <typename T, bool VALUES, bool INDICES>
__device__ __forceinline__ void max_pool_body(const T* __restrict__ x, T* __restrict__ y,
                                              long long* __restrict__ argmax, const PoolParams& p) {
    const long long in_plane = p.in[0] * p.in[1] * p.in[2];
    const long long n = p.planes * p.out[0] * p.out[1] * p.out[2];
    const long long ih = p.in[1], iw = p.in[2];
    GRID_STRIDE_LOOP(i, n) {
        long long nc, od, oh, ow;
        unflatten(i, p.out, nc, od, oh, ow);
        Taps td = valid_taps(p, 0, od), th = valid_taps(p, 1, oh), tw = valid_taps(p, 2, ow);
        const T* xp = x + nc * in_plane;
        T best = neg_infinity<T>();
        long long best_at = (td.first * ih + th.first) * iw + tw.first;
        for (long long kd = 0; kd < td.count; ++kd) {
            long long d = td.first + kd * p.dil[0];
            for (long long kh = 0; kh < th.count; ++kh) {
                long long row = (d * ih + th.first + kh * p.dil[1]) * iw;
                for (long long kw = 0; kw < tw.count; ++kw) {
                    long long at = row + tw.first + kw * p.dil[2];
                    T v = xp[at];
                    if (v > best || isnan(v)) {
                        best = v;
                        best_at = at;
                    }
                }
            }
        }
        if (VALUES) y[i] = best;
        if (INDICES) argmax[i] = best_at;
    }
}

// One thread per input element: the sum of the output gradients whose window's argmax it is, added
// in output order as the CPU's scatter does. Along each axis the windows holding coordinate `c` are
// those with o * stride + k * dil - pad == c; k descending gives o ascending.
template <typename T>
__device__ __forceinline__ void max_pool_backward_body(const T* __restrict__ grad_out,
                                                       const long long* __restrict__ argmax,
                                                       T* __restrict__ grad_in, const PoolParams& p) {
    const long long out_plane = p.out[0] * p.out[1] * p.out[2];
    const long long n = p.planes * p.in[0] * p.in[1] * p.in[2];
    GRID_STRIDE_LOOP(i, n) {
        long long nc, d, h, w;
        unflatten(i, p.in, nc, d, h, w);
        const long long here = (d * p.in[1] + h) * p.in[2] + w;
        const T* g = grad_out + nc * out_plane;
        const long long* am = argmax + nc * out_plane;
        T acc = T(0);
        for (long long kd = p.kernel[0] - 1; kd >= 0; --kd) {
            long long nd = d + p.pad[0] - kd * p.dil[0];
            if (nd < 0 || nd % p.stride[0] != 0 || nd / p.stride[0] >= p.out[0]) continue;
            long long od = nd / p.stride[0];
            for (long long kh = p.kernel[1] - 1; kh >= 0; --kh) {
                long long nh = h + p.pad[1] - kh * p.dil[1];
                if (nh < 0 || nh % p.stride[1] != 0 || nh / p.stride[1] >= p.out[1]) continue;
                long long oh = nh / p.stride[1];
                for (long long kw = p.kernel[2] - 1; kw >= 0; --kw) {
                    long long nw = w + p.pad[2] - kw * p.dil[2];
                    if (nw < 0 || nw % p.stride[2] != 0 || nw / p.stride[2] >= p.out[2]) continue;
                    long long o = (od * p.out[1] + oh) * p.out[2] + nw / p.stride[2];
                    if (am[o] == here) acc = add_rn(acc, g[o]);
                }
            }
        }
        grad_in[i] = acc;
    }
}

// One thread per output: the window's sum in the CPU's tap order over its divisor (0 when the
// divisor is 0).
template <typename T>
__device__ __forceinline__ void avg_pool_body(const T* __restrict__ x, T* __restrict__ y, const PoolParams& p) {
    const long long in_plane = p.in[0] * p.in[1] * p.in[2];
    const long long n = p.planes * p.out[0] * p.out[1] * p.out[2];
    const long long ih = p.in[1], iw = p.in[2];
    GRID_STRIDE_LOOP(i, n) {
        long long nc, od, oh, ow;
        unflatten(i, p.out, nc, od, oh, ow);
        Taps td = valid_taps(p, 0, od), th = valid_taps(p, 1, oh), tw = valid_taps(p, 2, ow);
        const T* xp = x + nc * in_plane;
        T sum = T(0);
        for (long long kd = 0; kd < td.count; ++kd) {
            for (long long kh = 0; kh < th.count; ++kh) {
                const T* row = xp + ((td.first + kd) * ih + th.first + kh) * iw + tw.first;
                for (long long kw = 0; kw < tw.count; ++kw) sum = add_rn(sum, row[kw]);
            }
        }
        long long divisor = average_size(p, 0, od, td) * average_size(p, 1, oh, th) * average_size(p, 2, ow, tw);
        y[i] = divisor == 0 ? T(0) : sum / (T)divisor;
    }
}

// One thread per input element: the shares g / divisor of the windows holding it, in the CPU's
// order (output depth and height ascending, then width taps ascending, i.e. output width
// descending). Average pooling has dilation 1.
template <typename T>
__device__ __forceinline__ void avg_pool_backward_body(const T* __restrict__ grad_out, T* __restrict__ grad_in,
                                                       const PoolParams& p) {
    const long long out_plane = p.out[0] * p.out[1] * p.out[2];
    const long long n = p.planes * p.in[0] * p.in[1] * p.in[2];
    GRID_STRIDE_LOOP(i, n) {
        long long nc, d, h, w;
        unflatten(i, p.in, nc, d, h, w);
        const T* g = grad_out + nc * out_plane;
        T acc = T(0);
        for (long long kd = p.kernel[0] - 1; kd >= 0; --kd) {
            long long nd = d + p.pad[0] - kd;
            if (nd < 0 || nd % p.stride[0] != 0 || nd / p.stride[0] >= p.out[0]) continue;
            long long od = nd / p.stride[0];
            long long sd = average_size(p, 0, od, valid_taps(p, 0, od));
            for (long long kh = p.kernel[1] - 1; kh >= 0; --kh) {
                long long nh = h + p.pad[1] - kh;
                if (nh < 0 || nh % p.stride[1] != 0 || nh / p.stride[1] >= p.out[1]) continue;
                long long oh = nh / p.stride[1];
                long long sh = average_size(p, 1, oh, valid_taps(p, 1, oh));
                for (long long kw = 0; kw < p.kernel[2]; ++kw) {
                    long long nw = w + p.pad[2] - kw;
                    if (nw < 0 || nw % p.stride[2] != 0 || nw / p.stride[2] >= p.out[2]) continue;
                    long long ow = nw / p.stride[2];
                    long long divisor = sd * sh * average_size(p, 2, ow, valid_taps(p, 2, ow));
                    T share = divisor == 0 ? T(0) : g[(od * p.out[1] + oh) * p.out[2] + ow] / (T)divisor;
                    acc = add_rn(acc, share);
                }
            }
        }
        grad_in[i] = acc;
    }
}

#define POOL_KERNELS(T, SUFFIX)                                                                          \
    /* CPU: pool::max_pool_forward (values) */                                                           \
    extern "C" __global__ void max_pool_##SUFFIX(const T* x, T* y, PoolParams p) {                       \
        max_pool_body<T, true, false>(x, y, nullptr, p);                                                 \
    }                                                                                                    \
    /* CPU: pool::max_pool_forward (argmax, as CpuStorage::max_pool_backward recomputes it) */           \
    extern "C" __global__ void max_pool_argmax_##SUFFIX(const T* x, long long* argmax, PoolParams p) {   \
        max_pool_body<T, false, true>(x, nullptr, argmax, p);                                            \
    }                                                                                                    \
    /* CPU: pool::max_pool_backward */                                                                   \
    extern "C" __global__ void max_pool_backward_##SUFFIX(const T* grad_out, const long long* argmax,     \
                                                          T* grad_in, PoolParams p) {                    \
        max_pool_backward_body<T>(grad_out, argmax, grad_in, p);                                         \
    }                                                                                                    \
    /* CPU: pool::avg_pool_forward */                                                                    \
    extern "C" __global__ void avg_pool_##SUFFIX(const T* x, T* y, PoolParams p) { avg_pool_body<T>(x, y, p); } \
    /* CPU: pool::avg_pool_backward */                                                                   \
    extern "C" __global__ void avg_pool_backward_##SUFFIX(const T* grad_out, T* grad_in, PoolParams p) { \
        avg_pool_backward_body<T>(grad_out, grad_in, p);                                                 \
    }

POOL_KERNELS(float, f32)
POOL_KERNELS(double, f64)
