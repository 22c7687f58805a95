// Linear multistep (LMS) sampler of the probability-flow ODE in σ.
//
// Karras et al., "Elucidating the Design Space of Diffusion-Based Generative Models", 2022,
// as implemented in k-diffusion (`sample_lms`): an Adams–Bashforth method on the
// non-uniform σ grid, the coefficients being integrals of Lagrange basis polynomials.
// Reproduces diffusers' `LMSDiscreteScheduler` (0.42.1) with its default order 4.
//
// | symbol | code       | meaning                                                        |
// |--------|------------|----------------------------------------------------------------|
// | σ_i    | `sigmas`   | VE noise level of step i; σ_n = 0                              |
// | d_i    | `history`  | (x_i − D(x_i)) / σ_i, the last `order` of them                 |
// | ℓ_j    | `basis`    | Lagrange basis on σ_i, σ_{i−1}, ...: ℓ_j(σ_{i−j}) = 1          |
// | c_j    | `coeff`    | ∫_{σ_i}^{σ_{i+1}} ℓ_j(τ) dτ                                    |
//
// x_{i+1} = x_i + Σ_j c_j d_{i−j}
//
// diffusers integrates ℓ_j numerically (scipy `quad`, float32 integrand); here the integral is
// exact (4-point Gauss–Legendre is exact for the degree ≤ 3 polynomials), which differs in the
// 7th digit. Limitations: beta sigmas are not supported.

import Foundation
import Tensor

public struct LMSSampler: Sampler {
    public static let schedulerClass = SchedulerClass.lmsDiscrete
    public let config: SchedulerConfig
    public let steps: Int
    public let schedule: NoiseSchedule
    public let parameterization: Parameterization
    public let order = 4
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
                           sigmaSpacing: try c.sigmaSpacing(),
                           zeroSNRFloor: false)
        timesteps = s.timesteps
        sigmas = s.sigmas
        initNoiseSigma = SigmaSteps.initNoiseSigma(sigmas, spacing: spacing)
    }

    /// c_j = ∫_{σ_i}^{σ_{i+1}} ∏_{k≠j} (τ − σ_{i−k}) / (σ_{i−j} − σ_{i−k}) dτ.
    func coefficient(order: Int, step i: Int, j: Int) -> Double {
        let s = sigmas.map(Double.init)
        func basis(_ tau: Double) -> Double {
            var p = 1.0
            for k in 0..<order where k != j { p *= (tau - s[i - k]) / (s[i - j] - s[i - k]) }
            return p
        }
        // 4-point Gauss–Legendre on [a, b]
        let a = s[i], b = s[i + 1]
        let nodes = [0.3399810435848563, 0.8611363115940526], weights = [0.6521451548625461, 0.3478548451374538]
        let mid = (a + b) / 2, half = (b - a) / 2
        var sum = 0.0
        for (x, w) in zip(nodes, weights) { sum += w * (basis(mid - half * x) + basis(mid + half * x)) }
        return sum * half
    }

    public func sample<N: NoiseSource>(from xT: Tensor, startIndex: Int, noise: inout N, denoise: Denoiser,
                                       onStep: ((Int, Tensor) -> Void)?) -> Tensor {
        GradMode.withoutGrad {
            var x = xT
            var history: [Tensor] = []  // d_i, oldest first
            for i in startIndex..<timesteps.count {
                let sigma = sigmas[i]
                let output = denoise(x / Tensor((sigma * sigma + 1).squareRoot()), timesteps[i])
                let x0 = parameterization.x0(output, veSample: x, sigma: sigma)
                history.append((x - x0) / Tensor(sigma))
                if history.count > order { history.removeFirst() }
                let k = Swift.min(i - startIndex + 1, order)  // the steps taken so far (img2img starts mid-way)
                var sum: Tensor? = nil
                for j in 0..<k {
                    let term = Float(coefficient(order: k, step: i, j: j)) * history[history.count - 1 - j]
                    sum = sum.map { $0 + term } ?? term
                }
                x = x + sum!
                onStep?(i, x)
            }
            return x
        }
    }
}
