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
        x.conv2d(weight.materialized(), bias: bias, stride: stride, padding: padding, dilation: dilation, groups: groups)
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

/// Transposed 1D convolution as `torch.nn.ConvTranspose1d`. x [N, Cin, L] -> [N, Cout, Lo],
/// Lo = (L − 1)·stride − 2·padding + (k − 1) + 1 + outputPadding.
public final class ConvTranspose1d: Module {
    public let weight: Tensor  // [Cin, Cout/groups, k]
    public let bias: Tensor?
    public let stride: Int, padding: Int, outputPadding: Int, groups: Int

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                outputPadding: Int = 0, groups: Int = 1, bias: Bool = true) {
        precondition(inChannels % groups == 0 && outChannels % groups == 0,
                     "ConvTranspose1d(\(inChannels), \(outChannels)): groups \(groups) must divide both")
        self.stride = stride; self.padding = padding; self.outputPadding = outputPadding; self.groups = groups
        // PyTorch computes fan_in from weight.size(1) for transposed convolutions too.
        let b = NNInit.bound(fanIn: outChannels / groups * kernelSize)
        weight = NNInit.uniform([inChannels, outChannels / groups, kernelSize], bound: b)
        self.bias = bias ? NNInit.uniform([outChannels], bound: b) : nil
    }

    public var inChannels: Int { weight.shape[0] }
    public var outChannels: Int { weight.shape[1] * groups }

    public func visit(_ v: inout ModuleVisitor) {
        v("weight", weight)
        v("bias", bias)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        x.convTranspose1d(weight, bias: bias, stride: stride, padding: padding, outputPadding: outputPadding, groups: groups)
    }
}

/// Transposed 2D convolution as `torch.nn.ConvTranspose2d` (square kernel). x [N, Cin, H, W] -> [N, Cout, Ho, Wo].
public final class ConvTranspose2d: Module {
    public let weight: Tensor  // [Cin, Cout/groups, k, k]
    public let bias: Tensor?
    public let stride: Int, padding: Int, outputPadding: Int, groups: Int

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                outputPadding: Int = 0, groups: Int = 1, bias: Bool = true) {
        precondition(inChannels % groups == 0 && outChannels % groups == 0,
                     "ConvTranspose2d(\(inChannels), \(outChannels)): groups \(groups) must divide both")
        self.stride = stride; self.padding = padding; self.outputPadding = outputPadding; self.groups = groups
        let b = NNInit.bound(fanIn: outChannels / groups * kernelSize * kernelSize)
        weight = NNInit.uniform([inChannels, outChannels / groups, kernelSize, kernelSize], bound: b)
        self.bias = bias ? NNInit.uniform([outChannels], bound: b) : nil
    }

    public func visit(_ v: inout ModuleVisitor) {
        v("weight", weight)
        v("bias", bias)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        x.convTranspose2d(weight, bias: bias, stride: (stride, stride), padding: (padding, padding),
                          outputPadding: (outputPadding, outputPadding), groups: groups)
    }
}

extension ConvTranspose1d: ConvolutionLayer {}
extension ConvTranspose2d: ConvolutionLayer {}
