import Foundation

/// How β_t grows over the training timesteps (diffusers' `beta_schedule`).
public enum BetaSchedule: String, Codable, CaseIterable, Sendable {
    case linear
    /// Linear in √β (Stable Diffusion's schedule).
    case scaledLinear = "scaled_linear"
    /// Nichol & Dhariwal 2021, eq. 17: ᾱ(t) = cos²((t/T + 0.008)/1.008 · π/2), β capped at 0.999.
    case squaredcosCapV2 = "squaredcos_cap_v2"
    /// σ(linspace(-6, 6)) scaled into [beta_start, beta_end] (GeoDiff).
    case sigmoid
}

/// The forward process shared by every sampler, computed once.
///
/// Notation (Ho et al. 2020; Karras et al. 2022):
///
/// | symbol | code            | meaning                                        |
/// |--------|-----------------|------------------------------------------------|
/// | β_t    | `betas`         | per-step noise variance, t = 0 ..< T           |
/// | ᾱ_t    | `alphasCumprod` | ∏_{s≤t} (1 − β_s); x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε  |
/// | σ_t    | `sigmas`        | √((1 − ᾱ_t)/ᾱ_t): the same process as x/√ᾱ = x₀ + σ ε |
///
/// The arrays hold exactly the float32 values diffusers computes (its betas are float32
/// torch tensors and `torch.cumprod` accumulates them in double, rounding each product to
/// float32); they are stored as `[Float]` so samplers can repeat diffusers' float32 scalar
/// arithmetic, and exposed as `[Double]` for everything else.
public struct NoiseSchedule: Sendable, Equatable {
    public let numTrainTimesteps: Int
    /// β_t, float32 values.
    public let betasF: [Float]
    /// ᾱ_t, float32 values.
    public let alphasCumprodF: [Float]

    public var betas: [Double] { betasF.map(Double.init) }
    public var alphasCumprod: [Double] { alphasCumprodF.map(Double.init) }

    /// σ_t = √((1 − ᾱ_t)/ᾱ_t) in float32, as diffusers computes it from the float32 ᾱ.
    public var sigmasF: [Float] { alphasCumprodF.map { ((1 - $0) / $0).squareRoot() } }

    /// - Parameters:
    ///   - trainedBetas: explicit β values; overrides the schedule.
    ///   - rescaleZeroTerminalSNR: Lin et al. 2024 ("Common diffusion noise schedules and sample
    ///     steps are flawed"), Algorithm 1: shift and scale √ᾱ so that ᾱ_{T−1} = 0.
    public init(numTrainTimesteps: Int = 1000, betaStart: Double = 0.0001, betaEnd: Double = 0.02,
                schedule: BetaSchedule = .linear, trainedBetas: [Double]? = nil,
                rescaleZeroTerminalSNR: Bool = false) {
        precondition(numTrainTimesteps > 1, "NoiseSchedule: numTrainTimesteps \(numTrainTimesteps) < 2")
        let n = numTrainTimesteps
        var betas: [Float]
        if let trained = trainedBetas {
            betas = trained.map { Float($0) }
        } else {
            switch schedule {
            case .linear:
                betas = Reference.torchLinspaceFloat32(betaStart, betaEnd, n)
            case .scaledLinear:
                betas = Reference.torchLinspaceFloat32(betaStart.squareRoot(), betaEnd.squareRoot(), n).map { $0 * $0 }
            case .squaredcosCapV2:
                func alphaBar(_ t: Double) -> Double {
                    let c = Foundation.cos((t + 0.008) / 1.008 * Double.pi / 2)
                    return c * c
                }
                betas = (0..<n).map { i in
                    let t1 = Double(i) / Double(n), t2 = Double(i + 1) / Double(n)
                    return Float(Swift.min(1 - alphaBar(t2) / alphaBar(t1), 0.999))
                }
            case .sigmoid:
                let scale = Float(betaEnd - betaStart), shift = Float(betaStart)
                betas = Reference.torchLinspaceFloat32(-6, 6, n).map { x in
                    1 / (1 + Foundation.exp(-x)) * scale + shift
                }
            }
        }
        precondition(betas.count == n, "NoiseSchedule: \(betas.count) trained betas for \(n) timesteps")
        if rescaleZeroTerminalSNR { betas = NoiseSchedule.rescaleZeroTerminalSNR(betas) }
        self.numTrainTimesteps = n
        self.betasF = betas
        self.alphasCumprodF = NoiseSchedule.cumprod(betas.map { 1 - $0 })
    }

    /// `torch.cumprod` on a float32 CPU tensor: a double accumulator, each output rounded.
    static func cumprod(_ xs: [Float]) -> [Float] {
        var acc = 1.0
        return xs.map { acc *= Double($0); return Float(acc) }
    }

    /// Lin et al. 2024, Algorithm 1, in float32 as diffusers runs it.
    static func rescaleZeroTerminalSNR(_ betas: [Float]) -> [Float] {
        let ac = cumprod(betas.map { 1 - $0 })
        var s = ac.map { $0.squareRoot() }
        let s0 = s[0], sT = s[s.count - 1]
        let k = s0 / (s0 - sT)
        s = s.map { ($0 - sT) * k }
        let abar = s.map { $0 * $0 }
        var alphas = [abar[0]]
        for i in 1..<abar.count { alphas.append(abar[i] / abar[i - 1]) }
        return alphas.map { 1 - $0 }
    }

    /// ᾱ_t with the last entry raised to 2⁻²⁴ when it is zero (zero-SNR schedules), so that
    /// σ stays finite: what diffusers' σ-space schedulers (Euler, DPM-Solver, UniPC) do.
    var alphasCumprodForSigmas: [Float] {
        var ac = alphasCumprodF
        if ac[ac.count - 1] == 0 { ac[ac.count - 1] = 0x1p-24 }
        return ac
    }
}

/// Where the inference timesteps sit among the training timesteps (diffusers' `timestep_spacing`;
/// Lin et al. 2024, Table 2).
public enum TimestepSpacing: String, Codable, CaseIterable, Sendable {
    /// Evenly spaced over [0, T − 1], rounded; includes T − 1.
    case linspace
    /// 0, k, 2k, ... (k = T / n) + `steps_offset`; never reaches T − 1.
    case leading
    /// T − 1, T − 1 − T/n, ...: always starts at the last timestep.
    case trailing

    /// The n integer timesteps of DDPM and DDIM, descending.
    public func discrete(steps n: Int, trainSteps T: Int, offset: Int) -> [Int] {
        switch self {
        case .linspace:
            return Reference.linspace(0, Double(T - 1), n).map { Int(Reference.round($0)) }.reversed()
        case .leading:
            let ratio = T / n
            return (0..<n).map { $0 * ratio + offset }.reversed()
        case .trailing:
            return Reference.arange(Double(T), 0, -Double(T) / Double(n)).map { Int(Reference.round($0)) - 1 }
        }
    }

    /// The n integer timesteps of the multistep solvers (DPM-Solver, UniPC), which space n + 1
    /// points and drop the last; `last` is the first timestep past the clipped range.
    func multistep(steps n: Int, trainSteps T: Int, last: Int, offset: Int) -> [Int] {
        switch self {
        case .linspace:
            return Array(Reference.linspace(0, Double(last - 1), n + 1).map { Int(Reference.round($0)) }.reversed().dropLast())
        case .leading:
            let ratio = last / (n + 1)
            return Array((0...n).map { $0 * ratio }.reversed().dropLast()).map { $0 + offset }
        case .trailing:
            return Reference.arange(Double(last), 0, -Double(T) / Double(n)).map { Int(Reference.round($0)) - 1 }
        }
    }

    /// The n float32 timesteps of the Euler family (linspace is not rounded there).
    func continuous(steps n: Int, trainSteps T: Int, offset: Int) -> [Float] {
        switch self {
        case .linspace:
            return Reference.linspace(0, Double(T - 1), n).map { Float($0) }.reversed()
        case .leading:
            let ratio = T / n
            return (0..<n).map { Float($0 * ratio) + Float(offset) }.reversed()
        case .trailing:
            return Reference.arange(Double(T), 0, -Double(T) / Double(n)).map { Float(Reference.round($0)) - 1 }
        }
    }
}

/// How the σ of the inference steps are placed.
public enum SigmaSpacing: String, Codable, CaseIterable, Sendable {
    /// σ interpolated at the spaced timesteps.
    case timesteps
    /// Karras et al. 2022, eq. 5 (ρ = 7): σ_i = (σ_max^{1/ρ} + i/(n−1) (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ.
    case karras
    /// Evenly spaced in log σ.
    case exponential

    /// n sigmas from σ_max down to σ_min, in float64 like diffusers.
    func sigmas(min sigmaMin: Double, max sigmaMax: Double, count n: Int) -> [Double] {
        switch self {
        case .timesteps:
            preconditionFailure("SigmaSpacing.timesteps has no closed form")
        case .karras:
            let rho = 7.0
            let minInv = Foundation.pow(sigmaMin, 1 / rho), maxInv = Foundation.pow(sigmaMax, 1 / rho)
            return Reference.linspace(0, 1, n).map { Foundation.pow(maxInv + $0 * (minInv - maxInv), rho) }
        case .exponential:
            return Reference.linspace(Foundation.log(sigmaMax), Foundation.log(sigmaMin), n).map { Foundation.exp($0) }
        }
    }
}
