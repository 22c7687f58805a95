// Heun's second-order sampler (Karras et al., "Elucidating the Design Space of Diffusion-Based
// Generative Models", NeurIPS 2022, Algorithm 1, deterministic).
// Reproduces diffusers' `HeunDiscreteScheduler` (0.42.1): n steps cost 2n − 1 model calls,
// each call is one "step" here as in diffusers (timesteps 1 ... n − 1 appear twice).
//
// | symbol | code       | meaning                                                 |
// |--------|------------|---------------------------------------------------------|
// | σ_i    | `sigmas`   | VE noise level of step i; σ_n = 0                       |
// | d_i    | `d`        | (x_i − D(x_i; σ_i)) / σ_i                               |
// | x̃      | `x`        | Euler prediction at σ_{i+1}                              |
// | d'     | `d2`       | (x̃ − D(x̃; σ_{i+1})) / σ_{i+1}                          |
//
// x_{i+1} = x_i + (σ_{i+1} − σ_i) · ½ (d_i + d')     (Algorithm 1, lines 5–8)
// The last step (σ_{i+1} = 0) is a plain Euler step (line 6's condition).
//
// Limitations: no stochastic churn; no `rescale_betas_zero_snr` (diffusers' class has none).

import Foundation
import Tensor

public struct HeunSampler: Sampler {
    public static let schedulerClass = SchedulerClass.heunDiscrete
    public let config: SchedulerConfig
    public let steps: Int
    public let schedule: NoiseSchedule
    public let parameterization: Parameterization
    /// Timestep of each of the 2n − 1 model calls.
    public let timesteps: [Float]
    /// σ of each call, then 0: σ_0, σ_1, σ_1, σ_2, σ_2, ..., σ_{n−1}, σ_{n−1}, 0.
    public let sigmas: [Float]
    public let initNoiseSigma: Float
    /// x = x₀ + σ ε (Karras et al.'s form), not √ᾱ x₀ + √(1 − ᾱ) ε.
    public static var varianceExploding: Bool { true }
    /// Two model evaluations per step.
    public static var order: Int { 2 }

    public init(config: SchedulerConfig, steps: Int) throws {
        let c = try Self.validate(config, steps: steps)
        self.config = c
        self.steps = steps
        schedule = try c.noiseSchedule()
        parameterization = try c.parameterization()
        let spacing = try c.choice("timestep_spacing", TimestepSpacing.self)
        let s = SigmaSteps(schedule: schedule, spacing: spacing, steps: steps, offset: try c.int("steps_offset"),
                           sigmaSpacing: try c.sigmaSpacing(),
                           zeroSNRFloor: false)
        let sig = s.sigmas
        sigmas = [sig[0]] + sig[1..<(sig.count - 1)].flatMap { [$0, $0] } + [sig[sig.count - 1]]
        timesteps = [s.timesteps[0]] + s.timesteps.dropFirst().flatMap { [$0, $0] }
        initNoiseSigma = SigmaSteps.initNoiseSigma(sigmas, spacing: spacing)
    }

    public func sample<N: NoiseSource>(from xT: Tensor, startIndex: Int, noise: inout N, denoise: Denoiser,
                                       onStep: ((Int, Tensor) -> Void)?) -> Tensor {
        GradMode.withoutGrad {
            var x = xT
            var pending: (d: Tensor, dt: Float, x: Tensor)? = nil  // the first half of a Heun step
            for i in startIndex..<timesteps.count {
                let s = sigmas[i]
                let output = denoise(x / Tensor((s * s + 1).squareRoot()), timesteps[i])
                if let first = pending {
                    // 2. correct: average the slopes at σ_i and σ_{i+1} (lines 7–8)
                    let sigmaNext = sigmas[i]
                    let x0 = parameterization.clip(parameterization.x0(output, veSample: x, sigma: sigmaNext))
                    let d2 = (x - x0) / Tensor(sigmaNext)
                    let d = (first.d + d2) * 0.5
                    x = first.x + d * first.dt
                    pending = nil
                } else {
                    // 1. Euler predictor from σ_i to σ_{i+1} (lines 3–5)
                    let sigma = sigmas[i], sigmaNext = sigmas[i + 1]
                    let x0 = parameterization.clip(parameterization.x0(output, veSample: x, sigma: sigma))
                    let d = (x - x0) / Tensor(sigma)
                    let dt = sigmaNext - sigma
                    pending = (d, dt, x)
                    x = x + d * dt
                }
                onStep?(i, x)
            }
            return x
        }
    }
}
