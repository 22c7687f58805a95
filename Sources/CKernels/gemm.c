// Matrix products for a short, thin A: C[M, N] = A[M, K] · B[K, N] (+ C), row-major, with M and K
// of a few dozen to a few hundred — the 16 products of a Winograd convolution over 32–128
// channels. A BLAS packs both operands into its own layout first, which for K = 32 costs about as
// much as the product; here B's rows are read in place, 32 columns at a time, against 8 rows of A
// broadcast one element at a time: 16 accumulators of 16 lanes, B's panel reused from L1 by every
// block of A's rows.
#include "ckernels.h"
#include "internal.h"

typedef float v16 __attribute__((ext_vector_type(16), aligned(4)));

CK_INLINE v16 ld16(const float *p) { v16 v; memcpy(&v, p, sizeof v); return v; }
CK_INLINE void st16(float *p, v16 v) { memcpy(p, &v, sizeof v); }

// Rows i0..<i0+R of C, columns j..<j+16·W, from B's columns at b (row stride ldb).
CK_INLINE void block(int R, int W, int K, const float *a, size_t lda, const float *b, size_t ldb, float *c, size_t ldc,
                     int accumulate) {
    v16 acc[8][2];
    for (int r = 0; r < R; r++)
        for (int w = 0; w < W; w++) acc[r][w] = accumulate ? ld16(c + r * ldc + 16 * w) : (v16)0;
    for (int k = 0; k < K; k++) {
        v16 bv[2];
        for (int w = 0; w < W; w++) bv[w] = ld16(b + (size_t)k * ldb + 16 * w);
        for (int r = 0; r < R; r++) {
            const float s = a[r * lda + k];
            for (int w = 0; w < W; w++) acc[r][w] += s * bv[w];
        }
    }
    for (int r = 0; r < R; r++)
        for (int w = 0; w < W; w++) st16(c + r * ldc + 16 * w, acc[r][w]);
}

CK_INLINE void columns(int W, int M, int K, const float *a, size_t lda, const float *b, size_t ldb, float *c, size_t ldc,
                       int accumulate) {
    int i = 0;
    for (; i + 8 <= M; i += 8) block(8, W, K, a + (size_t)i * lda, lda, b, ldb, c + (size_t)i * ldc, ldc, accumulate);
    for (; i + 4 <= M; i += 4) block(4, W, K, a + (size_t)i * lda, lda, b, ldb, c + (size_t)i * ldc, ldc, accumulate);
    for (; i < M; i++) block(1, W, K, a + (size_t)i * lda, lda, b, ldb, c + (size_t)i * ldc, ldc, accumulate);
}

CK_INLINE void sgemm_small_impl(int M, int N, int K, const float *a, size_t lda, const float *b, size_t ldb, float *c,
                                size_t ldc, int accumulate, float *scratch) {
    int j = 0;
    for (; j + 32 <= N; j += 32) columns(2, M, K, a, lda, b + j, ldb, c + j, ldc, accumulate);
    for (; j + 16 <= N; j += 16) columns(1, M, K, a, lda, b + j, ldb, c + j, ldc, accumulate);
    if (j < N) {
        // The last columns through a zero-padded copy of 16: B's [K, 16], then C's [M, 16].
        const int w = N - j;
        float *bt = scratch, *ct = scratch + (size_t)K * 16;
        for (int k = 0; k < K; k++)
            for (int l = 0; l < 16; l++) bt[k * 16 + l] = l < w ? b[(size_t)k * ldb + j + l] : 0;
        for (int i = 0; i < M; i++)
            for (int l = 0; l < 16; l++) ct[i * 16 + l] = accumulate && l < w ? c[(size_t)i * ldc + j + l] : 0;
        columns(1, M, K, a, lda, bt, 16, ct, 16, accumulate);
        for (int i = 0; i < M; i++)
            for (int l = 0; l < w; l++) c[(size_t)i * ldc + j + l] = ct[i * 16 + l];
    }
}

CK_VARIANTS(void, sgemm_small,
            (int M, int N, int K, const float *a, size_t lda, const float *b, size_t ldb, float *c, size_t ldc,
             int accumulate, float *scratch),
            (M, N, K, a, lda, b, ldb, c, ldc, accumulate, scratch))

void ck_sgemm_small(int m, int n, int k, const float *a, size_t lda, const float *b, size_t ldb, float *c, size_t ldc,
                    int accumulate, float *scratch) {
    CK_DISPATCH(sgemm_small)(m, n, k, a, lda, b, ldb, c, ldc, accumulate, scratch);
}
