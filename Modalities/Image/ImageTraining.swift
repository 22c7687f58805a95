import Foundation
import Tensor
import NN
import Diffusion

/// Trains an image model from a recipe into a run folder (`TrainingRun`'s layout; previews are
/// sample grids, a row per class; the model is a diffusers pipeline folder; loss.png at the end).
public enum ImageTraining {
    public static func run(recipe: ImageRecipe, data: ImageDataset, out: URL, resume: Bool,
                           onStep: (TrainingStep) -> Bool = { _ in true }) throws -> ImagePipeline {
        try TrainingRun.prepare(recipe, out: out, resume: resume)
        guard recipe.model.inChannels == data.channels,
              recipe.model.sampleSize.map({ $0 == [data.size.height, data.size.width] }) ?? true else {
            throw TrainingRunError(path: out.path, reason: "the model takes \(recipe.model.inChannels)×\(recipe.model.sampleSize ?? []) images, the data has \(data.channels)×\([data.size.height, data.size.width])")
        }
        let classes = data.classNames
        let conditional = recipe.model.isClassConditional
        let (objective, null) = try TrainingRun.objective(scheduler: recipe.scheduler, labelCount: recipe.model.numClassEmbeds,
                                                          classes: classes.count, labelDropout: recipe.labelDropout, out: out)
        NNInit.seed(recipe.training.seed)
        let unet = try UNet2DModel(config: recipe.model)
        let trainer = try Trainer(model: unet, objective: objective, options: recipe.training)
        let pipeline = ImagePipeline(unet: unet, scheduler: recipe.scheduler, classNames: conditional ? classes : [])

        let batch = recipe.training.batchSize
        try TrainingRun.run(trainer: trainer, out: out, previewEvery: recipe.previewEvery, batch: { rng in
            let idx = rng.integers(batch, below: data.count)
            let (x, y) = try data.batch(idx)
            if recipe.randomFlip {
                // x: [N, C, H, W]; mirror along W the samples whose coin came up
                let flip = rng.integers(batch, below: 2)
                if flip.contains(1) { x.flipWidth(where: flip.map { $0 == 1 }) }
            }
            return (x, conditional ? y : nil)
        }, preview: { step in
            let perRow = 8
            let labels: [Int]? = conditional ? (0..<classes.count).flatMap { [Int](repeating: $0, count: perRow) } : nil
            let count = labels?.count ?? 2 * perRow
            let images = try pipeline.generate(count: count, labels: labels, sampler: .dpmpp2m, steps: 20, seed: 1,
                                               guidance: null == nil ? 1 : 2)
            try ImageGrid.write(images, columns: perRow, to: out.appendingPathComponent("previews/step-\(step).png"))
        }, export: {
            try pipeline.save(to: out.appendingPathComponent("model"))
        }, onStep: onStep)
        try LossPlot.write(csv: out.appendingPathComponent("loss.csv"), to: out.appendingPathComponent("loss.png"))
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
