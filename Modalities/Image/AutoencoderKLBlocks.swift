import Tensor
import NN

// The two halves of diffusers' AutoencoderKL (`diffusers.models.autoencoders.vae.Encoder` and
// `Decoder`) and their blocks. No time embedding anywhere: every resnet has temb_channels None.
// Resnets and norms use eps 1e-6; the last activation is always SiLU (act_fn is the resnets').

/// diffusers' `DownEncoderBlock2D`: resnets, then a stride-2 conv with padding 0 after a
/// (0, 1, 0, 1) pad (`Downsample(padding: 0)`), except in the last block.
/// x [N, Cin, H, W] -> [N, Cout, H/2, W/2] (H, W without the downsampler).
final class DownEncoderBlock2D: Module {
    let resnets: [ResnetBlock]
    let downsampler: Downsample?

    init(layers: Int, inChannels: Int, outChannels: Int, addDownsample: Bool, groups: Int, act: Activation) {
        resnets = (0..<layers).map { i in
            ResnetBlock(inChannels: i == 0 ? inChannels : outChannels, outChannels: outChannels, tembChannels: nil,
                        groups: groups, eps: 1e-6, act: act)
        }
        downsampler = addDownsample ? Downsample(channels: outChannels, useConv: true, outChannels: outChannels, padding: 0) : nil
    }

    func visit(_ v: inout ModuleVisitor) {
        v("resnets", resnets)
        if let downsampler { v("downsamplers", [downsampler]) }
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = x
        for r in resnets { h = r(h, temb: nil) }
        return downsampler.map { $0(h) } ?? h
    }
}

/// diffusers' `UpDecoderBlock2D`: resnets (layers_per_block + 1 of them in the decoder), then
/// nearest 2× and a 3×3 conv, except in the last block. x [N, Cin, h, w] -> [N, Cout, 2h, 2w].
final class UpDecoderBlock2D: Module {
    let resnets: [ResnetBlock]
    let upsampler: Upsample?

    init(layers: Int, inChannels: Int, outChannels: Int, addUpsample: Bool, groups: Int, act: Activation) {
        resnets = (0..<layers).map { i in
            ResnetBlock(inChannels: i == 0 ? inChannels : outChannels, outChannels: outChannels, tembChannels: nil,
                        groups: groups, eps: 1e-6, act: act)
        }
        upsampler = addUpsample ? Upsample(channels: outChannels, useConv: true, outChannels: outChannels) : nil
    }

    func visit(_ v: inout ModuleVisitor) {
        v("resnets", resnets)
        if let upsampler { v("upsamplers", [upsampler]) }
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = x
        for r in resnets { h = r(h, temb: nil) }
        return upsampler.map { $0(h) } ?? h
    }
}

/// The VAE's UNetMidBlock2D: resnet, single-head self-attention over all pixels (group norm,
/// biases, residual; eps 1e-6) when `mid_block_add_attention`, resnet.
func autoencoderMidBlock(channels c: Int, groups: Int, act: Activation, addAttention: Bool) -> UNetMidBlock2D {
    UNetMidBlock2D(
        resnets: (0..<2).map { _ in ResnetBlock(inChannels: c, outChannels: c, tembChannels: nil, groups: groups, eps: 1e-6, act: act) },
        attentions: [addAttention ? Attention(queryDim: c, heads: 1, dimHead: c, bias: true, normNumGroups: groups, eps: 1e-6,
                                              residualConnection: true) : nil])
}

/// diffusers' VAE `Encoder` (double_z): image [N, Cin, H, W] -> moments [N, 2·latent, H/f, W/f],
/// f = 2^(levels − 1); the first `latent` channels are the mean, the rest the log-variance.
///
///     h = conv_in(x); h = down_blocks(h); h = mid_block(h)
///     moments = conv_out(silu(conv_norm_out(h)))
final class AutoencoderEncoder: Module {
    let convIn: Conv2d
    let downBlocks: [DownEncoderBlock2D]
    let midBlock: UNetMidBlock2D
    let convNormOut: GroupNorm
    let convOut: Conv2d

    init(_ c: AutoencoderKLConfig) {
        let ch = c.blockOutChannels
        convIn = Conv2d(c.inChannels, ch[0], kernelSize: 3, padding: 1)
        downBlocks = ch.indices.map { i in
            DownEncoderBlock2D(layers: c.layersPerBlock, inChannels: i == 0 ? ch[0] : ch[i - 1], outChannels: ch[i],
                               addDownsample: i < ch.count - 1, groups: c.normNumGroups, act: c.actFn)
        }
        midBlock = autoencoderMidBlock(channels: ch[ch.count - 1], groups: c.normNumGroups, act: c.actFn,
                                       addAttention: c.midBlockAddAttention)
        convNormOut = GroupNorm(groups: c.normNumGroups, channels: ch[ch.count - 1], eps: 1e-6)
        convOut = Conv2d(ch[ch.count - 1], 2 * c.latentChannels, kernelSize: 3, padding: 1)
    }

    func visit(_ v: inout ModuleVisitor) {
        v("conv_in", convIn)
        v("down_blocks", downBlocks)
        v("mid_block", midBlock)
        v("conv_norm_out", convNormOut)
        v("conv_out", convOut)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = convIn(x)
        for b in downBlocks { h = b(h) }
        h = midBlock(h, temb: nil)
        return convOut(convNormOut(h, then: .silu))
    }
}

/// diffusers' VAE `Decoder` (norm_type "group"): latent [N, latent, h, w] -> image [N, Cout, h·f, w·f].
///
///     h = conv_in(z); h = mid_block(h); h = up_blocks(h)     (widths reversed)
///     image = conv_out(silu(conv_norm_out(h)))
final class AutoencoderDecoder: Module {
    let convIn: Conv2d
    let midBlock: UNetMidBlock2D
    let upBlocks: [UpDecoderBlock2D]
    let convNormOut: GroupNorm
    let convOut: Conv2d

    init(_ c: AutoencoderKLConfig) {
        let rev = Array(c.blockOutChannels.reversed())
        convIn = Conv2d(c.latentChannels, rev[0], kernelSize: 3, padding: 1)
        midBlock = autoencoderMidBlock(channels: rev[0], groups: c.normNumGroups, act: c.actFn, addAttention: c.midBlockAddAttention)
        upBlocks = rev.indices.map { i in
            UpDecoderBlock2D(layers: c.layersPerBlock + 1, inChannels: i == 0 ? rev[0] : rev[i - 1], outChannels: rev[i],
                             addUpsample: i < rev.count - 1, groups: c.normNumGroups, act: c.actFn)
        }
        convNormOut = GroupNorm(groups: c.normNumGroups, channels: rev[rev.count - 1], eps: 1e-6)
        convOut = Conv2d(rev[rev.count - 1], c.outChannels, kernelSize: 3, padding: 1)
    }

    func visit(_ v: inout ModuleVisitor) {
        v("conv_in", convIn)
        v("mid_block", midBlock)
        v("up_blocks", upBlocks)
        v("conv_norm_out", convNormOut)
        v("conv_out", convOut)
    }

    func callAsFunction(_ z: Tensor) -> Tensor {
        var h = midBlock(convIn(z), temb: nil)
        for b in upBlocks { h = b(h) }
        return convOut(convNormOut(h).silu())
    }
}
