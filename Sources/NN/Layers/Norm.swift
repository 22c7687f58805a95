import Tensor

/// `torch.nn.GroupNorm`: x [N, C, *S], statistics over C/groups channels × S.
public final class GroupNorm: Module {
    public let groups: Int, channels: Int, eps: Float
    public let weight: Tensor?, bias: Tensor?

    public init(groups: Int, channels: Int, eps: Float = 1e-5, affine: Bool = true) {
        precondition(groups >= 1 && channels % groups == 0, "GroupNorm: \(groups) groups do not divide \(channels) channels")
        self.groups = groups; self.channels = channels; self.eps = eps
        weight = affine ? NNInit.constant([channels], 1) : nil
        bias = affine ? NNInit.constant([channels], 0) : nil
    }

    public func visit(_ v: inout ModuleVisitor) {
        v("weight", weight)
        v("bias", bias)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { normalise(x, silu: false) }

    /// `act(self(x))`, SiLU in the same pass as the norm (one read and write of x fewer each way).
    public func callAsFunction(_ x: Tensor, then act: Activation) -> Tensor {
        act.isSiLU ? normalise(x, silu: true) : act(normalise(x, silu: false))
    }

    private func normalise(_ x: Tensor, silu: Bool) -> Tensor {
        precondition(x.rank >= 2 && x.shape[1] == channels, "GroupNorm(\(channels) channels) got \(x.shape)")
        return x.groupNorm(groups: groups, weight: weight, bias: bias, eps: eps, silu: silu)
    }
}

/// `torch.nn.LayerNorm` over the last dim.
public final class LayerNorm: Module {
    public let dim: Int, eps: Float
    public let weight: Tensor?, bias: Tensor?

    public init(_ dim: Int, eps: Float = 1e-5, affine: Bool = true, bias: Bool = true) {
        self.dim = dim; self.eps = eps
        weight = affine ? NNInit.constant([dim], 1) : nil
        self.bias = affine && bias ? NNInit.constant([dim], 0) : nil
    }

    public func visit(_ v: inout ModuleVisitor) {
        v("weight", weight)
        v("bias", bias)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        precondition(x.shape.last == dim, "LayerNorm(\(dim)) got \(x.shape)")
        return x.layerNorm(weight: weight, bias: bias, eps: eps)
    }
}
