import Foundation
import Tensor
import NN
import Diffusion

/// diffusers' `UNet1DModel`: a denoiser ε_θ(x_t, t[, class]) on signals [N, C, L] (audio clips,
/// trajectories), or a value function [N, C, L] -> [N, 1] with the ValueFunction out block.
///
///     p = time_proj(t)                      Fourier [N, T] (T = time_embedding_dim or 2·C0) or sinusoidal [N, C0]
///     emb = time_mlp(p) [N, C0]  if use_timestep_embedding, else p
///     emb = emb + class_embedding(class)    (ours, only with num_class_embeds)
///     h = x; skips = []
///     for each down block: h, s = block(h, emb); skips += [s]
///     h = mid_block(h, emb)
///     for each up block: h = block(h, skips.removeLast(), emb)
///     out = out_block(h, emb)  (if any)
///
/// Where the time embedding goes depends on the blocks: Dance Diffusion's DownBlock1DNoSkip
/// concatenates `emb` broadcast over the length to the input (so `extra_in_channels` = T), the
/// RL blocks add a projection of it in every residual block, and the other Dance blocks ignore
/// it. One timestep for the whole batch is the same as that timestep repeated (diffusers
/// broadcasts it), so it is repeated here before embedding. diffusers turns a *Python number*
/// timestep into an integer (`torch.tensor([t], dtype=torch.long)`); pass whole numbers to
/// match that, tensors of timesteps are taken as they are.
///
/// Class conditioning (our extension, `num_class_embeds`): an `Embedding` of width
/// `config.timeEmbedDim` named `class_embedding`, added to `emb` after the time MLP — the point
/// where diffusers' UNet2DModel adds its class embedding — so it reaches every block that sees
/// the time embedding (all residual temporal blocks, or Dance's concatenated input channels).
/// Without `num_class_embeds` there is no such parameter and the model is exactly diffusers'.
///
/// Parameter names are diffusers' (`down_blocks.0.resnets.1.conv_in.conv1d.weight`), including
/// the resampling-kernel buffers of the Dance blocks (`mid_block.down.kernel`), so a diffusers
/// checkpoint loads strictly and what we save loads in diffusers.
public final class UNet1DModel: Module {
    public let config: UNet1DConfig
    let fourier: GaussianFourierProjection?
    let positional: Timesteps?
    let timeMLP: TimestepEmbedding?
    let classEmbedding: Embedding?
    let downBlocks: [any UNet1DDownBlock]
    let midBlock: any UNet1DMidBlock
    let upBlocks: [any UNet1DUpBlock]
    let outBlock: (any UNet1DOutBlock)?

    public init(config c: UNet1DConfig) throws {
        try c.validate()
        config = c
        let ch = c.blockOutChannels, n = ch.count
        switch c.timeEmbeddingType {
        case .fourier:
            fourier = GaussianFourierProjection(embeddingSize: c.timeProjectionDim / 2, scale: 1, log: false,
                                                flipSinToCos: c.flipSinToCos)
            positional = nil
        case .positional:
            positional = Timesteps(numChannels: ch[0], flipSinToCos: c.flipSinToCos, downscaleFreqShift: c.freqShift)
            fourier = nil
        }
        timeMLP = c.useTimestepEmbedding
            ? TimestepEmbedding(inChannels: c.timeProjectionDim, timeEmbedDim: 4 * ch[0], act: c.actFn!, outDim: ch[0])
            : nil
        classEmbedding = c.numClassEmbeds.map { Embedding($0, c.timeEmbedDim) }

        // Channels as diffusers computes them (validate() has checked that they fit together).
        var down: [any UNet1DDownBlock] = []
        var out = c.inChannels
        for (i, type) in c.downBlockTypes.enumerated() {
            var input = out
            out = ch[i]
            if i == 0 { input += c.extraInChannels }
            switch type {
            case .downResnetBlock1D:
                down.append(ResnetDownBlock1D(layers: c.layersPerBlock, inChannels: input, outChannels: out, tembChannels: ch[0],
                                              addDownsample: i < n - 1 || c.downsampleEachBlock))
            default:
                down.append(ResConvDownBlock1D(type: type, inChannels: input, outChannels: out))
            }
        }
        downBlocks = down
        let last = ch[n - 1]
        switch c.midBlockType {
        case .unetMidBlock1D:
            midBlock = ResConvMidBlock1D(inChannels: last, midChannels: last, outChannels: last)
        case .midResTemporalBlock1D:
            midBlock = ResTemporalMidBlock1D(layers: c.layersPerBlock, inChannels: last, outChannels: last, embedDim: ch[0],
                                             addDownsample: c.downsampleEachBlock)
        case .valueFunctionMidBlock1D:
            midBlock = ValueFunctionMidBlock1D(inChannels: last, outChannels: last, embedDim: ch[0])
        }
        let rev = Array(ch.reversed())
        let finalChannels = c.outBlockType == nil ? c.outChannels : ch[0]
        var up: [any UNet1DUpBlock] = []
        out = rev[0]
        for (i, type) in c.upBlockTypes.enumerated() {
            let prev = out
            out = i < c.upBlockTypes.count - 1 ? rev[i + 1] : finalChannels
            switch type {
            case .upResnetBlock1D:
                up.append(ResnetUpBlock1D(layers: c.layersPerBlock, inChannels: prev, outChannels: out, tembChannels: ch[0],
                                          addUpsample: i != n - 1))
            default:
                up.append(ResConvUpBlock1D(type: type, inChannels: prev, outChannels: out))
            }
        }
        upBlocks = up
        switch c.outBlockType {
        case .outConv1DBlock:
            outBlock = OutConv1DBlock(groups: c.numGroupsOut, outChannels: c.outChannels, embedDim: ch[0], act: c.actFn!)
        case .valueFunction:
            outBlock = OutValueFunctionBlock(fcDim: last / 4, embedDim: ch[0], act: c.actFn!)
        case nil:
            outBlock = nil
        }
    }

    public func visit(_ v: inout ModuleVisitor) {
        v("time_proj", fourier)
        v("time_mlp", timeMLP)
        v("class_embedding", classEmbedding)
        v("down_blocks", downBlocks.map { $0 as any Module })
        v("mid_block", midBlock)
        v("up_blocks", upBlocks.map { $0 as any Module })
        v("out_block", outBlock)
    }

    /// sample [N, Cin, L] (L a multiple of `config.lengthMultiple`, at least `config.minimumLength`); `timesteps` one per sample
    /// or one for all; `classLabels` one per sample for class-conditional models.
    /// Returns [N, Cout, L], or [N, 1] for a value function.
    public func callAsFunction(_ sample: Tensor, timesteps: [Float], classLabels: [Int]? = nil) -> Tensor {
        precondition(sample.rank == 3 && sample.shape[1] == config.inChannels,
                     "UNet1DModel expects [N, \(config.inChannels), L], got \(sample.shape)")
        let n = sample.shape[0]
        precondition(timesteps.count == 1 || timesteps.count == n, "\(timesteps.count) timesteps for a batch of \(n)")
        let m = config.lengthMultiple
        precondition(sample.shape[2] % m == 0 && sample.shape[2] >= config.minimumLength,
                     "length \(sample.shape[2]) must be a multiple of \(m) and at least \(config.minimumLength)")
        let t = timesteps.count == n ? timesteps : [Float](repeating: timesteps[0], count: n)
        // [N] -> [N, T]
        var emb = fourier.map { $0(t) } ?? positional!(t)
        if let timeMLP { emb = timeMLP(emb) }  // [N, C0]
        if let classEmbedding {
            guard let labels = classLabels else { preconditionFailure("class-conditional model called without class labels") }
            precondition(labels.count == n, "\(labels.count) class labels for a batch of \(n)")
            precondition(labels.allSatisfy { $0 >= 0 && $0 < classEmbedding.count },
                         "class labels \(labels) outside 0..<\(classEmbedding.count)")
            emb = emb + classEmbedding(labels)
        } else {
            precondition(classLabels == nil, "class labels given to a model without class embedding")
        }
        var x = sample
        var skips: [Tensor] = []
        for b in downBlocks {
            let (h, s) = b(x, temb: emb)
            x = h
            skips.append(s)
        }
        x = midBlock(x, temb: emb)
        for b in upBlocks { x = b(x, skip: skips.removeLast(), temb: emb) }
        if let outBlock { x = outBlock(x, temb: emb) }
        return x
    }

    /// Parameters training updates (the Fourier frequencies and resampling kernels are fixed).
    public var trainableParameterCount: Int { trainableParameters().reduce(0) { $0 + $1.count } }
}

extension UNet1DModel: DiffusionModel {
    public func predict(_ x: Tensor, timesteps: [Float], labels: [Int]?) -> Tensor {
        self(x, timesteps: timesteps, classLabels: labels)
    }

    public var labelCount: Int? { config.numClassEmbeds }
}
