import Tensor

/// 2D convolution as `torch.nn.Conv2d` (zero padding). x [N, Cin, H, W] -> [N, Cout, Ho, Wo].
public final class Conv2d: Module {
    public let weight: Tensor  // [Cout, Cin/groups, kh, kw]
    public let bias: Tensor?
    public let stride: (Int, Int), padding: (Int, Int), dilation: (Int, Int), groups: Int

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                dilation: Int = 1, groups: Int = 1, bias: Bool = true) {
        precondition(inChannels % groups == 0 && outChannels % groups == 0,
                     "Conv2d(\(inChannels), \(outChannels)): groups \(groups) must divide both")
        self.stride = (stride, stride); self.padding = (padding, padding)
        self.dilation = (dilation, dilation); self.groups = groups
        let b = NNInit.bound(fanIn: inChannels / groups * kernelSize * kernelSize)
        weight = NNInit.uniform([outChannels, inChannels / groups, kernelSize, kernelSize], bound: b)
        self.bias = bias ? NNInit.uniform([outChannels], bound: b) : nil
    }

    public var inChannels: Int { weight.shape[1] * groups }
    public var outChannels: Int { weight.shape[0] }

    public func visit(_ v: inout ModuleVisitor) {
        v("weight", weight)
        v("bias", bias)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        x.conv2d(weight, bias: bias, stride: stride, padding: padding, dilation: dilation, groups: groups)
    }
}

/// 1D convolution as `torch.nn.Conv1d`. x [N, Cin, L] -> [N, Cout, Lo].
public final class Conv1d: Module {
    public let weight: Tensor  // [Cout, Cin/groups, k]
    public let bias: Tensor?
    public let stride: Int, padding: Int, dilation: Int, groups: Int

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                dilation: Int = 1, groups: Int = 1, bias: Bool = true) {
        precondition(inChannels % groups == 0 && outChannels % groups == 0,
                     "Conv1d(\(inChannels), \(outChannels)): groups \(groups) must divide both")
        self.stride = stride; self.padding = padding; self.dilation = dilation; self.groups = groups
        let b = NNInit.bound(fanIn: inChannels / groups * kernelSize)
        weight = NNInit.uniform([outChannels, inChannels / groups, kernelSize], bound: b)
        self.bias = bias ? NNInit.uniform([outChannels], bound: b) : nil
    }

    public var inChannels: Int { weight.shape[1] * groups }
    public var outChannels: Int { weight.shape[0] }

    public func visit(_ v: inout ModuleVisitor) {
        v("weight", weight)
        v("bias", bias)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        x.conv1d(weight, bias: bias, stride: stride, padding: padding, dilation: dilation, groups: groups)
    }
}

/// A convolution of either rank, so 1D and 2D blocks share one implementation.
public protocol ConvolutionLayer: Module {
    func callAsFunction(_ x: Tensor) -> Tensor
}

extension Conv1d: ConvolutionLayer {}
extension Conv2d: ConvolutionLayer {}

/// Conv1d (dims 1) or Conv2d (dims 2) with a square kernel.
func makeConv(dims: Int, _ cin: Int, _ cout: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
              bias: Bool = true) -> any ConvolutionLayer {
    precondition(dims == 1 || dims == 2, "convolutions of rank \(dims) are not supported")
    return dims == 1
        ? Conv1d(cin, cout, kernelSize: kernelSize, stride: stride, padding: padding, bias: bias)
        : Conv2d(cin, cout, kernelSize: kernelSize, stride: stride, padding: padding, bias: bias)
}
