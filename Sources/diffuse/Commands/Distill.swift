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
    @Option(help: "Guidance scale baked into the student (default 2, the class models' own default).") var guidance: Float?
    @Option(help: "Consistency: timestep grid points (default 50). Progressive: the teacher's DDIM steps to halve from (default 16).")
    var grid: Int?
    @Option(help: "Loss weighting over noise levels: x0, epsilon or min-snr (default).") var weighting: DistillationWeighting?
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
    }

    func run<M: Modality>(_ type: M.Type) throws {
        runtime.apply()
        guard let dir = teacher.map({ URL(fileURLWithPath: $0) }) ?? bundledModel(M.name) else {
            throw ModelFolderError(path: "samples/\(M.name)", reason: noBundledModel(M.name, alternative: "--teacher DIR"))
        }
        let teacherPipeline = try Pipeline<M>.load(dir)
        if let d = teacherPipeline.distillation {
            throw ModelFolderError(path: dir.path, reason: "is itself a distilled student (of \(d.teacher)); distil its teacher instead")
        }
        // The bundled teacher is recorded as samples/NAME, so a student bundled beside it names it on any machine.
        let recorded = teacher == nil ? "samples/\(M.name)" : dir.standardizedFileURL.path
        var recipe = DistillationRecipe(teacher: recorded, method: method, guidanceScale: guidance ?? ClassLabels.defaultGuidance)
        if let studentSteps { recipe.studentSteps = studentSteps; if grid == nil, method == .progressive { recipe.grid = 4 * studentSteps } }
        if let steps { recipe.steps = steps }
        if let guidanceSteps { recipe.guidanceSteps = guidanceSteps }
        if let grid { recipe.grid = grid }
        if let weighting { recipe.weighting = weighting }
        if let batch { recipe.training.batchSize = batch }
        if let lr { recipe.training.learningRate = lr }
        if let previewEvery { recipe.previewEvery = previewEvery }
        if let seed { recipe.training.seed = seed }
        do { try recipe.validate(trainSteps: try teacherPipeline.scheduler.noiseSchedule().numTrainTimesteps) } catch let e as ConfigError {
            throw ValidationError("\(e)")
        }
        let spec = data ?? M.builtinData
        let shaped = Recipe<M>(model: teacherPipeline.unet.config, scheduler: teacherPipeline.scheduler, training: TrainerOptions())
        let set = try M.loadData(spec, for: shaped, fitting: false, note: { print($0) })
        print("teacher \(dir.path): \(teacherPipeline.classNames.count) classes; data \(spec): \(set.count) items")
        let outURL = URL(fileURLWithPath: out)
        var progress: Progress?
        var stageName = ""
        var lossAvg: Float = 0
        let started = Date()
        let student = try Distillation.run(recipe: recipe, teacher: teacherPipeline, data: set, out: outURL, resume: resume,
                                           note: { print($0) }) { stage, r in
            if stage.name != stageName {
                progress = Progress(total: stage.steps, label: "\(stage.index) \(stage.name)")
                stageName = stage.name
                lossAvg = 0
            }
            lossAvg = lossAvg == 0 ? r.loss : 0.98 * lossAvg + 0.02 * r.loss
            progress?.update(r.step, status: String(format: "loss %.4g", lossAvg))
            return true
        }
        let model = outURL.appendingPathComponent("model").path
        print(String(format: "distilled in %.0f s", Date().timeIntervalSince(started)))
        print("student: \(model) (\(recipe.method.rawValue), \(student.defaultSteps) steps with \(SamplerName.default(for: student.scheduler).rawValue), guidance \(recipe.guidanceScale) baked in)")
        print("  diffuse generate \(M.name) --model \(model)")
        print("  for --fast: copy it to \(dir.standardizedFileURL.path)-fast")
        print("stages, loss curves and previews: \(outURL.path)/stage-*/")
    }
}

struct DistillImage: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "image", abstract: "Distil an image model (default: the bundled Fashion-MNIST model).")
    @OptionGroup var options: DistillOptions
    func run() throws { try options.run(ImageModality.self) }
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
