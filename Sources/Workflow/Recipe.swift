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
    public var extras: M.Extras

    public init(model: M.Model.Config, scheduler: SchedulerConfig, training: TrainerOptions, labelDropout: Float = 0.1,
                previewEvery: Int = 500, extras: M.Extras = .defaults) {
        self.model = model; self.scheduler = scheduler; self.training = training
        self.labelDropout = labelDropout; self.previewEvery = previewEvery; self.extras = extras
    }

    enum CodingKeys: String, CodingKey {
        case model, scheduler, training
        case labelDropout = "label_dropout", previewEvery = "preview_every"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = M.defaultRecipe(classes: 1)
        self.init(model: try c.decode(M.Model.Config.self, forKey: .model),
                  scheduler: try c.decodeIfPresent(SchedulerConfig.self, forKey: .scheduler) ?? d.scheduler,
                  training: try c.decodeIfPresent(TrainerOptions.self, forKey: .training) ?? d.training,
                  labelDropout: try c.decodeIfPresent(Float.self, forKey: .labelDropout) ?? d.labelDropout,
                  previewEvery: try c.decodeIfPresent(Int.self, forKey: .previewEvery) ?? d.previewEvery,
                  extras: try M.Extras(from: decoder))
        guard labelDropout >= 0 && labelDropout <= 1 else {
            throw ConfigError(key: "label_dropout", reason: "must be in [0, 1], got \(labelDropout)")
        }
        guard previewEvery >= 0 else { throw ConfigError(key: "preview_every", reason: "must be ≥ 0, got \(previewEvery)") }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(model, forKey: .model)
        try c.encode(scheduler, forKey: .scheduler)
        try c.encode(training, forKey: .training)
        try c.encode(labelDropout, forKey: .labelDropout)
        try c.encode(previewEvery, forKey: .previewEvery)
        try extras.encode(to: encoder)
    }

    /// Whether a run made with `self` can go on with `other`: everything training reads must
    /// match but the number of steps (a finished run can be extended); sampling-only settings
    /// (the scheduler's clipping, the preview cadence) may change.
    public func canResume(as other: Recipe) -> Bool {
        var a = self, b = other
        a.training.steps = 0; b.training.steps = 0
        return a.model == b.model && a.training == b.training && a.labelDropout == b.labelDropout
            && extras.trainsLike(other.extras) && scheduler.trainsLike(other.scheduler)
    }

    /// The recipe in `url` (a recipe.json of another run works too); errors name the file.
    public static func load(_ url: URL) throws -> Recipe {
        do { return try JSONDecoder().decode(Recipe.self, from: Data(contentsOf: url)) } catch {
            throw TrainingRunError(path: url.path, reason: "not a valid \(M.name) recipe: \(error)")
        }
    }
}
