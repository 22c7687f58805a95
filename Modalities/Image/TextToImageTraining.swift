import Foundation
import Tensor
import NN
import Diffusion
import Text
import Media
import Workflow

/// Everything a text-to-image run needs: the three models' configs (a Stable Diffusion pipeline in
/// miniature), the scheduler, and the training stages — the autoencoder first (`vae_training`),
/// its decoder fine-tuned on a frozen encoder (`vae_decoder_training`), then the conditional unet
/// together with a text encoder trained from scratch (`training`), with caption dropout for
/// classifier-free guidance. Written to RUN/recipe.json; keys left out of
/// a `--config` file take `emoji()`'s values.
public struct TextToImageRecipe: RunRecipe, Equatable, Sendable {
    public var vae: AutoencoderKLConfig
    public var textEncoder: CLIPTextConfig
    public var unet: UNet2DConditionConfig
    public var scheduler: SchedulerConfig
    /// Stage 1: the autoencoder (L1 reconstruction + `klWeight` · KL per latent element).
    public var vaeTraining: TrainerOptions
    public var klWeight: Float
    /// Stage 1b: the decoder alone (and post_quant_conv) on L1 + squared error, the encoder
    /// frozen, so the latent space stays as stage 1 left it (what Stability's ft-MSE VAEs did for
    /// Stable Diffusion). Steps 0: skipped.
    public var vaeDecoderTraining: TrainerOptions
    /// Stage 2: the unet and the text encoder, on the stage-1 latents.
    public var training: TrainerOptions
    /// Share of captions replaced by the empty caption (classifier-free guidance).
    public var captionDropout: Float
    /// Steps between previews (a grid of `previewPrompts`; stage 1: reconstructions).
    public var previewEvery: Int
    public var previewPrompts: [String]
    /// The guidance scale of the previews.
    public var previewGuidance: Float
    /// Min-SNR-γ weighting of the unet stage's loss (nil: none), as in `Recipe.snrGamma`.
    public var snrGamma: Float? = nil

    enum CodingKeys: String, CodingKey {
        case vae, unet, scheduler, training
        case textEncoder = "text_encoder", vaeTraining = "vae_training", klWeight = "kl_weight"
        case vaeDecoderTraining = "vae_decoder_training"
        case captionDropout = "caption_dropout", previewEvery = "preview_every", previewPrompts = "preview_prompts"
        case previewGuidance = "preview_guidance", snrGamma = "snr_gamma"
    }

    /// The recipe of the bundled emoji model (64×64 images, 16×16×4 latents): ≈ 1 M parameters of
    /// autoencoder, a 4-layer 96-wide CLIP text encoder, a 3-level conditional unet.
    public static func emoji() -> TextToImageRecipe {
        var vae = AutoencoderKLConfig()
        vae.downBlockTypes = [.downEncoderBlock2D, .downEncoderBlock2D, .downEncoderBlock2D]
        vae.upBlockTypes = [.upDecoderBlock2D, .upDecoderBlock2D, .upDecoderBlock2D]
        vae.blockOutChannels = [32, 64, 64]
        vae.layersPerBlock = 1
        vae.normNumGroups = 32
        vae.sampleSize = [64, 64]
        vae.latentChannels = 4
        var text = CLIPTextConfig()
        text.hiddenSize = 96
        text.intermediateSize = 384
        text.numHiddenLayers = 4
        text.numAttentionHeads = 4
        text.maxPositionEmbeddings = 32
        text.projectionDim = nil
        text.architectures = ["CLIPTextModel"]
        var unet = UNet2DConditionConfig()
        unet.sampleSize = [16, 16]
        unet.downBlockTypes = [.crossAttnDownBlock2D, .crossAttnDownBlock2D, .downBlock2D]
        unet.upBlockTypes = [.upBlock2D, .crossAttnUpBlock2D, .crossAttnUpBlock2D]
        unet.blockOutChannels = [64, 128, 128]
        unet.layersPerBlock = .all(1)
        unet.crossAttentionDim = .all(96)
        unet.attentionHeadDim = .all(4)
        // Stable Diffusion's noise schedule (scaled-linear βs, ε-prediction).
        let scheduler = SchedulerConfig(.ddpm, [
            "beta_schedule": .string("scaled_linear"), "beta_start": .number(0.00085), "beta_end": .number(0.012),
            "clip_sample": .bool(false), "steps_offset": .number(1), "timestep_spacing": .string("leading"),
        ])
        var vt = TrainerOptions()
        vt.steps = 1000; vt.batchSize = 8; vt.learningRate = 5e-4; vt.warmupSteps = 100
        vt.emaDecay = 0; vt.checkpointEvery = 200
        // The autoencoder's 1,000 steps leave colours dull (a red apple decodes orange): the
        // decoder goes on alone, which costs no unet retraining.
        var dt = TrainerOptions()
        dt.steps = 3000; dt.batchSize = 8; dt.learningRate = 2e-4; dt.warmupSteps = 100
        dt.emaDecay = 0; dt.checkpointEvery = 200
        var t = TrainerOptions()
        t.steps = 4000; t.batchSize = 16; t.learningRate = 3e-4; t.warmupSteps = 200
        t.emaDecay = 0.999; t.checkpointEvery = 200
        return TextToImageRecipe(vae: vae, textEncoder: text, unet: unet, scheduler: scheduler, vaeTraining: vt, klWeight: 1e-5,
                                 vaeDecoderTraining: dt, training: t, captionDropout: 0.1, previewEvery: 500,
                                 previewPrompts: ["red apple", "grinning face", "cat face", "sun", "pizza", "red heart",
                                                  "rocket", "Christmas tree"],
                                 previewGuidance: 5)
    }

    public init(vae: AutoencoderKLConfig, textEncoder: CLIPTextConfig, unet: UNet2DConditionConfig, scheduler: SchedulerConfig,
                vaeTraining: TrainerOptions, klWeight: Float, vaeDecoderTraining: TrainerOptions, training: TrainerOptions,
                captionDropout: Float, previewEvery: Int, previewPrompts: [String], previewGuidance: Float) {
        self.vae = vae; self.textEncoder = textEncoder; self.unet = unet; self.scheduler = scheduler
        self.vaeTraining = vaeTraining; self.klWeight = klWeight; self.vaeDecoderTraining = vaeDecoderTraining; self.training = training
        self.captionDropout = captionDropout; self.previewEvery = previewEvery; self.previewPrompts = previewPrompts
        self.previewGuidance = previewGuidance
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = TextToImageRecipe.emoji()
        self.init(vae: try c.decodeIfPresent(AutoencoderKLConfig.self, forKey: .vae) ?? d.vae,
                  textEncoder: try c.decodeIfPresent(CLIPTextConfig.self, forKey: .textEncoder) ?? d.textEncoder,
                  unet: try c.decodeIfPresent(UNet2DConditionConfig.self, forKey: .unet) ?? d.unet,
                  scheduler: try c.decodeIfPresent(SchedulerConfig.self, forKey: .scheduler) ?? d.scheduler,
                  vaeTraining: try c.decodeIfPresent(TrainerOptions.self, forKey: .vaeTraining) ?? d.vaeTraining,
                  klWeight: try c.decodeIfPresent(Float.self, forKey: .klWeight) ?? d.klWeight,
                  vaeDecoderTraining: try c.decodeIfPresent(TrainerOptions.self, forKey: .vaeDecoderTraining) ?? d.vaeDecoderTraining,
                  training: try c.decodeIfPresent(TrainerOptions.self, forKey: .training) ?? d.training,
                  captionDropout: try c.decodeIfPresent(Float.self, forKey: .captionDropout) ?? d.captionDropout,
                  previewEvery: try c.decodeIfPresent(Int.self, forKey: .previewEvery) ?? d.previewEvery,
                  previewPrompts: try c.decodeIfPresent([String].self, forKey: .previewPrompts) ?? d.previewPrompts,
                  previewGuidance: try c.decodeIfPresent(Float.self, forKey: .previewGuidance) ?? d.previewGuidance)
        snrGamma = try c.decodeIfPresent(Float.self, forKey: .snrGamma)
        try validate()
    }

    /// Checks what the two stages need of each other before anything is allocated.
    public func validate() throws {
        guard klWeight >= 0, klWeight.isFinite else { throw ConfigError(key: "kl_weight", reason: "must be ≥ 0, got \(klWeight)") }
        guard captionDropout >= 0, captionDropout < 1 else {
            throw ConfigError(key: "caption_dropout", reason: "must be in [0, 1), got \(captionDropout)")
        }
        guard previewEvery >= 0 else { throw ConfigError(key: "preview_every", reason: "must be ≥ 0, got \(previewEvery)") }
        guard previewGuidance >= 0, previewGuidance <= 100 else {
            throw ConfigError(key: "preview_guidance", reason: "must be within 0-100, got \(previewGuidance)")
        }
        if let g = snrGamma, !(g > 0 && g <= 1e6) {
            throw ConfigError(key: "snr_gamma", reason: "must be in (0, 1e6] (5 is usual), got \(g)")
        }
        guard previewPrompts.count <= 64 else { throw ConfigError(key: "preview_prompts", reason: "at most 64, got \(previewPrompts.count)") }
        guard unet.inChannels == vae.latentChannels, unet.outChannels == vae.latentChannels else {
            throw ConfigError(key: "unet.in_channels", reason: "the unet takes \(unet.inChannels) → \(unet.outChannels) channels, the VAE's latents have \(vae.latentChannels)")
        }
        let widths = unet.crossAttentionDim.values(unet.downBlockTypes.count)
        guard widths.allSatisfy({ $0 == textEncoder.hiddenSize }) else {
            throw ConfigError(key: "unet.cross_attention_dim", reason: "\(widths) must equal the text encoder's hidden_size \(textEncoder.hiddenSize)")
        }
        let f = vae.downFactor, s = vae.sampleSize
        guard s[0] % f == 0, s[1] % f == 0, unet.sampleSize.map({ $0 == [s[0] / f, s[1] / f] || $0 == [s[0] / f] }) ?? true else {
            throw ConfigError(key: "unet.sample_size", reason: "must be the VAE's sample_size \(s) / \(f)")
        }
    }

    public func canResume(as other: TextToImageRecipe) -> Bool {
        var a = self, b = other
        a.training.steps = 0; b.training.steps = 0
        // The decoder stage may be added to, or lengthened in, a run made without it.
        a.vaeDecoderTraining = b.vaeDecoderTraining
        a.previewEvery = 0; b.previewEvery = 0
        a.previewPrompts = []; b.previewPrompts = []
        a.previewGuidance = 0; b.previewGuidance = 0
        a.scheduler = b.scheduler
        // As written to recipe.json (configs compare by what the file says, not how it was made).
        let enc = JSONEncoder()
        enc.outputFormatting = .sortedKeys
        guard let x = try? enc.encode(a), let y = try? enc.encode(b) else { return false }
        return x == y && scheduler.trainsLike(other.scheduler)
    }

    public func resumed(from old: TextToImageRecipe) -> TextToImageRecipe { self }

    /// The recipe in `url`; errors name the file.
    public static func load(_ url: URL) throws -> TextToImageRecipe {
        do { return try JSONDecoder().decode(TextToImageRecipe.self, from: Data(contentsOf: url)) } catch {
            throw TrainingRunError(path: url.path, reason: "not a valid text-to-image recipe: \(error)")
        }
    }
}

/// The conditional unet as the trainer sees a class model: label k is caption k of `tokens`
/// (ids padded to the tokenizer's length; the last row is the empty caption, the null label),
/// and the text encoder runs inside the recorded graph, so it trains with the unet.
final class CaptionTableDenoiser: Module, DiffusionModel {
    let unet: UNet2DConditionModel
    let textEncoder: CLIPTextModel
    let tokens: [[Int]]

    init(unet: UNet2DConditionModel, textEncoder: CLIPTextModel, tokens: [[Int]]) {
        self.unet = unet; self.textEncoder = textEncoder; self.tokens = tokens
    }

    func visit(_ v: inout ModuleVisitor) { v("unet", unet); v("text_encoder", textEncoder) }

    var labelCount: Int? { tokens.count }

    func predict(_ x: Tensor, timesteps: [Float], labels: [Int]?) -> Tensor {
        let rows = labels ?? [Int](repeating: tokens.count - 1, count: x.shape[0])
        let context = textEncoder(rows.map { tokens[$0] }).lastHiddenState
        return unet(x, timesteps: timesteps, encoderHiddenStates: context)
    }
}

/// Trains a Stable Diffusion pipeline from scratch on captioned images, in one run folder:
///
///     RUN/recipe.json          the recipe
///     RUN/vae/                 stage 1: checkpoints/, loss.csv, previews/ (originals over
///                              reconstructions), model/ (the AutoencoderKL, scaling_factor set
///                              from the data's latents as Stable Diffusion's was)
///     RUN/checkpoints/         stage 2 (unet + text encoder), loss.csv, previews/step-N.png
///     RUN/model/               the pipeline folder (diffusers' StableDiffusionPipeline layout)
///
/// A killed run resumes where it stopped (either stage). Every random draw is seeded.
public enum TextToImageTraining {
    public struct Stage: Sendable { public let name: String; public let steps: Int }

    @discardableResult
    public static func run(recipe given: TextToImageRecipe, images: Tensor, captions: [String], out: URL, resume: Bool,
                           note: (String) -> Void = { _ in },
                           onStep: (Stage, TrainingStep) -> Bool = { _, _ in true }) throws -> StableDiffusionPipeline {
        let recipe = try TrainingRun.prepare(given, out: out, resume: resume)
        try recipe.validate()
        let s = recipe.vae.sampleSize
        guard images.rank == 4, images.shape[0] == captions.count, images.shape[0] > 0,
              images.shape[1] == recipe.vae.inChannels, images.shape[2] == s[0], images.shape[3] == s[1] else {
            throw TrainingRunError(path: out.path, reason: "the data is \(images.shape) with \(captions.count) captions; the recipe trains on [N, \(recipe.vae.inChannels), \(s[0]), \(s[1])]")
        }
        var vae = try trainAutoencoder(recipe, images: images, out: out.appendingPathComponent("vae"), note: note,
                                       onStep: { onStep(Stage(name: "vae", steps: recipe.vaeTraining.steps), $0) })
        if recipe.vaeDecoderTraining.steps > 0 {
            vae = try fineTuneDecoder(recipe, vae: vae, images: images, out: out.appendingPathComponent("vae-decoder"), note: note,
                                      onStep: { onStep(Stage(name: "vae-decoder", steps: recipe.vaeDecoderTraining.steps), $0) })
        }
        return try trainDenoiser(recipe, vae: vae, images: images, captions: captions, out: out, note: note,
                                 onStep: { onStep(Stage(name: "unet", steps: recipe.training.steps), $0) })
    }

    /// Stage 1. Returns the trained autoencoder with its scaling factor set (1 / the standard
    /// deviation of the training images' latent means).
    static func trainAutoencoder(_ recipe: TextToImageRecipe, images: Tensor, out: URL, note: (String) -> Void,
                                 onStep: (TrainingStep) -> Bool) throws -> AutoencoderKL {
        try FileManager.default.createDirectory(at: out.appendingPathComponent("previews"), withIntermediateDirectories: true)
        NNInit.seed(recipe.vaeTraining.seed)
        let vae = try NNInit.budgeted("training an AutoencoderKL", bytesPerParameter: NNInit.training) { try AutoencoderKL(config: recipe.vae) }
        let n = images.shape[0], f = vae.downFactor
        let latentShape = [recipe.vae.latentChannels, images.shape[2] / f, images.shape[3] / f]
        let trainer = try Trainer(module: vae, options: recipe.vaeTraining) { x, _, rng in
            vae.trainingLoss(x, noise: rng.normal([x.shape[0]] + latentShape), klWeight: recipe.klWeight).loss
        }
        let shown = batch(images, Array(0..<min(8, n)).map { $0 * (n / min(8, n)) })
        var stopped = false
        try TrainingRun.run(trainer: trainer, out: out, previewEvery: recipe.previewEvery == 0 ? Int.max / 2 : recipe.previewEvery,
                            batch: { rng in (batch(images, rng.integers(recipe.vaeTraining.batchSize, below: n)), nil) },
                            preview: { step in
                                let recon = GradMode.withoutGrad { vae.decode(vae.encode(shown).mean) }
                                try ImageGrid.write(Tensor.concat([shown, recon.clamped(min: -1, max: 1)], axis: 0), columns: shown.shape[0],
                                                    to: out.appendingPathComponent("previews/step-\(step).png"))
                            },
                            export: { try vae.save(to: out.appendingPathComponent("model")) },
                            onStep: { r in let go = onStep(r); if !go { stopped = true }; return go })
        if stopped { throw TrainingInterrupted(stage: "vae", path: out.path) }
        _ = trainer.swapInEMA()  // the weights exported
        if MPIRanks.isWriter { try LossPlot.write(csv: out.appendingPathComponent("loss.csv"), to: out.appendingPathComponent("loss.png")) }
        // Stable Diffusion's scaling factor: latents of unit variance for the denoiser.
        let means = posteriors(vae, images).means
        let std = GradMode.withoutGrad { means.square().mean().item() - pow(means.mean().item(), 2) }.squareRoot()
        var config = recipe.vae
        config.scalingFactor = Float(1 / Double(max(std, 1e-6)))
        let scaled = try NNInit.skippingRandomInit { try AutoencoderKL(config: config) }
        try scaled.load(from: vae.stateDict())
        if MPIRanks.isWriter { try scaled.save(to: out.appendingPathComponent("model")) }
        note(String(format: "autoencoder: %d steps, latent std %.4f → scaling_factor %.5f", trainer.step, std, config.scalingFactor))
        return scaled
    }

    /// Stage 1b: trains `vae`'s decoder and post_quant_conv in place on reconstructions of
    /// posterior samples (L1 + squared error, in [-1, 1]), its encoder frozen: the latents any unet
    /// learns from are unchanged. Checkpoints, loss.csv, previews (originals over reconstructions)
    /// and model/ go to `out`.
    static func fineTuneDecoder(_ recipe: TextToImageRecipe, vae: AutoencoderKL, images: Tensor, out: URL, note: (String) -> Void,
                                onStep: (TrainingStep) -> Bool) throws -> AutoencoderKL {
        try FileManager.default.createDirectory(at: out.appendingPathComponent("previews"), withIntermediateDirectories: true)
        NNInit.seed(recipe.vaeDecoderTraining.seed)
        let n = images.shape[0]
        let (means, stds) = posteriors(vae, images)
        let part = AutoencoderDecoderPart(vae)
        let trainer = try Trainer(module: part, options: recipe.vaeDecoderTraining) { z, rows, _ in
            let x = batch(images, rows ?? [])
            let d = vae.decodeWhole(z) - x
            return d.abs().mean() + d.square().mean()
        }
        let shownRows = Array(0..<min(8, n)).map { $0 * (n / min(8, n)) }
        let shown = batch(images, shownRows), shownMeans = batch(means, shownRows)
        var stopped = false
        try TrainingRun.run(trainer: trainer, out: out, previewEvery: recipe.previewEvery == 0 ? Int.max / 2 : recipe.previewEvery,
                            batch: { rng in
                                let rows = rng.integers(recipe.vaeDecoderTraining.batchSize, below: n)
                                let mu = batch(means, rows), sd = batch(stds, rows)
                                return (GradMode.withoutGrad { mu + sd * rng.normal(mu.shape) }, rows)
                            },
                            preview: { step in
                                let recon = GradMode.withoutGrad { vae.decodeWhole(shownMeans) }
                                try ImageGrid.write(Tensor.concat([shown, recon.clamped(min: -1, max: 1)], axis: 0), columns: shown.shape[0],
                                                    to: out.appendingPathComponent("previews/step-\(step).png"))
                            },
                            export: { try vae.save(to: out.appendingPathComponent("model")) },
                            onStep: { r in let go = onStep(r); if !go { stopped = true }; return go })
        if stopped { throw TrainingInterrupted(stage: "vae-decoder", path: out.path) }
        try LossPlot.write(csv: out.appendingPathComponent("loss.csv"), to: out.appendingPathComponent("loss.png"))
        note("autoencoder decoder: \(trainer.step) steps on the frozen encoder's latents")
        return vae
    }

    /// The posterior means and standard deviations [N, latent, h, w] of `images` (unscaled), 64 at a time.
    static func posteriors(_ vae: AutoencoderKL, _ images: Tensor) -> (means: Tensor, stds: Tensor) {
        let n = images.shape[0]
        return GradMode.withoutGrad { () -> (Tensor, Tensor) in
            var m: [Tensor] = [], sd: [Tensor] = []
            for a in stride(from: 0, to: n, by: 64) {
                let p = vae.encode(images.slice(axis: 0, a..<min(n, a + 64)))
                m.append(p.mean); sd.append(p.std)
            }
            return (Tensor.concat(m, axis: 0), Tensor.concat(sd, axis: 0))
        }
    }

    /// Items `rows` of x [N, ...].
    static func batch(_ x: Tensor, _ rows: [Int]) -> Tensor {
        let n = x.shape[0], rest = Array(x.shape.dropFirst())
        return x.reshaped([n, rest.reduce(1, *)]).embedding(rows).reshaped([rows.count] + rest)
    }

    /// Stage 2: the unet and the text encoder, on latents sampled from the frozen autoencoder's
    /// posterior every step (as Stable Diffusion is trained), captions dropped to "" at
    /// `captionDropout`.
    static func trainDenoiser(_ recipe: TextToImageRecipe, vae: AutoencoderKL, images: Tensor, captions: [String], out: URL,
                              note: (String) -> Void, onStep: (TrainingStep) -> Bool) throws -> StableDiffusionPipeline {
        let tokenizerDir = out.appendingPathComponent("tokenizer")
        try MPIRanks.writerFirst { try CLIPTokenizer.writeBuiltinFolder(to: tokenizerDir, maxLength: recipe.textEncoder.maxPositionEmbeddings) }
        let tokenizer = try CLIPTokenizer(folder: tokenizerDir)
        let tokens = captions.map { tokenizer($0) } + [tokenizer("")]
        NNInit.seed(recipe.training.seed)
        let textEncoder = try NNInit.budgeted("training a CLIPTextModel", bytesPerParameter: NNInit.training) { try CLIPTextModel(config: recipe.textEncoder) }
        let unet = try NNInit.budgeted("training a UNet2DConditionModel", bytesPerParameter: NNInit.training) { try UNet2DConditionModel(config: recipe.unet) }
        let denoiser = CaptionTableDenoiser(unet: unet, textEncoder: textEncoder, tokens: tokens)
        let objective = DiffusionObjective(schedule: try recipe.scheduler.noiseSchedule(),
                                           prediction: try recipe.scheduler.parameterization().prediction,
                                           minSNRGamma: recipe.snrGamma,
                                           labelDropout: recipe.captionDropout, nullLabel: tokens.count - 1)
        let trainer = try Trainer(model: denoiser, objective: objective, options: recipe.training)
        // The posterior of every training image, once: z = (mean + std · ε) · scaling_factor.
        let n = images.shape[0]
        let (means, stds) = posteriors(vae, images)
        let k = vae.scalingFactor
        let pipeline = StableDiffusionPipeline(tokenizer: tokenizer, textEncoder: textEncoder, unet: unet, vae: vae, scheduler: recipe.scheduler)
        var stopped = false
        try TrainingRun.run(trainer: trainer, out: out, previewEvery: recipe.previewEvery == 0 ? Int.max / 2 : recipe.previewEvery,
                            batch: { rng in
                                let rows = rng.integers(recipe.training.batchSize, below: n)
                                let mu = batch(means, rows), sd = batch(stds, rows)
                                let z = GradMode.withoutGrad { (mu + sd * rng.normal(mu.shape)) * k }
                                return (z, rows)
                            },
                            preview: { step in
                                guard !recipe.previewPrompts.isEmpty else { return }
                                try writePreview(pipeline, prompts: recipe.previewPrompts, guidance: recipe.previewGuidance,
                                                 to: out.appendingPathComponent("previews/step-\(step).png"))
                            },
                            export: { try pipeline.save(to: out.appendingPathComponent("model")) },
                            onStep: { r in let go = onStep(r); if !go { stopped = true }; return go })
        if stopped { throw TrainingInterrupted(stage: "unet", path: out.path) }
        if MPIRanks.isWriter { try LossPlot.write(csv: out.appendingPathComponent("loss.csv"), to: out.appendingPathComponent("loss.png")) }
        _ = trainer.swapInEMA()  // the pipeline returned is the one exported
        return pipeline
    }

    /// A grid of one image per prompt (20 DPM-Solver++ steps, seed 1), two rows.
    public static func writePreview(_ pipeline: StableDiffusionPipeline, prompts: [String], guidance: Float, to url: URL) throws {
        let s = pipeline.defaultSize
        let request = SamplingRequest(count: prompts.count, sampler: .dpmpp2m, steps: 20, seed: 1, guidance: guidance)
        let (_, images) = try pipeline.generate(PromptConditioning(prompts: prompts), request: request, height: s, width: s)
        try ImageGrid.write(GradMode.withoutGrad { images.clamped(min: -1, max: 1) }, columns: max(1, (prompts.count + 1) / 2), to: url)
    }
}
