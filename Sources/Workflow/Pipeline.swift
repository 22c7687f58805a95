import Foundation
import Tensor
import NN
import Diffusion

/// A trained model of modality `M` as a diffusers pipeline folder (`PipelineFolder`'s layout):
///
///     model_index.json        M.pipelineClass, the unet's and scheduler's classes
///     unet/                   the model folder (`FolderModel`)
///     scheduler/              scheduler_config.json
///     classes.json            (ours) class names by label; the null label is the last embedding
///     distillation.json       (ours, a distilled student's) the guidance baked in, its default steps
///     sampling.json           (ours, optional) the guidance scale and steps its evaluation chose
///
/// One class for every modality: `ImagePipeline`, `AudioPipeline` and `VideoPipeline` are this
/// with their `Modality`; what is theirs alone (clip lengths, frame masks) is in extensions.
public final class Pipeline<M: Modality> {
    public let unet: M.Model
    public let scheduler: SchedulerConfig
    public let classes: ClassLabels
    /// A distilled student's record: its guidance is baked in, so sampling adds none.
    public let distillation: DistillationInfo?
    /// The folder's own sampling defaults (sampling.json), when it has them.
    public let samplingDefaults: SamplingDefaults?
    /// Autoguidance's weaker model (`Guidance.guide`; `--guide-model`): when set, guidance moves
    /// away from its prediction for the same classes instead of the unconditional one.
    public var guide: M.Model?

    public init(unet: M.Model, scheduler: SchedulerConfig, classNames: [String], distillation: DistillationInfo? = nil,
                samplingDefaults: SamplingDefaults? = nil) {
        self.unet = unet
        self.scheduler = scheduler
        classes = ClassLabels(names: classNames, labelCount: unet.labelCount)
        self.distillation = distillation
        self.samplingDefaults = samplingDefaults
    }

    /// The sampling steps when none are asked for: a student's own count, else the folder's
    /// sampling.json, else 20.
    public var defaultSteps: Int { distillation?.steps ?? samplingDefaults?.steps ?? 20 }
    /// The guidance scale when none is asked for: a student's baked-in scale, else the folder's
    /// sampling.json, else `ClassLabels.defaultGuidance`.
    public var defaultGuidance: Float { distillation?.guidanceScale ?? samplingDefaults?.guidanceScale ?? ClassLabels.defaultGuidance }
    /// The timesteps guidance applies at when a request names none: the folder's sampling.json
    /// (none for a student: its guidance is baked in), else every timestep (nil).
    public var defaultGuidanceInterval: ClosedRange<Float>? { distillation == nil ? samplingDefaults?.interval : nil }

    public var classNames: [String] { classes.names }
    /// The label meaning "no class" (classifier-free guidance), when the model was trained with one.
    public var nullLabel: Int? { classes.nullLabel }
    /// A label from what a user typed: a class name wins over an index.
    public func label(_ s: String) -> Int? { classes.label(s) }

    public static func load(_ dir: URL) throws -> Pipeline {
        let unet = try M.Model.load(dir)
        let classes = try ClassLabels.load(dir, labelCount: unet.labelCount)
        return Pipeline(unet: unet, scheduler: try PipelineFolder.scheduler(in: dir), classNames: classes.names,
                        distillation: try DistillationInfo.load(dir), samplingDefaults: try SamplingDefaults.load(dir))
    }

    public func save(to dir: URL, dtype: SafeTensorsDType = .F32) throws {
        try unet.save(to: dir.appendingPathComponent("unet"), dtype: dtype)
        try PipelineFolder.save(to: dir, pipelineClass: M.pipelineClass, unetClass: M.Model.className, scheduler: scheduler,
                                classes: classes)
        if let distillation { try distillation.save(dir) }
        if let samplingDefaults { try samplingDefaults.save(dir) }
    }

    /// Autoguidance by the model folder at `url` (`guide`), which must take this model's sample
    /// shape and labels (an error names the folder otherwise).
    public func guide(by url: URL) throws {
        let weak = try M.Model.load(url)
        func describe(_ m: M.Model) -> String { "\(m.sampleShape) with \(m.labelCount.map { "\($0) labels" } ?? "no labels")" }
        guard weak.labelCount == unet.labelCount, weak.sampleShape == unet.sampleShape else {
            throw ModelFolderError(path: url.path, reason: "cannot guide this model: it takes \(describe(weak)), the model \(describe(unet))")
        }
        guide = weak
    }

    /// The guidance `request` asks for, when this model can give it (classifier-free guidance
    /// needs the null label; autoguidance, with `guide`, does not); none for a student with
    /// guidance baked in (`distillation`).
    public func guidance(for request: SamplingRequest) -> Guidance? {
        if distillation != nil { return nil }
        if let guide {
            guard request.guidance != 1 else { return nil }
            return Guidance(scale: request.guidance, rescale: request.guidanceRescale, nullLabel: classes.nullLabel ?? 0,
                            interval: request.guidanceInterval, guide: guide)
        }
        return classes.guidance(scale: request.guidance, rescale: request.guidanceRescale, interval: request.guidanceInterval,
                                labels: request.conditioning.labels)
    }

    /// `request.count` samples [N, C, …] of `shape` ([C, …]; default: the size the model was
    /// trained at), clamped to [-1, 1] unless `clamp` is false (what `--raw` saves). See
    /// `Generation.batched` for batching and seeds.
    public func generate(_ request: SamplingRequest, shape: [Int]? = nil, clamp: Bool = true,
                         progress: ((Int, Int) -> Bool)? = nil) throws -> Tensor {
        let sampleShape = shape ?? unet.sampleShape
        if let problem = unet.problem(with: [request.count] + sampleShape) {
            throw SamplingRequestError(setting: "size", reason: "a sample of \(sampleShape) \(problem)")
        }
        // One model call's activations (guidance doubles its batch), plus the samples kept.
        let batch = Swift.min(request.count, request.batchSize ?? request.count) * (guidance(for: request) == nil ? 1 : 2)
        let kept = 3 * 4 * Double(request.count) * sampleShape.reduce(1.0) { $0 * Double($1) }
        try MemoryBudget.check(unet.activationBytes([batch] + sampleShape) + kept,
                               "generating \(request.count) sample\(request.count == 1 ? "" : "s") of shape \(sampleShape) in batches of \(batch)")
        let x = try Generation.batched(model: unet, sampleShape: sampleShape, request: request, scheduler: scheduler,
                                       guidance: guidance(for: request), progress: progress)
        return clamp ? GradMode.withoutGrad { x.clamped(min: -1, max: 1) } : x
    }
}

/// A pipeline folder's own sampling defaults (ours: sampling.json, diffusers ignores it): the
/// guidance scale, the timesteps it applies at and the step count its evaluation chose, used
/// when a user asks for none.
///
///     {"guidance_scale": 2, "guidance_interval": [82, 579], "num_inference_steps": 20, "reconstruction_guidance": 2}
public struct SamplingDefaults: PipelineFolderRecord, Equatable, Sendable {
    public var guidanceScale: Float?
    /// The training timesteps [low, high] guidance applies at (`SamplingRequest.guidanceInterval`).
    public var guidanceInterval: [Float]?
    public var steps: Int?
    /// `KnownRegion.reconstructionGuidance` where part of an input is kept (a continuation's frames).
    public var reconstructionGuidance: Float?

    public init(guidanceScale: Float? = nil, guidanceInterval: ClosedRange<Float>? = nil, steps: Int? = nil, reconstructionGuidance: Float? = nil) {
        self.guidanceScale = guidanceScale; self.steps = steps; self.reconstructionGuidance = reconstructionGuidance
        self.guidanceInterval = guidanceInterval.map { [$0.lowerBound, $0.upperBound] }
    }

    enum CodingKeys: String, CodingKey {
        case guidanceScale = "guidance_scale", guidanceInterval = "guidance_interval", steps = "num_inference_steps"
        case reconstructionGuidance = "reconstruction_guidance"
    }

    /// `guidanceInterval` as a range (`problem()` has checked it).
    public var interval: ClosedRange<Float>? { guidanceInterval.flatMap(SamplingRequest.guidanceInterval) }

    public static let fileName = "sampling.json"
    public static let recordName = "sampling.json"

    public func problem() -> String? {
        if let g = guidanceScale, !SamplingRequest.guidanceRange.contains(g) {
            return "guidance_scale must be within \(SamplingRequest.guidanceRange), got \(g)"
        }
        if let i = guidanceInterval, let p = SamplingRequest.guidanceIntervalProblem(i) { return "guidance_interval \(p)" }
        if let s = steps, !SamplingRequest.stepsRange.contains(s) {
            return "num_inference_steps must be within \(SamplingRequest.stepsRange), got \(s)"
        }
        if let w = reconstructionGuidance, !KnownRegion.reconstructionGuidanceRange.contains(w) {
            return "reconstruction_guidance must be within \(KnownRegion.reconstructionGuidanceRange), got \(w)"
        }
        return nil
    }
}
