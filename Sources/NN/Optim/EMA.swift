import Foundation
import Tensor

/// Exponential moving average of weights with diffusers' `EMAModel` semantics:
///
///     s = max(0, optimization_step − update_after_step − 1)
///     decay = 0 when s = 0; else 1 − (1 + s/inv_gamma)^(−power) with warm-up,
///             (1 + s)/(10 + s) without; then clamped to [min_decay, decay]
///     shadow ← shadow − (1 − decay)(shadow − param)     (copied when the param is frozen)
public final class EMA {
    public let decay: Double, minDecay: Double
    public let updateAfterStep: Int
    public let useWarmup: Bool
    public let invGamma: Double, power: Double
    public private(set) var optimizationStep = 0
    /// The averaged copies, in the order of the parameters given.
    public let shadow: [Tensor]

    public init(parameters: [Tensor], decay: Double = 0.9999, minDecay: Double = 0, updateAfterStep: Int = 0,
                useWarmup: Bool = false, invGamma: Double = 1, power: Double = 2.0 / 3.0) {
        self.decay = decay; self.minDecay = minDecay; self.updateAfterStep = updateAfterStep
        self.useWarmup = useWarmup; self.invGamma = invGamma; self.power = power
        shadow = parameters.map { $0.copy() }
    }

    /// The decay `step` will use at optimization step `n` (diffusers' `get_decay`).
    public func decay(at n: Int) -> Double {
        let s = max(0, n - updateAfterStep - 1)
        if s <= 0 { return 0 }
        let d = useWarmup ? 1 - pow(1 + Double(s) / invGamma, -power) : (1 + Double(s)) / (10 + Double(s))
        return max(min(d, decay), minDecay)
    }

    /// Moves the shadow weights towards `parameters` (same order as at init).
    public func step(_ parameters: [Tensor]) {
        precondition(parameters.count == shadow.count, "EMA.step: \(parameters.count) parameters, \(shadow.count) shadows")
        optimizationStep += 1
        let oneMinus = Float(1 - decay(at: optimizationStep))
        for (s, p) in zip(shadow, parameters) {
            precondition(s.shape == p.shape, "EMA.step: parameter \(p.shape) vs shadow \(s.shape)")
            if !p.requiresGrad { s.copyFrom(p); continue }
            let ps = SendablePointer(s.data), pp = SendablePointer(p.data)
            Parallel.chunks(s.count, grain: 1 << 14) { a, b in
                for j in a..<b { ps.p[j] -= oneMinus * (ps.p[j] - pp.p[j]) }
            }
        }
    }

    /// Copies the averaged weights into `parameters`.
    public func copy(to parameters: [Tensor]) {
        for (s, p) in zip(shadow, parameters) { p.copyFrom(s) }
    }

    /// Restores the step counter (when resuming; the shadow tensors are loaded by name).
    public func restore(optimizationStep: Int) { self.optimizationStep = optimizationStep }
}
