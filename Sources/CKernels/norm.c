// Group norm of one group (cg channels of S floats, contiguous), optionally followed by SiLU in
// the same pass — the U-Net's norm → SiLU pairs — forward and backward. Statistics as the
// engine's other reductions: float lanes, then summed in double.
#include "ckernels.h"
#include "internal.h"

CK_INLINE double sum_impl(const float *x, size_t n, float shift, int squares) {
    float acc[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) {
            const float d = x[i + l] - shift;
            acc[l] += squares ? d * d : d;
        }
    double s = 0;
    for (; i < n; i++) {
        const double d = (double)x[i] - shift;
        s += squares ? d * d : d;
    }
    for (int l = 0; l < 16; l++) s += acc[l];
    return s;
}

CK_INLINE float silu_grad(float h) {  // d/dh h·σ(h)
    const float s = 1.0f / (1.0f + ck_expf(-h));
    return s * (1.0f + h * (1.0f - s));
}

CK_INLINE void group_norm_forward_impl(const float *x, int cg, size_t S, const float *w, const float *b, float eps,
                                       int silu, float *y, float *mean_out, float *rstd_out) {
    const size_t n = (size_t)cg * S;
    const double mean = sum_impl(x, n, 0, 0) / (double)n;
    const float m = (float)mean;
    const double var = sum_impl(x, n, m, 1) / (double)n;
    const float r = (float)(1.0 / __builtin_sqrt(var + eps));
    *mean_out = m;
    *rstd_out = r;
    for (int c = 0; c < cg; c++) {
        const float scale = r * (w ? w[c] : 1.0f), shift = (b ? b[c] : 0.0f) - m * scale;
        const float *restrict xc = x + (size_t)c * S;
        float *restrict yc = y + (size_t)c * S;
        if (silu) {
            for (size_t k = 0; k < S; k++) {
                const float h = xc[k] * scale + shift;
                yc[k] = ck_siluf(h);
            }
        } else {
            for (size_t k = 0; k < S; k++) yc[k] = xc[k] * scale + shift;
        }
    }
}

CK_INLINE void group_norm_backward_impl(const float *x, const float *gy, int cg, size_t S, const float *w,
                                        const float *b, float m, float r, int silu, float *dx, float *dw, float *db) {
    // gh = gy, or gy · silu'(h) with h = x̂·w + b recomputed; per channel Σ gh and Σ gh·x̂ (the
    // affine gradients), and dx = r (gh·w − mean(gh·w) − x̂ · mean(gh·w·x̂)). With SiLU, gh goes
    // into dx on the first pass and is read back on the second (one exp per element).
    double sumA = 0, sumB = 0;
    for (int c = 0; c < cg; c++) {
        const float wc = w ? w[c] : 1.0f, bc = b ? b[c] : 0.0f;
        const float *restrict xc = x + (size_t)c * S, *restrict gc = gy + (size_t)c * S;
        float *restrict hc = silu && dx ? dx + (size_t)c * S : 0;
        float a1[16] = {0}, a2[16] = {0};
        double s1 = 0, s2 = 0;
        size_t k = 0;
        for (; k + 16 <= S; k += 16)
            for (int l = 0; l < 16; l++) {
                const float xh = (xc[k + l] - m) * r;
                float g = gc[k + l];
                if (silu) {
                    g *= silu_grad(xh * wc + bc);
                    if (hc) hc[k + l] = g;
                }
                a1[l] += g;
                a2[l] += g * xh;
            }
        for (; k < S; k++) {
            const float xh = (xc[k] - m) * r;
            float g = gc[k];
            if (silu) {
                g *= silu_grad(xh * wc + bc);
                if (hc) hc[k] = g;
            }
            s1 += g;
            s2 += (double)g * xh;
        }
        for (int l = 0; l < 16; l++) {
            s1 += a1[l];
            s2 += a2[l];
        }
        db[c] = (float)s1;
        dw[c] = (float)s2;
        sumA += s1 * wc;
        sumB += s2 * wc;
    }
    if (!dx) return;
    const double cnt = (double)cg * (double)S;
    const float a = (float)(sumA / cnt), bb = (float)(sumB / cnt);
    for (int c = 0; c < cg; c++) {
        const float wc = w ? w[c] : 1.0f;
        const float *restrict xc = x + (size_t)c * S;
        const float *gc = silu ? dx + (size_t)c * S : gy + (size_t)c * S;
        float *dc = dx + (size_t)c * S;
        for (size_t k = 0; k < S; k++) {
            const float xh = (xc[k] - m) * r;
            dc[k] = r * (gc[k] * wc - a - xh * bb);
        }
    }
}

CK_VARIANTS(void, group_norm_forward,
            (const float *x, int cg, size_t S, const float *w, const float *b, float eps, int silu, float *y,
             float *mean, float *rstd),
            (x, cg, S, w, b, eps, silu, y, mean, rstd))
CK_VARIANTS(void, group_norm_backward,
            (const float *x, const float *gy, int cg, size_t S, const float *w, const float *b, float m, float r,
             int silu, float *dx, float *dw, float *db),
            (x, gy, cg, S, w, b, m, r, silu, dx, dw, db))

void ck_group_norm_forward(const float *x, int cg, size_t S, const float *w, const float *b, float eps, int silu,
                           float *y, float *mean, float *rstd) {
    CK_DISPATCH(group_norm_forward)(x, cg, S, w, b, eps, silu, y, mean, rstd);
}

void ck_group_norm_backward(const float *x, const float *gy, int cg, size_t S, const float *w, const float *b, float m,
                            float r, int silu, float *dx, float *dw, float *db) {
    CK_DISPATCH(group_norm_backward)(x, gy, cg, S, w, b, m, r, silu, dx, dw, db);
}
