import Foundation
import Tensor
import NN
import Diffusion

/// A run folder that cannot be used as asked.
public struct TrainingRunError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public init(path: String, reason: String) { self.path = path; self.reason = reason }
    public var description: String { "\(path): \(reason)" }
}

/// Trains an image model from a recipe into a run folder:
///
///     RUN/recipe.json            the recipe used (a resumed run must match it; only steps may grow)
///     RUN/checkpoints/           trainer checkpoints (atomic; `latest` points at the newest)
///     RUN/model/                 diffusers pipeline folder with the EMA weights (each checkpoint)
///     RUN/previews/step-N.png    a grid of samples, a row per class
///     RUN/loss.csv, RUN/loss.png the loss log and its curve
public enum ImageTraining {
    public static func run(recipe: ImageRecipe, data: ImageDataset, out: URL, resume: Bool,
                           onStep: (TrainingStep) -> Bool = { _ in true }) throws -> ImagePipeline {
        let fm = FileManager.default
        try fm.createDirectory(at: out.appendingPathComponent("previews"), withIntermediateDirectories: true)
        let ckpt = out.appendingPathComponent("checkpoints")
        let recipeURL = out.appendingPathComponent("recipe.json")
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        if Trainer.latestCheckpoint(in: ckpt) != nil {
            guard resume else {
                throw TrainingRunError(path: out.path, reason: "holds checkpoints of an earlier run: pass --resume, or choose another --out")
            }
            if let data = try? Data(contentsOf: recipeURL) {
                guard let old = try? JSONDecoder().decode(ImageRecipe.self, from: data) else {
                    throw TrainingRunError(path: recipeURL.path, reason: "is not a readable recipe")
                }
                guard old.canResume(as: recipe) else {
                    throw TrainingRunError(path: recipeURL.path, reason: "differs from this run's recipe; resume with the same settings (only --steps may change)")
                }
            }
        }
        try AtomicFile.write(try enc.encode(recipe), to: recipeURL)

        guard recipe.model.inChannels == data.channels,
              recipe.model.sampleSize.map({ $0 == [data.size.height, data.size.width] }) ?? true else {
            throw TrainingRunError(path: out.path, reason: "the model takes \(recipe.model.inChannels)×\(recipe.model.sampleSize ?? []) images, the data has \(data.channels)×\([data.size.height, data.size.width])")
        }
        let classes = data.classNames
        let conditional = recipe.model.isClassConditional
        if conditional, let k = recipe.model.numClassEmbeds, k < classes.count + (recipe.labelDropout > 0 ? 1 : 0) {
            throw TrainingRunError(path: recipeURL.path, reason: "num_class_embeds \(k) is too small for \(classes.count) classes\(recipe.labelDropout > 0 ? " plus the null label" : "")")
        }
        NNInit.seed(recipe.training.seed)
        let unet = try UNet2DModel(config: recipe.model)
        let schedule = try recipe.scheduler.noiseSchedule()
        let null = conditional && recipe.labelDropout > 0 ? recipe.model.numClassEmbeds! - 1 : nil
        let objective = DiffusionObjective(schedule: schedule, prediction: try recipe.scheduler.parameterization().prediction,
                                           labelDropout: null == nil ? 0 : recipe.labelDropout, nullLabel: null)
        let trainer = try Trainer(model: unet, objective: objective, options: recipe.training)
        let pipeline = ImagePipeline(unet: unet, scheduler: recipe.scheduler, classNames: conditional ? classes : [])

        func export() throws {
            let restore = trainer.swapInEMA()
            defer { restore() }
            try pipeline.save(to: out.appendingPathComponent("model"))
        }
        func preview(_ step: Int) throws {
            let restore = trainer.swapInEMA()
            defer { restore() }
            let perRow = 8
            let labels: [Int]? = conditional ? (0..<classes.count).flatMap { [Int](repeating: $0, count: perRow) } : nil
            let count = labels?.count ?? 2 * perRow
            let images = try pipeline.generate(count: count, labels: labels, sampler: .dpmpp2m, steps: 20, seed: 1,
                                               guidance: null == nil ? 1 : 2)
            try ImageGrid.write(images, columns: perRow, to: out.appendingPathComponent("previews/step-\(step).png"))
        }
        let logURL = out.appendingPathComponent("loss.csv")
        if !fm.fileExists(atPath: logURL.path) { try AtomicFile.write(Data("step,loss,learning_rate,grad_norm\n".utf8), to: logURL) }
        let log = try FileHandle(forWritingTo: logURL)
        defer { try? log.close() }
        try log.seekToEnd()

        let batch = recipe.training.batchSize
        try trainer.run(checkpointDir: ckpt, batch: { rng in
            let idx = rng.integers(batch, below: data.count)
            let (x, y) = try data.batch(idx)
            if recipe.randomFlip {
                // x: [N, C, H, W]; mirror along W the samples whose coin came up
                let flip = rng.integers(batch, below: 2)
                if flip.contains(1) { x.flipWidth(where: flip.map { $0 == 1 }) }
            }
            return (x, conditional ? y : nil)
        }, periodic: [
            .init(every: Swift.max(1, recipe.previewEvery)) { _, r in try preview(r.step) },
            .init(every: Swift.max(1, recipe.training.checkpointEvery == 0 ? recipe.training.steps : recipe.training.checkpointEvery)) { _, _ in try export() },
        ]) { r in
            try? log.write(contentsOf: Data(String(format: "%d,%.6f,%.6g,%.4f\n", r.step, r.loss, r.learningRate, r.gradNorm).utf8))
            return onStep(r)
        }
        try export()
        try LossPlot.write(csv: logURL, to: out.appendingPathComponent("loss.png"))
        return pipeline
    }
}

/// A loss curve as a PNG: log-scale loss (raw in grey, a moving average in white) over steps.
public enum LossPlot {
    public static func write(csv: URL, to url: URL, width: Int = 480, height: Int = 240) throws {
        let text = (try? String(contentsOf: csv, encoding: .utf8)) ?? ""
        let losses = text.split(separator: "\n").dropFirst().compactMap { line -> Float? in
            let f = line.split(separator: ",")
            return f.count >= 2 ? Float(f[1]) : nil
        }.filter { $0 > 0 && $0.isFinite }
        let img = Tensor.full([1, height, width], -1)
        guard losses.count >= 2 else { try PNGCodec.write(img, to: url); return }
        let logs = losses.map { Foundation.log10($0) }
        let lo = logs.min()!, hi = Swift.max(logs.max()!, lo + 1e-3)
        let window = Swift.max(1, losses.count / 50)
        var smooth: [Float] = []
        var acc: Float = 0
        for (i, v) in logs.enumerated() {
            acc += v
            if i >= window { acc -= logs[i - window] }
            smooth.append(acc / Float(Swift.min(i + 1, window)))
        }
        func plot(_ ys: [Float], _ value: Float) {
            for x in 0..<width {
                let i = x * (ys.count - 1) / Swift.max(width - 1, 1)
                let y = Int((1 - (ys[i] - lo) / (hi - lo)) * Float(height - 1))
                img.data[Swift.max(0, Swift.min(height - 1, y)) * width + x] = value
            }
        }
        plot(logs, 0)
        plot(smooth, 1)
        try PNGCodec.write(img, to: url)
    }
}
