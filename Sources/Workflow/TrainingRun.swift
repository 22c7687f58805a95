import Foundation
import Tensor
import NN
import Diffusion
import Media

/// The run folder every modality trains into, and the loop around the core `Trainer`:
///
///     RUN/recipe.json     the recipe (a resumed run must match it; only the step count may grow)
///     RUN/checkpoints/    trainer checkpoints (atomic; `latest` names the newest)
///     RUN/model/          the exported model (EMA weights), rewritten at every checkpoint
///     RUN/previews/       what `preview` writes every `previewEvery` steps
///     RUN/loss.csv        step, loss, learning rate, gradient norm
///
///     RUN/loss.png        the loss curve, drawn at the end
///
/// `Training.run` drives it for any modality.
public enum TrainingRun {
    /// Creates the folder and writes recipe.json; refuses to overwrite another run's checkpoints
    /// unless `resume`, and to resume with a recipe that does not match. Returns the recipe as
    /// written (a resumed run keeps what its extras carry over, such as where it started).
    ///
    /// Under `mpirun` (`ranks`) rank 0 does this while the others wait, then they read the
    /// recipe it wrote: no rank writes into the folder but rank 0.
    @discardableResult
    public static func prepare<R: RunRecipe>(_ given: R, out: URL, resume: Bool, ranks: Ranks? = MPIRanks.world) throws -> R {
        guard let ranks, ranks.size > 1 else { return try prepareAlone(given, out: out, resume: resume) }
        // A failure on rank 0 ends the job (the command aborts it) before the others read.
        let recipe = ranks.isWriter ? try prepareAlone(given, out: out, resume: resume) : nil
        ranks.barrier()
        if let recipe { return recipe }
        let url = out.appendingPathComponent("recipe.json")
        guard let data = try? Data(contentsOf: url), let written = try? JSONDecoder().decode(R.self, from: data) else {
            throw TrainingRunError(path: url.path, reason: "rank \(ranks.rank) cannot read the recipe rank 0 wrote (is --out on a file system every host sees?)")
        }
        return written
    }

    static func prepareAlone<R: RunRecipe>(_ given: R, out: URL, resume: Bool) throws -> R {
        var recipe = given
        let fm = FileManager.default
        // A folder of the user's (not empty, not a run) is never written into: its recipe.json
        // and loss.csv would be overwritten or appended to. A run may hold the user's own files
        // beside it (`train … --out RUN --resume > RUN/train.log`): they are left alone.
        let entries = ((try? fm.contentsOfDirectory(atPath: out.path)) ?? []).filter { !$0.hasPrefix(".") }
        let stranger = entries.filter { !Self.runEntries.contains($0) && !$0.hasPrefix("stage-") }
        let isRun = entries.contains("previews") && entries.contains("recipe.json")
        if !entries.isEmpty && !isRun && (!stranger.isEmpty || !entries.contains("previews")) {
            throw TrainingRunError(path: out.path, reason: "is not empty and not a training run (it holds \((stranger.isEmpty ? entries : stranger).sorted().prefix(3).joined(separator: ", "))); choose an empty or new folder for --out")
        }
        AtomicFile.removeLeftovers(in: out)
        try fm.createDirectory(at: out.appendingPathComponent("previews"), withIntermediateDirectories: true)
        let recipeURL = out.appendingPathComponent("recipe.json")
        let stages = entries.filter { $0.hasPrefix("stage-") }.map { out.appendingPathComponent($0) }
        if ([out] + stages).contains(where: { Trainer.latestCheckpoint(in: $0.appendingPathComponent("checkpoints")) != nil }) {
            guard resume else {
                throw TrainingRunError(path: out.path, reason: "holds checkpoints of an earlier run: pass --resume, or choose another --out")
            }
            if let data = try? Data(contentsOf: recipeURL) {
                guard let old = try? JSONDecoder().decode(R.self, from: data) else {
                    throw TrainingRunError(path: recipeURL.path, reason: "is not a readable recipe")
                }
                guard old.canResume(as: recipe) else {
                    let keys = recipeDifferences(old, recipe)
                    let which = keys.isEmpty ? "" : " in " + keys.prefix(4).joined(separator: ", ") + (keys.count > 4 ? ", …" : "")
                    throw TrainingRunError(path: recipeURL.path, reason: "differs from this run's recipe\(which); resume with the same settings "
                                           + "(only --steps may change; `--config \(recipeURL.path)` gives them all)")
                }
                recipe = recipe.resumed(from: old)
            }
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try enc.encode(recipe), to: recipeURL)
        return recipe
    }

    /// The settings two recipes differ in, as "key.path (old → new)" (the stage lengths left
    /// out: they may change), for the message of a refused --resume.
    static func recipeDifferences<R: RunRecipe>(_ old: R, _ new: R) -> [String] {
        func tree(_ r: R) -> Any? { (try? JSONEncoder().encode(r)).flatMap { try? JSONSerialization.jsonObject(with: $0) } }
        func show(_ v: Any?) -> String {
            guard let v, !(v is NSNull) else { return "none" }
            guard JSONSerialization.isValidJSONObject([v]), let d = try? JSONSerialization.data(withJSONObject: [v], options: [.sortedKeys]),
                  let s = String(data: d, encoding: .utf8) else { return "\(v)" }
            let inner = String(s.dropFirst().dropLast())
            return inner.count > 40 ? String(inner.prefix(39)) + "…" : inner
        }
        var out: [String] = []
        func walk(_ a: Any?, _ b: Any?, _ path: String) {
            if let da = a as? [String: Any], let db = b as? [String: Any] {
                for k in Set(da.keys).union(db.keys).sorted() where !["steps", "preview_every"].contains(k) {
                    walk(da[k], db[k], path.isEmpty ? k : path + "." + k)
                }
            } else if show(a) != show(b) {
                out.append("\(path) (\(show(a)) → \(show(b)))")
            }
        }
        walk(tree(old), tree(new), "")
        return out
    }

    /// What a run folder may hold (`prepare` creates previews/ first), besides a staged run's stage-N-… folders.
    static let runEntries: Set<String> = ["recipe.json", "previews", "checkpoints", "model", "loss.csv", "loss.png", "vae", "vae-decoder", "tokenizer"]

    /// Trains to `trainer.options.steps` (resuming from RUN/checkpoints), logging every step to
    /// loss.csv, calling `preview(step)` every `previewEvery` steps and `export()` at every
    /// checkpoint and at the end — both with the EMA weights swapped in.
    ///
    /// With `ranks` (`mpirun`), the trainer splits every batch over them and rank 0 alone
    /// writes loss.csv, previews, checkpoints and the model.
    public static func run(trainer: Trainer, out: URL, previewEvery: Int,
                           batch: (inout RandomGenerator) throws -> (Tensor, [Int]?),
                           preview: @escaping (Int) throws -> Void, export: @escaping () throws -> Void,
                           onStep: (TrainingStep) -> Bool, ranks: Ranks? = MPIRanks.world) throws {
        trainer.ranks = ranks
        if let ranks, !ranks.isWriter {
            try trainer.run(checkpointDir: out.appendingPathComponent("checkpoints"), batch: batch, onStep: onStep)
            return
        }
        let logURL = out.appendingPathComponent("loss.csv")
        // The rows up to the step the run resumes from: the steps after it are trained again.
        let header = "step,loss,learning_rate,grad_norm"
        let resumed = Trainer.latestCheckpoint(in: out.appendingPathComponent("checkpoints")).flatMap(Trainer.step(of:)) ?? 0
        let rows = ((try? String(contentsOf: logURL, encoding: .utf8)) ?? "").split(separator: "\n").filter { line in
            line.split(separator: ",").first.flatMap { Int($0) }.map { $0 <= resumed } ?? false
        }
        try AtomicFile.write(Data(([header] + rows.map(String.init)).map { $0 + "\n" }.joined().utf8), to: logURL)
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
    public static func objective<M: Modality>(recipe: Recipe<M>, labelCount: Int?, classes: Int,
                                              out: URL) throws -> (objective: DiffusionObjective, nullLabel: Int?) {
        var (o, null) = try objective(scheduler: recipe.scheduler, labelCount: labelCount, classes: classes,
                                      labelDropout: recipe.labelDropout, out: out)
        o.minSNRGamma = recipe.snrGamma
        o.offsetNoise = recipe.noiseOffset
        return (o, null)
    }

    /// The plain objective (no min-SNR weighting, no offset noise) of a scheduler config.
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

/// What a run folder's recipe.json holds: a resumed run must match it (`canResume`).
public protocol RunRecipe: Codable {
    /// Whether a run made with `self` can go on with `other` (what training reads must match).
    func canResume(as other: Self) -> Bool
    /// This recipe for a run resumed from one made with `old` (what carries over).
    func resumed(from old: Self) -> Self
}

extension Recipe: RunRecipe {
    public func resumed(from old: Recipe) -> Recipe {
        var r = self
        r.extras = extras.resumed(from: old.extras)
        if r.initFrom == nil { r.initFrom = old.initFrom }
        return r
    }
}

/// A training run stopped before its last step (a signal); its checkpoint is on disk.
public struct TrainingInterrupted: Error, CustomStringConvertible {
    public let stage: String
    public let path: String
    public var description: String { "\(path): the \(stage) stage stopped early; its checkpoint is saved (resume with --resume)" }
    public init(stage: String, path: String) { self.stage = stage; self.path = path }
}

/// A run folder that cannot be used as asked.
public struct TrainingRunError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public init(path: String, reason: String) { self.path = path; self.reason = reason }
    public var description: String { "\(path): \(reason)" }
}

/// Trains a model of any modality from its recipe into a run folder (`TrainingRun`'s layout):
/// checkpoints (resumable), previews every `previewEvery` steps (one sample per class, up to 8
/// spread over the classes, or a row of each class for images — `Modality.writePreview` draws
/// them), the exported pipeline folder RUN/model with the EMA weights, loss.csv and loss.png.
public enum Training {
    /// A training step's activations, in forward passes' (`activationBytes`).
    public static let trainingActivationFactor = 10.0

    /// Under `mpirun` every rank calls this alike (`ranks`: `TrainingRun.run`).
    @discardableResult
    public static func run<M: Modality>(recipe given: Recipe<M>, data: M.Data, out: URL, resume: Bool,
                                        ranks: Ranks? = MPIRanks.world,
                                        onStep: (TrainingStep) -> Bool = { _ in true }) throws -> Pipeline<M> {
        try M.validate(given)
        let recipe = try TrainingRun.prepare(given, out: out, resume: resume, ranks: ranks)
        if let problem = M.mismatch(recipe, data) { throw TrainingRunError(path: out.path, reason: problem) }
        let classes = data.classNames
        let resuming = Trainer.latestCheckpoint(in: out.appendingPathComponent("checkpoints")) != nil
        let unet = try M.makeModel(for: recipe, resuming: resuming)
        let (objective, null) = try TrainingRun.objective(recipe: recipe, labelCount: unet.labelCount,
                                                          classes: classes.count, out: out)
        let conditional = unet.labelCount != nil
        // A training step keeps every layer's output and its gradient for the backward pass:
        // about ten forward passes' activations (calibrated on the Fashion-MNIST recipe at batch
        // 64: 1.24 GB peak RSS against a forward estimate of 0.10 GB).
        let b = recipe.training.batchSize
        try MemoryBudget.check(Self.trainingActivationFactor * unet.activationBytes([b] + unet.sampleShape),
                               "a training step at batch \(b) of \(unet.sampleShape)")
        let trainer = try Trainer(model: unet, objective: objective, options: recipe.training)
        let pipeline = Pipeline<M>(unet: unet, scheduler: recipe.scheduler, classNames: conditional ? classes : [])

        try TrainingRun.run(trainer: trainer, out: out, previewEvery: recipe.previewEvery, batch: { rng in
            let (x, y) = try M.batch(data, recipe: recipe, rng: &rng)
            return (x, conditional ? y : nil)
        }, preview: { step in
            let request = M.previewRequest(classes: conditional ? classes.count : nil, guided: null != nil)
            try M.writePreview(try pipeline.generate(request), of: pipeline, to: out.appendingPathComponent("previews/step-\(step)"))
        }, export: {
            try pipeline.save(to: out.appendingPathComponent("model"))
        }, onStep: onStep, ranks: ranks)
        if ranks?.isWriter ?? true {
            try LossPlot.write(csv: out.appendingPathComponent("loss.csv"), to: out.appendingPathComponent("loss.png"))
        }
        return pipeline
    }
}
