// TCD: strategic stochastic sampling of a trajectory consistency model.
//
// Zheng, He, Wang, Liu, Yang & Li, "Trajectory Consistency Distillation: Improved Latent
// Consistency Distillation by Semi-Linear Consistency Function with Trajectory Mapping", 2024,
// §4.2 "Strategic stochastic sampling" (Algorithm 4). Reproduces diffusers' `TCDScheduler` (0.42.1).
//
// | symbol  | code          | meaning                                                              |
// |---------|---------------|----------------------------------------------------------------------|
// | t, t'   | `t`, `next`   | this timestep and the next in the list (0 after the last)            |
// | γ       | `gamma`       | stochasticity: 0 = deterministic, 1 = like LCM (diffusers' `eta`)     |
// | s       | `s`           | ⌊(1 − γ) t'⌋, the point the model's trajectory is followed to         |
// | x̂₀, ε̂   | `x0`, `eps`   | the prediction as x₀ and as ε                                         |
// | ᾱ       | `aT`, `aNext`, `aS` | cumulative ᾱ at t, t', s                                        |
//
// x_s  = √ᾱ_s x̂₀ + √(1 − ᾱ_s) ε̂                              (the DDIM jump t → s)
// x_t' = √(ᾱ_t'/ᾱ_s) x_s + √(1 − ᾱ_t'/ᾱ_s) z,  z ~ N(0, I)    (forward noise s → t', if γ > 0)
// The last step returns x_s with s = 0 (ᾱ_0 < 1: like diffusers, the result keeps the noise of
// training timestep 0), and draws no noise.
//
// Limitations: custom timestep lists and set_timesteps' `original_inference_steps` argument
// (which there switches to a grid of every training timestep) are not reproduced; the config key
// `original_inference_steps` is. `clip_sample`, `thresholding` and their ranges, `timestep_scaling`,
// `timestep_spacing`, `steps_offset` and `set_alpha_to_one` are kept in the config but unused,
// as diffusers' `TCDScheduler.step` never reads them.

import Foundation
import Tensor

public struct TCDSampler: Sampler {
    public static let schedulerClass = SchedulerClass.tcd
    /// γ when none is given: `TCDScheduler.step`'s default (and the paper's recommendation).
    /// diffusers' Stable Diffusion pipelines pass their own `eta` instead, 0 unless given: to
    /// match such a call, pass γ = 0.
    public static let defaultGamma: Float = 0.3
    public let config: SchedulerConfig
    public let steps: Int
    public let schedule: NoiseSchedule
    public let parameterization: Parameterization
    /// γ in [0, 1].
    public let gamma: Float
    /// As `LCMSampler.strength`: the share of the distillation grid the steps are taken from.
    public let strength: Float
    /// Integer training timesteps, descending.
    public let discreteTimesteps: [Int]

    public var timesteps: [Float] { discreteTimesteps.map(Float.init) }
    public var initNoiseSigma: Float { 1 }
    public var finalNoiseLevel: Float { (1 - schedule.alphasCumprodF[0]).squareRoot() }

    public init(config: SchedulerConfig, steps: Int) throws {
        try self.init(config: config, steps: steps, gamma: Self.defaultGamma)
    }

    public init(config: SchedulerConfig, steps: Int, gamma: Float, strength: Float = 1) throws {
        let c = try Self.validate(config, steps: steps)
        guard gamma >= 0, gamma <= 1 else {
            throw SamplingRequestError(setting: "eta", reason: "TCD's gamma must be within 0–1, got \(gamma)")
        }
        self.config = c
        self.steps = steps
        self.gamma = gamma
        self.strength = strength
        schedule = try ConsistencySteps.noiseSchedule(c)
        parameterization = Parameterization(try c.choice("prediction_type", PredictionType.self))
        discreteTimesteps = try ConsistencySteps.timesteps(c, steps: steps, strength: strength)
    }

    public func sample<N: NoiseSource>(from xT: Tensor, startIndex: Int, noise: inout N, denoise: Denoiser,
                                       onStep: ((Int, Tensor) -> Void)?) -> Tensor {
        GradMode.withoutGrad {
            let ac = schedule.alphasCumprodF
            let last = discreteTimesteps.count - 1
            // (1 − γ) is a Python float that torch rounds to float32 when it scales the long t'
            let keep = Float(1 - Double(gamma))
            var x = xT
            for (i, t) in discreteTimesteps.enumerated() where i >= startIndex {
                let output = denoise(x, Float(t))
                // 1. t', and s = ⌊(1 − γ) t'⌋ (float32, as torch.floor of a float tensor)
                let next = i < last ? discreteTimesteps[i + 1] : 0
                let s = Int((keep * Float(next)).rounded(.down))
                let aT = ac[t], aNext = ac[next], aS = ac[s]
                // 2. x̂₀ and ε̂ from the prediction
                let sa = aT.squareRoot(), sb = (1 - aT).squareRoot()
                let x0 = parameterization.x0(output, x: x, alpha: sa, sigma: sb)
                let eps = parameterization.epsilon(output, x: x, x0: x0, alpha: sa, sigma: sb)
                // 3. follow the trajectory to s
                let xs = aS.squareRoot() * x0 + (1 - aS).squareRoot() * eps
                // 4. forward-noise s → t' (none for γ = 0 and after the last step)
                if gamma > 0, i != last {
                    let r = aNext / aS
                    x = r.squareRoot() * xs + (1 - r).squareRoot() * noise.nextNormal(x.shape)
                } else {
                    x = xs
                }
                onStep?(i, x)
            }
            return x
        }
    }
}
