import Foundation
import Tensor

/// diffusers' `get_timestep_embedding` as the `Timesteps` module computes it, in float32 like
/// PyTorch (the arguments of sin/cos reach ~1000 rad, so rounding order matters):
///
///     half = C / 2
///     freq_i = exp(-ln(max_period) · i / (half − downscale_freq_shift))
///     emb = [sin(scale · t · freq), cos(scale · t · freq)]   (halves swapped if flip_sin_to_cos)
///
/// t: [N] -> [N, C] (an odd C gets a zero column at the end).
public final class Timesteps: Module {
    public let numChannels: Int
    public let flipSinToCos: Bool
    public let downscaleFreqShift: Float
    public let scale: Float
    public let maxPeriod: Float

    public init(numChannels: Int, flipSinToCos: Bool, downscaleFreqShift: Float, scale: Float = 1, maxPeriod: Float = 10000) {
        self.numChannels = numChannels; self.flipSinToCos = flipSinToCos
        self.downscaleFreqShift = downscaleFreqShift; self.scale = scale; self.maxPeriod = maxPeriod
    }

    public func visit(_ v: inout ModuleVisitor) {}

    public func callAsFunction(_ timesteps: [Float]) -> Tensor {
        let half = numChannels / 2
        let logMax = Float(Foundation.log(Double(maxPeriod)))
        var freqs = [Float](repeating: 0, count: half)
        for i in 0..<half {
            let e = -logMax * Float(i) / (Float(half) - downscaleFreqShift)
            freqs[i] = Foundation.exp(e)
        }
        let n = timesteps.count
        let out = Tensor.zeros([n, numChannels])
        for (r, t) in timesteps.enumerated() {
            let row = out.data + r * numChannels
            for i in 0..<half {
                let a = scale * (t * freqs[i])
                let s = Foundation.sin(a), c = Foundation.cos(a)
                row[i] = flipSinToCos ? c : s
                row[half + i] = flipSinToCos ? s : c
            }
        }
        return out
    }
}

/// diffusers' `GaussianFourierProjection`: fixed random frequencies W (not trained).
/// t: [N] -> [N, 2·size]: [sin(2π · t' · W), cos(2π · t' · W)], t' = log(t) when `log`.
public final class GaussianFourierProjection: Module {
    public let weight: Tensor  // [size], requires no gradient
    public let log: Bool
    public let flipSinToCos: Bool

    public init(embeddingSize: Int = 256, scale: Float = 1, log: Bool = true, flipSinToCos: Bool = false) {
        weight = NNInit.normal([embeddingSize], std: scale)
        weight.requiresGrad = false
        self.log = log
        self.flipSinToCos = flipSinToCos
    }

    public func visit(_ v: inout ModuleVisitor) { v("weight", weight) }

    public func callAsFunction(_ timesteps: [Float]) -> Tensor {
        let m = weight.count
        let out = Tensor.zeros([timesteps.count, 2 * m])
        for (r, t0) in timesteps.enumerated() {
            let t = log ? Foundation.log(t0) : t0
            let row = out.data + r * 2 * m
            for i in 0..<m {
                // Rounded in diffusers' order: ((t · W) · 2) · π, in float32.
                let a = t * weight.data[i] * 2 * Float.pi
                let s = Foundation.sin(a), c = Foundation.cos(a)
                row[i] = flipSinToCos ? c : s
                row[m + i] = flipSinToCos ? s : c
            }
        }
        return out
    }
}

/// diffusers' `TimestepEmbedding`: (x + cond_proj(condition)) → linear_1 → act → linear_2 (→ post_act).
/// [N, in] -> [N, timeEmbedDim]. `cond_proj` (no bias) exists when `condProjDim` is given: LCM's
/// guidance-scale embedding w [N, condProjDim] enters there.
public final class TimestepEmbedding: Module {
    public let linear1: Linear
    public let act: Activation
    public let linear2: Linear
    public let condProj: Linear?
    public let postAct: Activation?

    public init(inChannels: Int, timeEmbedDim: Int, act: Activation = .silu, outDim: Int? = nil,
                postAct: Activation? = nil, condProjDim: Int? = nil) {
        linear1 = Linear(inChannels, timeEmbedDim)
        condProj = condProjDim.map { Linear($0, inChannels, bias: false) }
        self.act = act
        linear2 = Linear(timeEmbedDim, outDim ?? timeEmbedDim)
        self.postAct = postAct
    }

    public func visit(_ v: inout ModuleVisitor) {
        v("linear_1", linear1)
        v("cond_proj", condProj)
        v("linear_2", linear2)
    }

    /// x: [N, in], condition: [N, condProjDim] (only with `cond_proj`) -> [N, timeEmbedDim].
    public func callAsFunction(_ x: Tensor, condition: Tensor? = nil) -> Tensor {
        var h = x
        if let condition {
            guard let condProj else { preconditionFailure("TimestepEmbedding without cond_proj got a condition") }
            h = h + condProj(condition)
        }
        h = linear2(act(linear1(h)))
        return postAct.map { $0(h) } ?? h
    }
}
