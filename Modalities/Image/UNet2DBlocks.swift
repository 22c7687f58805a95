import Tensor
import NN

/// What a U-Net block runs after a resnet: self-attention over the pixels (`Attention`, in
/// UNet2DModel's Attn blocks) or a transformer attending to text states (`Transformer2D`, in
/// UNet2DConditionModel's CrossAttn blocks). x [N, C, H, W] -> [N, C, H, W]; context [N, L, D]
/// (the encoder hidden states) or nil.
protocol UNetAttentionLayer: Module {
    func callAsFunction(_ x: Tensor, context: Tensor?) -> Tensor
}

extension Attention: UNetAttentionLayer {}

/// The down half of a U-Net level: resnets (each followed by attention in the Attn variant),
/// then a downsampler (strided conv, or a ResNet block with `down`). Covers diffusers'
/// DownBlock2D, AttnDownBlock2D and ResnetDownsampleBlock2D with their parameter names, and
/// (with `Transformer2D` attentions) CrossAttnDownBlock2D.
final class UNetDownBlock2D: Module {
    let resnets: [ResnetBlock]
    let attentions: [any UNetAttentionLayer]
    let downConv: Downsample?
    let downResnet: ResnetBlock?

    /// `attentions` is empty or one per resnet.
    init(resnets: [ResnetBlock], attentions: [any UNetAttentionLayer], downConv: Downsample?, downResnet: ResnetBlock? = nil) {
        precondition(attentions.isEmpty || attentions.count == resnets.count, "\(attentions.count) attentions for \(resnets.count) resnets")
        self.resnets = resnets
        self.attentions = attentions
        self.downConv = downConv
        self.downResnet = downResnet
    }

    convenience init(type: UNet2DConfig.DownBlockType, layers: Int, inChannels: Int, outChannels: Int, tembChannels: Int,
         addDownsample: Bool, c: UNet2DConfig, groups: Int) {
        let resnets = (0..<layers).map { i in
            ResnetBlock(inChannels: i == 0 ? inChannels : outChannels, outChannels: outChannels, tembChannels: tembChannels,
                        groups: groups, eps: c.normEps, dropout: c.dropout, act: c.actFn,
                        timeEmbeddingNorm: c.resnetTimeScaleShift)
        }
        let headDim = c.attentionHeadDim ?? outChannels
        let attentions = type == .attnDownBlock2D ? (0..<layers).map { _ in
            Attention(channels: outChannels, attentionHeadDim: headDim, normNumGroups: groups, eps: c.normEps)
        } : []
        // DownBlock2D always downsamples with a conv, ResnetDownsampleBlock2D with a ResNet,
        // AttnDownBlock2D as `downsample_type` says.
        let useResnet = type == .resnetDownsampleBlock2D || (type == .attnDownBlock2D && c.downsampleType == .resnet)
        self.init(resnets: resnets, attentions: attentions,
                  downConv: addDownsample && !useResnet
                      ? Downsample(channels: outChannels, useConv: true, outChannels: outChannels, padding: c.downsamplePadding) : nil,
                  downResnet: addDownsample && useResnet
                      ? ResnetBlock(inChannels: outChannels, outChannels: outChannels, tembChannels: tembChannels, groups: groups,
                                    eps: c.normEps, dropout: c.dropout, act: c.actFn, timeEmbeddingNorm: c.resnetTimeScaleShift,
                                    down: true)
                      : nil)
    }

    func visit(_ v: inout ModuleVisitor) {
        v("resnets", resnets)
        v("attentions", attentions)
        if let d: any Module = downConv ?? downResnet { v("downsamplers", [d]) }
    }

    /// x: [N, Cin, H, W] -> ([N, Cout, H', W'], the skip states for the up path); context: the
    /// attentions' encoder states [N, L, D]. `hook(h, i)` runs after layer i (resnet i, and
    /// attention i when there is one), before its skip state.
    func callAsFunction(_ x: Tensor, temb: Tensor, context: Tensor? = nil,
                        hook: ((Tensor, Int) -> Tensor)? = nil) -> (Tensor, [Tensor]) {
        var h = x
        var states: [Tensor] = []
        for (i, r) in resnets.enumerated() {
            h = r(h, temb: temb)
            if !attentions.isEmpty { h = attentions[i](h, context: context) }
            if let hook { h = hook(h, i) }
            states.append(h)
        }
        if let downConv { h = downConv(h); states.append(h) }
        if let downResnet { h = downResnet(h, temb: temb); states.append(h) }
        return (h, states)
    }
}

/// diffusers' UNetMidBlock2D: resnet, then (attention, resnet) × layers; with `Transformer2D`
/// attentions, UNetMidBlock2DCrossAttn.
final class UNetMidBlock2D: Module {
    let resnets: [ResnetBlock]
    let attentions: [(any UNetAttentionLayer)?]

    /// One more resnet than attentions (the VAE's encoder and decoder build theirs so, without a
    /// time embedding and with group-normed single-head attention).
    init(resnets: [ResnetBlock], attentions: [(any UNetAttentionLayer)?]) {
        precondition(resnets.count == attentions.count + 1, "\(resnets.count) resnets for \(attentions.count) attentions")
        self.resnets = resnets
        self.attentions = attentions
    }

    convenience init(channels: Int, tembChannels: Int, c: UNet2DConfig, layers: Int = 1) {
        let groups = c.normNumGroups ?? Swift.min(channels / 4, 32)
        // Attention has no group norm with scale-shift time embeddings unless attn_norm_num_groups says so.
        let attnGroups = c.attnNormNumGroups ?? (c.resnetTimeScaleShift == .default ? groups : nil)
        let headDim = c.attentionHeadDim ?? channels
        let resnets = (0...layers).map { _ in
            ResnetBlock(inChannels: channels, outChannels: channels, tembChannels: tembChannels, groups: groups,
                        eps: c.normEps, dropout: c.dropout, act: c.actFn, timeEmbeddingNorm: c.resnetTimeScaleShift,
                        outputScaleFactor: c.midBlockScaleFactor)
        }
        let attentions: [(any UNetAttentionLayer)?] = (0..<layers).map { _ in
            c.addAttention
                ? Attention(queryDim: channels, heads: channels / headDim, dimHead: headDim, bias: true,
                            normNumGroups: attnGroups, eps: c.normEps, residualConnection: true,
                            rescaleOutputFactor: c.midBlockScaleFactor)
                : nil
        }
        self.init(resnets: resnets, attentions: attentions)
    }

    func visit(_ v: inout ModuleVisitor) {
        v("attentions", attentions)
        v("resnets", resnets)
    }

    /// temb: [N, T], or nil for resnets without a time embedding (the VAE's); context: the
    /// attentions' encoder states [N, L, D]. `hook(h, i)` runs after resnet i.
    func callAsFunction(_ x: Tensor, temb: Tensor?, context: Tensor? = nil, hook: ((Tensor, Int) -> Tensor)? = nil) -> Tensor {
        var h = resnets[0](x, temb: temb)
        if let hook { h = hook(h, 0) }
        for (i, (a, r)) in zip(attentions, resnets.dropFirst()).enumerated() {
            if let a { h = a(h, context: context) }
            h = r(h, temb: temb)
            if let hook { h = hook(h, i + 1) }
        }
        return h
    }
}

/// The up half of a U-Net level: each resnet takes the running state concatenated with one
/// skip state; attention after each in the Attn variant; then an upsampler (nearest + conv,
/// or a ResNet block with `up`). UpBlock2D, AttnUpBlock2D and ResnetUpsampleBlock2D, and (with
/// `Transformer2D` attentions) CrossAttnUpBlock2D.
final class UNetUpBlock2D: Module {
    let resnets: [ResnetBlock]
    let attentions: [any UNetAttentionLayer]
    let upConv: Upsample?
    let upResnet: ResnetBlock?

    /// `attentions` is empty or one per resnet.
    init(resnets: [ResnetBlock], attentions: [any UNetAttentionLayer], upConv: Upsample?, upResnet: ResnetBlock? = nil) {
        precondition(attentions.isEmpty || attentions.count == resnets.count, "\(attentions.count) attentions for \(resnets.count) resnets")
        self.resnets = resnets
        self.attentions = attentions
        self.upConv = upConv
        self.upResnet = upResnet
    }

    convenience init(type: UNet2DConfig.UpBlockType, layers: Int, inChannels: Int, prevOutputChannels: Int, outChannels: Int,
         tembChannels: Int, addUpsample: Bool, c: UNet2DConfig, groups: Int) {
        let resnets = (0..<layers).map { i in
            let skip = i == layers - 1 ? inChannels : outChannels
            let input = i == 0 ? prevOutputChannels : outChannels
            return ResnetBlock(inChannels: input + skip, outChannels: outChannels, tembChannels: tembChannels,
                               groups: groups, eps: c.normEps, dropout: c.dropout, act: c.actFn,
                               timeEmbeddingNorm: c.resnetTimeScaleShift)
        }
        let headDim = c.attentionHeadDim ?? outChannels
        let attentions = type == .attnUpBlock2D ? (0..<layers).map { _ in
            Attention(channels: outChannels, attentionHeadDim: headDim, normNumGroups: groups, eps: c.normEps)
        } : []
        let useResnet = type == .resnetUpsampleBlock2D || (type == .attnUpBlock2D && c.upsampleType == .resnet)
        self.init(resnets: resnets, attentions: attentions,
                  upConv: addUpsample && !useResnet ? Upsample(channels: outChannels, useConv: true, outChannels: outChannels) : nil,
                  upResnet: addUpsample && useResnet
                      ? ResnetBlock(inChannels: outChannels, outChannels: outChannels, tembChannels: tembChannels, groups: groups,
                                    eps: c.normEps, dropout: c.dropout, act: c.actFn, timeEmbeddingNorm: c.resnetTimeScaleShift,
                                    up: true)
                      : nil)
    }

    func visit(_ v: inout ModuleVisitor) {
        v("resnets", resnets)
        v("attentions", attentions)
        if let u: any Module = upConv ?? upResnet { v("upsamplers", [u]) }
    }

    /// `skips` are consumed from the end, one per resnet; context: the attentions' encoder
    /// states [N, L, D]; `upsampleSize` [H', W'] replaces the 2× of the conv upsampler (sizes
    /// that are not a multiple of the U-Net's factor). `hook(h, i)` runs after layer i (resnet
    /// i, and attention i when there is one).
    func callAsFunction(_ x: Tensor, skips: inout [Tensor], temb: Tensor, context: Tensor? = nil, upsampleSize: [Int]? = nil,
                        hook: ((Tensor, Int) -> Tensor)? = nil) -> Tensor {
        var h = x
        for (i, r) in resnets.enumerated() {
            // [N, C, H, W] ++ [N, Cskip, H, W] -> [N, C + Cskip, H, W]
            h = r(Tensor.concat([h, skips.removeLast()], axis: 1), temb: temb)
            if !attentions.isEmpty { h = attentions[i](h, context: context) }
            if let hook { h = hook(h, i) }
        }
        if let upConv { h = upConv(h, size: upsampleSize) }
        if let upResnet { h = upResnet(h, temb: temb) }
        return h
    }
}
