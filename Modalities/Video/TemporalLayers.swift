import Foundation
import Tensor
import NN

/// The reshapes between a clip and what the factorised U-Net computes on (Ho et al. 2022,
/// "Video Diffusion Models", §3): spatial layers see the frames as a batch of images, temporal
/// layers see, at every pixel, the sequence of its frames.
public enum VideoLayout {
    /// x: [N, C, F, H, W] -> [(N F), C, H, W]   every frame an image
    public static func framesToBatch(_ x: Tensor) -> Tensor {
        precondition(x.rank == 5, "framesToBatch: expected [N, C, F, H, W], got \(x.shape)")
        let (n, c, f, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
        // [N, C, F, H, W] -> [N, F, C, H, W] -> [(N F), C, H, W]
        return x.permuted(0, 2, 1, 3, 4).reshaped([n * f, c, h, w])
    }

    /// x: [(N F), C, H, W] -> [N, C, F, H, W]   (the inverse of `framesToBatch`)
    public static func batchToFrames(_ x: Tensor, frames f: Int) -> Tensor {
        precondition(x.rank == 4 && f >= 1 && x.shape[0] % f == 0, "batchToFrames: \(x.shape) is not a batch of \(f)-frame clips")
        let (c, h, w) = (x.shape[1], x.shape[2], x.shape[3])
        // [(N F), C, H, W] -> [N, F, C, H, W] -> [N, C, F, H, W]
        return x.reshaped([x.shape[0] / f, f, c, h, w]).permuted(0, 2, 1, 3, 4)
    }

    /// h: [(N F), C, H, W] -> [(N H W), F, C]   one sequence over the frames per pixel
    public static func batchToSequences(_ h: Tensor, frames f: Int) -> Tensor {
        precondition(h.rank == 4 && f >= 1 && h.shape[0] % f == 0, "batchToSequences: \(h.shape) is not a batch of \(f)-frame clips")
        let (n, c, y, x) = (h.shape[0] / f, h.shape[1], h.shape[2], h.shape[3])
        // [(N F), C, H, W] -> [N, F, C, H, W] -> [N, H, W, F, C] -> [(N H W), F, C]
        return h.reshaped([n, f, c, y, x]).permuted(0, 3, 4, 1, 2).reshaped([n * y * x, f, c])
    }

    /// s: [(N H W), F, C] -> [(N F), C, H, W]   (the inverse of `batchToSequences`)
    public static func sequencesToBatch(_ s: Tensor, height: Int, width: Int) -> Tensor {
        precondition(s.rank == 3 && height >= 1 && width >= 1 && s.shape[0] % (height * width) == 0,
                     "sequencesToBatch: \(s.shape) is not [(N \(height) \(width)), F, C]")
        let (n, f, c) = (s.shape[0] / (height * width), s.shape[1], s.shape[2])
        // [(N H W), F, C] -> [N, H, W, F, C] -> [N, F, C, H, W] -> [(N F), C, H, W]
        return s.reshaped([n, height, width, f, c]).permuted(0, 3, 4, 1, 2).reshaped([n * f, c, height, width])
    }
}

/// Self-attention over the frames at every pixel, as a residual that starts as the identity:
///
///     h: [(N F), C, H, W] -> s: [(N H W), F, C]
///     s = layer_norm(s) (+ sinusoidal embedding of the frame index, [F, C])
///     o = to_out(softmax(q kᵀ/√d) v) per head, q, k, v = to_q(s), to_k(s), to_v(s)
///     out = h + o -> [(N F), C, H, W]
///
/// `to_out` starts at zero (weight and bias), so a fresh layer returns h exactly and a video
/// model built on a trained image U-Net starts as that image model on every frame (AnimateDiff,
/// Guo et al. 2024). The norm is over channels only, so a frame's statistics never mix with its
/// neighbours' before attention does it on purpose.
public final class TemporalAttention: Module {
    public let norm: LayerNorm
    public let toQ: Linear, toK: Linear, toV: Linear, toOut: Linear
    public let heads: Int
    public let position: VideoUNetConfig.FramePosition
    let positions: Timesteps

    public init(channels: Int, headDim: Int?, position: VideoUNetConfig.FramePosition, eps: Float = 1e-5) {
        let d = headDim ?? channels
        precondition(d > 0 && channels % d == 0, "TemporalAttention: head dim \(d) does not divide \(channels) channels")
        heads = channels / d
        norm = LayerNorm(channels, eps: eps)
        toQ = Linear(channels, channels)
        toK = Linear(channels, channels)
        toV = Linear(channels, channels)
        toOut = Linear(channels, channels)
        toOut.weight.fill(0)
        toOut.bias?.fill(0)
        self.position = position
        // [sin(f ω_i), cos(f ω_i)] with ω_i = 10000^(−i/(C/2)): the transformer's frame code.
        positions = Timesteps(numChannels: channels, flipSinToCos: false, downscaleFreqShift: 0)
    }

    public var channels: Int { norm.dim }

    public func visit(_ v: inout ModuleVisitor) {
        v("norm", norm)
        v("to_q", toQ)
        v("to_k", toK)
        v("to_v", toV)
        v("to_out", [toOut])
    }

    /// The sinusoidal code of frames 0..<f: [F, C].
    public func frameEmbedding(frames f: Int) -> Tensor { positions((0..<f).map(Float.init)) }

    /// h: [(N F), C, H, W] -> [(N F), C, H, W]
    public func callAsFunction(_ h: Tensor, frames f: Int) -> Tensor {
        precondition(h.rank == 4 && h.shape[1] == channels, "TemporalAttention(\(channels)) got \(h.shape)")
        // h: [(N F), C, H, W] -> [(N H W), F, C]   attend over F
        var s = norm(VideoLayout.batchToSequences(h, frames: f))
        if position == .sinusoidal { s = s + frameEmbedding(frames: f) }  // [F, C] broadcast over (N H W)
        let o = toOut(Tensor.multiHeadAttention(query: toQ(s), key: toK(s), value: toV(s), heads: heads))
        // o: [(N H W), F, C] -> [(N F), C, H, W]
        return h + VideoLayout.sequencesToBatch(o, height: h.shape[2], width: h.shape[3])
    }
}

/// A residual convolution over frames, zero-initialised (Make-A-Video's pseudo-3D convolution,
/// Singer et al. 2022, as a residual that starts as the identity):
///
///     h: [(N F), C, H, W] -> x: [N, C, F, (H W)]
///     out = h + conv_{3×1}(silu(group_norm(x)))   kernel 3 over F, zero padding at the ends
public final class TemporalConv: Module {
    public let norm: GroupNorm
    public let weight: Tensor  // [C, C, 3, 1]
    public let bias: Tensor    // [C]

    public init(channels: Int, groups: Int, eps: Float = 1e-5) {
        norm = GroupNorm(groups: groups, channels: channels, eps: eps)
        weight = NNInit.constant([channels, channels, 3, 1], 0)
        bias = NNInit.constant([channels], 0)
    }

    public var channels: Int { norm.channels }

    public func visit(_ v: inout ModuleVisitor) {
        v("norm", norm)
        v("weight", weight)
        v("bias", bias)
    }

    /// h: [(N F), C, H, W] -> [(N F), C, H, W]
    public func callAsFunction(_ h: Tensor, frames f: Int) -> Tensor {
        precondition(h.rank == 4 && h.shape[1] == channels && h.shape[0] % f == 0, "TemporalConv(\(channels)) got \(h.shape) with \(f) frames")
        let (n, c, hw) = (h.shape[0] / f, channels, h.shape[2] * h.shape[3])
        // h: [(N F), C, H, W] -> [N, F, C, (H W)] -> [N, C, F, (H W)]
        let x = h.reshaped([n, f, c, hw]).permuted(0, 2, 1, 3)
        let y = norm(x).silu().conv2d(weight, bias: bias, stride: (1, 1), padding: (1, 0))
        // y: [N, C, F, (H W)] -> [N, F, C, (H W)] -> [(N F), C, H, W]
        return h + y.permuted(0, 2, 1, 3).reshaped(h.shape)
    }
}

/// What runs after one layer of the spatial U-Net: the optional temporal convolution, then
/// temporal attention. Names: `conv.*`, `attention.*`.
public final class TemporalBlock: Module {
    public let conv: TemporalConv?
    public let attention: TemporalAttention

    public init(channels: Int, config c: VideoUNetConfig) {
        let groups = c.spatial.normNumGroups ?? Swift.min(c.spatial.blockOutChannels[0] / 4, 32)
        conv = c.temporalConv ? TemporalConv(channels: channels, groups: groups, eps: c.spatial.normEps) : nil
        attention = TemporalAttention(channels: channels, headDim: c.temporalAttentionHeadDim, position: c.framePosition,
                                      eps: c.spatial.normEps)
    }

    public func visit(_ v: inout ModuleVisitor) {
        v("conv", conv)
        v("attention", attention)
    }

    /// h: [(N F), C, H, W] -> [(N F), C, H, W]
    public func callAsFunction(_ h: Tensor, frames f: Int) -> Tensor {
        attention(conv.map { $0(h, frames: f) } ?? h, frames: f)
    }
}
