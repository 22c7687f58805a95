import Foundation
import Tensor
import NN
import Diffusion
import Image

/// Trains a waveform model into a run folder (`TrainingRun`'s layout). Previews: one clip per
/// class (up to 8 classes spread over the set) joined into RUN/previews/step-N.wav, and their
/// spectrograms side by side in step-N.png.
public enum AudioTraining {
    public static func run(recipe: AudioRecipe, data: AudioFolder, out: URL, resume: Bool,
                           onStep: (TrainingStep) -> Bool = { _ in true }) throws -> AudioPipeline {
        try recipe.model.validate()
        try TrainingRun.prepare(recipe, out: out, resume: resume)
        let length = recipe.model.sampleSize ?? data.length
        guard recipe.model.inChannels == 1, length == data.length, (recipe.model.sampleRate ?? data.sampleRate) == data.sampleRate else {
            throw TrainingRunError(path: out.path, reason: "the model takes \(recipe.model.inChannels)×\(length) clips at \(recipe.model.sampleRate ?? 0) Hz, the data is mono \(data.length) at \(data.sampleRate) Hz")
        }
        let classes = data.classNames
        let conditional = recipe.model.isClassConditional
        let (objective, null) = try TrainingRun.objective(scheduler: recipe.scheduler, labelCount: recipe.model.numClassEmbeds,
                                                          classes: classes.count, labelDropout: recipe.labelDropout, out: out)
        NNInit.seed(recipe.training.seed)
        let unet = try UNet1DModel(config: recipe.model)
        let trainer = try Trainer(model: unet, objective: objective, options: recipe.training)
        let pipeline = AudioPipeline(unet: unet, scheduler: recipe.scheduler, classNames: conditional ? classes : [])

        let batch = recipe.training.batchSize
        try TrainingRun.run(trainer: trainer, out: out, previewEvery: recipe.previewEvery, batch: { rng in
            let (x, y) = data.batch(rng.integers(batch, below: data.count))
            return (x, conditional ? y : nil)
        }, preview: { step in
            let shown = conditional ? ClassLabels.spread(classes.count, 8) : nil
            let clips = try pipeline.generate(count: shown?.count ?? 4, labels: shown, sampler: .dpmpp2m, steps: 20, seed: 1,
                                              guidance: null == nil ? 1 : 2)
            let base = out.appendingPathComponent("previews/step-\(step)")
            try AudioCodec.write(AudioClip(samples: AudioPipeline.join(clips, fade: 160), sampleRate: pipeline.sampleRate),
                                 to: base.appendingPathExtension("wav"))
            let n = clips.shape[2]
            try Spectrogram.write((0..<clips.shape[0]).map { Array(clips.scalars[($0 * n)..<(($0 + 1) * n)]) },
                                  to: base.appendingPathExtension("png"))
        }, export: {
            try pipeline.save(to: out.appendingPathComponent("model"))
        }, onStep: onStep)
        try LossPlot.write(csv: out.appendingPathComponent("loss.csv"), to: out.appendingPathComponent("loss.png"))
        return pipeline
    }
}
