import Foundation
import NN
import Diffusion

/// Everything a training run needs, for any modality: the model config, the scheduler it is
/// trained for, the trainer's settings, the guidance label dropout, the preview cadence, and
/// what the modality adds (`extras`: image flips, video's joint image training). Written to
/// RUN/recipe.json as one flat object; `--config` reads one, keys left out take the modality's
/// default recipe.
public struct Recipe<M: Modality>: Codable, Equatable, Sendable {
    public var model: M.Model.Config
    public var scheduler: SchedulerConfig
    public var training: TrainerOptions
    /// Share of training labels replaced by the null label (classifier-free guidance).
    public var labelDropout: Float
    /// Steps between preview samples.
    public var previewEvery: Int
    /// Min-SNR-γ loss weighting (Hang et al. 2023; diffusers' `--snr_gamma`, 5 in its scripts):
    /// nil trains with the plain mean over noise levels.
    public var snrGamma: Float?
    /// Offset noise (diffusers' `--noise_offset`): a per-sample, per-channel constant of this
    /// standard deviation added to the training noise; 0 = none.
    public var noiseOffset: Float
    /// A model folder (or pipeline folder) whose weights start the run (`--init-from`: fine-tuning;
    /// the video model also takes an image model for its spatial layers). Only read before the
    /// first checkpoint; kept on record when the run resumes.
    public var initFrom: String?
    public var extras: M.Extras

    public init(model: M.Model.Config, scheduler: SchedulerConfig, training: TrainerOptions, labelDropout: Float = 0.1,
                previewEvery: Int = 500, snrGamma: Float? = nil, noiseOffset: Float = 0, initFrom: String? = nil,
                extras: M.Extras = .defaults) {
        self.model = model; self.scheduler = scheduler; self.training = training
        self.labelDropout = labelDropout; self.previewEvery = previewEvery
        self.snrGamma = snrGamma; self.noiseOffset = noiseOffset; self.initFrom = initFrom; self.extras = extras
    }

    enum CodingKeys: String, CodingKey {
        case model, scheduler, training
        case labelDropout = "label_dropout", previewEvery = "preview_every"
        case snrGamma = "snr_gamma", noiseOffset = "noise_offset", initFrom = "init_from"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = M.defaultRecipe(classes: 1)
        self.init(model: try c.decode(M.Model.Config.self, forKey: .model),
                  scheduler: try c.decodeIfPresent(SchedulerConfig.self, forKey: .scheduler) ?? d.scheduler,
                  training: try c.decodeIfPresent(TrainerOptions.self, forKey: .training) ?? d.training,
                  labelDropout: try c.decodeIfPresent(Float.self, forKey: .labelDropout) ?? d.labelDropout,
                  previewEvery: try c.decodeIfPresent(Int.self, forKey: .previewEvery) ?? d.previewEvery,
                  snrGamma: try c.decodeIfPresent(Float.self, forKey: .snrGamma),
                  noiseOffset: try c.decodeIfPresent(Float.self, forKey: .noiseOffset) ?? 0,
                  initFrom: try c.decodeIfPresent(String.self, forKey: .initFrom),
                  extras: try M.Extras(from: decoder))
        guard labelDropout >= 0 && labelDropout <= 1 else {
            throw ConfigError(key: "label_dropout", reason: "must be in [0, 1], got \(labelDropout)")
        }
        guard previewEvery >= 0 else { throw ConfigError(key: "preview_every", reason: "must be ≥ 0, got \(previewEvery)") }
        if let g = snrGamma, !(g > 0 && g <= 1e6) {
            throw ConfigError(key: "snr_gamma", reason: "must be in (0, 1e6] (5 is usual), got \(g)")
        }
        guard noiseOffset >= 0 && noiseOffset <= 1 else {
            throw ConfigError(key: "noise_offset", reason: "must be in [0, 1] (0.05–0.1 is usual), got \(noiseOffset)")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(model, forKey: .model)
        try c.encode(scheduler, forKey: .scheduler)
        try c.encode(training, forKey: .training)
        try c.encode(labelDropout, forKey: .labelDropout)
        try c.encode(previewEvery, forKey: .previewEvery)
        try c.encodeIfPresent(snrGamma, forKey: .snrGamma)
        if noiseOffset != 0 { try c.encode(noiseOffset, forKey: .noiseOffset) }
        try c.encodeIfPresent(initFrom, forKey: .initFrom)
        try extras.encode(to: encoder)
    }

    /// Whether a run made with `self` can go on with `other`: everything training reads must
    /// match but the number of steps (a finished run can be extended); sampling-only settings
    /// (the scheduler's clipping, the preview cadence) and where the weights started may change.
    public func canResume(as other: Recipe) -> Bool {
        var a = self, b = other
        a.training.steps = 0; b.training.steps = 0
        return a.model == b.model && a.training == b.training && a.labelDropout == b.labelDropout
            && a.snrGamma == b.snrGamma && a.noiseOffset == b.noiseOffset
            && extras.trainsLike(other.extras) && scheduler.trainsLike(other.scheduler)
    }

    /// The recipe in `url` (a recipe.json of another run works too); errors name the file.
    public static func load(_ url: URL) throws -> Recipe {
        do { return try JSONDecoder().decode(Recipe.self, from: Data(contentsOf: url)) } catch {
            throw TrainingRunError(path: url.path, reason: "not a valid \(M.name) recipe: \(error)")
        }
    }
}
