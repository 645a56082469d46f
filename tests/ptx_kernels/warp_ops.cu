// Warp primitives beyond the reductions, and vectorised float4 / packed half2 memory traffic.
extern "C" __global__ void warp_primitives(const int* x, int* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int lane = threadIdx.x & 31;
    int v = (i < n) ? x[i] : -1;
    int* o = out + (long)i * 10;
    int from_idx = __shfl_sync(0xffffffffu, v, (lane * 7) & 31);
    int from_up = __shfl_up_sync(0xffffffffu, v, 3);
    int seg = __shfl_xor_sync(0xffffffffu, v, 1, 8);
    int any_neg = __any_sync(0xffffffffu, v < 0);
    int all_pos = __all_sync(0xffffffffu, v > 0);
    unsigned int same = __match_any_sync(0xffffffffu, v & 3);
    int total = __reduce_add_sync(0xffffffffu, v);
    int biggest = __reduce_max_sync(0xffffffffu, v);
    // Divergence, then reconvergence before a shuffle.
    int odd = 0;
    if (lane & 1) {
        odd = v * 3;
    } else {
        odd = v - 5;
    }
    __syncwarp();
    int neighbour = __shfl_down_sync(0xffffffffu, odd, 1);
    unsigned int active = __activemask();
    if (i < n) {
        o[0] = from_idx; o[1] = from_up; o[2] = seg; o[3] = any_neg; o[4] = all_pos;
        o[5] = (int)same; o[6] = total; o[7] = biggest; o[8] = neighbour; o[9] = (int)active;
    }
}

typedef unsigned int half2_bits;
__device__ half2_bits pack_half2(float hi, float lo) {
    half2_bits r; asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo)); return r;
}
__device__ half2_bits hfma2(half2_bits a, half2_bits b, half2_bits c) {
    half2_bits d; asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c)); return d;
}

extern "C" __global__ void float4_axpy_half2(const float4* x, float4* y, half2_bits* h, int n4) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n4) return;
    float4 a = x[i];
    float4 b = y[i];
    b.x += 2.0f * a.x; b.y += 2.0f * a.y; b.z += 2.0f * a.z; b.w += 2.0f * a.w;
    y[i] = b;
    half2_bits p = pack_half2(a.x, a.y);
    h[i] = hfma2(p, pack_half2(2.0f, 0.5f), p);
}
