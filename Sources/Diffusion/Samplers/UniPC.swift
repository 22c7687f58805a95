// UniPC: unified predictor–corrector multistep sampler (B(h) = e^h − 1, "bh2").
//
// Zhao, Bai, Rao, Zhou & Lu, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling
// of Diffusion Models", NeurIPS 2023: Algorithm 1 (UniC) and Algorithm 2 (UniP) in data
// prediction form (§3.3, "UniPC with data prediction"), B(h) of eq. 5 / Appendix.
// Reproduces diffusers' `UniPCMultistepScheduler` (0.42.1) with predict_x0 = true.
//
// | symbol   | code          | meaning                                                   |
// |----------|---------------|-----------------------------------------------------------|
// | σ_i      | `sigmas`      | VE noise level of step i (σ_n = 0 or σ_min)               |
// | α, σ_t   | `alphaSigma`  | VP coefficients: α = 1/√(σ² + 1), σ_t = σ α               |
// | λ        | `lambda`      | log(α/σ_t)                                                |
// | h        | `h`           | λ_t − λ_s0                                                |
// | r_k      | `rks`         | (λ_{s_k} − λ_s0)/h for earlier points s_k                 |
// | D_k      | `d1s`         | (m_k − m0)/r_k                                            |
// | φ, B(h)  | `hPhi1`, `bH` | e^{−h} − 1 and B(h) = e^{−h} − 1 (bh2) or −h (bh1)        |
// | ρ^p, ρ^c | `rhos`        | predictor / corrector weights: R ρ = b (Algorithm 1/2)    |
//
// Each step: (1) x̂₀ of the model at x_i; (2) UniC corrects x_i with it (not at step 0 or in
// `disable_corrector`); (3) UniP predicts x_{i+1} from the corrected x_i and the last
// `order` outputs:
//   x_t = (σ_t/σ_s0) x − α_t φ m0 − α_t B(h) Σ_k ρ_k D_k            (UniP)
//   x_t = (σ_t/σ_s0) x − α_t φ m0 − α_t B(h) (Σ_k ρ_k D_k + ρ_K (m_t − m0))   (UniC)
//
// Limitations: predict_x0 = false (noise prediction form), solver_p, flow sigmas, beta
// sigmas and dynamic shifting are not supported.

import Foundation
import Tensor

public enum UniPCSolverType: String, CaseIterable, Sendable {
    case bh1, bh2
}

public struct UniPCSampler: Sampler {
    public static let schedulerClass = SchedulerClass.uniPCMultistep
    public let config: SchedulerConfig
    public let steps: Int
    public let schedule: NoiseSchedule
    public let parameterization: Parameterization
    public let solverType: UniPCSolverType
    public let order: Int
    public let lowerOrderFinal: Bool
    /// Step indices after which the corrector is skipped.
    public let disableCorrector: Set<Int>
    public let discreteTimesteps: [Int]
    public let sigmas: [Float]

    public var timesteps: [Float] { discreteTimesteps.map(Float.init) }
    public var initNoiseSigma: Float { 1 }

    public init(config: SchedulerConfig, steps: Int) throws {
        let c = try Self.validate(config, steps: steps)
        self.config = c
        self.steps = steps
        schedule = try c.noiseSchedule()
        parameterization = try c.parameterization()
        // diffusers maps DPM-Solver's solver types onto bh2 (`register_to_config(solver_type="bh2")`)
        let st = try c.string("solver_type")
        solverType = ["midpoint", "heun", "logrho"].contains(st) ? .bh2 : try c.choice("solver_type", UniPCSolverType.self)
        order = try c.int("solver_order")
        guard order >= 1 else { throw c.bad("solver_order", "expected at least 1") }
        lowerOrderFinal = try c.flag("lower_order_final")
        guard try c.flag("predict_x0") else { throw c.bad("predict_x0", "only the data-prediction form is supported") }
        for k in ["use_beta_sigmas", "use_flow_sigmas", "use_dynamic_shifting"] where try c.flag(k) {
            throw c.bad(k, "not supported")
        }
        if case .array(let a)? = c.value("disable_corrector") {
            disableCorrector = Set(try a.map { v -> Int in
                guard let d = v.double else { throw c.bad("disable_corrector", "expected step indices") }
                return Int(d)
            })
        } else { disableCorrector = [] }
        let spacing: SigmaSpacing = try c.flag("use_karras_sigmas") ? .karras
            : (try c.flag("use_exponential_sigmas") ? .exponential : .timesteps)
        (discreteTimesteps, sigmas) = try DPMSolverMultistepSampler.makeSteps(
            c, schedule: schedule, steps: steps, sigmaSpacing: spacing,
            finalSigma: try c.choice("final_sigmas_type", FinalSigma.self), lambdaMinClipped: -.infinity,
            roundCosineKarras: true, lastFromSpacing: true,
            sigmaMin: try c.optionalNumber("sigma_min"), sigmaMax: try c.optionalNumber("sigma_max"))
    }

    func alphaSigma(_ sigma: Float) -> (Float, Float) {
        let a = 1 / (sigma * sigma + 1).squareRoot()
        return (a, sigma * a)
    }

    func lambda(_ sigma: Float) -> Float {
        let (a, s) = alphaSigma(sigma)
        return Foundation.log(a) - Foundation.log(s)
    }

    public func sample<N: NoiseSource>(from xT: Tensor, startIndex: Int, noise: inout N, denoise: Denoiser,
                                       onStep: ((Int, Tensor) -> Void)?) -> Tensor {
        GradMode.withoutGrad {
            let n = discreteTimesteps.count
            var history: [Tensor] = []  // converted outputs x̂₀, oldest first
            var lastSample: Tensor? = nil
            var lastOrder = 0
            var lowerOrderNums = 0
            var x = xT
            for i in startIndex..<n {
                let output = denoise(x, Float(discreteTimesteps[i]))
                // 1. x̂₀ at σ_i (from the uncorrected x_i, as diffusers does)
                let (a, s) = alphaSigma(sigmas[i])
                let mT = parameterization.clip(parameterization.x0(output, x: x, alpha: a, sigma: s))
                // 2. UniC: correct x_i using the new output
                if i > 0, !disableCorrector.contains(i - 1), let last = lastSample {
                    x = update(target: i, source: i - 1, x: last, history: history, order: lastOrder, corrector: mT)
                }
                history.append(mT)
                if history.count > order { history.removeFirst() }
                // 3. UniP: predict x_{i+1}
                let thisOrder = Swift.min(lowerOrderFinal ? Swift.min(order, n - i) : order, lowerOrderNums + 1)
                lastOrder = thisOrder
                lastSample = x
                x = update(target: i + 1, source: i, x: x, history: history, order: thisOrder, corrector: nil)
                if lowerOrderNums < order { lowerOrderNums += 1 }
                onStep?(i, x)
            }
            return x
        }
    }

    /// One UniP (corrector == nil) or UniC update from σ_source to σ_target.
    /// `history.last` is m0, the output at σ_source; earlier entries are at σ_{source−1}, ...
    func update(target: Int, source: Int, x: Tensor, history: [Tensor], order: Int, corrector modelT: Tensor?) -> Tensor {
        let (aT, sT) = alphaSigma(sigmas[target])
        let (_, sS0) = alphaSigma(sigmas[source])
        let lS0 = lambda(sigmas[source])
        let h = lambda(sigmas[target]) - lS0
        let m0 = history[history.count - 1]
        // 1. earlier points: r_k and D_k
        var rks: [Float] = [], d1s: [Tensor] = []
        for k in 1..<Swift.max(order, 1) {
            let rk = (lambda(sigmas[source - k]) - lS0) / h
            rks.append(rk)
            d1s.append((history[history.count - 1 - k] - m0) / Tensor(rk))
        }
        rks.append(1)
        // 2. R and b (Algorithm 1/2): R_{ij} = r_j^{i}, b_i = φ_{i+1}(h) i! / B(h)
        let hh = -h
        let hPhi1 = Foundation.expm1(hh)
        var hPhiK = hPhi1 / hh - 1
        var factorial = 1
        let bH: Float = solverType == .bh2 ? Foundation.expm1(hh) : hh
        var R: [[Float]] = [], b: [Float] = []
        for i in 1...order {
            R.append(rks.map { power($0, i - 1) })
            b.append(hPhiK * Float(factorial) / bH)
            factorial *= i + 1
            hPhiK = hPhiK / hh - Float(1.0 / Double(factorial))
        }
        // 3. the update
        let base = sT / sS0 * x - aT * hPhi1 * m0
        if let mT = modelT {
            let rhos: [Float] = order == 1 ? [0.5] : Reference.solve(R, b)
            var res = rhos[rhos.count - 1] * (mT - m0)
            if !d1s.isEmpty { res = weightedSum(Array(rhos.dropLast()), d1s) + res }
            return base - aT * bH * res
        } else {
            guard !d1s.isEmpty else { return base }
            let rhos: [Float] = order == 2 ? [0.5]
                : Reference.solve(Array(R.dropLast().map { Array($0.dropLast()) }), Array(b.dropLast()))
            return base - aT * bH * weightedSum(rhos, d1s)
        }
    }

    /// torch.pow(x, k) for a small integer k (1, x, x·x, x·x·x: torch's special cases).
    func power(_ x: Float, _ k: Int) -> Float {
        switch k {
        case 0: return 1
        case 1: return x
        case 2: return x * x
        case 3: return x * x * x
        default: return Foundation.pow(x, Float(k))
        }
    }

    /// Σ_k w_k t_k (diffusers' einsum "k,bkc...->bc...").
    func weightedSum(_ w: [Float], _ ts: [Tensor]) -> Tensor {
        var acc = w[0] * ts[0]
        for k in 1..<ts.count { acc = acc + w[k] * ts[k] }
        return acc
    }
}
