// DPM-Solver++ multistep (2M), and its SDE variant.
//
// Lu, Zhou, Bao, Chen, Li & Zhu, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
// Probabilistic Models", 2022: Algorithm 2 (multistep second order, data prediction);
// the SDE variant is §5 / Appendix ("SDE-DPM-Solver++(2M)"), as in k-diffusion.
// Reproduces diffusers' `DPMSolverMultistepScheduler` (0.42.1) with algorithm_type
// "dpmsolver++" or "sde-dpmsolver++" and solver_type "midpoint" or "heun".
//
// | symbol         | code            | meaning                                            |
// |----------------|-----------------|----------------------------------------------------|
// | σ_i            | `sig[i]`        | VE noise level of step i (σ_n = 0 or σ_min at the end) |
// | α_t, σ_t       | `alphaT`, `sigmaT` | VP coefficients: α = 1/√(σ² + 1), σ_t = σ α      |
// | λ_t            | `lambda`        | log(α_t/σ_t), half the log-SNR                     |
// | h_i            | `h`             | λ_{i+1} − λ_i                                      |
// | r_i            | `r0`            | h_{i−1} / h_i                                      |
// | x̂₀ (data pred) | `m0`, `m1`      | model output converted to x₀, this step and the last |
// | D₁             | `d1`            | (m0 − m1)/r_i, the finite-difference derivative    |
//
// ODE (dpmsolver++), Algorithm 2, line 8 (midpoint):
//   x_{i+1} = (σ_{i+1}/σ_i) x_i − α_{i+1}(e^{−h} − 1) m0 − ½ α_{i+1}(e^{−h} − 1) D₁
// SDE (sde-dpmsolver++):
//   x_{i+1} = (σ_{i+1}/σ_i) e^{−h} x_i + α_{i+1}(1 − e^{−2h}) m0 + ½ α_{i+1}(1 − e^{−2h}) D₁
//             + σ_{i+1} √(1 − e^{−2h}) z
// First step, and the last step when `final_sigmas_type` is "zero" (or n < 15 with
// `lower_order_final`), are first order (DPM-Solver++(1) = DDIM).
//
// Limitations: solver_order ≤ 3 (3 is the same multistep family, diffusers' third-order
// update); "dpmsolver"/"sde-dpmsolver" (noise prediction, deprecated in diffusers), Lu
// lambdas, beta sigmas, flow sigmas and `variance_type` learned are not supported.

import Foundation
import Tensor

public enum DPMSolverAlgorithm: String, CaseIterable, Sendable {
    case dpmSolverPP = "dpmsolver++"
    case sdeDPMSolverPP = "sde-dpmsolver++"
}

public enum DPMSolverType: String, CaseIterable, Sendable {
    case midpoint, heun
}

/// The noise level after the last step (`final_sigmas_type`).
public enum FinalSigma: String, CaseIterable, Sendable {
    case zero
    /// σ of training timestep 0.
    case sigmaMin = "sigma_min"
}

public struct DPMSolverMultistepSampler: Sampler {
    public static let schedulerClass = SchedulerClass.dpmSolverMultistep
    public let config: SchedulerConfig
    public let steps: Int
    public let schedule: NoiseSchedule
    public let parameterization: Parameterization
    public let algorithm: DPMSolverAlgorithm
    public let solverType: DPMSolverType
    public let order: Int
    public let lowerOrderFinal: Bool
    public let eulerAtFinal: Bool
    public let finalSigma: FinalSigma
    /// Integer timesteps given to the model, one per step.
    public let discreteTimesteps: [Int]
    /// σ_0 ... σ_n in float32 (n + 1 values).
    public let sigmas: [Float]

    public var timesteps: [Float] { discreteTimesteps.map(Float.init) }
    public var initNoiseSigma: Float { 1 }

    public init(config: SchedulerConfig, steps: Int) throws {
        let c = try Self.validate(config, steps: steps)
        self.config = c
        self.steps = steps
        schedule = try c.noiseSchedule()
        parameterization = try c.parameterization()
        algorithm = try c.choice("algorithm_type", DPMSolverAlgorithm.self)
        solverType = try c.choice("solver_type", DPMSolverType.self)
        order = try c.int("solver_order")
        guard (1...3).contains(order) else { throw c.bad("solver_order", "expected 1, 2 or 3") }
        lowerOrderFinal = try c.flag("lower_order_final")
        eulerAtFinal = try c.flag("euler_at_final")
        finalSigma = try c.choice("final_sigmas_type", FinalSigma.self)
        for k in ["use_lu_lambdas", "use_beta_sigmas", "use_flow_sigmas"] where try c.flag(k) {
            throw c.bad(k, "only Karras and exponential sigma spacings are reproduced")
        }
        // Only "learned"/"learned_range" change DPM-Solver (a DDPM config's "fixed_small" carries
        // over through from_config and is ignored there, as diffusers does).
        if case .string(let v)? = c.value("variance_type"), v.hasPrefix("learned") {
            throw c.bad("variance_type", "learned variances are not supported")
        }
        let spacing: SigmaSpacing = try c.flag("use_karras_sigmas") ? .karras
            : (try c.flag("use_exponential_sigmas") ? .exponential : .timesteps)
        (discreteTimesteps, sigmas) = try DPMSolverMultistepSampler.makeSteps(
            c, schedule: schedule, steps: steps, sigmaSpacing: spacing, finalSigma: finalSigma,
            lambdaMinClipped: try c.number("lambda_min_clipped"), roundCosineKarras: false)
    }

    /// diffusers' `set_timesteps` for the multistep solvers (shared with UniPC).
    static func makeSteps(_ c: SchedulerConfig, schedule: NoiseSchedule, steps n: Int, sigmaSpacing: SigmaSpacing,
                          finalSigma: FinalSigma, lambdaMinClipped: Double, roundCosineKarras: Bool,
                          lastFromSpacing: Bool = false, sigmaMin: Double? = nil,
                          sigmaMax: Double? = nil) throws -> ([Int], [Float]) {
        let T = schedule.numTrainTimesteps
        let ac = schedule.alphasCumprodForSigmas
        // λ_t increases towards t = 0; drop trailing timesteps with λ below the clip.
        let lambdas = ac.map { Foundation.log($0.squareRoot()) - Foundation.log((1 - $0).squareRoot()) }
        let clipped = Array(lambdas.reversed()).firstIndex(where: { Double($0) >= lambdaMinClipped }) ?? T
        let last = T - clipped
        var timesteps = try c.choice("timestep_spacing", TimestepSpacing.self)
            .multistep(steps: n, trainSteps: T, last: last, offset: try c.int("steps_offset"))
        let tableF = ac.map { ((1 - $0) / $0).squareRoot() }
        var sig: [Double]
        switch sigmaSpacing {
        case .timesteps:
            let table = tableF.map(Double.init)
            sig = timesteps.map { Reference.interp(Double($0), table) }
        case .karras, .exponential:
            let logSigmas = tableF.map { Foundation.log($0) }
            sig = sigmaSpacing.sigmas(min: sigmaMin ?? Double(tableF[0]), max: sigmaMax ?? Double(tableF[T - 1]), count: n)
            let beta = try c.choice("beta_schedule", BetaSchedule.self)
            timesteps = sig.map { s in
                let t = Reference.sigmaToT(s, logSigmas: logSigmas)
                // diffusers rounds Karras timesteps (DPM-Solver: unless the schedule is cosine),
                // then casts to int64
                let r = (sigmaSpacing == .karras && (roundCosineKarras || beta != .squaredcosCapV2)) ? Reference.round(t) : t
                return Int(r)
            }
        }
        let lastSigma: Float = finalSigma == .zero ? 0
            : (lastFromSpacing && sigmaSpacing != .timesteps ? Float(sig[sig.count - 1]) : ((1 - ac[0]) / ac[0]).squareRoot())
        return (timesteps, sig.map { Float($0) } + [lastSigma])
    }

    public func sample<N: NoiseSource>(from xT: Tensor, startIndex: Int, noise: inout N, denoise: Denoiser,
                                       onStep: ((Int, Tensor) -> Void)?) -> Tensor {
        GradMode.withoutGrad {
            let n = discreteTimesteps.count
            var history: [Tensor] = []  // converted outputs x̂₀, oldest first (at most `order`)
            var lowerOrderNums = 0
            var x = xT
            for i in startIndex..<n {
                let output = denoise(x, Float(discreteTimesteps[i]))
                let lowerOrderFinalStep = i == n - 1
                    && (eulerAtFinal || (lowerOrderFinal && n < 15) || finalSigma == .zero)
                let lowerOrderSecond = i == n - 2 && lowerOrderFinal && n < 15
                // 1. data prediction x̂₀ at σ_i
                let (a, s) = alphaSigma(sigmas[i])
                let m0 = parameterization.clip(parameterization.x0(output, x: x, alpha: a, sigma: s))
                history.append(m0)
                if history.count > order { history.removeFirst() }
                let z: Tensor? = algorithm == .sdeDPMSolverPP ? noise.nextNormal(x.shape) : nil
                // 2. update of the order allowed here
                if order == 1 || lowerOrderNums < 1 || lowerOrderFinalStep {
                    x = firstOrder(i, x: x, m0: m0, z: z)
                } else if order == 2 || lowerOrderNums < 2 || lowerOrderSecond {
                    x = secondOrder(i, x: x, m0: history[history.count - 1], m1: history[history.count - 2], z: z)
                } else {
                    x = thirdOrder(i, x: x, m: history, z: z)
                }
                if lowerOrderNums < order { lowerOrderNums += 1 }
                onStep?(i, x)
            }
            return x
        }
    }

    /// (α_t, σ_t) of the VP process at VE noise level σ, in float32 like diffusers.
    func alphaSigma(_ sigma: Float) -> (Float, Float) {
        let a = 1 / (sigma * sigma + 1).squareRoot()
        return (a, sigma * a)
    }

    func lambda(_ a: Float, _ s: Float) -> Float { Foundation.log(a) - Foundation.log(s) }

    /// DPM-Solver++(1), = DDIM in λ (Lu et al. eq. 9 with k = 1).
    func firstOrder(_ i: Int, x: Tensor, m0: Tensor, z: Tensor?) -> Tensor {
        let (aT, sT) = alphaSigma(sigmas[i + 1]), (aS, sS) = alphaSigma(sigmas[i])
        let h = lambda(aT, sT) - lambda(aS, sS)
        switch algorithm {
        case .dpmSolverPP:
            return sT / sS * x - aT * (Foundation.exp(-h) - 1) * m0
        case .sdeDPMSolverPP:
            let e2 = Foundation.exp(-2 * h)
            return sT / sS * Foundation.exp(-h) * x + aT * (1 - e2) * m0 + sT * (1 - e2).squareRoot() * z!
        }
    }

    /// Multistep second order (Algorithm 2, line 8).
    func secondOrder(_ i: Int, x: Tensor, m0: Tensor, m1: Tensor, z: Tensor?) -> Tensor {
        let (aT, sT) = alphaSigma(sigmas[i + 1]), (aS0, sS0) = alphaSigma(sigmas[i])
        let (aS1, sS1) = alphaSigma(sigmas[i - 1])
        let lT = lambda(aT, sT), lS0 = lambda(aS0, sS0), lS1 = lambda(aS1, sS1)
        let h = lT - lS0, h0 = lS0 - lS1
        let r0 = h0 / h
        let d1 = 1 / r0 * (m0 - m1)
        switch (algorithm, solverType) {
        case (.dpmSolverPP, .midpoint):
            let c = aT * (Foundation.exp(-h) - 1)
            return sT / sS0 * x - c * m0 - 0.5 * c * d1
        case (.dpmSolverPP, .heun):
            let em = Foundation.exp(-h) - 1
            return sT / sS0 * x - aT * em * m0 + aT * (em / h + 1) * d1
        case (.sdeDPMSolverPP, .midpoint):
            let e2 = Foundation.exp(-2 * h)
            let c = aT * (1 - e2)
            return sT / sS0 * Foundation.exp(-h) * x + c * m0 + 0.5 * c * d1 + sT * (1 - e2).squareRoot() * z!
        case (.sdeDPMSolverPP, .heun):
            let e2 = Foundation.exp(-2 * h)
            return sT / sS0 * Foundation.exp(-h) * x + aT * (1 - e2) * m0 + aT * ((1 - e2) / (-2 * h) + 1) * d1
                + sT * (1 - e2).squareRoot() * z!
        }
    }

    /// Multistep third order (Lu et al. 2022, Algorithm 3 in data prediction form).
    func thirdOrder(_ i: Int, x: Tensor, m: [Tensor], z: Tensor?) -> Tensor {
        let (aT, sT) = alphaSigma(sigmas[i + 1]), (aS0, sS0) = alphaSigma(sigmas[i])
        let (aS1, sS1) = alphaSigma(sigmas[i - 1]), (aS2, sS2) = alphaSigma(sigmas[i - 2])
        let lT = lambda(aT, sT), lS0 = lambda(aS0, sS0), lS1 = lambda(aS1, sS1), lS2 = lambda(aS2, sS2)
        let m0 = m[m.count - 1], m1 = m[m.count - 2], m2 = m[m.count - 3]
        let h = lT - lS0, h0 = lS0 - lS1, h1 = lS1 - lS2
        let r0 = h0 / h, r1 = h1 / h
        let d10 = 1 / r0 * (m0 - m1), d11 = 1 / r1 * (m1 - m2)
        let d1 = d10 + r0 / (r0 + r1) * (d10 - d11)
        let d2 = 1 / (r0 + r1) * (d10 - d11)
        switch algorithm {
        case .dpmSolverPP:
            let em: Float = Foundation.exp(-h) - 1
            let c0: Float = aT * em, c1: Float = aT * (em / h + 1), c2: Float = aT * ((em + h) / (h * h) - 0.5)
            return sT / sS0 * x - c0 * m0 + c1 * d1 - c2 * d2
        case .sdeDPMSolverPP:
            let e2: Float = Foundation.exp(-2 * h)
            let cx: Float = sT / sS0 * Foundation.exp(-h), c0: Float = aT * (1 - e2)
            let c1: Float = aT * ((1 - e2) / (-2 * h) + 1)
            let c2: Float = aT * ((1 - e2 - 2 * h) / ((2 * h) * (2 * h)) - 0.5)
            let cz: Float = sT * (1 - e2).squareRoot()
            return cx * x + c0 * m0 + c1 * d1 + c2 * d2 + cz * z!
        }
    }
}
