// DDPM ancestral sampling.
//
// Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020.
// Reproduces diffusers' `DDPMScheduler` (0.42.1) step for step, including skipped timesteps.
//
// | symbol   | code            | meaning                                           |
// |----------|-----------------|---------------------------------------------------|
// | t, t'    | `t`, `prev`     | this timestep and the next one in the list (t' < t; −1 at the end) |
// | ᾱ_t      | `aT`            | cumulative product of (1 − β) up to t; ᾱ_{−1} = 1 |
// | β̄_t      | `bT`            | 1 − ᾱ_t                                           |
// | α_t, β_t | `alphaT`, `betaT` | ᾱ_t / ᾱ_t' and 1 − α_t (the step's own α, β when steps are skipped) |
// | x̂₀       | `x0`            | predicted clean sample (clipped or thresholded)   |
//
// Limitations: `variance_type` learned / learned_range (a model that also predicts the
// variance) are not supported; nor are custom timestep lists.

import Foundation
import Tensor

/// How much noise DDPM adds back at each step (`variance_type`).
public enum DDPMVariance: String, CaseIterable, Sendable {
    /// β̃_t = (1 − ᾱ_t')/(1 − ᾱ_t) β_t, the posterior variance (Ho et al. eq. 7).
    case fixedSmall = "fixed_small"
    /// Same variance, via exp(½ log β̃_t).
    case fixedSmallLog = "fixed_small_log"
    /// β_t (the upper bound Ho et al. also found to work).
    case fixedLarge = "fixed_large"
}

public struct DDPMSampler: Sampler {
    public static let schedulerClass = SchedulerClass.ddpm
    public let config: SchedulerConfig
    public let steps: Int
    public let schedule: NoiseSchedule
    public let parameterization: Parameterization
    public let variance: DDPMVariance
    /// Integer training timesteps, descending.
    public let discreteTimesteps: [Int]

    public var timesteps: [Float] { discreteTimesteps.map(Float.init) }
    public var initNoiseSigma: Float { 1 }

    public init(config: SchedulerConfig, steps: Int) throws {
        let c = try Self.validate(config, steps: steps)
        self.config = c
        self.steps = steps
        schedule = try c.noiseSchedule()
        parameterization = try c.parameterization()
        // null (carried over from DPM-Solver's config) falls through to fixed_small in diffusers
        variance = c.value("variance_type") == .null ? .fixedSmall : try c.choice("variance_type", DDPMVariance.self)
        discreteTimesteps = try c.choice("timestep_spacing", TimestepSpacing.self)
            .discrete(steps: steps, trainSteps: schedule.numTrainTimesteps, offset: try c.int("steps_offset"))
    }

    public func sample<N: NoiseSource>(from xT: Tensor, startIndex: Int, noise: inout N, denoise: Denoiser,
                                       onStep: ((Int, Tensor) -> Void)?) -> Tensor {
        GradMode.withoutGrad {
            let ac = schedule.alphasCumprodF
            var x = xT
            for (i, t) in discreteTimesteps.enumerated() where i >= startIndex {
                let prev = i + 1 < discreteTimesteps.count ? discreteTimesteps[i + 1] : -1
                let output = denoise(x, Float(t))
                // 1. coefficients of this (possibly skipping) step
                let aT = ac[t], aPrev = prev >= 0 ? ac[prev] : 1
                let bT = 1 - aT, bPrev = 1 - aPrev
                let alphaT = aT / aPrev, betaT = 1 - alphaT
                // 2. x̂₀ from the prediction (Ho et al. eq. 15 for ε), then clip
                let x0 = parameterization.clip(parameterization.x0(output, x: x, alpha: aT.squareRoot(), sigma: bT.squareRoot()))
                // 3. posterior mean μ̃(x_t, x̂₀) (Ho et al. eq. 7)
                let c0 = aPrev.squareRoot() * betaT / bT
                let cx = alphaT.squareRoot() * bPrev / bT
                var next = c0 * x0 + cx * x
                // 4. add σ_t z, except at the last step
                if t > 0 {
                    let z = noise.nextNormal(x.shape)
                    let posterior = Swift.max(bPrev / bT * betaT, 1e-20)
                    let std: Float
                    switch variance {
                    case .fixedSmall: std = posterior.squareRoot()
                    case .fixedSmallLog: std = Foundation.exp(0.5 * Foundation.log(posterior))
                    case .fixedLarge: std = betaT.squareRoot()
                    }
                    next = next + std * z
                }
                x = next
                onStep?(i, x)
            }
            return x
        }
    }
}
