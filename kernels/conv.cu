// Reference convolution kernels of the CUDA backend: 2D/3D convolution over dense NCDHW tensors
// (2D = depth 1), forward, backward-input and backward-weight, with stride, padding, dilation
// and groups; every group in one launch. Transposed convolutions reuse them through the adjoint
// convolution (src/backend/cuda/conv.rs). CPU twins in src/backend/cpu/kernels/conv.rs.
//
// These are direct loops, written to be simple, deterministic (no float atomics) and exact: the
// implicit-GEMM and tensor-core kernels replace them for speed later and are checked against
// them. Weight layout [out_channels, in_channels / groups, kD, kH, kW], as PyTorch.

// Sizes of one convolution; same field order as `ConvParams` in src/backend/cuda/conv.rs.
struct ConvParams {
    long long batch, cin, cout, groups;
    long long in[3], k[3], stride[3], pad[3], dil[3], out[3];
};

// ----- forward: one thread per output element ----------------------------------------------------
template <typename T>
__device__ __forceinline__ void conv_forward_impl(const T* __restrict__ x, const T* __restrict__ w,
                                                  const T* __restrict__ bias, int has_bias,
                                                  T* __restrict__ y, const ConvParams& p) {
    const long long cig = p.cin / p.groups, cog = p.cout / p.groups;
    const long long in_plane = p.in[0] * p.in[1] * p.in[2];
    const long long taps = p.k[0] * p.k[1] * p.k[2];
    const long long total = p.batch * p.cout * p.out[0] * p.out[1] * p.out[2];
    GRID_STRIDE_LOOP(idx, total) {
        long long t = idx;
        const long long ow = t % p.out[2]; t /= p.out[2];
        const long long oh = t % p.out[1]; t /= p.out[1];
        const long long od = t % p.out[0]; t /= p.out[0];
        const long long oc = t % p.cout;
        const long long nb = t / p.cout;
        const long long g = oc / cog;
        const T* xg = x + (nb * p.cin + g * cig) * in_plane;
        const T* wo = w + oc * cig * taps;
        const long long d0 = od * p.stride[0] - p.pad[0];
        const long long h0 = oh * p.stride[1] - p.pad[1];
        const long long w0 = ow * p.stride[2] - p.pad[2];
        T acc = T(0);
        for (long long ic = 0; ic < cig; ++ic) {
            const T* xc = xg + ic * in_plane;
            const T* wc = wo + ic * taps;
            for (long long kd = 0; kd < p.k[0]; ++kd) {
                const long long id = d0 + kd * p.dil[0];
                if (id < 0 || id >= p.in[0]) continue;
                for (long long kh = 0; kh < p.k[1]; ++kh) {
                    const long long ih = h0 + kh * p.dil[1];
                    if (ih < 0 || ih >= p.in[1]) continue;
                    const T* xrow = xc + (id * p.in[1] + ih) * p.in[2];
                    const T* wrow = wc + (kd * p.k[1] + kh) * p.k[2];
                    for (long long kw = 0; kw < p.k[2]; ++kw) {
                        const long long iw = w0 + kw * p.dil[2];
                        if (iw < 0 || iw >= p.in[2]) continue;
                        acc += xrow[iw] * wrow[kw];
                    }
                }
            }
        }
        y[idx] = has_bias ? bias[oc] + acc : acc;
    }
}

// ----- backward-input: a gather, one thread per input element -------------------------------------
// Input i receives from output o = (i + pad - tap * dil) / stride through `tap` when the division
// is exact and o is inside the output. `bias` (per input channel) serves the transposed
// convolution, whose forward pass this is.
template <typename T>
__device__ __forceinline__ void conv_backward_input_impl(const T* __restrict__ gy,
                                                         const T* __restrict__ w,
                                                         const T* __restrict__ bias, int has_bias,
                                                         T* __restrict__ gx, const ConvParams& p) {
    const long long cig = p.cin / p.groups, cog = p.cout / p.groups;
    const long long out_plane = p.out[0] * p.out[1] * p.out[2];
    const long long taps = p.k[0] * p.k[1] * p.k[2];
    const long long total = p.batch * p.cin * p.in[0] * p.in[1] * p.in[2];
    GRID_STRIDE_LOOP(idx, total) {
        long long t = idx;
        const long long iw = t % p.in[2]; t /= p.in[2];
        const long long ih = t % p.in[1]; t /= p.in[1];
        const long long id = t % p.in[0]; t /= p.in[0];
        const long long ic = t % p.cin;
        const long long nb = t / p.cin;
        const long long g = ic / cig, icg = ic % cig;
        const T* gyg = gy + (nb * p.cout + g * cog) * out_plane;
        // w[g cog + o][icg][tap] is at wg[o * cig * taps + tap].
        const T* wg = w + (g * cog * cig + icg) * taps;
        T acc = T(0);
        for (long long kd = 0; kd < p.k[0]; ++kd) {
            const long long nd = id + p.pad[0] - kd * p.dil[0];
            if (nd < 0 || nd % p.stride[0] != 0) continue;
            const long long od = nd / p.stride[0];
            if (od >= p.out[0]) continue;
            for (long long kh = 0; kh < p.k[1]; ++kh) {
                const long long nh = ih + p.pad[1] - kh * p.dil[1];
                if (nh < 0 || nh % p.stride[1] != 0) continue;
                const long long oh = nh / p.stride[1];
                if (oh >= p.out[1]) continue;
                for (long long kw = 0; kw < p.k[2]; ++kw) {
                    const long long nw = iw + p.pad[2] - kw * p.dil[2];
                    if (nw < 0 || nw % p.stride[2] != 0) continue;
                    const long long ow = nw / p.stride[2];
                    if (ow >= p.out[2]) continue;
                    const long long tap = (kd * p.k[1] + kh) * p.k[2] + kw;
                    const long long opos = (od * p.out[1] + oh) * p.out[2] + ow;
                    for (long long o = 0; o < cog; ++o)
                        acc += gyg[o * out_plane + opos] * wg[o * cig * taps + tap];
                }
            }
        }
        gx[idx] = has_bias ? acc + bias[ic] : acc;
    }
}

// ----- backward-weight: blocks per (out channel, input channel of its group) ------------------------
// The reduction over (batch, output position) of one channel pair is cut into `splits` ranges,
// one block each, so that layers with few channel pairs still fill the GPU. A block's threads
// stride over its range, each accumulating up to BW_CHUNK_* taps in registers; the taps are then
// reduced across the block in a fixed order (warp shuffles, then the warps' partial sums in warp
// order) into out[(pair * splits + split) * taps + tap]. With one split that is the weight
// gradient itself; otherwise conv_weight_splits_sum adds the splits in order. Results thus do not
// depend on timing.
#define BW_THREADS 256
#define BW_WARPS (BW_THREADS / 32)
// Taps per register chunk: 27 (a whole 3x3x3 kernel) in f32; 14 in f64, whose accumulators take
// two registers each, so that the kernel does not spill.
#define BW_CHUNK_F32 27
#define BW_CHUNK_F64 14

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

template <typename T, int CHUNK>
__device__ __forceinline__ void conv_backward_weight_impl(const T* __restrict__ x,
                                                          const T* __restrict__ gy,
                                                          T* __restrict__ out, const ConvParams& p,
                                                          long long splits) {
    __shared__ T partial[BW_WARPS][CHUNK];
    // Per tap of the chunk: its offset along each axis, k * dil.
    __shared__ long long tap_off[3][CHUNK];
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const long long cig = p.cin / p.groups, cog = p.cout / p.groups;
    const long long in_plane = p.in[0] * p.in[1] * p.in[2];
    const long long positions = p.out[0] * p.out[1] * p.out[2];
    const long long total = p.batch * positions;
    const long long taps = p.k[0] * p.k[1] * p.k[2];
    const long long blocks = p.cout * cig * splits;
    // Loop bounds are uniform over the block: every thread reaches every barrier.
    for (long long blk = blockIdx.x; blk < blocks; blk += gridDim.x) {
        const long long pair = blk / splits, split = blk % splits;
        const long long oc = pair / cig, icg = pair % cig;
        const long long ic = (oc / cog) * cig + icg;
        const long long q0 = total * split / splits, q1 = total * (split + 1) / splits;
        for (long long t0 = 0; t0 < taps; t0 += CHUNK) {
            const int nt = (int)min((long long)CHUNK, taps - t0);
            if (tid < nt) {
                const long long tap = t0 + tid;
                tap_off[2][tid] = (tap % p.k[2]) * p.dil[2];
                tap_off[1][tid] = ((tap / p.k[2]) % p.k[1]) * p.dil[1];
                tap_off[0][tid] = (tap / (p.k[1] * p.k[2])) * p.dil[0];
            }
            __syncthreads();
            T acc[CHUNK];
#pragma unroll
            for (int t = 0; t < CHUNK; ++t) acc[t] = T(0);
            for (long long q = q0 + tid; q < q1; q += BW_THREADS) {
                const long long nb = q / positions, pos = q - nb * positions;
                const long long ow = pos % p.out[2];
                const long long oh = (pos / p.out[2]) % p.out[1];
                const long long od = pos / (p.out[2] * p.out[1]);
                const long long d0 = od * p.stride[0] - p.pad[0];
                const long long h0 = oh * p.stride[1] - p.pad[1];
                const long long w0 = ow * p.stride[2] - p.pad[2];
                const T g = gy[(nb * p.cout + oc) * positions + pos];
                const T* xc = x + (nb * p.cin + ic) * in_plane;
#pragma unroll
                for (int t = 0; t < CHUNK; ++t) {
                    if (t < nt) {
                        const long long id = d0 + tap_off[0][t];
                        const long long ih = h0 + tap_off[1][t];
                        const long long iw = w0 + tap_off[2][t];
                        if (id >= 0 && id < p.in[0] && ih >= 0 && ih < p.in[1] && iw >= 0 &&
                            iw < p.in[2])
                            acc[t] += g * xc[(id * p.in[1] + ih) * p.in[2] + iw];
                    }
                }
            }
#pragma unroll
            for (int t = 0; t < CHUNK; ++t) {
                if (t < nt) {
                    const T v = warp_sum(acc[t]);
                    if (lane == 0) partial[warp][t] = v;
                }
            }
            __syncthreads();
            if (tid < nt) {
                T s = T(0);
                for (int wi = 0; wi < BW_WARPS; ++wi) s += partial[wi][tid];
                out[blk * taps + t0 + tid] = s;
            }
            // `partial` and `tap_off` are rewritten by the next chunk only after they are read.
            __syncthreads();
        }
    }
}

// gw[pair * taps + tap] = sum over splits, in order, of parts[(pair * splits + split) * taps + tap].
template <typename T>
__device__ __forceinline__ void conv_weight_splits_sum_impl(const T* __restrict__ parts,
                                                            T* __restrict__ gw, long long n,
                                                            long long taps, long long splits) {
    GRID_STRIDE_LOOP(e, n) {
        const long long pair = e / taps, tap = e % taps;
        const T* src = parts + pair * splits * taps + tap;
        T s = T(0);
        for (long long k = 0; k < splits; ++k) s += src[k * taps];
        gw[e] = s;
    }
}

// ----- implicit-GEMM forward: output-stationary shared-memory tiles ------------------------------
// The convolution as a GEMM per group: Y[oc, position] = sum over k = (input channel, tap) of
// W[oc, k] * X[k, position], without materialising the im2col matrix X. A block owns an output
// tile of IG_OC channels of one group x IG_ROWS (depth, height) rows x IG_TW columns of one batch
// item, and keeps it in registers (IG_OC x IG_RPT accumulators per thread) for the whole reduction.
// The reduction runs in chunks of `chunk` input channels: the block stages the chunk's input patch
// (tile + halo) and the matching weights W[oc, chunk x taps] in shared memory, then every thread
// reduces over the chunk's (channel x tap) products for its IG_RPT positions and IG_OC channels.
//
// Memory behaviour (checked by the VM counters in tests/gpu_conv_implicit.rs):
// - a warp stages one patch row at a time, lanes along the innermost axis starting from a
//   32-element-aligned address, so each request covers whole sectors;
// - lane l computes output column l, reading patch word l * stride_w + kw * dil_w. Patch rows are
//   stored split by stride phase (element e at (e % stride) * sub_pitch + e / stride), so those
//   reads are consecutive words: no bank conflicts at any stride. sub_pitch is padded so that the
//   phases of one staged row start 32 / stride banks apart, which keeps the staging stores of
//   stride-2 and stride-4 rows conflict-free too;
// - weights are read by all lanes at the same address (broadcast).
// With an adjoint `IgMap`, `w` is the weight of the forward convolution whose input gradient
// this is: W'[ic, oc, tap] = W[oc, ic, flipped tap] per group, so the same tiles compute the
// backward-input pass, and the transposed convolution's forward pass, without a weight copy. At
// stride s > 1 the input gradient splits into s phases per axis (positions r + s m): each is a
// stride-1 convolution of the output gradient with the taps k = (r + pad) mod s + s j, written
// at stride s into the gradient — one launch per phase, no atomics.
// Dispatch between this kernel and the direct one: `forward_path` in src/backend/cuda/conv.rs.
#define IG_THREADS 256
#define IG_WARPS (IG_THREADS / 32)
#define IG_OC 16
#define IG_TW 32
#define IG_ROWS 32
#define IG_RPT (IG_ROWS / IG_WARPS)

// Tile geometry chosen by the host; same field order as `IgTile` in src/backend/cuda/conv.rs.
struct IgTile {
    long long rows[2];   // output rows of a tile along depth and height (product IG_ROWS)
    long long chunk;     // input channels staged per step
    long long patch[3];  // input patch extent (d, h, w) of a tile
    long long sub_pitch; // words of one stride phase of a staged patch row
    long long wpitch;    // words per output channel of the staged weights (chunk x taps)
};

// Where the tiled kernel's outputs go and which weights it reads; same field order as `IgMap`
// in src/backend/cuda/conv.rs. Forward: output element m at m (first 0, step 1) and weights as
// given. Adjoint (the input gradient of a forward convolution W, one stride phase at a time):
// output element m at first + step * m of a tensor of size `full`, and tap j of this kernel's
// (sub-)kernel reads W's channels transposed and its tap tap_first + (k - 1 - j) * tap_step of
// a kernel of size `tap_full`, per axis.
struct IgMap {
    long long adjoint;
    long long full[3], first[3], step[3];
    long long tap_full[3], tap_first[3], tap_step[3];
};

__device__ __forceinline__ long long floor_mod(long long a, long long m) {
    const long long r = a % m;
    return r < 0 ? r + m : r;
}

// The products of one staged chunk for the first R of a thread's rows (the rest of them lie
// beyond the output: a tile's last rows, or all of a short layer's, are skipped, not computed).
template <typename T, int R>
__device__ __forceinline__ void tiled_chunk_products(T (&acc)[IG_OC][IG_RPT], const T* xs,
                                                     const T* ws, const ConvParams& p,
                                                     const IgTile& t, long long chunk_n,
                                                     long long row_pitch, int warp, int lane) {
    for (long long c = 0; c < chunk_n; ++c) {
        for (long long kd = 0; kd < p.k[0]; ++kd) {
            for (long long kh = 0; kh < p.k[1]; ++kh) {
                const T* rows[R];
#pragma unroll
                for (int j = 0; j < R; ++j) {
                    const long long r = warp + IG_WARPS * j;
                    const long long pd = (r / t.rows[1]) * p.stride[0] + kd * p.dil[0];
                    const long long ph = (r % t.rows[1]) * p.stride[1] + kh * p.dil[1];
                    rows[j] = xs + ((c * t.patch[0] + pd) * t.patch[1] + ph) * row_pitch;
                }
                const T* wk = ws + (c * p.k[0] * p.k[1] + kd * p.k[1] + kh) * p.k[2];
                for (long long kw = 0; kw < p.k[2]; ++kw) {
                    const long long e = kw * p.dil[2];
                    const long long off =
                        (e % p.stride[2]) * t.sub_pitch + lane + e / p.stride[2];
                    T xv[R];
#pragma unroll
                    for (int j = 0; j < R; ++j) xv[j] = rows[j][off];
#pragma unroll
                    for (int o = 0; o < IG_OC; ++o) {
                        const T wv = wk[o * t.wpitch + kw];
#pragma unroll
                        for (int j = 0; j < R; ++j) acc[o][j] += wv * xv[j];
                    }
                }
            }
        }
    }
}

template <typename T>
__device__ __forceinline__ void conv_forward_tiled_impl(const T* __restrict__ x,
                                                        const T* __restrict__ w,
                                                        const T* __restrict__ bias, int has_bias,
                                                        T* __restrict__ y, const ConvParams& p,
                                                        const IgTile& t, const IgMap& m) {
    extern __shared__ __align__(16) unsigned char ig_smem[];
    const long long row_pitch = p.stride[2] * t.sub_pitch;
    const long long patch_words = t.patch[0] * t.patch[1] * row_pitch;
    T* xs = reinterpret_cast<T*>(ig_smem);      // [chunk][patch d][patch h][row_pitch]
    T* ws = xs + t.chunk * patch_words;          // [IG_OC][wpitch]
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const long long cig = p.cin / p.groups, cog = p.cout / p.groups;
    const long long taps = p.k[0] * p.k[1] * p.k[2];
    const long long out_plane = m.full[0] * m.full[1] * m.full[2];
    const long long taps_full = m.tap_full[0] * m.tap_full[1] * m.tap_full[2];
    const long long tiles_w = (p.out[2] + IG_TW - 1) / IG_TW;
    const long long tiles_h = (p.out[1] + t.rows[1] - 1) / t.rows[1];
    const long long tiles_d = (p.out[0] + t.rows[0] - 1) / t.rows[0];
    const long long oc_blocks = (cog + IG_OC - 1) / IG_OC;
    const long long blocks = p.batch * p.groups * oc_blocks * tiles_d * tiles_h * tiles_w;
    // Loop bounds are uniform over the block: every thread reaches every barrier.
    for (long long blk = blockIdx.x; blk < blocks; blk += gridDim.x) {
        long long b = blk;
        const long long tw = b % tiles_w; b /= tiles_w;
        const long long th = b % tiles_h; b /= tiles_h;
        const long long td = b % tiles_d; b /= tiles_d;
        const long long ocb = b % oc_blocks; b /= oc_blocks;
        const long long g = b % p.groups;
        const long long nb = b / p.groups;
        const long long od0 = td * t.rows[0], oh0 = th * t.rows[1], ow0 = tw * IG_TW;
        // First input element of the patch along each axis (may lie in the padding).
        const long long d_start = od0 * p.stride[0] - p.pad[0];
        const long long h_start = oh0 * p.stride[1] - p.pad[1];
        const long long w_start = ow0 * p.stride[2] - p.pad[2];
        const long long oc0 = g * cog + ocb * IG_OC;
        const long long oc_n = min((long long)IG_OC, cog - ocb * IG_OC);
        T acc[IG_OC][IG_RPT];
#pragma unroll
        for (int o = 0; o < IG_OC; ++o)
#pragma unroll
            for (int j = 0; j < IG_RPT; ++j) acc[o][j] = T(0);
        // Rows of this warp inside the output: a prefix of its IG_RPT rows (uniform per warp).
        int live = 0;
#pragma unroll
        for (int j = 0; j < IG_RPT; ++j) {
            const long long r = warp + IG_WARPS * j;
            if (od0 + r / t.rows[1] < p.out[0] && oh0 + r % t.rows[1] < p.out[1]) live = j + 1;
        }
        for (long long ic0 = 0; ic0 < cig; ic0 += t.chunk) {
            const long long chunk_n = min(t.chunk, cig - ic0);
            const long long ktot = chunk_n * taps;
            // The previous chunk's tiles are overwritten only after every thread has used them.
            __syncthreads();
            // Stage the input patch, one row per warp turn; outside the input reads as zero.
            const long long patch_rows = chunk_n * t.patch[0] * t.patch[1];
            for (long long r = warp; r < patch_rows; r += IG_WARPS) {
                const long long ph = r % t.patch[1];
                const long long pd = (r / t.patch[1]) % t.patch[0];
                const long long c = r / (t.patch[1] * t.patch[0]);
                const long long id = d_start + pd, ih = h_start + ph;
                const bool row_inside = id >= 0 && id < p.in[0] && ih >= 0 && ih < p.in[1];
                const long long row_base =
                    ((nb * p.cin + g * cig + ic0 + c) * p.in[0] + id) * p.in[1] + ih;
                const long long row_elem = row_base * p.in[2];
                T* srow = xs + r * row_pitch;
                // Start at a 32-element boundary of memory so each request covers whole sectors.
                const long long first = w_start - floor_mod(row_elem + w_start, 32);
                for (long long iw = first + lane; iw < w_start + t.patch[2]; iw += 32) {
                    if (iw >= w_start) {
                        const long long e = iw - w_start;
                        const bool inside = row_inside && iw >= 0 && iw < p.in[2];
                        srow[(e % p.stride[2]) * t.sub_pitch + e / p.stride[2]] =
                            inside ? x[row_elem + iw] : T(0);
                    }
                }
            }
            // Stage W[oc0 + o, ic0.., all taps]: contiguous along (channel, tap) per channel.
            // The adjoint reads the forward weight transposed per group and flipped in space.
            for (long long o = warp; o < IG_OC; o += IG_WARPS) {
                T* wrow = ws + o * t.wpitch;
                if (o < oc_n && m.adjoint) {
                    for (long long k = lane; k < ktot; k += 32) {
                        const long long c = k / taps, tap = k % taps;
                        const long long jw = tap % p.k[2], jh = (tap / p.k[2]) % p.k[1];
                        const long long jd = tap / (p.k[2] * p.k[1]);
                        const long long td = m.tap_first[0] + (p.k[0] - 1 - jd) * m.tap_step[0];
                        const long long th = m.tap_first[1] + (p.k[1] - 1 - jh) * m.tap_step[1];
                        const long long tw = m.tap_first[2] + (p.k[2] - 1 - jw) * m.tap_step[2];
                        wrow[k] = w[((g * cig + ic0 + c) * cog + ocb * IG_OC + o) * taps_full +
                                    (td * m.tap_full[1] + th) * m.tap_full[2] + tw];
                    }
                } else if (o < oc_n) {
                    const long long base = ((oc0 + o) * cig + ic0) * taps;
                    const long long first = -floor_mod(base, 32);
                    for (long long k = first + lane; k < ktot; k += 32)
                        if (k >= 0) wrow[k] = w[base + k];
                } else {
                    for (long long k = lane; k < ktot; k += 32) wrow[k] = T(0);
                }
            }
            __syncthreads();
            switch (live) {
            case 4:
                tiled_chunk_products<T, 4>(acc, xs, ws, p, t, chunk_n, row_pitch, warp, lane);
                break;
            case 3:
                tiled_chunk_products<T, 3>(acc, xs, ws, p, t, chunk_n, row_pitch, warp, lane);
                break;
            case 2:
                tiled_chunk_products<T, 2>(acc, xs, ws, p, t, chunk_n, row_pitch, warp, lane);
                break;
            case 1:
                tiled_chunk_products<T, 1>(acc, xs, ws, p, t, chunk_n, row_pitch, warp, lane);
                break;
            default: break;
            }
        }
        // Write the tile: lanes along the output row (coalesced), bias added once.
        const long long ow = ow0 + lane;
#pragma unroll
        for (int j = 0; j < IG_RPT; ++j) {
            const long long r = warp + IG_WARPS * j;
            const long long od = od0 + r / t.rows[1], oh = oh0 + r % t.rows[1];
            if (od < p.out[0] && oh < p.out[1] && ow < p.out[2]) {
                const long long pos =
                    ((m.first[0] + m.step[0] * od) * m.full[1] + m.first[1] + m.step[1] * oh) *
                        m.full[2] +
                    m.first[2] + m.step[2] * ow;
#pragma unroll
                for (int o = 0; o < IG_OC; ++o) {
                    if (o < oc_n) {
                        const long long oc = oc0 + o;
                        y[(nb * p.cout + oc) * out_plane + pos] =
                            has_bias ? bias[oc] + acc[o][j] : acc[o][j];
                    }
                }
            }
        }
    }
}

// ----- implicit-GEMM weight gradient: shared-memory tiles of the (batch x position) reduction -----
// Per group the weight gradient is a GEMM: GW[oc, (ic, tap)] = sum over k = (batch, output
// position) of GY[oc, k] * X[ic, k shifted by tap]. A block owns WG_OC output channels of one
// group x a block of WG_WARPS * CPW (input channel, tap) columns, and one of `splits` ranges of
// the output-position tiles (rows[0] x rows[1] rows x WG_TW columns of one batch item). For each
// tile of its range it stages the output gradient of its channels and the input patch (tile +
// halo) of the input channels its columns touch in shared memory; warp w then accumulates the
// columns w + WG_WARPS i, lane l the tile's output column l, so a lane's partial sums cover the
// positions l, l + 32, ... After the range, each sum is reduced across the warp by a fixed
// shuffle tree and written to out[(pair * splits + split) * taps + tap] (pair = oc * cig + icg);
// with several splits conv_weight_splits_sum adds them in split order. No atomics: the same
// inputs give the same bits.
//
// Memory behaviour (tests/gpu_conv_wgrad.rs): patch rows are staged as in the forward kernel (one
// warp per row from a 32-element-aligned address, split by stride phase with a padded pitch), and
// output-gradient rows by one warp each along the innermost axis; in the products lane l reads
// consecutive words of both tiles (patch word l * stride + tap offset, phase-split), so neither
// the staging stores nor the reads conflict. Dispatch: `backward_weight_path` in conv.rs.
#define WG_THREADS 256
#define WG_WARPS (WG_THREADS / 32)
#define WG_OC 16
#define WG_TW 32
// Columns per warp: 8 in f32 (128 accumulators a thread), 2 in f64 (their registers are pairs).
#define WG_CPW_F32 8
#define WG_CPW_F64 2

// Tile geometry chosen by the host; same field order as `WgTile` in src/backend/cuda/conv.rs.
struct WgTile {
    long long rows[2];   // output rows of a position tile along depth and height
    long long span;      // most input channels one column block touches (patches staged)
    long long patch[3];  // input patch extent (d, h, w) of a position tile
    long long sub_pitch; // words of one stride phase of a staged patch row
    long long splits;    // ranges of position tiles, one block each per (channels, columns)
};

template <typename T, int CPW>
__device__ __forceinline__ void conv_backward_weight_tiled_impl(const T* __restrict__ x,
                                                                const T* __restrict__ gy,
                                                                T* __restrict__ out,
                                                                const ConvParams& p,
                                                                const WgTile& t) {
    // The same dynamic-shared symbol as the forward kernel: a module declares it once.
    extern __shared__ __align__(16) unsigned char ig_smem[];
    const long long row_pitch = p.stride[2] * t.sub_pitch;
    const long long patch_words = t.patch[0] * t.patch[1] * row_pitch;
    const long long nrows = t.rows[0] * t.rows[1];
    T* xs = reinterpret_cast<T*>(ig_smem);   // [span][patch d][patch h][row_pitch]
    T* gs = xs + t.span * patch_words;         // [WG_OC][nrows][WG_TW]
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const long long cig = p.cin / p.groups, cog = p.cout / p.groups;
    const long long taps = p.k[0] * p.k[1] * p.k[2];
    const long long cols = cig * taps;
    const long long block_cols = WG_WARPS * CPW;
    const long long col_blocks = (cols + block_cols - 1) / block_cols;
    const long long oc_blocks = (cog + WG_OC - 1) / WG_OC;
    const long long positions = p.out[0] * p.out[1] * p.out[2];
    const long long in_plane = p.in[0] * p.in[1] * p.in[2];
    const long long tiles_w = (p.out[2] + WG_TW - 1) / WG_TW;
    const long long tiles_h = (p.out[1] + t.rows[1] - 1) / t.rows[1];
    const long long tiles_d = (p.out[0] + t.rows[0] - 1) / t.rows[0];
    const long long item_tiles = tiles_d * tiles_h * tiles_w;
    const long long all_tiles = p.batch * item_tiles;
    const long long blocks = p.groups * oc_blocks * col_blocks * t.splits;
    // Loop bounds are uniform over the block: every thread reaches every barrier.
    for (long long blk = blockIdx.x; blk < blocks; blk += gridDim.x) {
        long long b = blk;
        const long long split = b % t.splits; b /= t.splits;
        const long long cb = b % col_blocks; b /= col_blocks;
        const long long ocb = b % oc_blocks;
        const long long g = b / oc_blocks;
        const long long col0 = cb * block_cols;
        const long long ncol = min(block_cols, cols - col0);
        const long long c_first = col0 / taps;
        const long long c_n = (col0 + ncol - 1) / taps - c_first + 1;
        const long long oc0 = g * cog + ocb * WG_OC;
        const long long oc_n = min((long long)WG_OC, cog - ocb * WG_OC);
        // Per column of this warp: its offset in the staged patch (a column beyond the block's
        // reads word 0 of a staged row, harmlessly, and is never written).
        long long coff[CPW];
#pragma unroll
        for (int i = 0; i < CPW; ++i) {
            const long long j = warp + WG_WARPS * i;
            coff[i] = 0;
            if (j < ncol) {
                const long long col = col0 + j, tap = col % taps;
                const long long kw = tap % p.k[2], kh = (tap / p.k[2]) % p.k[1];
                const long long kd = tap / (p.k[2] * p.k[1]);
                const long long e = kw * p.dil[2];
                coff[i] = (col / taps - c_first) * patch_words +
                          (kd * p.dil[0] * t.patch[1] + kh * p.dil[1]) * row_pitch +
                          (e % p.stride[2]) * t.sub_pitch + e / p.stride[2];
            }
        }
        T acc[WG_OC][CPW];
#pragma unroll
        for (int o = 0; o < WG_OC; ++o)
#pragma unroll
            for (int i = 0; i < CPW; ++i) acc[o][i] = T(0);
        const long long q0 = all_tiles * split / t.splits, q1 = all_tiles * (split + 1) / t.splits;
        for (long long q = q0; q < q1; ++q) {
            const long long nb = q / item_tiles;
            long long r = q % item_tiles;
            const long long tw = r % tiles_w; r /= tiles_w;
            const long long th = r % tiles_h;
            const long long td = r / tiles_h;
            const long long od0 = td * t.rows[0], oh0 = th * t.rows[1], ow0 = tw * WG_TW;
            const long long d_start = od0 * p.stride[0] - p.pad[0];
            const long long h_start = oh0 * p.stride[1] - p.pad[1];
            const long long w_start = ow0 * p.stride[2] - p.pad[2];
            // The previous tile's data are overwritten only after every thread has used them.
            __syncthreads();
            const long long patch_rows = c_n * t.patch[0] * t.patch[1];
            for (long long pr = warp; pr < patch_rows; pr += WG_WARPS) {
                const long long ph = pr % t.patch[1];
                const long long pd = (pr / t.patch[1]) % t.patch[0];
                const long long c = pr / (t.patch[1] * t.patch[0]);
                const long long id = d_start + pd, ih = h_start + ph;
                const bool row_inside = id >= 0 && id < p.in[0] && ih >= 0 && ih < p.in[1];
                const long long row_elem =
                    (nb * p.cin + g * cig + c_first + c) * in_plane + (id * p.in[1] + ih) * p.in[2];
                T* srow = xs + (c * t.patch[0] * t.patch[1] + pd * t.patch[1] + ph) * row_pitch;
                const long long first = w_start - floor_mod(row_elem + w_start, 32);
                for (long long iw = first + lane; iw < w_start + t.patch[2]; iw += 32) {
                    if (iw >= w_start) {
                        const long long e = iw - w_start;
                        const bool inside = row_inside && iw >= 0 && iw < p.in[2];
                        srow[(e % p.stride[2]) * t.sub_pitch + e / p.stride[2]] =
                            inside ? x[row_elem + iw] : T(0);
                    }
                }
            }
            // Output-gradient rows: zero beyond the output and beyond the group's channels.
            for (long long rr = warp; rr < nrows; rr += WG_WARPS) {
                const long long od = od0 + rr / t.rows[1], oh = oh0 + rr % t.rows[1];
                const long long ow = ow0 + lane;
                const bool inside = od < p.out[0] && oh < p.out[1] && ow < p.out[2];
                const T* src = gy + (nb * p.cout + oc0) * positions + (od * p.out[1] + oh) * p.out[2] + ow;
                T* dst = gs + rr * WG_TW + lane;
                // Partly unrolled: the accumulators leave few registers for loads in flight.
#pragma unroll 4
                for (int o = 0; o < WG_OC; ++o)
                    dst[o * nrows * WG_TW] = inside && o < oc_n ? src[o * positions] : T(0);
            }
            __syncthreads();
            // Rows beyond the output are skipped (uniform over the block), not computed.
            const long long rd_n = min(t.rows[0], p.out[0] - od0);
            const long long rh_n = min(t.rows[1], p.out[1] - oh0);
            for (long long rd = 0; rd < rd_n; ++rd) {
                for (long long rh = 0; rh < rh_n; ++rh) {
                    const T* xrow =
                        xs + (rd * p.stride[0] * t.patch[1] + rh * p.stride[1]) * row_pitch + lane;
                    const T* grow = gs + (rd * t.rows[1] + rh) * WG_TW + lane;
                    T gv[WG_OC];
#pragma unroll
                    for (int o = 0; o < WG_OC; ++o) gv[o] = grow[o * nrows * WG_TW];
#pragma unroll
                    for (int i = 0; i < CPW; ++i) {
                        const T xv = xrow[coff[i]];
#pragma unroll
                        for (int o = 0; o < WG_OC; ++o) acc[o][i] += gv[o] * xv;
                    }
                }
            }
        }
#pragma unroll
        for (int i = 0; i < CPW; ++i) {
            const long long j = warp + WG_WARPS * i;
#pragma unroll
            for (int o = 0; o < WG_OC; ++o) {
                const T v = warp_sum(acc[o][i]);
                if (lane == 0 && j < ncol && o < oc_n) {
                    const long long col = col0 + j;
                    const long long pair = (oc0 + o) * cig + col / taps;
                    out[(pair * t.splits + split) * taps + col % taps] = v;
                }
            }
        }
    }
}

#define CONV_KERNELS(T, SUFFIX, CHUNK, CPW)                                                              \
    /* CPU: conv::conv_forward(geom, input, weight, bias, out) */                                   \
    extern "C" __global__ void conv_forward_##SUFFIX(const T* x, const T* w, const T* bias,         \
                                                     int has_bias, T* y, ConvParams p) {            \
        conv_forward_impl<T>(x, w, bias, has_bias, y, p);                                           \
    }                                                                                               \
    /* CPU: conv::conv_forward(geom, input, weight, bias, out); implicit GEMM, tiled. With       \
       an adjoint map, conv::conv_backward_input, one stride phase per launch (see conv.rs) */            \
    extern "C" __global__ void __launch_bounds__(IG_THREADS, 1)                                     \
        conv_forward_tiled_##SUFFIX(const T* x, const T* w, const T* bias, int has_bias, T* y,      \
                                    ConvParams p, IgTile t, IgMap m) {                          \
        conv_forward_tiled_impl<T>(x, w, bias, has_bias, y, p, t, m);                         \
    }                                                                                               \
    /* CPU: conv::conv_backward_input(geom, grad_out, weight, grad_input); with a bias, also      \
       conv::conv_transpose_forward of the transposed convolution whose adjoint `p` is */           \
    extern "C" __global__ void conv_backward_input_##SUFFIX(const T* gy, const T* w, const T* bias, \
                                                            int has_bias, T* gx, ConvParams p) {    \
        conv_backward_input_impl<T>(gy, w, bias, has_bias, gx, p);                                  \
    }                                                                                               \
    /* CPU: conv::conv_backward_weight(geom, input, grad_out, grad_weight) */                       \
    extern "C" __global__ void __launch_bounds__(BW_THREADS)                                        \
        conv_backward_weight_##SUFFIX(const T* x, const T* gy, T* out, ConvParams p,                \
                                      long long splits) {                                           \
        conv_backward_weight_impl<T, CHUNK>(x, gy, out, p, splits);                                 \
    }                                                                                               \
    /* CPU: conv::conv_backward_weight(geom, input, grad_out, grad_weight); implicit GEMM,      \
       tiled over (batch x position), per split when WgTile::splits > 1 */                        \
    extern "C" __global__ void __launch_bounds__(WG_THREADS, 1)                                     \
        conv_backward_weight_tiled_##SUFFIX(const T* x, const T* gy, T* out, ConvParams p,          \
                                            WgTile t) {                                             \
        conv_backward_weight_tiled_impl<T, CPW>(x, gy, out, p, t);                                  \
    }                                                                                               \
    /* CPU: the sum over tiles at the end of conv::portable_backward_weight */                      \
    extern "C" __global__ void conv_weight_splits_sum_##SUFFIX(const T* parts, T* gw, long long n,  \
                                                               long long taps, long long splits) {  \
        conv_weight_splits_sum_impl<T>(parts, gw, n, taps, splits);                                 \
    }

CONV_KERNELS(float, f32, BW_CHUNK_F32, WG_CPW_F32)
CONV_KERNELS(double, f64, BW_CHUNK_F64, WG_CPW_F64)
