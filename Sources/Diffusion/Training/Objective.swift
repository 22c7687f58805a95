import Foundation
import Tensor
import NN

/// The denoising objective (Ho et al. 2020, Eq. 14, generalised to ε / v / x₀ targets):
///
///     t ~ U{0, …, T−1},  ε ~ N(0, I)  (+ offset noise: ε += o · N(0, I) per sample and channel)
///     x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε
///     L = mean_n  w(t_n) · mean(‖f(x_t, t, y) − target‖²)
///
/// with target ε, v = √ᾱ ε − √(1−ᾱ) x₀ or x₀ (the one place that defines it is
/// `Parameterization.target`), and w the min-SNR-γ weight (Hang et al. 2023) when γ is set:
/// min(SNR, γ)/SNR for ε, min(SNR, γ)/(SNR + 1) for v, min(SNR, γ) for x₀. Labels are replaced by
/// the null label with probability `labelDropout` (classifier-free guidance, Ho & Salimans 2022).
public struct DiffusionObjective: Sendable {
    public var schedule: NoiseSchedule
    public var prediction: PredictionType
    public var minSNRGamma: Float? = nil
    public var offsetNoise: Float = 0
    public var labelDropout: Float = 0
    /// The label meaning "no class" (the last embedding row); required when `labelDropout` > 0.
    public var nullLabel: Int? = nil

    public init(schedule: NoiseSchedule, prediction: PredictionType = .epsilon, minSNRGamma: Float? = nil,
                offsetNoise: Float = 0, labelDropout: Float = 0, nullLabel: Int? = nil) {
        precondition(labelDropout == 0 || nullLabel != nil, "label dropout needs a null label")
        self.schedule = schedule
        self.prediction = prediction
        self.minSNRGamma = minSNRGamma
        self.offsetNoise = offsetNoise
        self.labelDropout = labelDropout
        self.nullLabel = nullLabel
    }

    /// The loss for a batch x₀ [N, ...] with its labels; every random draw comes from `rng`.
    public func loss(_ model: DiffusionModel, x0: Tensor, labels: [Int]?, rng: inout RandomGenerator) -> Tensor {
        let n = x0.shape[0]
        let T = schedule.numTrainTimesteps
        let t = rng.integers(n, below: T)
        var noise = rng.normal(x0.shape)
        if offsetNoise > 0 {
            // One extra N(0, o²) offset per sample and channel: [N, C, 1, ...]
            let s = [n, x0.shape[1]] + [Int](repeating: 1, count: x0.rank - 2)
            noise = GradMode.withoutGrad { noise + rng.normal(s) * offsetNoise }
        }
        var y = labels
        if let l = labels, labelDropout > 0, let null = nullLabel {
            let u = rng.uniform([n])
            y = (0..<n).map { u.data[$0] < labelDropout ? null : l[$0] }
        }
        // Per-sample √ᾱ and √(1−ᾱ), shaped [N, 1, ...] to broadcast.
        let bshape = [n] + [Int](repeating: 1, count: x0.rank - 1)
        let abar = t.map { Double(schedule.alphasCumprodF[$0]) }
        let a = Tensor(shape: bshape, scalars: abar.map { Float($0.squareRoot()) })
        let s = Tensor(shape: bshape, scalars: abar.map { Float((1 - $0).squareRoot()) })
        let xt = GradMode.withoutGrad { a * x0 + s * noise }
        let target: Tensor = GradMode.withoutGrad {
            switch prediction {
            case .epsilon: return noise
            case .vPrediction: return a * noise - s * x0
            case .sample: return x0
            }
        }
        let pred = model.predict(xt, timesteps: t.map(Float.init), labels: y)
        let perSample = (pred - target).square().mean(axes: Array(1..<x0.rank))  // [N]
        guard let gamma = minSNRGamma else { return perSample.mean() }
        let w = abar.map { ab -> Float in
            let snr = ab / (1 - ab), g = Double(gamma)
            switch prediction {
            case .epsilon: return Float(Swift.min(snr, g) / snr)
            case .vPrediction: return Float(Swift.min(snr, g) / (snr + 1))
            case .sample: return Float(Swift.min(snr, g))
            }
        }
        return (perSample * Tensor(shape: [n], scalars: w)).mean()
    }
}
