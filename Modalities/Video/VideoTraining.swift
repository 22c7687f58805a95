import Foundation
import Tensor
import NN
import Diffusion
import Image

/// Trains a video model into a run folder (`TrainingRun`'s layout). Previews: one clip per class
/// (up to 8 classes spread over the set) tiled side by side into RUN/previews/step-N.gif.
public enum VideoTraining {
    public static func run(recipe given: VideoRecipe, data: VideoFolder, out: URL, resume: Bool,
                           onStep: (TrainingStep) -> Bool = { _ in true }) throws -> VideoPipeline {
        var recipe = given
        if resume, recipe.initFrom == nil, let d = try? Data(contentsOf: out.appendingPathComponent("recipe.json")),
           let old = try? JSONDecoder().decode(VideoRecipe.self, from: d) {
            recipe.initFrom = old.initFrom  // where the run started stays on record
        }
        try recipe.model.validate()
        try TrainingRun.prepare(recipe, out: out, resume: resume)
        let m = recipe.model
        guard m.spatial.inChannels == data.channels, m.frameSize == [data.size, data.size], m.numFrames == data.frames else {
            throw TrainingRunError(path: out.path, reason: "the model takes \(m.numFrames) frames of \(m.spatial.inChannels)×\(m.frameSize), the data is \(data.frames) frames of \(data.channels)×\([data.size, data.size])")
        }
        let classes = data.classNames
        let conditional = m.isClassConditional
        let (objective, null) = try TrainingRun.objective(scheduler: recipe.scheduler, labelCount: m.spatial.numClassEmbeds,
                                                          classes: classes.count, labelDropout: recipe.labelDropout, out: out)
        NNInit.seed(recipe.training.seed)
        let unet = try VideoUNetModel(config: m)
        let resuming = Trainer.latestCheckpoint(in: out.appendingPathComponent("checkpoints")) != nil
        if let from = recipe.initFrom, !resuming {
            // Before the trainer exists: its EMA starts from these weights.
            let image = try UNet2DModel.load(URL(fileURLWithPath: from))
            try unet.loadSpatial(from: image, source: from)
        }
        let trainer = try Trainer(model: unet, objective: objective, options: recipe.training)
        let pipeline = VideoPipeline(unet: unet, scheduler: recipe.scheduler, classNames: conditional ? classes : [])

        let batch = recipe.training.batchSize
        try TrainingRun.run(trainer: trainer, out: out, previewEvery: recipe.previewEvery, batch: { rng in
            let imageStep = recipe.jointImageFraction > 0 && rng.uniform([1]).data[0] < recipe.jointImageFraction
            if imageStep {
                // x: [(B F), C, 1, H, W]: single frames of random clips
                let k = batch * m.numFrames
                let (x, y) = try data.frameBatch(rng.integers(k, below: data.count), frameIndices: rng.integers(k, below: data.frames))
                return (x, conditional ? y : nil)
            }
            let (x, y) = try data.batch(rng.integers(batch, below: data.count))
            return (x, conditional ? y : nil)
        }, preview: { step in
            let shown = conditional ? ClassLabels.spread(classes.count, 8) : nil
            let clips = try pipeline.generate(count: shown?.count ?? 4, labels: shown, sampler: .dpmpp2m, steps: 20, seed: 1,
                                              guidance: null == nil ? 1 : 2)
            try VideoCodec.writeGIF(VideoPipeline.tile(clips, columns: 8), fps: pipeline.fps,
                                    to: out.appendingPathComponent("previews/step-\(step).gif"))
        }, export: {
            try pipeline.save(to: out.appendingPathComponent("model"))
        }, onStep: onStep)
        try LossPlot.write(csv: out.appendingPathComponent("loss.csv"), to: out.appendingPathComponent("loss.png"))
        return pipeline
    }
}
