// Copies and conversions of the CUDA backend: fill, strided gather (`copy_strided`), strided
// scatter (`write_strided`) and dtype casts. CPU twins in src/backend/cpu/storage.rs
// (`CpuStorage::full`, `copy_strided`, `write_strided`, `to_dtype`). f16 and bf16 are storage
// types: copies move their bits, casts round to nearest even as the `half` crate does.

#include <cuda_fp16.h>
#include <cuda_bf16.h>

// CPU: CpuStorage::full(numel, dtype, value)
extern "C" __global__ void fill_f32(float* y, long long n, double value) {
    float v = (float)value;
    GRID_STRIDE_LOOP(i, n) { y[i] = v; }
}
extern "C" __global__ void fill_f64(double* y, long long n, double value) {
    GRID_STRIDE_LOOP(i, n) { y[i] = value; }
}
extern "C" __global__ void fill_f16(__half* y, long long n, double value) {
    __half v = __double2half(value);
    GRID_STRIDE_LOOP(i, n) { y[i] = v; }
}
extern "C" __global__ void fill_bf16(__nv_bfloat16* y, long long n, double value) {
    __nv_bfloat16 v = __double2bfloat16(value);
    GRID_STRIDE_LOOP(i, n) { y[i] = v; }
}

// CPU: CpuStorage::copy_strided(layout); kernels by element width, the bits are moved as they are.
#define COPY_KERNELS(T, BITS)                                                                       \
    extern "C" __global__ void copy_b##BITS(const T* x, StridedView xv, T* y, long long n) {        \
        GRID_STRIDE_LOOP(i, n) { y[i] = x[view_index(xv, i)]; }                                   \
    }                                                                                               \
    /* CPU: CpuStorage::write_strided(dst, src, src_layout) */                                     \
    extern "C" __global__ void scatter_b##BITS(const T* src, StridedView sv, T* dst, StridedView dv, \
                                               long long n) {                                      \
        GRID_STRIDE_LOOP(i, n) { dst[view_index(dv, i)] = src[view_index(sv, i)]; }               \
    }

COPY_KERNELS(unsigned short, 16)
COPY_KERNELS(unsigned int, 32)
COPY_KERNELS(unsigned long long, 64)

// CPU: CpuStorage::to_dtype(layout, dtype). Every conversion goes through the widest exact path
// the CPU takes: f64 sources round once to the target, f16 <-> bf16 pass through f32.
__device__ __forceinline__ double to_f64(float x) { return (double)x; }
__device__ __forceinline__ double to_f64(double x) { return x; }
__device__ __forceinline__ double to_f64(__half x) { return (double)__half2float(x); }
__device__ __forceinline__ double to_f64(__nv_bfloat16 x) { return (double)__bfloat162float(x); }

template <typename D> __device__ __forceinline__ D from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ double from_f32<double>(float x) { return (double)x; }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

template <typename D> __device__ __forceinline__ D from_f64(double x);
template <> __device__ __forceinline__ float from_f64<float>(double x) { return (float)x; }
template <> __device__ __forceinline__ double from_f64<double>(double x) { return x; }
template <> __device__ __forceinline__ __half from_f64<__half>(double x) { return __double2half(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f64<__nv_bfloat16>(double x) { return __double2bfloat16(x); }

template <typename S, typename D> __device__ __forceinline__ D convert(S x) { return from_f32<D>((float)to_f64(x)); }
template <> __device__ __forceinline__ float convert<double, float>(double x) { return from_f64<float>(x); }
template <> __device__ __forceinline__ __half convert<double, __half>(double x) { return from_f64<__half>(x); }
template <> __device__ __forceinline__ __nv_bfloat16 convert<double, __nv_bfloat16>(double x) { return from_f64<__nv_bfloat16>(x); }
template <> __device__ __forceinline__ double convert<float, double>(float x) { return (double)x; }
template <> __device__ __forceinline__ double convert<double, double>(double x) { return x; }
template <> __device__ __forceinline__ double convert<__half, double>(__half x) { return to_f64(x); }
template <> __device__ __forceinline__ double convert<__nv_bfloat16, double>(__nv_bfloat16 x) { return to_f64(x); }

#define CAST_KERNEL(S, SN, D, DN)                                                                  \
    extern "C" __global__ void cast_##SN##_##DN(const S* x, StridedView xv, D* y, long long n) {  \
        GRID_STRIDE_LOOP(i, n) { y[i] = convert<S, D>(x[view_index(xv, i)]); }                    \
    }

#define CAST_FROM(S, SN)                       \
    CAST_KERNEL(S, SN, float, f32)             \
    CAST_KERNEL(S, SN, double, f64)            \
    CAST_KERNEL(S, SN, __half, f16)            \
    CAST_KERNEL(S, SN, __nv_bfloat16, bf16)

CAST_FROM(float, f32)
CAST_FROM(double, f64)
CAST_FROM(__half, f16)
CAST_FROM(__nv_bfloat16, bf16)
