import Foundation
import Tensor
import NN
import Diffusion
import Image

/// The video modality: `VideoUNetModel` (the image U-Net per frame plus temporal attention) on
/// clips [N, C, F, H, W] in [-1, 1] at the model's frame rate; MP4 (or GIF) files out, class
/// folders of MP4/WebM/GIF or the rendered moving-fashion set in. A trained model is a
/// `Pipeline<VideoModality>` folder (model_index.json names our VideoDiffusionPipeline); temporal
/// attention has no fixed length, so any number of frames can be generated.
public enum VideoModality: Modality {
    public typealias Model = VideoUNetModel
    public typealias Data = VideoFolder
    public typealias Extras = VideoRecipeExtras

    public static var name: String { "video" }
    public static var pipelineClass: String { "VideoDiffusionPipeline" }
    public static var fileExtension: String { "mp4" }
    public static var dataExtensions: Set<String> { VideoFolder.extensions }
    /// The built-in training set (`--data builtin:moving-fashion`): `diffuse dataset
    /// moving-fashion` (1000 clips per class) rendered into $XDG_CACHE_HOME/diffuse/moving-fashion
    /// the first time.
    public static let builtinData = "builtin:moving-fashion"

    public static func defaultRecipe(classes: Int) -> VideoRecipe { .movingFashion() }

    public static func validate(_ recipe: VideoRecipe) throws { try recipe.model.validate() }

    /// Clips are resampled to the recipe's frame rate, cut to its frame count and resized to its
    /// frame size; gray or RGB as the files are when `fitting` (and no image model is given to
    /// start from), else as the recipe's model takes them.
    public static func loadData(_ spec: String, for recipe: VideoRecipe, fitting: Bool,
                                note: (String) -> Void = { _ in }) throws -> VideoFolder {
        var dir = URL(fileURLWithPath: spec)
        let m = recipe.model
        if spec == builtinData {
            var o = MovingFashion.Options()
            o.size = m.frameSize[0]; o.frames = m.numFrames; o.fps = m.frameRate
            let (folder, made) = try MovingFashion.renderBuiltin(options: o) { _, _ in }
            dir = folder
            if made > 0 { note("rendered \(made) clips into \(dir.path)") }
        }
        return try VideoFolder(dir, frames: m.numFrames, size: m.frameSize[0],
                               channels: fitting && recipe.initFrom == nil ? nil : m.spatial.inChannels, fps: m.frameRate)
    }

    public static func fitted(_ recipe: VideoRecipe, to data: VideoFolder) -> VideoRecipe {
        var r = recipe
        r.model.spatial.numClassEmbeds = data.classNames.isEmpty ? nil : data.classNames.count + 1
        if r.initFrom == nil {
            r.model.spatial.inChannels = data.channels
            r.model.spatial.outChannels = data.channels
        }
        return r
    }

    public static func mismatch(_ recipe: VideoRecipe, _ data: VideoFolder) -> String? {
        let m = recipe.model
        guard m.spatial.inChannels == data.channels, m.frameSize == [data.size, data.size], m.numFrames == data.frames else {
            return "the model takes \(m.numFrames) frames of \(m.spatial.inChannels)×\(m.frameSize), the data is \(data.frames) frames of \(data.channels)×\([data.size, data.size])"
        }
        return nil
    }

    /// A new model that starts from the recipe's `init_from` unless the run resumes from a
    /// checkpoint: a video model's weights (fine-tuning), or an image model's in the spatial layers.
    /// Before the trainer exists: its EMA starts from these weights.
    public static func makeModel(for recipe: VideoRecipe, resuming: Bool) throws -> VideoUNetModel {
        NNInit.seed(recipe.training.seed)
        let unet = try NNInit.budgeted("training a VideoUNetModel", bytesPerParameter: NNInit.training) { try VideoUNetModel(config: recipe.model) }
        if let from = recipe.initFrom, !resuming {
            let url = URL(fileURLWithPath: from)
            if try isVideoModel(url) { try unet.start(from: url) } else {
                try unet.loadSpatial(from: try UNet2DModel.load(url), source: from)
            }
        }
        return unet
    }

    /// A video model folder starts the whole model (fine-tuning), an image model the spatial layers.
    public static func model(startingFrom url: URL, recipe: VideoRecipe) throws -> VideoUNetConfig {
        if try isVideoModel(url) {
            return try ModelFolder.config(VideoUNetConfig.self, at: url, className: VideoUNetConfig.className).config
        }
        var m = recipe.model
        m.spatial = try ConfigFile.read(UNet2DConfig.self, from: try ModelFolder.locate(url).config)
        return m
    }

    static func isVideoModel(_ url: URL) throws -> Bool {
        try ModelFolder.className(of: url) == VideoUNetConfig.className
    }

    /// A batch of clips, or — with probability `joint_image_fraction` — single frames of random
    /// clips as one-frame clips [(B F), C, 1, H, W] (joint image–video training).
    public static func batch(_ data: VideoFolder, recipe: VideoRecipe, rng: inout RandomGenerator) throws -> (Tensor, [Int]) {
        let batch = recipe.training.batchSize, m = recipe.model
        let imageStep = recipe.extras.jointImageFraction > 0 && rng.uniform([1]).data[0] < recipe.extras.jointImageFraction
        if imageStep {
            let k = batch * m.numFrames
            return try data.frameBatch(rng.integers(k, below: data.count), frameIndices: rng.integers(k, below: data.frames))
        }
        return try data.batch(rng.integers(batch, below: data.count))
    }

    /// One clip per class (up to 8 spread over the set) tiled side by side into step-N.gif.
    public static func writePreview(_ clips: Tensor, of pipeline: VideoPipeline, to base: URL) throws {
        try VideoCodec.writeGIF(VideoPipeline.tile(clips, columns: 8), fps: pipeline.fps, to: base.appendingPathExtension("gif"))
    }

    /// Augmented clips have the model's frame count, size and rate; real clips are resampled to them.
    public static func read(_ url: URL, for pipeline: VideoPipeline) throws -> Tensor { try pipeline.loadClip(url, count: 1) }

    /// A [C, F, H, W] clip as MP4 (H.264 yuv420p where FFmpeg has it) at the model's frame rate.
    public static func write(_ sample: Tensor, of pipeline: VideoPipeline, to url: URL) throws {
        _ = try VideoCodec.writeMP4(GradMode.withoutGrad { sample.permuted(1, 0, 2, 3) }, fps: pipeline.fps, to: url)
    }
}

public typealias VideoPipeline = Pipeline<VideoModality>
public typealias VideoRecipe = Recipe<VideoModality>

extension VideoFolder: TrainingData {}

/// What the video recipe adds: joint image–video training (where a run starts, `init_from`, is
/// every recipe's: `Recipe.initFrom`).
public struct VideoRecipeExtras: RecipeExtras {
    /// Fraction of steps that train on single frames (one-frame clips, `batch_size` × `num_frames`
    /// of them, from random clips and frames): joint image–video training (Ho et al. 2022, §4).
    public var jointImageFraction: Float

    public init(jointImageFraction: Float = 0) { self.jointImageFraction = jointImageFraction }
    public static var defaults: VideoRecipeExtras { VideoRecipeExtras() }

    enum CodingKeys: String, CodingKey { case jointImageFraction = "joint_image_fraction" }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        jointImageFraction = try c.decodeIfPresent(Float.self, forKey: .jointImageFraction) ?? 0
        guard jointImageFraction >= 0 && jointImageFraction <= 1 else {
            throw ConfigError(key: "joint_image_fraction", reason: "must be in [0, 1], got \(jointImageFraction)")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(jointImageFraction, forKey: .jointImageFraction)
    }

    public func trainsLike(_ other: VideoRecipeExtras) -> Bool { jointImageFraction == other.jointImageFraction }
}

extension VideoUNetModel: FolderModel {
    public static var className: String { VideoUNetConfig.className }

    /// Class embeddings, or 10 for timestep-embedded classes (any label works there).
    public var labelRange: Int? { config.isClassConditional ? (config.spatial.numClassEmbeds ?? 10) : nil }

    public var summary: [String] {
        let v = config, c = v.spatial
        return ["clips of \(v.numFrames) frames at \(String(format: "%g", v.frameRate)) fps, \(v.frameSize[0])×\(v.frameSize[1]) × \(c.inChannels) → \(c.outChannels) channels, widths \(c.blockOutChannels), \(c.layersPerBlock) layers per block",
                "down \(c.downBlockTypes.map(\.rawValue).joined(separator: ", "))",
                "up   \(c.upBlockTypes.map(\.rawValue).joined(separator: ", "))",
                "temporal: \(temporal.count) attention layers (\(v.temporalAttentionHeadDim.map { "heads of \($0)" } ?? "one head"), \(v.framePosition.rawValue) frame positions)\(v.temporalConv ? " with temporal convolutions" : ""), \(String(format: "%.3f", Double(temporalParameterCount) / 1e6)) M parameters",
                "time \(c.timeEmbeddingType.rawValue), classes \(c.numClassEmbeds.map(String.init) ?? (c.classEmbedType == .timestep ? "timestep-embedded" : "none"))"]
    }

    public var sampleShape: [Int] {
        let s = config.frameSize
        return [config.spatial.inChannels, config.numFrames, s[0], s[1]]
    }

    /// The spatial U-Net's over every frame (the temporal layers add one level's worth at most).
    public func activationBytes(_ shape: [Int]) -> Double {
        config.spatial.activationBytes(batch: Double(shape[0]) * Double(shape[2]), height: shape[3], width: shape[4]) * 1.2
    }

    public func problem(with shape: [Int]) -> String? {
        let c = config.spatial
        guard shape.count == 5, shape[1] == c.inChannels, shape[0] >= 1, shape[2] >= 1 else {
            return "has shape \(shape); the model takes [N, \(c.inChannels), F, H, W]"
        }
        let down = 1 << (c.blockOutChannels.count - 1)
        guard shape[3] % down == 0, shape[4] % down == 0 else {
            return "has frames of \(shape[3])×\(shape[4]); the model needs multiples of \(down)"
        }
        return nil
    }
}

extension Pipeline where M == VideoModality {
    public var frames: Int { unet.config.numFrames }
    public var fps: Double { unet.config.frameRate }
    /// Frame side (frames are square).
    public var size: Int { unet.config.frameSize[0] }
    public var channels: Int { unet.config.spatial.inChannels }

    /// A video file as `count` copies [N, C, F, H, W] at the model's size, channels and frame rate
    /// (its first `frames` frames; the last one held when it is shorter).
    public func loadClip(_ url: URL, count: Int, frames: Int? = nil) throws -> Tensor {
        let f = frames ?? self.frames
        let one = try VideoFolder.decode(url, frames: f, size: size, channels: channels, fps: fps)  // [C, F, H, W]
        return Tensor.concat([Tensor](repeating: one.reshaped([1, channels, f, size, size]), count: count), axis: 0)
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

extension Recipe where M == VideoModality {
    public var jointImageFraction: Float {
        get { extras.jointImageFraction }
        set { extras.jointImageFraction = newValue }
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
