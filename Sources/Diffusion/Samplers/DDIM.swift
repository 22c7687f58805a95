// DDIM: denoising diffusion implicit models.
//
// Song, Meng & Ermon, "Denoising Diffusion Implicit Models", ICLR 2021, eq. 12 and 16.
// Reproduces diffusers' `DDIMScheduler` (0.42.1).
//
// | symbol | code          | meaning                                                    |
// |--------|---------------|------------------------------------------------------------|
// | t, t'  | `t`, `prev`   | this timestep and t − T/n (diffusers uses this stride for every spacing) |
// | ᾱ_t    | `aT`          | cumulative ᾱ; ᾱ_{t'<0} = 1 (`set_alpha_to_one`) or ᾱ_0      |
// | x̂₀, ε̂  | `x0`, `eps`   | predicted clean sample (clipped) and noise                  |
// | σ_t(η) | `std`         | η √((1 − ᾱ_t')/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_t')  (eq. 16)         |
//
// x_t' = √ᾱ_t' x̂₀ + √(1 − ᾱ_t' − σ_t²) ε̂ + σ_t z                                (eq. 12)
//
// Limitations: like diffusers, the previous timestep is always t − T/n, so with "trailing" or
// "linspace" spacing the step goes to a timestep that is not the next one in the list; this is
// reproduced, not corrected. `use_clipped_model_output` is an init option here.

import Foundation
import Tensor

public struct DDIMSampler: Sampler {
    public static let schedulerClass = SchedulerClass.ddim
    public let config: SchedulerConfig
    public let steps: Int
    public let schedule: NoiseSchedule
    public let parameterization: Parameterization
    /// η: 0 = deterministic DDIM, 1 = DDPM-like ancestral noise.
    public let eta: Float
    /// Recompute ε̂ from the clipped x̂₀ (diffusers' `use_clipped_model_output`).
    public let useClippedModelOutput: Bool
    public let discreteTimesteps: [Int]
    let finalAlphaCumprod: Float
    public var finalNoiseLevel: Float { (1 - finalAlphaCumprod).squareRoot() }

    public var timesteps: [Float] { discreteTimesteps.map(Float.init) }
    public var initNoiseSigma: Float { 1 }

    public init(config: SchedulerConfig, steps: Int) throws {
        try self.init(config: config, steps: steps, eta: 0)
    }

    public init(config: SchedulerConfig, steps: Int, eta: Float, useClippedModelOutput: Bool = false) throws {
        let c = try Self.validate(config, steps: steps)
        self.config = c
        self.steps = steps
        self.eta = eta
        self.useClippedModelOutput = useClippedModelOutput
        schedule = try c.noiseSchedule()
        parameterization = try c.parameterization()
        finalAlphaCumprod = try c.flag("set_alpha_to_one") ? 1 : schedule.alphasCumprodF[0]
        discreteTimesteps = try c.choice("timestep_spacing", TimestepSpacing.self)
            .discrete(steps: steps, trainSteps: schedule.numTrainTimesteps, offset: try c.int("steps_offset"))
    }

    public func sample<N: NoiseSource>(from xT: Tensor, startIndex: Int, noise: inout N, denoise: Denoiser,
                                       onStep: ((Int, Tensor) -> Void)?) -> Tensor {
        GradMode.withoutGrad {
            let ac = schedule.alphasCumprodF
            let stride = schedule.numTrainTimesteps / steps
            var x = xT
            for (i, t) in discreteTimesteps.enumerated() where i >= startIndex {
                let output = denoise(x, Float(t))
                // 1. t' = t − T/n
                let prev = t - stride
                let aT = ac[t], aPrev = prev >= 0 ? ac[prev] : finalAlphaCumprod
                let bT = 1 - aT
                // 2. x̂₀ and ε̂ from the prediction (eq. 9)
                let sa = aT.squareRoot(), sb = bT.squareRoot()
                let raw = parameterization.x0(output, x: x, alpha: sa, sigma: sb)
                var eps = parameterization.epsilon(output, x: x, x0: raw, alpha: sa, sigma: sb)
                let x0 = parameterization.clip(raw)
                // 3. σ_t(η) (eq. 16)
                let variance = (1 - aPrev) / bT * (1 - aT / aPrev)
                let std = eta * variance.squareRoot()
                if useClippedModelOutput { eps = parameterization.epsilon(fromX0: x0, x: x, alpha: sa, sigma: sb) }
                // 4. x_t' (eq. 12)
                let direction = (1 - aPrev - std * std).squareRoot() * eps
                var next = aPrev.squareRoot() * x0 + direction
                if eta > 0 { next = next + std * noise.nextNormal(x.shape) }
                x = next
                onStep?(i, x)
            }
            return x
        }
    }
}
