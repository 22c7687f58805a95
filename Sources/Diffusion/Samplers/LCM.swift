// LCM: multistep sampling of a latent consistency model.
//
// Luo, Tan, Huang, Li & Zhao, "Latent Consistency Models: Synthesizing High-Resolution Images
// with Few-Step Inference", 2023: eq. 5–6 (the consistency function and its boundary condition,
// from Song et al. 2023, "Consistency Models", eq. 7–8) and Algorithm 3 (multistep sampling).
// Reproduces diffusers' `LCMScheduler` (0.42.1).
//
// | symbol          | code            | meaning                                                         |
// |-----------------|-----------------|-----------------------------------------------------------------|
// | τ_i             | `discreteTimesteps` | n timesteps from the distillation grid (`ConsistencySteps`)  |
// | ᾱ_τ             | `aT`, `aNext`   | cumulative ᾱ at τ_i and τ_{i+1}                                 |
// | x̂₀              | `x0`            | the prediction as x₀ (clipped / thresholded as configured)      |
// | σ_d, s          | 0.5, `timestepScaling` | data std and the timestep scale of the boundary condition |
// | c_skip, c_out   | `cSkip`, `cOut` | σ_d² / ((sτ)² + σ_d²),  sτ / √((sτ)² + σ_d²)  (→ 1, 0 as τ → 0)   |
//
// f(x_τ, τ) = c_skip(τ) x_τ + c_out(τ) x̂₀                                         (eq. 5)
// x_{τ_{i+1}} = √ᾱ_{τ_{i+1}} f + √(1 − ᾱ_{τ_{i+1}}) z,  z ~ N(0, I)             (Algorithm 3)
// and after the last step the result is f itself (no noise drawn).
//
// Limitations: custom timestep lists (`set_timesteps(timesteps=)`) and set_timesteps'
// `original_inference_steps` argument are not reproduced (the config key of that name is).
// `timestep_spacing`, `steps_offset` and `set_alpha_to_one` are kept in the config but unused,
// as in diffusers (its last step returns f, so ᾱ beyond the list is never needed).
// Guidance for LCM-distilled models enters through the model (`guidanceScaleEmbedding`), not here.

import Foundation
import Tensor

public struct LCMSampler: Sampler {
    public static let schedulerClass = SchedulerClass.lcm
    public let config: SchedulerConfig
    public let steps: Int
    public let schedule: NoiseSchedule
    public let parameterization: Parameterization
    /// s in c_skip / c_out (`timestep_scaling`).
    public let timestepScaling: Float
    /// The share of the distillation grid the steps are taken from (1: all of it; image-to-image
    /// as diffusers' LCM img2img pipeline runs it: the grid stops at noise level `strength`).
    public let strength: Float
    /// Integer training timesteps, descending.
    public let discreteTimesteps: [Int]

    public var timesteps: [Float] { discreteTimesteps.map(Float.init) }
    public var initNoiseSigma: Float { 1 }

    public init(config: SchedulerConfig, steps: Int) throws {
        try self.init(config: config, steps: steps, strength: 1)
    }

    public init(config: SchedulerConfig, steps: Int, strength: Float) throws {
        let c = try Self.validate(config, steps: steps)
        self.config = c
        self.steps = steps
        self.strength = strength
        schedule = try ConsistencySteps.noiseSchedule(c)
        parameterization = try c.parameterization()
        let scaling = try c.number("timestep_scaling")
        guard scaling.isFinite, scaling > 0 else { throw c.bad("timestep_scaling", "expected a positive number") }
        timestepScaling = Float(scaling)
        discreteTimesteps = try ConsistencySteps.timesteps(c, steps: steps, strength: strength)
    }

    /// c_skip and c_out at timestep t, in float32 as diffusers computes them (σ_d = 0.5).
    public func boundaryCondition(_ t: Int) -> (skip: Float, out: Float) {
        let scaled = Float(t) * timestepScaling
        let d = scaled * scaled + 0.25
        return (0.25 / d, scaled / d.squareRoot())
    }

    public func sample<N: NoiseSource>(from xT: Tensor, startIndex: Int, noise: inout N, denoise: Denoiser,
                                       onStep: ((Int, Tensor) -> Void)?) -> Tensor {
        GradMode.withoutGrad {
            let ac = schedule.alphasCumprodF
            let last = discreteTimesteps.count - 1
            var x = xT
            for (i, t) in discreteTimesteps.enumerated() where i >= startIndex {
                let output = denoise(x, Float(t))
                // 1. x̂₀ from the prediction, clipped or thresholded
                let aT = ac[t]
                let x0 = parameterization.clip(parameterization.x0(output, x: x, alpha: aT.squareRoot(),
                                                                   sigma: (1 - aT).squareRoot()))
                // 2. the consistency function f = c_skip x + c_out x̂₀ (eq. 5)
                let (cSkip, cOut) = boundaryCondition(t)
                let denoised = cOut * x0 + cSkip * x
                // 3. re-noise f to the next timestep (Algorithm 3); the last step returns f
                if i != last {
                    let aNext = ac[discreteTimesteps[i + 1]]
                    x = aNext.squareRoot() * denoised + (1 - aNext).squareRoot() * noise.nextNormal(x.shape)
                } else {
                    x = denoised
                }
                onStep?(i, x)
            }
            return x
        }
    }
}
