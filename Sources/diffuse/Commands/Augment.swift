import ArgumentParser
import Foundation
import Tensor
import NN
import Diffusion
import Image

struct Augment: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a labelled dataset bigger with a diffusion model, recording how every new file was made.",
        subcommands: [AugmentImage.self]
    )
}

struct AugmentImage: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "New images for a folder DIR/<class>/*.png, written to OUT/<class>/ with OUT/manifest.jsonl.",
        discussion: """
        --mode generate (default) draws new images of each class from a class-conditional model: the \
        bundled one or --model when its class names match the folder's, else one trained on the \
        folder first with --train-steps N (into OUT/.model-run, resumable). --mode vary makes \
        image-to-image variations of every real image (noised to --strength, then denoised), \
        keeping its label; a class the model never saw is varied unconditionally.
        Inputs are never modified. Re-running skips files already made. Every line of \
        OUT/manifest.jsonl (class, source, seed, sample number, sampler, steps, guidance, model and \
        its SHA-256) makes its file again bit for bit: `diffuse augment image --reproduce 'LINE' --out FILE`.
        """
    )

    @Option(help: "The labelled folder to augment: DIR/<class>/*.png.") var data: String?
    @Option(help: "Output folder (OUT/<class>/..., OUT/manifest.jsonl); with --reproduce, the PNG to write.") var out: String
    @Option(help: "generate or vary.") var mode: String = "generate"
    @Option(help: "generate: new images per class.") var perClass: Int?
    @Option(help: "generate: new images in all, spread over the classes.") var total: Int?
    @Flag(help: "With --total: give more to the classes with fewer real images, so they end up even.") var balance = false
    @Option(help: "vary: variations per real image.") var perSource = 1
    @Option(help: "vary: how far each real image is noised (0 keeps it, 1 replaces it).") var strength: Float = 0.5
    @Option(help: "Model: a pipeline folder (default: the bundled image model).") var model: String?
    @Option(help: "Train a model on --data for this many steps first (default recipe) and use it.") var trainSteps: Int?
    @Option(help: "Sampler.") var sampler: SamplerName = .dpmpp2m
    @Option(help: "Sampling steps.") var steps = 20
    @Option(help: "Classifier-free guidance scale (1 = none).") var guidance: Float = 2
    @Option(help: "Seed.") var seed: UInt64 = 0
    @Option(help: "Images per model call; the images do not depend on it.") var batch = 32
    @Option(help: "Make one manifest line's file again (the JSON line) into --out.") var reproduce: String?
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if reproduce != nil { return }
        guard data != nil else { throw ValidationError("--data DIR is required (or --reproduce LINE)") }
        guard let m = ImageAugment.Mode(rawValue: mode) else { throw ValidationError("--mode must be generate or vary") }
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

    func run() throws {
        runtime.apply()
        let outURL = URL(fileURLWithPath: out)
        if let reproduce {
            let record: AugmentationRecord
            do { record = try JSONDecoder().decode(AugmentationRecord.self, from: Data(reproduce.utf8)) } catch {
                throw ValidationError("--reproduce: not a manifest line: \(error)")
            }
            try ImageAugment.reproduce(record, to: outURL)
            print(outURL.path)
            return
        }
        let dataURL = URL(fileURLWithPath: data!)
        let folder = try ClassFolder(dataURL, extensions: ["png"])
        if outURL.standardizedFileURL.path == dataURL.standardizedFileURL.path {
            throw ValidationError("--out must not be the input folder (inputs are never modified)")
        }
        var modelDir: URL
        if let trainSteps {
            let run = outURL.appendingPathComponent(".model-run")
            let images = try ImageFolder(dataURL, channels: nil, size: 32)
            var recipe = ImageRecipe.fashionMNIST()
            recipe.training.steps = trainSteps
            recipe.model.numClassEmbeds = images.classNames.isEmpty ? nil : images.classNames.count + 1
            recipe.model.inChannels = images.channels
            recipe.model.outChannels = images.channels
            let progress = Progress(total: trainSteps, label: "train")
            _ = try ImageTraining.run(recipe: recipe, data: images, out: run, resume: true) { r in
                progress.update(r.step, status: String(format: "loss %.4f", r.loss))
                return true
            }
            modelDir = run.appendingPathComponent("model")
        } else {
            guard let dir = model.map({ URL(fileURLWithPath: $0) }) ?? bundledModel("image") else {
                throw ModelFolderError(path: "samples/image", reason: "no bundled image model: pass --model or --train-steps")
            }
            modelDir = dir
        }
        modelDir = modelDir.standardizedFileURL
        var o = ImageAugment.Options()
        o.mode = ImageAugment.Mode(rawValue: mode)!
        o.perClass = perClass; o.total = total; o.balance = balance
        o.perSource = perSource; o.strength = strength
        o.sampler = sampler; o.steps = steps; o.guidance = guidance; o.seed = seed; o.batch = batch
        var bar: Progress? = nil
        let r = try ImageAugment.run(data: folder, modelDir: modelDir, out: outURL, options: o) { done, total in
            if bar == nil && total > 0 { bar = Progress(total: total, label: "augment") }
            bar?.update(done)
        }
        print("\(r.made) new images in \(outURL.path)\(r.kept > 0 ? " (\(r.kept) already there)" : "")")
        print("manifest: \(outURL.appendingPathComponent("manifest.jsonl").path)")
    }
}
