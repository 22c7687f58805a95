import Foundation
import Tensor
import NN
import Diffusion

/// A trained waveform model as a pipeline folder (`PipelineFolder` layout; model_index names
/// diffusers' DanceDiffusionPipeline and UNet1DModel). Clips are [N, C, L] in [-1, 1] at
/// `sampleRate`; the U-Net is convolutional, so it also generates lengths other than the one it
/// was trained on (any multiple of `lengthMultiple`).
public final class AudioPipeline {
    public let unet: UNet1DModel
    public let scheduler: SchedulerConfig
    public let classes: ClassLabels

    public init(unet: UNet1DModel, scheduler: SchedulerConfig, classNames: [String]) {
        self.unet = unet
        self.scheduler = scheduler
        classes = ClassLabels(names: classNames, labelCount: unet.config.numClassEmbeds)
    }

    public var sampleRate: Int { unet.config.sampleRate ?? 16_000 }
    /// The clip length the model was trained on (samples).
    public var length: Int { unet.config.sampleSize ?? 16_384 }
    public var channels: Int { unet.config.inChannels }
    public var lengthMultiple: Int { unet.config.lengthMultiple }

    /// `seconds` of audio rounded up to a length the model takes.
    public func length(seconds: Double) -> Int {
        let n = Int((seconds * Double(sampleRate)).rounded(.up))
        let m = Swift.max(1, lengthMultiple)
        return Swift.max(m, (n + m - 1) / m * m)
    }

    public static func load(_ dir: URL) throws -> AudioPipeline {
        let unet = try UNet1DModel.load(dir)
        let classes = try ClassLabels.load(dir, labelCount: unet.config.numClassEmbeds)
        return AudioPipeline(unet: unet, scheduler: try PipelineFolder.scheduler(in: dir), classNames: classes.names)
    }

    public func save(to dir: URL, dtype: SafeTensorsDType = .F32) throws {
        try unet.save(to: dir.appendingPathComponent("unet"), dtype: dtype)
        try PipelineFolder.save(to: dir, pipelineClass: "DanceDiffusionPipeline", unetClass: "UNet1DModel",
                                scheduler: scheduler, classes: classes)
    }

    /// An audio file as `count` copies [N, C, length]: mixed to mono (or the first channels),
    /// resampled to the model's rate, cut or zero-padded at the end.
    public func loadClip(_ url: URL, count: Int, length: Int) throws -> Tensor {
        var clip = try AudioCodec.read(url)
        if channels == 1 { clip = clip.mono() }
        if clip.sampleRate != sampleRate { clip = clip.resampled(to: sampleRate) }
        let one = Tensor.zeros([1, channels, length])
        for c in 0..<channels {
            let src = Swift.min(c, clip.channels - 1)
            for j in 0..<Swift.min(length, clip.length) { one.data[c * length + j] = clip.samples.data[src * clip.length + j] }
        }
        return Tensor.concat([Tensor](repeating: one, count: count), axis: 0)
    }

    /// `count` clips [N, C, length] (clamped to [-1, 1] unless `clamp` is false); see
    /// `Generation.batched` for batching, seeds and the init/known arguments.
    public func generate(count: Int, length: Int? = nil, labels: [Int]?, sampler name: SamplerName? = nil, steps: Int,
                         seed: UInt64, guidance: Float = 1, guidanceRescale: Float = 0, start: Tensor? = nil,
                         initial: (sample: Tensor, strength: Float)? = nil, known: KnownRegion? = nil,
                         batchSize: Int? = nil, firstIndex: Int = 0, clamp: Bool = true,
                         progress: ((Int, Int) -> Bool)? = nil) throws -> Tensor {
        let n = length ?? self.length
        precondition(n % Swift.max(1, lengthMultiple) == 0, "generate: length \(n) is not a multiple of \(lengthMultiple)")
        let g = classes.guidance(scale: guidance, rescale: guidanceRescale, labels: labels)
        let x = try Generation.batched(model: unet, sampleShape: [channels, n], count: count, batchSize: batchSize,
                                       scheduler: scheduler, sampler: name, steps: steps, seed: seed, labels: labels,
                                       guidance: g, start: start, initial: initial, known: known, firstIndex: firstIndex,
                                       progress: progress)
        return clamp ? GradMode.withoutGrad { x.clamped(min: -1, max: 1) } : x
    }

    /// Clips [N, C, L] joined one after another into one clip [C, ·] with `fade` samples of
    /// equal-power crossfade between neighbours (a melody from one note per class).
    public static func join(_ clips: Tensor, fade: Int) -> Tensor {
        let n = clips.shape[0], c = clips.shape[1], l = clips.shape[2]
        let f = Swift.max(0, Swift.min(fade, l / 2))
        let total = n * l - (n - 1) * f
        let out = Tensor.zeros([c, total])
        for k in 0..<n {
            let at = k * (l - f)
            for ch in 0..<c {
                let src = clips.data + (k * c + ch) * l, dst = out.data + ch * total + at
                for j in 0..<l {
                    var w: Float = 1
                    if k > 0 && j < f { w = Float(sin(Double.pi / 2 * Double(j) / Double(f))) }
                    if k < n - 1 && j >= l - f { w = Float(cos(Double.pi / 2 * Double(j - (l - f)) / Double(f))) }
                    dst[j] += w * src[j]
                }
            }
        }
        return out
    }
}

/// Everything an audio training run needs (RUN/recipe.json): the model, its scheduler, the
/// trainer's settings and the guidance label dropout.
public struct AudioRecipe: RunRecipe, Sendable, Equatable {
    public var model: UNet1DConfig
    public var scheduler: SchedulerConfig
    public var training: TrainerOptions
    public var labelDropout: Float
    public var previewEvery: Int

    public init(model: UNet1DConfig, scheduler: SchedulerConfig, training: TrainerOptions,
                labelDropout: Float = 0.1, previewEvery: Int = 500) {
        self.model = model; self.scheduler = scheduler; self.training = training
        self.labelDropout = labelDropout; self.previewEvery = previewEvery
    }

    enum CodingKeys: String, CodingKey {
        case model, scheduler, training
        case labelDropout = "label_dropout", previewEvery = "preview_every"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = AudioRecipe.notes(classes: 25)
        self.init(model: try c.decode(UNet1DConfig.self, forKey: .model),
                  scheduler: try c.decodeIfPresent(SchedulerConfig.self, forKey: .scheduler) ?? d.scheduler,
                  training: try c.decodeIfPresent(TrainerOptions.self, forKey: .training) ?? d.training,
                  labelDropout: try c.decodeIfPresent(Float.self, forKey: .labelDropout) ?? d.labelDropout,
                  previewEvery: try c.decodeIfPresent(Int.self, forKey: .previewEvery) ?? d.previewEvery)
    }

    /// Same rule as `ImageRecipe.canResume`: all that training reads but the step count.
    public func canResume(as other: AudioRecipe) -> Bool {
        var a = self, b = other
        a.training.steps = 0; b.training.steps = 0
        return a.model == b.model && a.training == b.training && a.labelDropout == b.labelDropout
            && scheduler.trainsLike(other.scheduler)
    }

    /// The recipe of the bundled notes model (`samples/audio/`): the lean U-Net on 16 kHz mono
    /// clips of 16,384 samples, conditioned on `classes` pitches (+ the null label for guidance),
    /// v-prediction on a cosine schedule (waveforms have no "mostly flat" x₀ for ε to lean on).
    public static func notes(classes: Int) -> AudioRecipe {
        let m = UNet1DConfig.lean(sampleSize: 16_384, sampleRate: 16_000, channels: 1, numClassEmbeds: classes + 1)
        var t = TrainerOptions()
        t.steps = 4_000; t.batchSize = 16; t.learningRate = 1e-3; t.warmupSteps = 200
        t.emaDecay = 0.999; t.checkpointEvery = 250
        let s = SchedulerConfig(.ddpm, ["beta_schedule": .string("squaredcos_cap_v2"), "prediction_type": .string("v_prediction"),
                                        "clip_sample": .bool(true)])
        return AudioRecipe(model: m, scheduler: s, training: t, labelDropout: 0.1, previewEvery: 500)
    }
}
