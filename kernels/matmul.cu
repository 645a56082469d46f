// Batched matrix product of the CUDA backend: C[z] = A[z] @ B[z] with A[z] an M x K and B[z] a
// K x N strided view, C dense [batch, M, N]. Operands are read through their row and column
// strides, so transposed and broadcast views need no copy; the batch offsets come from a
// StridedView over the batch axes alone.
//
// Shared-memory tiling: each block computes a BM x BN tile of C, staging BK-deep slices of A and
// B in shared memory; each of the 256 threads holds a TM x TN register tile. The thread's rows
// and columns are strided by 16 (row ty + 16 i, column tx + 16 j) so that, in the inner loop,
// a warp reads consecutive shared words of B (no bank conflicts) and two broadcast words of A,
// and writes consecutive words of C.

#define MM_BM 64
#define MM_BN 64
#define MM_BK 16
#define MM_TM 4
#define MM_TN 4
#define MM_THREADS 256
// Row padding of the shared tiles: with 66 words per k-row, a warp storing 16 k-values of two
// rows (the k-fast load order) hits 32 distinct banks.
#define MM_PAD 2

template <typename T>
__device__ __forceinline__ void matmul_tiled(const T* __restrict__ a, const StridedView& ab,
                                             long long rsa, long long csa,
                                             const T* __restrict__ b, const StridedView& bb,
                                             long long rsb, long long csb, T* __restrict__ c,
                                             long long batch, long long m, long long n,
                                             long long k) {
    __shared__ T as[MM_BK][MM_BM + MM_PAD];  // as[kk][row]
    __shared__ T bs[MM_BK][MM_BN + MM_PAD];  // bs[kk][col]
    const int tid = threadIdx.x;
    const int tx = tid % 16, ty = tid / 16;
    const long long row_tiles = (m + MM_BM - 1) / MM_BM;
    // Load orders chosen per operand so that consecutive threads read consecutive addresses
    // when the operand has a unit stride (uniform over the block: no divergence).
    const bool a_k_fast = csa == 1;
    const bool b_n_fast = csb == 1 || rsb != 1;
    // Every loop bound below is uniform over the block, so the barriers are reached by all.
    for (long long z = blockIdx.z; z < batch; z += gridDim.z) {
        const T* az = a + view_index(ab, z);
        const T* bz = b + view_index(bb, z);
        T* cz = c + z * m * n;
        for (long long rt = blockIdx.y; rt < row_tiles; rt += gridDim.y) {
            const long long row0 = rt * MM_BM;
            const long long col0 = (long long)blockIdx.x * MM_BN;
            T acc[MM_TM][MM_TN];
#pragma unroll
            for (int i = 0; i < MM_TM; ++i)
#pragma unroll
                for (int j = 0; j < MM_TN; ++j) acc[i][j] = T(0);
            for (long long k0 = 0; k0 < k; k0 += MM_BK) {
                // Stage A[row0.., k0..] and B[k0.., col0..]; outside the matrix reads as zero.
#pragma unroll
                for (int r = 0; r < (MM_BM * MM_BK) / MM_THREADS; ++r) {
                    const int e = tid + r * MM_THREADS;
                    const int kk = a_k_fast ? e % MM_BK : e / MM_BM;
                    const int ii = a_k_fast ? e / MM_BK : e % MM_BM;
                    const long long gi = row0 + ii, gk = k0 + kk;
                    as[kk][ii] = (gi < m && gk < k) ? az[gi * rsa + gk * csa] : T(0);
                }
#pragma unroll
                for (int r = 0; r < (MM_BN * MM_BK) / MM_THREADS; ++r) {
                    const int e = tid + r * MM_THREADS;
                    const int kk = b_n_fast ? e / MM_BN : e % MM_BK;
                    const int jj = b_n_fast ? e % MM_BN : e / MM_BK;
                    const long long gk = k0 + kk, gj = col0 + jj;
                    bs[kk][jj] = (gk < k && gj < n) ? bz[gk * rsb + gj * csb] : T(0);
                }
                __syncthreads();
#pragma unroll
                for (int kk = 0; kk < MM_BK; ++kk) {
                    T av[MM_TM], bv[MM_TN];
#pragma unroll
                    for (int i = 0; i < MM_TM; ++i) av[i] = as[kk][ty + 16 * i];
#pragma unroll
                    for (int j = 0; j < MM_TN; ++j) bv[j] = bs[kk][tx + 16 * j];
#pragma unroll
                    for (int i = 0; i < MM_TM; ++i)
#pragma unroll
                        for (int j = 0; j < MM_TN; ++j) acc[i][j] += av[i] * bv[j];
                }
                // The next slice overwrites the tiles only after every thread has read them.
                __syncthreads();
            }
#pragma unroll
            for (int i = 0; i < MM_TM; ++i) {
                const long long gi = row0 + ty + 16 * i;
#pragma unroll
                for (int j = 0; j < MM_TN; ++j) {
                    const long long gj = col0 + tx + 16 * j;
                    if (gi < m && gj < n) cz[gi * n + gj] = acc[i][j];
                }
            }
        }
    }
}

// CPU: storage::batched_matmul(a, al, b, bl)
#define MATMUL_KERNEL(T, SUFFIX)                                                                     \
    extern "C" __global__ void __launch_bounds__(MM_THREADS)                                         \
        matmul_##SUFFIX(const T* a, StridedView ab, long long rsa, long long csa, const T* b,       \
                        StridedView bb, long long rsb, long long csb, T* c, long long batch,        \
                        long long m, long long n, long long k) {                                    \
        matmul_tiled<T>(a, ab, rsa, csa, b, bb, rsb, csb, c, batch, m, n, k);                       \
    }

MATMUL_KERNEL(float, f32)
MATMUL_KERNEL(double, f64)

// TF32 tensor-core variant of the float product (sm_80+). Each block computes a TC_BM x TC_BN
// tile of C with 4 warps in a 2 x 2 arrangement; each warp owns a 32 x 32 sub-tile as 2 x 4
// mma.sync.m16n8k8 tiles with f32 accumulators. Staging rounds every input to TF32 with
// cvt.rna (the tensor core would otherwise truncate the low 13 bits). A is staged k-contiguous
// (as[row][kk]) and B n-contiguous (bs[kk][col]): the layouts in which the usual row-major
// operands are stored without bank conflicts and the fragment loads have none either.

#define TC_BM 64
#define TC_BN 64
#define TC_BK 16
#define TC_THREADS 128
// A fragment load of A reads rows g = 0..7 at k-offsets t = 0..3: with 20 words per row, the
// 32 lanes hit 32 distinct banks (g * 20 mod 32 steps through the multiples of 4). One of B reads
// k-rows t at columns g: with 72 words per row, t * 72 mod 32 = 8 t keeps them apart.
#define TC_PAD_A 4
#define TC_PAD_B 8

__device__ __forceinline__ unsigned round_to_tf32(float x) {
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

// D += A B for one 16 x 8 x 8 tile; the ISA's fragment layouts are spelled out at the loads.
__device__ __forceinline__ void mma_tf32_16x8x8(float (&d)[4], const unsigned (&a)[4],
                                                const unsigned (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Stages A[row0.., k0..] and B[k0.., col0..] as TF32 bits; outside the matrix reads as zero.
// The load order follows each operand's unit stride, as in matmul_tiled.
__device__ __forceinline__ void stage_tf32_tiles(
    unsigned (&as)[TC_BM][TC_BK + TC_PAD_A], unsigned (&bs)[TC_BK][TC_BN + TC_PAD_B],
    const float* __restrict__ az, long long rsa, long long csa, const float* __restrict__ bz,
    long long rsb, long long csb, long long m, long long n, long long k, long long row0,
    long long col0, long long k0) {
    const int tid = threadIdx.x;
    const bool a_k_fast = csa == 1;
    const bool b_n_fast = csb == 1 || rsb != 1;
#pragma unroll
    for (int r = 0; r < (TC_BM * TC_BK) / TC_THREADS; ++r) {
        const int e = tid + r * TC_THREADS;
        const int kk = a_k_fast ? e % TC_BK : e / TC_BM;
        const int ii = a_k_fast ? e / TC_BK : e % TC_BM;
        const long long gi = row0 + ii, gk = k0 + kk;
        as[ii][kk] = round_to_tf32((gi < m && gk < k) ? az[gi * rsa + gk * csa] : 0.0f);
    }
#pragma unroll
    for (int r = 0; r < (TC_BN * TC_BK) / TC_THREADS; ++r) {
        const int e = tid + r * TC_THREADS;
        const int kk = b_n_fast ? e / TC_BN : e % TC_BK;
        const int jj = b_n_fast ? e % TC_BN : e / TC_BK;
        const long long gk = k0 + kk, gj = col0 + jj;
        bs[kk][jj] = round_to_tf32((gk < k && gj < n) ? bz[gk * rsb + gj * csb] : 0.0f);
    }
}

__device__ __forceinline__ void matmul_tf32_tiled(const float* __restrict__ a,
                                                  const StridedView& ab, long long rsa,
                                                  long long csa, const float* __restrict__ b,
                                                  const StridedView& bb, long long rsb,
                                                  long long csb, float* __restrict__ c,
                                                  long long batch, long long m, long long n,
                                                  long long k) {
    __shared__ unsigned as[TC_BM][TC_BK + TC_PAD_A];
    __shared__ unsigned bs[TC_BK][TC_BN + TC_PAD_B];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    // groupID and threadID_in_group of the PTX ISA's fragment layouts.
    const int g = lane / 4, t = lane % 4;
    const int warp_row = (warp / 2) * 32, warp_col = (warp % 2) * 32;
    const long long row_tiles = (m + TC_BM - 1) / TC_BM;
    // Every loop bound below is uniform over the block, so the barriers are reached by all.
    for (long long z = blockIdx.z; z < batch; z += gridDim.z) {
        const float* az = a + view_index(ab, z);
        const float* bz = b + view_index(bb, z);
        float* cz = c + z * m * n;
        for (long long rt = blockIdx.y; rt < row_tiles; rt += gridDim.y) {
            const long long row0 = rt * TC_BM;
            const long long col0 = (long long)blockIdx.x * TC_BN;
            float acc[2][4][4];
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j)
#pragma unroll
                    for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.0f;
            for (long long k0 = 0; k0 < k; k0 += TC_BK) {
                stage_tf32_tiles(as, bs, az, rsa, csa, bz, rsb, csb, m, n, k, row0, col0, k0);
                __syncthreads();
#pragma unroll
                for (int kk = 0; kk < TC_BK; kk += 8) {
                    // A (16 x 8, row-major): a[i] at row g + 8 (i & 1), column t + 4 (i >> 1).
                    unsigned af[2][4];
#pragma unroll
                    for (int i = 0; i < 2; ++i) {
                        const int r0 = warp_row + 16 * i + g;
                        af[i][0] = as[r0][kk + t];
                        af[i][1] = as[r0 + 8][kk + t];
                        af[i][2] = as[r0][kk + t + 4];
                        af[i][3] = as[r0 + 8][kk + t + 4];
                    }
                    // B (8 x 8, column-major): b[i] at row t + 4 i, column g.
                    unsigned bf[4][2];
#pragma unroll
                    for (int j = 0; j < 4; ++j) {
                        const int c0 = warp_col + 8 * j + g;
                        bf[j][0] = bs[kk + t][c0];
                        bf[j][1] = bs[kk + t + 4][c0];
                    }
#pragma unroll
                    for (int i = 0; i < 2; ++i)
#pragma unroll
                        for (int j = 0; j < 4; ++j) mma_tf32_16x8x8(acc[i][j], af[i], bf[j]);
                }
                // The next slice overwrites the tiles only after every warp has read them.
                __syncthreads();
            }
            // C/D: acc[r] at row g + 8 (r >> 1), column 2 t + (r & 1).
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j)
#pragma unroll
                    for (int r = 0; r < 4; ++r) {
                        const long long gi = row0 + warp_row + 16 * i + g + 8 * (r >> 1);
                        const long long gj = col0 + warp_col + 8 * j + 2 * t + (r & 1);
                        if (gi < m && gj < n) cz[gi * n + gj] = acc[i][j][r];
                    }
        }
    }
}

// CPU: storage::batched_matmul(a, al, b, bl), within TF32's error bound
extern "C" __global__ void __launch_bounds__(TC_THREADS)
    matmul_tf32_f32(const float* a, StridedView ab, long long rsa, long long csa, const float* b,
                    StridedView bb, long long rsb, long long csb, float* c, long long batch,
                    long long m, long long n, long long k) {
    matmul_tf32_tiled(a, ab, rsa, csa, b, bb, rsb, csb, c, batch, m, n, k);
}
