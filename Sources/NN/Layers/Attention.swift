import Foundation
import Tensor

/// diffusers' `Attention` (with `AttnProcessor2_0`), the self/cross-attention of U-Net blocks.
///
///     x: [B, C, H, W] -> [B, (H W), C]   (a 4D input is flattened; 3D [B, L, C] is used as is)
///     x = group_norm(x) over channels (if any)
///     q = to_q(x), k = to_k(ctx), v = to_v(ctx)   ctx = encoder states, or x
///     o = to_out.0(softmax(q kᵀ / √d) v) per head, heads = inner / dim_head
///     o -> input layout; (+ residual); / rescale_output_factor
///
/// Checkpoints with the legacy names `query`, `key`, `value`, `proj_attn` load too
/// (see `StateDictLoader`).
public final class Attention: Module {
    public let groupNorm: GroupNorm?
    public let toQ: Linear, toK: Linear, toV: Linear, toOut: Linear
    public let heads: Int, dimHead: Int
    public let residualConnection: Bool
    public let rescaleOutputFactor: Float
    public let scale: Float

    /// - Parameters: as diffusers' `Attention(query_dim, cross_attention_dim, heads, dim_head, bias,
    ///   norm_num_groups, eps, residual_connection, rescale_output_factor, out_bias)`.
    public init(queryDim: Int, crossAttentionDim: Int? = nil, heads: Int = 8, dimHead: Int = 64, bias: Bool = false,
                normNumGroups: Int? = nil, eps: Float = 1e-5, residualConnection: Bool = false,
                rescaleOutputFactor: Float = 1, outBias: Bool = true) {
        let inner = heads * dimHead
        self.heads = heads
        self.dimHead = dimHead
        groupNorm = normNumGroups.map { GroupNorm(groups: $0, channels: queryDim, eps: eps) }
        toQ = Linear(queryDim, inner, bias: bias)
        toK = Linear(crossAttentionDim ?? queryDim, inner, bias: bias)
        toV = Linear(crossAttentionDim ?? queryDim, inner, bias: bias)
        toOut = Linear(inner, queryDim, bias: outBias)
        self.residualConnection = residualConnection
        self.rescaleOutputFactor = rescaleOutputFactor
        scale = 1 / Float(dimHead).squareRoot()
    }

    /// The U-Net block form (`_from_deprecated_attn_block`): heads = channels / head_dim,
    /// one head when head_dim is nil; group norm, biases, residual.
    public convenience init(channels: Int, attentionHeadDim: Int?, normNumGroups: Int, eps: Float,
                            rescaleOutputFactor: Float = 1) {
        let dimHead = attentionHeadDim ?? channels
        self.init(queryDim: channels, heads: channels / dimHead, dimHead: dimHead, bias: true,
                  normNumGroups: normNumGroups, eps: eps, residualConnection: true,
                  rescaleOutputFactor: rescaleOutputFactor)
    }

    public func visit(_ v: inout ModuleVisitor) {
        v("group_norm", groupNorm)
        v("to_q", toQ)
        v("to_k", toK)
        v("to_v", toV)
        v("to_out", [toOut])
    }

    public func callAsFunction(_ x: Tensor, context: Tensor? = nil) -> Tensor {
        let residual = x
        var h: Tensor
        let b = x.shape[0]
        if x.rank == 4 {
            // x: [B, C, H, W] -> [B, C, (H W)], normed over channels, -> [B, (H W), C]
            var flat = x.reshaped([b, x.shape[1], -1])
            if let groupNorm { flat = groupNorm(flat) }
            h = flat.transposed(1, 2)
        } else {
            precondition(x.rank == 3, "Attention takes [B, C, H, W] or [B, L, C], got \(x.shape)")
            h = x
            if let groupNorm { h = groupNorm(h.transposed(1, 2)).transposed(1, 2) }
        }
        let ctx = context ?? h
        let q = toQ(h), k = toK(ctx), v = toV(ctx)
        var o = toOut(Tensor.multiHeadAttention(query: q, key: k, value: v, heads: heads, scale: scale))
        if x.rank == 4 {
            // [B, (H W), C] -> [B, C, H, W]
            o = o.transposed(1, 2).reshaped(x.shape)
        }
        if residualConnection { o = o + residual }
        return rescaleOutputFactor == 1 ? o : o / rescaleOutputFactor
    }
}
