// PNDM: pseudo numerical methods for diffusion models (pseudo Runge–Kutta warm-up, then
// pseudo linear multistep, "PLMS").
//
// Liu, Ren, Lin & Zhao, "Pseudo Numerical Methods for Diffusion Models on Manifolds",
// ICLR 2022: the transfer φ of eq. 11 and the PLMS combination of eq. 12 (with the 4-step
// Runge–Kutta warm-up of eq. 13 unless `skip_prk_steps`). Reproduces diffusers'
// `PNDMScheduler` (0.42.1) call for call, including its timestep lists.
//
// | symbol        | code        | meaning                                             |
// |---------------|-------------|-----------------------------------------------------|
// | t, t − δ      | `t`, `prev` | from and to training timesteps of one transfer      |
// | ᾱ_t           | `aT`        | cumulative ᾱ (ᾱ_{<0} = 1 or ᾱ_0: `set_alpha_to_one`) |
// | e_i           | `ets`       | recent ε predictions (newest last)                   |
// | e′            | `eps`       | combined ε of this transfer                          |
//
// φ(x_t, e′, t, t−δ) = √(ᾱ_{t−δ}/ᾱ_t) x_t − (ᾱ_{t−δ} − ᾱ_t) e′ / (ᾱ_t √(1 − ᾱ_{t−δ}) + √(ᾱ_t (1 − ᾱ_t) ᾱ_{t−δ}))   (eq. 11)
// PLMS: e′ = (55 e₀ − 59 e₋₁ + 37 e₋₂ − 9 e₋₃)/24 (eq. 12), lower orders while history builds.
//
// Limitations: "sample" prediction is not supported (as in diffusers).

import Foundation
import Tensor

public struct PNDMSampler: Sampler {
    public static let schedulerClass = SchedulerClass.pndm
    public static let predictionTypes: Set<PredictionType> = [.epsilon, .vPrediction]
    public let config: SchedulerConfig
    public let steps: Int
    public let schedule: NoiseSchedule
    public let prediction: PredictionType
    public let skipPRK: Bool
    /// Number of leading pseudo-Runge–Kutta evaluations (0 with `skip_prk_steps`).
    public let prkCount: Int
    public let discreteTimesteps: [Int]
    let finalAlphaCumprod: Float
    public var finalNoiseLevel: Float { (1 - finalAlphaCumprod).squareRoot() }

    public var timesteps: [Float] { discreteTimesteps.map(Float.init) }
    public var initNoiseSigma: Float { 1 }

    public init(config: SchedulerConfig, steps: Int) throws {
        let c = try Self.validate(config, steps: steps)
        self.config = c
        self.steps = steps
        schedule = try c.noiseSchedule()
        prediction = try c.choice("prediction_type", PredictionType.self)
        guard prediction != .sample else { throw c.bad("prediction_type", "PNDM supports \"epsilon\" and \"v_prediction\"") }
        skipPRK = try c.flag("skip_prk_steps")
        guard skipPRK || steps >= 4 else { throw c.bad("num_inference_steps", "the Runge-Kutta warm-up needs at least 4 steps") }
        finalAlphaCumprod = try c.flag("set_alpha_to_one") ? 1 : schedule.alphasCumprodF[0]
        let T = schedule.numTrainTimesteps
        // ascending, as diffusers' `_timesteps`
        let ts: [Int] = Array(try c.choice("timestep_spacing", TimestepSpacing.self)
            .discrete(steps: steps, trainSteps: T, offset: try c.int("steps_offset")).reversed())
        if skipPRK {
            prkCount = 0
            discreteTimesteps = Array((ts.dropLast() + [ts[ts.count - 2], ts[ts.count - 1]]).reversed())
        } else {
            let half = T / steps / 2
            let prk = ts.suffix(4).flatMap { [$0, $0 + half] }.dropLast().flatMap { [$0, $0] }.dropFirst().dropLast()
            prkCount = prk.count
            discreteTimesteps = Array(prk.reversed()) + Array(ts.dropLast(3).reversed())
        }
    }

    /// φ of eq. 11, in diffusers' float32 operation order.
    func transfer(_ x: Tensor, from t: Int, to prev: Int, eps e: Tensor) -> Tensor {
        let ac = schedule.alphasCumprodF
        let aT = ac[t], aPrev = prev >= 0 ? ac[prev] : finalAlphaCumprod
        let bT = 1 - aT, bPrev = 1 - aPrev
        let eps = prediction == .vPrediction ? aT.squareRoot() * e + bT.squareRoot() * x : e
        let cx = (aPrev / aT).squareRoot()
        let denom = aT * bPrev.squareRoot() + (aT * bT * aPrev).squareRoot()
        return cx * x - ((aPrev - aT) * eps) / Tensor(denom)
    }

    public func sample<N: NoiseSource>(from xT: Tensor, startIndex: Int, noise: inout N, denoise: Denoiser,
                                       onStep: ((Int, Tensor) -> Void)?) -> Tensor {
        precondition(startIndex == 0, "PNDM starts with its Runge–Kutta warm-up: it cannot start mid-way (img2img)")
        return GradMode.withoutGrad {
            let T = schedule.numTrainTimesteps
            var ets: [Tensor] = []
            var acc: Tensor? = nil        // Runge–Kutta weighted sum of the four evaluations
            var start: Tensor? = nil      // x at the start of the current RK / first PLMS step
            var x = xT
            for (counter, t) in discreteTimesteps.enumerated() {
                let m = denoise(x, Float(t))
                if counter < prkCount {
                    // 1. pseudo Runge–Kutta (eq. 13): evaluations at t, t − δ/2, t − δ/2, t − δ
                    let prev = t - (counter % 2 == 1 ? 0 : T / steps / 2)
                    let t0 = discreteTimesteps[counter / 4 * 4]
                    var e = m
                    switch counter % 4 {
                    case 0:
                        acc = Float(1.0 / 6.0) * m
                        ets.append(m)
                        start = x
                    case 1, 2:
                        acc = acc! + Float(1.0 / 3.0) * m
                    default:
                        e = acc! + Float(1.0 / 6.0) * m
                        acc = nil
                    }
                    x = transfer(start ?? x, from: t0, to: prev, eps: e)
                } else {
                    // 2. PLMS (eq. 12); diffusers' second call re-evaluates the first step (Heun-like)
                    var from = t, prev = t - T / steps
                    if counter != 1 {
                        ets = Array(ets.suffix(3)) + [m]
                    } else {
                        prev = t
                        from = t + T / steps
                    }
                    var base = x
                    let e: Tensor
                    if ets.count == 1 && counter == 0 {
                        e = m
                        start = x
                    } else if ets.count == 1 && counter == 1 {
                        e = (m + ets[0]) * 0.5
                        base = start!
                        start = nil
                    } else if ets.count == 2 {
                        e = (3 * ets[1] - ets[0]) * 0.5
                    } else if ets.count == 3 {
                        e = (23 * ets[2] - 16 * ets[1] + 5 * ets[0]) / Tensor(12)
                    } else {
                        e = Float(1.0 / 24.0) * (55 * ets[3] - 59 * ets[2] + 37 * ets[1] - 9 * ets[0])
                    }
                    x = transfer(base, from: from, to: prev, eps: e)
                }
                onStep?(counter, x)
            }
            return x
        }
    }
}
