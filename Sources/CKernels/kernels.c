// See include/ckernels.h. Plain loops over arithmetic the compiler vectorises; each exported
// function is compiled three times (AVX-512, AVX2+FMA, baseline) and the first call picks the
// best the CPU supports. (clang's target_clones would do this, but crashes this clang.)
#include "ckernels.h"
#include "internal.h"

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
        for (size_t i = 0; i < n; i++) y[i] = ck_siluf(x[i]);
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

CK_VARIANTS(void, unary, (int op, const float *x, float *y, size_t n), (op, x, y, n))
CK_VARIANTS(float, exp_shift_sum, (float *p, size_t n, float m), (p, n, m))
CK_VARIANTS(float, max, (const float *p, size_t n), (p, n))

void ck_unary(int op, const float *x, float *y, size_t n) { CK_DISPATCH(unary)(op, x, y, n); }
float ck_exp_shift_sum(float *p, size_t n, float m) { CK_DISPATCH(exp_shift_sum)(p, n, m); }
float ck_max(const float *p, size_t n) { CK_DISPATCH(max)(p, n); }

// 16-bit floats. IEEE half through F16C/AVX-512 conversion instructions where the CPU has them
// (the baseline converts bit by bit); bfloat16 is the top half of a float32.
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

static inline float half_bits_to_float(unsigned short h) {
    unsigned sign = (unsigned)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) bits = sign | 0x7f800000u | (man << 13);           // inf / nan
    else if (exp != 0) bits = sign | ((exp + 112) << 23) | (man << 13);  // normal
    else if (man == 0) bits = sign;                                      // zero
    else {                                                               // subnormal: normalise
        int e = -1;
        do { e++; man <<= 1; } while (!(man & 0x400));
        bits = sign | ((unsigned)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float f; memcpy(&f, &bits, 4); return f;
}

static inline unsigned short float_to_half_bits(float f) {
    unsigned x; memcpy(&x, &f, 4);
    unsigned sign = (x >> 16) & 0x8000, absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) return (unsigned short)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    if (absx >= 0x477ff000u) return (unsigned short)(sign | 0x7c00);     // rounds past 65504: inf
    if (absx < 0x38800000u) {                                            // half subnormal or zero
        if (absx < 0x33000000u) return (unsigned short)sign;
        unsigned e = absx >> 23, m = (absx & 0x7fffff) | 0x800000, shift = 126 - e;
        unsigned r = m >> shift, rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (r & 1))) r++;
        return (unsigned short)(sign | r);
    }
    unsigned r = absx - 0x38000000u;                                     // rebias 127 -> 15
    unsigned out = r >> 13, rem = r & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (out & 1))) out++;
    return (unsigned short)(sign | out);
}

static inline unsigned short float_to_bf16_bits(float f) {
    unsigned x; memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((x >> 16) | 0x40);  // quiet nan
    x += 0x7fff + ((x >> 16) & 1);
    return (unsigned short)(x >> 16);
}

CK_INLINE void bf16_to_float_impl(const unsigned short *h, float *y, size_t n) {
    unsigned *u = (unsigned *)y;
    for (size_t i = 0; i < n; i++) u[i] = (unsigned)h[i] << 16;
}

CK_INLINE void float_to_bf16_impl(const float *x, unsigned short *h, size_t n) {
    for (size_t i = 0; i < n; i++) h[i] = float_to_bf16_bits(x[i]);
}

CK_VARIANTS(void, bf16_to_float, (const unsigned short *h, float *y, size_t n), (h, y, n))
CK_VARIANTS(void, float_to_bf16, (const float *x, unsigned short *h, size_t n), (x, h, n))

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static void half_to_float_avx512(const unsigned short *h, float *y, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))));
    for (; i < n; i++) y[i] = half_bits_to_float(h[i]);
}
__attribute__((target("avx,f16c"))) static void half_to_float_f16c(const unsigned short *h, float *y, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < n; i++) y[i] = half_bits_to_float(h[i]);
}
__attribute__((target("avx,f16c"))) static void float_to_half_f16c(const float *x, unsigned short *h, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(h + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) h[i] = float_to_half_bits(x[i]);
}
#endif

static void half_to_float_base(const unsigned short *h, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = half_bits_to_float(h[i]);
}
static void float_to_half_base(const float *x, unsigned short *h, size_t n) {
    for (size_t i = 0; i < n; i++) h[i] = float_to_half_bits(x[i]);
}

void ck_half_to_float(const unsigned short *h, float *y, size_t n, int bf16) {
    if (bf16) { CK_DISPATCH(bf16_to_float)(h, y, n); }
    typedef void (*fn_t)(const unsigned short *, float *, size_t);
    static fn_t f;
    if (!f) {
        f = half_to_float_base;
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f")) f = half_to_float_avx512;
        else if (__builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c")) f = half_to_float_f16c;
#endif
    }
    f(h, y, n);
}

void ck_float_to_half(const float *x, unsigned short *h, size_t n, int bf16) {
    if (bf16) { CK_DISPATCH(float_to_bf16)(x, h, n); }
    typedef void (*fn_t)(const float *, unsigned short *, size_t);
    static fn_t f;
    if (!f) {
        f = float_to_half_base;
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c")) f = float_to_half_f16c;
#endif
    }
    f(x, h, n);
}

// Large buffers stay in malloc's heap when freed instead of going back to the kernel, which
// would zero fresh pages again at the next step (6–7 % of a training step in clear_page).
#if defined(__GLIBC__)
#include <malloc.h>
void ck_keep_freed_memory(void) {
    mallopt(M_MMAP_THRESHOLD, 256 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
}
#else
void ck_keep_freed_memory(void) {}
#endif
