// Reductions and softmax of the CUDA backend. CPU twins in src/backend/cpu/kernels/reduce.rs
// (`reduce`, `softmax`). The host (src/backend/cuda/reduce.rs) splits a view into the kept axes
// (`kept`, with the view's offset: output index -> start of its run) and the reduced axes (`red`,
// offset 0: position in the run -> storage step), so every kernel reduces runs of one strided
// view; it also picks the kernel (block per output or thread per output), see `plan` there.
// Kernel names: `reduce_rows_<op>_<dtype>`, `reduce_cols_<op>_<dtype>`, `softmax_rows_<dtype>`,
// `softmax_cols_<dtype>`, with <op> = `ReduceOp::name`. Block kernels need blockDim.x to be a
// multiple of 32 (the host rounds it), since warps reduce with full-mask shuffles.

template <typename T> __device__ __forceinline__ T h_inf();
template <> __device__ __forceinline__ float h_inf<float>() { return __int_as_float(0x7f800000); }
template <> __device__ __forceinline__ double h_inf<double>() {
    return __longlong_as_double(0x7ff0000000000000LL);
}

// ----- combining rules ---------------------------------------------------------------------------
// CPU: reduce::combine and reduce::identity. Max/Min let a NaN win from either side, so NaN
// propagates whatever order the tree combines partial results in.
template <typename T> struct SumOp {
    static __device__ __forceinline__ T identity() { return T(0); }
    static __device__ __forceinline__ T combine(T acc, T v) { return acc + v; }
};
template <typename T> struct MaxOp {
    static __device__ __forceinline__ T identity() { return -h_inf<T>(); }
    static __device__ __forceinline__ T combine(T acc, T v) { return (v > acc || isnan(v)) ? v : acc; }
};
template <typename T> struct MinOp {
    static __device__ __forceinline__ T identity() { return h_inf<T>(); }
    static __device__ __forceinline__ T combine(T acc, T v) { return (v < acc || isnan(v)) ? v : acc; }
};
// Softmax's row maximum ignores NaN as Rust's f32::max does (fmax returns the non-NaN operand);
// a NaN then reaches every output of its row through exp(NaN - max) in the sum.
template <typename T> struct FmaxOp {
    static __device__ __forceinline__ T identity() { return -h_inf<T>(); }
    static __device__ __forceinline__ T combine(T acc, T v) { return fmax(acc, v); }
};

// A thread's running result over many values: values are first combined in groups of 64, then
// the groups, so an f32 sum over a long run does not add tiny values to a huge total one by one
// (a cheap two-level pairwise sum; a no-op in effect for max/min).
template <typename T, typename Op> struct Accumulator {
    T total, part;
    int count;
    __device__ __forceinline__ Accumulator() : total(Op::identity()), part(Op::identity()), count(0) {}
    __device__ __forceinline__ void add(T v) {
        part = Op::combine(part, v);
        if (++count == 64) {
            total = Op::combine(total, part);
            part = Op::identity();
            count = 0;
        }
    }
    __device__ __forceinline__ T result() const { return Op::combine(total, part); }
};

template <typename T, typename Op> __device__ __forceinline__ T warp_reduce(T v) {
    for (int off = 16; off > 0; off >>= 1) v = Op::combine(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

// Tree reduction of one value per thread over the block; every thread gets the result. `buf` is
// shared memory for 33 values: one partial per warp, and the result in buf[32]. Back-to-back calls
// (the grid-stride loops, softmax's max then sum) need no extra barrier: warp 0 reads the partials
// before the last barrier, and the next call rewrites buf[32] only after its own middle barrier,
// which every thread reaches after reading the previous result (racecheck confirms both).
template <typename T, typename Op> __device__ T block_reduce(T v, T* buf) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_reduce<T, Op>(v);
    if (lane == 0) buf[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < warps ? buf[lane] : Op::identity();
        v = warp_reduce<T, Op>(v);
        if (lane == 0) buf[32] = v;
    }
    __syncthreads();
    return buf[32];
}

// ----- reduce --------------------------------------------------------------------------------------
// Output item b = o * chunks + c reduces piece c (positions [c * chunk_len, (c + 1) * chunk_len)
// of the run) of output o; chunks = 1 is one block per output, chunks > 1 the first pass of a
// two-pass reduction (the host reduces the [n_out, chunks] partials again).
// CPU: reduce::reduce(x, layout, axes, op)
template <typename T, typename Op>
__device__ void reduce_rows(const T* x, const StridedView& kept, const StridedView& red, T* out,
                            long long n_out, long long inner, long long chunks, long long chunk_len,
                            T* buf) {
    const long long items = n_out * chunks;
    for (long long b = blockIdx.x; b < items; b += gridDim.x) {
        const long long o = b / chunks, c = b % chunks;
        const long long base = view_index(kept, o);
        const long long k0 = c * chunk_len;
        const long long k1 = min(inner, k0 + chunk_len);
        Accumulator<T, Op> acc;
        for (long long k = k0 + threadIdx.x; k < k1; k += blockDim.x) acc.add(x[base + view_index(red, k)]);
        T r = block_reduce<T, Op>(acc.result(), buf);
        if (threadIdx.x == 0) out[b] = r;
    }
}

// Output item t = c * n_out + o (neighbouring threads take neighbouring outputs, so reads are
// coalesced when the kept axes hold the unit stride); one thread reduces piece c of run o.
// CPU: reduce::reduce(x, layout, axes, op)
template <typename T, typename Op>
__device__ void reduce_cols(const T* x, const StridedView& kept, const StridedView& red, T* out,
                            long long n_out, long long inner, long long chunks, long long chunk_len) {
    GRID_STRIDE_LOOP(t, n_out * chunks) {
        const long long o = t % n_out, c = t / n_out;
        const long long base = view_index(kept, o);
        const long long k0 = c * chunk_len;
        const long long k1 = min(inner, k0 + chunk_len);
        Accumulator<T, Op> acc;
        for (long long k = k0; k < k1; ++k) acc.add(x[base + view_index(red, k)]);
        out[t] = acc.result();
    }
}

#define REDUCE_KERNELS(NAME, OP, T, SUFFIX)                                                                \
    /* CPU: reduce::reduce (block per output, or per piece of one) */                                  \
    extern "C" __global__ void reduce_rows_##NAME##_##SUFFIX(const T* x, StridedView kept, StridedView red, \
                                                             T* out, long long n_out, long long inner,      \
                                                             long long chunks, long long chunk_len) {       \
        __shared__ T buf[33];                                                                           \
        reduce_rows<T, OP<T>>(x, kept, red, out, n_out, inner, chunks, chunk_len, buf);                 \
    }                                                                                                   \
    /* CPU: reduce::reduce (thread per output, or per piece of one) */                                 \
    extern "C" __global__ void reduce_cols_##NAME##_##SUFFIX(const T* x, StridedView kept, StridedView red, \
                                                             T* out, long long n_out, long long inner,      \
                                                             long long chunks, long long chunk_len) {       \
        reduce_cols<T, OP<T>>(x, kept, red, out, n_out, inner, chunks, chunk_len);                      \
    }

REDUCE_KERNELS(sum, SumOp, float, f32)
REDUCE_KERNELS(sum, SumOp, double, f64)
REDUCE_KERNELS(max, MaxOp, float, f32)
REDUCE_KERNELS(max, MaxOp, double, f64)
REDUCE_KERNELS(min, MinOp, float, f32)
REDUCE_KERNELS(min, MinOp, double, f64)

// ----- softmax -------------------------------------------------------------------------------------
// Row r of the softmax axis starts at view_index(kept, r) and steps by `step` in x; in the dense
// output (the input's logical order) it starts at (r / inner) * len * inner + r % inner and steps
// by `inner` (the product of the axes after the softmax axis). Max-subtracted as the CPU:
// y = exp(v - max) / sum, log y = v - (max + log sum).

// One block per row: block-wide max, then block-wide sum; for long rows (attention over every
// voxel of a feature map).
// CPU: reduce::softmax(x, layout, axis, log)
template <typename T>
__device__ void softmax_rows(const T* x, const StridedView& kept, long long step, T* y, long long rows,
                             long long len, long long inner, int log_out, T* buf) {
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const long long src = view_index(kept, r);
        const long long dst = (r / inner) * len * inner + r % inner;
        T m = FmaxOp<T>::identity();
        for (long long k = threadIdx.x; k < len; k += blockDim.x) m = fmax(m, x[src + k * step]);
        m = block_reduce<T, FmaxOp<T>>(m, buf);
        Accumulator<T, SumOp<T>> acc;
        for (long long k = threadIdx.x; k < len; k += blockDim.x) acc.add(h_exp(x[src + k * step] - m));
        const T sum = block_reduce<T, SumOp<T>>(acc.result(), buf);
        if (log_out) {
            const T lse = m + h_log(sum);
            for (long long k = threadIdx.x; k < len; k += blockDim.x) y[dst + k * inner] = x[src + k * step] - lse;
        } else {
            const T inv = T(1) / sum;
            for (long long k = threadIdx.x; k < len; k += blockDim.x)
                y[dst + k * inner] = h_exp(x[src + k * step] - m) * inv;
        }
    }
}

// One thread per row: for short axes with many rows (channel softmax of [N, C, D, H, W] over C:
// neighbouring threads take neighbouring voxels, so each step over C is a coalesced read).
// CPU: reduce::softmax(x, layout, axis, log)
template <typename T>
__device__ void softmax_cols(const T* x, const StridedView& kept, long long step, T* y, long long rows,
                             long long len, long long inner, int log_out) {
    GRID_STRIDE_LOOP(r, rows) {
        const long long src = view_index(kept, r);
        const long long dst = (r / inner) * len * inner + r % inner;
        T m = FmaxOp<T>::identity();
        for (long long k = 0; k < len; ++k) m = fmax(m, x[src + k * step]);
        Accumulator<T, SumOp<T>> acc;
        for (long long k = 0; k < len; ++k) acc.add(h_exp(x[src + k * step] - m));
        const T sum = acc.result();
        if (log_out) {
            const T lse = m + h_log(sum);
            for (long long k = 0; k < len; ++k) y[dst + k * inner] = x[src + k * step] - lse;
        } else {
            const T inv = T(1) / sum;
            for (long long k = 0; k < len; ++k) y[dst + k * inner] = h_exp(x[src + k * step] - m) * inv;
        }
    }
}

#define SOFTMAX_KERNELS(T, SUFFIX)                                                                        \
    /* CPU: reduce::softmax (block per row) */                                                         \
    extern "C" __global__ void softmax_rows_##SUFFIX(const T* x, StridedView kept, long long step, T* y,   \
                                                     long long rows, long long len, long long inner,      \
                                                     int log_out) {                                       \
        __shared__ T buf[33];                                                                           \
        softmax_rows<T>(x, kept, step, y, rows, len, inner, log_out, buf);                              \
    }                                                                                                   \
    /* CPU: reduce::softmax (thread per row) */                                                        \
    extern "C" __global__ void softmax_cols_##SUFFIX(const T* x, StridedView kept, long long step, T* y,   \
                                                     long long rows, long long len, long long inner,      \
                                                     int log_out) {                                       \
        softmax_cols<T>(x, kept, step, y, rows, len, inner, log_out);                                   \
    }

SOFTMAX_KERNELS(float, f32)
SOFTMAX_KERNELS(double, f64)
