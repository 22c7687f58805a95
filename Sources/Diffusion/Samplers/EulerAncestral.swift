// Euler ancestral sampler: an Euler step down to σ_down, then fresh noise of std σ_up.
//
// Karras et al. 2022 step structure with k-diffusion's ancestral split (Crowson,
// `sample_euler_ancestral`; from the DDPM posterior: σ_up² = σ_{i+1}² (σ_i² − σ_{i+1}²) / σ_i²,
// σ_down² = σ_{i+1}² − σ_up²). Reproduces diffusers' `EulerAncestralDiscreteScheduler` (0.42.1).
//
// | symbol   | code        | meaning                                               |
// |----------|-------------|-------------------------------------------------------|
// | σ_i      | `sigmas`    | VE noise level of step i; σ_n = 0                     |
// | D(x)     | `x0`        | denoised estimate                                     |
// | d_i      | `d`         | (x − D(x)) / σ_i                                      |
// | σ_up, σ_down | `up`, `down` | ancestral split of the step σ_i → σ_{i+1}        |
//
// x_{i+1} = x_i + (σ_down − σ_i) d_i + σ_up z
//
// Limitations: eta (noise scale) is fixed at 1 as in diffusers; no Karras spacing (diffusers'
// class has none). Noise is drawn at every step, the last included (σ_up = 0 there), as diffusers does.

import Foundation
import Tensor

public struct EulerAncestralSampler: Sampler {
    public static let schedulerClass = SchedulerClass.eulerAncestralDiscrete
    public let config: SchedulerConfig
    public let steps: Int
    public let schedule: NoiseSchedule
    public let parameterization: Parameterization
    public let timesteps: [Float]
    public let sigmas: [Float]
    public let initNoiseSigma: Float
    /// x = x₀ + σ ε (Karras et al.'s form), not √ᾱ x₀ + √(1 − ᾱ) ε.
    public static var varianceExploding: Bool { true }

    public init(config: SchedulerConfig, steps: Int) throws {
        let c = try Self.validate(config, steps: steps)
        self.config = c
        self.steps = steps
        schedule = try c.noiseSchedule()
        parameterization = try c.parameterization()
        let spacing = try c.choice("timestep_spacing", TimestepSpacing.self)
        let s = SigmaSteps(schedule: schedule, spacing: spacing, steps: steps, offset: try c.int("steps_offset"),
                           zeroSNRFloor: true)
        timesteps = s.timesteps
        sigmas = s.sigmas
        initNoiseSigma = SigmaSteps.initNoiseSigma(sigmas, spacing: spacing)
    }

    public func sample<N: NoiseSource>(from xT: Tensor, startIndex: Int, noise: inout N, denoise: Denoiser,
                                       onStep: ((Int, Tensor) -> Void)?) -> Tensor {
        GradMode.withoutGrad {
            var x = xT
            for i in startIndex..<timesteps.count {
                let sigma = sigmas[i], to = sigmas[i + 1]
                let output = denoise(x / Tensor((sigma * sigma + 1).squareRoot()), timesteps[i])
                let x0 = parameterization.x0(output, veSample: x, sigma: sigma)
                // 1. split σ_i → σ_{i+1} into a deterministic part σ_down and fresh noise σ_up
                let up = (to * to * (sigma * sigma - to * to) / (sigma * sigma)).squareRoot()
                let down = (to * to - up * up).squareRoot()
                // 2. Euler step to σ_down, then add σ_up z
                let d = (x - x0) / Tensor(sigma)
                x = x + d * (down - sigma)
                x = x + noise.nextNormal(x.shape) * up
                onStep?(i, x)
            }
            return x
        }
    }
}
