import Foundation
import Tensor
import NN

/// Training settings (also the recipe file's format, with snake_case keys).
public struct TrainerOptions: Codable, Equatable, Sendable {
    public var steps = 10_000
    public var batchSize = 64
    public var learningRate: Float = 2e-4
    public var warmupSteps = 500
    /// "cosine", "linear" or "constant" (after warm-up).
    public var lrSchedule = "cosine"
    public var weightDecay: Float = 0
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var adamEps: Float = 1e-8
    /// Global gradient-norm limit (0: no clipping).
    public var gradClip: Float = 1
    /// Micro-batches per optimizer step (their gradients are averaged).
    public var gradientAccumulation = 1
    /// EMA of weights (diffusers' EMAModel); 0 turns it off.
    public var emaDecay: Double = 0.9999
    public var emaWarmup = true
    public var emaPower: Double = 2.0 / 3.0
    /// The EMA's decay never falls below this (diffusers' `min_decay`): equal to `emaDecay`, the
    /// average moves at one fixed rate from the first step (a consistency-distillation target).
    public var emaMinDecay: Double = 0
    public var seed: UInt64 = 0
    /// Checkpoint every this many steps (0: only at the end).
    public var checkpointEvery = 1000

    public init() {}

    enum CodingKeys: String, CodingKey {
        case steps, seed
        case batchSize = "batch_size", learningRate = "learning_rate", warmupSteps = "warmup_steps"
        case lrSchedule = "lr_schedule", weightDecay = "weight_decay", beta1 = "adam_beta1", beta2 = "adam_beta2"
        case adamEps = "adam_epsilon", gradClip = "grad_clip", gradientAccumulation = "gradient_accumulation"
        case emaDecay = "ema_decay", emaWarmup = "ema_warmup", emaPower = "ema_power", emaMinDecay = "ema_min_decay", checkpointEvery = "checkpoint_every"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = TrainerOptions()
        steps = try c.decodeIfPresent(Int.self, forKey: .steps) ?? d.steps
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? d.batchSize
        learningRate = try c.decodeIfPresent(Float.self, forKey: .learningRate) ?? d.learningRate
        warmupSteps = try c.decodeIfPresent(Int.self, forKey: .warmupSteps) ?? d.warmupSteps
        lrSchedule = try c.decodeIfPresent(String.self, forKey: .lrSchedule) ?? d.lrSchedule
        weightDecay = try c.decodeIfPresent(Float.self, forKey: .weightDecay) ?? d.weightDecay
        beta1 = try c.decodeIfPresent(Float.self, forKey: .beta1) ?? d.beta1
        beta2 = try c.decodeIfPresent(Float.self, forKey: .beta2) ?? d.beta2
        adamEps = try c.decodeIfPresent(Float.self, forKey: .adamEps) ?? d.adamEps
        gradClip = try c.decodeIfPresent(Float.self, forKey: .gradClip) ?? d.gradClip
        gradientAccumulation = try c.decodeIfPresent(Int.self, forKey: .gradientAccumulation) ?? d.gradientAccumulation
        emaDecay = try c.decodeIfPresent(Double.self, forKey: .emaDecay) ?? d.emaDecay
        emaWarmup = try c.decodeIfPresent(Bool.self, forKey: .emaWarmup) ?? d.emaWarmup
        emaPower = try c.decodeIfPresent(Double.self, forKey: .emaPower) ?? d.emaPower
        emaMinDecay = try c.decodeIfPresent(Double.self, forKey: .emaMinDecay) ?? d.emaMinDecay
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? d.seed
        checkpointEvery = try c.decodeIfPresent(Int.self, forKey: .checkpointEvery) ?? d.checkpointEvery
        try validate()
    }

    public func validate() throws {
        func bad(_ k: CodingKeys, _ r: String) -> ConfigError { ConfigError(key: k.rawValue, reason: r) }
        guard steps >= 1 else { throw bad(.steps, "must be >= 1") }
        guard batchSize >= 1 else { throw bad(.batchSize, "must be >= 1") }
        guard learningRate > 0, learningRate.isFinite else { throw bad(.learningRate, "must be positive") }
        guard warmupSteps >= 0 else { throw bad(.warmupSteps, "must be >= 0") }
        guard ["cosine", "linear", "constant"].contains(lrSchedule) else { throw bad(.lrSchedule, "cosine, linear or constant, not \(lrSchedule)") }
        guard gradientAccumulation >= 1 else { throw bad(.gradientAccumulation, "must be >= 1") }
        guard emaDecay >= 0, emaDecay < 1 else { throw bad(.emaDecay, "must be in [0, 1)") }
        guard emaMinDecay >= 0, emaMinDecay <= emaDecay else { throw bad(.emaMinDecay, "must be in [0, ema_decay]") }
        guard checkpointEvery >= 0 else { throw bad(.checkpointEvery, "must be >= 0") }
    }

    var schedule: LRSchedule {
        switch lrSchedule {
        case "linear": return .linear(warmup: warmupSteps, total: steps)
        case "constant": return .constantWithWarmup(warmup: warmupSteps)
        default: return .cosine(warmup: warmupSteps, total: steps)
        }
    }
}

/// What one optimizer step did.
public struct TrainingStep: Sendable {
    public let step: Int
    public let loss: Float
    public let learningRate: Float
    public let gradNorm: Float
}

/// Trains any `DiffusionModel` with AdamW, warm-up + cosine/linear LR, gradient clipping and
/// accumulation, and an EMA of the weights; checkpoints atomically and resumes exactly.
///
/// Every random draw of step k comes from a generator seeded by (seed, k), so a run resumed
/// from a checkpoint takes the same batches, timesteps and noise as an uninterrupted one:
/// with the same thread count its weights are bit-identical.
public final class Trainer {
    public let model: any Module
    /// The diffusion objective, when the trainer was made with one (nil: a custom `loss`).
    public let objective: DiffusionObjective?
    /// The loss of one micro-batch x [N, ...] with its labels; every random draw from the generator.
    public typealias Loss = (_ x: Tensor, _ labels: [Int]?, _ rng: inout RandomGenerator) -> Tensor
    private let loss: Loss
    public let options: TrainerOptions
    public let optimizer: AdamW
    public let ema: EMA?
    /// Optimizer steps completed.
    public private(set) var step = 0
    private let parameters: [Tensor]
    /// The ranks of a data-parallel job (nil or one rank: this process alone). Each rank takes
    /// its slice of every batch, `batchSize` stays the global batch, and every number the run
    /// makes is that of one process up to float summation order; rank 0 alone writes files.
    public var ranks: Ranks? = nil
    /// Gradients, a has-gradient flag per parameter, and the loss, summed across ranks in one call.
    private var flat: [Float] = []

    public convenience init(model: DiffusionModel, objective: DiffusionObjective, options: TrainerOptions) throws {
        try self.init(module: model, objective: objective, options: options) { x, labels, rng in
            objective.loss(model, x0: x, labels: labels, rng: &rng)
        }
    }

    /// A trainer of any module with its own loss (an autoencoder's reconstruction, a text
    /// encoder trained jointly with a denoiser): the same optimizer, schedule, clipping, EMA,
    /// checkpoints and resumption as the diffusion trainer.
    public convenience init(module: any Module, options: TrainerOptions, loss: @escaping Loss) throws {
        try self.init(module: module, objective: nil, options: options, loss: loss)
    }

    private init(module model: any Module, objective: DiffusionObjective?, options: TrainerOptions, loss: @escaping Loss) throws {
        try options.validate()
        self.model = model
        self.objective = objective
        self.loss = loss
        self.options = options
        parameters = model.trainableParameters()
        optimizer = AdamW(parameters, learningRate: options.learningRate, beta1: options.beta1, beta2: options.beta2,
                          eps: options.adamEps, weightDecay: options.weightDecay)
        ema = options.emaDecay > 0
            ? EMA(parameters: parameters, decay: options.emaDecay, minDecay: options.emaMinDecay, useWarmup: options.emaWarmup, power: options.emaPower)
            : nil
    }

    /// The generator for step k's draws: batches, timesteps, noise, label dropout.
    public func generator(forStep k: Int) -> RandomGenerator {
        RandomGenerator(seed: options.seed &+ 0x9E37_79B9_7F4A_7C15 &* UInt64(k + 1))
    }

    /// One optimizer step. `batch(rng)` returns x₀ [N, ...] and its labels.
    @discardableResult
    public func trainStep(batch: (inout RandomGenerator) throws -> (Tensor, [Int]?)) throws -> TrainingStep {
        var rng = generator(forStep: step)
        model.setTraining(true)
        model.zeroGrad()
        var total: Float = 0
        let micro = options.gradientAccumulation
        let ranks = self.ranks.flatMap { $0.size > 1 ? $0 : nil }
        for _ in 0..<micro {
            rng.firstSample = 0
            let (x0, labels) = try batch(&rng)
            guard let ranks else {
                let loss = self.loss(x0, labels, &rng)
                let scaled = micro == 1 ? loss : loss * (1 / Float(micro))
                scaled.backward()
                total += loss.item() / Float(micro)
                continue
            }
            // Every rank assembles the same global batch (indices, flips: cheap) and trains on
            // its rows: the loss's draws start at sample `lo`, so each sample gets the timestep
            // and noise it gets in one process (the generator is per sample). The loss is a mean
            // over the rows, so it is weighted by the slice's share before the ranks' sum.
            let n = x0.shape[0], rows = ranks.slice(of: n)
            guard !rows.isEmpty else {
                throw ConfigError(key: "batch_size", reason: "a batch of \(n) samples cannot be split over \(ranks.size) ranks: use a batch of at least \(ranks.size) or fewer ranks")
            }
            rng.firstSample = rows.lowerBound
            let loss = self.loss(x0.slice(axis: 0, rows), labels.map { Array($0[rows]) }, &rng)
            let share = Float(rows.count) / Float(n) / Float(micro)
            (loss * share).backward()
            total += loss.item() * share
        }
        if let ranks { total = sumGradients(over: ranks, loss: total) }
        let norm = options.gradClip > 0 ? clipGradNorm(parameters, maxNorm: options.gradClip) : 0
        let lr = options.learningRate * Float(options.schedule.factor(at: step))
        optimizer.learningRate = lr
        optimizer.step()
        ema?.step(parameters)
        model.zeroGrad()
        step += 1
        return TrainingStep(step: step, loss: total, learningRate: lr, gradNorm: norm)
    }

    /// Replaces every gradient by its sum over the ranks (each already weighted by its share of
    /// the batch: the sum is the whole batch's gradient) and returns the summed loss. A parameter
    /// no rank has a gradient for keeps none, as in one process.
    private func sumGradients(over ranks: Ranks, loss: Float) -> Float {
        let total = parameters.reduce(0) { $0 + $1.count } + parameters.count + 1
        if flat.count != total { flat = [Float](repeating: 0, count: total) }
        flat.withUnsafeMutableBufferPointer { buf in
            let b = buf.baseAddress!
            var o = 0
            for (i, p) in parameters.enumerated() {
                if let g = p.grad {
                    precondition(g.shape == p.shape, "gradient \(g.shape) of parameter \(p.shape)")
                    (b + o).update(from: g.data, count: g.count)
                    b[total - 1 - parameters.count + i] = 1
                } else {
                    (b + o).update(repeating: 0, count: p.count)
                    b[total - 1 - parameters.count + i] = 0
                }
                o += p.count
            }
            b[total - 1] = loss
            ranks.allReduceSum(buf)
            o = 0
            for (i, p) in parameters.enumerated() {
                if b[total - 1 - parameters.count + i] > 0 {
                    // Gradients are never modified in place (they may be shared): replace them.
                    p.grad = Tensor(shape: p.shape, scalars: Array(UnsafeBufferPointer(start: b + o, count: p.count)))
                } else {
                    p.grad = nil
                }
                o += p.count
            }
        }
        return flat[total - 1]
    }

    /// A callback run every `every` steps (sample previews, metrics, logs).
    public struct Periodic {
        public var every: Int
        public var action: (Trainer, TrainingStep) throws -> Void
        public init(every: Int, _ action: @escaping (Trainer, TrainingStep) throws -> Void) {
            precondition(every >= 1, "Periodic: every \(every)")
            self.every = every
            self.action = action
        }
    }

    /// Trains until `options.steps`, resuming from the latest checkpoint in `checkpointDir` when
    /// there is one; checkpoints every `options.checkpointEvery` steps and at the end; runs the
    /// periodic callbacks after their steps. `onStep` returning false stops early (after a
    /// checkpoint), e.g. on a signal. With `ranks`, rank 0 alone runs the callbacks and writes
    /// checkpoints; every rank resumes from the same one, whatever the rank count that wrote it.
    public func run(checkpointDir: URL?, batch: (inout RandomGenerator) throws -> (Tensor, [Int]?),
                    periodic: [Periodic] = [], onStep: (TrainingStep) -> Bool = { _ in true }) throws {
        if let dir = checkpointDir, let latest = Trainer.latestCheckpoint(in: dir) { try resume(from: latest) }
        // Rank 0 writes; the ranks stop together (a signal may reach one of them first).
        let ranks = self.ranks.flatMap { $0.size > 1 ? $0 : nil }
        let writer = ranks?.isWriter ?? true
        while step < options.steps {
            let r = try trainStep(batch: batch)
            if writer { for p in periodic where r.step % p.every == 0 { try p.action(self, r) } }
            let due = options.checkpointEvery > 0 && r.step % options.checkpointEvery == 0
            var keepGoing = onStep(r)
            if let ranks { keepGoing = !ranks.any(!keepGoing) }
            if writer, let dir = checkpointDir, due || r.step == options.steps || !keepGoing { try saveCheckpoint(in: dir) }
            if !keepGoing { return }
        }
    }

    /// Copies the EMA weights into the model (what gets exported and sampled), or does nothing
    /// without EMA. Returns a closure that puts the raw weights back.
    public func swapInEMA() -> () -> Void {
        guard let ema else { return {} }
        let saved = parameters.map { $0.copy() }
        ema.copy(to: parameters)
        return { [parameters] in for (p, s) in zip(parameters, saved) { p.copyFrom(s) } }
    }

    // MARK: Checkpoints

    /// Writes `dir/checkpoint-<step>/` (model, EMA and optimizer state, trainer state) through a
    /// temporary folder renamed into place, then points `dir/latest` at it. Keeps the newest `keep`.
    @discardableResult
    public func saveCheckpoint(in dir: URL, keep: Int = 2) throws -> URL {
        let fm = FileManager.default
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        let name = "checkpoint-\(step)"
        let final = dir.appendingPathComponent(name)
        let tmp = dir.appendingPathComponent(".\(name).tmp-\(getpid())")
        try? fm.removeItem(at: tmp)
        try fm.createDirectory(at: tmp, withIntermediateDirectories: true)
        do {
            var tensors: [String: Tensor] = [:]
            for (n, t) in model.namedParameters() { tensors["model." + n] = t }
            if let ema { for (i, s) in ema.shadow.enumerated() { tensors["ema.\(i)"] = s } }
            for (k, v) in optimizer.stateDict() { tensors["optimizer." + k] = v }
            try SafeTensors.write(tensors, to: tmp.appendingPathComponent("training_state.safetensors"))
            let state = CheckpointState(step: step, emaSteps: ema?.optimizationStep ?? 0, options: options)
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try AtomicFile.write(try enc.encode(state), to: tmp.appendingPathComponent("trainer_state.json"))
            try? fm.removeItem(at: final)
            try fm.moveItem(at: tmp, to: final)
        } catch {
            try? fm.removeItem(at: tmp)
            throw error
        }
        try AtomicFile.write(Data(name.utf8), to: dir.appendingPathComponent("latest"))
        // Older checkpoints beyond `keep`.
        let all = (try? fm.contentsOfDirectory(atPath: dir.path)) ?? []
        let steps = all.compactMap { $0.hasPrefix("checkpoint-") ? Int($0.dropFirst(11)) : nil }.sorted()
        for s in steps.dropLast(keep) where s != step { try? fm.removeItem(at: dir.appendingPathComponent("checkpoint-\(s)")) }
        return final
    }

    /// The checkpoint `dir/latest` points at, if any.
    public static func latestCheckpoint(in dir: URL) -> URL? {
        guard let d = try? Data(contentsOf: dir.appendingPathComponent("latest")),
              let name = String(data: d, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines),
              !name.isEmpty, !name.contains("/") else { return nil }
        let u = dir.appendingPathComponent(name)
        return FileManager.default.fileExists(atPath: u.appendingPathComponent("trainer_state.json").path) ? u : nil
    }

    /// The step a checkpoint folder was saved at (nil when its trainer_state.json is unreadable).
    public static func step(of checkpoint: URL) -> Int? {
        guard let d = try? Data(contentsOf: checkpoint.appendingPathComponent("trainer_state.json")) else { return nil }
        return (try? JSONDecoder().decode(CheckpointState.self, from: d))?.step
    }

    /// Restores model, EMA, optimizer and step from a checkpoint folder.
    public func resume(from checkpoint: URL) throws {
        let stateURL = checkpoint.appendingPathComponent("trainer_state.json")
        let state: CheckpointState
        do { state = try JSONDecoder().decode(CheckpointState.self, from: Data(contentsOf: stateURL)) } catch {
            throw ConfigError(key: "trainer_state.json", reason: "\(stateURL.path) is unreadable: \(error)")
        }
        let file = try SafeTensorsFile(url: checkpoint.appendingPathComponent("training_state.safetensors"))
        var modelTensors: [String: Tensor] = [:]
        var optim: [String: Tensor] = [:]
        for n in file.names {
            if n.hasPrefix("model.") { modelTensors[String(n.dropFirst(6))] = try file.weight(n) }
            else if n.hasPrefix("optimizer.") { optim[String(n.dropFirst(10))] = try file.tensor(n) }
        }
        try model.load(from: modelTensors)
        try optimizer.loadState(optim)
        if let ema {
            for (i, s) in ema.shadow.enumerated() {
                guard file.entry("ema.\(i)") != nil else {
                    throw SafeTensorsError(file: file.url.path, reason: "no EMA tensor ema.\(i)")
                }
                let t = try file.weight("ema.\(i)")
                guard t.shape == s.shape else {
                    throw SafeTensorsError(file: file.url.path, reason: "ema.\(i) has shape \(t.shape), the model needs \(s.shape)")
                }
                s.copyFrom(t)
            }
            ema.restore(optimizationStep: state.emaSteps)
        }
        step = state.step
    }

    struct CheckpointState: Codable {
        var step: Int
        var emaSteps: Int
        var options: TrainerOptions
    }
}
