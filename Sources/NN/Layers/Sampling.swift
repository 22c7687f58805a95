import Tensor

/// diffusers' `Downsample1D`/`Downsample2D`: a strided 3×3 conv (stride 2, `padding`; with
/// padding 0 the input is first padded by one on the right/bottom, as diffusers does), or a
/// 2× average pool when `useConv` is false. x [N, C, *S] -> [N, Cout, *S/2].
/// The conv is stored as `conv`, whatever diffusers' `name` argument was (`name: "conv"` also
/// registers it as `Conv2d_0`; the loader accepts that name).
public final class Downsample: Module {
    public let dims: Int
    public let conv: (any ConvolutionLayer)?
    public let padding: Int

    public init(dims: Int = 2, channels: Int, useConv: Bool, outChannels: Int? = nil, padding: Int = 1,
                kernelSize: Int = 3, bias: Bool = true) {
        self.dims = dims
        self.padding = padding
        let out = outChannels ?? channels
        if useConv {
            conv = makeConv(dims: dims, channels, out, kernelSize: kernelSize, stride: 2, padding: padding, bias: bias)
        } else {
            precondition(out == channels, "Downsample without conv keeps the channels (\(channels) != \(out))")
            conv = nil
        }
    }

    public func visit(_ v: inout ModuleVisitor) { v("conv", conv) }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        guard let conv else { return x.avgPool(kernel: [Int](repeating: 2, count: dims)) }
        let p = padding == 0 ? x.padded([(Int, Int)](repeating: (0, 1), count: dims)) : x
        return conv(p)
    }
}

/// diffusers' `Upsample1D`/`Upsample2D`: nearest 2× (or to `size`), then a 3×3 conv when
/// `useConv`; or, with `useConvTranspose`, one transposed conv (kernel 4, stride 2, padding 1)
/// in place of both. x [N, C, *S] -> [N, Cout, *2S].
public final class Upsample: Module {
    public let dims: Int
    public let conv: (any ConvolutionLayer)?
    public let useConvTranspose: Bool
    public let name: String

    public init(dims: Int = 2, channels: Int, useConv: Bool, useConvTranspose: Bool = false, outChannels: Int? = nil,
                name: String = "conv", kernelSize: Int = 3, padding: Int = 1, bias: Bool = true) {
        self.dims = dims
        self.name = name
        self.useConvTranspose = useConvTranspose
        let out = outChannels ?? channels
        if useConvTranspose {
            precondition(dims == 1 || dims == 2, "transposed convolutions of rank \(dims) are not supported")
            conv = dims == 1 ? ConvTranspose1d(channels, out, kernelSize: 4, stride: 2, padding: 1)
                             : ConvTranspose2d(channels, out, kernelSize: 4, stride: 2, padding: 1)
        } else {
            conv = useConv ? makeConv(dims: dims, channels, out, kernelSize: kernelSize, padding: padding, bias: bias) : nil
        }
    }

    public func visit(_ v: inout ModuleVisitor) { v(name, conv) }

    public func callAsFunction(_ x: Tensor, size: [Int]? = nil) -> Tensor {
        if useConvTranspose { return conv!(x) }
        let up = size.map { x.upsampleNearest(size: $0) } ?? x.upsampleNearest(scale: 2)
        return conv.map { $0(up) } ?? up
    }
}
