import Foundation
import Tensor
import NN
import Diffusion

/// One text-to-image job as `diffuse generate image --prompt` and `diffuse serve` (txt2img,
/// img2img, the OpenAI images endpoint) describe it: prompt, size, and optionally a picture to
/// start from (image-to-image) and a mask (inpainting). Both run it through `StableDiffusionPipeline.run`.
public struct TextToImageJob {
    /// One prompt for every sample, or one per sample (`--prompt-file` with `--count`).
    public var prompts: [String]
    /// The first prompt (the only one of most jobs).
    public var prompt: String { prompts.first ?? "" }
    public var negativePrompt: String?
    /// Pixels; nil: the model's size.
    public var width: Int?
    public var height: Int?
    public var clipSkip: Int?
    /// Image-to-image: the picture [3, H, W] in [-1, 1], any size (centre-cropped to the output's aspect).
    public var initImage: Tensor?
    /// Inpainting (with `initImage`): [1, H, W], above 0 (white) = regenerate, else keep.
    public var mask: Tensor?
    /// How far `initImage` is noised (default 0.75, diffusers' img2img default).
    public var strength: Float?
    /// With `mask` on a plain (4-channel) unet: `KnownRegion.reconstructionGuidance`; nil: the
    /// folder's `sampling.json` value, else 0.
    public var reconstructionGuidance: Float? = nil

    public init(prompt: String, negativePrompt: String? = nil, width: Int? = nil, height: Int? = nil, clipSkip: Int? = nil,
                initImage: Tensor? = nil, mask: Tensor? = nil, strength: Float? = nil) {
        self.init(prompts: [prompt], negativePrompt: negativePrompt, width: width, height: height, clipSkip: clipSkip,
                  initImage: initImage, mask: mask, strength: strength)
    }

    public init(prompts: [String], negativePrompt: String? = nil, width: Int? = nil, height: Int? = nil, clipSkip: Int? = nil,
                initImage: Tensor? = nil, mask: Tensor? = nil, strength: Float? = nil) {
        precondition(!prompts.isEmpty, "a text-to-image job needs a prompt")
        self.prompts = prompts; self.negativePrompt = negativePrompt; self.width = width; self.height = height
        self.clipSkip = clipSkip; self.initImage = initImage; self.mask = mask; self.strength = strength
    }

    public static let defaultStrength: Float = 0.75
    /// Classifier-free guidance when none is asked for (diffusers' and A1111's 7.5 / 7).
    public static let defaultGuidance: Float = 7.5

    /// The prompt of sample `i`.
    public func prompt(ofSample i: Int) -> String { prompts.count == 1 ? prompts[0] : prompts[i % prompts.count] }

    /// The output size (width, height) on `pipe`.
    public func size(on pipe: StableDiffusionPipeline) -> (width: Int, height: Int) {
        (width ?? pipe.defaultSize, height ?? pipe.defaultSize)
    }
}

extension StableDiffusionPipeline {
    /// What a job made: the final latents [N, 4, h, w], the decoded samples [N, 3, H, W] (not
    /// clamped: what --raw saves) and the images (clamped to [-1, 1]), with the request as run.
    public struct TextToImageResult {
        public var latents: Tensor
        public var samples: Tensor
        public var images: Tensor
        public var request: SamplingRequest
        public var width: Int
        public var height: Int
    }

    /// Runs `job` with `request`'s sampler, steps, seed, guidance, count and start latents (its
    /// conditioning, initial and known are set here): txt2img; img2img with `initImage`; inpainting
    /// with `mask` too (a 9-channel inpainting unet where the folder has one, else the kept latents
    /// blended in at every step).
    public func run(_ job: TextToImageJob, request given: SamplingRequest,
                    progress: ((Int, Int) -> Bool)? = nil) throws -> TextToImageResult {
        let (w, h) = job.size(on: self)
        if let p = sizeProblem(height: h, width: w) { throw SamplingRequestError(setting: "size", reason: p) }
        let count = given.count, f = downFactor
        guard job.prompts.count == 1 || job.prompts.count == count else {
            throw SamplingRequestError(setting: "prompts", reason: "\(job.prompts.count) prompts for \(count) samples: give one, or one per sample")
        }
        var request = given
        var inpainting: (mask: Tensor, maskedImageLatents: Tensor)? = nil
        if let img = job.initImage {
            // [1, 3, H, W] in [-1, 1], centre-cropped to the output's aspect
            let x = Tensor.zeros([1, 3, h, w])
            ImageFolder.cropResize(img, height: h, width: w, into: x.data)
            if let m = job.mask {
                let small = Tensor.zeros([1, 1, h / f, w / f]), full = Tensor.zeros([1, 1, h, w])
                ImageFolder.cropResize(m, height: h / f, width: w / f, into: small.data)
                ImageFolder.cropResize(m, height: h, width: w, into: full.data)
                let latentMask = Tensor(shape: small.shape, scalars: small.scalars.map { $0 > 0 ? 1 : 0 })
                if unet.config.inChannels == 9 {
                    // diffusers' inpainting pipeline: the image with the masked part blacked out, encoded.
                    let keep = Tensor(shape: full.shape, scalars: full.scalars.map { $0 > 0 ? 0 : 1 })
                    let masked = GradMode.withoutGrad { x * keep }
                    inpainting = (latentMask, GradMode.withoutGrad { vae.encode(masked).mode * vae.scalingFactor })
                } else {
                    let x0 = encodeImages(Tensor.concat([Tensor](repeating: x, count: count), axis: 0), seed: request.seed)
                    request.known = KnownRegion(sample: x0, mask: Tensor.concat([Tensor](repeating: latentMask, count: count), axis: 0),
                                                reconstructionGuidance: job.reconstructionGuidance ?? samplingDefaults?.reconstructionGuidance ?? 0)
                }
            } else {
                let x0 = encodeImages(Tensor.concat([Tensor](repeating: x, count: count), axis: 0), seed: request.seed)
                request.initial = (x0, job.strength ?? TextToImageJob.defaultStrength)
            }
        }
        let conditioning = PromptConditioning(prompts: (0..<count).map(job.prompt(ofSample:)),
                                              negativePrompt: job.negativePrompt ?? "", clipSkip: job.clipSkip)
        let (latents, samples) = try generate(conditioning, request: request, height: h, width: w, inpaintingInputs: inpainting,
                                              progress: progress)
        return TextToImageResult(latents: latents, samples: samples, images: GradMode.withoutGrad { samples.clamped(min: -1, max: 1) },
                                 request: request, width: w, height: h)
    }

    /// The settings of sample `i` as A1111 writes them into a PNG's `parameters` text chunk (and
    /// its API's `info`), which other tools read back.
    public static func parameters(_ job: TextToImageJob, _ result: TextToImageResult, sample i: Int,
                                  modelName: String, modelHash: String) -> String {
        let r = result.request
        var p = job.prompt(ofSample: i)
        if let n = job.negativePrompt { p += "\nNegative prompt: \(n)" }
        p += "\nSteps: \(r.steps), Sampler: \(r.sampler?.rawValue ?? "folder"), CFG scale: \(r.guidance), "
            + "Seed: \(r.seed), Sample: \(i), Size: \(result.width)x\(result.height), Model hash: \(modelHash.prefix(10)), Model: \(modelName)"
            + (job.clipSkip.map { ", Clip skip: \($0 + 1)" } ?? "")
            + (job.initImage.map { _ in ", Denoising strength: \(r.initial?.strength ?? 1)" } ?? "")
        return p
    }
}
