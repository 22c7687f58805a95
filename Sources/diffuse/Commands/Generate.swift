import ArgumentParser
import Foundation
import Tensor
import NN
import Diffusion
import Image

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate samples with a trained model.",
        subcommands: [GenerateImage.self]
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
    @Option(help: "Output: a folder (one PNG per image) or a .png file (with --grid).") var out: String
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if count < 1 || count > 10_000 { throw ValidationError("--count must be between 1 and 10000") }
        if let batch, batch < 1 || batch > 4096 { throw ValidationError("--batch must be between 1 and 4096") }
        if steps < 1 || steps > 1000 { throw ValidationError("--steps must be between 1 and 1000") }
        if !(guidance >= 0 && guidance <= 50) { throw ValidationError("--guidance must be between 0 and 50") }
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
        var labels: [Int]? = nil
        if let classes {
            guard pipeline.unet.config.isClassConditional else {
                throw ModelFolderError(path: dir.path, reason: "the model is unconditional: drop --class")
            }
            do { labels = try pipeline.classes.labels(classes, count: count) } catch let e as UnknownClass {
                throw ValidationError("--class \(e)")
            }
        } else if pipeline.unet.config.isClassConditional {
            labels = pipeline.classes.cycling(count: count)
        }
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
        var progress: Progress? = nil
        let samples = try pipeline.generate(count: count, labels: labels, sampler: sampler, steps: steps, seed: seed,
                                            guidance: guidance, start: start, initial: initial, known: known,
                                            batchSize: batch, clamp: false) { step, total in
            if progress == nil { progress = Progress(total: total, label: "generate") }
            progress?.update(step)
            return true
        }
        if let raw { try SafeTensors.write(["sample": samples], to: URL(fileURLWithPath: raw)) }
        let images = GradMode.withoutGrad { samples.clamped(min: -1, max: 1) }
        let outURL = URL(fileURLWithPath: out)
        if grid {
            try ImageGrid.write(images, columns: Swift.min(count, 8), to: outURL)
            print(outURL.path)
        } else {
            try FileManager.default.createDirectory(at: outURL, withIntermediateDirectories: true)
            let per = images.count / count
            for i in 0..<count {
                let one = Tensor(shape: Array(images.shape.dropFirst()), scalars: Array(images.scalars[(i * per)..<((i + 1) * per)]))
                let name = labels.map { "\(String(format: "%04d", i))-\(pipeline.classes.name($0[i])).png" }
                    ?? String(format: "%04d.png", i)
                try PNGCodec.write(one, to: outURL.appendingPathComponent(name))
            }
            print("\(count) images in \(outURL.path)")
        }
    }
}
