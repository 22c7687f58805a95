import Tensor
import NN

// The blocks of diffusers' UNet1DModel (unet_1d_blocks.py), with its parameter names.
// Every down block returns one skip state; up blocks take one each, from the end.

protocol UNet1DDownBlock: Module {
    /// x: [N, Cin, L], temb: [N, T] -> (h [N, Cout, L'], skip state)
    func callAsFunction(_ x: Tensor, temb: Tensor) -> (Tensor, skip: Tensor)
}

protocol UNet1DMidBlock: Module {
    func callAsFunction(_ x: Tensor, temb: Tensor) -> Tensor
}

protocol UNet1DUpBlock: Module {
    /// x: [N, C, L], skip: [N, Cskip, L] -> [N, Cout, L']
    func callAsFunction(_ x: Tensor, skip: Tensor, temb: Tensor) -> Tensor
}

protocol UNet1DOutBlock: Module {
    func callAsFunction(_ x: Tensor, temb: Tensor) -> Tensor
}

// MARK: Dance Diffusion layers

/// The fixed resampling kernels of diffusers' `Downsample1d`/`Upsample1d`.
public enum ResampleKernel1D: String, Sendable, CaseIterable {
    case linear, cubic, lanczos3

    public var taps: [Float] {
        switch self {
        case .linear: return [1 / 8, 3 / 8, 3 / 8, 1 / 8]
        case .cubic:
            return [-0.01171875, -0.03515625, 0.11328125, 0.43359375, 0.43359375, 0.11328125, -0.03515625, -0.01171875]
        case .lanczos3:
            return [0.003689131001010537, 0.015056144446134567, -0.03399861603975296, -0.066637322306633,
                    0.13550527393817902, 0.44638532400131226, 0.44638532400131226, 0.13550527393817902,
                    -0.066637322306633, -0.03399861603975296, 0.015056144446134567, 0.003689131001010537]
        }
    }
}

/// diffusers' `Downsample1d`: reflection padding by K/2 − 1, then the fixed kernel on each
/// channel alone with stride 2 (diffusers builds a diagonal [C, C, K] weight; a per-channel
/// filter is the same sums without the zeros). x [N, C, L] -> [N, C, L/2].
/// The kernel is a buffer in diffusers' state dict (`down.kernel`), so it is loaded and saved,
/// never trained.
final class KernelDownsample1d: Module {
    let kernel: Tensor  // [K]

    init(_ k: ResampleKernel1D) {
        kernel = Tensor(shape: [k.taps.count], scalars: k.taps)
    }

    func visit(_ v: inout ModuleVisitor) { v("kernel", kernel) }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let (n, c) = (x.shape[0], x.shape[1]), k = kernel.count, pad = k / 2 - 1
        let p = x.reflectPadded(left: pad, right: pad)
        // [N, C, L + 2 pad] -> [(N C), 1, L + 2 pad], one filter for every row
        let y = p.reshaped([n * c, 1, p.shape[2]]).conv1d(kernel.reshaped([1, 1, k]), stride: 2)
        return y.reshaped([n, c, y.shape[2]])
    }
}

/// diffusers' `Upsample1d`: reflection padding by (K/2 − 1 + 1)/2, then a stride-2 transposed
/// convolution with 2 × the kernel per channel and padding 2(K/2 − 1) + 1. x [N, C, L] -> [N, C, 2L].
final class KernelUpsample1d: Module {
    let kernel: Tensor  // [K], already doubled as diffusers stores it

    init(_ k: ResampleKernel1D) {
        kernel = Tensor(shape: [k.taps.count], scalars: k.taps.map { $0 * 2 })
    }

    func visit(_ v: inout ModuleVisitor) { v("kernel", kernel) }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let (n, c) = (x.shape[0], x.shape[1]), k = kernel.count, pad = k / 2 - 1
        let p = x.reflectPadded(left: (pad + 1) / 2, right: (pad + 1) / 2)
        // [(N C), 1, L'] -> [(N C), 1, 2L]
        let y = p.reshaped([n * c, 1, p.shape[2]]).convTranspose1d(kernel.reshaped([1, 1, k]), stride: 2, padding: 2 * pad + 1)
        return y.reshaped([n, c, y.shape[2]])
    }
}

/// diffusers' `ResConvBlock`: conv5 → GroupNorm(1) → GELU → conv5 (→ GroupNorm(1) → GELU unless
/// last), plus the input (through a bias-free 1×1 conv when the width changes).
final class ResConvBlock: Module {
    let convSkip: Conv1d?
    let conv1: Conv1d, groupNorm1: GroupNorm
    let conv2: Conv1d, groupNorm2: GroupNorm?

    init(_ inChannels: Int, _ midChannels: Int, _ outChannels: Int, isLast: Bool = false) {
        convSkip = inChannels != outChannels ? Conv1d(inChannels, outChannels, kernelSize: 1, bias: false) : nil
        conv1 = Conv1d(inChannels, midChannels, kernelSize: 5, padding: 2)
        groupNorm1 = GroupNorm(groups: 1, channels: midChannels)
        conv2 = Conv1d(midChannels, outChannels, kernelSize: 5, padding: 2)
        groupNorm2 = isLast ? nil : GroupNorm(groups: 1, channels: outChannels)
    }

    func visit(_ v: inout ModuleVisitor) {
        v("conv_skip", convSkip)
        v("conv_1", conv1)
        v("group_norm_1", groupNorm1)
        v("conv_2", conv2)
        v("group_norm_2", groupNorm2)
    }

    /// x: [N, Cin, L] -> [N, Cout, L]
    func callAsFunction(_ x: Tensor) -> Tensor {
        let residual = convSkip.map { $0(x) } ?? x
        var h = conv2(groupNorm1(conv1(x)).gelu())
        if let groupNorm2 { h = groupNorm2(h).gelu() }
        return h + residual
    }
}

/// diffusers' `SelfAttention1d`: GroupNorm(1), `heads` heads over the length, a residual.
/// softmax((q/d^¼)(k/d^¼)ᵀ) is computed as softmax(q kᵀ/√d): equal in exact arithmetic.
final class SelfAttention1d: Module {
    let groupNorm: GroupNorm
    let query: Linear, key: Linear, value: Linear, projAttn: Linear
    let heads: Int

    init(_ channels: Int, heads: Int) {
        precondition(heads >= 1 && channels % heads == 0, "SelfAttention1d: \(heads) heads for width \(channels)")
        groupNorm = GroupNorm(groups: 1, channels: channels)
        query = Linear(channels, channels)
        key = Linear(channels, channels)
        value = Linear(channels, channels)
        projAttn = Linear(channels, channels)
        self.heads = heads
    }

    /// diffusers' head count: width / 32.
    convenience init(_ channels: Int) { self.init(channels, heads: channels / 32) }

    func visit(_ v: inout ModuleVisitor) {
        v("group_norm", groupNorm)
        v("query", query)
        v("key", key)
        v("value", value)
        v("proj_attn", projAttn)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        // x: [B, C, L] -> [B, L, C]
        let h = groupNorm(x).transposed(1, 2)
        let d = Float(x.shape[1] / heads)
        let o = Tensor.multiHeadAttention(query: query(h), key: key(h), value: value(h), heads: heads,
                                          scale: 1 / d.squareRoot())
        // [B, L, C] -> [B, C, L]
        return projAttn(o).transposed(1, 2) + x
    }
}

// MARK: Dance Diffusion blocks

/// DownBlock1D, AttnDownBlock1D and DownBlock1DNoSkip: (cubic downsample,) three ResConv
/// blocks (each followed by attention in the Attn variant); the output is also the skip.
/// DownBlock1DNoSkip first concatenates the time features, broadcast over the length.
final class ResConvDownBlock1D: UNet1DDownBlock {
    let down: KernelDownsample1d?
    let resnets: [ResConvBlock]
    let attentions: [SelfAttention1d]
    let concatenatesTime: Bool

    init(type: UNet1DConfig.DownBlockType, inChannels: Int, outChannels: Int) {
        precondition(type != .downResnetBlock1D, "DownResnetBlock1D is ResnetDownBlock1D")
        let mid = outChannels
        down = type == .downBlock1DNoSkip ? nil : KernelDownsample1d(.cubic)
        resnets = [ResConvBlock(inChannels, mid, mid), ResConvBlock(mid, mid, mid), ResConvBlock(mid, mid, outChannels)]
        attentions = type == .attnDownBlock1D ? [SelfAttention1d(mid), SelfAttention1d(mid), SelfAttention1d(outChannels)] : []
        concatenatesTime = type == .downBlock1DNoSkip
    }

    func visit(_ v: inout ModuleVisitor) {
        v("down", down)
        v("resnets", resnets)
        v("attentions", attentions)
    }

    func callAsFunction(_ x: Tensor, temb: Tensor) -> (Tensor, skip: Tensor) {
        var h = x
        if concatenatesTime {
            // [N, C, L] ++ temb [N, T] -> [N, T, L] => [N, C + T, L]
            let t = temb.unsqueezed(2).broadcast(to: [x.shape[0], temb.shape[1], x.shape[2]])
            h = Tensor.concat([h, t], axis: 1)
        }
        if let down { h = down(h) }
        for (i, r) in resnets.enumerated() {
            h = r(h)
            if !attentions.isEmpty { h = attentions[i](h) }
        }
        return (h, h)
    }
}

/// UNetMidBlock1D: cubic downsample, six (ResConv, attention) pairs, cubic upsample.
final class ResConvMidBlock1D: UNet1DMidBlock {
    let down: KernelDownsample1d
    let resnets: [ResConvBlock]
    let attentions: [SelfAttention1d]
    let up: KernelUpsample1d

    init(inChannels: Int, midChannels: Int, outChannels: Int) {
        down = KernelDownsample1d(.cubic)
        resnets = [ResConvBlock(inChannels, midChannels, midChannels)]
            + (0..<4).map { _ in ResConvBlock(midChannels, midChannels, midChannels) }
            + [ResConvBlock(midChannels, midChannels, outChannels)]
        attentions = (0..<5).map { _ in SelfAttention1d(midChannels) } + [SelfAttention1d(outChannels)]
        up = KernelUpsample1d(.cubic)
    }

    func visit(_ v: inout ModuleVisitor) {
        v("down", down)
        v("attentions", attentions)
        v("resnets", resnets)
        v("up", up)
    }

    func callAsFunction(_ x: Tensor, temb: Tensor) -> Tensor {
        var h = down(x)
        for (a, r) in zip(attentions, resnets) { h = a(r(h)) }
        return up(h)
    }
}

/// UpBlock1D, AttnUpBlock1D and UpBlock1DNoSkip: concatenate the skip, three ResConv blocks
/// (attention after each in the Attn variant; the NoSkip variant's last block ends without
/// norm and GELU), then a cubic upsample except in the NoSkip variant.
final class ResConvUpBlock1D: UNet1DUpBlock {
    let resnets: [ResConvBlock]
    let attentions: [SelfAttention1d]
    let up: KernelUpsample1d?

    init(type: UNet1DConfig.UpBlockType, inChannels: Int, outChannels: Int) {
        precondition(type != .upResnetBlock1D, "UpResnetBlock1D is ResnetUpBlock1D")
        let mid = type == .attnUpBlock1D ? outChannels : inChannels
        resnets = [ResConvBlock(2 * inChannels, mid, mid), ResConvBlock(mid, mid, mid),
                   ResConvBlock(mid, mid, outChannels, isLast: type == .upBlock1DNoSkip)]
        attentions = type == .attnUpBlock1D ? [SelfAttention1d(mid), SelfAttention1d(mid), SelfAttention1d(outChannels)] : []
        up = type == .upBlock1DNoSkip ? nil : KernelUpsample1d(.cubic)
    }

    func visit(_ v: inout ModuleVisitor) {
        v("resnets", resnets)
        v("attentions", attentions)
        v("up", up)
    }

    func callAsFunction(_ x: Tensor, skip: Tensor, temb: Tensor) -> Tensor {
        // [N, C, L] ++ [N, Cskip, L] -> [N, C + Cskip, L]
        var h = Tensor.concat([x, skip], axis: 1)
        for (i, r) in resnets.enumerated() {
            h = r(h)
            if !attentions.isEmpty { h = attentions[i](h) }
        }
        return up.map { $0(h) } ?? h
    }
}

// MARK: RL / Diffuser blocks

/// DownResnetBlock1D: 1 + layers residual temporal blocks; the result is the skip; then a
/// strided conv (kernel 3, stride 2, padding 1) when downsampling.
final class ResnetDownBlock1D: UNet1DDownBlock {
    let resnets: [ResidualTemporalBlock1D]
    let downsample: Downsample?

    init(layers: Int, inChannels: Int, outChannels: Int, tembChannels: Int, addDownsample: Bool) {
        resnets = [ResidualTemporalBlock1D(inChannels, outChannels, embedDim: tembChannels)]
            + (0..<layers).map { _ in ResidualTemporalBlock1D(outChannels, outChannels, embedDim: tembChannels) }
        downsample = addDownsample ? Downsample(dims: 1, channels: outChannels, useConv: true, padding: 1) : nil
    }

    func visit(_ v: inout ModuleVisitor) {
        v("resnets", resnets)
        v("downsample", downsample)
    }

    func callAsFunction(_ x: Tensor, temb: Tensor) -> (Tensor, skip: Tensor) {
        var h = x
        for r in resnets { h = r(h, temb: temb) }
        return (downsample.map { $0(h) } ?? h, h)
    }
}

/// MidResTemporalBlock1D: 1 + layers residual temporal blocks, then a strided conv when
/// `downsample_each_block` (diffusers never asks it to upsample).
final class ResTemporalMidBlock1D: UNet1DMidBlock {
    let resnets: [ResidualTemporalBlock1D]
    let downsample: Downsample?

    init(layers: Int, inChannels: Int, outChannels: Int, embedDim: Int, addDownsample: Bool) {
        resnets = [ResidualTemporalBlock1D(inChannels, outChannels, embedDim: embedDim)]
            + (0..<layers).map { _ in ResidualTemporalBlock1D(outChannels, outChannels, embedDim: embedDim) }
        downsample = addDownsample ? Downsample(dims: 1, channels: outChannels, useConv: true, padding: 1) : nil
    }

    func visit(_ v: inout ModuleVisitor) {
        v("resnets", resnets)
        v("downsample", downsample)
    }

    func callAsFunction(_ x: Tensor, temb: Tensor) -> Tensor {
        var h = x
        for r in resnets { h = r(h, temb: temb) }
        return downsample.map { $0(h) } ?? h
    }
}

/// ValueFunctionMidBlock1D: C -> C/2 -> downsample -> C/4 -> downsample.
final class ValueFunctionMidBlock1D: UNet1DMidBlock {
    let res1: ResidualTemporalBlock1D, down1: Downsample
    let res2: ResidualTemporalBlock1D, down2: Downsample

    init(inChannels: Int, outChannels: Int, embedDim: Int) {
        res1 = ResidualTemporalBlock1D(inChannels, inChannels / 2, embedDim: embedDim)
        down1 = Downsample(dims: 1, channels: outChannels / 2, useConv: true, padding: 1)
        res2 = ResidualTemporalBlock1D(inChannels / 2, inChannels / 4, embedDim: embedDim)
        down2 = Downsample(dims: 1, channels: outChannels / 4, useConv: true, padding: 1)
    }

    func visit(_ v: inout ModuleVisitor) {
        v("res1", res1)
        v("down1", down1)
        v("res2", res2)
        v("down2", down2)
    }

    func callAsFunction(_ x: Tensor, temb: Tensor) -> Tensor {
        down2(res2(down1(res1(x, temb: temb)), temb: temb))
    }
}

/// UpResnetBlock1D: concatenate the skip, 1 + layers residual temporal blocks, then a
/// transposed conv (kernel 4, stride 2, padding 1) when upsampling.
final class ResnetUpBlock1D: UNet1DUpBlock {
    let resnets: [ResidualTemporalBlock1D]
    let upsample: Upsample?

    init(layers: Int, inChannels: Int, outChannels: Int, tembChannels: Int, addUpsample: Bool) {
        resnets = [ResidualTemporalBlock1D(2 * inChannels, outChannels, embedDim: tembChannels)]
            + (0..<layers).map { _ in ResidualTemporalBlock1D(outChannels, outChannels, embedDim: tembChannels) }
        upsample = addUpsample ? Upsample(dims: 1, channels: outChannels, useConv: false, useConvTranspose: true) : nil
    }

    func visit(_ v: inout ModuleVisitor) {
        v("resnets", resnets)
        v("upsample", upsample)
    }

    func callAsFunction(_ x: Tensor, skip: Tensor, temb: Tensor) -> Tensor {
        // [N, C, L] ++ [N, Cskip, L] -> [N, C + Cskip, L]
        var h = Tensor.concat([x, skip], axis: 1)
        for r in resnets { h = r(h, temb: temb) }
        return upsample.map { $0(h) } ?? h
    }
}

/// OutConv1DBlock: conv5 → GroupNorm → act → 1×1 conv to the output channels.
final class OutConv1DBlock: UNet1DOutBlock {
    let conv1: Conv1d, norm: GroupNorm, conv2: Conv1d
    let act: Activation

    init(groups: Int, outChannels: Int, embedDim: Int, act: Activation) {
        conv1 = Conv1d(embedDim, embedDim, kernelSize: 5, padding: 2)
        norm = GroupNorm(groups: groups, channels: embedDim)
        conv2 = Conv1d(embedDim, outChannels, kernelSize: 1)
        self.act = act
    }

    func visit(_ v: inout ModuleVisitor) {
        v("final_conv1d_1", conv1)
        v("final_conv1d_gn", norm)
        v("final_conv1d_2", conv2)
    }

    func callAsFunction(_ x: Tensor, temb: Tensor) -> Tensor { conv2(act(norm(conv1(x)))) }
}

/// OutValueFunctionBlock: flatten, append the time embedding, Linear → act → Linear to one
/// value per sample. x [N, C, L] with C·L = fc_dim, temb [N, T] -> [N, 1].
final class OutValueFunctionBlock: UNet1DOutBlock {
    let linear1: Linear, linear2: Linear
    let act: Activation
    let fcDim: Int

    init(fcDim: Int, embedDim: Int, act: Activation) {
        linear1 = Linear(fcDim + embedDim, fcDim / 2)
        linear2 = Linear(fcDim / 2, 1)
        self.act = act
        self.fcDim = fcDim
    }

    func visit(_ v: inout ModuleVisitor) {
        // final_block = [Linear, activation, Linear]: index 1 has no parameters.
        v("final_block", [linear1, nil, linear2] as [(any Module)?])
    }

    func callAsFunction(_ x: Tensor, temb: Tensor) -> Tensor {
        let n = x.shape[0]
        precondition(x.count / n == fcDim,
                     "the ValueFunction block takes \(fcDim) features per sample, got \(x.shape): the input is too long for this value function")
        // [N, C, L] -> [N, (C L)] ++ [N, T]
        let h = Tensor.concat([x.reshaped([n, fcDim]), temb], axis: 1)
        return linear2(act(linear1(h)))
    }
}
