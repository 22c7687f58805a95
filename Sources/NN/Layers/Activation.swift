import Tensor

/// Activation functions by diffusers' `act_fn` names.
public enum Activation: String, Codable, CaseIterable, Sendable {
    case silu, swish, mish, gelu, relu
    /// GELU with the tanh approximation (diffusers' "gelu_tanh" / `approximate="tanh"`).
    case geluTanh = "gelu_tanh"

    /// SiLU under either name.
    public var isSiLU: Bool { self == .silu || self == .swish }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        switch self {
        case .silu, .swish: return x.silu()
        case .mish: return x.mish()
        case .gelu: return x.gelu()
        case .geluTanh: return x.gelu(approximateTanh: true)
        case .relu: return x.relu()
        }
    }
}

/// `torch.nn.Dropout`: active only in training mode; draws from its own seeded stream.
public final class Dropout: Module, TrainingModeAware {
    public let p: Float
    public var isTraining = true
    public var generator: RandomGenerator

    public init(_ p: Float, seed: UInt64 = 0) {
        precondition(p >= 0 && p < 1, "Dropout probability \(p) outside [0, 1)")
        self.p = p
        generator = RandomGenerator(seed: seed)
    }

    public func visit(_ v: inout ModuleVisitor) {}

    public func callAsFunction(_ x: Tensor) -> Tensor {
        x.dropout(p, rng: &generator, training: isTraining)
    }
}

/// `torch.nn.Embedding`: rows of a [count, dim] table, initialised N(0, 1).
public final class Embedding: Module {
    public let weight: Tensor

    public init(_ count: Int, _ dim: Int) { weight = NNInit.normal([count, dim]) }

    public var count: Int { weight.shape[0] }

    public func visit(_ v: inout ModuleVisitor) { v("weight", weight) }

    /// [indices.count, dim]
    public func callAsFunction(_ indices: [Int]) -> Tensor { weight.embedding(indices) }
}
