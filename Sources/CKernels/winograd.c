// Winograd F(2×2, 3×3) transforms (Lavin & Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016). A 3×3 convolution of stride 1 computes each 2×2 block of outputs from a
// 4×4 patch of input with 16 products per (input, output) channel pair instead of 36:
//     Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A,
// and summed over input channels the ⊙ becomes 16 matrix products. Bᵀ and Aᵀ hold only 0 and
// ±1, and G only ±½ and 1, so the transforms add and subtract (the weights' halves are exact).
// The products run in Sources/Tensor (Conv.swift); these are the transforms, vectorised over the
// tiles of one row of tiles, in AVX-512, AVX2 and baseline builds picked at load time.
#include "ckernels.h"
#include <string.h>

#if defined(__x86_64__) && defined(__clang__)
#define CK_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CK_CLONES
#endif

void ck_winograd_weights(const float *w, int cout, int cin, float *u) {
    const size_t plane = (size_t)cout * cin;
    for (int co = 0; co < cout; co++) {
        for (int ci = 0; ci < cin; ci++) {
            const float *g = w + ((size_t)co * cin + ci) * 9;
            float t[4][3];  // G g: rows of G applied down the columns of g
            for (int j = 0; j < 3; j++) {
                float g0 = g[j], g1 = g[3 + j], g2 = g[6 + j];
                t[0][j] = g0;
                t[1][j] = 0.5f * (g0 + g1 + g2);
                t[2][j] = 0.5f * (g0 - g1 + g2);
                t[3][j] = g2;
            }
            for (int i = 0; i < 4; i++) {  // (G g) Gᵀ
                float a = t[i][0], b = t[i][1], c = t[i][2];
                float *o = u + (size_t)(i * 4) * plane + (size_t)co * cin + ci;
                o[0] = a;
                o[plane] = 0.5f * (a + b + c);
                o[2 * plane] = 0.5f * (a - b + c);
                o[3 * plane] = c;
            }
        }
    }
}

CK_CLONES
void ck_winograd_input_row(const float *plane, int h, int w, int pad, int ty, int tw,
                           float *v, size_t estride, float *scratch) {
    // The tile row's four input rows, zero-padded and split into even and odd columns:
    // e[i][k] = x[2ty − pad + i][2k − pad], o[i][k] = x[…][2k + 1 − pad], k ≤ tw.
    const int len = tw + 1;
    float *e[4], *o[4];
    for (int i = 0; i < 4; i++) {
        e[i] = scratch + (size_t)(2 * i) * len;
        o[i] = scratch + (size_t)(2 * i + 1) * len;
        int iy = 2 * ty - pad + i;
        if (iy < 0 || iy >= h) {
            memset(e[i], 0, sizeof(float) * len);
            memset(o[i], 0, sizeof(float) * len);
            continue;
        }
        const float *src = plane + (size_t)iy * w;
        // Interior columns with both reads inside the row, then the edges with checks.
        int k0 = (pad + 1) / 2, k1 = (w - 1 + pad) / 2;  // 2k − pad ≥ 0 and 2k + 1 − pad ≤ w − 1
        if (k1 > len) k1 = len;
        for (int k = 0; k < k0 && k < len; k++) {
            int ix = 2 * k - pad;
            e[i][k] = (ix >= 0 && ix < w) ? src[ix] : 0.0f;
            o[i][k] = (ix + 1 >= 0 && ix + 1 < w) ? src[ix + 1] : 0.0f;
        }
        const float *s0 = src - pad;
#pragma clang loop vectorize(assume_safety)
        for (int k = k0; k < k1; k++) {
            e[i][k] = s0[2 * k];
            o[i][k] = s0[2 * k + 1];
        }
        for (int k = k1 > k0 ? k1 : k0; k < len; k++) {
            int ix = 2 * k - pad;
            e[i][k] = (ix >= 0 && ix < w) ? src[ix] : 0.0f;
            o[i][k] = (ix + 1 >= 0 && ix + 1 < w) ? src[ix + 1] : 0.0f;
        }
    }
    // Per tile: t = d B along each of the four rows, then V = Bᵀ t down the columns.
    const float *e0 = e[0], *e1 = e[1], *e2 = e[2], *e3 = e[3];
    const float *o0 = o[0], *o1 = o[1], *o2 = o[2], *o3 = o[3];
    float *restrict v00 = v, *restrict v01 = v + estride, *restrict v02 = v + 2 * estride, *restrict v03 = v + 3 * estride;
    float *restrict v10 = v + 4 * estride, *restrict v11 = v + 5 * estride, *restrict v12 = v + 6 * estride, *restrict v13 = v + 7 * estride;
    float *restrict v20 = v + 8 * estride, *restrict v21 = v + 9 * estride, *restrict v22 = v + 10 * estride, *restrict v23 = v + 11 * estride;
    float *restrict v30 = v + 12 * estride, *restrict v31 = v + 13 * estride, *restrict v32 = v + 14 * estride, *restrict v33 = v + 15 * estride;
#define ROW(ei, oi, t0, t1, t2, t3) \
    float t0 = ei[x] - ei[x + 1], t1 = oi[x] + ei[x + 1], t2 = ei[x + 1] - oi[x], t3 = oi[x] - oi[x + 1];
    // The outputs never overlap the inputs (scratch and V are separate buffers).
#pragma clang loop vectorize(assume_safety)
    for (int x = 0; x < tw; x++) {
        ROW(e0, o0, a0, a1, a2, a3)
        ROW(e1, o1, b0, b1, b2, b3)
        ROW(e2, o2, c0, c1, c2, c3)
        ROW(e3, o3, d0, d1, d2, d3)
        v00[x] = a0 - c0; v01[x] = a1 - c1; v02[x] = a2 - c2; v03[x] = a3 - c3;
        v10[x] = b0 + c0; v11[x] = b1 + c1; v12[x] = b2 + c2; v13[x] = b3 + c3;
        v20[x] = c0 - b0; v21[x] = c1 - b1; v22[x] = c2 - b2; v23[x] = c3 - b3;
        v30[x] = b0 - d0; v31[x] = b1 - d1; v32[x] = b2 - d2; v33[x] = b3 - d3;
    }
#undef ROW
}

CK_CLONES
void ck_winograd_output_row(const float *m, size_t estride, int tw, int ty, float *plane, int ho, int wo,
                            float bias, float *scratch) {
    // s = m A across each row of the 4×4 block, then Aᵀ s down the columns: y[a][b][tx].
    float *s = scratch;  // s[i][b][tx], 8 rows of tw
    for (int i = 0; i < 4; i++) {
        const float *m0 = m + (size_t)(i * 4 + 0) * estride, *m1 = m + (size_t)(i * 4 + 1) * estride;
        const float *m2 = m + (size_t)(i * 4 + 2) * estride, *m3 = m + (size_t)(i * 4 + 3) * estride;
        float *s0 = s + (size_t)(i * 2) * tw, *s1 = s + (size_t)(i * 2 + 1) * tw;
#pragma clang loop vectorize(assume_safety)
        for (int x = 0; x < tw; x++) {
            s0[x] = m0[x] + m1[x] + m2[x];
            s1[x] = m1[x] - m2[x] - m3[x];
        }
    }
    float *row = scratch + 8 * (size_t)tw;  // one output row, 2·tw wide
    for (int a = 0; a < 2; a++) {
        int oy = 2 * ty + a;
        if (oy >= ho) break;
        for (int b = 0; b < 2; b++) {
            const float *p0 = s + (size_t)(0 * 2 + b) * tw, *p1 = s + (size_t)(1 * 2 + b) * tw;
            const float *p2 = s + (size_t)(2 * 2 + b) * tw, *p3 = s + (size_t)(3 * 2 + b) * tw;
            if (a == 0) for (int x = 0; x < tw; x++) row[2 * x + b] = p0[x] + p1[x] + p2[x] + bias;
            else for (int x = 0; x < tw; x++) row[2 * x + b] = p1[x] - p2[x] - p3[x] + bias;
        }
        memcpy(plane + (size_t)oy * wo, row, sizeof(float) * wo);
    }
}
