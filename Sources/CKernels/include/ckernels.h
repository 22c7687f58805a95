// Float kernels compiled for several instruction sets (AVX-512, AVX2+FMA, baseline) — pointwise
// math, narrow-head attention, Winograd transforms, group norm — the best one for the CPU picked
// at run time. Used by Sources/Tensor only.
#pragma once
#include <stddef.h>

enum ck_unary { CK_EXP = 0, CK_SIGMOID = 1, CK_SILU = 2, CK_TANH = 3, CK_GELU = 4, CK_GELU_TANH = 5 };

/// y[i] = f(x[i]) for i < n (x and y may be the same buffer).
void ck_unary(int op, const float *x, float *y, size_t n);

/// p[i] = exp(p[i] - m) in place; returns the sum of the new values.
float ck_exp_shift_sum(float *p, size_t n, float m);

/// The largest element of p[0..<n] (n > 0).
float ck_max(const float *p, size_t n);
/// Tunes malloc to keep freed large buffers (no page zeroing at every training step).
void ck_keep_freed_memory(void);

/// y[i] = the 16-bit float h[i] widened to float32, for i < n: IEEE half (bf16 = 0) or bfloat16
/// (bf16 = 1). Exact (every 16-bit value is a float32).
void ck_half_to_float(const unsigned short *h, float *y, size_t n, int bf16);

/// h[i] = x[i] rounded to the nearest 16-bit float (ties to even; IEEE half or bfloat16).
void ck_float_to_half(const float *x, unsigned short *h, size_t n, int bf16);

/// Winograd F(2×2, 3×3): u[e][co][ci] (e = 4i + j < 16) = (G g Gᵀ)[i][j] of the 3×3 kernel
/// w[co][ci] (weights [cout, cin, 3, 3]).
void ck_winograd_weights(const float *w, int cout, int cin, float *u);

/// The input tiles of tile rows ty0..<ty0+rows of one channel plane [h, w] (padding `pad`, 2×2
/// outputs per tile, tiles 0..<tw a row): v[e·estride + r·tw + tx] = (Bᵀ d B)[e] of the 4×4 patch at
/// (2(ty0 + r) − pad, 2tx − pad). `scratch` holds 10·(tw + 1) floats.
void ck_winograd_input_rows(const float *plane, int h, int w, int pad, int ty0, int rows, int tw,
                            float *v, size_t estride, float *scratch);

/// Output rows 2ty and 2ty + 1 (those < ho) of one channel plane [ho, wo] for each tile row
/// ty = ty0 + r, r < rows, from the products m[e·estride + r·tw + tx]: Aᵀ m A + bias. `scratch`
/// holds 4·tw floats.
void ck_winograd_output_rows(const float *m, size_t estride, int tw, int ty0, int rows, float *plane, int ho, int wo,
                             float bias, float *scratch);

/// The output-gradient side of the weight gradient by Winograd F(3×3, 2×2), for tile rows
/// ty0..<ty0+rows of one channel plane [ho, wo]: v[e·estride + r·tw + tx] = (A' gY A'ᵀ)[e] of the
/// 2×2 block at (2(ty0 + r), 2tx), zero past the plane, A' = [1 0; 1 1; 1 −1; 0 1]. `scratch`
/// holds 4·tw floats.
void ck_winograd_grad_rows(const float *plane, int ho, int wo, int ty0, int rows, int tw, float *v, size_t estride,
                           float *scratch);

/// dw[co][ci][3][3] = G'ᵀ M G' of the summed products m[e][co][ci] (e = 4i + j < 16; G' = G with
/// its last row negated, matching ck_winograd_grad_rows).
void ck_winograd_weights_grad(const float *m, int cout, int cin, float *dw);

/// Group norm of one group: cg channels of S floats at x (contiguous), w and b its channels'
/// affine parameters (NULL: 1 and 0): y = x̂·w + b with x̂ = (x − mean)·rstd, then SiLU if `silu`;
/// *mean and *rstd get the group's statistics.
void ck_group_norm_forward(const float *x, int cg, size_t S, const float *w, const float *b, float eps, int silu,
                           float *y, float *mean, float *rstd);

/// The backward of ck_group_norm_forward for one group from the output gradient gy: dw[c] and db[c]
/// for its channels, and dx unless NULL (overwritten).
void ck_group_norm_backward(const float *x, const float *gy, int cg, size_t S, const float *w, const float *b, float m,
                            float r, int silu, float *dx, float *dw, float *db);

/// One attention problem: `batch · heads` heads of queries [lq, d], keys [lk, d], values [lk, dv]
/// and outputs [lq, dv]; head (b, h) of tensor x starts at x + b·x_b + h·x_h and its rows are x_r
/// floats apart (elements of a row contiguous). [B, H, L, D] has x_b = H·L·D, x_h = L·D, x_r = D;
/// [B, L, H·D] has x_b = L·H·D, x_h = D, x_r = H·D. Gradients share their tensor's layout
/// (dq q's, dk k's, dv v's, g o's); lse is [batch · heads, lq].
typedef struct {
    int heads, lq, lk, d, dv, causal;
    float scale;
    ptrdiff_t q_b, q_h, q_r, k_b, k_h, k_r, v_b, v_h, v_r, o_b, o_h, o_r;
} ck_attention;

/// Floats of scratch one worker needs for the forward (backward = 0) or backward kernel.
size_t ck_attention_scratch(const ck_attention *a, int backward);

/// o = softmax(scale · q kᵀ) v and lse = the rows' logsumexp, for query rows r0..<r1 of head
/// bh (= b · heads + h). Causal: row i sees keys 0...i.
void ck_attention_forward(const ck_attention *a, const float *q, const float *k, const float *v, float *o, float *lse,
                          int bh, int r0, int r1, float *scratch);

/// dq, dk, dv of head bh from the forward's o and lse and the output gradient g (dq, dk and dv
/// of the head are overwritten).
void ck_attention_backward(const ck_attention *a, const float *q, const float *k, const float *v, const float *o,
                           const float *lse, const float *g, float *dq, float *dk, float *dv, int bh, float *scratch);
