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
