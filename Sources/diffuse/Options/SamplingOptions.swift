import ArgumentParser
import Foundation
import Tensor
import NN
import Diffusion
import Workflow

extension SamplerName: ExpressibleByArgument {}
extension NoiseOrder: ExpressibleByArgument {}

/// How samples are drawn: every command that samples (generate image|audio|video, augment)
/// declares these once, with one help text and one range check each (`SamplingRequest`'s ranges).
struct SamplingOptions: ParsableArguments {
    @Option(help: "Sampler (default: the model folder's own when it is lcm or tcd, as a distilled model's is; else dpm++2m).")
    var sampler: SamplerName?
    @Option(help: "Sampling steps (\(SamplingRequest.stepsRange.lowerBound)-\(SamplingRequest.stepsRange.upperBound); default 20, or a distilled student's own count).")
    var steps: Int?
    @Option(help: "Stochasticity of the sampler's steps, 0-1: DDIM's eta (default 0), TCD's gamma (default 0.3); other samplers have none.")
    var eta: Float?
    @Option(name: .customLong("seed"), parsing: .unconditional,
            help: "Seed: the same seed draws the same noise for each sample whatever --batch and --threads are; -1 picks a random one (printed in the summary).")
    var seedArgument: Int64 = 0
    @Option(help: "Noise order: diffuse (default; every sample's own, whatever --batch) or torch (as diffusers draws it on the CPU from torch.Generator().manual_seed(SEED): the same seed gives diffusers' images; all samples in one batch).")
    var rng: NoiseOrder = .diffuse
    @Option(name: [.long, .customLong("cfg-scale")], help: "Classifier-free guidance scale (1 = none; 0-50; default 2 for class models, 7.5 with --prompt).")
    var guidance: Float?
    @Option(help: "Pull the guided prediction's spread back towards the conditional one's (0 = off, 1 = fully; diffusers' guidance_rescale).")
    var guidanceRescale: Float = 0
    @Option(help: ArgumentHelp("Guidance only at training timesteps LOW-HIGH (e.g. 0,600; the trajectory runs from 999 down to 0); elsewhere the conditional prediction alone, in one model call (Kynkäänniemi et al. 2024: guidance at the highest noise costs diversity). Default: the model folder's sampling.json, else every timestep; 0,1000 is every timestep.", valueName: "low,high"))
    var guidanceInterval: String?
    @Option(help: "Samples per model call (default: all at once; augment: 32); the samples do not depend on it.")
    var batch: Int?
    @Option(help: "How far an input (--init, or augment's vary sources) is noised: 0 keeps it, 1 replaces it (default 0.5 everywhere: the input's layout and class survive, its detail is redrawn).")
    var strength: Float?

    /// --strength when not given, for every modality and command: half the schedule. On the bundled
    /// models 0.5 keeps an item's kind, a note's pitch and a clip's motion; 0.6 already turned some
    /// sneakers into other items.
    static let defaultStrength: Float = 0.5

    /// The seed --seed names; -1 is one random seed for the whole process (reported, so the run can be made again).
    var seed: UInt64 { seedArgument < 0 ? Self.randomSeed : UInt64(seedArgument) }
    static let randomSeed = UInt64.random(in: 1...UInt64(Int32.max))

    func validate() throws {
        if seedArgument < -1 { throw ValidationError("--seed must be 0 or more, or -1 for a random seed") }
        if let steps, !SamplingRequest.stepsRange.contains(steps) { throw ValidationError("--steps must be between 1 and 1000") }
        if let guidance, !SamplingRequest.guidanceRange.contains(guidance) { throw ValidationError("--guidance must be between 0 and 50") }
        if !SamplingRequest.guidanceRescaleRange.contains(guidanceRescale) { throw ValidationError("--guidance-rescale must be within 0-1") }
        _ = try parsedGuidanceInterval()
        if let batch, !SamplingRequest.batchRange.contains(batch) { throw ValidationError("--batch must be between 1 and 4096") }
        if let strength, let p = SamplingRequest.strengthProblem(strength) { throw ValidationError("--strength \(p)") }
        if let eta, !SamplingRequest.etaRange.contains(eta) { throw ValidationError("--eta must be within 0-1") }
        if eta != nil, let sampler, ![.ddim, .tcd].contains(sampler) {
            throw ValidationError("--eta applies to --sampler ddim or tcd, not \(sampler.rawValue)")
        }
    }

    /// --guidance-interval as timesteps, or nil.
    func parsedGuidanceInterval() throws -> ClosedRange<Float>? { try Self.parseGuidanceInterval(guidanceInterval) }

    /// A --guidance-interval argument (of any command) as timesteps, or nil.
    static func parseGuidanceInterval(_ given: String?) throws -> ClosedRange<Float>? {
        guard let s = given else { return nil }
        let v = s.split(separator: ",").map { Float($0.trimmingCharacters(in: .whitespaces)) }
        guard v.count == 2, let lo = v[0], let hi = v[1], lo.isFinite, hi.isFinite, lo <= hi else {
            throw ValidationError("--guidance-interval must be two timesteps LOW,HIGH with LOW ≤ HIGH (e.g. 0,600), got '\(s)'")
        }
        if let p = SamplingRequest.guidanceIntervalProblem(lo...hi) { throw ValidationError("--guidance-interval \(p)") }
        return lo...hi
    }

    /// The guidance scale of class models when --guidance is not given.
    static let classGuidance = ClassLabels.defaultGuidance

    /// A request for `count` samples with these settings (--guidance, else `defaultGuidance`;
    /// --guidance-interval, else `defaultGuidanceInterval`, the folder's; --sampler, else the
    /// default for the model folder's `scheduler`).
    func request(count: Int, conditioning: Conditioning, scheduler: SchedulerConfig,
                 defaultGuidance: Float = classGuidance, defaultGuidanceInterval: ClosedRange<Float>? = nil,
                 defaultSteps: Int = 20) throws -> SamplingRequest {
        let chosen = sampler ?? .default(for: scheduler)
        if eta != nil, ![.ddim, .tcd].contains(chosen) {
            throw ValidationError("--eta applies to the ddim and tcd samplers; the model folder's default is \(chosen.rawValue)")
        }
        var r = SamplingRequest(count: count, conditioning: conditioning, sampler: chosen, steps: steps ?? defaultSteps, eta: eta, seed: seed,
                                guidance: guidance ?? defaultGuidance, guidanceRescale: guidanceRescale, batchSize: batch)
        r.guidanceInterval = try parsedGuidanceInterval() ?? (r.guidance == 1 ? nil : defaultGuidanceInterval)
        r.noiseOrder = rng
        r.ranks = MPIRanks.world  // under mpirun, the --batch calls are dealt over the ranks
        return r
    }
}

/// What every `generate` modality shares: the model, the classes and count, the sampling
/// options, start noise and the raw output.
struct GenerateOptions: ParsableArguments {
    @Option(help: "Model: a pipeline folder as `diffuse train` writes it (RUN/model); default: the modality's bundled model in samples/.")
    var model: String?
    @Option(name: .customLong("class"), help: "Class name or index, or a comma-separated list given to the samples in turn (a name wins over an index).")
    var classes: String?
    @Option(help: "Number of samples (default: 8 images, or one clip per --class entry, else 4; with --init and no --class, 1).")
    var count: Int?
    @OptionGroup var sampling: SamplingOptions
    @Option(help: "Starting noise: a safetensors file with key `latents` [N, C, …] (diffusers' `latents`).") var latents: String?
    @Option(help: "Also write the final float samples before quantisation (key `sample`) to this safetensors file.")
    var raw: String?
    @Flag(help: "Sample with the model's distilled few-step student (MODEL-fast beside it, made by `diffuse distill`): its own sampler, steps and baked-in guidance.")
    var fast = false
    @Option(help: "Where part of an input is kept (--keep-frames, --mask, a filled gap): also steer what is generated to agree with it through the model's gradient (reconstruction guidance; 0 = the kept part is only pasted in; about 3× the time). Default: the model folder's sampling.json, else 0.")
    var reconstructionGuidance: Float?
    @Option(help: ArgumentHelp("Autoguidance (Karras et al. 2024): guide away from this weaker model's prediction for the same class instead of the unconditional one, at --guidance's scale (a smaller or shorter-trained model of the same data, same sample shape and classes; needs no null label).", valueName: "MODEL"))
    var guideModel: String?
    @Flag(help: "Print what was written as JSON (files, classes, seed, settings, seconds).") var json = false
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if let count, !SamplingRequest.countRange.contains(count) { throw ValidationError("--count must be between 1 and 10000") }
        if guideModel != nil && fast { throw ValidationError("--guide-model guides a model sampled with guidance; a --fast student has its guidance baked in") }
        if let w = reconstructionGuidance, !KnownRegion.reconstructionGuidanceRange.contains(w) {
            throw ValidationError("--reconstruction-guidance must be between 0 and \(Int(KnownRegion.reconstructionGuidanceRange.upperBound))")
        }
    }

    /// The pipeline of --model, or the bundled one of `M`; with --fast, its distilled student.
    func pipeline<M: Modality>(_ type: M.Type) throws -> (Pipeline<M>, URL) {
        guard var dir = model.map({ URL(fileURLWithPath: $0) }) ?? bundledModel(M.name) else {
            throw ModelFolderError(path: "samples/\(M.name)", reason: noBundledModel(M.name))
        }
        if fast { dir = try studentFolder(of: dir, M.name) }
        let pipeline = try Pipeline<M>.load(dir)
        if let guideModel { try pipeline.guide(by: URL(fileURLWithPath: guideModel)) }
        return (pipeline, dir)
    }

    /// The number of samples: --count, else one per --class entry (`perEntry`), else `fallback`;
    /// one when an input is given without classes (it is varied, not replaced).
    func sampleCount(fallback: Int, perEntry: Bool, hasInput: Bool) -> Int {
        if let count { return count }
        let listed = classes.map { $0.split(separator: ",").count } ?? 0
        if hasInput && listed == 0 { return 1 }
        return perEntry && listed > 0 ? listed : fallback
    }

    /// The request for `count` samples: the labels --class asks for (a list given in turn), every
    /// class in turn when it is left out — or, with an input and no --class, the input's own
    /// content kept unconditioned (the null label, no guidance) instead of another class forced on it.
    /// An input with no --class keeps its own class when its folder or file name names one
    /// (`…/sneaker/x.png`, `0003-sneaker.png`, `60.wav`); else it is varied unconditioned.
    func request<M: Modality>(_ pipeline: Pipeline<M>, model dir: URL, count: Int, input: URL?) throws -> (SamplingRequest, classNote: String?) {
        let chosen: (conditioning: Conditioning, guided: Bool, note: String?)
        do { chosen = try pipeline.classes.conditioning(classes, count: count, input: input) } catch let e as UnknownClass {
            throw ValidationError("--class \(e)")
        } catch is UnconditionalModel {
            throw ModelFolderError(path: dir.path, reason: "the model is unconditional: drop --class")
        }
        if let d = pipeline.distillation, let g = sampling.guidance, g != d.guidanceScale {
            throw ValidationError("--guidance: \(dir.path) is a distilled student with guidance \(d.guidanceScale) baked in; leave --guidance out (or use its teacher, \(d.teacher))")
        }
        var r = try sampling.request(count: count, conditioning: chosen.conditioning, scheduler: pipeline.scheduler,
                                     defaultGuidance: pipeline.defaultGuidance, defaultGuidanceInterval: pipeline.defaultGuidanceInterval,
                                     defaultSteps: pipeline.defaultSteps)
        if let d = pipeline.distillation { r.guidance = d.guidanceScale }  // recorded; the model applies it
        if !chosen.guided { r.guidance = 1; r.guidanceInterval = nil }
        return (r, chosen.note)
    }

    /// The reconstruction-guidance weight when part of an input is kept: --reconstruction-guidance,
    /// else the folder's sampling.json, else 0. Asked for with nothing kept, it is an error.
    func reconstructionWeight(kept: Bool, folder: SamplingDefaults?) throws -> Float {
        guard kept else {
            if reconstructionGuidance != nil {
                throw ValidationError("--reconstruction-guidance applies where part of an input is kept (--keep-frames, --mask, a filled gap)")
            }
            return 0
        }
        return reconstructionGuidance ?? folder?.reconstructionGuidance ?? 0
    }

    /// Runs `request` (its kept part's reconstruction-guidance weight resolved, start noise from
    /// --latents) with a progress bar, writes --raw, and returns the samples clamped to [-1, 1];
    /// `request` is left as it ran, for the summary.
    func generate<M: Modality>(_ pipeline: Pipeline<M>, _ r: inout SamplingRequest, shape: [Int]? = nil,
                               finish: (Tensor) -> Tensor = { $0 }) throws -> Tensor {
        let weight = try reconstructionWeight(kept: r.known != nil, folder: pipeline.samplingDefaults)
        r.known?.reconstructionGuidance = weight
        if let latents {
            r.start = try Generation.startNoise(from: URL(fileURLWithPath: latents), shape: [r.count] + (shape ?? pipeline.unet.sampleShape))
        }
        let samples = finish(try pipeline.generate(r, shape: shape, clamp: false, progress: Progress.steps(label: "generate")))
        if let raw { try SafeTensors.write(["sample": samples], to: URL(fileURLWithPath: raw)) }
        return GradMode.withoutGrad { samples.clamped(min: -1, max: 1) }
    }

    /// A sample's file name: its number and class (`0003-sneaker.png`; no class for the null
    /// label), or after the input it was made from (`photo-0000.png`).
    func fileName<M: Modality>(_ i: Int, _ request: SamplingRequest, _ pipeline: Pipeline<M>, ext: String, input: URL? = nil) -> String {
        let number = String(format: "%04d", i)
        if let input { return "\(input.deletingPathExtension().lastPathComponent)-\(number).\(ext)" }
        guard let l = request.conditioning.labels?[i], l != pipeline.nullLabel else { return "\(number).\(ext)" }
        return "\(number)-\(pipeline.classes.name(l)).\(ext)"
    }

    /// The class names of the samples in order (nil: unconditional or the null label throughout).
    func classNames<M: Modality>(_ request: SamplingRequest, _ pipeline: Pipeline<M>) -> [String]? {
        guard let labels = request.conditioning.labels, labels.contains(where: { $0 != pipeline.nullLabel }) else { return nil }
        return labels.map { $0 == pipeline.nullLabel ? "(none)" : pipeline.classes.name($0) }
    }
}

/// What a user sees when no bundled model is found: where it was looked for and what to do.
func noBundledModel(_ modality: String, alternative: String = "--model RUN/model") -> String {
    "no bundled \(modality) model found (looked in $DIFFUSE_SAMPLES/\(modality), share/diffuse/\(modality) beside the executable's folder, "
        + "and samples/\(modality) beside the executable and in the working folder): set DIFFUSE_SAMPLES to the samples/ folder "
        + "of a checkout, install with `make install`, or pass \(alternative)"
}

/// The distilled student of model folder `dir` (`--fast`), or an error saying how to make one.
func studentFolder(of dir: URL, _ modality: String, data: String = "") throws -> URL {
    if let s = BundledModels.student(of: dir) { return s }
    let d = dir.standardizedFileURL
    throw ModelFolderError(path: d.path, reason: "--fast: no distilled student beside it (\(d.lastPathComponent)-fast/ with distillation.json); make one with `diffuse distill \(modality) --teacher \(d.path)\(data) --out RUN` and copy RUN/model to \(d.path)-fast")
}

/// Where bundled models live (`BundledModels`).
func bundledModel(_ modality: String) -> URL? { BundledModels.folder(modality) }
