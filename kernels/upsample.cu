// Resampling kernels of the CUDA backend: nearest and (bi/tri)linear over dense NCDHW data (1D and
// 2D have unit leading axes), forward and backward. CPU twins in src/backend/cpu/kernels/upsample.rs.
// Coordinate maps use the CPU's formulas in the CPU's float types (nearest in f32, linear in the
// element type) with the per-axis ratio computed on the host as the CPU does, and every product
// and sum is rounded on its own (`__fmul_rn`/`__fadd_rn`: never contracted into a fused
// multiply-add), so indices, weights and results are the CPU's bits. The backward pass is a
// gather, one thread per input element, adding terms in the order of the CPU's scatter.

// As src/backend/cuda/upsample.rs `UpsampleParams` (same field order, all 64-bit).
struct UpsampleParams {
    long long planes;  // batch * channels
    long long in[3];   // input (depth, height, width)
    long long out[3];  // output (depth, height, width)
    long long linear;  // 0: nearest, 1: linear
    long long align_corners;
    double ratio[3];   // linear: the source step in the element type; nearest: the f32 scale
};

// One output coordinate's sources along one axis: w0 * in[i0] + w1 * in[i1].
template <typename T> struct Taps {
    long long i0, i1;
    T w0, w1;
};

// CPU: nearest_source (its scale is f32 whatever the element type)
__device__ __forceinline__ long long nearest_source(long long dst, long long input, long long output, float s) {
    if (output == input) return dst;
    if (output == 2 * input) return dst >> 1;
    long long i = (long long)floorf(__fmul_rn((float)dst, s));
    return i < input - 1 ? i : input - 1;
}

// CPU: linear_taps, and the (1, 0) taps of nearest (axis_tables)
template <typename T> __device__ __forceinline__ Taps<T> axis_taps(const UpsampleParams& p, int a, long long dst) {
    Taps<T> t;
    const long long input = p.in[a];
    if (!p.linear) {
        t.i0 = t.i1 = nearest_source(dst, input, p.out[a], (float)p.ratio[a]);
        t.w0 = T(1);
        t.w1 = T(0);
        return t;
    }
    const T ratio = (T)p.ratio[a];
    T real;
    if (p.align_corners) {
        real = mul_rn(ratio, (T)dst);
    } else {
        T r = sub_rn(mul_rn(ratio, add_rn((T)dst, T(0.5))), T(0.5));
        real = r < T(0) ? T(0) : r;
    }
    long long i0 = (long long)h_floor(real);
    if (i0 > input - 1) i0 = input - 1;
    if (i0 < 0) i0 = 0;
    T lambda = h_min(h_max(sub_rn(real, (T)i0), T(0)), T(1));
    t.i0 = i0;
    t.i1 = i0 < input - 1 ? i0 + 1 : i0;
    t.w0 = sub_rn(T(1), lambda);
    t.w1 = lambda;
    return t;
}

// The outputs [lo, hi) along axis `a` that read input coordinate `c`. Source indices never
// decrease with the output coordinate (every step of the map is monotone), so the outputs reading
// `c` are contiguous: for nearest those with i0 == c, for linear those with i0 in {c - 1, c}
// (i1 is i0 + 1 below the last input, i0 at it). Found by binary search on i0.
template <typename T> __device__ __forceinline__ long long first_reaching(const UpsampleParams& p, int a, long long v) {
    long long lo = 0, hi = p.out[a];
    while (lo < hi) {
        long long mid = lo + (hi - lo) / 2;
        if (axis_taps<T>(p, a, mid).i0 >= v) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

template <typename T>
__device__ __forceinline__ void readers(const UpsampleParams& p, int a, long long c, long long& lo, long long& hi) {
    lo = first_reaching<T>(p, a, p.linear ? c - 1 : c);
    hi = first_reaching<T>(p, a, c + 1);
}

// One thread per output. Linear: the CPU blends the four (depth, height) source rows first, then
// interpolates along the width; the same products and sums in the same order here.
template <typename T>
__device__ __forceinline__ void upsample_body(const T* __restrict__ x, T* __restrict__ y, const UpsampleParams& p) {
    const long long in_plane = p.in[0] * p.in[1] * p.in[2];
    const long long n = p.planes * p.out[0] * p.out[1] * p.out[2];
    const long long ih = p.in[1], iw = p.in[2];
    GRID_STRIDE_LOOP(i, n) {
        long long nc, od, oh, ow;
        unflatten(i, p.out, nc, od, oh, ow);
        const T* xp = x + nc * in_plane;
        Taps<T> d = axis_taps<T>(p, 0, od), h = axis_taps<T>(p, 1, oh), w = axis_taps<T>(p, 2, ow);
        if (!p.linear) {
            y[i] = xp[(d.i0 * ih + h.i0) * iw + w.i0];
            continue;
        }
        const T* r00 = xp + (d.i0 * ih + h.i0) * iw;
        const T* r01 = xp + (d.i0 * ih + h.i1) * iw;
        const T* r10 = xp + (d.i1 * ih + h.i0) * iw;
        const T* r11 = xp + (d.i1 * ih + h.i1) * iw;
        T c00 = mul_rn(d.w0, h.w0), c01 = mul_rn(d.w0, h.w1), c10 = mul_rn(d.w1, h.w0), c11 = mul_rn(d.w1, h.w1);
        T b0 = add_rn(add_rn(add_rn(mul_rn(c00, r00[w.i0]), mul_rn(c01, r01[w.i0])), mul_rn(c10, r10[w.i0])),
                      mul_rn(c11, r11[w.i0]));
        T b1 = add_rn(add_rn(add_rn(mul_rn(c00, r00[w.i1]), mul_rn(c01, r01[w.i1])), mul_rn(c10, r10[w.i1])),
                      mul_rn(c11, r11[w.i1]));
        y[i] = add_rn(mul_rn(w.w0, b0), mul_rn(w.w1, b1));
    }
}

// One thread per input element (d, h, w). The CPU, per output (depth, height) pair in order,
// spreads the output row along the width into a row of input width (w0 * g at i0, then w1 * g at
// i1, outputs in order), then adds c * spread to each of its four corner rows whose weight c is
// not 0. Here the same: for each output (depth, height) pair reading (d, h), the spread value at w,
// then c * spread for each matching corner in the CPU's corner order.
template <typename T>
__device__ __forceinline__ void upsample_backward_body(const T* __restrict__ grad_out, T* __restrict__ grad_in,
                                                       const UpsampleParams& p) {
    const long long out_plane = p.out[0] * p.out[1] * p.out[2];
    const long long n = p.planes * p.in[0] * p.in[1] * p.in[2];
    const long long oh_n = p.out[1], ow_n = p.out[2];
    GRID_STRIDE_LOOP(i, n) {
        long long nc, d, h, w;
        unflatten(i, p.in, nc, d, h, w);
        long long d_lo, d_hi, h_lo, h_hi, w_lo, w_hi;
        readers<T>(p, 0, d, d_lo, d_hi);
        readers<T>(p, 1, h, h_lo, h_hi);
        readers<T>(p, 2, w, w_lo, w_hi);
        const T* g = grad_out + nc * out_plane;
        T acc = T(0);
        for (long long od = d_lo; od < d_hi; ++od) {
            Taps<T> td = axis_taps<T>(p, 0, od);
            for (long long oh = h_lo; oh < h_hi; ++oh) {
                Taps<T> th = axis_taps<T>(p, 1, oh);
                const T* g_row = g + (od * oh_n + oh) * ow_n;
                T spread = T(0);
                for (long long ow = w_lo; ow < w_hi; ++ow) {
                    Taps<T> tw = axis_taps<T>(p, 2, ow);
                    T gv = g_row[ow];
                    if (tw.i0 == w) spread = add_rn(spread, mul_rn(tw.w0, gv));
                    if (tw.i1 == w) spread = add_rn(spread, mul_rn(tw.w1, gv));
                }
                // Corners (i0, i0), (i0, i1), (i1, i0), (i1, i1) of (depth, height).
                for (int corner = 0; corner < 4; ++corner) {
                    long long cd = corner < 2 ? td.i0 : td.i1;
                    long long ch = (corner & 1) ? th.i1 : th.i0;
                    if (cd != d || ch != h) continue;
                    T c = mul_rn(corner < 2 ? td.w0 : td.w1, (corner & 1) ? th.w1 : th.w0);
                    if (c == T(0)) continue;
                    acc = add_rn(acc, mul_rn(c, spread));
                }
            }
        }
        grad_in[i] = acc;
    }
}

#define UPSAMPLE_KERNELS(T, SUFFIX)                                                                          \
    /* CPU: upsample::upsample_forward */                                                                    \
    extern "C" __global__ void upsample_##SUFFIX(const T* x, T* y, UpsampleParams p) { upsample_body<T>(x, y, p); } \
    /* CPU: upsample::upsample_backward */                                                                   \
    extern "C" __global__ void upsample_backward_##SUFFIX(const T* grad_out, T* grad_in, UpsampleParams p) { \
        upsample_backward_body<T>(grad_out, grad_in, p);                                                     \
    }

UPSAMPLE_KERNELS(float, f32)
UPSAMPLE_KERNELS(double, f64)
