// Random masks of the CUDA backend from Philox4x32-10 (src/util/philox.rs has the same rounds):
// element i's word depends only on (seed, i), so the mask is the CPU's whatever the launch shape.

__device__ __forceinline__ unsigned int philox_element_word(unsigned long long seed, unsigned long long index) {
    unsigned int c0 = (unsigned int)index, c1 = (unsigned int)(index >> 32), c2 = 0, c3 = 0;
    unsigned int k0 = (unsigned int)seed, k1 = (unsigned int)(seed >> 32);
    for (int round = 0; round < 10; ++round) {
        unsigned int hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
        unsigned int hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
        unsigned int n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return c0;
}

// CPU: random::dropout_mask(numel, p, seed)
#define DROPOUT_MASK(T, SUFFIX)                                                                        \
    extern "C" __global__ void dropout_mask_##SUFFIX(T* mask, long long n, unsigned long long seed,   \
                                                     unsigned int threshold, double keep) {            \
        T k = (T)keep;                                                                                 \
        GRID_STRIDE_LOOP(i, n) { mask[i] = philox_element_word(seed, (unsigned long long)i) < threshold ? T(0) : k; } \
    }

DROPOUT_MASK(float, f32)
DROPOUT_MASK(double, f64)
