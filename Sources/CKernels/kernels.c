// See include/ckernels.h. Plain loops over arithmetic the compiler vectorises; each exported
// function is compiled three times (AVX-512, AVX2+FMA, baseline) and the first call picks the
// best the CPU supports. (clang's target_clones would do this, but crashes this clang.)
#include "ckernels.h"
#include <stdint.h>
#include <string.h>

#define CK_INLINE static inline __attribute__((always_inline))

// e^x with relative error ~2e-7: Cody–Waite reduction, degree-6 polynomial, 2^n by exponent bits.
CK_INLINE float ck_expf(float x) {
    x = x > 88.72283f ? 88.72283f : x;
    x = x < -87.33654f ? -87.33654f : x;
    const float magic = 12582912.0f;  // 1.5 · 2^23
    float t = x * 1.44269504088896341f + magic;
    float n = t - magic;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t tb, mb, pb;
    memcpy(&tb, &t, 4);
    memcpy(&mb, &magic, 4);
    memcpy(&pb, &p, 4);
    pb += (int32_t)((uint32_t)(tb - mb) << 23);
    memcpy(&p, &pb, 4);
    return p;
}

// erf with absolute error < 1.5e-7 (Abramowitz & Stegun 7.1.26).
CK_INLINE float ck_erff(float x) {
    float ax = x < 0 ? -x : x;
    float t = 1.0f / (1.0f + 0.3275911f * ax);
    float p = 1.061405429f;
    p = p * t - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    p = p * t;
    float y = 1.0f - p * ck_expf(-ax * ax);
    return x < 0 ? -y : y;
}

CK_INLINE float ck_tanhf(float x) { return 1.0f - 2.0f / (ck_expf(x + x) + 1.0f); }

CK_INLINE void unary_impl(int op, const float *restrict x, float *y, size_t n) {
    switch (op) {
    case CK_EXP:
        for (size_t i = 0; i < n; i++) y[i] = ck_expf(x[i]);
        break;
    case CK_SIGMOID:
        for (size_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + ck_expf(-x[i]));
        break;
    case CK_SILU:
        for (size_t i = 0; i < n; i++) { float v = x[i]; y[i] = v / (1.0f + ck_expf(-v)); }
        break;
    case CK_TANH:
        for (size_t i = 0; i < n; i++) y[i] = ck_tanhf(x[i]);
        break;
    case CK_GELU:
        for (size_t i = 0; i < n; i++) { float v = x[i]; y[i] = 0.5f * v * (1.0f + ck_erff(v * 0.70710678118654752f)); }
        break;
    case CK_GELU_TANH:
        for (size_t i = 0; i < n; i++) {
            float v = x[i];
            y[i] = 0.5f * v * (1.0f + ck_tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
        }
        break;
    }
}

CK_INLINE float exp_shift_sum_impl(float *p, size_t n, float m) {
    float acc[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        for (int l = 0; l < 16; l++) {
            float e = ck_expf(p[i + l] - m);
            p[i + l] = e;
            acc[l] += e;
        }
    }
    float s = 0;
    for (; i < n; i++) { float e = ck_expf(p[i] - m); p[i] = e; s += e; }
    for (int l = 0; l < 16; l++) s += acc[l];
    return s;
}

CK_INLINE float max_impl(const float *p, size_t n) {
    float acc[16];
    for (int l = 0; l < 16; l++) acc[l] = p[0];
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) acc[l] = p[i + l] > acc[l] ? p[i + l] : acc[l];
    float m = p[0];
    for (; i < n; i++) m = p[i] > m ? p[i] : m;
    for (int l = 0; l < 16; l++) m = acc[l] > m ? acc[l] : m;
    return m;
}

// Three builds of each kernel and a one-time choice among them.
#if defined(__x86_64__)
#define CK_VARIANTS(ret, name, params, args)                                                   \
    __attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma"))) static ret name##_avx512 params { \
        return name##_impl args;                                                               \
    }                                                                                          \
    __attribute__((target("avx2,fma"))) static ret name##_avx2 params { return name##_impl args; } \
    static ret name##_base params { return name##_impl args; }                                 \
    typedef ret(*name##_fn) params;                                                            \
    static name##_fn name##_pick(void) {                                                       \
        __builtin_cpu_init();                                                                  \
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&         \
            __builtin_cpu_supports("avx512dq")) return name##_avx512;                          \
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return name##_avx2; \
        return name##_base;                                                                    \
    }
#define CK_DISPATCH(name) static name##_fn f; if (!f) f = name##_pick(); return f
#else
#define CK_VARIANTS(ret, name, params, args) static ret name##_base params { return name##_impl args; }
#define CK_DISPATCH(name) return name##_base
#endif

CK_VARIANTS(void, unary, (int op, const float *x, float *y, size_t n), (op, x, y, n))
CK_VARIANTS(float, exp_shift_sum, (float *p, size_t n, float m), (p, n, m))
CK_VARIANTS(float, max, (const float *p, size_t n), (p, n))

void ck_unary(int op, const float *x, float *y, size_t n) { CK_DISPATCH(unary)(op, x, y, n); }
float ck_exp_shift_sum(float *p, size_t n, float m) { CK_DISPATCH(exp_shift_sum)(p, n, m); }
float ck_max(const float *p, size_t n) { CK_DISPATCH(max)(p, n); }
