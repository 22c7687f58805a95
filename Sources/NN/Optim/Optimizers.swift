import Foundation
import Tensor

/// Updates parameters in place from their `grad`. Parameters without a gradient are skipped.
public protocol Optimizer: AnyObject {
    var learningRate: Float { get set }
    /// Number of `step()` calls so far.
    var stepCount: Int { get }
    func step()
    /// Per-parameter state tensors by name, for checkpoints (`stateDict`/`load`).
    func stateDict() -> [String: Tensor]
    func loadState(_ state: [String: Tensor]) throws
}

public struct OptimizerStateError: Error, CustomStringConvertible {
    public let description: String
}

/// AdamW (Loshchilov & Hutter 2019) exactly as `torch.optim.AdamW` (single-tensor path):
///
///     p ← p · (1 − lr·λ)                       decoupled weight decay
///     m ← m + (1 − β₁)(g − m)                  v ← β₂ v + (1 − β₂) g²
///     p ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
public final class AdamW: Optimizer {
    public let parameters: [Tensor]
    public var learningRate: Float
    public let beta1: Float, beta2: Float, eps: Float, weightDecay: Float
    public private(set) var stepCount = 0
    private var m: [Tensor], v: [Tensor]

    public init(_ parameters: [Tensor], learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999,
                eps: Float = 1e-8, weightDecay: Float = 1e-2) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
        m = parameters.map { Tensor.zeros($0.shape) }
        v = parameters.map { Tensor.zeros($0.shape) }
    }

    public func step() {
        stepCount += 1
        let t = Float(stepCount)
        let bc1 = 1 - Foundation.pow(beta1, t)
        let bc2sqrt = (1 - Foundation.pow(beta2, t)).squareRoot()
        let stepSize = learningRate / bc1
        let decay = 1 - learningRate * weightDecay
        let (b1, b2, eps) = (beta1, beta2, self.eps)
        for (i, p) in parameters.enumerated() {
            guard let g = p.grad else { continue }
            precondition(g.shape == p.shape, "AdamW: gradient \(g.shape) for parameter \(p.shape)")
            let pp = SendablePointer(p.data), pg = SendablePointer(g.data)
            let pm = SendablePointer(m[i].data), pv = SendablePointer(v[i].data)
            Parallel.chunks(p.count, grain: 1 << 14) { s, e in
                for j in s..<e {
                    let gj = pg.p[j]
                    var x = pp.p[j] * decay
                    let mj = pm.p[j] + (1 - b1) * (gj - pm.p[j])
                    let vj = b2 * pv.p[j] + (1 - b2) * gj * gj
                    pm.p[j] = mj; pv.p[j] = vj
                    x -= stepSize * mj / (vj.squareRoot() / bc2sqrt + eps)
                    pp.p[j] = x
                }
            }
        }
    }

    public func stateDict() -> [String: Tensor] {
        var d: [String: Tensor] = ["step": Tensor(Float(stepCount))]
        for i in parameters.indices { d["exp_avg.\(i)"] = m[i]; d["exp_avg_sq.\(i)"] = v[i] }
        return d
    }

    public func loadState(_ state: [String: Tensor]) throws {
        guard let s = state["step"] else { throw OptimizerStateError(description: "AdamW state has no 'step'") }
        for i in parameters.indices {
            guard let a = state["exp_avg.\(i)"], let b = state["exp_avg_sq.\(i)"],
                  a.shape == parameters[i].shape, b.shape == parameters[i].shape else {
                throw OptimizerStateError(description: "AdamW state for parameter \(i) \(parameters[i].shape) is missing or mis-shaped")
            }
            m[i].copyFrom(a); v[i].copyFrom(b)
        }
        stepCount = Int(s.item())
    }
}

/// SGD with momentum as `torch.optim.SGD`:
///
///     d = g + λ p;  b ← μ b + (1 − dampening) d  (b = d on the first step);  p ← p − lr · (nesterov ? d + μ b : b)
public final class SGD: Optimizer {
    public let parameters: [Tensor]
    public var learningRate: Float
    public let momentum: Float, dampening: Float, weightDecay: Float, nesterov: Bool
    public private(set) var stepCount = 0
    private var buf: [Tensor]

    public init(_ parameters: [Tensor], learningRate: Float, momentum: Float = 0, dampening: Float = 0,
                weightDecay: Float = 0, nesterov: Bool = false) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.momentum = momentum; self.dampening = dampening; self.weightDecay = weightDecay; self.nesterov = nesterov
        buf = parameters.map { Tensor.zeros($0.shape) }
    }

    public func step() {
        stepCount += 1
        let first = stepCount == 1
        let (mu, damp, wd, lr, nest) = (momentum, dampening, weightDecay, learningRate, nesterov)
        for (i, p) in parameters.enumerated() {
            guard let g = p.grad else { continue }
            let pp = SendablePointer(p.data), pg = SendablePointer(g.data), pb = SendablePointer(buf[i].data)
            Parallel.chunks(p.count, grain: 1 << 14) { s, e in
                for j in s..<e {
                    var d = pg.p[j]
                    if wd != 0 { d += wd * pp.p[j] }
                    if mu != 0 {
                        let b = first ? d : mu * pb.p[j] + (1 - damp) * d
                        pb.p[j] = b
                        d = nest ? d + mu * b : b
                    }
                    pp.p[j] -= lr * d
                }
            }
        }
    }

    public func stateDict() -> [String: Tensor] {
        var d: [String: Tensor] = ["step": Tensor(Float(stepCount))]
        for i in parameters.indices { d["momentum_buffer.\(i)"] = buf[i] }
        return d
    }

    public func loadState(_ state: [String: Tensor]) throws {
        guard let s = state["step"] else { throw OptimizerStateError(description: "SGD state has no 'step'") }
        for i in parameters.indices {
            guard let b = state["momentum_buffer.\(i)"], b.shape == parameters[i].shape else {
                throw OptimizerStateError(description: "SGD state for parameter \(i) \(parameters[i].shape) is missing or mis-shaped")
            }
            buf[i].copyFrom(b)
        }
        stepCount = Int(s.item())
    }
}

/// Scales all gradients so their global L2 norm is at most `maxNorm`, as
/// `torch.nn.utils.clip_grad_norm_` (coefficient maxNorm / (norm + 1e-6), capped at 1).
/// Returns the norm before clipping.
@discardableResult
public func clipGradNorm(_ parameters: [Tensor], maxNorm: Float) -> Float {
    var total = 0.0
    for p in parameters {
        guard let g = p.grad else { continue }
        for j in 0..<g.count { total += Double(g.data[j]) * Double(g.data[j]) }
    }
    let norm = Float(total.squareRoot())
    let coef = maxNorm / (norm + 1e-6)
    if coef < 1 {
        // Gradients are never modified in place (they may be shared): replace them.
        GradMode.withoutGrad {
            for p in parameters { if let g = p.grad { p.grad = g * coef } }
        }
    }
    return norm
}
