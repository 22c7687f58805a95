import Foundation
import Tensor
import NN

/// What a run folder records about how it was made: written to RUN/recipe.json, read back on
/// `--resume`. Each modality has one (model config, scheduler, trainer options, augmentation).
public protocol RunRecipe: Codable {
    var training: TrainerOptions { get set }
    /// Steps between preview samples.
    var previewEvery: Int { get }
    /// Whether a run made with `self` can go on as `other` (usually: all but the step count match).
    func canResume(as other: Self) -> Bool
}

/// The run folder every modality trains into, and the loop around the core `Trainer`:
///
///     RUN/recipe.json     the recipe (a resumed run must match it; only the step count may grow)
///     RUN/checkpoints/    trainer checkpoints (atomic; `latest` names the newest)
///     RUN/model/          the exported model (EMA weights), rewritten at every checkpoint
///     RUN/previews/       what `preview` writes every `previewEvery` steps
///     RUN/loss.csv        step, loss, learning rate, gradient norm
///
/// The modality supplies the model, a batch source, `preview` and `export`; the loss curve is
/// drawn by the caller (it needs an image codec).
public enum TrainingRun {
    /// Creates the folder and writes recipe.json; refuses to overwrite another run's checkpoints
    /// unless `resume`, and to resume with a recipe that does not match.
    public static func prepare<R: RunRecipe>(_ recipe: R, out: URL, resume: Bool) throws {
        let fm = FileManager.default
        try fm.createDirectory(at: out.appendingPathComponent("previews"), withIntermediateDirectories: true)
        let recipeURL = out.appendingPathComponent("recipe.json")
        if Trainer.latestCheckpoint(in: out.appendingPathComponent("checkpoints")) != nil {
            guard resume else {
                throw TrainingRunError(path: out.path, reason: "holds checkpoints of an earlier run: pass --resume, or choose another --out")
            }
            if let data = try? Data(contentsOf: recipeURL) {
                guard let old = try? JSONDecoder().decode(R.self, from: data) else {
                    throw TrainingRunError(path: recipeURL.path, reason: "is not a readable recipe")
                }
                guard old.canResume(as: recipe) else {
                    throw TrainingRunError(path: recipeURL.path, reason: "differs from this run's recipe; resume with the same settings (only --steps may change)")
                }
            }
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try enc.encode(recipe), to: recipeURL)
    }

    /// Trains to `trainer.options.steps` (resuming from RUN/checkpoints), logging every step to
    /// loss.csv, calling `preview(step)` every `previewEvery` steps and `export()` at every
    /// checkpoint and at the end — both with the EMA weights swapped in.
    public static func run(trainer: Trainer, out: URL, previewEvery: Int,
                           batch: (inout RandomGenerator) throws -> (Tensor, [Int]?),
                           preview: @escaping (Int) throws -> Void, export: @escaping () throws -> Void,
                           onStep: (TrainingStep) -> Bool) throws {
        let fm = FileManager.default
        let logURL = out.appendingPathComponent("loss.csv")
        if !fm.fileExists(atPath: logURL.path) { try AtomicFile.write(Data("step,loss,learning_rate,grad_norm\n".utf8), to: logURL) }
        let log = try FileHandle(forWritingTo: logURL)
        defer { try? log.close() }
        try log.seekToEnd()
        func withEMA(_ body: () throws -> Void) throws {
            let restore = trainer.swapInEMA()
            defer { restore() }
            try body()
        }
        let o = trainer.options
        try trainer.run(checkpointDir: out.appendingPathComponent("checkpoints"), batch: batch, periodic: [
            .init(every: Swift.max(1, previewEvery)) { _, r in try withEMA { try preview(r.step) } },
            .init(every: Swift.max(1, o.checkpointEvery == 0 ? o.steps : o.checkpointEvery)) { _, _ in try withEMA(export) },
        ]) { r in
            try? log.write(contentsOf: Data(String(format: "%d,%.6f,%.6g,%.4f\n", r.step, r.loss, r.learningRate, r.gradNorm).utf8))
            return onStep(r)
        }
        try withEMA(export)
    }

    /// The objective a recipe trains with, and its null label (classifier-free guidance: the
    /// last of the model's `labelCount` embeddings, when the recipe drops labels). Checks that a
    /// conditional model has an embedding for every class (and the null label).
    public static func objective(scheduler: SchedulerConfig, labelCount: Int?, classes: Int, labelDropout: Float,
                                 out: URL) throws -> (objective: DiffusionObjective, nullLabel: Int?) {
        if let k = labelCount, k < classes + (labelDropout > 0 ? 1 : 0) {
            throw TrainingRunError(path: out.appendingPathComponent("recipe.json").path,
                                   reason: "num_class_embeds \(k) is too small for \(classes) classes\(labelDropout > 0 ? " plus the null label" : "")")
        }
        var null: Int? = nil
        if labelDropout > 0, let k = labelCount, k > classes { null = k - 1 }
        let objective = DiffusionObjective(schedule: try scheduler.noiseSchedule(), prediction: try scheduler.parameterization().prediction,
                                           labelDropout: null == nil ? 0 : labelDropout, nullLabel: null)
        return (objective, null)
    }
}

/// A run folder that cannot be used as asked.
public struct TrainingRunError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public init(path: String, reason: String) { self.path = path; self.reason = reason }
    public var description: String { "\(path): \(reason)" }
}
