import Tensor
import NN

/// diffusers' `BasicTransformerBlock` as Stable Diffusion uses it (norm_type "layer_norm",
/// GEGLU feed-forward, no attention bias), pre-norm with residuals:
///
///     h = h + attn1(norm1(h))                   self-attention (or cross, with only_cross_attention)
///     h = h + attn2(norm2(h), context)          cross-attention to the text states [N, L, D]
///     h = h + ff(norm3(h))                      GEGLU, inner width 4·dim
///
/// h: [N, T, dim] (T = H·W tokens). Without a cross-attention dim there is no attn2/norm2.
final class BasicTransformerBlock: Module {
    let norm1: LayerNorm, attn1: Attention
    let norm2: LayerNorm?, attn2: Attention?
    let norm3: LayerNorm, ff: FeedForward
    let onlyCrossAttention: Bool

    init(dim: Int, heads: Int, headDim: Int, crossAttentionDim: Int?, onlyCrossAttention: Bool = false, dropout: Float = 0) {
        norm1 = LayerNorm(dim)
        attn1 = Attention(queryDim: dim, crossAttentionDim: onlyCrossAttention ? crossAttentionDim : nil, heads: heads,
                          dimHead: headDim)
        if let crossAttentionDim {
            norm2 = LayerNorm(dim)
            attn2 = Attention(queryDim: dim, crossAttentionDim: crossAttentionDim, heads: heads, dimHead: headDim)
        } else {
            norm2 = nil; attn2 = nil
        }
        norm3 = LayerNorm(dim)
        ff = FeedForward(dim, dropout: dropout)
        self.onlyCrossAttention = onlyCrossAttention
    }

    func visit(_ v: inout ModuleVisitor) {
        v("norm1", norm1)
        v("attn1", attn1)
        v("norm2", norm2)
        v("attn2", attn2)
        v("norm3", norm3)
        v("ff", ff)
    }

    /// h: [N, T, dim], context: [N, L, D] -> [N, T, dim]. With no context, attn2 attends to
    /// the tokens themselves (diffusers' fallback).
    func callAsFunction(_ h: Tensor, context: Tensor?) -> Tensor {
        var h = h + attn1(norm1(h), context: onlyCrossAttention ? context : nil)
        if let attn2, let norm2 { h = h + attn2(norm2(h), context: context) }
        return h + ff(norm3(h))
    }
}

/// diffusers' `Transformer2DModel` on continuous input (the CrossAttn blocks' `attentions.i`):
///
///     x: [N, C, H, W]
///     h = proj_in(group_norm(x))       1×1 conv (SD 1.x) or, with use_linear_projection (SD 2.x),
///                                      a Linear after flattening
///     h: -> [N, (H W), inner]          inner = heads · head_dim
///     h = transformer_blocks(h, context)
///     out = proj_out(h) -> [N, C, H, W] + x
///
/// The group norm has eps 1e-6 whatever the U-Net's norm_eps (as diffusers).
final class Transformer2D: Module, UNetAttentionLayer {
    let norm: GroupNorm
    let projInConv: Conv2d?, projInLinear: Linear?
    let blocks: [BasicTransformerBlock]
    let projOutConv: Conv2d?, projOutLinear: Linear?
    let channels: Int, inner: Int

    init(heads: Int, headDim: Int, channels: Int, layers: Int, crossAttentionDim: Int?, groups: Int,
         useLinearProjection: Bool, onlyCrossAttention: Bool) {
        let inner = heads * headDim
        self.channels = channels
        self.inner = inner
        norm = GroupNorm(groups: groups, channels: channels, eps: 1e-6)
        if useLinearProjection {
            projInLinear = Linear(channels, inner); projInConv = nil
        } else {
            projInConv = Conv2d(channels, inner, kernelSize: 1); projInLinear = nil
        }
        blocks = (0..<layers).map { _ in
            BasicTransformerBlock(dim: inner, heads: heads, headDim: headDim, crossAttentionDim: crossAttentionDim,
                                  onlyCrossAttention: onlyCrossAttention)
        }
        if useLinearProjection {
            projOutLinear = Linear(inner, channels); projOutConv = nil
        } else {
            projOutConv = Conv2d(inner, channels, kernelSize: 1); projOutLinear = nil
        }
    }

    func visit(_ v: inout ModuleVisitor) {
        v("norm", norm)
        v("proj_in", projInConv ?? (projInLinear as (any Module)?))
        v("transformer_blocks", blocks)
        v("proj_out", projOutConv ?? (projOutLinear as (any Module)?))
    }

    /// x: [N, C, H, W], context: [N, L, D] -> [N, C, H, W].
    func callAsFunction(_ x: Tensor, context: Tensor?) -> Tensor {
        precondition(x.rank == 4 && x.shape[1] == channels, "Transformer2D(\(channels) channels) got \(x.shape)")
        let (n, hgt, wid) = (x.shape[0], x.shape[2], x.shape[3])
        var h = norm(x)
        if let projInConv { h = projInConv(h) }
        // [N, C', H, W] -> [N, C', (H W)] -> [N, (H W), C']
        h = h.reshaped([n, h.shape[1], hgt * wid]).transposed(1, 2)
        if let projInLinear { h = projInLinear(h) }
        for b in blocks { h = b(h, context: context) }
        if let projOutLinear { h = projOutLinear(h) }
        // [N, (H W), C'] -> [N, C', (H W)] -> [N, C', H, W]
        h = h.transposed(1, 2).reshaped([n, h.shape[2], hgt, wid])
        if let projOutConv { h = projOutConv(h) }
        return h + x
    }
}
