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
    public let classNames: [String]

    public init(unet: UNet2DModel, scheduler: SchedulerConfig, classNames: [String]) {
        self.unet = unet
        self.scheduler = scheduler
        self.classNames = classNames
    }

    /// The label meaning "no class" (classifier-free guidance), when the model was trained with one:
    /// one more embedding than classes.
    public var nullLabel: Int? {
        guard let k = unet.config.numClassEmbeds, k == classNames.count + 1 else { return nil }
        return k - 1
    }

    public static func load(_ dir: URL) throws -> ImagePipeline {
        let unet = try UNet2DModel.load(dir)
        let schedURL = dir.appendingPathComponent("scheduler/scheduler_config.json")
        let scheduler = FileManager.default.fileExists(atPath: schedURL.path)
            ? try SchedulerConfig.load(schedURL) : SchedulerConfig(.ddpm)
        var names: [String] = []
        let classesURL = dir.appendingPathComponent("classes.json")
        if let d = try? Data(contentsOf: classesURL) {
            guard let list = try? JSONDecoder().decode([String].self, from: d) else {
                throw ModelFolderError(path: classesURL.path, reason: "not a JSON list of class names")
            }
            names = list
        } else if let k = unet.config.numClassEmbeds {
            names = (0..<k).map(String.init)
        }
        return ImagePipeline(unet: unet, scheduler: scheduler, classNames: names)
    }

    public func save(to dir: URL, dtype: SafeTensorsDType = .F32) throws {
        let fm = FileManager.default
        try fm.createDirectory(at: dir.appendingPathComponent("scheduler"), withIntermediateDirectories: true)
        try unet.save(to: dir.appendingPathComponent("unet"), dtype: dtype)
        try AtomicFile.write(try scheduler.jsonData(), to: dir.appendingPathComponent("scheduler/scheduler_config.json"))
        let index: [String: JSONValue] = [
            "_class_name": .string("DDPMPipeline"), "_diffusers_version": .string(ConfigWriter.diffusersVersion),
            "unet": .array([.string("diffusers"), .string("UNet2DModel")]),
            "scheduler": .array([.string("diffusers"), .string(scheduler.className)]),
        ]
        try ConfigFile.write(index, to: dir.appendingPathComponent("model_index.json"))
        if !classNames.isEmpty {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted]
            try AtomicFile.write(try enc.encode(classNames), to: dir.appendingPathComponent("classes.json"))
        }
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
    public func label(_ s: String) -> Int? {
        if let i = classNames.firstIndex(where: { $0.caseInsensitiveCompare(s) == .orderedSame }) { return i }
        if let i = Int(s), i >= 0, i < (unet.config.numClassEmbeds ?? 0), i != nullLabel { return i }
        return nil
    }

    /// `count` images [N, C, H, W] in [-1, 1] (clamped).
    public func generate(count: Int, labels: [Int]?, sampler name: SamplerName? = nil, steps: Int, seed: UInt64,
                         guidance: Float = 1, start: Tensor? = nil,
                         initial: (sample: Tensor, strength: Float)? = nil, known: KnownRegion? = nil,
                         progress: ((Int, Int) -> Bool)? = nil) throws -> Tensor {
        let config = name.map { $0.config(from: scheduler) } ?? scheduler
        let sampler = try makeSampler(config, steps: steps)
        let size = unet.config.sampleSize ?? [32, 32]
        let shape = [count, unet.config.inChannels, size[0], size[1]]
        let g = (guidance != 1 && labels != nil) ? nullLabel.map { Guidance(scale: guidance, nullLabel: $0) } : nil
        let x = try Generation.sample(model: unet, shape: shape, sampler: sampler, schedule: try config.noiseSchedule(),
                                      seed: seed, start: start, labels: labels, guidance: g, initial: initial,
                                      known: known, progress: progress)
        return GradMode.withoutGrad { x.clamped(min: -1, max: 1) }
    }
}

/// Everything a training run needs: the model, the scheduler it is trained for, the trainer's
/// settings and the guidance label dropout. Written to RUN/recipe.json; `--config` reads one.
public struct ImageRecipe: Codable, Sendable {
    public var model: UNet2DConfig
    public var scheduler: SchedulerConfig
    public var training: TrainerOptions
    public var labelDropout: Float
    public var previewEvery: Int

    enum CodingKeys: String, CodingKey {
        case model, scheduler, training
        case labelDropout = "label_dropout", previewEvery = "preview_every"
    }

    /// The default recipe for class-conditional Fashion-MNIST (32×32 canvas, 10 classes + null).
    public static func fashionMNIST() -> ImageRecipe {
        var m = UNet2DConfig()
        m.sampleSize = [32, 32]; m.inChannels = 1; m.outChannels = 1
        m.blockOutChannels = [32, 64, 128]
        m.downBlockTypes = [.downBlock2D, .attnDownBlock2D, .attnDownBlock2D]
        m.upBlockTypes = [.attnUpBlock2D, .attnUpBlock2D, .upBlock2D]
        m.layersPerBlock = 2; m.normNumGroups = 8; m.attentionHeadDim = 8
        m.numClassEmbeds = 11
        var t = TrainerOptions()
        t.steps = 12_000; t.batchSize = 64; t.learningRate = 3e-4; t.warmupSteps = 500
        t.emaDecay = 0.999; t.checkpointEvery = 500
        return ImageRecipe(model: m, scheduler: SchedulerConfig(.ddpm, ["clip_sample": .bool(true)]),
                           training: t, labelDropout: 0.1, previewEvery: 1000)
    }
}
