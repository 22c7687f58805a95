// Shared by the kernels of this folder (not part of the module's interface): the inline exp
// and the three-builds-and-a-choice dispatch of each exported kernel.
#pragma once
#include <stdint.h>
#include <string.h>

#define CK_INLINE static inline __attribute__((always_inline))

// e^x with relative error ~2e-7: Cody–Waite reduction, degree-6 polynomial, 2^n by exponent bits.
// One body for a float (ck_expf) and for a vector of 16 (ck_exp16, lane by lane).
typedef float ck_v16 __attribute__((ext_vector_type(16), aligned(4)));
typedef int32_t ck_i16 __attribute__((ext_vector_type(16), aligned(4)));

#define CK_EXP_BODY(T, I)                              \
    x = x > 88.72283f ? (T)88.72283f : x;              \
    x = x < -87.33654f ? (T)-87.33654f : x;            \
    const T magic = 12582912.0f; /* 1.5 · 2^23 */      \
    T t = x * 1.44269504088896341f + magic;            \
    T n = t - magic;                                   \
    T r = x - n * 0.693359375f;                        \
    r = r - n * -2.12194440e-4f;                       \
    T p = 1.0f / 720;                                  \
    p = p * r + 1.0f / 120;                            \
    p = p * r + 1.0f / 24;                             \
    p = p * r + 1.0f / 6;                              \
    p = p * r + 0.5f;                                  \
    p = p * r + 1.0f;                                  \
    p = p * r + 1.0f;                                  \
    I tb, mb, pb;                                      \
    memcpy(&tb, &t, sizeof t);                         \
    memcpy(&mb, &magic, sizeof magic);                 \
    memcpy(&pb, &p, sizeof p);                         \
    pb += (tb - mb) << 23;                             \
    memcpy(&p, &pb, sizeof p);                         \
    return p;

CK_INLINE float ck_expf(float x) { CK_EXP_BODY(float, uint32_t) }
CK_INLINE ck_v16 ck_exp16(ck_v16 x) { CK_EXP_BODY(ck_v16, ck_i16) }

// x·σ(x).
CK_INLINE float ck_siluf(float x) { return x / (1.0f + ck_expf(-x)); }

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

