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
    @Option(name: [.long, .customShort("o")], help: "Output folder (OUT/<class>/..., OUT/manifest.jsonl); with --reproduce, the file to write.") var out: String
    @Option(help: "generate (new samples from noise) or vary (variations of every real sample).") var mode: DatasetAugment.Mode = .generate
    @Option(help: "generate: new samples per class.") var perClass: Int?
    @Option(help: "generate: new samples in all, spread over the classes.") var total: Int?
    @Flag(help: "With --total: give more to the classes with fewer real samples, so they end up even.") var balance = false
    @Option(help: "vary: variations per real sample.") var perSource = 1
    @Option(help: "Model: a pipeline folder (default: the bundled model of the modality).") var model: String?
    @Option(help: "Train a model on --data for this many steps first (the modality's default recipe) and use it.") var trainSteps: Int?
    @Flag(help: "Use the model's distilled few-step student (MODEL-fast beside it, made by `diffuse distill`): its sampler, steps and baked-in guidance.")
    var fast = false
    @OptionGroup var sampling: SamplingOptions
    @Option(help: "Make one manifest line's file again (the JSON line) into --out.") var reproduce: String?
    @Flag(help: "Print what was written as JSON (files, classes, seed, settings, seconds).") var json = false
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if reproduce != nil { return }
        guard data != nil else { throw ValidationError("--data DIR is required (or --reproduce LINE)") }
        if mode == .generate && (perClass == nil) == (total == nil) { throw ValidationError("--mode generate needs --per-class N or --total N") }
        if let perClass, perClass < 1 || perClass > 999_999 { throw ValidationError("--per-class must be between 1 and 999999") }
        if let total, total < 1 || total > 10_000_000 { throw ValidationError("--total must be between 1 and 10000000") }
        if balance && total == nil { throw ValidationError("--balance goes with --total") }
        if perSource < 1 || perSource > 999 { throw ValidationError("--per-source must be between 1 and 999") }
        if sampling.rng != .diffuse { throw ValidationError("--rng: augment draws every sample's own noise, so its manifest can make each file again; leave --rng out") }
        if let trainSteps, trainSteps < 1 || trainSteps > 10_000_000 { throw ValidationError("--train-steps must be between 1 and 10000000") }
        if trainSteps != nil && model != nil { throw ValidationError("--train-steps trains a new model: drop --model") }
        if trainSteps != nil && fast { throw ValidationError("--fast uses a distilled student; --train-steps trains a new teacher: choose one") }
    }

    /// Runs the command for modality `M`; with --train-steps, first trains the modality's default
    /// recipe fitted to the data into OUT/.model-run (resumable) and uses that model.
    func run<M: Modality>(_ type: M.Type) throws {
        runtime.apply()
        let started = Date()
        let outURL = URL(fileURLWithPath: out)
        if let reproduce {
            let record: AugmentationRecord
            do { record = try JSONDecoder().decode(AugmentationRecord.self, from: Data(reproduce.utf8)) } catch {
                throw ValidationError("--reproduce: not a line of manifest.jsonl: \(DecodingProblem.sentence(error))")
            }
            try DatasetAugment.reproduce(M.self, record, to: outURL)
            if json {
                try printJSON(AugmentSummary(files: [outURL.path], made: 1, kept: 0, skipped: [], classes: [record.className], matched: [:],
                                             seed: record.seed, manifest: nil, seconds: Date().timeIntervalSince(started)))
            } else {
                print(String(format: "1 file (class %@, seed %llu), %.1f s:\n  %@", record.className, record.seed,
                             Date().timeIntervalSince(started), outURL.path))
            }
            return
        }
        let dataURL = URL(fileURLWithPath: data!)
        let folder = try ClassFolder(dataURL, extensions: M.dataExtensions)
        if outURL.standardizedFileURL.path == dataURL.standardizedFileURL.path {
            throw ValidationError("--out must not be the input folder (inputs are never modified)")
        }
        var modelDir: URL
        if let trainSteps {
            let run = outURL.appendingPathComponent(".model-run")
            var recipe = M.defaultRecipe(classes: 1)
            recipe.training.steps = trainSteps
            let set = try M.loadData(dataURL.path, for: recipe, fitting: true, note: { print($0) })
            recipe = M.fitted(recipe, to: set)
            let progress = Progress(total: trainSteps, label: "train")
            try Training.run(recipe: recipe, data: set, out: run, resume: true) { r in
                progress.update(r.step, status: String(format: "loss %.4f", r.loss))
                return true
            }
            modelDir = run.appendingPathComponent("model")
        } else {
            guard let dir = model.map({ URL(fileURLWithPath: $0) }) ?? bundledModel(M.name) else {
                throw ModelFolderError(path: "samples/\(M.name)", reason: noBundledModel(M.name, alternative: "--model DIR or --train-steps N"))
            }
            modelDir = fast ? try studentFolder(of: dir, M.name) : dir
        }
        modelDir = modelDir.standardizedFileURL
        let student = try DistillationInfo.load(modelDir)
        if let student, let g = sampling.guidance, g != student.guidanceScale {
            throw ValidationError("--guidance: \(modelDir.path) is a distilled student with guidance \(student.guidanceScale) baked in; leave --guidance out")
        }
        var o = DatasetAugment.Options()
        o.mode = mode
        o.perClass = perClass; o.total = total; o.balance = balance
        o.perSource = perSource; o.strength = sampling.strength ?? SamplingOptions.defaultStrength
        o.sampler = try sampling.sampler ?? .default(for: PipelineFolder.scheduler(in: modelDir)); o.steps = try sampling.steps ?? student?.steps ?? SamplingDefaults.load(modelDir)?.steps ?? 20
        o.guidance = student?.guidanceScale ?? sampling.guidance; o.seed = sampling.seed  // nil: the model folder's default
        o.guidanceRescale = sampling.guidanceRescale; o.guidanceInterval = try sampling.parsedGuidanceInterval(); o.eta = sampling.eta
        o.batch = sampling.batch ?? 32
        var bar: Progress? = nil
        let r = try DatasetAugment.run(M.self, data: folder, modelDir: modelDir, out: outURL, options: o, warn: note) { done, total in
            if bar == nil && total > 0 { bar = Progress(total: total, label: "augment") }
            bar?.update(done)
        }
        let manifest = outURL.appendingPathComponent("manifest.jsonl").path
        let seconds = Date().timeIntervalSince(started)
        let classes = folder.classNames
        if json {
            try printJSON(AugmentSummary(files: r.files.map { outURL.appendingPathComponent($0).path }, made: r.made, kept: r.kept,
                                         skipped: r.skipped.map(\.file), classes: classes,
                                         matched: Dictionary(r.matched.map { ($0.folder, $0.className) }, uniquingKeysWith: { a, _ in a }),
                                         seed: o.seed, manifest: manifest, seconds: seconds))
            return
        }
        for m in r.matched { print("class folder \(m.folder) → the model's class \(m.className)") }
        var line = "\(plural(r.made, "new file")) in \(outURL.path)"
        if r.kept > 0 { line += " (\(r.kept) already there)" }
        if !classes.isEmpty { line += ", " + (classes.count == 1 ? "class " : "classes ") + classes.joined(separator: ", ") }
        line += String(format: ", seed %llu, %.1f s", o.seed, seconds)
        print(line)
        if !r.skipped.isEmpty { print("skipped \(plural(r.skipped.count, "unreadable input file"))") }
        print("manifest: \(manifest)")
    }
}

/// What an `augment` run wrote (`--json`).
struct AugmentSummary: Encodable {
    var files: [String]
    var made: Int
    var kept: Int
    var skipped: [String]
    var classes: [String]
    /// Class folders matched to a model class of another spelling: folder → class.
    var matched: [String: String]
    var seed: UInt64
    var manifest: String?
    var seconds: Double
}

extension DatasetAugment.Mode: ExpressibleByArgument {}

struct AugmentImage: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "New images for a folder DIR/<class>/*.png, written to OUT/<class>/ with OUT/manifest.jsonl.",
        discussion: "See `diffuse augment --help`. Images are made at the model's size and written back in the size and mode (gray or RGB) of their inputs: a varied file as its source, a generated one as its class's first file (resized bilinearly; the manifest's `shape` says so)."
    )
    @OptionGroup var options: AugmentOptions

    func run() throws { try options.run(ImageModality.self) }
}

struct AugmentAudio: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audio",
        abstract: "New clips for a folder DIR/<class>/*.wav|flac|ogg, written as WAV to OUT/<class>/ with OUT/manifest.jsonl.",
        discussion: "See `diffuse augment --help`. Clips have the model's length and rate; real clips are mixed to mono, resampled and cut or padded to it."
    )
    @OptionGroup var options: AugmentOptions

    func run() throws { try options.run(AudioModality.self) }
}

struct AugmentVideo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "video",
        abstract: "New clips for a folder DIR/<class>/*.mp4|webm|gif, written as MP4 to OUT/<class>/ with OUT/manifest.jsonl.",
        discussion: "See `diffuse augment --help`. Clips have the model's frames, size and rate; real clips are resampled to them."
    )
    @OptionGroup var options: AugmentOptions

    func run() throws { try options.run(VideoModality.self) }
}
