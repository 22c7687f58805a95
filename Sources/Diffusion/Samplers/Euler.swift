// Euler sampler of the probability-flow ODE in σ (Karras et al., "Elucidating the Design Space
// of Diffusion-Based Generative Models", NeurIPS 2022, Algorithm 2 with S_churn = 0, i.e.
// the first-order steps of eq. 4 / Algorithm 1 without the Heun correction).
// Reproduces diffusers' `EulerDiscreteScheduler` (0.42.1).
//
// | symbol | code      | meaning                                                        |
// |--------|-----------|----------------------------------------------------------------|
// | σ_i    | `sigmas`  | VE noise level of step i; σ_n = 0 (or σ_min)                   |
// | x      | `x`       | VE sample, x = x₀ + σ ε; the model sees x / √(σ² + 1)          |
// | D(x)   | `x0`      | denoised estimate from the model output                        |
// | d_i    | `d`       | (x − D(x)) / σ_i, dx/dσ of the ODE (eq. 3)                     |
//
// x_{i+1} = x_i + (σ_{i+1} − σ_i) d_i
//
// Limitations: S_churn > 0 (stochastic churn), interpolation_type "log_linear",
// timestep_type "continuous", beta sigmas and custom sigmas are not supported.

import Foundation
import Tensor

public struct EulerSampler: Sampler {
    public static let schedulerClass = SchedulerClass.eulerDiscrete
    public let config: SchedulerConfig
    public let steps: Int
    public let schedule: NoiseSchedule
    public let parameterization: Parameterization
    public let timesteps: [Float]
    /// σ_0 ... σ_n.
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
        guard try c.string("interpolation_type") == "linear" else { throw c.bad("interpolation_type", "only \"linear\" is supported") }
        guard try c.string("timestep_type") == "discrete" else { throw c.bad("timestep_type", "only \"discrete\" is supported") }
        let spacing = try c.choice("timestep_spacing", TimestepSpacing.self)
        let s = SigmaSteps(schedule: schedule, spacing: spacing, steps: steps, offset: try c.int("steps_offset"),
                           sigmaSpacing: try c.sigmaSpacing(),
                           sigmaMin: try c.optionalNumber("sigma_min"), sigmaMax: try c.optionalNumber("sigma_max"),
                           finalSigma: try c.choice("final_sigmas_type", FinalSigma.self), zeroSNRFloor: true)
        timesteps = s.timesteps
        sigmas = s.sigmas
        initNoiseSigma = SigmaSteps.initNoiseSigma(sigmas, spacing: spacing)
    }

    public func sample<N: NoiseSource>(from xT: Tensor, startIndex: Int, noise: inout N, denoise: Denoiser,
                                       onStep: ((Int, Tensor) -> Void)?) -> Tensor {
        GradMode.withoutGrad {
            var x = xT
            for i in startIndex..<timesteps.count {
                let sigma = sigmas[i]
                // 1. D(x) from the model, which sees the VP-scaled input x / √(σ² + 1)
                let output = denoise(x / Tensor((sigma * sigma + 1).squareRoot()), timesteps[i])
                let x0 = parameterization.x0(output, veSample: x, sigma: sigma)
                // 2. d_i = (x − D(x)) / σ_i; Euler step to σ_{i+1}
                let d = (x - x0) / Tensor(sigma)
                x = x + d * (sigmas[i + 1] - sigma)
                onStep?(i, x)
            }
            return x
        }
    }
}
