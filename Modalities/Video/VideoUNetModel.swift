import Foundation
import Tensor
import NN
import Diffusion
import Image

/// A factorised space-time U-Net (Ho et al. 2022, "Video Diffusion Models"): the image
/// `UNet2DModel` applied to every frame, with a `TemporalBlock` after each of its layers that
/// mixes the frames at every pixel. A denoiser ε_θ(x_t, t[, class]) on clips [N, C, F, H, W].
///
///     x: [N, C, F, H, W] -> [(N F), C, H, W]         t and class repeated per frame
///     h = unet2d(x) with, after each layer ℓ (`UNet2DModel.layers`):
///         h = temporal[ℓ](h)                          [(N F), C, H, W], attends over F
///     out: [(N F), Cout, H, W] -> [N, Cout, F, H, W]
///
/// Parameter names: the image U-Net's, unchanged (`down_blocks.0.resnets.0.conv1.weight`), so an
/// image checkpoint loads into `spatial` as it is; plus `temporal.<layer>.attention.*` and
/// `temporal.<layer>.conv.*` with `<layer>` a `UNet2DLayerID` path (`temporal.down_blocks.1.0.attention.to_q.weight`).
/// Fresh temporal layers are the identity, so a video model whose spatial part holds an image
/// model's weights computes exactly that image model on each frame.
public final class VideoUNetModel: Module {
    public let config: VideoUNetConfig
    public let spatial: UNet2DModel
    /// Temporal blocks in the order they run.
    public let temporal: [(layer: UNet2DLayerID, block: TemporalBlock)]
    private let blocks: [UNet2DLayerID: TemporalBlock]

    public init(config c: VideoUNetConfig) throws {
        try c.validate()
        config = c
        spatial = try UNet2DModel(config: c.spatial)
        temporal = spatial.layers.map { ($0.id, TemporalBlock(channels: $0.channels, config: c)) }
        blocks = Dictionary(uniqueKeysWithValues: temporal.map { ($0.layer, $0.block) })
    }

    public func visit(_ v: inout ModuleVisitor) {
        spatial.visit(&v)
        for (layer, block) in temporal { v("temporal." + layer.path, block) }
    }

    /// The temporal parameters alone (what `--init-from` leaves to training).
    public var temporalParameterCount: Int { temporal.reduce(0) { $0 + $1.block.parameterCount } }

    /// sample [N, Cin, F, H, W]; `timesteps` one per clip, or one for all; `classLabels` one per
    /// clip for class-conditional models. Returns [N, Cout, F, H, W]. Any F ≥ 1 works (one-frame
    /// clips are images).
    public func callAsFunction(_ sample: Tensor, timesteps: [Float], classLabels: [Int]? = nil) -> Tensor {
        precondition(sample.rank == 5 && sample.shape[1] == config.spatial.inChannels,
                     "VideoUNetModel expects [N, \(config.spatial.inChannels), F, H, W], got \(sample.shape)")
        let n = sample.shape[0], f = sample.shape[2]
        precondition(timesteps.count == 1 || timesteps.count == n, "\(timesteps.count) timesteps for a batch of \(n)")
        precondition(classLabels == nil || classLabels!.count == n, "\(classLabels!.count) class labels for a batch of \(n)")
        func perFrame<T>(_ a: [T]) -> [T] { a.flatMap { [T](repeating: $0, count: f) } }
        // x: [N, C, F, H, W] -> [(N F), C, H, W]
        let x = VideoLayout.framesToBatch(sample)
        let t = timesteps.count == n ? perFrame(timesteps) : timesteps  // else one for all
        let y = spatial.forward(x, timesteps: t, classLabels: classLabels.map(perFrame)) { h, layer in
            self.blocks[layer]!(h, frames: f)
        }
        // y: [(N F), Cout, H, W] -> [N, Cout, F, H, W]
        return VideoLayout.batchToFrames(y, frames: f)
    }
}

extension VideoUNetModel: DiffusionModel {
    public func predict(_ x: Tensor, timesteps: [Float], labels: [Int]?) -> Tensor {
        self(x, timesteps: timesteps, classLabels: labels)
    }

    public var labelCount: Int? { config.spatial.numClassEmbeds }
}

extension VideoUNetModel {
    /// Copies an image U-Net's weights into the spatial part (the temporal layers keep theirs).
    /// The configs must agree but for the class embedding, which is skipped when its number of
    /// classes differs (the model then learns its own); returns the names skipped that way.
    @discardableResult
    public func loadSpatial(from image: UNet2DModel, source: String) throws -> [String] {
        var a = image.config, b = config.spatial
        a.numClassEmbeds = nil; b.numClassEmbeds = nil
        a.sampleSize = nil; b.sampleSize = nil
        a.extra = [:]; b.extra = [:]
        guard a == b else {
            throw ModelFolderError(path: source, reason: "the image U-Net's config differs from the video model's spatial config (widths, blocks, channels and norms must match)")
        }
        let report = try spatial.load(from: image.stateDict(), strict: false)
        let skipped = report.missing + report.unexpected + report.mismatched
        guard skipped.allSatisfy({ $0.hasPrefix("class_embedding.") }) else {
            throw ModelFolderError(path: source, reason: "these weights do not fit: \(skipped.prefix(8).joined(separator: ", "))")
        }
        return Array(Set(skipped)).sorted()
    }
}
