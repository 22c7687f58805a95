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

CK_CLONES
void ck_winograd_weights(const float *w, int cout, int cin, float *u) {
    // One output channel at a time, its input channels across the vector lanes (kernels 9 floats
    // apart in w, contiguous in each of u's 16 planes).
    const size_t plane = (size_t)cout * cin;
    for (int co = 0; co < cout; co++) {
        const float *wc = w + (size_t)co * cin * 9;
        float *restrict uc = u + (size_t)co * cin;
#pragma clang loop vectorize(assume_safety)
        for (int ci = 0; ci < cin; ci++) {
            const float *g = wc + (size_t)ci * 9;
            float t[4][3];  // G g: rows of G applied down the columns of g
            for (int j = 0; j < 3; j++) {
                const float g0 = g[j], g1 = g[3 + j], g2 = g[6 + j];
                t[0][j] = g0;
                t[1][j] = 0.5f * (g0 + g1 + g2);
                t[2][j] = 0.5f * (g0 - g1 + g2);
                t[3][j] = g2;
            }
            for (int i = 0; i < 4; i++) {  // (G g) Gᵀ
                const float a = t[i][0], b = t[i][1], c = t[i][2];
                float *o = uc + (size_t)(i * 4) * plane + ci;
                o[0] = a;
                o[plane] = 0.5f * (a + b + c);
                o[2 * plane] = 0.5f * (a - b + c);
                o[3 * plane] = c;
            }
        }
    }
}

CK_CLONES
void ck_winograd_input_rows(const float *plane, int h, int w, int pad, int ty0, int rows, int tw,
                            float *v, size_t estride, float *scratch) {
    // Input rows 2ty − pad … 2ty − pad + 3 of tile row ty (rows outside the plane read as a
    // zero row), Bᵀ down their columns straight into four rows t padded to 2tw + 2: t[c] comes
    // from column c − pad (zero outside). No padded copy of the input first (1.3–1.6× faster
    // in cache than copying, on 8×8 to 32×32 planes).
    const int len = 2 * tw + 2;
    float *zero = scratch, *t = scratch + len;
    memset(zero, 0, sizeof(float) * (size_t)len);
    const int c1 = pad + w < len ? pad + w : len;  // t columns pad ..< c1 come from the plane
    const int n = c1 - pad;
    float *restrict t0 = t, *restrict t1 = t + len, *restrict t2 = t + 2 * len, *restrict t3 = t + 3 * len;
    for (int r = 0; r < rows; r++) {
        const int iy = 2 * (ty0 + r) - pad;
        const float *d0 = iy >= 0 && iy < h ? plane + (size_t)iy * w : zero;
        const float *d1 = iy + 1 >= 0 && iy + 1 < h ? plane + (size_t)(iy + 1) * w : zero;
        const float *d2 = iy + 2 >= 0 && iy + 2 < h ? plane + (size_t)(iy + 2) * w : zero;
        const float *d3 = iy + 3 >= 0 && iy + 3 < h ? plane + (size_t)(iy + 3) * w : zero;
        for (int c = 0; c < pad; c++) t0[c] = t1[c] = t2[c] = t3[c] = 0;
        for (int c = c1; c < len; c++) t0[c] = t1[c] = t2[c] = t3[c] = 0;
        float *restrict u0 = t0 + pad, *restrict u1 = t1 + pad, *restrict u2 = t2 + pad, *restrict u3 = t3 + pad;
#pragma clang loop vectorize(assume_safety)
        for (int c = 0; c < n; c++) {
            u0[c] = d0[c] - d2[c];
            u1[c] = d1[c] + d2[c];
            u2[c] = d2[c] - d1[c];
            u3[c] = d1[c] - d3[c];
        }
        // ... then B along each: V[4i + j][tx] from columns 2tx … 2tx + 3 of t row i.
        for (int i = 0; i < 4; i++) {
            const float *ti = t + (size_t)i * len;
            float *restrict w0 = v + (size_t)(4 * i) * estride + (size_t)r * tw, *restrict w1 = w0 + estride;
            float *restrict w2 = w1 + estride, *restrict w3 = w2 + estride;
#pragma clang loop vectorize(assume_safety)
            for (int x = 0; x < tw; x++) {
                const float a = ti[2 * x], b = ti[2 * x + 1], c = ti[2 * x + 2], d = ti[2 * x + 3];
                w0[x] = a - c;
                w1[x] = b + c;
                w2[x] = c - b;
                w3[x] = b - d;
            }
        }
    }
}

CK_CLONES
void ck_winograd_output_rows(const float *m, size_t estride, int tw, int ty0, int rows, float *plane, int ho, int wo,
                             float bias, float *scratch) {
    // Each tile row's four outputs per tile straight from its 16 products (no intermediate rows:
    // 1.5–2.2× in cache, bit for bit the same sums), into the plane's two rows when they are
    // whole tiles wide and both inside it, else through `spare`.
    float *spare = scratch;  // two output rows, 2·tw wide
    for (int r = 0; r < rows; r++) {
        const int ty = ty0 + r, oy = 2 * ty;
        const float *mr = m + (size_t)r * tw;
        const int whole = 2 * tw == wo && oy + 1 < ho;
        float *restrict y0 = whole ? plane + (size_t)oy * wo : spare;
        float *restrict y1 = whole ? y0 + wo : spare + 2 * (size_t)tw;
        const float *m0 = mr, *m1 = mr + estride, *m2 = mr + 2 * estride, *m3 = mr + 3 * estride;
        const float *m4 = mr + 4 * estride, *m5 = mr + 5 * estride, *m6 = mr + 6 * estride, *m7 = mr + 7 * estride;
        const float *m8 = mr + 8 * estride, *m9 = mr + 9 * estride, *m10 = mr + 10 * estride, *m11 = mr + 11 * estride;
        const float *m12 = mr + 12 * estride, *m13 = mr + 13 * estride, *m14 = mr + 14 * estride, *m15 = mr + 15 * estride;
#pragma clang loop vectorize(assume_safety)
        for (int x = 0; x < tw; x++) {
            // m A across each row i of the 4×4 block: (p_i, q_i) = (m_i0 + m_i1 + m_i2, m_i1 − m_i2 − m_i3)
            const float p0 = m0[x] + m1[x] + m2[x], q0 = m1[x] - m2[x] - m3[x];
            const float p1 = m4[x] + m5[x] + m6[x], q1 = m5[x] - m6[x] - m7[x];
            const float p2 = m8[x] + m9[x] + m10[x], q2 = m9[x] - m10[x] - m11[x];
            const float p3 = m12[x] + m13[x] + m14[x], q3 = m13[x] - m14[x] - m15[x];
            // then Aᵀ down the columns
            y0[2 * x] = p0 + p1 + p2 + bias;
            y0[2 * x + 1] = q0 + q1 + q2 + bias;
            y1[2 * x] = p1 - p2 - p3 + bias;
            y1[2 * x + 1] = q1 - q2 - q3 + bias;
        }
        if (!whole) {
            memcpy(plane + (size_t)oy * wo, spare, sizeof(float) * (size_t)wo);
            if (oy + 1 < ho) memcpy(plane + (size_t)(oy + 1) * wo, spare + 2 * (size_t)tw, sizeof(float) * (size_t)wo);
        }
    }
}

// Weight gradients by Winograd F(3×3, 2×2). The forward's Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A is linear
// in g, so dL/dg = Gᵀ[(A gY Aᵀ) ⊙ (Bᵀ d B)]G for one tile's output gradient gY (2×2) and input
// patch d (4×4), and over all tiles and images the ⊙ summed becomes 16 matrix products
// M_e [Cout, Cin] = Σ_tiles (A gY Aᵀ)_e (Bᵀ d B)_eᵀ: 4 multiply-adds per output pixel and channel
// pair instead of im2col's 9, and no 9-fold unfold. The input side is ck_winograd_input_rows.
// A's last row is taken as +[0 1] (not −) so the transform only copies, adds and subtracts; the
// sign goes into the last row of G in ck_winograd_weights_grad (s_e s_f on both sides).

CK_CLONES
void ck_winograd_grad_rows(const float *plane, int ho, int wo, int ty0, int rows, int tw, float *v, size_t estride,
                           float *scratch) {
    const int len = 2 * tw;
    float *pa = scratch, *pb = scratch + len;
    for (int r = 0; r < rows; r++) {
        // The tile row's two output-gradient rows, zero past the plane's edge.
        const int oy = 2 * (ty0 + r);
        const float *a = plane + (size_t)oy * wo, *b = a + wo;
        if (len != wo) {
            memcpy(pa, a, sizeof(float) * (size_t)wo);
            pa[len - 1] = 0;
            a = pa;
        }
        if (oy + 1 >= ho) {
            memset(pb, 0, sizeof(float) * (size_t)len);
            b = pb;
        } else if (len != wo) {
            memcpy(pb, b, sizeof(float) * (size_t)wo);
            pb[len - 1] = 0;
            b = pb;
        }
        // A' down the two rows (a, a + b, a − b, b), then along each: columns 2tx and 2tx + 1
        // (p, q) → p, p + q, p − q, q — all 16 from the four values, in one pass.
        float *restrict w0 = v + (size_t)r * tw;
        float *restrict w1 = w0 + estride, *restrict w2 = w1 + estride, *restrict w3 = w2 + estride;
        float *restrict w4 = w3 + estride, *restrict w5 = w4 + estride, *restrict w6 = w5 + estride;
        float *restrict w7 = w6 + estride, *restrict w8 = w7 + estride, *restrict w9 = w8 + estride;
        float *restrict w10 = w9 + estride, *restrict w11 = w10 + estride, *restrict w12 = w11 + estride;
        float *restrict w13 = w12 + estride, *restrict w14 = w13 + estride, *restrict w15 = w14 + estride;
#pragma clang loop vectorize(assume_safety)
        for (int x = 0; x < tw; x++) {
            const float ap = a[2 * x], aq = a[2 * x + 1], bp = b[2 * x], bq = b[2 * x + 1];
            const float sp = ap + bp, sq = aq + bq, dp = ap - bp, dq = aq - bq;
            w0[x] = ap; w1[x] = ap + aq; w2[x] = ap - aq; w3[x] = aq;
            w4[x] = sp; w5[x] = sp + sq; w6[x] = sp - sq; w7[x] = sq;
            w8[x] = dp; w9[x] = dp + dq; w10[x] = dp - dq; w11[x] = dq;
            w12[x] = bp; w13[x] = bp + bq; w14[x] = bp - bq; w15[x] = bq;
        }
    }
}

void ck_winograd_weights_grad(const float *m, int cout, int cin, float *dw) {
    const size_t plane = (size_t)cout * cin;
    for (size_t k = 0; k < plane; k++) {
        float t[3][4];  // G'ᵀ M down the columns (G' = G with its last row negated)
        for (int f = 0; f < 4; f++) {
            const float m0 = m[(size_t)f * plane + k], m1 = m[(size_t)(4 + f) * plane + k];
            const float m2 = m[(size_t)(8 + f) * plane + k], m3 = m[(size_t)(12 + f) * plane + k];
            t[0][f] = m0 + 0.5f * (m1 + m2);
            t[1][f] = 0.5f * (m1 - m2);
            t[2][f] = 0.5f * (m1 + m2) - m3;
        }
        float *o = dw + k * 9;
        for (int i = 0; i < 3; i++) {  // (G'ᵀ M) G'
            const float a = t[i][0], b = t[i][1], c = t[i][2], d = t[i][3];
            o[3 * i] = a + 0.5f * (b + c);
            o[3 * i + 1] = 0.5f * (b - c);
            o[3 * i + 2] = 0.5f * (b + c) - d;
        }
    }
}
