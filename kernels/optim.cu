// Fused optimizer updates of the CUDA backend. The arithmetic uses the separately rounded
// helpers of common.cuh (mul_rn, add_rn, ...) so that each element goes through exactly the
// operations of the CPU twin, in its order: the results are the same bits.

// Scalars of one step, converted to the element type on the host side's formulas.
struct AdamScalars {
    double decay;        // 1 - lr wd (decoupled decay), used when mode & 1
    double l2;           // wd (decay added to the gradient), used when mode & 2
    double beta1, one_minus_beta1, beta2, one_minus_beta2;
    double inv_bias2, eps, step_size;
    int mode;            // bit 0: decoupled decay, bit 1: L2 decay, bit 2: moments exist
};

// CPU: optim::adam_update(p, g, m, v, step)
#define ADAM_KERNEL(T, SUFFIX)                                                                         \
    extern "C" __global__ void adam_update_##SUFFIX(const T* p, const T* g, const T* m, const T* v,    \
                                                    T* new_p, T* new_m, T* new_v, long long n,         \
                                                    AdamScalars s) {                                   \
        const T zero = T(0);                                                                           \
        GRID_STRIDE_LOOP(i, n) {                                                                       \
            T pv = p[i], gv = g[i];                                                                    \
            if (s.mode & 1) pv = add_rn(mul_rn(pv, (T)s.decay), zero);                                 \
            if (s.mode & 2) gv = add_rn(gv, add_rn(mul_rn(pv, (T)s.l2), zero));                       \
            T mv = add_rn(mul_rn(gv, (T)s.one_minus_beta1), zero);                                     \
            T vv = add_rn(mul_rn(mul_rn(gv, gv), (T)s.one_minus_beta2), zero);                         \
            if (s.mode & 4) {                                                                          \
                mv = add_rn(add_rn(mul_rn(m[i], (T)s.beta1), zero), mv);                               \
                vv = add_rn(add_rn(mul_rn(v[i], (T)s.beta2), zero), vv);                               \
            }                                                                                          \
            T denom = add_rn(sqrt_rn(add_rn(mul_rn(vv, (T)s.inv_bias2), zero)), (T)s.eps);             \
            new_p[i] = sub_rn(pv, add_rn(mul_rn(div_rn(mv, denom), (T)s.step_size), zero));           \
            new_m[i] = mv;                                                                             \
            new_v[i] = vv;                                                                             \
        }                                                                                              \
    }

ADAM_KERNEL(float, f32)
ADAM_KERNEL(double, f64)
