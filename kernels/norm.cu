// Normalisation kernels of the CUDA backend: GroupNorm (optionally fused with SiLU) and
// BatchNorm, forward and backward. Each kernel must equal the CPU function named beside it
// (src/backend/cpu/kernels/norm.rs). Data is dense [N, C, S] (S = product of the spatial sizes;
// the launcher gathers strided inputs first) except where a kernel takes a StridedView.
//
// Statistics: one pass of shifted sums, sum(x - k) and sum((x - k)^2) in f64 per thread, where
// k is the first element of the group (or channel). Plain sum / sum-of-squares lose everything
// to cancellation when |mean| >> std; subtracting k (a value of the same data, so within a few
// std of the mean in practice) removes that, while keeping the per-element cost at two FMAs.
// Welford would be robust without the shift but needs an f64 division per element, which would
// make these memory-bound kernels compute-bound on a GPU. The sums then combine by plain
// addition in a fixed tree.
//
// Determinism: reductions run in blocks of NORM_BLOCK threads whatever the launch shape, in a
// fixed order (strided per-thread sums, a shuffle tree, then warp 0 over the warp partials), and
// no float atomics are used; same inputs give the same bits on every launch.

#define NORM_BLOCK 256
#define NORM_WARPS (NORM_BLOCK / 32)
#define FULL_MASK 0xffffffffu

// Sums a and b over the block (all NORM_BLOCK threads must call it); every thread gets the
// totals. `sh` holds 2 * NORM_WARPS + 2 doubles. Safe to call again right away: the partials
// are rewritten only after the next call's first barrier, once every thread has read the totals.
__device__ __forceinline__ void block_sum2(double& a, double& b, double* sh) {
    for (int o = 16; o > 0; o >>= 1) {
        a += __shfl_down_sync(FULL_MASK, a, o);
        b += __shfl_down_sync(FULL_MASK, b, o);
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        sh[warp] = a;
        sh[NORM_WARPS + warp] = b;
    }
    __syncthreads();
    if (warp == 0) {
        a = lane < NORM_WARPS ? sh[lane] : 0.0;
        b = lane < NORM_WARPS ? sh[NORM_WARPS + lane] : 0.0;
        for (int o = 16; o > 0; o >>= 1) {
            a += __shfl_down_sync(FULL_MASK, a, o);
            b += __shfl_down_sync(FULL_MASK, b, o);
        }
        if (lane == 0) {
            sh[2 * NORM_WARPS] = a;
            sh[2 * NORM_WARPS + 1] = b;
        }
    }
    __syncthreads();
    a = sh[2 * NORM_WARPS];
    b = sh[2 * NORM_WARPS + 1];
}

// Mean and biased variance from shifted sums over `count` values (count 0 reads as 1, as the CPU
// does). A NaN variance stays NaN (the comparison is false), as in the CPU's two-pass formula.
__device__ __forceinline__ void shifted_moments(double shift, double s1, double s2, long long count,
                                                double& mean, double& var) {
    double inv = 1.0 / (double)(count > 0 ? count : 1);
    double dm = s1 * inv;
    var = s2 * inv - dm * dm;
    if (var < 0.0) var = 0.0;
    mean = shift + dm;
}

// Advances a (channel, position) pair by `step` positions of `S` without a division per step.
__device__ __forceinline__ void advance(long long& c, long long& s, long long step, long long S) {
    s += step;
    if (s >= S) {
        long long q = s / S;
        c += q;
        s -= q * S;
    }
}

// ----- GroupNorm ------------------------------------------------------------------------------------

// CPU: norm::group_norm_forward. One block of NORM_BLOCK threads per (n, g): the statistics of
// the group's cg * S values in one pass, then y = x * scale + shift (scale, shift per channel,
// folded in f64 as the CPU does), then SiLU when `silu`. w and b may be null.
template <typename T>
__device__ void group_norm_fwd(const T* x, const T* w, const T* b, T* y, T* mean_out, T* rstd_out,
                               long long S, long long cg, long long groups, double eps, int silu) {
    __shared__ double sh[2 * NORM_WARPS + 2];
    long long ng = blockIdx.x;
    long long g = ng % groups;
    long long len = cg * S;
    const T* xg = x + ng * len;
    T* yg = y + ng * len;
    double shift = len > 0 ? (double)xg[0] : 0.0;
    double s1 = 0.0, s2 = 0.0;
    for (long long i = threadIdx.x; i < len; i += NORM_BLOCK) {
        double d = (double)xg[i] - shift;
        s1 += d;
        s2 += d * d;
    }
    block_sum2(s1, s2, sh);
    double mean, var;
    shifted_moments(shift, s1, s2, len, mean, var);
    double rstd = 1.0 / sqrt(var + eps);
    if (threadIdx.x == 0) {
        mean_out[ng] = (T)mean;
        rstd_out[ng] = (T)rstd;
    }
    if (len == 0) return;
    long long ci = threadIdx.x / S, s = threadIdx.x % S, cur = -1;
    T scale = T(0), sft = T(0);
    for (long long i = threadIdx.x; i < len; i += NORM_BLOCK) {
        if (ci != cur) {
            long long ch = g * cg + ci;
            double wv = w ? (double)w[ch] : 1.0;
            double bv = b ? (double)b[ch] : 0.0;
            scale = (T)(rstd * wv);
            sft = (T)(bv - mean * rstd * wv);
            cur = ci;
        }
        T t = xg[i] * scale + sft;
        yg[i] = silu ? t * h_sigmoid(t) : t;
        advance(ci, s, NORM_BLOCK, S);
    }
}

// The gradient reaching the normalised value (through SiLU when fused), and xhat.
template <typename T>
__device__ __forceinline__ T gn_grad_y(T xv, T gv, T m, T r, T w, T b, int silu, T& xhat) {
    xhat = (xv - m) * r;
    if (!silu) return gv;
    T t = xhat * w + b;
    T sg = h_sigmoid(t);
    return gv * sg * (T(1) + t * (T(1) - sg));
}

// CPU: norm::group_norm_backward, its per-channel sums. One block per (n, c): over the S values
// of the channel, part[2 * (n C + c)] = sum(gy * xhat) and part[2 * (n C + c) + 1] = sum(gy),
// in f64. These are the grad weight/bias partials of sample n and, weighted by w, the group sums.
template <typename T>
__device__ void group_norm_bwd_reduce(const T* x, const T* gout, const T* mean, const T* rstd, const T* w,
                                      const T* b, double* part, long long C, long long S, long long cg,
                                      long long groups, int silu) {
    __shared__ double sh[2 * NORM_WARPS + 2];
    long long nc = blockIdx.x;
    long long c = nc % C, n = nc / C;
    long long ng = n * groups + c / cg;
    T m = mean[ng], r = rstd[ng];
    T wv = w ? w[c] : T(1), bv = b ? b[c] : T(0);
    const T* xr = x + nc * S;
    const T* gr = gout + nc * S;
    double sa = 0.0, sb = 0.0;
    for (long long s = threadIdx.x; s < S; s += NORM_BLOCK) {
        T xhat;
        T gy = gn_grad_y(xr[s], gr[s], m, r, wv, bv, silu, xhat);
        sa += (double)(gy * xhat);
        sb += (double)gy;
    }
    block_sum2(sa, sb, sh);
    if (threadIdx.x == 0) {
        part[2 * nc] = sa;
        part[2 * nc + 1] = sb;
    }
}

// CPU: norm::group_norm_backward, the group coefficients and the weight/bias gradients. Items
// [0, N G): coef[2 ng] = sum_c w_c sum(gy) / len and coef[2 ng + 1] = sum_c w_c sum(gy xhat) / len
// over the group's channels; items [N G, N G + C): gw[c] = sum_n part_a, gb[c] = sum_n part_b,
// each sum in f64 in a fixed order.
template <typename T>
__device__ void group_norm_bwd_coef(const double* part, const T* w, double* coef, T* gw, T* gb, long long N,
                                    long long C, long long S, long long cg, long long groups) {
    long long total = N * groups + C;
    GRID_STRIDE_LOOP(i, total) {
        if (i < N * groups) {
            long long n = i / groups, g = i % groups;
            double sdx = 0.0, sdxx = 0.0;
            for (long long ci = 0; ci < cg; ++ci) {
                long long ch = g * cg + ci;
                double wv = w ? (double)w[ch] : 1.0;
                sdx += wv * part[2 * (n * C + ch) + 1];
                sdxx += wv * part[2 * (n * C + ch)];
            }
            double len = (double)(cg * S);
            coef[2 * i] = sdx / len;
            coef[2 * i + 1] = sdxx / len;
        } else {
            long long c = i - N * groups;
            double a = 0.0, bsum = 0.0;
            for (long long n = 0; n < N; ++n) {
                a += part[2 * (n * C + c)];
                bsum += part[2 * (n * C + c) + 1];
            }
            gw[c] = (T)a;
            gb[c] = (T)bsum;
        }
    }
}

// CPU: norm::group_norm_backward, the input gradient: dx = rstd * (gy * w - mean(dxhat) -
// xhat * mean(dxhat * xhat)), one thread per element.
template <typename T>
__device__ void group_norm_bwd_dx(const T* x, const T* gout, const T* mean, const T* rstd, const T* w,
                                  const T* b, const double* coef, T* gx, long long C, long long S, long long cg,
                                  long long groups, long long total, int silu) {
    GRID_STRIDE_LOOP(i, total) {
        long long nc = i / S;
        long long c = nc % C, n = nc / C;
        long long ng = n * groups + c / cg;
        T m = mean[ng], r = rstd[ng];
        T wv = w ? w[c] : T(1), bv = b ? b[c] : T(0);
        T xhat;
        T gy = gn_grad_y(x[i], gout[i], m, r, wv, bv, silu, xhat);
        T mdx = (T)coef[2 * ng], mdxx = (T)coef[2 * ng + 1];
        gx[i] = r * (gy * wv - mdx - xhat * mdxx);
    }
}

// ----- BatchNorm ------------------------------------------------------------------------------------

// CPU: norm::channel_stats. One block per channel: mean and biased variance over the N * S
// values of channel c, stored in the input's dtype.
template <typename T>
__device__ void batch_norm_stats(const T* x, T* mean_out, T* var_out, long long N, long long C, long long S) {
    __shared__ double sh[2 * NORM_WARPS + 2];
    long long c = blockIdx.x;
    long long count = N * S;
    double shift = count > 0 ? (double)x[c * S] : 0.0;
    double s1 = 0.0, s2 = 0.0;
    if (S > 0) {
        long long n = threadIdx.x / S, s = threadIdx.x % S;
        for (long long j = threadIdx.x; j < count; j += NORM_BLOCK) {
            double d = (double)x[(n * C + c) * S + s] - shift;
            s1 += d;
            s2 += d * d;
            advance(n, s, NORM_BLOCK, S);
        }
    }
    block_sum2(s1, s2, sh);
    double mean, var;
    shifted_moments(shift, s1, s2, count, mean, var);
    if (threadIdx.x == 0) {
        mean_out[c] = (T)mean;
        var_out[c] = (T)var;
    }
}

// CPU: norm::channel_affine. y = x * scale[c] + shift[c] with scale = rstd w and shift =
// b - mean rstd w folded in f64; x is read through its view, one thread per element.
template <typename T>
__device__ void batch_norm_apply(const T* x, StridedView xv, const T* mean, const T* rstd, const T* w,
                                 const T* b, T* y, long long C, long long S, long long total) {
    GRID_STRIDE_LOOP(i, total) {
        long long c = (i / S) % C;
        double wv = w ? (double)w[c] : 1.0;
        double bv = b ? (double)b[c] : 0.0;
        double m = (double)mean[c], r = (double)rstd[c];
        T scale = (T)(r * wv);
        T shift = (T)(bv - m * r * wv);
        y[i] = x[view_index(xv, i)] * scale + shift;
    }
}

// CPU: norm::batch_norm_train_backward, its per-channel sums. One block per channel over N * S:
// sums[2 c] = sum(gy), sums[2 c + 1] = sum(gy * xhat), in f64; gw[c] and gb[c] from them.
template <typename T>
__device__ void batch_norm_bwd_reduce(const T* x, const T* gout, const T* mean, const T* rstd, double* sums,
                                      T* gw, T* gb, long long N, long long C, long long S) {
    __shared__ double sh[2 * NORM_WARPS + 2];
    long long c = blockIdx.x;
    long long count = N * S;
    double m = (double)mean[c], r = (double)rstd[c];
    double sg = 0.0, sgx = 0.0;
    if (S > 0) {
        long long n = threadIdx.x / S, s = threadIdx.x % S;
        for (long long j = threadIdx.x; j < count; j += NORM_BLOCK) {
            long long k = (n * C + c) * S + s;
            double gy = (double)gout[k];
            sg += gy;
            sgx += gy * (((double)x[k] - m) * r);
            advance(n, s, NORM_BLOCK, S);
        }
    }
    block_sum2(sg, sgx, sh);
    if (threadIdx.x == 0) {
        sums[2 * c] = sg;
        sums[2 * c + 1] = sgx;
        gw[c] = (T)sgx;
        gb[c] = (T)sg;
    }
}

// CPU: norm::batch_norm_train_backward, the input gradient (in f64, as the CPU):
// dx = w rstd (gy - sum(gy) / count - xhat sum(gy xhat) / count), one thread per element.
template <typename T>
__device__ void batch_norm_bwd_dx(const T* x, const T* gout, const T* mean, const T* rstd, const T* w,
                                  const double* sums, T* gx, long long C, long long S, long long total,
                                  long long count) {
    GRID_STRIDE_LOOP(i, total) {
        long long c = (i / S) % C;
        double wv = w ? (double)w[c] : 1.0;
        double m = (double)mean[c], r = (double)rstd[c];
        double xhat = ((double)x[i] - m) * r;
        double cnt = (double)count;
        double v = wv * r * ((double)gout[i] - sums[2 * c] / cnt - xhat * sums[2 * c + 1] / cnt);
        gx[i] = (T)v;
    }
}

// ----- entry points: one per kernel and dtype ------------------------------------------------------

#define NORM_KERNELS(T, SUFFIX)                                                                              \
    extern "C" __global__ void __launch_bounds__(NORM_BLOCK) group_norm_fwd_##SUFFIX(                        \
        const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, long long S, long long cg,               \
        long long groups, double eps, int silu) {                                                            \
        group_norm_fwd<T>(x, w, b, y, mean, rstd, S, cg, groups, eps, silu);                                 \
    }                                                                                                        \
    extern "C" __global__ void __launch_bounds__(NORM_BLOCK) group_norm_bwd_reduce_##SUFFIX(                 \
        const T* x, const T* g, const T* mean, const T* rstd, const T* w, const T* b, double* part,          \
        long long C, long long S, long long cg, long long groups, int silu) {                                \
        group_norm_bwd_reduce<T>(x, g, mean, rstd, w, b, part, C, S, cg, groups, silu);                      \
    }                                                                                                        \
    extern "C" __global__ void group_norm_bwd_coef_##SUFFIX(const double* part, const T* w, double* coef,    \
                                                            T* gw, T* gb, long long N, long long C,          \
                                                            long long S, long long cg, long long groups) {   \
        group_norm_bwd_coef<T>(part, w, coef, gw, gb, N, C, S, cg, groups);                                  \
    }                                                                                                        \
    extern "C" __global__ void group_norm_bwd_dx_##SUFFIX(                                                   \
        const T* x, const T* g, const T* mean, const T* rstd, const T* w, const T* b, const double* coef,     \
        T* gx, long long C, long long S, long long cg, long long groups, long long total, int silu) {        \
        group_norm_bwd_dx<T>(x, g, mean, rstd, w, b, coef, gx, C, S, cg, groups, total, silu);               \
    }                                                                                                        \
    extern "C" __global__ void __launch_bounds__(NORM_BLOCK) batch_norm_stats_##SUFFIX(                      \
        const T* x, T* mean, T* var, long long N, long long C, long long S) {                                \
        batch_norm_stats<T>(x, mean, var, N, C, S);                                                          \
    }                                                                                                        \
    extern "C" __global__ void batch_norm_apply_##SUFFIX(const T* x, StridedView xv, const T* mean,          \
                                                         const T* rstd, const T* w, const T* b, T* y,        \
                                                         long long C, long long S, long long total) {        \
        batch_norm_apply<T>(x, xv, mean, rstd, w, b, y, C, S, total);                                        \
    }                                                                                                        \
    extern "C" __global__ void __launch_bounds__(NORM_BLOCK) batch_norm_bwd_reduce_##SUFFIX(                 \
        const T* x, const T* g, const T* mean, const T* rstd, double* sums, T* gw, T* gb, long long N,       \
        long long C, long long S) {                                                                          \
        batch_norm_bwd_reduce<T>(x, g, mean, rstd, sums, gw, gb, N, C, S);                                   \
    }                                                                                                        \
    extern "C" __global__ void batch_norm_bwd_dx_##SUFFIX(                                                   \
        const T* x, const T* g, const T* mean, const T* rstd, const T* w, const double* sums, T* gx,         \
        long long C, long long S, long long total, long long count) {                                        \
        batch_norm_bwd_dx<T>(x, g, mean, rstd, w, sums, gx, C, S, total, count);                             \
    }

NORM_KERNELS(float, f32)
NORM_KERNELS(double, f64)
