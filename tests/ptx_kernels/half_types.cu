// half and bfloat16 conversions and arithmetic. NVRTC ships without cuda_fp16.h, so the conversions
// are written as the same PTX instructions that header emits.
typedef unsigned short half_bits;

__device__ half_bits f32_to_f16(float x) { half_bits h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x)); return h; }
__device__ float f16_to_f32(half_bits h) { float x; asm("cvt.f32.f16 %0, %1;" : "=f"(x) : "h"(h)); return x; }
__device__ half_bits f32_to_bf16(float x) { half_bits h; asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(x)); return h; }
__device__ float bf16_to_f32(half_bits h) { float x; asm("{ mov.b32 %0, {0, %1}; }" : "=f"(x) : "h"(h)); return x; }
__device__ half_bits f16_fma(half_bits a, half_bits b, half_bits c) {
    half_bits d; asm("fma.rn.f16 %0, %1, %2, %3;" : "=h"(d) : "h"(a), "h"(b), "h"(c)); return d;
}
__device__ half_bits f32_to_f16_rz(float x) { half_bits h; asm("cvt.rz.f16.f32 %0, %1;" : "=h"(h) : "f"(x)); return h; }

extern "C" __global__ void half_roundtrip(const float* x, half_bits* h, half_bits* b, half_bits* h_rz, float* back, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    half_bits hv = f32_to_f16(x[i]);
    half_bits bv = f32_to_bf16(x[i]);
    h[i] = hv;
    b[i] = bv;
    h_rz[i] = f32_to_f16_rz(x[i]);
    // hv * 2 + hv computed in half precision, plus the bf16 value widened back.
    back[i] = f16_to_f32(f16_fma(hv, f32_to_f16(2.0f), hv)) + bf16_to_f32(bv);
}
