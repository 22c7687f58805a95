import Foundation
import Tensor
import NN
import Diffusion
import Text
import Workflow

/// What a prompt-driven generation asks for: one prompt per sample, a negative prompt (the
/// "unconditional" side of classifier-free guidance; empty = diffusers' default ""), and CLIP
/// skip (diffusers' `clip_skip`: 1 conditions on the penultimate layer through the final norm).
public struct PromptConditioning: Sendable, Equatable {
    public var prompts: [String]
    public var negativePrompt: String
    public var clipSkip: Int?

    public init(prompts: [String], negativePrompt: String = "", clipSkip: Int? = nil) {
        self.prompts = prompts; self.negativePrompt = negativePrompt; self.clipSkip = clipSkip
    }
}

/// The Stable Diffusion family (1.x, 2.x) as diffusers' `StableDiffusionPipeline` folder:
///
///     model_index.json     StableDiffusionPipeline and its parts' classes
///     tokenizer/           vocab.json + merges.txt (or tokenizer.json)
///     text_encoder/        CLIPTextModel
///     unet/                UNet2DConditionModel (4 input channels; 9 for inpainting checkpoints)
///     vae/                 AutoencoderKL
///     scheduler/           scheduler_config.json (PNDM in SD 1.x folders, DDIM/Euler in 2.x)
///
/// A latent model in the shared shape: the denoiser (the conditional U-Net) runs in the VAE's
/// latent space through the same sampling loop as every other model (`Generation.batched`,
/// every sampler, per-sample seeds, batching), and a prompt is one more conditioning — the
/// prompts become rows of a table of text embeddings that the denoiser looks up by "label", the
/// negative prompt being the null label of classifier-free guidance.
public final class StableDiffusionPipeline {
    public let tokenizer: CLIPTokenizer
    public let textEncoder: CLIPTextModel
    public let unet: UNet2DConditionModel
    public let vae: AutoencoderKL
    public let scheduler: SchedulerConfig
    /// A distilled student's record (distillation.json): its default steps and guidance scale.
    public var distillation: DistillationInfo?
    /// The folder's own sampling defaults (sampling.json), when it has them.
    public let samplingDefaults: SamplingDefaults?

    public static let className = "StableDiffusionPipeline"

    /// Wall seconds of the last `generate`'s parts: "text encoder", "denoise" (all steps), "vae decode".
    public private(set) var timings: [(String, Double)] = []

    public init(tokenizer: CLIPTokenizer, textEncoder: CLIPTextModel, unet: UNet2DConditionModel, vae: AutoencoderKL,
                scheduler: SchedulerConfig, distillation: DistillationInfo? = nil, samplingDefaults: SamplingDefaults? = nil) {
        self.tokenizer = tokenizer; self.textEncoder = textEncoder; self.unet = unet; self.vae = vae; self.scheduler = scheduler
        self.distillation = distillation; self.samplingDefaults = samplingDefaults
    }

    /// Whether `dir` is a pipeline folder of this family (its model_index.json names it, or its
    /// unet is a UNet2DConditionModel).
    public static func isPipelineFolder(_ dir: URL) -> Bool {
        guard let d = try? Data(contentsOf: dir.appendingPathComponent("model_index.json")),
              let o = (try? JSONSerialization.jsonObject(with: d)) as? [String: Any] else { return false }
        if let c = o["_class_name"] as? String, c.hasPrefix("StableDiffusion") { return true }
        return ((o["unet"] as? [Any])?.last as? String) == "UNet2DConditionModel"
    }

    /// Whether `url` is a single original-layout checkpoint file (what A1111 and civitai
    /// distribute) rather than a pipeline folder.
    public static func isSingleFile(_ url: URL) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) && !isDir.boolValue
            && ["safetensors", "ckpt", "pt", "pth", "bin"].contains(url.pathExtension.lowercased())
    }

    /// Loads a diffusers pipeline folder (F32/F16/BF16 safetensors), or a single original-layout
    /// `.safetensors` file (SD 1.x/2.x detected from its tensors; configs, scheduler and the
    /// built-in CLIP vocabulary as diffusers' single-file loader takes them; a pickled `.ckpt` is
    /// refused with a hint to convert it). Errors name the file. F16/BF16 weights of the
    /// layers stay 16-bit in memory (SD 1.5 in F16: 2.1 GB instead of 4.3 GB of weights).
    public static func load(_ dir: URL, prediction: StableDiffusionPrediction? = nil) throws -> StableDiffusionPipeline {
        if isSingleFile(dir) { return try loadSingleFile(dir, prediction: prediction) }
        for part in ["tokenizer", "text_encoder", "unet", "vae"] where !FileManager.default.fileExists(atPath: dir.appendingPathComponent(part).path) {
            throw ModelFolderError(path: dir.path, reason: "no \(part)/ folder (a Stable Diffusion pipeline folder has tokenizer/, text_encoder/, unet/, vae/, scheduler/)")
        }
        return StableDiffusionPipeline(tokenizer: try CLIPTokenizer(folder: dir.appendingPathComponent("tokenizer")),
                                       textEncoder: try CLIPTextModel.load(dir.appendingPathComponent("text_encoder"), keepHalf: true),
                                       unet: try UNet2DConditionModel.load(dir.appendingPathComponent("unet"), keepHalf: true),
                                       vae: try AutoencoderKL.load(dir.appendingPathComponent("vae"), keepHalf: true),
                                       scheduler: try PipelineFolder.scheduler(in: dir), distillation: try DistillationInfo.load(dir),
                                       samplingDefaults: try SamplingDefaults.load(dir))
    }

    static func loadSingleFile(_ url: URL, prediction: StableDiffusionPrediction?) throws -> StableDiffusionPipeline {
        let sd = try StableDiffusionCheckpoint.open(url, prediction: prediction)
        let layout = sd.layout
        func decode<T: Decodable>(_ d: [String: JSONValue], _ t: T.Type, _ part: String) throws -> T {
            do { return try JSONDecoder().decode(T.self, from: JSONEncoder().encode(d)) } catch {
                throw ModelFolderError(path: url.path, reason: "the \(part) config inferred from its tensors does not decode: \(error)")
            }
        }
        // Strict loads overwrite every parameter: no random draws first.
        let (unet, vae, text) = try NNInit.skippingRandomInit {
            (try UNet2DConditionModel(config: decode(layout.unetConfig, UNet2DConditionConfig.self, "unet")),
             try AutoencoderKL(config: decode(layout.vaeConfig, AutoencoderKLConfig.self, "vae")),
             try CLIPTextModel(config: decode(layout.textEncoderConfig, CLIPTextConfig.self, "text encoder")))
        }
        try unet.load(from: sd.unet, keepHalf: true)
        try vae.load(from: sd.vae, keepHalf: true)
        try text.load(from: sd.textEncoder, keepHalf: true)
        return StableDiffusionPipeline(tokenizer: try CLIPTokenizer.builtin(padToken: layout.tokenizer.padToken), textEncoder: text,
                                       unet: unet, vae: vae, scheduler: try decode(layout.schedulerConfig, SchedulerConfig.self, "scheduler"))
    }

    /// Writes the pipeline as a diffusers folder `StableDiffusionPipeline.from_pretrained` loads:
    /// model_index.json, tokenizer/, text_encoder/ (transformers' names), unet/, vae/, scheduler/;
    /// weights as `dtype` (F16 for a bundled model). No safety checker or feature extractor.
    public func save(to dir: URL, dtype: SafeTensorsDType = .F32) throws {
        try tokenizer.save(to: dir.appendingPathComponent("tokenizer"))
        try textEncoder.save(to: dir.appendingPathComponent("text_encoder"), dtype: dtype)
        try unet.save(to: dir.appendingPathComponent("unet"), dtype: dtype)
        try vae.save(to: dir.appendingPathComponent("vae"), dtype: dtype)
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("scheduler"), withIntermediateDirectories: true)
        try AtomicFile.write(try scheduler.jsonData(), to: dir.appendingPathComponent("scheduler/scheduler_config.json"))
        let index: [String: JSONValue] = [
            "_class_name": .string("StableDiffusionPipeline"), "_diffusers_version": .string(ConfigWriter.diffusersVersion),
            "tokenizer": .array([.string("transformers"), .string("CLIPTokenizer")]),
            "text_encoder": .array([.string("transformers"), .string("CLIPTextModel")]),
            "unet": .array([.string("diffusers"), .string(UNet2DConditionConfig.className)]),
            "vae": .array([.string("diffusers"), .string(AutoencoderKLConfig.className)]),
            "scheduler": .array([.string("diffusers"), .string(scheduler.className)]),
            "safety_checker": .array([.null, .null]), "feature_extractor": .array([.null, .null]),
            "image_encoder": .array([.null, .null]), "requires_safety_checker": .bool(false),
        ]
        try ConfigFile.write(index, to: dir.appendingPathComponent("model_index.json"))
        if let distillation { try distillation.save(dir) }
        if let samplingDefaults { try samplingDefaults.save(dir) }
    }

    /// Merges LoRA files into the unet and text encoder (`FILE[:SCALE]` each, in order);
    /// returns, per file, the tensors that found no weight (the caller warns: none is dropped
    /// silently). A LoRA for another model is an error naming its file.
    public func applyLoRAs(_ loras: [(path: String, scale: Float)]) throws -> [(String, [String])] {
        guard !loras.isEmpty else { return [] }
        let u = unet.stateDict(), t = textEncoder.stateDict()
        return try loras.map { lora in
            let report = try LoRA.load(URL(fileURLWithPath: lora.path)).merge(unet: u, textEncoder: t, scale: lora.scale)
            return (lora.path, report.unused)
        }
    }

    /// Whether the unet takes the guidance scale as an input (`time_cond_proj_dim`, an
    /// LCM-distilled unet): it is called once per step with w = scale − 1 embedded
    /// (`guidanceScaleEmbedding`), as diffusers' `LatentConsistencyModelPipeline` and
    /// `StableDiffusionPipeline` call it; no classifier-free guidance, no negative prompt.
    public var takesGuidanceScale: Bool { unet.config.timeCondProjDim != nil }

    /// Steps when none are asked for: a distilled student's own, else the folder's sampling.json;
    /// 4 on a folder whose scheduler is LCM's or TCD's (diffusers' `LatentConsistencyModelPipeline`
    /// default), else 20.
    public var defaultSteps: Int {
        if let steps = distillation?.steps ?? samplingDefaults?.steps { return steps }
        switch SchedulerClass(rawValue: scheduler.className) {
        case .lcm?, .tcd?: return 4
        default: return 20
        }
    }

    /// Guidance when none is asked for: a distilled student's own, else the folder's sampling.json;
    /// 8.5 for a unet that takes the scale as an input (diffusers' `LatentConsistencyModelPipeline`
    /// default), else 7.5.
    public var defaultGuidance: Float {
        distillation?.guidanceScale ?? samplingDefaults?.guidanceScale ?? (takesGuidanceScale ? 8.5 : TextToImageJob.defaultGuidance)
    }
    /// The timesteps guidance applies at when none are asked for: the folder's sampling.json
    /// (not a distilled student's), else all.
    public var defaultGuidanceInterval: ClosedRange<Float>? { distillation == nil ? samplingDefaults?.interval : nil }

    /// Pixels per latent pixel (8 for SD).
    public var downFactor: Int { vae.downFactor }
    /// The size the unet was trained at, in pixels (512 for SD 1.x, 768 for SD 2.x-v).
    public var defaultSize: Int { (unet.config.sampleSize?.first ?? 64) * downFactor }

    /// The text embeddings [K, 77, D] of `texts`, one row each.
    public func embed(_ texts: [String], clipSkip: Int? = nil) -> Tensor {
        GradMode.withoutGrad { textEncoder.promptEmbeddings(texts.map { tokenizer($0) }, clipSkip: clipSkip) }
    }

    /// Why a height × width image cannot be made, or nil.
    public func sizeProblem(height: Int, width: Int) -> String? {
        let f = downFactor
        guard height >= f, width >= f, height % f == 0, width % f == 0 else {
            return "\(width)×\(height) is not a multiple of \(f) on each side"
        }
        guard height <= 4096, width <= 4096 else { return "\(width)×\(height) is larger than 4096 on a side" }
        return nil
    }

    /// Images for `request.count` prompts (`prompt.prompts`, one per sample). `request` carries
    /// everything else (sampler, steps, seed, guidance, start latents [N, 4, h, w], an initial
    /// image's latents for image-to-image, a known region for inpainting); its conditioning is
    /// set here. Returns the final latents [N, 4, h, w] and the decoded images [N, 3, H, W] in
    /// the VAE's scale ([-1, 1], not clamped).
    public func generate(_ prompt: PromptConditioning, request given: SamplingRequest, height: Int, width: Int,
                         inpaintingInputs: (mask: Tensor, maskedImageLatents: Tensor)? = nil,
                         progress: ((Int, Int) -> Bool)? = nil) throws -> (latents: Tensor, images: Tensor) {
        if let p = sizeProblem(height: height, width: width) { throw SamplingRequestError(setting: "size", reason: p) }
        guard prompt.prompts.count == given.count else {
            throw SamplingRequestError(setting: "prompts", reason: "\(prompt.prompts.count) prompts for \(given.count) samples")
        }
        if let s = prompt.clipSkip, s < 0 || s >= textEncoder.config.numHiddenLayers {
            throw SamplingRequestError(setting: "clip-skip", reason: "must be within 0-\(textEncoder.config.numHiddenLayers - 1), got \(s)")
        }
        // The table: each distinct prompt once, then the negative prompt (the null label).
        var distinct: [String] = []
        var row: [String: Int] = [:]
        for p in prompt.prompts where row[p] == nil { row[p] = distinct.count; distinct.append(p) }
        // diffusers guides only above 1, and never a unet that takes the guidance scale as an input
        // (`time_cond_proj_dim`: LCM-distilled): that one gets w = scale − 1 embedded beside the timestep.
        let guided = given.guidance > 1 && !takesGuidanceScale
        let clock = ContinuousClock()
        var mark = clock.now
        func lap(_ name: String) {
            let now = clock.now, d = now - mark
            timings.append((name, Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18))
            mark = now
        }
        timings = []
        let table = embed(distinct + (guided ? [prompt.negativePrompt] : []), clipSkip: prompt.clipSkip)
        lap("text encoder")
        let denoiser = PromptTableDenoiser(unet: unet, table: table, extra: inpaintingInputs,
                                           guidanceEmbedding: unet.config.timeCondProjDim.map { guidanceScaleEmbedding([given.guidance - 1], dim: $0) })
        var request = given
        request.conditioning = .labels(prompt.prompts.map { row[$0]! })
        let guidance = guided ? Guidance(scale: given.guidance, rescale: given.guidanceRescale, nullLabel: distinct.count,
                                                interval: given.guidanceInterval) : nil
        let latentShape = [unet.config.outChannels, height / downFactor, width / downFactor]
        let latents = try Generation.batched(model: denoiser, sampleShape: latentShape, request: request, scheduler: scheduler,
                                             guidance: guidance, progress: progress)
        lap("denoise")
        BufferPool.drain()  // the unet's activation buffers: the decoder's shapes differ
        let images = vae.decode(GradMode.withoutGrad { latents * (1 / vae.scalingFactor) })
        lap("vae decode")
        return (latents, images)
    }

    /// Images [N, 3, H, W] in [-1, 1] as the latents the denoiser starts from: the VAE's
    /// posterior sampled with per-sample noise from `seed` (diffusers' `latent_dist.sample`),
    /// times `scalingFactor`.
    public func encodeImages(_ images: Tensor, seed: UInt64, firstSample: Int = 0) -> Tensor {
        let posterior = vae.encode(images)
        var rng = RandomGenerator(seed: seed ^ 0x5EED_1A7E, firstSample: firstSample)
        let noise = rng.normal(posterior.mean.shape)
        return GradMode.withoutGrad { posterior.sample(noise: noise) * vae.scalingFactor }
    }
}

/// The conditional U-Net as the sampling loop sees a class model: "label" k selects row k of
/// a table of text embeddings [K, L, D]. With `extra` (a 9-channel inpainting unet), the mask
/// [1, 1, h, w] and the masked image's latents [1, 4, h, w] are appended to every input's channels.
/// With `guidanceEmbedding` [1, time_cond_proj_dim] (an LCM unet), every sample gets it as `timestepCond`.
final class PromptTableDenoiser: Module, DiffusionModel {
    let unet: UNet2DConditionModel
    let table: Tensor
    let extra: (mask: Tensor, maskedImageLatents: Tensor)?
    /// [1, dim] (every sample) or [N, dim] (one per sample: a distillation batch's drawn scales).
    var guidanceEmbedding: Tensor?

    init(unet: UNet2DConditionModel, table: Tensor, extra: (mask: Tensor, maskedImageLatents: Tensor)?, guidanceEmbedding: Tensor? = nil) {
        self.unet = unet; self.table = table; self.extra = extra; self.guidanceEmbedding = guidanceEmbedding
    }

    func visit(_ v: inout ModuleVisitor) { v("unet", unet) }

    var labelCount: Int? { table.shape[0] }

    func predict(_ x: Tensor, timesteps: [Float], labels: [Int]?) -> Tensor {
        let n = x.shape[0], l = table.shape[1], d = table.shape[2]
        let rows = labels ?? [Int](repeating: 0, count: n)
        // [K, L·D] → rows → [N, L, D]
        let context = table.reshaped([table.shape[0], l * d]).embedding(rows).reshaped([n, l, d])
        var input = x
        if let extra {
            let h = x.shape[2], w = x.shape[3]
            let mask = Tensor.concat([Tensor](repeating: extra.mask, count: n), axis: 0)
            let masked = Tensor.concat([Tensor](repeating: extra.maskedImageLatents, count: n), axis: 0)
            precondition(mask.shape == [n, 1, h, w] && masked.shape == [n, 4, h, w], "inpainting inputs for \(x.shape)")
            input = Tensor.concat([x, mask, masked], axis: 1)
        }
        let cond = guidanceEmbedding.map { e in e.shape[0] == n ? e : Tensor.concat([Tensor](repeating: e, count: n), axis: 0) }
        return unet(input, timesteps: timesteps, encoderHiddenStates: context, timestepCond: cond)
    }
}
