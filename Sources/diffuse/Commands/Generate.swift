import ArgumentParser
import Foundation
import Tensor
import Workflow
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

struct GenerateImage: ParsableCommand {
    static var configuration: CommandConfiguration { CommandConfiguration(
        commandName: "image",
        abstract: "Generate images (PNG) with an image model.",
        discussion: """
        Without --model the bundled model in samples/image/ is used\(bundledClassList("image")) \
        (with --prompt: samples/text-to-image/, a small model trained here on emoji: "red apple", "cat face"). \
        --out NAME.png writes one image (several: add --grid for one grid PNG, a column per class); \
        --out DIR writes one PNG per image. --init PHOTO.png starts from a picture (image-to-image, \
        --strength, default 0.5), --mask MASK.png regenerates only its white part (inpainting); \
        without --class the picture keeps its own class (named by its folder or file name, e.g. \
        sneaker.png) or its own content, and one image is made, named after it.
        With a text-to-image model (a Stable Diffusion 1.x/2.x pipeline folder in diffusers' layout, or \
        a single original-layout .safetensors file as A1111 and civitai distribute them) --prompt \
        says what to draw: `--model SD --prompt "a red apple" --negative-prompt "blurry" \
        --width 512 --height 512 --steps 20 --guidance 7.5`. Its PNGs carry the settings in a \
        `parameters` text chunk, as other tools write them.
        """
    ) }

    @OptionGroup var options: GenerateOptions
    @Option(name: [.customLong("init"), .customLong("init-image")], help: "Image-to-image: start from this PNG, noised to --strength.")
    var initImage: String?
    @Option(help: "Inpainting mask PNG for --init: white = regenerate, black = keep.") var mask: String?
    @Flag(help: "Write one grid PNG (what --out NAME.png does for several images).") var grid = false
    @Option(help: "Grid columns (default: the number of classes drawn, up to 16, so each column is one class; else 8).")
    var columns: Int?
    @Option(name: [.long, .customShort("o")], help: "Output: a .png file (one image, or with --grid a grid of several) or a folder (one PNG per image).") var out: String
    @Option(help: "Text-to-image models: what to draw.") var prompt: String?
    @Option(help: "Text-to-image models: a text file of prompts, one per line (blank lines skipped), --count images of each, in one batch (a grid has a row per prompt).")
    var promptFile: String?
    @Option(help: "Text-to-image models: what to steer away from (the unconditional side of guidance).") var negativePrompt: String?
    @Option(help: "Text-to-image models: image width in pixels, a multiple of 8 (default: the model's size).") var width: Int?
    @Option(help: "Text-to-image models: image height in pixels, a multiple of 8 (default: the model's size).") var height: Int?
    @Option(help: "Text-to-image models: condition on the text encoder's layer this many before the last (diffusers' clip_skip).")
    var clipSkip: Int?
    @Option(help: "Text-to-image models: a LoRA to merge, FILE[:SCALE] (kohya/A1111 or diffusers/PEFT safetensors; repeatable).")
    var lora: [String] = []

    var singleFile: Bool { outputExtension(out) == "png" }

    func validate() throws {
        if let columns, columns < 1 || columns > 256 { throw ValidationError("--columns must be between 1 and 256") }
        if grid && !singleFile { throw ValidationError("--grid writes one file: give --out NAME.png") }
        let textModel = options.model.map { StableDiffusionPipeline.isPipelineFolder(URL(fileURLWithPath: $0)) || StableDiffusionPipeline.isSingleFile(URL(fileURLWithPath: $0)) } ?? false
        let n = prompt != nil || promptFile != nil || textModel ? (options.count ?? 1) : options.sampleCount(fallback: 8, perEntry: false, hasInput: initImage != nil)
        if singleFile && !grid && n > 1 {
            throw ValidationError("--out \(out) names one file and this makes \(n) images: add --grid for one grid PNG, --count 1 for one image, or give a folder (--out DIR) for one PNG each")
        }
        if mask != nil && initImage == nil { throw ValidationError("--mask needs --init (the picture to keep parts of)") }
        if let ext = outputExtension(out), ext != "png" { throw ValidationError("--out: write NAME.png or a folder (PNG is the image format)") }
        for (name, v) in [("--width", width), ("--height", height)] {
            if let v, v < 8 || v > 4096 || v % 8 != 0 { throw ValidationError("\(name) must be a multiple of 8 within 8-4096") }
        }
        if let clipSkip, clipSkip < 0 || clipSkip > 24 { throw ValidationError("--clip-skip must be within 0-24") }
        if prompt != nil && promptFile != nil { throw ValidationError("--prompt and --prompt-file: give one of them") }
        if (prompt != nil || promptFile != nil) && options.classes != nil { throw ValidationError("--prompt and --class: a model takes one or the other") }
        if (prompt != nil || promptFile != nil || textModel) && options.guideModel != nil {
            throw ValidationError("--guide-model guides class and unconditional models; a text-to-image model is guided by its prompt (--guidance, --negative-prompt)")
        }
        if prompt == nil && promptFile == nil && (negativePrompt != nil || width != nil || height != nil || clipSkip != nil || !lora.isEmpty) {
            throw ValidationError("--negative-prompt, --width, --height, --clip-skip and --lora go with --prompt")
        }
        for l in lora {
            guard let (_, scale) = LoRA.parseArgument(l), scale >= -10, scale <= 10 else {
                throw ValidationError("--lora takes FILE or FILE:SCALE with a scale within -10 to 10, got \(l)")
            }
        }
    }

    func run() throws {
        options.runtime.apply()
        if let dir = options.model.map({ URL(fileURLWithPath: $0) }),
           StableDiffusionPipeline.isPipelineFolder(dir) || StableDiffusionPipeline.isSingleFile(dir) {
            guard let prompts = try prompts() else { throw ValidationError("\(dir.path) is a text-to-image model: say what to draw with --prompt") }
            return try runPrompt(prompts, model: dir)
        }
        if let prompts = try prompts() {
            guard options.model == nil, let bundled = bundledModel("text-to-image") else {
                throw ValidationError("--prompt needs a text-to-image model: --model a Stable Diffusion pipeline folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/)"
                                      + (options.model == nil ? "; no bundled one was found in samples/text-to-image" : ""))
            }
            return try runPrompt(prompts, model: bundled)
        }
        let (pipeline, dir) = try options.pipeline(ImageModality.self)
        let started = Date()
        let count = options.sampleCount(fallback: 8, perEntry: false, hasInput: initImage != nil)
        let input = initImage.map { URL(fileURLWithPath: $0) }
        var (request, classNote) = try options.request(pipeline, model: dir, count: count, input: input)
        if let input {
            let x0 = try pipeline.loadImage(input, count: count)
            if let mask {
                request.known = KnownRegion(sample: x0, mask: try pipeline.loadMask(URL(fileURLWithPath: mask), count: count))
            } else {
                request.initial = (x0, options.sampling.strength ?? SamplingOptions.defaultStrength)
            }
        }
        let images = try options.generate(pipeline, &request)
        guard MPIRanks.isWriter else { return }  // under mpirun, rank 0 writes what the ranks made
        let names = options.classNames(request, pipeline)
        func parameters(_ i: Int) -> [(String, String)] {
            var p = "Class: \(names?[i] ?? "none"), Steps: \(request.steps), Sampler: \(request.sampler?.rawValue ?? "folder"), "
                + "CFG scale: \(request.guidance), Seed: \(request.seed), Sample: \(i), Model: \(dir.lastPathComponent)"
            if let g = request.guidanceInterval { p += ", Guidance interval: \(g.lowerBound)-\(g.upperBound)" }
            if let g = options.guidedBy(request, pipeline) { p += ", Guide model: \(URL(fileURLWithPath: g).lastPathComponent)" }
            if let s = request.initial?.strength { p += ", Denoising strength: \(s)" }
            if request.noiseOrder == .torch { p += ", RNG: torch" }
            return [("parameters", p)]
        }
        let outURL = URL(fileURLWithPath: out)
        var files: [String] = []
        if singleFile && count == 1 && !grid {
            try PNGCodec.write(images.item(0), to: outURL, text: parameters(0))
            files = [outURL.path]
        } else if singleFile {
            let distinct = Set(request.conditioning.labels ?? []).count
            let cols = columns ?? (distinct > 1 && distinct <= 16 ? distinct : 8)
            try ImageGrid.write(images, columns: Swift.max(1, Swift.min(count, cols)), to: outURL)
            files = [outURL.path]
        } else {
            try FileManager.default.createDirectory(at: outURL, withIntermediateDirectories: true)
            for i in 0..<count {
                let url = outURL.appendingPathComponent(options.fileName(i, request, pipeline, ext: "png", input: input))
                try PNGCodec.write(images.item(i), to: url, text: parameters(i))
                files.append(url.path)
            }
        }
        try options.summary(files: files, samples: count, kind: "image", request: request, pipeline: pipeline, model: dir,
                            classNote: classNote, started: started, detail: singleFile && count > 1 ? "in a grid" : nil)
    }
}

extension GenerateImage {
    /// Text-to-image with a Stable Diffusion pipeline folder: txt2img, img2img (--init,
    /// --strength, default 0.5 as everywhere) and inpainting (--mask: a 9-channel inpainting unet where the
    /// folder has one, else the kept latents blended in at every step).
    /// --prompt, or the lines of --prompt-file; nil when neither is given.
    func prompts() throws -> [String]? {
        if let prompt { return [prompt] }
        guard let promptFile else { return nil }
        let url = URL(fileURLWithPath: promptFile)
        guard let size = (try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? Int else {
            throw MediaError.cannotOpen(file: url.path, reason: "cannot read the prompt file")
        }
        guard size <= 1 << 20 else { throw MediaError.limitExceeded(file: url.path, reason: "a prompt file is at most 1 MB") }
        guard let text = String(data: try Data(contentsOf: url), encoding: .utf8) else {
            throw MediaError.invalidData(file: url.path, reason: "is not UTF-8 text")
        }
        let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !lines.isEmpty else { throw MediaError.invalidData(file: url.path, reason: "holds no prompt (one per line)") }
        guard lines.count * (options.count ?? 1) <= SamplingRequest.countRange.upperBound else {
            throw MediaError.limitExceeded(file: url.path, reason: "\(lines.count) prompts × --count \(options.count ?? 1) is more than \(SamplingRequest.countRange.upperBound) images")
        }
        return lines
    }

    func runPrompt(_ given: [String], model teacher: URL) throws {
        // --fast: the teacher's distilled student beside it (its steps and default guidance; --guidance still applies).
        let dir = options.fast ? try studentFolder(of: teacher, "image", data: " --data CAPTIONED_DIR") : teacher
        let pipe = try StableDiffusionPipeline.load(dir)
        for (file, unused) in try pipe.applyLoRAs(lora.compactMap(LoRA.parseArgument)) where !unused.isEmpty {
            note("warning: \(file): \(unused.count) tensors apply to nothing in this model and were not used: "
                 + unused.prefix(6).joined(separator: ", ") + (unused.count > 6 ? ", …" : ""))
        }
        let each = options.count ?? 1
        let prompts = given.flatMap { [String](repeating: $0, count: each) }
        let count = prompts.count
        if singleFile && !grid && count > 1 {
            throw ValidationError("--out \(out) names one file and this makes \(count) images (\(plural(given.count, "prompt")) × \(each)): add --grid for one grid PNG, or give a folder (--out DIR) for one PNG each")
        }
        var job = TextToImageJob(prompts: prompts, negativePrompt: negativePrompt, width: width, height: height, clipSkip: clipSkip,
                                 strength: options.sampling.strength ?? SamplingOptions.defaultStrength)
        if let initImage {
            job.initImage = try PNGCodec.read(URL(fileURLWithPath: initImage), mode: .rgb)
            job.mask = try mask.map { try PNGCodec.read(URL(fileURLWithPath: $0), mode: .gray) }
        }
        job.reconstructionGuidance = try options.reconstructionWeight(kept: job.mask != nil, folder: pipe.samplingDefaults)
        let (w, h) = job.size(on: pipe)
        var request = try options.sampling.request(count: count, conditioning: .unconditional, scheduler: pipe.scheduler,
                                                   defaultGuidance: pipe.defaultGuidance, defaultGuidanceInterval: pipe.defaultGuidanceInterval,
                                                   defaultSteps: pipe.defaultSteps)
        if let g = pipe.distillation?.guidanceRange, !(g[0]...g[1]).contains(request.guidance) {
            note("warning: --guidance \(request.guidance) is outside the scales \(dir.lastPathComponent) was distilled for (\(g[0])-\(g[1]))")
        }
        if pipe.takesGuidanceScale, let negativePrompt, !negativePrompt.isEmpty {
            note("warning: --negative-prompt is not used: \(dir.lastPathComponent)'s unet takes the guidance scale as an input (an LCM unet) and is called once per step, without a negative prompt")
        }
        if let latents = options.latents {
            let f = pipe.downFactor
            request.start = try Generation.startNoise(from: URL(fileURLWithPath: latents), shape: [count, pipe.unet.config.outChannels, h / f, w / f])
        }
        let result = try pipe.run(job, request: request, progress: Progress.steps(label: "generate"))
        guard MPIRanks.isWriter else { return }  // under mpirun, rank 0 writes what the ranks made
        if options.runtime.verbose {
            note(pipe.timings.map { String(format: "%@ %.2f s", $0.0, $0.1) }.joined(separator: ", ") + String(format: ", peak RSS %.0f MB", Double(peakRSS()) / 1e6))
        }
        if let raw { try SafeTensors.write(["latents": result.latents, "sample": result.samples], to: URL(fileURLWithPath: raw)) }
        let images = result.images
        let hash = ((StableDiffusionPipeline.isSingleFile(dir) ? try? SHA256.hex(file: dir) : try? DatasetAugment.modelHash(dir)) ?? "")
        func parameters(_ i: Int) -> [(String, String)] {
            [("parameters", StableDiffusionPipeline.parameters(job, result, sample: i, modelName: dir.lastPathComponent, modelHash: hash))]
        }
        let outURL = URL(fileURLWithPath: out)
        if singleFile && count == 1 && !grid {
            try PNGCodec.write(images.item(0), to: outURL, text: parameters(0))
            print(outURL.path)
        } else if singleFile {
            try ImageGrid.write(images, columns: Swift.max(1, Swift.min(count, columns ?? (each > 1 ? each : 8))), to: outURL)
            print("\(outURL.path) (\(plural(count, "image")) in a grid)")
        } else {
            try FileManager.default.createDirectory(at: outURL, withIntermediateDirectories: true)
            for i in 0..<count {
                try PNGCodec.write(images.item(i), to: outURL.appendingPathComponent(String(format: "%04d.png", i)), text: parameters(i))
            }
            print("\(plural(count, "image")) in \(outURL.path)")
        }
    }

    var raw: String? { options.raw }
}

/// The extension of an output path that names a media file ("png", "mp3"), or nil for a folder.
/// Any other name is a folder, dots and all.
func outputExtension(_ path: String) -> String? {
    let ext = (path as NSString).pathExtension.lowercased()
    return path.hasSuffix("/") || !mediaExtensions.contains(ext) ? nil : ext
}

/// Image, audio and video file types a user may name as --out (what a command cannot write is an error).
let mediaExtensions: Set<String> = ["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff",
                                    "wav", "flac", "ogg", "mp3", "m4a", "aac", "opus", "aif", "aiff",
                                    "mp4", "webm", "mkv", "avi", "mov", "m4v"]

struct GenerateAudio: ParsableCommand {
    static var configuration: CommandConfiguration { CommandConfiguration(
        commandName: "audio",
        abstract: "Generate audio clips (WAV) with a waveform model.",
        discussion: """
        Without --model the bundled notes model in samples/audio/ is used\(bundledClassList("audio")). \
        --out NAME.wav writes one file: the clips joined one after another (several classes make a \
        melody: `--class 60,64,67,72`); --out DIR writes one WAV per clip. A class name wins over an \
        index (on the notes model `--class 60` is MIDI pitch 60). --init CLIP varies a clip \
        (--strength, default 0.5) or, with --mask-from/--mask-to, fills that stretch of it to match \
        the rest, crossfaded at the seams (--fade-ms); without --class it keeps its own class \
        (named by its folder or file name, e.g. 60.wav) or its own content, and one clip is made.
        """
    ) }

    @OptionGroup var options: GenerateOptions
    @Option(help: "Seconds per clip (default: the length the model was trained on, or --init's).") var seconds: Double?
    @Option(name: .customLong("init"), help: "Start from this clip (WAV/FLAC/OGG): variations with --strength, or a gap filled with --mask-from/--mask-to.")
    var initClip: String?
    @Option(help: "Start of the gap to regenerate in --init (seconds).") var maskFrom: Double?
    @Option(help: "End of the gap to regenerate in --init (seconds).") var maskTo: Double?
    @Option(help: "Crossfade between joined clips and at the seams of a filled gap (milliseconds).") var fadeMs = 10.0
    @Option(help: "Also write the spectrogram(s) as a PNG.") var spectrogram: String?
    @Option(name: [.long, .customShort("o")], help: "Output: NAME.wav|flac|ogg (clips joined) or a folder (one WAV per clip).") var out: String

    static let fileExtensions: Set<String> = ["wav", "flac", "ogg"]
    /// The longest clip generated (--seconds, --init).
    static let maxSeconds: Double = 60

    func validate() throws {
        if let seconds, !(seconds > 0 && seconds <= Self.maxSeconds) { throw ValidationError("--seconds must be in (0, 60]") }
        if (maskFrom != nil || maskTo != nil) && initClip == nil { throw ValidationError("--mask-from/--mask-to need --init (the clip to fill)") }
        if let a = maskFrom, let b = maskTo, !(a >= 0 && b > a) { throw ValidationError("--mask-from must be ≥ 0 and before --mask-to") }
        if !(fadeMs >= 0 && fadeMs <= 1000) { throw ValidationError("--fade-ms must be within 0-1000") }
        if let ext = outputExtension(out), !Self.fileExtensions.contains(ext) {
            throw ValidationError("--out: write NAME.wav, NAME.flac, NAME.ogg or a folder (.\(ext) is not written)")
        }
    }

    func run() throws {
        options.runtime.apply()
        let (pipeline, dir) = try options.pipeline(AudioModality.self)
        let started = Date()
        let n = options.sampleCount(fallback: 4, perEntry: true, hasInput: initClip != nil)
        let input = initClip.map { URL(fileURLWithPath: $0) }
        var (request, classNote) = try options.request(pipeline, model: dir, count: n, input: input)
        var length = seconds.map { pipeline.length(seconds: $0) } ?? pipeline.length
        let rate = pipeline.sampleRate
        var seams: (original: Tensor, gap: Range<Int>)? = nil
        if let input {
            if seconds == nil {
                // The whole clip, rounded up to a length the model takes — up to the longest a
                // clip may be (--seconds' limit): a longer file is read only that far.
                let clip = try AudioCodec.read(input, limits: .init(maxSeconds: Self.maxSeconds))
                if clip.duration >= Self.maxSeconds {
                    note("--init: using the first \(Int(Self.maxSeconds)) s of \(input.path) (the longest clip; --seconds picks less)")
                }
                length = pipeline.length(seconds: Swift.min(clip.duration, Self.maxSeconds))
            }
            let x0 = try pipeline.loadClip(input, count: n, length: length)
            if maskFrom != nil || maskTo != nil {
                let r = Double(rate)
                let a = Swift.max(0, Int((maskFrom ?? 0) * r)), b = Swift.min(length, Int((maskTo ?? Double(length) / r) * r))
                guard a < b else { throw ValidationError("--mask-from/--mask-to: the gap lies outside the \(String(format: "%.2f", Double(length) / r)) s clip") }
                request.known = KnownRegion(sample: x0, mask: AudioPipeline.gapMask(count: n, length: length, gap: a..<b))
                seams = (x0, a..<b)
            } else {
                request.initial = (x0, options.sampling.strength ?? SamplingOptions.defaultStrength)
            }
        }
        let fade = Int(fadeMs / 1000 * Double(rate))
        let clips = try options.generate(pipeline, &request, shape: [pipeline.channels, length]) { x in
            seams.map { AudioPipeline.crossfadeSeams(x, original: $0.original, gap: $0.gap, fade: fade) } ?? x
        }
        guard MPIRanks.isWriter else { return }  // under mpirun, rank 0 writes what the ranks made
        let c = clips.shape[1]
        let outURL = URL(fileURLWithPath: out)
        var files: [String] = []
        var detail: String
        if outputExtension(out) != nil {
            let joined = AudioPipeline.join(clips, fade: fade)
            try AudioCodec.write(AudioClip(samples: joined, sampleRate: rate), to: outURL)
            files.append(outURL.path)
            detail = String(format: "%.2f s", Double(joined.shape[1]) / Double(rate)) + (n > 1 ? " joined" : "")
        } else {
            try FileManager.default.createDirectory(at: outURL, withIntermediateDirectories: true)
            for i in 0..<n {
                let url = outURL.appendingPathComponent(options.fileName(i, request, pipeline, ext: "wav", input: input))
                try AudioCodec.write(AudioClip(samples: clips.item(i), sampleRate: rate), to: url)
                files.append(url.path)
            }
            detail = String(format: "%.2f s each", Double(length) / Double(rate))
        }
        if let spectrogram {
            let m = c * length
            let url = URL(fileURLWithPath: spectrogram)
            try Spectrogram.write((0..<n).map { Array(clips.scalars[($0 * m)..<($0 * m + length)]) }, to: url)
            files.append(url.path)
        }
        try options.summary(files: files, samples: n, kind: "clip", request: request, pipeline: pipeline, model: dir,
                            classNote: classNote, started: started, detail: detail)
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
    static var configuration: CommandConfiguration { CommandConfiguration(
        commandName: "video",
        abstract: "Generate short videos (MP4 or GIF) with a video model.",
        discussion: """
        Without --model the bundled moving-fashion model in samples/video/ is used\(bundledClassList("video")). --out NAME.mp4 \
        or NAME.gif writes one file, the clips tiled side by side (--columns per row); --out DIR \
        writes one file per clip (--format). MP4s are H.264 yuv420p (MPEG-4 Part 2 where FFmpeg \
        has no H.264 encoder). --init CLIP --keep-frames 0-3 continues a clip: those frames are \
        kept exactly and the others generated to match; --init without --keep-frames makes \
        variations (--strength, default 0.5). Without --class an input keeps its own class (named by \
        its folder or file name, e.g. sneaker.mp4) or its own content, and one clip is made.
        """
    ) }

    enum Format: String, ExpressibleByArgument, CaseIterable { case mp4, gif }

    @OptionGroup var options: GenerateOptions
    @Option(help: "Frames per clip (default: the number the model was trained on).") var frames: Int?
    @Option(help: "Frame rate of the output (default: the model's).") var fps: Double?
    @Option(name: .customLong("init"), help: "Start from this video: continue it with --keep-frames, or vary it with --strength.")
    var initClip: String?
    @Option(help: "Frames of --init kept as they are, e.g. 0-3 or 0,1,8-9 (the rest is generated).") var keepFrames: String?
    @Option(help: "Clips per row in a single output file (default: all in one row, up to 8).") var columns: Int?
    @Option(help: "File format with --out DIR.") var format: Format = .mp4
    @Option(name: [.long, .customShort("o")], help: "Output: NAME.mp4 or NAME.gif (clips tiled), or a folder (one file per clip).") var out: String

    var singleFile: Bool { outputExtension(out) != nil }

    func validate() throws {
        if let frames, frames < 1 || frames > 1000 { throw ValidationError("--frames must be between 1 and 1000") }
        if let fps, !(fps > 0 && fps <= 1000) { throw ValidationError("--fps must be in (0, 1000]") }
        if let columns, columns < 1 || columns > 256 { throw ValidationError("--columns must be between 1 and 256") }
        if keepFrames != nil && initClip == nil { throw ValidationError("--keep-frames needs --init (the clip to continue)") }
        if let keepFrames { _ = try parseFrameList(keepFrames) }
        if let ext = outputExtension(out), !Format.allCases.map(\.rawValue).contains(ext) {
            throw ValidationError("--out: write NAME.mp4, NAME.gif or a folder")
        }
    }

    func run() throws {
        options.runtime.apply()
        let (pipeline, dir) = try options.pipeline(VideoModality.self)
        let started = Date()
        let n = options.sampleCount(fallback: 4, perEntry: true, hasInput: initClip != nil)
        let input = initClip.map { URL(fileURLWithPath: $0) }
        var (request, classNote) = try options.request(pipeline, model: dir, count: n, input: input)
        let f = frames ?? pipeline.frames
        if let input {
            let x0 = try pipeline.loadClip(input, count: n, frames: f)
            if let keepFrames {
                let kept = try parseFrameList(keepFrames)
                guard kept.allSatisfy({ $0 < f }) else {
                    throw ValidationError("--keep-frames: the clips have \(f) frames (0-\(f - 1))")
                }
                request.known = KnownRegion(sample: x0, mask: VideoPipeline.frameMask(count: n, frames: f, kept: kept))
            } else {
                request.initial = (x0, options.sampling.strength ?? SamplingOptions.defaultStrength)
            }
        }
        let clips = try options.generate(pipeline, &request, shape: [pipeline.channels, f, pipeline.size, pipeline.size])
        guard MPIRanks.isWriter else { return }  // under mpirun, rank 0 writes what the ranks made
        let rate = fps ?? pipeline.fps
        let outURL = URL(fileURLWithPath: out)
        func write(_ frames: Tensor, _ url: URL) throws -> String {
            if url.pathExtension.lowercased() == "gif" { try VideoCodec.writeGIF(frames, fps: rate, to: url); return "gif" }
            return try VideoCodec.writeMP4(frames, fps: rate, to: url)
        }
        var files: [String] = []
        var codec = format.rawValue
        if singleFile {
            let video = n == 1 ? VideoPipeline.clip(clips, 0) : VideoPipeline.tile(clips, columns: columns ?? Swift.min(n, 8))
            codec = try write(video, outURL)
            files.append(outURL.path)
        } else {
            try FileManager.default.createDirectory(at: outURL, withIntermediateDirectories: true)
            for i in 0..<n {
                let url = outURL.appendingPathComponent(options.fileName(i, request, pipeline, ext: format.rawValue, input: input))
                codec = try write(VideoPipeline.clip(clips, i), url)
                files.append(url.path)
            }
        }
        try options.summary(files: files, samples: n, kind: "clip", request: request, pipeline: pipeline, model: dir, classNote: classNote,
                            started: started, detail: "\(f) frames at \(String(format: "%g", rate)) fps, \(codec)" + (singleFile && n > 1 ? ", tiled" : ""))
    }
}

/// ": its classes are a, b, …" for a modality's bundled model (what `generate … --help` lists), or "".
func bundledClassList(_ modality: String) -> String {
    guard let dir = bundledModel(modality), let data = FileManager.default.contents(atPath: dir.appendingPathComponent("classes.json").path),
          let names = try? JSONDecoder().decode([String].self, from: data), !names.isEmpty else { return "" }
    return "; its classes (--class NAME or index 0-\(names.count - 1)): " + names.joined(separator: ", ")
}

extension GenerateOptions {
    /// Prints the end summary (or --json) of a generate run.
    /// --guide-model when it guided `request` (guidance ≠ 1), else nil.
    func guidedBy<M: Modality>(_ request: SamplingRequest, _ pipeline: Pipeline<M>) -> String? {
        pipeline.guidance(for: request)?.guide == nil ? nil : guideModel
    }

    func summary<M: Modality>(files: [String], samples: Int, kind: String, request: SamplingRequest, pipeline: Pipeline<M>, model: URL,
                              classNote: String?, started: Date, detail: String?) throws {
        try GenerationSummary(files: files, samples: samples, kind: kind, classes: classNames(request, pipeline), classNote: classNote,
                              seed: request.seed, randomSeed: sampling.seedArgument < 0, rng: request.noiseOrder == .torch ? "torch" : nil, sampler: request.sampler?.rawValue ?? "folder",
                              steps: request.steps, guidance: request.guidance,
                              guidanceInterval: request.guidanceInterval.map { [$0.lowerBound, $0.upperBound] }, strength: request.initial?.strength,
                              reconstructionGuidance: request.known?.reconstructionGuidance, model: model.path,
                              guideModel: guidedBy(request, pipeline),
                              seconds: Date().timeIntervalSince(started), detail: detail).report(json: json)
    }
}
