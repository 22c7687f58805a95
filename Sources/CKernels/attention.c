// Scaled dot-product attention for narrow heads (see include/ckernels.h). Matrix products with an
// inner size of 8 or 16 — the head width of small U-Nets — leave a BLAS mostly packing; here a
// head's keys and values are transposed once into [width, keys] (zero-padded to a multiple of 16
// keys), and every product runs along the keys, 16 lanes at a time, four query rows at once, in
// cache. Heads are read and written through strides, so [B, H, L, D] and [B, L, H·D] both work
// without a copy.
#include "ckernels.h"
#include "internal.h"
#include <math.h>

// Every function taking or returning a 16-float vector here is always inlined, so no call passes
// one in registers whose width the baseline build lacks: clang's ABI warning does not apply.
#pragma clang diagnostic ignored "-Wpsabi"

#define CK_ROWS 4  // query rows per block

CK_INLINE size_t pad16(size_t n) { return (n + 15) & ~(size_t)15; }

// dst[c·ld + j] = src[j·rs + c] for j < rows, c < cols; zero for rows ≤ j < ld.
CK_INLINE void transpose_in(const float *src, ptrdiff_t rs, int rows, int cols, float *dst, size_t ld) {
    for (int c = 0; c < cols; c++) {
        float *d = dst + (size_t)c * ld;
        for (int j = 0; j < rows; j++) d[j] = src[(ptrdiff_t)j * rs + c];
        for (size_t j = rows; j < ld; j++) d[j] = 0;
    }
}

// dst[j·rs + c] = src[c·ld + j] for j < rows, c < cols.
CK_INLINE void transpose_out(const float *src, size_t ld, int rows, int cols, float *dst, ptrdiff_t rs) {
    for (int j = 0; j < rows; j++)
        for (int c = 0; c < cols; c++) dst[(ptrdiff_t)j * rs + c] = src[(size_t)c * ld + j];
}

// out[r][j] = Σ_c a[r][c] · bt[c][j] for R rows (a: R rows of `width` floats, row stride as),
// j < ld (a multiple of 16), out rows of stride ld.
CK_INLINE void rows_times(int R, const float *a, size_t as, const float *bt, int width, size_t ld, float *out) {
    for (size_t j0 = 0; j0 < ld; j0 += 16) {
        float acc[CK_ROWS][16];
        for (int r = 0; r < R; r++)
            for (int l = 0; l < 16; l++) acc[r][l] = 0;
        for (int c = 0; c < width; c++) {
            const float *b = bt + (size_t)c * ld + j0;
            for (int r = 0; r < R; r++) {
                const float s = a[r * as + c];
                for (int l = 0; l < 16; l++) acc[r][l] += s * b[l];
            }
        }
        for (int r = 0; r < R; r++)
            for (int l = 0; l < 16; l++) out[r * ld + j0 + l] = acc[r][l];
    }
}

// out[r][c] = Σ_j p[r][j] · bt[c][j] for R rows and c < width (p rows of stride ld).
CK_INLINE void rows_dot(int R, const float *p, size_t ld, const float *bt, int width, float out[][CK_ROWS]) {
    for (int c = 0; c < width; c++) {
        const float *b = bt + (size_t)c * ld;
        float acc[CK_ROWS][16];
        for (int r = 0; r < R; r++)
            for (int l = 0; l < 16; l++) acc[r][l] = 0;
        for (size_t j0 = 0; j0 < ld; j0 += 16)
            for (int r = 0; r < R; r++)
                for (int l = 0; l < 16; l++) acc[r][l] += p[r * ld + j0 + l] * b[j0 + l];
        for (int r = 0; r < R; r++) {
            float s = 0;
            for (int l = 0; l < 16; l++) s += acc[r][l];
            out[c][r] = s;
        }
    }
}

// bt[c][j] += Σ_r a[r][c] · p[r][j] for c < width, j < ld.
CK_INLINE void rows_accumulate(int R, const float *a, size_t as, const float *p, size_t ld, float *bt, int width) {
    for (int c = 0; c < width; c++) {
        float *b = bt + (size_t)c * ld;
        float s[CK_ROWS];
        for (int r = 0; r < R; r++) s[r] = a[r * as + c];
        for (size_t j0 = 0; j0 < ld; j0 += 16) {
            float acc[16];
            for (int l = 0; l < 16; l++) acc[l] = b[j0 + l];
            for (int r = 0; r < R; r++)
                for (int l = 0; l < 16; l++) acc[l] += s[r] * p[r * ld + j0 + l];
            for (int l = 0; l < 16; l++) b[j0 + l] = acc[l];
        }
    }
}

// A row of scores (keys n ≤ ld) into probabilities exp(s − lse), zero past n.
CK_INLINE void prob_row(float *s, int n, size_t ld, float lse) {
    for (int j = 0; j < n; j++) s[j] = ck_expf(s[j] - lse);
    for (size_t k = n; k < ld; k++) s[k] = 0;
}

CK_INLINE int attended(const ck_attention *a, int row) {
    return a->causal ? (row + 1 < a->lk ? row + 1 : a->lk) : a->lk;
}

CK_INLINE size_t pad8(size_t n) { return (n + 7) & ~(size_t)7; }

size_t ck_attention_scratch(const ck_attention *a, int backward) {
    size_t ld = pad16((size_t)a->lk), w = (size_t)a->d + (size_t)a->dv, lk = (size_t)a->lk;
    return backward ? 2 * w * ld + 2 * CK_ROWS * ld + CK_ROWS * (size_t)a->d
                    : lk * (pad8((size_t)a->d) + pad8((size_t)a->dv)) + 16 * (pad8((size_t)a->d) + lk);
}

// q rows r0..r0+R scaled into qs [R][d].
CK_INLINE void scaled_rows(int R, const float *q, ptrdiff_t rs, int d, float scale, float *qs) {
    for (int r = 0; r < R; r++)
        for (int c = 0; c < d; c++) qs[r * d + c] = q[r * rs + c] * scale;
}

// dst[j·w + c] = src[j·rs + c] for c < cols, zero for cols ≤ c < w.
CK_INLINE void copy_padded(const float *src, ptrdiff_t rs, int rows, int cols, float *dst, size_t w) {
    for (int j = 0; j < rows; j++) {
        for (int c = 0; c < cols; c++) dst[(size_t)j * w + c] = src[(ptrdiff_t)j * rs + c];
        for (size_t c = cols; c < w; c++) dst[(size_t)j * w + c] = 0;
    }
}

// 16 floats, one per lane (internal.h): clang lowers it to one AVX-512 register, two AVX ones or
// four SSE ones (memory of any float alignment).
typedef ck_v16 v16;
typedef ck_i16 i16;

CK_INLINE v16 load16(const float *p) { v16 v; memcpy(&v, p, sizeof v); return v; }
CK_INLINE v16 max16(v16 a, v16 b) { return a > b ? a : b; }

// The forward pass runs on 16 query rows at once, one row per lane: St[j] = the scores of key j
// for rows r0…r0+15 (the key's row broadcast against the block's transposed queries), so the
// softmax's max and sum and the product with v need no sums across lanes.
CK_INLINE void forward_rows16(const ck_attention *a, int r0, int nr, const float *q, const float *Kp, const float *Vp,
                              float *o, float *lse, v16 *Qt, v16 *St) {
    const size_t dp = pad8((size_t)a->d), dvp = pad8((size_t)a->dv);
    for (size_t c = 0; c < dp; c++) {
        float col[16];
        for (int l = 0; l < 16; l++)
            col[l] = (l < nr && c < (size_t)a->d) ? q[(ptrdiff_t)(r0 + l) * a->q_r + c] * a->scale : 0;
        Qt[c] = load16(col);
    }
    // Keys any row of the block sees; with a causal mask, row r0 + l sees keys j ≤ r0 + l.
    const int keys = a->causal ? (r0 + 16 < a->lk ? r0 + 16 : a->lk) : a->lk;
    i16 row;
    for (int l = 0; l < 16; l++) row[l] = r0 + l;
    v16 m = -INFINITY;
    int j = 0;
    for (; j + 4 <= keys; j += 4) {
        const float *k0 = Kp + (size_t)j * dp;
        v16 s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (size_t c = 0; c < dp; c++) {
            const v16 qc = Qt[c];
            s0 += k0[c] * qc;
            s1 += k0[dp + c] * qc;
            s2 += k0[2 * dp + c] * qc;
            s3 += k0[3 * dp + c] * qc;
        }
        if (a->causal) {
            s0 = row < j ? (v16)-INFINITY : s0;
            s1 = row < j + 1 ? (v16)-INFINITY : s1;
            s2 = row < j + 2 ? (v16)-INFINITY : s2;
            s3 = row < j + 3 ? (v16)-INFINITY : s3;
        }
        St[j] = s0, St[j + 1] = s1, St[j + 2] = s2, St[j + 3] = s3;
        m = max16(m, max16(max16(s0, s1), max16(s2, s3)));
    }
    for (; j < keys; j++) {
        v16 s = 0;
        for (size_t c = 0; c < dp; c++) s += Kp[(size_t)j * dp + c] * Qt[c];
        if (a->causal) s = row < j ? (v16)-INFINITY : s;
        St[j] = s;
        m = max16(m, s);
    }
    m = m == -INFINITY ? (v16)0 : m;  // a fully masked row
    v16 sum = 0;
    for (j = 0; j < keys; j++) {
        v16 s = St[j], e = ck_exp16(s - m);
        e = s == -INFINITY ? (v16)0 : e;
        St[j] = e;
        sum += e;
    }
    const v16 inv = 1 / sum;
    for (int l = 0; l < nr; l++) lse[r0 + l] = m[l] + logf(sum[l]);
    for (size_t c0 = 0; c0 < dvp; c0 += 8) {
        v16 o0 = 0, o1 = 0, o2 = 0, o3 = 0, o4 = 0, o5 = 0, o6 = 0, o7 = 0;
        for (j = 0; j < keys; j++) {
            const float *vj = Vp + (size_t)j * dvp + c0;
            const v16 p = St[j];
            o0 += vj[0] * p, o1 += vj[1] * p, o2 += vj[2] * p, o3 += vj[3] * p;
            o4 += vj[4] * p, o5 += vj[5] * p, o6 += vj[6] * p, o7 += vj[7] * p;
        }
        const v16 out[8] = {o0 * inv, o1 * inv, o2 * inv, o3 * inv, o4 * inv, o5 * inv, o6 * inv, o7 * inv};
        for (int c = 0; c < 8 && c0 + c < (size_t)a->dv; c++)
            for (int l = 0; l < nr; l++) o[(ptrdiff_t)(r0 + l) * a->o_r + c0 + c] = out[c][l];
    }
}

CK_INLINE void attention_forward_impl(const ck_attention *a, const float *q, const float *k, const float *v, float *o,
                                      float *lse, int bh, int r0, int r1, float *scratch) {
    const int b = bh / a->heads, h = bh % a->heads;
    q += b * a->q_b + h * a->q_h;
    k += b * a->k_b + h * a->k_h;
    v += b * a->v_b + h * a->v_h;
    o += b * a->o_b + h * a->o_h;
    lse += (size_t)bh * a->lq;
    const size_t dp = pad8((size_t)a->d), dvp = pad8((size_t)a->dv);
    float *Kp = scratch, *Vp = Kp + (size_t)a->lk * dp;
    v16 *Qt = (v16 *)(Vp + (size_t)a->lk * dvp), *St = Qt + dp;
    copy_padded(k, a->k_r, a->lk, a->d, Kp, dp);
    copy_padded(v, a->v_r, a->lk, a->dv, Vp, dvp);
    for (int r = r0; r < r1; r += 16) forward_rows16(a, r, r1 - r < 16 ? r1 - r : 16, q, Kp, Vp, o, lse, Qt, St);
}

CK_INLINE void backward_block(int R, const ck_attention *a, int r0, const float *q, const float *o, const float *g,
                              const float *lse, float *dq, const float *Kt, const float *Vt, float *dKt, float *dVt,
                              float *P, float *dS, float *qs) {
    const size_t ld = pad16((size_t)a->lk);
    const float *qr = q + (ptrdiff_t)r0 * a->q_r, *gr = g + (ptrdiff_t)r0 * a->o_r, *orow = o + (ptrdiff_t)r0 * a->o_r;
    scaled_rows(R, qr, a->q_r, a->d, a->scale, qs);
    // P = exp(scale q kᵀ − lse), recomputed; D_r = g_r · o_r
    rows_times(R, qs, a->d, Kt, a->d, ld, P);
    float D[CK_ROWS];
    for (int r = 0; r < R; r++) {
        prob_row(P + r * ld, attended(a, r0 + r), ld, lse[r0 + r]);
        float s = 0;
        for (int c = 0; c < a->dv; c++) s += gr[r * a->o_r + c] * orow[r * a->o_r + c];
        D[r] = s;
    }
    // dV += Pᵀ g ; dP = g Vᵀ ; dS = P ∘ (dP − D)
    rows_accumulate(R, gr, a->o_r, P, ld, dVt, a->dv);
    rows_times(R, gr, a->o_r, Vt, a->dv, ld, dS);
    for (int r = 0; r < R; r++)
        for (size_t j = 0; j < ld; j++) dS[r * ld + j] = P[r * ld + j] * (dS[r * ld + j] - D[r]);
    // dq = scale dS K ; dK += scale dSᵀ q  (qs holds scale · q)
    float out[a->d][CK_ROWS];
    rows_dot(R, dS, ld, Kt, a->d, out);
    for (int r = 0; r < R; r++) {
        float *dqr = dq + (ptrdiff_t)(r0 + r) * a->q_r;
        for (int c = 0; c < a->d; c++) dqr[c] = out[c][r] * a->scale;
    }
    rows_accumulate(R, qs, a->d, dS, ld, dKt, a->d);
}

CK_INLINE void attention_backward_impl(const ck_attention *a, const float *q, const float *k, const float *v,
                                       const float *o, const float *lse, const float *g, float *dq, float *dk,
                                       float *dv, int bh, float *scratch) {
    const size_t ld = pad16((size_t)a->lk);
    const int b = bh / a->heads, h = bh % a->heads;
    q += b * a->q_b + h * a->q_h;
    dq += b * a->q_b + h * a->q_h;
    k += b * a->k_b + h * a->k_h;
    dk += b * a->k_b + h * a->k_h;
    v += b * a->v_b + h * a->v_h;
    dv += b * a->v_b + h * a->v_h;
    o += b * a->o_b + h * a->o_h;
    g += b * a->o_b + h * a->o_h;
    lse += (size_t)bh * a->lq;
    float *Kt = scratch, *Vt = Kt + (size_t)a->d * ld, *dKt = Vt + (size_t)a->dv * ld, *dVt = dKt + (size_t)a->d * ld;
    float *P = dVt + (size_t)a->dv * ld, *dS = P + CK_ROWS * ld, *qs = dS + CK_ROWS * ld;
    transpose_in(k, a->k_r, a->lk, a->d, Kt, ld);
    transpose_in(v, a->v_r, a->lk, a->dv, Vt, ld);
    memset(dKt, 0, sizeof(float) * (size_t)a->d * ld);
    memset(dVt, 0, sizeof(float) * (size_t)a->dv * ld);
    int r = 0;
    for (; r + CK_ROWS <= a->lq; r += CK_ROWS) backward_block(CK_ROWS, a, r, q, o, g, lse, dq, Kt, Vt, dKt, dVt, P, dS, qs);
    for (; r < a->lq; r++) backward_block(1, a, r, q, o, g, lse, dq, Kt, Vt, dKt, dVt, P, dS, qs);
    transpose_out(dKt, ld, a->lk, a->d, dk, a->k_r);
    transpose_out(dVt, ld, a->lk, a->dv, dv, a->v_r);
}

CK_VARIANTS(void, attention_forward,
            (const ck_attention *a, const float *q, const float *k, const float *v, float *o, float *lse, int bh,
             int r0, int r1, float *scratch),
            (a, q, k, v, o, lse, bh, r0, r1, scratch))
CK_VARIANTS(void, attention_backward,
            (const ck_attention *a, const float *q, const float *k, const float *v, const float *o, const float *lse,
             const float *g, float *dq, float *dk, float *dv, int bh, float *scratch),
            (a, q, k, v, o, lse, g, dq, dk, dv, bh, scratch))

void ck_attention_forward(const ck_attention *a, const float *q, const float *k, const float *v, float *o, float *lse,
                          int bh, int r0, int r1, float *scratch) {
    CK_DISPATCH(attention_forward)(a, q, k, v, o, lse, bh, r0, r1, scratch);
}

void ck_attention_backward(const ck_attention *a, const float *q, const float *k, const float *v, const float *o,
                           const float *lse, const float *g, float *dq, float *dk, float *dv, int bh, float *scratch) {
    CK_DISPATCH(attention_backward)(a, q, k, v, o, lse, g, dq, dk, dv, bh, scratch);
}
