import Foundation
import Tensor
import NN

/// diffusers' `UNet2DConditionModel`, the denoiser of Stable Diffusion 1.x/2.x:
/// ε_θ(z_t, t, text) on latents [N, C, H, W] (C = 4, or 9 for inpainting: latents ++ mask ++
/// masked-image latents), conditioned on text states [N, L, D] through cross-attention.
///
///     emb = time_embedding(time_proj(t), cond_proj(w))      w: LCM's guidance embedding, optional
///           (+ or ++ class_embedding(class)) (then time_embed_act)
///     h = conv_in(x); skips = [h]
///     for each down block: (resnet (+ Transformer2D(·, text)))×layers, downsample; skips += states
///     h = mid_block(h, emb, text)                           resnet, Transformer2D, resnet
///     for each up block: (resnet(h ++ skip) (+ Transformer2D))×(layers + 1), upsample
///     out = conv_out(act(conv_norm_out(h)))
///
/// Parameter names are diffusers' state-dict keys
/// (`down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight`), so a diffusers unet
/// folder loads as it is and what we save loads in diffusers. Gradients flow when `GradMode`
/// is on; wrap inference in `GradMode.withoutGrad` so no tape is kept (and call
/// `setTraining(false)` when the config's `dropout` is above 0, as for every model here).
public final class UNet2DConditionModel: Module {
    public let config: UNet2DConditionConfig
    let convIn: Conv2d
    let timeProj: Timesteps
    let timeEmbedding: TimestepEmbedding
    let classEmbedding: Embedding?
    let classTimestepEmbedding: TimestepEmbedding?
    let downBlocks: [UNetDownBlock2D]
    let midBlock: UNetMidBlock2D?
    let upBlocks: [UNetUpBlock2D]
    let convNormOut: GroupNorm
    let convOut: Conv2d

    public init(config c: UNet2DConditionConfig) throws {
        try c.validate()
        config = c
        let ch = c.blockOutChannels, n = ch.count
        let temb = c.timeEmbedDim, blocksTemb = c.blocksTimeEmbedDim
        let groups = c.normNumGroups!
        convIn = Conv2d(c.inChannels, ch[0], kernelSize: c.convInKernel, padding: (c.convInKernel - 1) / 2)
        timeProj = Timesteps(numChannels: ch[0], flipSinToCos: c.flipSinToCos, downscaleFreqShift: c.freqShift)
        timeEmbedding = TimestepEmbedding(inChannels: ch[0], timeEmbedDim: temb, act: c.actFn, postAct: c.timestepPostAct,
                                          condProjDim: c.timeCondProjDim)
        if c.classEmbedType == .timestep {
            classTimestepEmbedding = TimestepEmbedding(inChannels: ch[0], timeEmbedDim: temb, act: c.actFn)
            classEmbedding = nil
        } else {
            classEmbedding = c.numClassEmbeds.map { Embedding($0, temb) }
            classTimestepEmbedding = nil
        }

        // diffusers' quirk: attention_head_dim is the number of heads; each head is channels / heads wide.
        let heads = c.attentionHeadDim.values(n), context = c.crossAttentionDim.values(n)
        let layers = c.layersPerBlock.values(n), depth = c.transformerLayersPerBlock.values(n)
        let onlyCross = c.onlyCrossAttention.values(n)
        func resnet(_ cin: Int, _ cout: Int, scale: Float = 1) -> ResnetBlock {
            ResnetBlock(inChannels: cin, outChannels: cout, tembChannels: blocksTemb, groups: groups, eps: c.normEps,
                        dropout: c.dropout, act: c.actFn, timeEmbeddingNorm: c.resnetTimeScaleShift, outputScaleFactor: scale)
        }
        func transformer(_ channels: Int, _ i: Int, onlyCrossAttention: Bool) -> Transformer2D {
            Transformer2D(heads: heads[i], headDim: channels / heads[i], channels: channels, layers: depth[i],
                          crossAttentionDim: context[i], groups: groups, useLinearProjection: c.useLinearProjection,
                          onlyCrossAttention: onlyCrossAttention)
        }

        var down: [UNetDownBlock2D] = []
        var out = ch[0]
        for (i, type) in c.downBlockTypes.enumerated() {
            let input = out
            out = ch[i]
            let o = out
            down.append(UNetDownBlock2D(
                resnets: (0..<layers[i]).map { j in resnet(j == 0 ? input : o, o) },
                attentions: type == .crossAttnDownBlock2D
                    ? (0..<layers[i]).map { _ in transformer(o, i, onlyCrossAttention: onlyCross[i]) } : [],
                downConv: i < n - 1 ? Downsample(channels: o, useConv: true, outChannels: o, padding: c.downsamplePadding) : nil))
        }
        downBlocks = down

        let last = ch[n - 1]
        midBlock = c.midBlockType.map { _ in
            UNetMidBlock2D(resnets: [resnet(last, last, scale: c.midBlockScaleFactor), resnet(last, last, scale: c.midBlockScaleFactor)],
                           attentions: [transformer(last, n - 1, onlyCrossAttention: false)])
        }

        // Up block i mirrors down block n − 1 − i (its heads, context width, depth, layers + 1).
        var up: [UNetUpBlock2D] = []
        out = ch[n - 1]
        for (i, type) in c.upBlockTypes.enumerated() {
            let mirror = n - 1 - i
            let prev = out
            out = ch[mirror]
            let input = ch[Swift.max(mirror - 1, 0)]
            let count = layers[mirror] + 1, o = out
            up.append(UNetUpBlock2D(
                resnets: (0..<count).map { j in
                    resnet((j == 0 ? prev : o) + (j == count - 1 ? input : o), o)
                },
                attentions: type == .crossAttnUpBlock2D
                    ? (0..<count).map { _ in transformer(o, mirror, onlyCrossAttention: onlyCross[mirror]) } : [],
                upConv: i < n - 1 ? Upsample(channels: o, useConv: true, outChannels: o) : nil))
        }
        upBlocks = up
        convNormOut = GroupNorm(groups: groups, channels: ch[0], eps: c.normEps)
        convOut = Conv2d(ch[0], c.outChannels, kernelSize: c.convOutKernel, padding: (c.convOutKernel - 1) / 2)
    }

    public func visit(_ v: inout ModuleVisitor) {
        v("conv_in", convIn)
        v("time_embedding", timeEmbedding)
        v("class_embedding", classEmbedding ?? (classTimestepEmbedding as (any Module)?))
        v("down_blocks", downBlocks)
        v("mid_block", midBlock)
        v("up_blocks", upBlocks)
        v("conv_norm_out", convNormOut)
        v("conv_out", convOut)
    }

    /// The width the text states must have (`cross_attention_dim`, the same for every block
    /// that has cross-attention).
    public var contextWidth: Int { config.crossAttentionDim.values(config.blockOutChannels.count)[0] }

    /// sample [N, Cin, H, W]; `timesteps` one per sample or one for all; encoderHiddenStates
    /// [N, L, cross_attention_dim]; timestepCond [N, time_cond_proj_dim] (LCM's guidance
    /// embedding, only for models with `time_cond_proj_dim`); classLabels one per sample for
    /// class-conditional configs. Returns [N, Cout, H, W].
    ///
    /// Any H, W works: when they are not multiples of 2^(levels − 1), each upsampler resizes to
    /// its skip states' size, as diffusers does.
    public func callAsFunction(_ sample: Tensor, timesteps: [Float], encoderHiddenStates: Tensor,
                               timestepCond: Tensor? = nil, classLabels: [Int]? = nil) -> Tensor {
        let c = config
        precondition(sample.rank == 4 && sample.shape[1] == c.inChannels,
                     "UNet2DConditionModel expects [N, \(c.inChannels), H, W], got \(sample.shape)")
        let n = sample.shape[0]
        precondition(timesteps.count == 1 || timesteps.count == n, "\(timesteps.count) timesteps for a batch of \(n)")
        precondition(encoderHiddenStates.rank == 3 && encoderHiddenStates.shape[0] == n,
                     "encoder hidden states must be [\(n), L, D], got \(encoderHiddenStates.shape)")
        let widths = Set(c.crossAttentionDim.values(c.blockOutChannels.count))
        precondition(widths.contains(encoderHiddenStates.shape[2]),
                     "encoder hidden states are \(encoderHiddenStates.shape[2]) wide, the model's cross_attention_dim is \(widths.sorted())")
        if let timestepCond {
            precondition(c.timeCondProjDim != nil, "timestepCond given to a model without time_cond_proj_dim")
            precondition(timestepCond.shape == [n, c.timeCondProjDim!],
                         "timestepCond must be [\(n), \(c.timeCondProjDim!)], got \(timestepCond.shape)")
        }

        // 1. time (and class) embedding: [N, temb]
        let t = timesteps.count == n ? timesteps : [Float](repeating: timesteps[0], count: n)
        var emb = timeEmbedding(timeProj(t), condition: timestepCond)
        if c.hasClassEmbedding {
            guard let labels = classLabels else { preconditionFailure("class-conditional model called without class labels") }
            precondition(labels.count == n, "\(labels.count) class labels for a batch of \(n)")
            let classEmb: Tensor
            if let classEmbedding {
                precondition(labels.allSatisfy { $0 >= 0 && $0 < classEmbedding.count },
                             "class labels \(labels) outside 0..<\(classEmbedding.count)")
                classEmb = classEmbedding(labels)
            } else {
                classEmb = classTimestepEmbedding!(timeProj(labels.map(Float.init)))
            }
            // [N, temb] ++ [N, temb] -> [N, 2 temb], or summed
            emb = c.classEmbeddingsConcat ? Tensor.concat([emb, classEmb], axis: 1) : emb + classEmb
        } else {
            precondition(classLabels == nil, "class labels given to a model without class embedding")
        }
        if let act = c.timeEmbeddingActFn { emb = act(emb) }

        // 2. U-Net
        let context = encoderHiddenStates
        var x = convIn(c.centerInputSample ? sample * 2 - 1 : sample)
        let factor = 1 << (c.blockOutChannels.count - 1)
        let resizeUpsamples = sample.shape[2] % factor != 0 || sample.shape[3] % factor != 0
        var skips = [x]
        for b in downBlocks {
            let (h, s) = b(x, temb: emb, context: context)
            x = h
            skips += s
        }
        if let midBlock { x = midBlock(x, temb: emb, context: context) }
        for b in upBlocks {
            // The upsampler resizes to the skip states the next block takes first.
            let size = resizeUpsamples && b.upConv != nil ? Array(skips[skips.count - b.resnets.count - 1].shape[2...]) : nil
            x = b(x, skips: &skips, temb: emb, context: context, upsampleSize: size)
        }
        return convOut(convNormOut(x, then: c.actFn))
    }
}
