import Foundation
import Tensor
import NN
import Diffusion
import Media

/// How a student learns to sample in a few steps.
public enum DistillationMethod: String, Codable, CaseIterable, Sendable {
    /// Consistency distillation (Song et al. 2023, "Consistency Models", §4; as latent consistency
    /// models do it, Luo et al. 2023, Algorithm 1): f_θ(x_t, t) is pulled towards an EMA copy's
    /// f(x̂_{t−k}, t−k), where x̂_{t−k} is one DDIM step of the guided teacher over k = T/N
    /// timesteps of an N-point grid. Sampled with the LCM sampler.
    case consistency
    /// Progressive distillation (Salimans & Ho 2022, Algorithm 2): a student learns in one DDIM
    /// step what its teacher does in two, halving the step count stage by stage down to the
    /// student's; each stage's student teaches the next. Sampled with DDIM ("trailing" steps).
    case progressive
}

/// How the per-sample squared error of x₀-like quantities is weighted over the noise levels
/// (SNR = ᾱ / (1 − ᾱ) at the student's timestep).
public enum DistillationWeighting: String, Codable, CaseIterable, Sendable {
    /// 1: the error of the consistency function / the x₀ target itself (LCM's).
    case x0
    /// SNR: the error of the student's implied ε (the denoising objective's own weighting).
    case epsilon
    /// min(SNR, 5) (Hang et al. 2023): ε-like at high noise, where the x₀ an ε-model implies is
    /// amplified by 1/√ᾱ (157× at t = 999 of the linear schedule), x₀-like near the data.
    case minSNR = "min-snr"
    /// SNR + 1: the error of an implied v (Salimans & Ho 2022, §4: x₀'s error stays weighted at
    /// high noise, where an ε-like weighting all but ignores it).
    case snrPlusOne = "snr+1"

    func weight(snr: Double) -> Float {
        switch self {
        case .x0: return 1
        case .epsilon: return Float(snr)
        case .minSNR: return Float(Swift.min(snr, 5))
        case .snrPlusOne: return Float(snr + 1)
        }
    }
}

/// What a distillation run reads (RUN/recipe.json): the teacher, the method and its grid, the
/// guidance baked into the student, the stages' lengths and the trainer's settings.
public struct DistillationRecipe: Codable, Equatable, Sendable, RunRecipe {
    /// The teacher's pipeline folder (as given; recorded in the student's distillation.json).
    public var teacher: String
    public var method: DistillationMethod
    /// The classifier-free guidance scale baked into the student (the teacher's guided
    /// prediction is what it learns; 1: none).
    public var guidanceScale: Float
    /// For a student that takes the guidance scale as an input (a text-to-image unet with
    /// `time_cond_proj_dim`, as LCM's): the range [low, high] each sample's scale is drawn from,
    /// uniformly; `guidanceScale` is then only the student's default. nil: baked in.
    public var guidanceRange: [Float]?
    /// The training timesteps [low, high] the teacher is guided at (its folder's sampling.json
    /// default, as `generate` samples it); elsewhere its conditional prediction. nil: all.
    public var guidanceInterval: [Float]?
    /// Stage 1 (Meng et al. 2023, "On Distillation of Guided Diffusion Models", §3.1): steps of
    /// learning the guided teacher's prediction in one evaluation (0 skips it).
    public var guidanceSteps: Int
    /// Steps of the consistency stage, or of each halving of progressive distillation.
    public var steps: Int
    /// The sampling steps the student is made for (its folder's default).
    public var studentSteps: Int
    /// Consistency: the timestep grid N (`original_inference_steps`; skipping step k = T / N).
    /// Progressive: the teacher's step count the first halving starts from (a power of two
    /// times `studentSteps`).
    public var grid: Int
    /// Consistency: the EMA target's fixed decay (also the exported weights).
    public var targetDecay: Double
    public var weighting: DistillationWeighting
    /// What the student predicts (nil: what the teacher predicts). An ε-predicting student's x₀
    /// at a few-step trajectory's first timestep is (x − √(1−ᾱ) ε̂)/√ᾱ, its error amplified 157×
    /// at t = 999; a v-predicting one's is √ᾱ x − √(1−ᾱ) v̂ (Salimans & Ho 2022, §4).
    public var studentPrediction: PredictionType?
    /// Share of the samples trained with the null label (the student keeps unguided sampling).
    public var labelDropout: Float
    public var previewEvery: Int
    /// Batch, learning rate, schedule, clipping, seed, checkpoints (`steps` and the EMA are set per stage).
    public var training: TrainerOptions

    /// The defaults are what measured best on the bundled image model (samples/README.md):
    /// progressive at lr 5e-5; consistency diverged above 5e-6.
    public init(teacher: String, method: DistillationMethod = .progressive, guidanceScale: Float = ClassLabels.defaultGuidance) {
        self.teacher = teacher
        self.method = method
        self.guidanceScale = guidanceScale
        guidanceSteps = 300
        steps = 300
        studentSteps = 4
        grid = method == .consistency ? 50 : 16
        targetDecay = 0.95
        weighting = .minSNR
        labelDropout = 0.1
        previewEvery = 100
        var t = TrainerOptions()
        t.batchSize = 16
        t.learningRate = method == .progressive ? 5e-5 : 5e-6
        t.warmupSteps = 0
        t.lrSchedule = "constant"
        t.emaDecay = 0
        t.checkpointEvery = 100
        training = t
    }

    enum CodingKeys: String, CodingKey {
        case teacher, method, steps, grid, weighting, training
        case guidanceScale = "guidance_scale", guidanceSteps = "guidance_steps", studentSteps = "student_steps"
        case guidanceRange = "guidance_range", guidanceInterval = "guidance_interval"
        case targetDecay = "target_decay", labelDropout = "label_dropout", previewEvery = "preview_every"
        case studentPrediction = "student_prediction"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let method = try c.decodeIfPresent(DistillationMethod.self, forKey: .method) ?? .progressive
        var r = DistillationRecipe(teacher: try c.decode(String.self, forKey: .teacher), method: method)
        r.guidanceScale = try c.decodeIfPresent(Float.self, forKey: .guidanceScale) ?? r.guidanceScale
        r.guidanceRange = try c.decodeIfPresent([Float].self, forKey: .guidanceRange)
        r.guidanceInterval = try c.decodeIfPresent([Float].self, forKey: .guidanceInterval)
        r.guidanceSteps = try c.decodeIfPresent(Int.self, forKey: .guidanceSteps) ?? r.guidanceSteps
        r.steps = try c.decodeIfPresent(Int.self, forKey: .steps) ?? r.steps
        r.studentSteps = try c.decodeIfPresent(Int.self, forKey: .studentSteps) ?? r.studentSteps
        r.grid = try c.decodeIfPresent(Int.self, forKey: .grid) ?? r.grid
        r.targetDecay = try c.decodeIfPresent(Double.self, forKey: .targetDecay) ?? r.targetDecay
        r.weighting = try c.decodeIfPresent(DistillationWeighting.self, forKey: .weighting) ?? r.weighting
        r.studentPrediction = try c.decodeIfPresent(PredictionType.self, forKey: .studentPrediction)
        r.labelDropout = try c.decodeIfPresent(Float.self, forKey: .labelDropout) ?? r.labelDropout
        r.previewEvery = try c.decodeIfPresent(Int.self, forKey: .previewEvery) ?? r.previewEvery
        r.training = try c.decodeIfPresent(TrainerOptions.self, forKey: .training) ?? r.training
        self = r
        try validate(trainSteps: nil)
    }

    /// The numbers checked before anything is allocated; `trainSteps`: the teacher's T, when known.
    public func validate(trainSteps T: Int?) throws {
        func bad(_ k: CodingKeys, _ r: String) -> ConfigError { ConfigError(key: k.rawValue, reason: r) }
        guard guidanceScale.isFinite, guidanceScale >= 0, guidanceScale <= 50 else { throw bad(.guidanceScale, "must be in [0, 50]") }
        if let g = guidanceRange {
            guard g.count == 2, g.allSatisfy({ $0.isFinite && $0 >= 1 && $0 <= 50 }), g[0] <= g[1] else {
                throw bad(.guidanceRange, "must be [low, high] with 1 ≤ low ≤ high ≤ 50, got \(g)")
            }
        }
        if let i = guidanceInterval, let p = SamplingRequest.guidanceIntervalProblem(i) { throw bad(.guidanceInterval, p) }
        guard (0...10_000_000).contains(guidanceSteps) else { throw bad(.guidanceSteps, "must be in 0 ... 10000000") }
        guard (1...10_000_000).contains(steps) else { throw bad(.steps, "must be in 1 ... 10000000") }
        guard (1...64).contains(studentSteps) else { throw bad(.studentSteps, "must be in 1 ... 64") }
        guard (1...1000).contains(grid) else { throw bad(.grid, "must be in 1 ... 1000") }
        guard targetDecay >= 0, targetDecay < 1 else { throw bad(.targetDecay, "must be in [0, 1)") }
        guard labelDropout >= 0, labelDropout <= 1 else { throw bad(.labelDropout, "must be in [0, 1]") }
        guard previewEvery >= 0 else { throw bad(.previewEvery, "must be ≥ 0") }
        try training.validate()
        switch method {
        case .consistency:
            guard studentSteps <= grid else { throw bad(.studentSteps, "\(studentSteps) steps cannot be taken from a grid of \(grid) points") }
            if let T, grid > T { throw bad(.grid, "\(grid) points on \(T) training timesteps") }
        case .progressive:
            guard grid > studentSteps, grid % studentSteps == 0, (grid / studentSteps).nonzeroBitCount == 1 else {
                throw bad(.grid, "progressive distillation halves the teacher's \(grid) steps down to \(studentSteps): grid must be student_steps × 2^k, k ≥ 1")
            }
            if let T, grid > T { throw bad(.grid, "\(grid) teacher steps on \(T) training timesteps") }
        }
    }

    /// `guidanceInterval` as a range (validated).
    public var interval: ClosedRange<Float>? { guidanceInterval.flatMap(SamplingRequest.guidanceInterval) }

    /// The halvings of progressive distillation, as (teacher steps, student steps); one
    /// consistency stage otherwise.
    public var halvings: [(teacher: Int, student: Int)] {
        guard method == .progressive else { return [] }
        var out: [(Int, Int)] = []
        var n = grid
        while n > studentSteps { out.append((n, n / 2)); n /= 2 }
        return out
    }

    /// Only the preview interval and the stage length (`--steps`) may change on `--resume`: a
    /// longer run goes on from each stage's own checkpoint (a finished stage trains on to the new
    /// count before the next one continues).
    public func canResume(as other: DistillationRecipe) -> Bool {
        var a = self, b = other
        a.previewEvery = 0; b.previewEvery = 0
        a.steps = b.steps; a.training.steps = b.training.steps
        return a == b
    }

    public func resumed(from old: DistillationRecipe) -> DistillationRecipe { self }
}

/// What a student folder records of its making (distillation.json beside model_index.json):
/// the guidance it has baked in (so sampling adds none), the sampler and step count it is for.
public struct DistillationInfo: PipelineFolderRecord, Equatable, Sendable {
    public var method: DistillationMethod
    /// The teacher's folder, as the run was given it.
    public var teacher: String
    /// The guidance scale baked in (the student is sampled without guidance), or, with
    /// `guidanceRange`, the default of a student that takes the scale as an input.
    public var guidanceScale: Float
    /// The scales a student that takes the scale as an input was trained on; nil: baked in.
    public var guidanceRange: [Float]?
    /// The teacher's timesteps of guidance the student learnt (nil: all); a record, not a setting.
    public var guidanceInterval: [Float]?
    /// The default number of sampling steps.
    public var steps: Int

    public init(method: DistillationMethod, teacher: String, guidanceScale: Float, guidanceRange: [Float]? = nil,
                guidanceInterval: [Float]? = nil, steps: Int) {
        self.method = method; self.teacher = teacher; self.guidanceScale = guidanceScale; self.guidanceRange = guidanceRange
        self.guidanceInterval = guidanceInterval; self.steps = steps
    }

    /// What a run of `recipe` records in a student made for `steps` steps.
    public init(_ recipe: DistillationRecipe, steps: Int) {
        self.init(method: recipe.method, teacher: recipe.teacher, guidanceScale: recipe.guidanceScale,
                  guidanceRange: recipe.guidanceRange, guidanceInterval: recipe.guidanceInterval, steps: steps)
    }

    enum CodingKeys: String, CodingKey {
        case method, teacher, steps, guidanceScale = "guidance_scale", guidanceRange = "guidance_range", guidanceInterval = "guidance_interval"
    }

    public static let fileName = "distillation.json"
    public static let recordName = "distillation record"

    public func problem() -> String? {
        guard guidanceScale.isFinite, guidanceScale >= 0, (1...1000).contains(steps) else {
            return "guidance_scale must be a finite number ≥ 0 and steps 1 ... 1000"
        }
        if let g = guidanceRange, g.count != 2 || !g.allSatisfy({ $0.isFinite && $0 >= 0 }) || g[0] > g[1] {
            return "guidance_range must be [low, high] with 0 ≤ low ≤ high, got \(g)"
        }
        return nil
    }
}

/// What the distillation loop needs of a teacher and its students, whatever they are: the class
/// models of every modality (`ClassDistillation`), or a text-to-image pipeline whose student takes
/// the guidance scale as an input (the Image module's `TextToImageDistillation`).
public protocol DistillationSubject {
    associatedtype Student: DiffusionModel
    /// The teacher's denoiser, called with the teacher's labels (`nullLabel`: the unconditional side).
    var teacher: DiffusionModel { get }
    /// The teacher's scheduler config (noise schedule, prediction type, clipping).
    var scheduler: SchedulerConfig { get }
    /// The label of the unconditional side of guidance; nil when the teacher cannot be guided.
    var nullLabel: Int? { get }
    /// Whether the teacher takes labels (classes or captions) at all.
    var isConditional: Bool { get }
    /// A student with `previous`'s weights (nil: the teacher's), ready to train.
    func makeStudent(from previous: Student?) throws -> Student
    /// Each sample's guidance scale for a batch of `n` when the student takes the scale as an
    /// input (drawn from `rng`); nil when `recipe.guidanceScale` is baked in (nothing drawn).
    func guidanceScales(_ n: Int, recipe: DistillationRecipe, rng: inout RandomGenerator) -> [Float]?
    /// Gives `model` the guidance scales of the batch it is about to see.
    func setGuidance(_ scales: [Float], on model: Student)
    /// A training batch of `size` [B, C, …] with its labels as the teacher's.
    func batch(_ size: Int, rng: inout RandomGenerator) throws -> (Tensor, [Int]?)
    /// Bytes of one forward pass at batch `b` (the memory check before training).
    func activationBytes(batch b: Int) -> Double
    /// Writes a preview of `student` sampled with `sampler` in `steps` steps to `base` + its extension.
    func writePreview(_ student: Student, scheduler: SchedulerConfig, sampler: SamplerName, steps: Int, info: DistillationInfo,
                      to base: URL) throws
    /// Writes `student` as a pipeline folder with `scheduler` and distillation.json.
    func save(_ student: Student, scheduler: SchedulerConfig, info: DistillationInfo, to dir: URL) throws
}

extension DistillationSubject {
    public func guidanceScales(_ n: Int, recipe: DistillationRecipe, rng: inout RandomGenerator) -> [Float]? { nil }
    public func setGuidance(_ scales: [Float], on model: Student) {}
}

/// A class model of any modality (`Pipeline<M>`): the student has the teacher's config, the
/// guidance scale is baked in, the data's labels are matched to the teacher's classes by name.
public struct ClassDistillation<M: Modality>: DistillationSubject {
    public let pipeline: Pipeline<M>
    let data: M.Data
    let labelMap: [Int]?

    /// - Throws: when none of the data's classes is one of the teacher's (`out` names the run).
    public init(teacher: Pipeline<M>, data: M.Data, out: URL) throws {
        pipeline = teacher
        self.data = data
        let null = teacher.nullLabel
        labelMap = teacher.classes.isConditional ? data.classNames.map { teacher.classes.matching($0) ?? null ?? 0 } : nil
        if let labelMap, !data.classNames.isEmpty, labelMap.allSatisfy({ $0 == null }) {
            throw TrainingRunError(path: out.path, reason: "none of the data's classes (\(data.classNames.prefix(4).joined(separator: ", "))) is one of the teacher's (\(teacher.classNames.prefix(4).joined(separator: ", ")))")
        }
    }

    public var teacher: DiffusionModel { pipeline.unet }
    public var scheduler: SchedulerConfig { pipeline.scheduler }
    public var nullLabel: Int? { pipeline.nullLabel }
    public var isConditional: Bool { pipeline.classes.isConditional }

    public func makeStudent(from previous: M.Model?) throws -> M.Model {
        let student = try NNInit.skippingRandomInit { try M.Model(config: pipeline.unet.config) }
        try student.load(from: (previous ?? pipeline.unet).stateDict())
        return student
    }

    public func batch(_ size: Int, rng: inout RandomGenerator) throws -> (Tensor, [Int]?) {
        let (x, y) = try data.batch(rng.integers(size, below: data.count))
        let null = nullLabel
        return (x, labelMap.map { m in y.map { $0 >= 0 && $0 < m.count ? m[$0] : (null ?? 0) } })
    }

    public func activationBytes(batch b: Int) -> Double { pipeline.unet.activationBytes([b] + pipeline.unet.sampleShape) }

    /// The student as a pipeline folder's contents.
    public func pipeline(_ student: M.Model, scheduler: SchedulerConfig, info: DistillationInfo) -> Pipeline<M> {
        Pipeline<M>(unet: student, scheduler: scheduler, classNames: pipeline.classNames, distillation: info)
    }

    public func writePreview(_ student: M.Model, scheduler: SchedulerConfig, sampler: SamplerName, steps: Int, info: DistillationInfo,
                             to base: URL) throws {
        let p = pipeline(student, scheduler: scheduler, info: info)
        var request = M.previewRequest(classes: isConditional ? pipeline.classNames.count : nil, guided: false)
        request.steps = steps
        request.sampler = sampler
        try M.writePreview(try p.generate(request), of: p, to: base)
    }

    public func save(_ student: M.Model, scheduler: SchedulerConfig, info: DistillationInfo, to dir: URL) throws {
        try pipeline(student, scheduler: scheduler, info: info).save(to: dir)
    }
}

/// Distils a teacher pipeline of any modality into a few-step student, in one run folder:
///
///     RUN/recipe.json                     the `DistillationRecipe`
///     RUN/stage-1-guidance/               the guided teacher's prediction in one evaluation
///     RUN/stage-2-consistency/            or, progressive: stage-2-16to8/, stage-3-8to4/, …
///         checkpoints/ loss.csv loss.png previews/ model/   (each stage a `TrainingRun` folder)
///     RUN/model/                          the student: a pipeline folder with an LCM (consistency)
///                                         or DDIM "trailing" (progressive) scheduler and distillation.json
///
/// Each stage starts from the one before (the first from the teacher's weights) and resumes from
/// its own checkpoints, so a killed run goes on where it stopped. Every draw is seeded per step.
public enum Distillation {
    public struct Stage: Sendable {
        public let index: Int
        public let name: String
        public let steps: Int
    }

    /// The stages `recipe` runs, in order.
    public static func stages(_ recipe: DistillationRecipe) -> [Stage] {
        var names: [(String, Int)] = []
        if recipe.guidanceSteps > 0 { names.append(("guidance", recipe.guidanceSteps)) }
        switch recipe.method {
        case .consistency: names.append(("consistency", recipe.steps))
        case .progressive: for h in recipe.halvings { names.append(("\(h.teacher)to\(h.student)", recipe.steps)) }
        }
        return names.enumerated().map { Stage(index: $0.offset + 1, name: $0.element.0, steps: $0.element.1) }
    }

    /// The student's scheduler: the teacher's noise schedule and clipping, the student's
    /// prediction type, with the sampler the method trains for.
    public static func studentScheduler(_ recipe: DistillationRecipe, teacher: SchedulerConfig) -> SchedulerConfig {
        let own = predicting(recipe, teacher: teacher)
        switch recipe.method {
        case .consistency:
            return own.converted(to: .lcm).setting(["original_inference_steps": .number(Double(recipe.grid)),
                                                    "timestep_scaling": .number(10)]).keepingOwnKeys()
        case .progressive:
            return own.converted(to: .ddim).setting(["timestep_spacing": .string("trailing"), "set_alpha_to_one": .bool(true),
                                                     "steps_offset": .number(0)]).keepingOwnKeys()
        }
    }

    /// The teacher's scheduler with the student's prediction type (stage 1's student samples with it).
    static func predicting(_ recipe: DistillationRecipe, teacher: SchedulerConfig) -> SchedulerConfig {
        recipe.studentPrediction.map { teacher.setting(["prediction_type": .string($0.rawValue)]) } ?? teacher
    }

    /// Runs every stage of `recipe` on `data` (labels mapped to the teacher's classes by name;
    /// a class the teacher lacks trains as the null label) and writes RUN/model.
    @discardableResult
    public static func run<M: Modality>(recipe: DistillationRecipe, teacher: Pipeline<M>, data: M.Data, out: URL,
                                        resume: Bool, note: (String) -> Void = { _ in },
                                        onStep: (Stage, TrainingStep) -> Bool = { _, _ in true }) throws -> Pipeline<M> {
        let subject = try ClassDistillation(teacher: teacher, data: data, out: out)
        let student = try run(subject, recipe: recipe, out: out, resume: resume, note: note, onStep: onStep)
        return subject.pipeline(student, scheduler: studentScheduler(recipe, teacher: teacher.scheduler),
                                info: DistillationInfo(recipe, steps: recipe.studentSteps))
    }

    /// Runs every stage of `recipe` on what `subject` gives (teacher, batches, students, their
    /// previews and folders) and writes RUN/model; returns the last stage's student.
    @discardableResult
    public static func run<S: DistillationSubject>(_ subject: S, recipe given: DistillationRecipe, out: URL, resume: Bool,
                                                   note: (String) -> Void = { _ in },
                                                   onStep: (Stage, TrainingStep) -> Bool = { _, _ in true }) throws -> S.Student {
        let schedule = try subject.scheduler.noiseSchedule()
        try given.validate(trainSteps: schedule.numTrainTimesteps)
        let recipe = try TrainingRun.prepare(given, out: out, resume: resume, ranks: nil)
        let param = try subject.scheduler.parameterization()
        let null = subject.nullLabel
        if recipe.guidanceScale != 1 || recipe.guidanceRange != nil, subject.isConditional, null == nil {
            throw TrainingRunError(path: recipe.teacher, reason: "the teacher has no null label, so it cannot be guided: pass --guidance 1")
        }
        let b = recipe.training.batchSize
        // Teacher (guided: two halves), student forward + backward, target: about 14 forwards' activations.
        try MemoryBudget.check((Training.trainingActivationFactor + 4) * subject.activationBytes(batch: b),
                               "a distillation step at batch \(b)")
        var studentParam = param
        if let p = recipe.studentPrediction { studentParam.prediction = p }
        let ctx = Context(schedule: schedule, param: param, studentParam: studentParam, nullLabel: null, labelDropout: subject.isConditional ? recipe.labelDropout : 0,
                          weighting: recipe.weighting)
        subject.teacher.setTraining(false)
        let fixed = ctx.guided(subject.teacher, scale: subject.isConditional ? recipe.guidanceScale : 1, interval: recipe.interval)
        /// The guided teacher for a batch: at the baked-in scale, or at each sample's drawn one.
        func guidedTeacher(_ scales: [Float]?) -> Context.Predictor {
            scales.map { ctx.guided(subject.teacher, scales: $0, interval: recipe.interval) } ?? fixed
        }

        var previous: S.Student? = nil
        for stage in stages(recipe) {
            let dir = out.appendingPathComponent("stage-\(stage.index)-\(stage.name)")
            try FileManager.default.createDirectory(at: dir.appendingPathComponent("previews"), withIntermediateDirectories: true)
            let student = try subject.makeStudent(from: previous)
            var options = recipe.training
            options.steps = stage.steps
            var scheduler = predicting(recipe, teacher: subject.scheduler)
            var previewSteps = [1, 2, recipe.studentSteps].filter { $0 <= recipe.studentSteps }
            let loss: Trainer.Loss
            var target: S.Student? = nil
            // A student that takes the guidance scale as an input sees each sample's drawn scale
            // (as do its EMA target and the frozen student before it); nil: the scale is baked in.
            func drawGuidance(_ n: Int, _ rng: inout RandomGenerator, for models: [S.Student]) -> [Float]? {
                guard let w = subject.guidanceScales(n, recipe: recipe, rng: &rng) else { return nil }
                for m in models { subject.setGuidance(w, on: m) }
                return w
            }
            if stage.name == "guidance" {
                loss = { x0, y, rng in
                    let w = drawGuidance(x0.shape[0], &rng, for: [student])
                    return ctx.guidanceLoss(student, teacher: guidedTeacher(w), x0: x0, labels: y, rng: &rng)
                }
                previewSteps = [recipe.studentSteps, 20]
            } else if recipe.method == .consistency {
                options.emaDecay = recipe.targetDecay
                options.emaMinDecay = recipe.targetDecay
                let t = try subject.makeStudent(from: student)
                t.setTraining(false)
                target = t
                // The ODE solver is the guided teacher itself (stage 1 only gave the student its start).
                let grid = recipe.grid
                loss = { x0, y, rng in
                    let w = drawGuidance(x0.shape[0], &rng, for: [student, t])
                    return ctx.consistencyLoss(student, target: t, teacher: guidedTeacher(w), grid: grid, x0: x0, labels: y, rng: &rng)
                }
                scheduler = studentScheduler(recipe, teacher: subject.scheduler)
            } else {
                let halving = recipe.halvings[stage.index - 1 - (recipe.guidanceSteps > 0 ? 1 : 0)]
                // The first halving learns from the guided teacher itself, the others from the student before.
                let frozen = halving.teacher == recipe.grid ? nil : previous
                frozen?.setTraining(false)
                loss = { x0, y, rng in
                    let w = drawGuidance(x0.shape[0], &rng, for: [student] + (frozen.map { [$0] } ?? []))
                    let solver = frozen.map { ctx.asTeacher(ctx.guided($0, scale: 1)) } ?? guidedTeacher(w)
                    return ctx.progressiveLoss(student, teacher: solver, studentSteps: halving.student, x0: x0, labels: y, rng: &rng)
                }
                scheduler = studentScheduler(recipe, teacher: subject.scheduler)
                previewSteps = [halving.student, halving.teacher]
            }
            // The consistency target is the EMA of the student (the trainer's own): synced before every step.
            let ema = EMABox()
            let trainer = try Trainer(module: student, options: options) { x0, y, rng in
                if let target, let shadow = ema.ema { shadow.copy(to: target.trainableParameters()) }
                return loss(x0, y, &rng)
            }
            ema.ema = trainer.ema
            let isLast = stage.index == stages(recipe).count
            let info = DistillationInfo(recipe, steps: stage.name == "guidance" ? 20 : isLast ? recipe.studentSteps : previewSteps[0])
            let stageScheduler = scheduler
            var stopped = false
            try TrainingRun.run(trainer: trainer, out: dir, previewEvery: recipe.previewEvery == 0 ? Int.max / 2 : recipe.previewEvery,
                                batch: { rng in try subject.batch(b, rng: &rng) }, preview: { step in
                                    for n in previewSteps {
                                        try subject.writePreview(student, scheduler: stageScheduler,
                                                                 sampler: stage.name == "guidance" ? .dpmpp2m : SamplerName.default(for: stageScheduler),
                                                                 steps: n, info: info,
                                                                 to: dir.appendingPathComponent("previews/step-\(step)-\(n)steps"))
                                    }
                                }, export: { try subject.save(student, scheduler: stageScheduler, info: info, to: dir.appendingPathComponent("model")) },
                                onStep: { r in let go = onStep(stage, r); if !go { stopped = true }; return go }, ranks: nil)
            if stopped { throw TrainingInterrupted(stage: stage.name, path: dir.path) }
            try LossPlot.write(csv: dir.appendingPathComponent("loss.csv"), to: dir.appendingPathComponent("loss.png"))
            _ = trainer.swapInEMA()  // what was exported goes on to the next stage
            note("stage \(stage.index) (\(stage.name)): \(trainer.step) steps → \(dir.appendingPathComponent("model").path)")
            previous = student
        }
        guard let student = previous else { throw TrainingRunError(path: out.path, reason: "the recipe has no stage") }
        try subject.save(student, scheduler: studentScheduler(recipe, teacher: subject.scheduler),
                         info: DistillationInfo(recipe, steps: recipe.studentSteps), to: out.appendingPathComponent("model"))
        return student
    }

    /// The trainer's EMA, handed to its loss closure once the trainer exists.
    private final class EMABox { var ema: EMA? }

    /// The shared arithmetic of the three losses: per-sample ᾱ, conversions between the
    /// predictions (the teacher's and the student's parameterizations) and (x₀, ε) with the
    /// teacher's clipping, the weighting.
    public struct Context {
        let schedule: NoiseSchedule
        /// The teacher's prediction type and clipping.
        let param: Parameterization
        /// The student's (and its EMA target's): the teacher's clipping, its own prediction type.
        let studentParam: Parameterization
        let nullLabel: Int?
        let labelDropout: Float
        let weighting: DistillationWeighting

        public init(schedule: NoiseSchedule, param: Parameterization, studentParam: Parameterization? = nil, nullLabel: Int?,
                    labelDropout: Float, weighting: DistillationWeighting) {
            self.schedule = schedule; self.param = param; self.studentParam = studentParam ?? param; self.nullLabel = nullLabel
            self.labelDropout = labelDropout; self.weighting = weighting
        }

        /// A one-evaluation prediction: guided teacher (both halves in one batch) or a student.
        public typealias Predictor = (_ x: Tensor, _ t: [Float], _ labels: [Int]?) -> Tensor

        /// With `interval`, guided only at the samples whose timestep is within it (as sampling
        /// with `Guidance.interval` is); the others get the conditional prediction.
        public func guided(_ model: DiffusionModel, scale: Float, interval: ClosedRange<Float>? = nil) -> Predictor {
            if let interval, scale != 1 {
                return { x, t, labels in guided(model, scales: [Float](repeating: scale, count: x.shape[0]), interval: interval)(x, t, labels) }
            }
            return { x, t, labels in
                guard scale != 1, let h = halves(model, x, t, labels) else { return model.predict(x, timesteps: t, labels: labels) }
                return h.uncond + (h.cond - h.uncond) * scale
            }
        }

        /// The guided teacher at a scale per sample (students that take the scale as an input);
        /// scale 1 (none) at the samples whose timestep is outside `interval`.
        public func guided(_ model: DiffusionModel, scales: [Float], interval: ClosedRange<Float>? = nil) -> Predictor {
            { x, t, labels in
                precondition(scales.count == x.shape[0], "\(scales.count) guidance scales for a batch of \(x.shape[0])")
                let w = interval.map { i in zip(scales, t).map { i.contains($1) ? $0 : 1 } } ?? scales
                guard w.contains(where: { $0 != 1 }), let h = halves(model, x, t, labels) else { return model.predict(x, timesteps: t, labels: labels) }
                return h.uncond + (h.cond - h.uncond) * perSample(w, like: x)
            }
        }

        /// The conditional and unconditional predictions in one call (both halves in one batch);
        /// nil without labels or a null label.
        func halves(_ model: DiffusionModel, _ x: Tensor, _ t: [Float], _ labels: [Int]?) -> (cond: Tensor, uncond: Tensor)? {
            guard let labels, let null = nullLabel else { return nil }
            let both = model.predict(Tensor.concat([x, x], axis: 0), timesteps: t + t,
                                     labels: labels + [Int](repeating: null, count: x.shape[0])).chunked(2, axis: 0)
            return (both[0], both[1])
        }

        /// ᾱ at a timestep; 1 at −1 (the end of a DDIM trajectory with `set_alpha_to_one`).
        func alphaBar(_ t: Int) -> Double { t < 0 ? 1 : Double(schedule.alphasCumprodF[t]) }

        /// Per-sample √ᾱ and √(1 − ᾱ), shaped [N, 1, …].
        func coefficients(_ ts: [Int], like x: Tensor) -> (a: Tensor, s: Tensor) {
            let shape = [ts.count] + [Int](repeating: 1, count: x.rank - 1)
            let ab = ts.map(alphaBar)
            return (Tensor(shape: shape, scalars: ab.map { Float($0.squareRoot()) }),
                    Tensor(shape: shape, scalars: ab.map { Float((1 - $0).squareRoot()) }))
        }

        func perSample(_ values: [Float], like x: Tensor) -> Tensor {
            Tensor(shape: [values.count] + [Int](repeating: 1, count: x.rank - 1), scalars: values)
        }

        /// x₀ implied by a prediction of type `p` (unclipped).
        func x0(_ out: Tensor, x: Tensor, a: Tensor, s: Tensor, _ p: PredictionType) -> Tensor {
            switch p {
            case .epsilon: return (x - s * out) / a
            case .vPrediction: return a * x - s * out
            case .sample: return out
            }
        }

        /// The prediction of type `p` whose x₀ and ε are these.
        func prediction(x0: Tensor, epsilon: Tensor, a: Tensor, s: Tensor, _ p: PredictionType) -> Tensor {
            switch p {
            case .epsilon: return epsilon
            case .vPrediction: return a * epsilon - s * x0
            case .sample: return x0
            }
        }

        /// x₀ clipped as the teacher's sampler clips it, and the ε that goes with it (DDIM's way),
        /// from a prediction of type `p` (default: the teacher's).
        func x0AndEpsilon(_ out: Tensor, x: Tensor, a: Tensor, s: Tensor, _ p: PredictionType? = nil) -> (Tensor, Tensor) {
            let x0 = param.clip(self.x0(out, x: x, a: a, s: s, p ?? param.prediction))
            return (x0, (x - a * x0) / s)
        }

        /// The teacher's prediction converted to the student's type (unclipped; itself when they agree).
        public func asStudent(_ out: Tensor, x: Tensor, a: Tensor, s: Tensor) -> Tensor {
            guard studentParam.prediction != param.prediction else { return out }
            let x0 = self.x0(out, x: x, a: a, s: s, param.prediction)
            return prediction(x0: x0, epsilon: (x - a * x0) / s, a: a, s: s, studentParam.prediction)
        }

        /// A student (a frozen one of progressive distillation) predicting as the teacher does.
        public func asTeacher(_ student: @escaping Predictor) -> Predictor {
            guard studentParam.prediction != param.prediction else { return student }
            return { x, t, labels in
                let (a, s) = coefficients(t.map { Int($0) }, like: x)
                let x0 = self.x0(student(x, t, labels), x: x, a: a, s: s, studentParam.prediction)
                return prediction(x0: x0, epsilon: (x - a * x0) / s, a: a, s: s, param.prediction)
            }
        }

        /// Labels with `labelDropout` of them replaced by the null label.
        func dropped(_ labels: [Int]?, _ rng: inout RandomGenerator) -> [Int]? {
            guard let l = labels, labelDropout > 0, let null = nullLabel else { return labels }
            let u = rng.uniform([l.count])
            return (0..<l.count).map { u.data[$0] < labelDropout ? null : l[$0] }
        }

        /// A noised batch at per-sample timesteps `ts`.
        func noised(_ x0: Tensor, _ ts: [Int], _ rng: inout RandomGenerator) -> Tensor {
            let (a, s) = coefficients(ts, like: x0)
            let noise = rng.normal(x0.shape)
            return GradMode.withoutGrad { a * x0 + s * noise }
        }

        func weights(_ ts: [Int], like x: Tensor) -> Tensor {
            perSample(ts.map { t in let ab = alphaBar(t); return weighting.weight(snr: ab / Swift.max(1 - ab, 1e-12)) }, like: x)
        }

        /// Stage 1: the student's prediction against the guided teacher's (in the student's
        /// parameterization), at uniform timesteps.
        func guidanceLoss(_ student: DiffusionModel, teacher: Predictor, x0: Tensor, labels: [Int]?, rng: inout RandomGenerator) -> Tensor {
            let n = x0.shape[0]
            let ts = rng.integers(n, below: schedule.numTrainTimesteps)
            let y = dropped(labels, &rng)
            let xt = noised(x0, ts, &rng)
            let t = ts.map(Float.init)
            let (a, s) = coefficients(ts, like: x0)
            let want = GradMode.withoutGrad { asStudent(teacher(xt, t, y), x: xt, a: a, s: s) }
            return (student.predict(xt, timesteps: t, labels: y) - want).square().mean()
        }

        /// c_skip and c_out of the consistency function at timestep t (σ_d = 0.5, `timestep_scaling` 10).
        public static func boundary(_ t: Int) -> (skip: Float, out: Float) {
            let scaled = Float(Swift.max(t, 0)) * 10
            let d = scaled * scaled + 0.25
            return (0.25 / d, scaled / d.squareRoot())
        }

        /// Consistency distillation on an N-point grid (k = T / N): t = (i + 1) k − 1, t' = max(t − k, 0);
        /// x_{t'} is one DDIM step of the teacher from x_t; the loss is w(t) ‖f_θ(x_t, t) − f_θ⁻(x_{t'}, t')‖².
        func consistencyLoss(_ student: DiffusionModel, target: DiffusionModel, teacher: Predictor, grid: Int, x0: Tensor,
                             labels: [Int]?, rng: inout RandomGenerator) -> Tensor {
            let n = x0.shape[0], k = schedule.numTrainTimesteps / grid
            let ts = rng.integers(n, below: grid).map { ($0 + 1) * k - 1 }
            let prev = ts.map { Swift.max($0 - k, 0) }
            let y = dropped(labels, &rng)
            let xt = noised(x0, ts, &rng)
            let (a, s) = coefficients(ts, like: x0), (ap, sp) = coefficients(prev, like: x0)
            let skip = perSample(ts.map { Self.boundary($0).skip }, like: x0), cout = perSample(ts.map { Self.boundary($0).out }, like: x0)
            let skipP = perSample(prev.map { Self.boundary($0).skip }, like: x0), coutP = perSample(prev.map { Self.boundary($0).out }, like: x0)
            let want: Tensor = GradMode.withoutGrad {
                let (tx0, teps) = x0AndEpsilon(teacher(xt, ts.map(Float.init), y), x: xt, a: a, s: s)
                let xp = ap * tx0 + sp * teps
                let (fx0, _) = x0AndEpsilon(target.predict(xp, timesteps: prev.map(Float.init), labels: y), x: xp, a: ap, s: sp,
                                            studentParam.prediction)
                return skipP * xp + coutP * fx0
            }
            let f = skip * xt + cout * self.x0(student.predict(xt, timesteps: ts.map(Float.init), labels: y), x: xt, a: a, s: s,
                                               studentParam.prediction)
            return ((f - want).square().mean(axes: Array(1..<x0.rank)) * weights(ts, like: x0).reshaped([n])).mean()
        }

        /// The DDIM timesteps of an n-step "trailing" trajectory.
        public func trailing(_ n: Int) -> [Int] {
            TimestepSpacing.trailing.discrete(steps: n, trainSteps: schedule.numTrainTimesteps, offset: 0)
        }

        /// Progressive distillation: from x_t at a step of the student's n-step trajectory (DDIM,
        /// "trailing" timesteps, each step t → t − T/n as diffusers' DDIMScheduler takes it), two
        /// DDIM steps of the teacher (t → t − T/(2n) → t − T/n) give x_{t''}; the target x̃₀ is the x₀
        /// whose single DDIM step lands there: x̃₀ = (x_{t''} − (s''/s) x_t) / (a'' − (s''/s) a) (x̃₀ = x_{t''} at
        /// the end). The loss is w(t) ‖x̂₀_θ − x̃₀‖².
        func progressiveLoss(_ student: DiffusionModel, teacher: Predictor, studentSteps n: Int, x0: Tensor, labels: [Int]?,
                             rng: inout RandomGenerator) -> Tensor {
            let b = x0.shape[0]
            let coarse = trailing(n)
            let idx = rng.integers(b, below: n)
            let ts = idx.map { coarse[$0] }
            let y = dropped(labels, &rng)
            let xt = noised(x0, ts, &rng)
            let want = progressiveTarget(teacher: teacher, studentSteps: n, index: idx, xt: xt, labels: y)
            let (a, s) = coefficients(ts, like: x0)
            let x0s = self.x0(student.predict(xt, timesteps: ts.map(Float.init), labels: y), x: xt, a: a, s: s, studentParam.prediction)
            return ((x0s - want).square().mean(axes: Array(1..<x0.rank)) * weights(ts, like: x0).reshaped([b])).mean()
        }

        /// x̃₀ for samples x_t at steps `index` of the student's n-step trajectory (see `progressiveLoss`).
        public func progressiveTarget(teacher: Predictor, studentSteps n: Int, index idx: [Int], xt: Tensor, labels y: [Int]?) -> Tensor {
            // DDIM's own steps: t → t − T/n (−1: ᾱ = 1), the teacher through t − T/(2n).
            let T = schedule.numTrainTimesteps, coarse = trailing(n)
            let ts = idx.map { coarse[$0] }
            let mid = ts.map { $0 - T / (2 * n) }, next = ts.map { Swift.max($0 - T / n, -1) }
            let (a, s) = coefficients(ts, like: xt), (am, sm) = coefficients(mid, like: xt), (an, sn) = coefficients(next, like: xt)
            return GradMode.withoutGrad {
                let (x0a, ea) = x0AndEpsilon(teacher(xt, ts.map(Float.init), y), x: xt, a: a, s: s)
                let xm = am * x0a + sm * ea
                let (x0b, eb) = x0AndEpsilon(teacher(xm, mid.map(Float.init), y), x: xm, a: am, s: sm)
                let xn = an * x0b + sn * eb
                let ratio = sn / s
                return (xn - ratio * xt) / (an - ratio * a)
            }
        }
    }
}
