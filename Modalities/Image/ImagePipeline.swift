import Foundation
import Tensor
import NN
import Diffusion

/// The image modality: diffusers' `UNet2DModel` on [N, C, H, W] in [-1, 1], PNG files, class
/// folders of PNGs or Fashion-MNIST. A trained model is a `Pipeline<ImageModality>` folder
/// (model_index.json names diffusers' DDPMPipeline).
public enum ImageModality: Modality {
    public typealias Model = UNet2DModel
    public typealias Data = ImageTrainingSet
    public typealias Extras = ImageRecipeExtras

    public static var name: String { "image" }
    public static var pipelineClass: String { "DDPMPipeline" }
    public static var fileExtension: String { "png" }
    public static var dataExtensions: Set<String> { ["png"] }
    /// The built-in training set (`--data builtin:fashion-mnist`).
    public static let builtinData = "builtin:fashion-mnist"

    public static func defaultRecipe(classes: Int) -> ImageRecipe { .fashionMNIST() }

    /// builtin:fashion-mnist or a folder DIR/<class>/*.png at the recipe's size; gray or RGB as
    /// the files are when `fitting`, else as the recipe's model takes them.
    public static func loadData(_ spec: String, for recipe: ImageRecipe, fitting: Bool,
                                note: (String) -> Void = { _ in }) throws -> ImageTrainingSet {
        let side = recipe.model.sampleSize?[0] ?? 32
        if spec == builtinData { return ImageTrainingSet(try FashionMNIST(train: true, size: side)) }
        return ImageTrainingSet(try ImageFolder(URL(fileURLWithPath: spec), channels: fitting ? nil : recipe.model.inChannels, size: side))
    }

    public static func fitted(_ recipe: ImageRecipe, to data: ImageTrainingSet) -> ImageRecipe {
        var r = recipe
        r.model.numClassEmbeds = data.classNames.isEmpty ? nil : data.classNames.count + 1
        r.model.inChannels = data.channels
        r.model.outChannels = data.channels
        return r
    }

    public static func mismatch(_ recipe: ImageRecipe, _ data: ImageTrainingSet) -> String? {
        let m = recipe.model, size = [data.source.size.height, data.source.size.width]
        guard m.inChannels == data.channels, m.sampleSize.map({ $0 == size }) ?? true else {
            return "the model takes \(m.inChannels)×\(m.sampleSize ?? []) images, the data has \(data.channels)×\(size)"
        }
        return nil
    }

    public static func batch(_ data: ImageTrainingSet, recipe: ImageRecipe, rng: inout RandomGenerator) throws -> (Tensor, [Int]) {
        let n = recipe.training.batchSize
        let (x, y) = try data.batch(rng.integers(n, below: data.count))
        if recipe.extras.randomFlip {
            // x: [N, C, H, W]; mirror along W the samples whose coin came up
            let flip = rng.integers(n, below: 2)
            if flip.contains(1) { x.flipWidth(where: flip.map { $0 == 1 }) }
        }
        return (x, y)
    }

    /// A row of 8 per class (16 images unconditional).
    public static func previewRequest(classes: Int?, guided: Bool) -> SamplingRequest {
        let perRow = 8
        var r = SamplingRequest(count: 2 * perRow, sampler: .dpmpp2m, steps: 20, seed: 1, guidance: guided ? 2 : 1)
        if let classes {
            let labels = (0..<classes).flatMap { [Int](repeating: $0, count: perRow) }
            r.count = labels.count
            r.conditioning = .labels(labels)
        }
        return r
    }

    public static func writePreview(_ samples: Tensor, of pipeline: ImagePipeline, to base: URL) throws {
        try ImageGrid.write(samples, columns: 8, to: base.appendingPathExtension("png"))
    }

    public static func read(_ url: URL, for pipeline: ImagePipeline) throws -> Tensor { try pipeline.loadImage(url, count: 1) }

    public static func write(_ sample: Tensor, of pipeline: ImagePipeline, to url: URL) throws { try PNGCodec.write(sample, to: url) }

    /// [C, H, W] of a PNG: 1 channel for gray (with or without alpha), else 3.
    public static func fileShape(_ url: URL) throws -> [Int]? {
        let p = try PNGCodec.readPixels(url)
        return [p.channels <= 2 ? 1 : 3, p.height, p.width]
    }

    /// The sample [C, h, w] made back into an image of `shape` [C', H, W]: resized bilinearly
    /// (the inverse of how inputs are fitted to the model: a centre crop of the output's aspect),
    /// gray made RGB by copying, RGB made gray by averaging.
    public static func write(_ sample: Tensor, of pipeline: ImagePipeline, to url: URL, shape: [Int]?) throws {
        guard let shape, shape.count == 3, shape != sample.shape else { return try write(sample, of: pipeline, to: url) }
        let c = sample.shape[0], (oc, h, w) = (shape[0], shape[1], shape[2])
        let resized = Tensor.zeros([c, h, w])
        ImageFolder.cropResize(sample, height: h, width: w, into: resized.data)
        guard oc != c else { return try PNGCodec.write(resized, to: url) }
        let out = Tensor.zeros([oc, h, w]), plane = h * w
        for i in 0..<plane {
            if oc == 3 { for k in 0..<3 { out.data[k * plane + i] = resized.data[i] } }
            else { out.data[i] = (0..<c).reduce(Float(0)) { $0 + resized.data[$1 * plane + i] } / Float(c) }
        }
        try PNGCodec.write(out, to: url)
    }
}

public typealias ImagePipeline = Pipeline<ImageModality>
public typealias ImageRecipe = Recipe<ImageModality>

/// An image set as a training run reads it (Fashion-MNIST or a PNG folder).
public final class ImageTrainingSet: TrainingData {
    public let source: any ImageDataset
    public init(_ set: any ImageDataset) { source = set }
    public var count: Int { source.count }
    public var channels: Int { source.channels }
    public var classNames: [String] { source.classNames }
    public func batch(_ indices: [Int]) throws -> (Tensor, [Int]) { try source.batch(indices) }
    public var skipped: Set<String> { (source as? ImageFolder)?.skipped ?? [] }
}

/// What the image recipe adds: mirroring training images.
public struct ImageRecipeExtras: RecipeExtras {
    /// Mirror each training image left–right with probability ½.
    public var randomFlip: Bool
    public init(randomFlip: Bool = false) { self.randomFlip = randomFlip }
    public static var defaults: ImageRecipeExtras { ImageRecipeExtras() }
    enum CodingKeys: String, CodingKey { case randomFlip = "random_flip" }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        randomFlip = try c.decodeIfPresent(Bool.self, forKey: .randomFlip) ?? false
    }
    public func trainsLike(_ other: ImageRecipeExtras) -> Bool { self == other }
}

extension UNet2DModel: FolderModel {
    public static var className: String { UNet2DConfig.className }

    /// Class embeddings, or 10 for timestep-embedded classes (any label works there).
    public var labelRange: Int? { config.isClassConditional ? (config.numClassEmbeds ?? 10) : nil }

    public var summary: [String] {
        let c = config
        return ["sample \(c.sampleSize.map { "\($0[0])×\($0[1])" } ?? "any") × \(c.inChannels) → \(c.outChannels) channels, widths \(c.blockOutChannels), \(c.layersPerBlock) layers per block",
                "down \(c.downBlockTypes.map(\.rawValue).joined(separator: ", "))",
                "up   \(c.upBlockTypes.map(\.rawValue).joined(separator: ", "))",
                "time \(c.timeEmbeddingType.rawValue), classes \(c.numClassEmbeds.map(String.init) ?? (c.classEmbedType == .timestep ? "timestep-embedded" : "none"))"]
    }

    public var sampleShape: [Int] {
        let s = config.sampleSize ?? [32, 32]
        return [config.inChannels, s[0], s[1]]
    }

    public func activationBytes(_ shape: [Int]) -> Double {
        config.activationBytes(batch: Double(shape[0]), height: shape[2], width: shape[3])
    }

    public func problem(with shape: [Int]) -> String? {
        let c = config
        guard shape.count == 4, shape[1] == c.inChannels, shape[0] >= 1 else {
            return "has shape \(shape); the model takes [N, \(c.inChannels), H, W]"
        }
        let down = 1 << (c.blockOutChannels.count - 1)
        guard shape[2] % down == 0, shape[3] % down == 0 else {
            return "is \(shape[2])×\(shape[3]); the model needs multiples of \(down)"
        }
        return nil
    }
}

extension Pipeline where M == ImageModality {
    /// An image file as a batch of `count` copies [N, C, H, W] at the model's size and channels.
    public func loadImage(_ url: URL, count: Int, channels: Int? = nil) throws -> Tensor {
        let c = channels ?? unet.config.inChannels
        let size = unet.config.sampleSize ?? [32, 32]
        let img = try PNGCodec.read(url, mode: c == 1 ? .gray : .rgb)
        let one = Tensor.zeros([c, size[0], size[0]])
        ImageFolder.cropResize(img, side: size[0], into: one.data)
        return Tensor.concat([Tensor](repeating: one.reshaped([1, c, size[0], size[0]]), count: count), axis: 0)
    }

    /// An inpainting mask from a PNG: white = regenerate (1), black = keep (0); [N, 1, H, W].
    public func loadMask(_ url: URL, count: Int) throws -> Tensor {
        let m = try loadImage(url, count: count, channels: 1)
        return Tensor(shape: m.shape, scalars: m.scalars.map { $0 > 0 ? 1 : 0 })
    }
}

extension Recipe where M == ImageModality {
    /// Mirror each training image left–right with probability ½.
    public var randomFlip: Bool {
        get { extras.randomFlip }
        set { extras.randomFlip = newValue }
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

}
