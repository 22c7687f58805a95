import Foundation

/// The step list of the Karras-style (variance exploding) samplers — Euler, Euler ancestral,
/// Heun — as diffusers' `set_timesteps` builds it: float32 timesteps, σ interpolated from the
/// training table (or respaced à la Karras / exponentially), a final σ appended.
struct SigmaSteps: Sendable, Equatable {
    /// Model timestep of each step (fractional after Karras respacing).
    var timesteps: [Float]
    /// σ_0 ... σ_n, float32 (n + 1 values).
    var sigmas: [Float]

    init(schedule: NoiseSchedule, spacing: TimestepSpacing, steps n: Int, offset: Int,
         sigmaSpacing: SigmaSpacing = .timesteps, sigmaMin: Double? = nil, sigmaMax: Double? = nil,
         finalSigma: FinalSigma = .zero, zeroSNRFloor: Bool) {
        let ac = zeroSNRFloor ? schedule.alphasCumprodForSigmas : schedule.alphasCumprodF
        let table = ac.map { ((1 - $0) / $0).squareRoot() }
        timesteps = spacing.continuous(steps: n, trainSteps: schedule.numTrainTimesteps, offset: offset)
        let tableD = table.map(Double.init)
        var sig = timesteps.map { Reference.interp(Double($0), tableD) }
        if sigmaSpacing != .timesteps {
            let logSigmas = table.map { Foundation.log($0) }
            sig = sigmaSpacing.sigmas(min: sigmaMin ?? sig[sig.count - 1], max: sigmaMax ?? sig[0], count: n)
            timesteps = sig.map { Float(Reference.sigmaToT($0, logSigmas: logSigmas)) }
        }
        let last: Float = finalSigma == .zero ? 0 : ((1 - ac[0]) / ac[0]).squareRoot()
        sigmas = sig.map { Float($0) } + [last]
    }

    /// Standard deviation of x_T: σ_max, or √(σ_max² + 1) for "leading" spacing (diffusers).
    static func initNoiseSigma(_ sigmas: [Float], spacing: TimestepSpacing) -> Float {
        let m = sigmas.max() ?? 1
        return spacing == .leading ? (m * m + 1).squareRoot() : m
    }
}

extension SchedulerConfig {
    /// The σ spacing the config asks for (`use_karras_sigmas`, `use_exponential_sigmas`, else the
    /// timesteps' own σ); beta sigmas are refused. Shared by the σ-based samplers.
    func sigmaSpacing() throws -> SigmaSpacing {
        if try flag("use_beta_sigmas") { throw bad("use_beta_sigmas", "beta sigmas are not supported") }
        return try flag("use_karras_sigmas") ? .karras : (try flag("use_exponential_sigmas") ? .exponential : .timesteps)
    }
}
