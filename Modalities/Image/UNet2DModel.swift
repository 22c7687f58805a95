import Foundation
import Tensor
import NN
import Diffusion

/// diffusers' `UNet2DModel`: a denoiser ε_θ(x_t, t[, class]) on images [N, C, H, W].
///
///     emb = time_embedding(time_proj(t)) (+ class_embedding(class))
///     h = conv_in(x); skips = [h]
///     for each down block: h, s = block(h, emb); skips += s
///     h = mid_block(h, emb)
///     for each up block: h = block(h, skips (consumed from the end), emb)
///     out = conv_out(silu(conv_norm_out(h)))          (/ t for Fourier time embeddings)
///
/// Parameter names are diffusers' (`down_blocks.0.resnets.1.conv1.weight`), so a diffusers
/// checkpoint loads as it is and what we save loads in diffusers.
public final class UNet2DModel: Module {
    public let config: UNet2DConfig
    let convIn: Conv2d
    let positional: Timesteps?
    let fourier: GaussianFourierProjection?
    let learned: Embedding?
    let timeEmbedding: TimestepEmbedding
    let classEmbedding: Embedding?
    let classTimestepEmbedding: TimestepEmbedding?
    let downBlocks: [UNetDownBlock2D]
    let midBlock: UNetMidBlock2D?
    let upBlocks: [UNetUpBlock2D]
    let convNormOut: GroupNorm
    let convOut: Conv2d

    public init(config c: UNet2DConfig) throws {
        try c.validate()
        config = c
        let ch = c.blockOutChannels
        let temb = c.timeEmbedDim
        let groups = c.normNumGroups ?? Swift.min(ch[0] / 4, 32)
        convIn = Conv2d(c.inChannels, ch[0], kernelSize: 3, padding: 1)
        var timeInput = ch[0]
        switch c.timeEmbeddingType {
        case .positional:
            positional = Timesteps(numChannels: ch[0], flipSinToCos: c.flipSinToCos, downscaleFreqShift: c.freqShift)
            fourier = nil; learned = nil
        case .fourier:
            fourier = GaussianFourierProjection(embeddingSize: ch[0], scale: 16)
            positional = nil; learned = nil
            timeInput = 2 * ch[0]
        case .learned:
            learned = Embedding(c.numTrainTimesteps!, ch[0])
            positional = nil; fourier = nil
        }
        timeEmbedding = TimestepEmbedding(inChannels: timeInput, timeEmbedDim: temb, act: .silu)
        if c.classEmbedType == .timestep {
            classTimestepEmbedding = TimestepEmbedding(inChannels: timeInput, timeEmbedDim: temb)
            classEmbedding = nil
        } else {
            classEmbedding = c.numClassEmbeds.map { Embedding($0, temb) }
            classTimestepEmbedding = nil
        }
        var down: [UNetDownBlock2D] = []
        var out = ch[0]
        for (i, type) in c.downBlockTypes.enumerated() {
            let input = out
            out = ch[i]
            down.append(UNetDownBlock2D(type: type, layers: c.layersPerBlock, inChannels: input, outChannels: out,
                                        tembChannels: temb, addDownsample: i < ch.count - 1, c: c, groups: groups))
        }
        downBlocks = down
        midBlock = c.midBlockType == nil ? nil : UNetMidBlock2D(channels: ch[ch.count - 1], tembChannels: temb, c: c)
        let rev = Array(ch.reversed())
        var up: [UNetUpBlock2D] = []
        out = rev[0]
        for (i, type) in c.upBlockTypes.enumerated() {
            let prev = out
            out = rev[i]
            let input = rev[Swift.min(i + 1, ch.count - 1)]
            up.append(UNetUpBlock2D(type: type, layers: c.layersPerBlock + 1, inChannels: input, prevOutputChannels: prev,
                                    outChannels: out, tembChannels: temb, addUpsample: i < ch.count - 1, c: c, groups: groups))
        }
        upBlocks = up
        convNormOut = GroupNorm(groups: groups, channels: ch[0], eps: c.normEps)
        convOut = Conv2d(ch[0], c.outChannels, kernelSize: 3, padding: 1)
    }

    public func visit(_ v: inout ModuleVisitor) {
        v("conv_in", convIn)
        v("time_proj", fourier ?? (learned as (any Module)?))
        v("time_embedding", timeEmbedding)
        v("class_embedding", classEmbedding ?? (classTimestepEmbedding as (any Module)?))
        v("down_blocks", downBlocks)
        v("mid_block", midBlock)
        v("up_blocks", upBlocks)
        v("conv_norm_out", convNormOut)
        v("conv_out", convOut)
    }

    private func project(_ t: [Float]) -> Tensor {
        if let positional { return positional(t) }
        if let fourier { return fourier(t) }
        return learned!(t.map { Int($0) })
    }

    /// sample [N, Cin, H, W]; `timesteps` one per sample, or one for all; `classLabels` one
    /// per sample for class-conditional models. Returns [N, Cout, H, W].
    public func callAsFunction(_ sample: Tensor, timesteps: [Float], classLabels: [Int]? = nil) -> Tensor {
        forward(sample, timesteps: timesteps, classLabels: classLabels, hook: nil)
    }

    /// Where a `UNet2DLayerHook` runs, in the order it runs, with the channels of the hidden
    /// state there: after every layer (resnet + its attention) of the down blocks, after every
    /// resnet of the mid block, after every layer of the up blocks. Not after resamplers.
    public var layers: [(id: UNet2DLayerID, channels: Int)] {
        var out: [(UNet2DLayerID, Int)] = []
        for (b, block) in downBlocks.enumerated() {
            for (i, r) in block.resnets.enumerated() { out.append((UNet2DLayerID(.down, block: b, layer: i), r.norm2.channels)) }
        }
        if let midBlock {
            for (i, r) in midBlock.resnets.enumerated() { out.append((UNet2DLayerID(.mid, block: 0, layer: i), r.norm2.channels)) }
        }
        for (b, block) in upBlocks.enumerated() {
            for (i, r) in block.resnets.enumerated() { out.append((UNet2DLayerID(.up, block: b, layer: i), r.norm2.channels)) }
        }
        return out
    }

    /// The forward pass with `hook(h, layer)` replacing the hidden state h [N, C, H, W] after each
    /// of `layers` (nil: the plain U-Net). The video U-Net runs its temporal layers here.
    public func forward(_ sample: Tensor, timesteps: [Float], classLabels: [Int]?, hook: UNet2DLayerHook?) -> Tensor {
        precondition(sample.rank == 4 && sample.shape[1] == config.inChannels,
                     "UNet2DModel expects [N, \(config.inChannels), H, W], got \(sample.shape)")
        let n = sample.shape[0]
        precondition(timesteps.count == 1 || timesteps.count == n, "\(timesteps.count) timesteps for a batch of \(n)")
        let downFactor = 1 << (config.blockOutChannels.count - 1)
        precondition(sample.shape[2] % downFactor == 0 && sample.shape[3] % downFactor == 0,
                     "image size \(sample.shape[2])×\(sample.shape[3]) must be a multiple of \(downFactor)")
        let t = timesteps.count == n ? timesteps : [Float](repeating: timesteps[0], count: n)
        var emb = timeEmbedding(project(t))
        if config.isClassConditional {
            guard let labels = classLabels else { preconditionFailure("class-conditional model called without class labels") }
            precondition(labels.count == n, "\(labels.count) class labels for a batch of \(n)")
            if let classEmbedding {
                precondition(labels.allSatisfy { $0 >= 0 && $0 < classEmbedding.count },
                             "class labels \(labels) outside 0..<\(classEmbedding.count)")
                emb = emb + classEmbedding(labels)
            } else if let classTimestepEmbedding {
                emb = emb + classTimestepEmbedding(project(labels.map(Float.init)))
            }
        } else {
            precondition(classLabels == nil, "class labels given to a model without class embedding")
        }
        var x = config.centerInputSample ? sample * 2 - 1 : sample
        x = convIn(x)
        var skips = [x]
        func at(_ stage: UNet2DLayerID.Stage, _ block: Int) -> ((Tensor, Int) -> Tensor)? {
            hook.map { f in { h, i in f(h, UNet2DLayerID(stage, block: block, layer: i)) } }
        }
        for (i, b) in downBlocks.enumerated() {
            let (h, s) = b(x, temb: emb, hook: at(.down, i))
            x = h
            skips += s
        }
        if let midBlock { x = midBlock(x, temb: emb, hook: at(.mid, 0)) }
        for (i, b) in upBlocks.enumerated() { x = b(x, skips: &skips, temb: emb, hook: at(.up, i)) }
        x = convOut(convNormOut(x, then: .silu))
        if config.timeEmbeddingType == .fourier {
            // out / t, t broadcast over [C, H, W]
            x = x / Tensor(shape: [n, 1, 1, 1], scalars: t)
        }
        return x
    }
}

/// A place in the U-Net where a `UNet2DLayerHook` runs: layer `layer` of down block `block`,
/// of the mid block (block 0), or of up block `block`. `path` names it in checkpoints:
/// `down_blocks.1.0`, `mid_block.1`, `up_blocks.2.1`.
public struct UNet2DLayerID: Hashable, Sendable, CustomStringConvertible {
    public enum Stage: String, Sendable { case down = "down_blocks", mid = "mid_block", up = "up_blocks" }
    public var stage: Stage
    public var block: Int
    public var layer: Int

    public init(_ stage: Stage, block: Int, layer: Int) { self.stage = stage; self.block = block; self.layer = layer }

    public var path: String { stage == .mid ? "mid_block.\(layer)" : "\(stage.rawValue).\(block).\(layer)" }
    public var description: String { path }
}

/// Replaces the hidden state h [N, C, H, W] after a U-Net layer (same shape out).
public typealias UNet2DLayerHook = (_ hidden: Tensor, _ layer: UNet2DLayerID) -> Tensor

extension UNet2DModel: DiffusionModel {
    public func predict(_ x: Tensor, timesteps: [Float], labels: [Int]?) -> Tensor {
        self(x, timesteps: timesteps, classLabels: labels)
    }

    public var labelCount: Int? { config.numClassEmbeds }
}
