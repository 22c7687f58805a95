import Foundation
import Tensor

/// What the denoiser predicts (diffusers' `prediction_type`).
public enum PredictionType: String, Codable, CaseIterable, Sendable {
    /// The noise ε (Ho et al. 2020).
    case epsilon
    /// v = α ε − σ x₀ (Salimans & Ho 2022, "Progressive distillation", §4).
    case vPrediction = "v_prediction"
    /// The clean sample x₀.
    case sample
}

/// What happens to a predicted x₀ before a sampler uses it.
public enum SampleClipping: Equatable, Sendable {
    case none
    /// Clamp to [−range, range] (`clip_sample`, `clip_sample_range`).
    case clip(range: Float)
    /// Imagen's dynamic thresholding (Saharia et al. 2022, §2.3): per sample, s = the `ratio`
    /// quantile of |x₀| clamped to [1, maxValue]; x₀ ← clamp(x₀, −s, s) / s.
    case dynamicThreshold(ratio: Float, maxValue: Float)
}

/// Every conversion between the denoiser's output and x₀ / ε, in one place.
///
/// Two forms of the same forward process appear in diffusers' samplers:
/// - variance preserving (VP): x_t = a x₀ + s ε with a = √ᾱ, s = √(1 − ᾱ) (DDPM, DDIM,
///   DPM-Solver, UniPC, where a = 1/√(σ² + 1) and s = σ a);
/// - variance exploding (VE, Karras et al. 2022): x = x₀ + σ ε, the VP sample divided by a
///   (Euler, Euler ancestral, Heun; the denoiser then sees x · a).
///
/// The float32 operation order of each formula is diffusers', so results agree bit for bit
/// wherever the scalar inputs do.
public struct Parameterization: Equatable, Sendable {
    public var prediction: PredictionType
    public var clipping: SampleClipping

    public init(_ prediction: PredictionType = .epsilon, clipping: SampleClipping = .none) {
        self.prediction = prediction
        self.clipping = clipping
    }

    // MARK: VP form: x = a x₀ + s ε

    /// x₀ from the model output (before clipping).
    public func x0(_ output: Tensor, x: Tensor, alpha a: Float, sigma s: Float) -> Tensor {
        switch prediction {
        case .epsilon: return (x - s * output) / Tensor(a)
        case .vPrediction: return a * x - s * output
        case .sample: return output
        }
    }

    /// ε from the model output (DDIM's form; `x0` is the unclipped x₀ for `.sample`).
    public func epsilon(_ output: Tensor, x: Tensor, x0: Tensor, alpha a: Float, sigma s: Float) -> Tensor {
        switch prediction {
        case .epsilon: return output
        case .vPrediction: return a * output + s * x
        case .sample: return (x - a * x0) / Tensor(s)
        }
    }

    /// ε implied by x₀ and x: (x − a x₀) / s.
    public func epsilon(fromX0 x0: Tensor, x: Tensor, alpha a: Float, sigma s: Float) -> Tensor {
        (x - a * x0) / Tensor(s)
    }

    // MARK: VE form: x = x₀ + σ ε

    /// x₀ from the model output for a VE sample x at noise level σ (Euler family).
    public func x0(_ output: Tensor, veSample x: Tensor, sigma: Float) -> Tensor {
        switch prediction {
        case .epsilon: return x - sigma * output
        case .vPrediction:
            let v2 = sigma * sigma + 1
            return output * (-sigma / v2.squareRoot()) + x / Tensor(v2)
        case .sample: return output
        }
    }

    // MARK: Training

    /// The regression target for x_t = a x₀ + s ε.
    public func target(x0: Tensor, noise: Tensor, alpha a: Float, sigma s: Float) -> Tensor {
        switch prediction {
        case .epsilon: return noise
        case .vPrediction: return a * noise - s * x0
        case .sample: return x0
        }
    }

    // MARK: Clipping

    /// Applies `clipping` to a predicted x₀ of shape [N, ...].
    public func clip(_ x0: Tensor) -> Tensor {
        switch clipping {
        case .none: return x0
        case .clip(let r): return x0.clamped(min: -r, max: r)
        case .dynamicThreshold(let ratio, let maxValue):
            // x0: [N, ...] -> per row n: s_n = clamp(quantile(|x0_n|, ratio), 1, maxValue)
            let n = x0.shape.first ?? 1
            let per = n == 0 ? 0 : x0.count / n
            let out = Tensor.zeros(x0.shape)
            for b in 0..<n {
                let row = UnsafeBufferPointer(start: x0.data + b * per, count: per)
                let sorted = row.map { Swift.abs($0) }.sorted()
                let s = Swift.min(Swift.max(Reference.quantile(sorted, ratio), 1), maxValue)
                for j in 0..<per { out.data[b * per + j] = Swift.min(Swift.max(row[j], -s), s) / s }
            }
            return out
        }
    }
}
