import Foundation
import Tensor
import NN
import Diffusion

/// The audio modality: diffusers' `UNet1DModel` on waveforms [N, C, L] in [-1, 1] at the model's
/// sample rate; WAV files out, WAV/FLAC/OGG class folders in, or the rendered notes set. A trained
/// model is a `Pipeline<AudioModality>` folder (model_index.json names diffusers'
/// DanceDiffusionPipeline); the U-Net is convolutional, so it also generates lengths other than
/// the one it was trained on (any multiple of `lengthMultiple`).
public enum AudioModality: Modality {
    public typealias Model = UNet1DModel
    public typealias Data = AudioFolder

    public static var name: String { "audio" }
    public static var pipelineClass: String { "DanceDiffusionPipeline" }
    public static var fileExtension: String { "wav" }
    public static var dataExtensions: Set<String> { AudioFolder.extensions }
    /// The built-in training set (`--data builtin:notes`): `diffuse dataset notes` rendered into
    /// $XDG_CACHE_HOME/diffuse/notes (~/.cache/diffuse/notes) the first time.
    public static let builtinData = "builtin:notes"

    public static func defaultRecipe(classes: Int) -> AudioRecipe { .notes(classes: classes) }

    public static func validate(_ recipe: AudioRecipe) throws { try recipe.model.validate() }

    public static func loadData(_ spec: String, for recipe: AudioRecipe, fitting: Bool,
                                note: (String) -> Void = { _ in }) throws -> AudioFolder {
        var dir = URL(fileURLWithPath: spec)
        if spec == builtinData {
            dir = AudioDatasets.notesCache
            let made = try AudioDatasets.renderNotes(to: dir)
            if made > 0 { note("rendered \(made) notes into \(dir.path)") }
        }
        return try AudioFolder(dir, sampleRate: recipe.model.sampleRate ?? 16_000, length: recipe.model.sampleSize ?? 16_384)
    }

    public static func fitted(_ recipe: AudioRecipe, to data: AudioFolder) -> AudioRecipe {
        var r = recipe
        r.model.numClassEmbeds = data.classNames.isEmpty ? nil : data.classNames.count + 1
        return r
    }

    public static func mismatch(_ recipe: AudioRecipe, _ data: AudioFolder) -> String? {
        let m = recipe.model, length = m.sampleSize ?? data.length
        guard m.inChannels == 1, length == data.length, (m.sampleRate ?? data.sampleRate) == data.sampleRate else {
            return "the model takes \(m.inChannels)×\(length) clips at \(m.sampleRate ?? 0) Hz, the data is mono \(data.length) at \(data.sampleRate) Hz"
        }
        return nil
    }

    /// One clip per class (up to 8 spread over the set) joined into step-N.wav, and their
    /// spectrograms side by side in step-N.png.
    public static func writePreview(_ clips: Tensor, of pipeline: AudioPipeline, to base: URL) throws {
        try AudioCodec.write(AudioClip(samples: AudioPipeline.join(clips, fade: 160), sampleRate: pipeline.sampleRate),
                             to: base.appendingPathExtension("wav"))
        let n = clips.shape[2]
        try Spectrogram.write((0..<clips.shape[0]).map { Array(clips.scalars[($0 * n)..<(($0 + 1) * n)]) },
                              to: base.appendingPathExtension("png"))
    }

    /// Augmented clips have the model's trained length; real clips are cut or padded to it.
    public static func read(_ url: URL, for pipeline: AudioPipeline) throws -> Tensor {
        try pipeline.loadClip(url, count: 1, length: pipeline.length)
    }

    /// A [C, L] clip as 16-bit WAV at the model's rate.
    public static func write(_ sample: Tensor, of pipeline: AudioPipeline, to url: URL) throws {
        try AudioCodec.write(AudioClip(samples: sample, sampleRate: pipeline.sampleRate), to: url)
    }
}

public typealias AudioPipeline = Pipeline<AudioModality>
public typealias AudioRecipe = Recipe<AudioModality>

extension AudioFolder: TrainingData {}

extension UNet1DModel: FolderModel {
    public static var className: String { UNet1DConfig.className }

    public var labelRange: Int? { config.numClassEmbeds }

    public var summary: [String] {
        let c = config
        let rate = c.sampleRate.map { " at \($0) Hz" } ?? ""
        return ["sample \(c.sampleSize.map(String.init) ?? "any") samples\(rate) × \(c.inChannels) → \(c.isValueFunction ? "one value" : "\(c.outChannels) channels"), widths \(c.blockOutChannels), lengths a multiple of \(c.lengthMultiple)",
                "down \(c.downBlockTypes.map(\.rawValue).joined(separator: ", "))",
                "mid  \(c.midBlockType.rawValue)\(c.outBlockType.map { ", out \($0.rawValue)" } ?? "")",
                "up   \(c.upBlockTypes.map(\.rawValue).joined(separator: ", "))",
                "time \(c.timeEmbeddingType.rawValue)\(c.useTimestepEmbedding ? " through the time MLP" : " features"), classes \(c.numClassEmbeds.map(String.init) ?? "none")"]
    }

    public var sampleShape: [Int] {
        let k = config.lengthMultiple
        return [config.inChannels, Swift.max(config.minimumLength, (config.sampleSize ?? 65_536) / k * k)]
    }

    /// Per block: the skip state and a block's intermediates (~6 + layers) at its width, the
    /// length halving from level to level at most once per block.
    public func activationBytes(_ shape: [Int]) -> Double {
        var total = 0.0, length = Double(shape[2])
        for c in config.blockOutChannels {
            total += 4 * Double(shape[0]) * Double(c) * length * Double(config.layersPerBlock + 6)
            length = Swift.max(1, length / 2)
        }
        return total
    }

    public func problem(with shape: [Int]) -> String? {
        let c = config
        guard shape.count == 3, shape[1] == c.inChannels, shape[0] >= 1 else {
            return "has shape \(shape); the model takes [N, \(c.inChannels), L]"
        }
        guard shape[2] % c.lengthMultiple == 0, shape[2] >= c.minimumLength else {
            return "has length \(shape[2]); the model needs a multiple of \(c.lengthMultiple), at least \(c.minimumLength)"
        }
        return nil
    }
}

extension Pipeline where M == AudioModality {
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

    /// An audio file as `count` copies [N, C, length]: mixed to mono (or the first channels),
    /// resampled to the model's rate, cut or zero-padded at the end.
    public func loadClip(_ url: URL, count: Int, length: Int) throws -> Tensor {
        var clip = try AudioCodec.read(url, limits: .init(maxSeconds: Double(length) / Double(sampleRate) + 1))
        if channels == 1 { clip = clip.mono() }
        clip = clip.window(rate: sampleRate, length: length)
        let one = Tensor.zeros([1, channels, length])
        for c in 0..<channels {
            let src = Swift.min(c, clip.channels - 1)
            for j in 0..<Swift.min(length, clip.length) { one.data[c * length + j] = clip.samples.data[src * clip.length + j] }
        }
        return Tensor.concat([Tensor](repeating: one, count: count), axis: 0)
    }

    /// A mask [N, 1, L] that regenerates `gap` (1) and keeps the rest (0): the `KnownRegion` mask
    /// of filling a stretch of a clip.
    public static func gapMask(count: Int, length: Int, gap: Range<Int>) -> Tensor {
        let mask = Tensor.zeros([count, 1, length])
        for k in 0..<count { for j in gap.clamped(to: 0..<length) { mask.data[k * length + j] = 1 } }
        return mask
    }

    /// A filled gap blended into the clip it was cut from, so the seams do not click: over
    /// `fade` samples at each end of `gap` (inside it), an equal-power crossfade from the
    /// original into the generated sound and back. What lies outside the gap is `original`'s,
    /// unchanged. clips, original: [N, C, L].
    public static func crossfadeSeams(_ clips: Tensor, original: Tensor, gap: Range<Int>, fade: Int) -> Tensor {
        precondition(clips.shape == original.shape && clips.shape.count == 3, "crossfadeSeams: \(clips.shape) vs \(original.shape)")
        let rows = clips.shape[0] * clips.shape[1], l = clips.shape[2]
        let g = gap.clamped(to: 0..<l), f = Swift.max(0, Swift.min(fade, g.count / 2))
        let out = Tensor(shape: clips.shape, scalars: clips.scalars)
        for r in 0..<rows {
            let o = original.data + r * l, y = out.data + r * l
            for j in 0..<l where !g.contains(j) { y[j] = o[j] }
            guard f > 0 else { continue }
            for j in 0..<f {
                // generated weight sin(π/2·t), original cos(π/2·t), t from 0 at the seam to 1 inside
                let t = Double(j) / Double(f), a = Float(sin(Double.pi / 2 * t)), b = Float(cos(Double.pi / 2 * t))
                let head = g.lowerBound + j, tail = g.upperBound - 1 - j
                y[head] = a * y[head] + b * o[head]
                y[tail] = a * y[tail] + b * o[tail]
            }
        }
        return out
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

extension Recipe where M == AudioModality {
    /// The recipe of the bundled notes model (`samples/audio/`): the lean U-Net on 16 kHz mono
    /// clips of 16,384 samples, conditioned on `classes` pitches (+ the null label for guidance),
    /// v-prediction on a cosine schedule (waveforms have no "mostly flat" x₀ for ε to lean on).
    /// Sampling scales a predicted clip louder than full scale down to it instead of clipping it
    /// (diffusers' dynamic thresholding with the maximum as its quantile: ratio 1): guided notes
    /// overshoot, and a scaled waveform keeps its shape where a clipped one distorts.
    public static func notes(classes: Int) -> AudioRecipe {
        let m = UNet1DConfig.lean(sampleSize: 16_384, sampleRate: 16_000, channels: 1, numClassEmbeds: classes + 1)
        var t = TrainerOptions()
        t.steps = 4_000; t.batchSize = 16; t.learningRate = 1e-3; t.warmupSteps = 200
        t.emaDecay = 0.999; t.checkpointEvery = 250
        let s = SchedulerConfig(.ddpm, ["beta_schedule": .string("squaredcos_cap_v2"), "prediction_type": .string("v_prediction"),
                                        "clip_sample": .bool(true), "thresholding": .bool(true),
                                        "dynamic_thresholding_ratio": .number(1), "sample_max_value": .number(10)])
        return AudioRecipe(model: m, scheduler: s, training: t, labelDropout: 0.1, previewEvery: 500)
    }
}
