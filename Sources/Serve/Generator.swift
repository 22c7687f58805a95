import Foundation
import Tensor
import NN
import Diffusion
import Media
import Workflow
import Image
import Audio
import Video

/// Runs the server's jobs through the same library paths as the command line: text-to-image
/// through `StableDiffusionPipeline.run(TextToImageJob)`, the class models through
/// `Pipeline<M>.generate` and `M.write`, augmentation through `DatasetAugment.run`. Models are
/// loaded on first use and kept. Every method runs on its model's thread (`JobQueue`), so one
/// model is never used by two jobs at once.
final class Generator: @unchecked Sendable {
    let catalog: ModelCatalog
    private let lock = NSLock()
    private var loaded: [String: AnyObject] = [:]
    private var hashes: [String: String] = [:]

    init(catalog: ModelCatalog) { self.catalog = catalog }

    private func cached<T: AnyObject>(_ entry: ModelCatalog.Entry, _ load: () throws -> T) throws -> T {
        if let m = lock.withLock({ loaded[entry.name] }) as? T { return m }
        let m = try load()
        lock.withLock { loaded[entry.name] = m }
        return m
    }

    func textToImagePipeline(_ entry: ModelCatalog.Entry) throws -> StableDiffusionPipeline {
        try cached(entry) { try StableDiffusionPipeline.load(entry.url) }
    }

    func pipeline<M: Modality>(_ type: M.Type, _ entry: ModelCatalog.Entry) throws -> Pipeline<M> {
        try cached(entry) { try Pipeline<M>.load(entry.url) }
    }

    /// The model's SHA-256 (what A1111 calls its hash), computed once.
    func hash(_ entry: ModelCatalog.Entry) -> String {
        if let h = lock.withLock({ hashes[entry.name] }) { return h }
        let h = (StableDiffusionPipeline.isSingleFile(entry.url) ? try? SHA256.hex(file: entry.url) : try? DatasetAugment.modelHash(entry.url)) ?? ""
        lock.withLock { hashes[entry.name] = h }
        return h
    }

    /// The guidance scale, the timesteps it applies at (nil: all) and the steps a model samples
    /// with when a request gives none.
    func defaults(_ entry: ModelCatalog.Entry) -> (guidance: Float, interval: ClosedRange<Float>?, steps: Int)? {
        func of<M: Modality>(_ p: Pipeline<M>) -> (Float, ClosedRange<Float>?, Int) { (p.defaultGuidance, p.defaultGuidanceInterval, p.defaultSteps) }
        switch entry.kind {
        case .textToImage: return (try? textToImagePipeline(entry)).map { ($0.defaultGuidance, $0.defaultGuidanceInterval, $0.defaultSteps) }
        case .image: return (try? pipeline(ImageModality.self, entry)).map(of)
        case .audio: return (try? pipeline(AudioModality.self, entry)).map(of)
        case .video: return (try? pipeline(VideoModality.self, entry)).map(of)
        }
    }

    /// Class names of a class model (for the model list); nil for text-to-image.
    func classNames(_ entry: ModelCatalog.Entry) -> [String]? {
        switch entry.kind {
        case .textToImage: return nil
        case .image: return try? pipeline(ImageModality.self, entry).classes.names
        case .audio: return try? pipeline(AudioModality.self, entry).classes.names
        case .video: return try? pipeline(VideoModality.self, entry).classes.names
        }
    }

    // MARK: Text to image

    struct TextToImageOutput {
        var pngs: [[UInt8]]
        var infotexts: [String]
        var seeds: [UInt64]
        var width: Int
        var height: Int
        /// The steps and guidance as run (the model's defaults where the request left them out).
        var steps: Int
        var guidance: Float
    }

    func textToImage(_ entry: ModelCatalog.Entry, _ t2i: TextToImageJob, _ request: SamplingRequest, job: Job) throws -> TextToImageOutput {
        let pipe = try textToImagePipeline(entry)
        let result = try pipe.run(t2i, request: request, progress: job.progress)
        let hash = hash(entry)
        var pngs: [[UInt8]] = [], infos: [String] = []
        for i in 0..<request.count {
            let info = StableDiffusionPipeline.parameters(t2i, result, sample: i, modelName: entry.name, modelHash: hash)
            let png = try PNGCodec.encode(Pixels(tensor: result.images.item(i)), name: "image \(i)", text: [("parameters", info)])
            pngs.append(png); infos.append(info)
            job.preview = png
        }
        return TextToImageOutput(pngs: pngs, infotexts: infos, seeds: (0..<request.count).map { request.seed &+ UInt64($0) },
                                 width: result.width, height: result.height, steps: request.steps, guidance: request.guidance)
    }

    // MARK: Class models

    /// Samples of a class model as files (PNG, WAV, MP4): `classes` as the CLI's --class,
    /// `shape` from the pipeline (nil: the size the model was trained at).
    func classSamples<M: Modality>(_ type: M.Type, _ entry: ModelCatalog.Entry, classes: String?, count: Int,
                                   sampling: SamplingSettings, job: Job,
                                   shape: (Pipeline<M>) throws -> [Int]? = { _ in nil }) throws -> [GeneratedFile] {
        let pipeline = try pipeline(M.self, entry)
        let chosen: (conditioning: Conditioning, guided: Bool, note: String?)
        do { chosen = try pipeline.classes.conditioning(classes, count: count, input: nil) } catch let e as UnknownClass {
            throw BadParameter("class", e.description)
        } catch is UnconditionalModel {
            throw BadParameter("class", "\(entry.name) is unconditional: leave class out")
        }
        let request = sampling.request(count: count, conditioning: chosen.conditioning, scheduler: pipeline.scheduler,
                                       defaultGuidance: pipeline.defaultGuidance, defaultGuidanceInterval: pipeline.defaultGuidanceInterval,
                                       defaultSteps: pipeline.defaultSteps)
        let samples = try pipeline.generate(request, shape: try shape(pipeline), progress: job.progress)
        let dir = try TempFolder()
        var files: [GeneratedFile] = []
        for i in 0..<count {
            let label = request.conditioning.labels?[i]
            let className = label.flatMap { $0 == pipeline.nullLabel ? nil : pipeline.classes.name($0) }
            let name = String(format: "%04d", i) + (className.map { "-\($0)" } ?? "") + "." + M.fileExtension
            let url = dir.url.appendingPathComponent(name)
            try M.write(samples.item(i), of: pipeline, to: url)
            let bytes = try Data(contentsOf: url)
            if M.fileExtension == "png" { job.preview = [UInt8](bytes) }
            files.append(GeneratedFile(name: name, mime: Self.mime(M.fileExtension), data: bytes.base64EncodedString(), class: className,
                                   seed: request.seed, index: i))
        }
        return files
    }

    static func mime(_ ext: String) -> String {
        switch ext {
        case "png": return "image/png"
        case "wav": return "audio/wav"
        case "mp4": return "video/mp4"
        default: return "application/octet-stream"
        }
    }

    // MARK: Augmentation

    struct AugmentOutput: Encodable {
        var made: Int
        var skipped: [String]
        var manifest: [AugmentationRecord]
        var files: [GeneratedFile]
    }

    /// `DatasetAugment.run` on a labelled set sent in the request (class → files), written into a
    /// temporary folder; the answer holds the new files and their manifest lines (whose `source`
    /// and `model` paths are the server's: the `file` names are what to keep).
    func augment<M: Modality>(_ type: M.Type, _ entry: ModelCatalog.Entry, data: [String: [Data]],
                              options: DatasetAugment.Options, job: Job) throws -> AugmentOutput {
        let dir = try TempFolder()
        let input = dir.url.appendingPathComponent("data"), out = dir.url.appendingPathComponent("out")
        let fm = FileManager.default
        for (name, files) in data {
            let classDir = input.appendingPathComponent(name)
            try fm.createDirectory(at: classDir, withIntermediateDirectories: true)
            for (i, bytes) in files.enumerated() {
                try bytes.write(to: classDir.appendingPathComponent(String(format: "%04d.", i) + M.fileExtension))
            }
        }
        let folder = try ClassFolder(input, extensions: M.dataExtensions)
        var skipped: [String] = []
        let outcome = try DatasetAugment.run(M.self, data: folder, modelDir: entry.url, out: out, options: options,
                                             warn: { skipped.append($0) }, progress: { done, total in _ = job.progress(done, total) })
        let records = try AugmentationManifest.read(out.appendingPathComponent("manifest.jsonl"))
        let files = try records.map { r in
            GeneratedFile(name: r.file, mime: Self.mime(M.fileExtension),
                      data: try Data(contentsOf: out.appendingPathComponent(r.file)).base64EncodedString(),
                      class: r.className.isEmpty ? nil : r.className, seed: r.seed, index: r.index)
        }
        return AugmentOutput(made: outcome.made, skipped: skipped, manifest: records, files: files)
    }
}

/// The sampling settings a request gave (validated), and the request they make for a model.
struct SamplingSettings {
    var sampler: SamplerName?
    /// nil: the model's own (a distilled student's, 4 for an LCM folder, else 20).
    var steps: Int?
    var seed: UInt64
    var guidance: Float?
    var eta: Float?
    var guidanceRescale: Float = 0
    var guidanceInterval: ClosedRange<Float>? = nil

    func request(count: Int, conditioning: Conditioning, scheduler: SchedulerConfig, defaultGuidance: Float,
                 defaultGuidanceInterval: ClosedRange<Float>?, defaultSteps: Int) -> SamplingRequest {
        var r = SamplingRequest(count: count, conditioning: conditioning, sampler: sampler ?? .default(for: scheduler), steps: steps ?? defaultSteps,
                                eta: eta, seed: seed, guidance: guidance ?? defaultGuidance, guidanceRescale: guidanceRescale)
        r.guidanceInterval = guidanceInterval ?? (r.guidance == 1 ? nil : defaultGuidanceInterval)
        return r
    }
}

/// A folder under the system's temporary folder, removed when the value goes away.
final class TempFolder {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-serve-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }
}
