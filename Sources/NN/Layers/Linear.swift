import Tensor

/// y = x Wᵀ + b, as `torch.nn.Linear`. x: [..., in] -> [..., out]; weight [out, in].
public final class Linear: Module {
    public let weight: Tensor
    public let bias: Tensor?
    public let inFeatures: Int, outFeatures: Int

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        let b = NNInit.bound(fanIn: inFeatures)
        weight = NNInit.uniform([outFeatures, inFeatures], bound: b)
        self.bias = bias ? NNInit.uniform([outFeatures], bound: b) : nil
    }

    public func visit(_ v: inout ModuleVisitor) {
        v("weight", weight)
        v("bias", bias)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        precondition(x.shape.last == inFeatures, "Linear(\(inFeatures), \(outFeatures)) got input \(x.shape)")
        let y = x.matmul(weight.materialized(), transposeOther: true)
        return bias.map { y + $0 } ?? y
    }
}
