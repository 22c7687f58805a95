import ArgumentParser
import Foundation
import Tensor
import NN
import Diffusion
import Image
import Audio
import Video

struct Augment: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a labelled dataset bigger with a diffusion model, recording how every new file was made.",
        discussion: """
        --mode generate (default) draws new samples of each class from a class-conditional model: the \
        bundled one or --model when its class names match the folder's, else one trained on the \
        folder first with --train-steps N (into OUT/.model-run, resumable). --mode vary makes \
        variations of every real sample (noised to --strength, then denoised), keeping its label; a \
        class the model never saw is varied unconditionally. Inputs are never modified; an unreadable \
        input is skipped with a warning and counted. Re-running skips files already made. Every line \
        of OUT/manifest.jsonl (class, source, seed, sample number, sampler, steps, guidance, model and \
        its SHA-256) makes its file again bit for bit: `diffuse augment MODALITY --reproduce 'LINE' --out FILE`.
        """,
        subcommands: [AugmentImage.self, AugmentAudio.self, AugmentVideo.self]
    )
}

/// The options every `augment` modality shares.
struct AugmentOptions: ParsableArguments {
    @Option(help: "The labelled folder to augment: DIR/<class>/<files>.") var data: String?
    @Option(help: "Output folder (OUT/<class>/..., OUT/manifest.jsonl); with --reproduce, the file to write.") var out: String
    @Option(help: "generate or vary.") var mode: String = "generate"
    @Option(help: "generate: new samples per class.") var perClass: Int?
    @Option(help: "generate: new samples in all, spread over the classes.") var total: Int?
    @Flag(help: "With --total: give more to the classes with fewer real samples, so they end up even.") var balance = false
    @Option(help: "vary: variations per real sample.") var perSource = 1
    @Option(help: "vary: how far each real sample is noised (0 keeps it, 1 replaces it).") var strength: Float = 0.5
    @Option(help: "Model: a pipeline folder (default: the bundled model of the modality).") var model: String?
    @Option(help: "Train a model on --data for this many steps first (the modality's default recipe) and use it.") var trainSteps: Int?
    @Option(help: "Sampler.") var sampler: SamplerName = .dpmpp2m
    @Option(help: "Sampling steps.") var steps = 20
    @Option(help: "Classifier-free guidance scale (1 = none).") var guidance: Float = 2
    @Option(help: "Seed.") var seed: UInt64 = 0
    @Option(help: "Samples per model call; the samples do not depend on it.") var batch = 32
    @Option(help: "Make one manifest line's file again (the JSON line) into --out.") var reproduce: String?
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if reproduce != nil { return }
        guard data != nil else { throw ValidationError("--data DIR is required (or --reproduce LINE)") }
        guard let m = DatasetAugment.Mode(rawValue: mode) else { throw ValidationError("--mode must be generate or vary") }
        if m == .generate && (perClass == nil) == (total == nil) { throw ValidationError("--mode generate needs --per-class N or --total N") }
        if let perClass, perClass < 1 || perClass > 999_999 { throw ValidationError("--per-class must be between 1 and 999999") }
        if let total, total < 1 || total > 10_000_000 { throw ValidationError("--total must be between 1 and 10000000") }
        if balance && total == nil { throw ValidationError("--balance goes with --total") }
        if perSource < 1 || perSource > 999 { throw ValidationError("--per-source must be between 1 and 999") }
        if !(strength > 0 && strength <= 1) { throw ValidationError("--strength must be in (0, 1]") }
        if steps < 1 || steps > 1000 { throw ValidationError("--steps must be between 1 and 1000") }
        if batch < 1 || batch > 4096 { throw ValidationError("--batch must be between 1 and 4096") }
        if !(guidance >= 0 && guidance <= 50) { throw ValidationError("--guidance must be between 0 and 50") }
        if let trainSteps, trainSteps < 1 { throw ValidationError("--train-steps must be at least 1") }
        if trainSteps != nil && model != nil { throw ValidationError("--train-steps trains a new model: drop --model") }
    }

    /// Runs the command for one modality. `train(data, run, steps)` trains a model on the data
    /// into the run folder (resumable) for --train-steps.
    func run<P: AugmentablePipeline>(_ type: P.Type, modality: String, extensions: Set<String>,
                                     train: (URL, URL, Int) throws -> Void) throws {
        runtime.apply()
        let outURL = URL(fileURLWithPath: out)
        if let reproduce {
            let record: AugmentationRecord
            do { record = try JSONDecoder().decode(AugmentationRecord.self, from: Data(reproduce.utf8)) } catch {
                throw ValidationError("--reproduce: not a manifest line: \(error)")
            }
            try DatasetAugment.reproduce(P.self, record, to: outURL)
            print(outURL.path)
            return
        }
        let dataURL = URL(fileURLWithPath: data!)
        let folder = try ClassFolder(dataURL, extensions: extensions)
        if outURL.standardizedFileURL.path == dataURL.standardizedFileURL.path {
            throw ValidationError("--out must not be the input folder (inputs are never modified)")
        }
        var modelDir: URL
        if let trainSteps {
            let run = outURL.appendingPathComponent(".model-run")
            try train(dataURL, run, trainSteps)
            modelDir = run.appendingPathComponent("model")
        } else {
            guard let dir = model.map({ URL(fileURLWithPath: $0) }) ?? bundledModel(modality) else {
                throw ModelFolderError(path: "samples/\(modality)", reason: "no bundled \(modality) model: pass --model or --train-steps")
            }
            modelDir = dir
        }
        modelDir = modelDir.standardizedFileURL
        var o = DatasetAugment.Options()
        o.mode = DatasetAugment.Mode(rawValue: mode)!
        o.perClass = perClass; o.total = total; o.balance = balance
        o.perSource = perSource; o.strength = strength
        o.sampler = sampler; o.steps = steps; o.guidance = guidance; o.seed = seed; o.batch = batch
        var bar: Progress? = nil
        let r = try DatasetAugment.run(P.self, data: folder, modelDir: modelDir, out: outURL, options: o, warn: note) { done, total in
            if bar == nil && total > 0 { bar = Progress(total: total, label: "augment") }
            bar?.update(done)
        }
        print("\(r.made) new files in \(outURL.path)\(r.kept > 0 ? " (\(r.kept) already there)" : "")")
        if !r.skipped.isEmpty { print("skipped \(r.skipped.count) unreadable input file\(r.skipped.count == 1 ? "" : "s")") }
        print("manifest: \(outURL.appendingPathComponent("manifest.jsonl").path)")
    }
}

/// Trains with `run` under a progress bar of `steps` steps.
private func trainQuietly(steps: Int, _ run: ((TrainingStep) -> Bool) throws -> Void) throws {
    let progress = Progress(total: steps, label: "train")
    try run { r in
        progress.update(r.step, status: String(format: "loss %.4f", r.loss))
        return true
    }
}

struct AugmentImage: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "New images for a folder DIR/<class>/*.png, written to OUT/<class>/ with OUT/manifest.jsonl.",
        discussion: "See `diffuse augment --help`. Images are made at the model's size and channels."
    )
    @OptionGroup var options: AugmentOptions

    func run() throws {
        try options.run(ImagePipeline.self, modality: "image", extensions: ["png"]) { data, run, steps in
            let images = try ImageFolder(data, channels: nil, size: 32)
            var recipe = ImageRecipe.fashionMNIST()
            recipe.training.steps = steps
            recipe.model.numClassEmbeds = images.classNames.isEmpty ? nil : images.classNames.count + 1
            recipe.model.inChannels = images.channels
            recipe.model.outChannels = images.channels
            try trainQuietly(steps: steps) { _ = try ImageTraining.run(recipe: recipe, data: images, out: run, resume: true, onStep: $0) }
        }
    }
}

struct AugmentAudio: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audio",
        abstract: "New clips for a folder DIR/<class>/*.wav|flac|ogg, written as WAV to OUT/<class>/ with OUT/manifest.jsonl.",
        discussion: "See `diffuse augment --help`. Clips have the model's length and rate; real clips are mixed to mono, resampled and cut or padded to it."
    )
    @OptionGroup var options: AugmentOptions

    func run() throws {
        try options.run(AudioPipeline.self, modality: "audio", extensions: AudioFolder.extensions) { data, run, steps in
            let probe = try ClassFolder(data, extensions: AudioFolder.extensions)
            var recipe = AudioRecipe.notes(classes: Swift.max(1, probe.classNames.count))
            recipe.training.steps = steps
            recipe.model.numClassEmbeds = probe.classNames.isEmpty ? nil : probe.classNames.count + 1
            let clips = try AudioFolder(data, sampleRate: recipe.model.sampleRate ?? 16_000, length: recipe.model.sampleSize ?? 16_384)
            try trainQuietly(steps: steps) { _ = try AudioTraining.run(recipe: recipe, data: clips, out: run, resume: true, onStep: $0) }
        }
    }
}

struct AugmentVideo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "video",
        abstract: "New clips for a folder DIR/<class>/*.mp4|webm|gif, written as MP4 to OUT/<class>/ with OUT/manifest.jsonl.",
        discussion: "See `diffuse augment --help`. Clips have the model's frames, size and rate; real clips are resampled to them."
    )
    @OptionGroup var options: AugmentOptions

    func run() throws {
        try options.run(VideoPipeline.self, modality: "video", extensions: VideoFolder.extensions) { data, run, steps in
            let probe = try ClassFolder(data, extensions: VideoFolder.extensions)
            var recipe = VideoRecipe.movingFashion()
            recipe.training.steps = steps
            recipe.model.spatial.numClassEmbeds = probe.classNames.isEmpty ? nil : probe.classNames.count + 1
            let clips = try VideoFolder(data, frames: recipe.model.numFrames, size: recipe.model.frameSize[0], channels: nil,
                                        fps: recipe.model.frameRate)
            recipe.model.spatial.inChannels = clips.channels
            recipe.model.spatial.outChannels = clips.channels
            try trainQuietly(steps: steps) { _ = try VideoTraining.run(recipe: recipe, data: clips, out: run, resume: true, onStep: $0) }
        }
    }
}
