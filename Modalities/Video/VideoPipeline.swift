import Foundation
import Tensor
import NN
import Diffusion
import Image

/// A trained video model as a pipeline folder (`PipelineFolder` layout; model_index.json names
/// our VideoDiffusionPipeline and VideoUNetModel). Clips are [N, C, F, H, W] in [-1, 1] at
/// `fps`; the model runs on any number of frames (temporal attention has no fixed length).
public final class VideoPipeline {
    public let unet: VideoUNetModel
    public let scheduler: SchedulerConfig
    public let classes: ClassLabels

    public static let pipelineClass = "VideoDiffusionPipeline"

    public init(unet: VideoUNetModel, scheduler: SchedulerConfig, classNames: [String]) {
        self.unet = unet
        self.scheduler = scheduler
        classes = ClassLabels(names: classNames, labelCount: unet.config.spatial.numClassEmbeds)
    }

    public var frames: Int { unet.config.numFrames }
    public var fps: Double { unet.config.frameRate }
    /// Frame side (frames are square).
    public var size: Int { unet.config.frameSize[0] }
    public var channels: Int { unet.config.spatial.inChannels }

    public static func load(_ dir: URL) throws -> VideoPipeline {
        let unet = try VideoUNetModel.load(dir)
        let classes = try ClassLabels.load(dir, labelCount: unet.config.spatial.numClassEmbeds)
        return VideoPipeline(unet: unet, scheduler: try PipelineFolder.scheduler(in: dir), classNames: classes.names)
    }

    public func save(to dir: URL, dtype: SafeTensorsDType = .F32) throws {
        try unet.save(to: dir.appendingPathComponent("unet"), dtype: dtype)
        try PipelineFolder.save(to: dir, pipelineClass: Self.pipelineClass, unetClass: VideoUNetConfig.className,
                                scheduler: scheduler, classes: classes)
    }

    /// A video file as `count` copies [N, C, F, H, W] at the model's size, channels and frame rate
    /// (its first `frames` frames; the last one held when it is shorter).
    public func loadClip(_ url: URL, count: Int, frames: Int? = nil) throws -> Tensor {
        let f = frames ?? self.frames
        let one = try VideoFolder.decode(url, frames: f, size: size, channels: channels, fps: fps)  // [C, F, H, W]
        return Tensor.concat([Tensor](repeating: one.reshaped([1, channels, f, size, size]), count: count), axis: 0)
    }

    /// A label from what a user typed: a class name wins over an index.
    public func label(_ s: String) -> Int? { classes.label(s) }

    /// `count` clips [N, C, F, H, W] of `frames` frames (default: the trained count), clamped to
    /// [-1, 1] unless `clamp` is false. See `Generation.batched` for batching, seeds and the
    /// init/known arguments (`known` with a per-frame mask [N, 1, F, 1, 1] continues a clip).
    public func generate(count: Int, frames: Int? = nil, labels: [Int]?, sampler name: SamplerName? = nil, steps: Int,
                         seed: UInt64, guidance: Float = 1, guidanceRescale: Float = 0, start: Tensor? = nil,
                         initial: (sample: Tensor, strength: Float)? = nil, known: KnownRegion? = nil,
                         batchSize: Int? = nil, firstIndex: Int = 0, clamp: Bool = true,
                         progress: ((Int, Int) -> Bool)? = nil) throws -> Tensor {
        let f = frames ?? self.frames
        precondition(f >= 1, "generate: \(f) frames")
        let g = classes.guidance(scale: guidance, rescale: guidanceRescale, labels: labels)
        let x = try Generation.batched(model: unet, sampleShape: [channels, f, size, size], count: count, batchSize: batchSize,
                                       scheduler: scheduler, sampler: name, steps: steps, seed: seed, labels: labels,
                                       guidance: g, start: start, initial: initial, known: known, firstIndex: firstIndex,
                                       progress: progress)
        return clamp ? GradMode.withoutGrad { x.clamped(min: -1, max: 1) } : x
    }

    /// A mask [N, 1, F, 1, 1] that keeps `kept` frames (0) and generates the others (1): the
    /// `KnownRegion` mask of continuing a clip.
    public static func frameMask(count: Int, frames: Int, kept: Set<Int>) -> Tensor {
        let m = Tensor.ones([count, 1, frames, 1, 1])
        for n in 0..<count { for f in kept where f >= 0 && f < frames { m.data[n * frames + f] = 0 } }
        return m
    }

    /// Clip n of a batch [N, C, F, H, W] as frames [F, C, H, W] (what the codec writes).
    public static func clip(_ clips: Tensor, _ n: Int) -> Tensor {
        precondition(clips.rank == 5 && n >= 0 && n < clips.shape[0], "clip \(n) of \(clips.shape)")
        // [C, F, H, W] -> [F, C, H, W]
        return GradMode.withoutGrad { clips.item(n).permuted(1, 0, 2, 3) }
    }

    /// Clips [N, C, F, H, W] tiled into one video [F, C, rows·(H+gap)−gap, columns·(W+gap)−gap]
    /// (row-major, gaps and empty cells at `background`): a preview or a `--out grid.gif`.
    public static func tile(_ clips: Tensor, columns: Int, gap: Int = 2, background: Float = -1) -> Tensor {
        precondition(clips.rank == 5 && columns >= 1 && gap >= 0, "tile: clips \(clips.shape), \(columns) columns")
        let (n, c, f, h, w) = (clips.shape[0], clips.shape[1], clips.shape[2], clips.shape[3], clips.shape[4])
        let cols = Swift.min(columns, n), rows = (n + cols - 1) / cols
        let H = rows * (h + gap) - gap, W = cols * (w + gap) - gap
        let out = Tensor.full([f, c, H, W], background)
        for k in 0..<n {
            let y0 = (k / cols) * (h + gap), x0 = (k % cols) * (w + gap)
            for ch in 0..<c {
                for fr in 0..<f {
                    let src = clips.data + (((k * c + ch) * f + fr) * h) * w
                    let dst = out.data + ((fr * c + ch) * H + y0) * W + x0
                    for y in 0..<h { (dst + y * W).update(from: src + y * w, count: w) }
                }
            }
        }
        return out
    }
}

/// Everything a video training run needs (RUN/recipe.json): the model, its scheduler, the
/// trainer's settings, the guidance label dropout, joint image training and the image model the
/// spatial layers start from.
public struct VideoRecipe: RunRecipe, Sendable, Equatable {
    public var model: VideoUNetConfig
    public var scheduler: SchedulerConfig
    public var training: TrainerOptions
    public var labelDropout: Float
    public var previewEvery: Int
    /// Fraction of steps that train on single frames (one-frame clips, `batch_size` × `num_frames`
    /// of them, from random clips and frames): joint image–video training (Ho et al. 2022, §4).
    public var jointImageFraction: Float
    /// An image pipeline or UNet2DModel folder whose weights start the spatial layers (`--init-from`).
    public var initFrom: String?

    public init(model: VideoUNetConfig, scheduler: SchedulerConfig, training: TrainerOptions, labelDropout: Float = 0.1,
                previewEvery: Int = 500, jointImageFraction: Float = 0, initFrom: String? = nil) {
        self.model = model; self.scheduler = scheduler; self.training = training
        self.labelDropout = labelDropout; self.previewEvery = previewEvery
        self.jointImageFraction = jointImageFraction; self.initFrom = initFrom
    }

    enum CodingKeys: String, CodingKey {
        case model, scheduler, training
        case labelDropout = "label_dropout", previewEvery = "preview_every"
        case jointImageFraction = "joint_image_fraction", initFrom = "init_from"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = VideoRecipe.movingFashion()
        self.init(model: try c.decode(VideoUNetConfig.self, forKey: .model),
                  scheduler: try c.decodeIfPresent(SchedulerConfig.self, forKey: .scheduler) ?? d.scheduler,
                  training: try c.decodeIfPresent(TrainerOptions.self, forKey: .training) ?? d.training,
                  labelDropout: try c.decodeIfPresent(Float.self, forKey: .labelDropout) ?? d.labelDropout,
                  previewEvery: try c.decodeIfPresent(Int.self, forKey: .previewEvery) ?? d.previewEvery,
                  jointImageFraction: try c.decodeIfPresent(Float.self, forKey: .jointImageFraction) ?? d.jointImageFraction,
                  initFrom: try c.decodeIfPresent(String.self, forKey: .initFrom))
        guard jointImageFraction >= 0 && jointImageFraction <= 1 else {
            throw ConfigError(key: "joint_image_fraction", reason: "must be in [0, 1], got \(jointImageFraction)")
        }
    }

    /// Same rule as `ImageRecipe.canResume`: all that training reads but the step count (the
    /// starting image model only matters before the first checkpoint).
    public func canResume(as other: VideoRecipe) -> Bool {
        var a = self, b = other
        a.training.steps = 0; b.training.steps = 0
        return a.model == b.model && a.training == b.training && a.labelDropout == b.labelDropout
            && a.jointImageFraction == b.jointImageFraction && scheduler.trainsLike(other.scheduler)
    }

    /// The recipe of the bundled model (`samples/video/`): 16-frame 32×32 gray moving-fashion
    /// clips at 8 fps, 10 classes + the null label. The spatial U-Net is exactly the bundled
    /// image model's (`ImageRecipe.fashionMNIST`: 32/64/128 channels, attention at 8×8), so
    /// `--init-from samples/image` starts from it; a temporal attention layer (heads of 32
    /// channels, sinusoidal frame positions) follows each of its 11 layers. ε-prediction on the
    /// linear DDPM schedule, AdamW at 5e-4, batch 4 for 1,400 steps (≈ 1 h on 2 cores: the spatial
    /// layers start trained, the temporal ones learn motion), EMA 0.999.
    public static func movingFashion() -> VideoRecipe {
        let image = ImageRecipe.fashionMNIST()
        var m = VideoUNetConfig(spatial: image.model)
        m.numFrames = 16; m.frameRate = 8
        m.temporalAttentionHeadDim = 32
        m.temporalConv = false
        m.framePosition = .sinusoidal
        var t = image.training
        t.steps = 1_400; t.batchSize = 4; t.learningRate = 5e-4; t.warmupSteps = 200
        t.emaDecay = 0.999; t.checkpointEvery = 250
        return VideoRecipe(model: m, scheduler: image.scheduler, training: t, labelDropout: 0.1, previewEvery: 500)
    }
}
