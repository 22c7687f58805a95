import Foundation
import Tensor
import NN
import Diffusion
import Text
import Media
import Workflow

/// Distils a text-to-image pipeline into a few-step student that takes the guidance scale as an
/// input, as latent consistency models do (Luo et al. 2023, §4.2): the student's unet is the
/// teacher's with `time_cond_proj_dim` added (diffusers' name; the guidance embedding of
/// w = scale − 1 is projected into the timestep embedding), its new projection starting at zero
/// so the student starts as the teacher's conditional prediction. Every training sample draws its
/// scale from `recipe.guidanceRange`, the guided teacher runs at that scale, and the student
/// learns it in one evaluation — so the user still chooses the guidance, at one evaluation per
/// step. The stages and losses are `Distillation`'s, shared with the class models.
///
/// The text encoder, tokenizer and VAE are the teacher's, frozen: the captions' embeddings are
/// computed once (the rows the denoiser looks up, the empty caption last: the null label), and
/// the latents are posterior samples of the training images, as the teacher was trained.
/// RUN/model is a `StableDiffusionPipeline` folder with the student unet, the method's scheduler
/// (LCM or DDIM "trailing") and distillation.json; diffusers loads it (its pipelines embed the
/// scale for a unet with `time_cond_proj_dim`).
public enum TextToImageDistillation {
    /// Guidance embedding width of the student (diffusers' LCM training script's default, the
    /// LCM-distilled Stable Diffusion checkpoints' value).
    public static let guidanceEmbeddingDim = 256
    /// The scales the student trains on when the recipe sets none, and its default: around the
    /// bundled emoji model's best (guidance 3–7.5 measured alike).
    public static let defaultGuidanceRange: [Float] = [2, 8]
    public static let defaultGuidance: Float = 5

    /// Runs every stage on `images` [N, 3, H, W] in [-1, 1] with their `captions`, writes RUN/model
    /// and returns the student pipeline.
    @discardableResult
    public static func run(recipe: DistillationRecipe, teacher: StableDiffusionPipeline, images: Tensor, captions: [String],
                           out: URL, resume: Bool, previewPrompts: [String] = TextToImageRecipe.emoji().previewPrompts,
                           note: (String) -> Void = { _ in },
                           onStep: (Distillation.Stage, TrainingStep) -> Bool = { _, _ in true }) throws -> StableDiffusionPipeline {
        guard recipe.guidanceRange != nil else {
            throw TrainingRunError(path: out.path, reason: "a text-to-image student takes the guidance scale as an input: the recipe needs guidance_range")
        }
        let size = teacher.defaultSize
        guard images.rank == 4, images.shape[0] == captions.count, images.shape[0] > 0, images.shape[1] == 3,
              images.shape[2] == size, images.shape[3] == size else {
            throw TrainingRunError(path: out.path, reason: "the data is \(images.shape) with \(captions.count) captions; the teacher makes [N, 3, \(size), \(size)]")
        }
        let subject = try Subject(teacher: teacher, images: images, captions: captions, previewPrompts: previewPrompts)
        let student = try Distillation.run(subject, recipe: recipe, out: out, resume: resume, note: note, onStep: onStep)
        return subject.pipeline(student, scheduler: Distillation.studentScheduler(recipe, teacher: teacher.scheduler),
                                info: DistillationInfo(recipe, steps: recipe.studentSteps))
    }

    /// The unet config of a student of `teacher`: the same, taking the guidance scale as an input.
    public static func studentConfig(_ teacher: UNet2DConditionConfig) -> UNet2DConditionConfig {
        var c = teacher
        c.timeCondProjDim = c.timeCondProjDim ?? guidanceEmbeddingDim
        return c
    }

    struct Subject: DistillationSubject {
        let pipe: StableDiffusionPipeline
        /// Caption embeddings [K + 1, L, D], the empty caption last.
        let table: Tensor
        /// The training images' posterior means and standard deviations (unscaled latents).
        let means: Tensor, stds: Tensor
        let previewPrompts: [String]
        let teacherDenoiser: PromptTableDenoiser

        init(teacher: StableDiffusionPipeline, images: Tensor, captions: [String], previewPrompts: [String]) throws {
            pipe = teacher
            self.previewPrompts = previewPrompts
            // The captions' embeddings, 64 at a time.
            let all = captions + [""]
            var rows: [Tensor] = []
            for a in stride(from: 0, to: all.count, by: 64) { rows.append(teacher.embed(Array(all[a..<min(all.count, a + 64)]))) }
            table = Tensor.concat(rows, axis: 0)
            (means, stds) = TextToImageTraining.posteriors(teacher.vae, images)
            teacherDenoiser = PromptTableDenoiser(unet: teacher.unet, table: table, extra: nil)
        }

        var teacher: DiffusionModel { teacherDenoiser }
        var scheduler: SchedulerConfig { pipe.scheduler }
        var nullLabel: Int? { table.shape[0] - 1 }
        var isConditional: Bool { true }

        func makeStudent(from previous: PromptTableDenoiser?) throws -> PromptTableDenoiser {
            let config = TextToImageDistillation.studentConfig(pipe.unet.config)
            let unet = try NNInit.skippingRandomInit { try UNet2DConditionModel(config: config) }
            if let previous {
                try unet.load(from: previous.unet.stateDict())
            } else if pipe.unet.config.timeCondProjDim != nil {
                try unet.load(from: pipe.unet.stateDict())
            } else {
                // The teacher's weights; the new guidance projection starts at zero (nothing else is missing).
                let report = try unet.load(from: pipe.unet.stateDict(), strict: false)
                let added = unet.namedParameters().filter { $0.name.hasPrefix("time_embedding.cond_proj.") }
                let missing = Set(report.missing)
                guard missing == Set(added.map(\.name)), !added.isEmpty else {
                    throw TrainingRunError(path: "unet", reason: "the student unet lacks \(missing.sorted()) of the teacher's weights")
                }
                for p in added { p.tensor.data.update(repeating: 0, count: p.tensor.count) }
            }
            return PromptTableDenoiser(unet: unet, table: table, extra: nil)
        }

        func guidanceScales(_ n: Int, recipe: DistillationRecipe, rng: inout RandomGenerator) -> [Float]? {
            guard let g = recipe.guidanceRange else { return nil }
            let u = rng.uniform([n])
            return (0..<n).map { g[0] + (g[1] - g[0]) * u.data[$0] }
        }

        func setGuidance(_ scales: [Float], on model: PromptTableDenoiser) {
            model.guidanceEmbedding = guidanceScaleEmbedding(scales.map { $0 - 1 }, dim: model.unet.config.timeCondProjDim ?? 1)
        }

        func batch(_ size: Int, rng: inout RandomGenerator) throws -> (Tensor, [Int]?) {
            let rows = rng.integers(size, below: means.shape[0])
            let mu = TextToImageTraining.batch(means, rows), sd = TextToImageTraining.batch(stds, rows)
            let k = pipe.vae.scalingFactor
            return (GradMode.withoutGrad { (mu + sd * rng.normal(mu.shape)) * k }, rows)
        }

        func activationBytes(batch b: Int) -> Double {
            let c = pipe.unet.config
            return UNet2DConfig.activationBytes(widths: c.blockOutChannels, layersPerBlock: c.layersPerBlock.values(c.blockOutChannels.count).max() ?? 1,
                                                batch: Double(b), height: means.shape[2], width: means.shape[3])
        }

        func pipeline(_ student: PromptTableDenoiser, scheduler: SchedulerConfig, info: DistillationInfo) -> StableDiffusionPipeline {
            StableDiffusionPipeline(tokenizer: pipe.tokenizer, textEncoder: pipe.textEncoder, unet: student.unet, vae: pipe.vae,
                                    scheduler: scheduler, distillation: info)
        }

        /// One image per preview prompt at the student's default guidance, seed 1, two rows.
        func writePreview(_ student: PromptTableDenoiser, scheduler: SchedulerConfig, sampler: SamplerName, steps: Int,
                          info: DistillationInfo, to base: URL) throws {
            guard !previewPrompts.isEmpty else { return }
            let p = pipeline(student, scheduler: scheduler, info: info)
            let s = p.defaultSize
            let request = SamplingRequest(count: previewPrompts.count, sampler: sampler, steps: steps, seed: 1, guidance: info.guidanceScale)
            let (_, images) = try p.generate(PromptConditioning(prompts: previewPrompts), request: request, height: s, width: s)
            try ImageGrid.write(GradMode.withoutGrad { images.clamped(min: -1, max: 1) }, columns: max(1, (previewPrompts.count + 1) / 2),
                                to: base.appendingPathExtension("png"))
        }

        func save(_ student: PromptTableDenoiser, scheduler: SchedulerConfig, info: DistillationInfo, to dir: URL) throws {
            try pipeline(student, scheduler: scheduler, info: info).save(to: dir)
        }
    }
}
