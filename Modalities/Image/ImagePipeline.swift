import Foundation
import Tensor
import NN
import Diffusion

/// A trained image model as a diffusers pipeline folder:
///
///     model_index.json
///     unet/config.json, unet/diffusion_pytorch_model.safetensors
///     scheduler/scheduler_config.json
///     classes.json            (our addition: class names by label; the null label is the last embedding)
public final class ImagePipeline {
    public let unet: UNet2DModel
    public let scheduler: SchedulerConfig
    public let classes: ClassLabels

    public init(unet: UNet2DModel, scheduler: SchedulerConfig, classNames: [String]) {
        self.unet = unet
        self.scheduler = scheduler
        classes = ClassLabels(names: classNames, labelCount: unet.config.numClassEmbeds)
    }

    public var classNames: [String] { classes.names }
    /// The label meaning "no class" (classifier-free guidance), when the model was trained with one.
    public var nullLabel: Int? { classes.nullLabel }

    public static func load(_ dir: URL) throws -> ImagePipeline {
        let unet = try UNet2DModel.load(dir)
        let classes = try ClassLabels.load(dir, labelCount: unet.config.numClassEmbeds)
        return ImagePipeline(unet: unet, scheduler: try PipelineFolder.scheduler(in: dir), classNames: classes.names)
    }

    public func save(to dir: URL, dtype: SafeTensorsDType = .F32) throws {
        try unet.save(to: dir.appendingPathComponent("unet"), dtype: dtype)
        try PipelineFolder.save(to: dir, pipelineClass: "DDPMPipeline", unetClass: "UNet2DModel", scheduler: scheduler, classes: classes)
    }

    /// An image file as a batch of `count` copies [N, C, H, W] at the model's size and channels.
    public func loadImage(_ url: URL, count: Int, channels: Int? = nil) throws -> Tensor {
        let c = channels ?? unet.config.inChannels
        let size = unet.config.sampleSize ?? [32, 32]
        let img = try PNGCodec.read(url, mode: c == 1 ? .gray : .rgb)
        let one = Tensor.zeros([c, size[0], size[0]])
        ImageFolder.cropResize(img, side: size[0], into: one.data)
        return Tensor.concat([Tensor](repeating: one.reshaped([1, c, size[0], size[0]]), count: count), axis: 0)
    }

    /// A label from what a user typed: a class name wins over an index.
    public func label(_ s: String) -> Int? { classes.label(s) }

    /// `count` images [N, C, H, W]: in [-1, 1] (clamped), or the sampler's final values with
    /// `clamp: false` (what `--raw` saves). The model runs on at most `batchSize` images at a
    /// time; every noise draw is per image, so the result does not depend on `batchSize`.
    public func generate(count: Int, labels: [Int]?, sampler name: SamplerName? = nil, steps: Int, seed: UInt64,
                         guidance: Float = 1, guidanceRescale: Float = 0, start: Tensor? = nil,
                         initial: (sample: Tensor, strength: Float)? = nil, known: KnownRegion? = nil,
                         batchSize: Int? = nil, firstIndex: Int = 0, clamp: Bool = true,
                         progress: ((Int, Int) -> Bool)? = nil) throws -> Tensor {
        let size = unet.config.sampleSize ?? [32, 32]
        let g = classes.guidance(scale: guidance, rescale: guidanceRescale, labels: labels)
        let x = try Generation.batched(model: unet, sampleShape: [unet.config.inChannels, size[0], size[1]], count: count,
                                       batchSize: batchSize, scheduler: scheduler, sampler: name, steps: steps, seed: seed,
                                       labels: labels, guidance: g, start: start, initial: initial, known: known,
                                       firstIndex: firstIndex, progress: progress)
        return clamp ? GradMode.withoutGrad { x.clamped(min: -1, max: 1) } : x
    }
}

/// Everything a training run needs: the model, the scheduler it is trained for, the trainer's
/// settings, the guidance label dropout and the data augmentation. Written to RUN/recipe.json;
/// `--config` reads one (keys left out take the defaults below).
public struct ImageRecipe: RunRecipe, Sendable, Equatable {
    public var model: UNet2DConfig
    public var scheduler: SchedulerConfig
    public var training: TrainerOptions
    public var labelDropout: Float
    public var previewEvery: Int
    /// Mirror each training image left–right with probability ½.
    public var randomFlip: Bool

    public init(model: UNet2DConfig, scheduler: SchedulerConfig, training: TrainerOptions,
                labelDropout: Float = 0.1, previewEvery: Int = 500, randomFlip: Bool = false) {
        self.model = model; self.scheduler = scheduler; self.training = training
        self.labelDropout = labelDropout; self.previewEvery = previewEvery; self.randomFlip = randomFlip
    }

    enum CodingKeys: String, CodingKey {
        case model, scheduler, training
        case labelDropout = "label_dropout", previewEvery = "preview_every", randomFlip = "random_flip"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = ImageRecipe.fashionMNIST()
        self.init(model: try c.decode(UNet2DConfig.self, forKey: .model),
                  scheduler: try c.decodeIfPresent(SchedulerConfig.self, forKey: .scheduler) ?? d.scheduler,
                  training: try c.decodeIfPresent(TrainerOptions.self, forKey: .training) ?? d.training,
                  labelDropout: try c.decodeIfPresent(Float.self, forKey: .labelDropout) ?? d.labelDropout,
                  previewEvery: try c.decodeIfPresent(Int.self, forKey: .previewEvery) ?? d.previewEvery,
                  randomFlip: try c.decodeIfPresent(Bool.self, forKey: .randomFlip) ?? d.randomFlip)
    }

    /// The recipe of the bundled model `samples/image/`: class-conditional Fashion-MNIST on a 32×32
    /// canvas, 10 classes + the null label. A 2.7 M-parameter U-Net (32/64/128 channels, one ResNet
    /// per level, attention at 8×8) — at batch 64 a step takes 1.3 s on 2 cores, so 4,000 steps
    /// (4.3 epochs) fit in 1.5 hours; ε-prediction on diffusers' linear DDPM schedule, AdamW at
    /// 1e-3 with a cosine decay, EMA 0.999.
    public static func fashionMNIST() -> ImageRecipe {
        var m = UNet2DConfig()
        m.sampleSize = [32, 32]; m.inChannels = 1; m.outChannels = 1
        m.blockOutChannels = [32, 64, 128]
        m.downBlockTypes = [.downBlock2D, .downBlock2D, .attnDownBlock2D]
        m.upBlockTypes = [.attnUpBlock2D, .upBlock2D, .upBlock2D]
        m.layersPerBlock = 1; m.normNumGroups = 8; m.attentionHeadDim = 8
        m.numClassEmbeds = 11
        var t = TrainerOptions()
        t.steps = 4_000; t.batchSize = 64; t.learningRate = 1e-3; t.warmupSteps = 200
        t.emaDecay = 0.999; t.checkpointEvery = 250
        // Predicted images are clipped to [-1, 1] while sampling. `thresholding` with the default
        // sample_max_value 1 is exactly that clip for DDPM/DDIM, and unlike `clip_sample` it carries
        // over to DPM-Solver (diffusers advises it for pixel-space models): without it, 20-step
        // DPM++ with guidance saturates or leaves speckle on a young model.
        return ImageRecipe(model: m, scheduler: SchedulerConfig(.ddpm, ["clip_sample": .bool(true), "thresholding": .bool(true)]),
                           training: t, labelDropout: 0.1, previewEvery: 500)
    }

    /// Whether a run made with `self` can go on with `other`: everything training reads must
    /// match but the number of steps (a finished run can be extended); sampling-only settings
    /// (the scheduler's clipping, the preview cadence) may change.
    public func canResume(as other: ImageRecipe) -> Bool {
        var a = self, b = other
        a.training.steps = 0; b.training.steps = 0
        return a.model == b.model && a.training == b.training && a.labelDropout == b.labelDropout
            && a.randomFlip == b.randomFlip && scheduler.trainsLike(other.scheduler)
    }
}
