import Tensor
import NN

/// The down half of a U-Net level: resnets (each followed by attention in the Attn variant),
/// then a downsampler (strided conv, or a ResNet block with `down`). Covers diffusers'
/// DownBlock2D, AttnDownBlock2D and ResnetDownsampleBlock2D with their parameter names.
final class UNetDownBlock2D: Module {
    let resnets: [ResnetBlock]
    let attentions: [Attention]
    let downConv: Downsample?
    let downResnet: ResnetBlock?

    init(type: UNet2DConfig.DownBlockType, layers: Int, inChannels: Int, outChannels: Int, tembChannels: Int,
         addDownsample: Bool, c: UNet2DConfig, groups: Int) {
        resnets = (0..<layers).map { i in
            ResnetBlock(inChannels: i == 0 ? inChannels : outChannels, outChannels: outChannels, tembChannels: tembChannels,
                        groups: groups, eps: c.normEps, dropout: c.dropout, act: c.actFn,
                        timeEmbeddingNorm: c.resnetTimeScaleShift)
        }
        let headDim = c.attentionHeadDim ?? outChannels
        attentions = type == .attnDownBlock2D ? (0..<layers).map { _ in
            Attention(channels: outChannels, attentionHeadDim: headDim, normNumGroups: groups, eps: c.normEps)
        } : []
        // DownBlock2D always downsamples with a conv, ResnetDownsampleBlock2D with a ResNet,
        // AttnDownBlock2D as `downsample_type` says.
        let useResnet = type == .resnetDownsampleBlock2D || (type == .attnDownBlock2D && c.downsampleType == .resnet)
        downConv = addDownsample && !useResnet
            ? Downsample(channels: outChannels, useConv: true, outChannels: outChannels, padding: c.downsamplePadding) : nil
        downResnet = addDownsample && useResnet
            ? ResnetBlock(inChannels: outChannels, outChannels: outChannels, tembChannels: tembChannels, groups: groups,
                          eps: c.normEps, dropout: c.dropout, act: c.actFn, timeEmbeddingNorm: c.resnetTimeScaleShift, down: true)
            : nil
    }

    func visit(_ v: inout ModuleVisitor) {
        v("resnets", resnets)
        v("attentions", attentions)
        if let d: any Module = downConv ?? downResnet { v("downsamplers", [d]) }
    }

    /// x: [N, Cin, H, W] -> ([N, Cout, H', W'], the skip states for the up path). `hook(h, i)`
    /// runs after layer i (resnet i, and attention i when there is one), before its skip state.
    func callAsFunction(_ x: Tensor, temb: Tensor, hook: ((Tensor, Int) -> Tensor)? = nil) -> (Tensor, [Tensor]) {
        var h = x
        var states: [Tensor] = []
        for (i, r) in resnets.enumerated() {
            h = r(h, temb: temb)
            if !attentions.isEmpty { h = attentions[i](h) }
            if let hook { h = hook(h, i) }
            states.append(h)
        }
        if let downConv { h = downConv(h); states.append(h) }
        if let downResnet { h = downResnet(h, temb: temb); states.append(h) }
        return (h, states)
    }
}

/// diffusers' UNetMidBlock2D: resnet, then (attention, resnet) × layers.
final class UNetMidBlock2D: Module {
    let resnets: [ResnetBlock]
    let attentions: [Attention?]

    init(channels: Int, tembChannels: Int, c: UNet2DConfig, layers: Int = 1) {
        let groups = c.normNumGroups ?? Swift.min(channels / 4, 32)
        // Attention has no group norm with scale-shift time embeddings unless attn_norm_num_groups says so.
        let attnGroups = c.attnNormNumGroups ?? (c.resnetTimeScaleShift == .default ? groups : nil)
        let headDim = c.attentionHeadDim ?? channels
        resnets = (0...layers).map { _ in
            ResnetBlock(inChannels: channels, outChannels: channels, tembChannels: tembChannels, groups: groups,
                        eps: c.normEps, dropout: c.dropout, act: c.actFn, timeEmbeddingNorm: c.resnetTimeScaleShift,
                        outputScaleFactor: c.midBlockScaleFactor)
        }
        attentions = (0..<layers).map { _ in
            c.addAttention
                ? Attention(queryDim: channels, heads: channels / headDim, dimHead: headDim, bias: true,
                            normNumGroups: attnGroups, eps: c.normEps, residualConnection: true,
                            rescaleOutputFactor: c.midBlockScaleFactor)
                : nil
        }
    }

    /// From its parts: one more resnet than attentions (the VAE's encoder and decoder build theirs
    /// so, without a time embedding and with group-normed single-head attention).
    init(resnets: [ResnetBlock], attentions: [Attention?]) {
        precondition(resnets.count == attentions.count + 1, "\(resnets.count) resnets for \(attentions.count) attentions")
        self.resnets = resnets
        self.attentions = attentions
    }

    func visit(_ v: inout ModuleVisitor) {
        v("attentions", attentions)
        v("resnets", resnets)
    }

    /// temb: [N, T], or nil for resnets without a time embedding. `hook(h, i)` runs after resnet i.
    func callAsFunction(_ x: Tensor, temb: Tensor?, hook: ((Tensor, Int) -> Tensor)? = nil) -> Tensor {
        var h = resnets[0](x, temb: temb)
        if let hook { h = hook(h, 0) }
        for (i, (a, r)) in zip(attentions, resnets.dropFirst()).enumerated() {
            if let a { h = a(h) }
            h = r(h, temb: temb)
            if let hook { h = hook(h, i + 1) }
        }
        return h
    }
}

/// The up half of a U-Net level: each resnet takes the running state concatenated with one
/// skip state; attention after each in the Attn variant; then an upsampler (nearest + conv,
/// or a ResNet block with `up`). UpBlock2D, AttnUpBlock2D and ResnetUpsampleBlock2D.
final class UNetUpBlock2D: Module {
    let resnets: [ResnetBlock]
    let attentions: [Attention]
    let upConv: Upsample?
    let upResnet: ResnetBlock?

    init(type: UNet2DConfig.UpBlockType, layers: Int, inChannels: Int, prevOutputChannels: Int, outChannels: Int,
         tembChannels: Int, addUpsample: Bool, c: UNet2DConfig, groups: Int) {
        resnets = (0..<layers).map { i in
            let skip = i == layers - 1 ? inChannels : outChannels
            let input = i == 0 ? prevOutputChannels : outChannels
            return ResnetBlock(inChannels: input + skip, outChannels: outChannels, tembChannels: tembChannels,
                               groups: groups, eps: c.normEps, dropout: c.dropout, act: c.actFn,
                               timeEmbeddingNorm: c.resnetTimeScaleShift)
        }
        let headDim = c.attentionHeadDim ?? outChannels
        attentions = type == .attnUpBlock2D ? (0..<layers).map { _ in
            Attention(channels: outChannels, attentionHeadDim: headDim, normNumGroups: groups, eps: c.normEps)
        } : []
        let useResnet = type == .resnetUpsampleBlock2D || (type == .attnUpBlock2D && c.upsampleType == .resnet)
        upConv = addUpsample && !useResnet ? Upsample(channels: outChannels, useConv: true, outChannels: outChannels) : nil
        upResnet = addUpsample && useResnet
            ? ResnetBlock(inChannels: outChannels, outChannels: outChannels, tembChannels: tembChannels, groups: groups,
                          eps: c.normEps, dropout: c.dropout, act: c.actFn, timeEmbeddingNorm: c.resnetTimeScaleShift, up: true)
            : nil
    }

    func visit(_ v: inout ModuleVisitor) {
        v("resnets", resnets)
        v("attentions", attentions)
        if let u: any Module = upConv ?? upResnet { v("upsamplers", [u]) }
    }

    /// `skips` are consumed from the end, one per resnet. `hook(h, i)` runs after layer i
    /// (resnet i, and attention i when there is one).
    func callAsFunction(_ x: Tensor, skips: inout [Tensor], temb: Tensor, hook: ((Tensor, Int) -> Tensor)? = nil) -> Tensor {
        var h = x
        for (i, r) in resnets.enumerated() {
            // [N, C, H, W] ++ [N, Cskip, H, W] -> [N, C + Cskip, H, W]
            h = r(Tensor.concat([h, skips.removeLast()], axis: 1), temb: temb)
            if !attentions.isEmpty { h = attentions[i](h) }
            if let hook { h = hook(h, i) }
        }
        if let upConv { h = upConv(h) }
        if let upResnet { h = upResnet(h, temb: temb) }
        return h
    }
}
