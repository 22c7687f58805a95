import ArgumentParser
import Foundation
import Tensor
import NN
import Diffusion
import Workflow
import Image
import Audio
import Video

extension DistillationMethod: ExpressibleByArgument {}
extension DistillationWeighting: ExpressibleByArgument {}
extension PredictionType: ExpressibleByArgument {}

struct Distill: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Distil a model into a student that samples in a few steps (consistency or progressive distillation).",
        discussion: """
        The student learns the teacher's guided prediction in one evaluation first (stage 1, \
        --guidance-steps), then to sample in --student-steps steps: --method progressive (the \
        default: halvings from the teacher's --grid DDIM steps down to --student-steps; sampled \
        with DDIM "trailing") or --method consistency (latent consistency models' recipe: an EMA \
        target, one DDIM step of the guided teacher on a --grid point grid; sampled with LCM). \
        The guidance scale is baked in (recorded in distillation.json): the student is sampled \
        without guidance, one model call per step.

        RUN receives recipe.json, one folder per stage (checkpoints/, loss.csv, loss.png, \
        previews/ at the student's step counts, model/) and RUN/model: the student, a diffusers \
        pipeline folder. `diffuse generate MODALITY --model RUN/model` samples it with its own \
        sampler and steps; copied to MODEL-fast beside its teacher it is what `--fast` uses. \
        A killed run resumes with --resume.
        """,
        subcommands: [DistillImage.self, DistillAudio.self, DistillVideo.self]
    )
}

/// What every `distill <modality>` takes.
struct DistillOptions: ParsableArguments {
    @Option(help: "Teacher: a pipeline folder (default: the modality's bundled model).") var teacher: String?
    @Option(help: "Training data (default: the modality's built-in set); labels are matched to the teacher's classes by name.")
    var data: String?
    @Option(help: "Run folder.") var out: String
    @Option(help: "progressive (default; measured best on the image model) or consistency.") var method: DistillationMethod = .progressive
    @Option(help: "Sampling steps the student is made for (default 4).") var studentSteps: Int?
    @Option(help: "Training steps of the consistency stage, or of each progressive halving (default 300).") var steps: Int?
    @Option(help: "Steps of stage 1, learning the guided prediction in one evaluation (default 300; 0 skips it).") var guidanceSteps: Int?
    @Option(help: "Guidance scale baked into the student (default 2, the class models' own default); a text-to-image student's default scale (default 5).")
    var guidance: Float?
    @Option(help: "Text-to-image teachers: the guidance scales LOW,HIGH the student learns to take as an input (default 2,8).")
    var guidanceRange: String?
    @Option(help: ArgumentHelp("The teacher is guided only at training timesteps LOW-HIGH, elsewhere its conditional prediction, as `generate --guidance-interval` samples it (default: the teacher folder's sampling.json, else every timestep; 0,1000 is every timestep).", valueName: "low,high"))
    var guidanceInterval: String?
    @Option(help: "Consistency: timestep grid points (default 50). Progressive: the teacher's DDIM steps to halve from (default 16).")
    var grid: Int?
    @Option(help: "Loss weighting over noise levels: x0, epsilon, min-snr (default) or snr+1 (v's).") var weighting: DistillationWeighting?
    @Option(help: "What the student predicts: epsilon, v_prediction or sample (default: what the teacher predicts). A v-predicting student's x₀ at high noise is not amplified by 1/√ᾱ as an ε-predicting one's is.")
    var studentPrediction: PredictionType?
    @Option(help: "Batch size (default 16).") var batch: Int?
    @Option(help: "Learning rate (default 5e-5 progressive, 5e-6 consistency).") var lr: Float?
    @Option(help: "Steps between preview grids (default 100; 0: none).") var previewEvery: Int?
    @Option(help: "Seed of every draw (batches, timesteps, noise).") var seed: UInt64?
    @Flag(help: "Continue from the run folder's checkpoints.") var resume = false
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if let studentSteps, !(1...64).contains(studentSteps) { throw ValidationError("--student-steps must be between 1 and 64") }
        if let steps, !(1...10_000_000).contains(steps) { throw ValidationError("--steps must be between 1 and 10000000") }
        if let guidanceSteps, !(0...10_000_000).contains(guidanceSteps) { throw ValidationError("--guidance-steps must be between 0 and 10000000") }
        if let guidance, !SamplingRequest.guidanceRange.contains(guidance) { throw ValidationError("--guidance must be between 0 and 50") }
        if let grid, !(1...1000).contains(grid) { throw ValidationError("--grid must be between 1 and 1000") }
        if let batch, !(1...4096).contains(batch) { throw ValidationError("--batch must be between 1 and 4096") }
        if let lr, !(lr > 0 && lr < 1) { throw ValidationError("--lr must be in (0, 1)") }
        if let previewEvery, previewEvery < 0 { throw ValidationError("--preview-every must be 0 or more") }
        _ = try parsedGuidanceInterval()
    }

    /// --guidance-interval as timesteps, or nil.
    func parsedGuidanceInterval() throws -> ClosedRange<Float>? { try SamplingOptions.parseGuidanceInterval(guidanceInterval) }

    /// The recipe of these options on a teacher recorded as `recorded`, with `T` training timesteps.
    func recipe(teacher recorded: String, defaultGuidance: Float, defaultGuidanceInterval: ClosedRange<Float>?,
                trainSteps T: Int) throws -> DistillationRecipe {
        var recipe = DistillationRecipe(teacher: recorded, method: method, guidanceScale: guidance ?? defaultGuidance)
        if let i = try parsedGuidanceInterval() ?? defaultGuidanceInterval, recipe.guidanceScale != 1 {
            recipe.guidanceInterval = [i.lowerBound, i.upperBound]
        }
        if let studentSteps { recipe.studentSteps = studentSteps; if grid == nil, method == .progressive { recipe.grid = 4 * studentSteps } }
        if let steps { recipe.steps = steps }
        if let guidanceSteps { recipe.guidanceSteps = guidanceSteps }
        if let grid { recipe.grid = grid }
        if let weighting { recipe.weighting = weighting }
        if let studentPrediction { recipe.studentPrediction = studentPrediction }
        if let batch { recipe.training.batchSize = batch }
        if let lr { recipe.training.learningRate = lr }
        if let previewEvery { recipe.previewEvery = previewEvery }
        if let seed { recipe.training.seed = seed }
        do { try recipe.validate(trainSteps: T) } catch let e as ConfigError { throw ValidationError("\(e)") }
        return recipe
    }

    /// A progress bar per stage with the loss's running mean.
    func progressBars() -> (Distillation.Stage, TrainingStep) -> Bool {
        var progress: Progress?
        var stageName = ""
        var lossAvg: Float = 0
        return { stage, r in
            if stage.name != stageName {
                progress = Progress(total: stage.steps, label: "\(stage.index) \(stage.name)")
                stageName = stage.name
                lossAvg = 0
            }
            lossAvg = lossAvg == 0 ? r.loss : 0.98 * lossAvg + 0.02 * r.loss
            progress?.update(r.step, status: String(format: "loss %.4g", lossAvg))
            return true
        }
    }

    /// The teacher as its student folder records it: the bundled one as samples/NAME (so a student
    /// bundled beside it names it on any machine), any other by its path.
    func recorded(_ dir: URL, bundled name: String) -> String {
        let path = dir.standardizedFileURL.path
        return path == bundledModel(name)?.standardizedFileURL.path ? "samples/\(name)" : path
    }

    func summary(_ outURL: URL, started: Date, method: DistillationMethod, steps: Int, scheduler: SchedulerConfig,
                 guidance: String, generate: String, teacher dir: URL) {
        let model = outURL.appendingPathComponent("model").path
        print(String(format: "distilled in %.0f s", Date().timeIntervalSince(started)))
        print("student: \(model) (\(method.rawValue), \(steps) steps with \(SamplerName.default(for: scheduler).rawValue), \(guidance))")
        print("  diffuse generate \(generate.replacingOccurrences(of: "MODEL", with: model))")
        print("  for --fast: copy it to \(dir.standardizedFileURL.path)-fast")
        print("stages, loss curves and previews: \(outURL.path)/stage-*/")
    }

    func run<M: Modality>(_ type: M.Type) throws {
        runtime.apply()
        guard let dir = teacher.map({ URL(fileURLWithPath: $0) }) ?? bundledModel(M.name) else {
            throw ModelFolderError(path: "samples/\(M.name)", reason: noBundledModel(M.name, alternative: "--teacher DIR"))
        }
        if guidanceRange != nil { throw ValidationError("--guidance-range is for text-to-image teachers (their student takes the scale as an input); a class model's student has --guidance baked in") }
        let teacherPipeline = try Pipeline<M>.load(dir)
        if let d = teacherPipeline.distillation {
            throw ModelFolderError(path: dir.path, reason: "is itself a distilled student (of \(d.teacher)); distil its teacher instead")
        }
        let recipe = try self.recipe(teacher: teacher == nil ? "samples/\(M.name)" : recorded(dir, bundled: M.name),
                                     defaultGuidance: teacherPipeline.defaultGuidance, defaultGuidanceInterval: teacherPipeline.defaultGuidanceInterval,
                                     trainSteps: try teacherPipeline.scheduler.noiseSchedule().numTrainTimesteps)
        let spec = data ?? M.builtinData
        let shaped = Recipe<M>(model: teacherPipeline.unet.config, scheduler: teacherPipeline.scheduler, training: TrainerOptions())
        let set = try M.loadData(spec, for: shaped, fitting: false, note: { print($0) })
        print("teacher \(dir.path): \(teacherPipeline.classNames.count) classes; data \(spec): \(set.count) items")
        let outURL = URL(fileURLWithPath: out)
        let started = Date()
        let student = try Distillation.run(recipe: recipe, teacher: teacherPipeline, data: set, out: outURL, resume: resume,
                                           note: { print($0) }, onStep: progressBars())
        summary(outURL, started: started, method: recipe.method, steps: student.defaultSteps, scheduler: student.scheduler,
                guidance: "guidance \(recipe.guidanceScale) baked in" + (recipe.guidanceInterval.map { " (the teacher's, at timesteps \(Int($0[0]))–\(Int($0[1])))" } ?? ""), generate: "\(M.name) --model MODEL", teacher: dir)
    }

    /// A Stable Diffusion pipeline teacher: its student takes the guidance scale as an input.
    func runTextToImage(_ dir: URL) throws {
        runtime.apply()
        guard let data else {
            throw ValidationError("a text-to-image teacher learns from captioned images: give --data DIR (a folder with metadata.jsonl, e.g. `diffuse dataset emoji --out emoji/`)")
        }
        let pipe = try StableDiffusionPipeline.load(dir)
        if let d = pipe.distillation {
            throw ModelFolderError(path: dir.path, reason: "is itself a distilled student (of \(d.teacher)); distil its teacher instead")
        }
        var recipe = try self.recipe(teacher: recorded(dir, bundled: "text-to-image"), defaultGuidance: TextToImageDistillation.defaultGuidance,
                                     defaultGuidanceInterval: pipe.defaultGuidanceInterval,
                                     trainSteps: try pipe.scheduler.noiseSchedule().numTrainTimesteps)
        recipe.guidanceRange = try guidanceRange.map(parseGuidanceRange) ?? TextToImageDistillation.defaultGuidanceRange
        do { try recipe.validate(trainSteps: nil) } catch let e as ConfigError { throw ValidationError("\(e)") }
        let s = pipe.defaultSize
        let folder = try CaptionedImageFolder(URL(fileURLWithPath: data), size: (s, s))
        let (images, captions) = try folder.loadAll()
        print("teacher \(dir.path): text-to-image, \(s)×\(s); data \(data): \(folder.count) captioned images")
        let outURL = URL(fileURLWithPath: out)
        let started = Date()
        let student = try TextToImageDistillation.run(recipe: recipe, teacher: pipe, images: images, captions: captions, out: outURL,
                                                      resume: resume, note: { print($0) }, onStep: progressBars())
        let g = recipe.guidanceRange!
        summary(outURL, started: started, method: recipe.method, steps: student.defaultSteps, scheduler: student.scheduler,
                guidance: "takes --guidance \(g[0])-\(g[1]), default \(recipe.guidanceScale)",
                generate: "image --model MODEL --prompt \"...\"", teacher: dir)
    }

    /// "LO,HI" → [LO, HI].
    func parseGuidanceRange(_ text: String) throws -> [Float] {
        let parts = text.split(separator: ",").map { Float($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count == 2, let lo = parts[0], let hi = parts[1], lo >= 1, lo <= hi, hi <= 50 else {
            throw ValidationError("--guidance-range must be LOW,HIGH with 1 ≤ LOW ≤ HIGH ≤ 50, e.g. 2,8; got \(text)")
        }
        return [lo, hi]
    }
}

struct DistillImage: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Distil an image model (default: the bundled Fashion-MNIST model), or a text-to-image pipeline.",
        discussion: """
        A text-to-image teacher (--teacher a Stable Diffusion pipeline folder, e.g. samples/text-to-image) \
        learns from --data DIR, a captioned folder (`diffuse dataset emoji --out DIR`). Its student \
        takes the guidance scale as an input (the unet gains diffusers' `time_cond_proj_dim`, as LCM's \
        do): each training sample draws a scale from --guidance-range, and `generate --prompt` on the \
        student still takes --guidance, at one model call per step.
        """)
    @OptionGroup var options: DistillOptions
    func run() throws {
        if let t = options.teacher, StableDiffusionPipeline.isPipelineFolder(URL(fileURLWithPath: t)) {
            return try options.runTextToImage(URL(fileURLWithPath: t))
        }
        try options.run(ImageModality.self)
    }
}

struct DistillAudio: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "audio", abstract: "Distil an audio model (default: the bundled notes model).")
    @OptionGroup var options: DistillOptions
    func run() throws { try options.run(AudioModality.self) }
}

struct DistillVideo: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "video", abstract: "Distil a video model (default: the bundled moving-fashion model).")
    @OptionGroup var options: DistillOptions
    func run() throws { try options.run(VideoModality.self) }
}
