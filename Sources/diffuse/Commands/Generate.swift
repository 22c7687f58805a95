import ArgumentParser
import Foundation
import Tensor
import NN
import Diffusion
import Image
import Audio
import Video

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate samples with a trained model.",
        subcommands: [GenerateImage.self, GenerateAudio.self, GenerateVideo.self]
    )
}

extension SamplerName: ExpressibleByArgument {}

/// Where bundled models live: $DIFFUSE_SAMPLES, else samples/ beside the package or executable.
func bundledModel(_ modality: String) -> URL? {
    var candidates: [URL] = []
    if let env = ProcessInfo.processInfo.environment["DIFFUSE_SAMPLES"] { candidates.append(URL(fileURLWithPath: env)) }
    let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    var dir = exe
    for _ in 0..<5 { candidates.append(dir.appendingPathComponent("samples")); dir = dir.deletingLastPathComponent() }
    candidates.append(URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("samples"))
    return candidates.map { $0.appendingPathComponent(modality) }
        .first { FileManager.default.fileExists(atPath: $0.appendingPathComponent("model_index.json").path) }
}

/// The labels `--class` asks for (a list given in turn), or every class in turn when it is left
/// out of a conditional model's call; nil for an unconditional model.
func requestedLabels(_ list: String?, of classes: ClassLabels, count: Int, model dir: URL) throws -> [Int]? {
    guard let list else { return classes.isConditional ? classes.cycling(count: count) : nil }
    guard classes.isConditional else { throw ModelFolderError(path: dir.path, reason: "the model is unconditional: drop --class") }
    do { return try classes.labels(list, count: count) } catch let e as UnknownClass { throw ValidationError("--class \(e)") }
}

struct GenerateImage: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Generate images (PNG) with an image model.",
        discussion: "Without --model the bundled model in samples/image/ is used."
    )

    @Option(help: "Model: a pipeline folder as `diffuse train image` writes it (RUN/model).") var model: String?
    @Option(help: "Number of images.") var count = 8
    @Option(help: "Images per model call (default: all); the images do not depend on it.") var batch: Int?
    @Option(name: .customLong("class"), help: "Class name or index, or a comma-separated list given to the images in turn.")
    var classes: String?
    @Option(help: "Classifier-free guidance scale (1 = none).") var guidance: Float = 2
    @Option(help: "Pull the guided prediction's spread back towards the conditional one's (0 = off, 1 = fully; diffusers' guidance_rescale).")
    var guidanceRescale: Float = 0
    @Option(help: "Sampler.") var sampler: SamplerName = .dpmpp2m
    @Option(help: "Sampling steps.") var steps = 20
    @Option(help: "Seed.") var seed: UInt64 = 0
    @Option(help: "Starting noise: a safetensors file with key `latents` [N, C, H, W].") var latents: String?
    @Option(name: [.customLong("init"), .customLong("init-image")], help: "Image-to-image: start from this PNG, noised to --strength.")
    var initImage: String?
    @Option(help: "How far --init-image is noised: 0 keeps it, 1 replaces it.") var strength: Float = 0.6
    @Option(help: "Inpainting mask PNG for --init-image: white = regenerate, black = keep.") var mask: String?
    @Option(help: "Also write the final float samples [N, C, H, W] before quantisation (key `sample`) to this safetensors file.")
    var raw: String?
    @Flag(help: "Write one grid PNG instead of one PNG per image.") var grid = false
    @Option(help: "Grid columns (default: the number of classes drawn, up to 16, so each column is one class; else 8).")
    var columns: Int?
    @Option(help: "Output: a folder (one PNG per image) or a .png file (with --grid).") var out: String
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if count < 1 || count > 10_000 { throw ValidationError("--count must be between 1 and 10000") }
        if let batch, batch < 1 || batch > 4096 { throw ValidationError("--batch must be between 1 and 4096") }
        if let columns, columns < 1 || columns > 256 { throw ValidationError("--columns must be between 1 and 256") }
        if steps < 1 || steps > 1000 { throw ValidationError("--steps must be between 1 and 1000") }
        if !(guidance >= 0 && guidance <= 50) { throw ValidationError("--guidance must be between 0 and 50") }
        if !(guidanceRescale >= 0 && guidanceRescale <= 1) { throw ValidationError("--guidance-rescale must be within 0-1") }
        if grid && !out.lowercased().hasSuffix(".png") { throw ValidationError("--grid writes one file: give --out NAME.png") }
        if !(strength > 0 && strength <= 1) { throw ValidationError("--strength must be in (0, 1]") }
        if mask != nil && initImage == nil { throw ValidationError("--mask needs --init-image (the picture to keep parts of)") }
    }

    func run() throws {
        runtime.apply()
        guard let dir = model.map({ URL(fileURLWithPath: $0) }) ?? bundledModel("image") else {
            throw ModelFolderError(path: "samples/image", reason: "no bundled image model yet: pass --model RUN/model")
        }
        let pipeline = try ImagePipeline.load(dir)
        let labels = try requestedLabels(classes, of: pipeline.classes, count: count, model: dir)
        let c = pipeline.unet.config
        let size = c.sampleSize ?? [32, 32]
        let start = try latents.map {
            try Generation.startNoise(from: URL(fileURLWithPath: $0), shape: [count, c.inChannels, size[0], size[1]])
        }
        var initial: (sample: Tensor, strength: Float)? = nil
        var known: KnownRegion? = nil
        if let initImage {
            let x0 = try pipeline.loadImage(URL(fileURLWithPath: initImage), count: count)
            if let mask {
                // white (1) = regenerate, black (−1) = keep: [N, 1, H, W] in {0, 1}
                let m = try pipeline.loadImage(URL(fileURLWithPath: mask), count: count, channels: 1)
                let binary = Tensor(shape: m.shape, scalars: m.scalars.map { $0 > 0 ? 1 : 0 })
                known = KnownRegion(sample: x0, mask: binary)
            } else {
                initial = (x0, strength)
            }
        }
        let samples = try pipeline.generate(count: count, labels: labels, sampler: sampler, steps: steps, seed: seed,
                                            guidance: guidance, guidanceRescale: guidanceRescale, start: start, initial: initial, known: known,
                                            batchSize: batch, clamp: false, progress: Progress.steps(label: "generate"))
        if let raw { try SafeTensors.write(["sample": samples], to: URL(fileURLWithPath: raw)) }
        let images = GradMode.withoutGrad { samples.clamped(min: -1, max: 1) }
        let outURL = URL(fileURLWithPath: out)
        if grid {
            let distinct = Set(labels ?? []).count
            let cols = columns ?? (distinct > 1 && distinct <= 16 ? distinct : 8)
            try ImageGrid.write(images, columns: Swift.max(1, Swift.min(count, cols)), to: outURL)
            print(outURL.path)
        } else {
            try FileManager.default.createDirectory(at: outURL, withIntermediateDirectories: true)
            for i in 0..<count {
                let one = images.item(i)
                let name = labels.map { "\(String(format: "%04d", i))-\(pipeline.classes.name($0[i])).png" }
                    ?? String(format: "%04d.png", i)
                try PNGCodec.write(one, to: outURL.appendingPathComponent(name))
            }
            print("\(count) images in \(outURL.path)")
        }
    }
}

struct GenerateAudio: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audio",
        abstract: "Generate audio clips (WAV) with a waveform model.",
        discussion: """
        Without --model the bundled notes model in samples/audio/ is used. --out NAME.wav writes one \
        file: the clips joined one after another (several classes make a melody: \
        `--class 60,64,67,72`); --out DIR writes one WAV per clip. A class name wins over an index \
        (on the notes model `--class 60` is MIDI pitch 60).
        """
    )

    @Option(help: "Model: a pipeline folder as `diffuse train audio` writes it (RUN/model).") var model: String?
    @Option(name: .customLong("class"), help: "Class name or index, or a comma-separated list given to the clips in turn.")
    var classes: String?
    @Option(help: "Number of clips (default: one per --class entry, else 4).") var count: Int?
    @Option(help: "Seconds per clip (default: the length the model was trained on).") var seconds: Double?
    @Option(help: "Classifier-free guidance scale (1 = none).") var guidance: Float = 2
    @Option(help: "Pull the guided prediction's spread back towards the conditional one's (0 = off, 1 = fully; diffusers' guidance_rescale).")
    var guidanceRescale: Float = 0
    @Option(help: "Sampler.") var sampler: SamplerName = .dpmpp2m
    @Option(help: "Sampling steps.") var steps = 20
    @Option(help: "Seed.") var seed: UInt64 = 0
    @Option(help: "Clips per model call (default: all); the clips do not depend on it.") var batch: Int?
    @Option(name: .customLong("init"), help: "Start from this clip (WAV/FLAC/OGG): variations with --strength, or a gap filled with --mask-from/--mask-to.")
    var initClip: String?
    @Option(help: "How far --init-clip is noised: 0 keeps it, 1 replaces it.") var strength: Float = 0.5
    @Option(help: "Start of the gap to regenerate in --init-clip (seconds).") var maskFrom: Double?
    @Option(help: "End of the gap to regenerate in --init-clip (seconds).") var maskTo: Double?
    @Option(help: "Crossfade between joined clips (milliseconds).") var fadeMs = 10.0
    @Option(help: "Also write the spectrogram(s) as a PNG.") var spectrogram: String?
    @Option(help: "Also write the raw float clips [N, C, L] (key `sample`) to this safetensors file.") var raw: String?
    @Option(help: "Output: NAME.wav (clips joined) or a folder (one WAV per clip).") var out: String
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if let count, count < 1 || count > 10_000 { throw ValidationError("--count must be between 1 and 10000") }
        if let seconds, !(seconds > 0 && seconds <= 60) { throw ValidationError("--seconds must be in (0, 60]") }
        if steps < 1 || steps > 1000 { throw ValidationError("--steps must be between 1 and 1000") }
        if !(guidance >= 0 && guidance <= 50) { throw ValidationError("--guidance must be between 0 and 50") }
        if !(guidanceRescale >= 0 && guidanceRescale <= 1) { throw ValidationError("--guidance-rescale must be within 0-1") }
        if let batch, batch < 1 || batch > 4096 { throw ValidationError("--batch must be between 1 and 4096") }
        if !(strength > 0 && strength <= 1) { throw ValidationError("--strength must be in (0, 1]") }
        if (maskFrom != nil || maskTo != nil) && initClip == nil { throw ValidationError("--mask-from/--mask-to need --init (the clip to fill)") }
        if let a = maskFrom, let b = maskTo, !(a >= 0 && b > a) { throw ValidationError("--mask-from must be ≥ 0 and before --mask-to") }
        if !(fadeMs >= 0 && fadeMs <= 1000) { throw ValidationError("--fade-ms must be within 0-1000") }
    }

    func run() throws {
        runtime.apply()
        guard let dir = model.map({ URL(fileURLWithPath: $0) }) ?? bundledModel("audio") else {
            throw ModelFolderError(path: "samples/audio", reason: "no bundled audio model: pass --model RUN/model")
        }
        let pipeline = try AudioPipeline.load(dir)
        let listed = classes.map { $0.split(separator: ",").count } ?? 0
        let n = count ?? (listed > 0 ? listed : 4)
        let labels = try requestedLabels(classes, of: pipeline.classes, count: n, model: dir)
        var length = seconds.map { pipeline.length(seconds: $0) } ?? pipeline.length
        var initial: (sample: Tensor, strength: Float)? = nil
        var known: KnownRegion? = nil
        if let initClip {
            let url = URL(fileURLWithPath: initClip)
            if seconds == nil {
                // The whole clip, rounded up to a length the model takes.
                let clip = try AudioCodec.read(url)
                length = pipeline.length(seconds: clip.duration)
            }
            let x0 = try pipeline.loadClip(url, count: n, length: length)
            if maskFrom != nil || maskTo != nil {
                let rate = Double(pipeline.sampleRate)
                let a = Swift.max(0, Int((maskFrom ?? 0) * rate)), b = Swift.min(length, Int((maskTo ?? Double(length) / rate) * rate))
                guard a < b else { throw ValidationError("--mask-from/--mask-to: the gap lies outside the \(String(format: "%.2f", Double(length) / rate)) s clip") }
                let mask = Tensor.zeros([n, 1, length])
                for k in 0..<n { for j in a..<b { mask.data[k * length + j] = 1 } }
                known = KnownRegion(sample: x0, mask: mask)
            } else {
                initial = (x0, strength)
            }
        }
        let samples = try pipeline.generate(count: n, length: length, labels: labels, sampler: sampler, steps: steps, seed: seed,
                                            guidance: guidance, guidanceRescale: guidanceRescale, initial: initial, known: known, batchSize: batch,
                                            clamp: false, progress: Progress.steps(label: "generate"))
        if let raw { try SafeTensors.write(["sample": samples], to: URL(fileURLWithPath: raw)) }
        let clips = GradMode.withoutGrad { samples.clamped(min: -1, max: 1) }
        let rate = pipeline.sampleRate, c = clips.shape[1]
        let outURL = URL(fileURLWithPath: out)
        if out.lowercased().hasSuffix(".wav") || out.lowercased().hasSuffix(".flac") || out.lowercased().hasSuffix(".ogg") {
            let joined = AudioPipeline.join(clips, fade: Int(fadeMs / 1000 * Double(rate)))
            try AudioCodec.write(AudioClip(samples: joined, sampleRate: rate), to: outURL)
            print("\(outURL.path) (\(n) clip\(n == 1 ? "" : "s"), \(String(format: "%.2f", Double(joined.shape[1]) / Double(rate))) s)")
        } else {
            try FileManager.default.createDirectory(at: outURL, withIntermediateDirectories: true)
            for i in 0..<n {
                let one = clips.item(i)
                let name = labels.map { "\(String(format: "%04d", i))-\(pipeline.classes.name($0[i])).wav" } ?? String(format: "%04d.wav", i)
                try AudioCodec.write(AudioClip(samples: one, sampleRate: rate), to: outURL.appendingPathComponent(name))
            }
            print("\(n) clips in \(outURL.path)")
        }
        if let spectrogram {
            let m = c * length
            try Spectrogram.write((0..<n).map { Array(clips.scalars[($0 * m)..<($0 * m + length)]) }, to: URL(fileURLWithPath: spectrogram))
        }
    }
}

/// Frame numbers from "0-3", "0,2,5" or "0-3,8".
func parseFrameList(_ s: String) throws -> Set<Int> {
    var out = Set<Int>()
    for part in s.split(separator: ",") {
        let ends = part.split(separator: "-", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard (ends.count == 1 || ends.count == 2), let lo = ends.first ?? nil, let hi = ends.last ?? nil, lo >= 0, lo <= hi else {
            throw ValidationError("--keep-frames: \(part) is not a frame number or a range like 0-3")
        }
        out.formUnion(lo...hi)
    }
    guard !out.isEmpty else { throw ValidationError("--keep-frames: no frames given") }
    return out
}

struct GenerateVideo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "video",
        abstract: "Generate short videos (MP4 or GIF) with a video model.",
        discussion: """
        Without --model the bundled moving-fashion model in samples/video/ is used. --out NAME.mp4 \
        or NAME.gif writes one file, the clips tiled side by side (--columns per row); --out DIR \
        writes one file per clip (--format). MP4s are H.264 yuv420p (MPEG-4 Part 2 where FFmpeg \
        has no H.264 encoder). --init CLIP --keep-frames 0-3 continues a clip: those frames are \
        kept exactly and the others generated to match; --init without --keep-frames makes \
        variations (--strength).
        """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable { case mp4, gif }

    @Option(help: "Model: a pipeline folder as `diffuse train video` writes it (RUN/model).") var model: String?
    @Option(name: .customLong("class"), help: "Class name or index, or a comma-separated list given to the clips in turn.")
    var classes: String?
    @Option(help: "Number of clips (default: one per --class entry, else 4).") var count: Int?
    @Option(help: "Frames per clip (default: the number the model was trained on).") var frames: Int?
    @Option(help: "Frame rate of the output (default: the model's).") var fps: Double?
    @Option(help: "Classifier-free guidance scale (1 = none).") var guidance: Float = 2
    @Option(help: "Pull the guided prediction's spread back towards the conditional one's (0 = off, 1 = fully; diffusers' guidance_rescale).")
    var guidanceRescale: Float = 0
    @Option(help: "Sampler.") var sampler: SamplerName = .dpmpp2m
    @Option(help: "Sampling steps.") var steps = 20
    @Option(help: "Seed.") var seed: UInt64 = 0
    @Option(help: "Clips per model call (default: all); the clips do not depend on it.") var batch: Int?
    @Option(name: .customLong("init"), help: "Start from this video: continue it with --keep-frames, or vary it with --strength.")
    var initClip: String?
    @Option(help: "Frames of --init kept as they are, e.g. 0-3 or 0,1,8-9 (the rest is generated).") var keepFrames: String?
    @Option(help: "How far --init is noised when no frames are kept: 0 keeps it, 1 replaces it.") var strength: Float = 0.5
    @Option(help: "Clips per row in a single output file (default: all in one row, up to 8).") var columns: Int?
    @Option(help: "File format with --out DIR.") var format: Format = .mp4
    @Option(help: "Also write the raw float clips [N, C, F, H, W] (key `sample`) to this safetensors file.") var raw: String?
    @Option(help: "Output: NAME.mp4 or NAME.gif (clips tiled), or a folder (one file per clip).") var out: String
    @OptionGroup var runtime: RuntimeOptions

    var singleFile: Bool { out.lowercased().hasSuffix(".mp4") || out.lowercased().hasSuffix(".gif") }

    func validate() throws {
        if let count, count < 1 || count > 10_000 { throw ValidationError("--count must be between 1 and 10000") }
        if let frames, frames < 1 || frames > 1000 { throw ValidationError("--frames must be between 1 and 1000") }
        if let fps, !(fps > 0 && fps <= 1000) { throw ValidationError("--fps must be in (0, 1000]") }
        if steps < 1 || steps > 1000 { throw ValidationError("--steps must be between 1 and 1000") }
        if !(guidance >= 0 && guidance <= 50) { throw ValidationError("--guidance must be between 0 and 50") }
        if !(guidanceRescale >= 0 && guidanceRescale <= 1) { throw ValidationError("--guidance-rescale must be within 0-1") }
        if let batch, batch < 1 || batch > 4096 { throw ValidationError("--batch must be between 1 and 4096") }
        if let columns, columns < 1 || columns > 256 { throw ValidationError("--columns must be between 1 and 256") }
        if !(strength > 0 && strength <= 1) { throw ValidationError("--strength must be in (0, 1]") }
        if keepFrames != nil && initClip == nil { throw ValidationError("--keep-frames needs --init (the clip to continue)") }
        if let keepFrames { _ = try parseFrameList(keepFrames) }
        let lower = out.lowercased()
        if lower.contains(".") && !singleFile && (lower.hasSuffix(".webm") || lower.hasSuffix(".mkv") || lower.hasSuffix(".avi") || lower.hasSuffix(".mov")) {
            throw ValidationError("--out: write NAME.mp4, NAME.gif or a folder")
        }
    }

    func run() throws {
        runtime.apply()
        guard let dir = model.map({ URL(fileURLWithPath: $0) }) ?? bundledModel("video") else {
            throw ModelFolderError(path: "samples/video", reason: "no bundled video model yet: pass --model RUN/model")
        }
        let pipeline = try VideoPipeline.load(dir)
        let listed = classes.map { $0.split(separator: ",").count } ?? 0
        let n = count ?? (listed > 0 ? listed : 4)
        let labels = try requestedLabels(classes, of: pipeline.classes, count: n, model: dir)
        let f = frames ?? pipeline.frames
        var initial: (sample: Tensor, strength: Float)? = nil
        var known: KnownRegion? = nil
        if let initClip {
            let x0 = try pipeline.loadClip(URL(fileURLWithPath: initClip), count: n, frames: f)
            if let keepFrames {
                let kept = try parseFrameList(keepFrames)
                guard kept.allSatisfy({ $0 < f }) else {
                    throw ValidationError("--keep-frames: the clips have \(f) frames (0-\(f - 1))")
                }
                known = KnownRegion(sample: x0, mask: VideoPipeline.frameMask(count: n, frames: f, kept: kept))
            } else {
                initial = (x0, strength)
            }
        }
        let samples = try pipeline.generate(count: n, frames: f, labels: labels, sampler: sampler, steps: steps, seed: seed,
                                            guidance: guidance, guidanceRescale: guidanceRescale, initial: initial, known: known, batchSize: batch,
                                            clamp: false, progress: Progress.steps(label: "generate"))
        if let raw { try SafeTensors.write(["sample": samples], to: URL(fileURLWithPath: raw)) }
        let clips = GradMode.withoutGrad { samples.clamped(min: -1, max: 1) }
        let rate = fps ?? pipeline.fps
        let outURL = URL(fileURLWithPath: out)
        func write(_ frames: Tensor, _ url: URL) throws -> String {
            if url.pathExtension.lowercased() == "gif" { try VideoCodec.writeGIF(frames, fps: rate, to: url); return "gif" }
            return try VideoCodec.writeMP4(frames, fps: rate, to: url)
        }
        if singleFile {
            let video = n == 1 ? VideoPipeline.clip(clips, 0) : VideoPipeline.tile(clips, columns: columns ?? Swift.min(n, 8))
            let codec = try write(video, outURL)
            print("\(outURL.path) (\(n) clip\(n == 1 ? "" : "s") of \(f) frames at \(String(format: "%g", rate)) fps, \(codec))")
        } else {
            try FileManager.default.createDirectory(at: outURL, withIntermediateDirectories: true)
            for i in 0..<n {
                let base = labels.map { "\(String(format: "%04d", i))-\(pipeline.classes.name($0[i]))" } ?? String(format: "%04d", i)
                _ = try write(VideoPipeline.clip(clips, i), outURL.appendingPathComponent(base + "." + format.rawValue))
            }
            print("\(n) clips in \(outURL.path)")
        }
    }
}
