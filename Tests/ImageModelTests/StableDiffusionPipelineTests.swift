import XCTest
import Foundation
import Tensor
import NN
import Diffusion
import Image
import Text
import Workflow
import TestSupport

/// Whole text-to-image pipelines against diffusers' StableDiffusionPipeline (goldens from
/// Tests/References/make_sd_pipeline_goldens.py): a tiny random SD1-shaped folder, the same start
/// latents, five calls (samplers, guidance 1 and 7.5, negative prompts, non-square sizes, clip skip,
/// a prompt past 77 tokens). The text embeddings within 1e-5; the final latents and the decoded
/// images within 1e-4 of their scale.
final class StableDiffusionPipelineTests: XCTestCase {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Goldens/sd-pipeline")
    static let pipeline = Result { try StableDiffusionPipeline.load(dir.appendingPathComponent("tiny")) }

    struct Call: Decodable {
        var prompts: [String]
        var negative_prompt: String?
        var guidance: Float
        var sampler: String
        var steps: Int
        var height: Int
        var width: Int
        var clip_skip: Int?
        var seed: UInt64?
        /// LCM cases ("lcm" or "sd"): start latents and step noise drawn from `seed` in torch's order.
        var pipeline: String?
        var eta: Float?
    }

    /// The tiny pipeline with the LCM unet (`time_cond_proj_dim` 32) and LCMScheduler's config of tiny-lcm/.
    static let lcmPipeline = Result {
        let tiny = try pipeline.get(), lcm = dir.appendingPathComponent("tiny-lcm")
        return StableDiffusionPipeline(tokenizer: tiny.tokenizer, textEncoder: tiny.textEncoder,
                                       unet: try UNet2DConditionModel.load(lcm.appendingPathComponent("unet"), keepHalf: true),
                                       vae: tiny.vae, scheduler: try PipelineFolder.scheduler(in: lcm))
    }

    func check(_ name: String, lcm: Bool = false, file: StaticString = #filePath, line: UInt = #line) throws {
        let pipe = try (lcm ? Self.lcmPipeline : Self.pipeline).get()
        let golden = try SafeTensorsFile(url: Self.dir.appendingPathComponent(name + ".safetensors"))
        let call = try JSONDecoder().decode(Call.self, from: Data(golden.metadata["call"]!.utf8))
        let prompt = PromptConditioning(prompts: call.prompts, negativePrompt: call.negative_prompt ?? "", clipSkip: call.clip_skip)
        assertClose(pipe.embed(call.prompts, clipSkip: call.clip_skip), try golden.tensor("prompt_embeds"), atol: 1e-5, rtol: 0,
                    "\(name) prompt embeddings", file: file, line: line)
        var request = SamplingRequest(count: call.prompts.count, sampler: SamplerName(rawValue: call.sampler), steps: call.steps,
                                      eta: call.eta, seed: call.pipeline == nil ? 0 : call.seed ?? 0, guidance: call.guidance,
                                      start: call.pipeline == nil ? try golden.tensor("latents") : nil)
        if call.pipeline != nil { request.noiseOrder = .torch }
        let (latents, images) = try pipe.generate(prompt, request: request, height: call.height, width: call.width)
        for (got, key) in [(latents, "output_latents"), (images, "sample")] {
            let want = try golden.tensor(key)
            XCTAssertEqual(got.shape, want.shape, "\(name) \(key)", file: file, line: line)
            let scale = want.scalars.map(abs).max() ?? 1
            var worst: Float = 0
            for i in 0..<want.scalars.count { worst = Swift.max(worst, abs(got.data[i] - want.data[i])) }
            print("SD pipeline \(name) \(key): max abs error \(worst) (scale \(scale))")
            XCTAssertLessThanOrEqual(worst, 1e-4 * scale, "\(name) \(key)", file: file, line: line)
        }
    }

    func testEulerGuided() throws { try check("apple-euler") }
    func testDPMSolverNegativePromptNonSquare() throws { try check("cat-dpm-negative-wide") }
    func testTwoPromptsUnguidedOnTheFoldersPNDM() throws { try check("two-prompts-unguided-pndm") }
    func testDDIMWithClipSkip() throws { try check("ddim-clip-skip") }
    func testKarrasSigmasAndAPromptPast77Tokens() throws { try check("karras-long-prompt") }
    /// An LCM-distilled unet takes the guidance scale as an input: diffusers' LatentConsistencyModelPipeline.
    func testLCMUnetTakesTheGuidanceScaleAsInput() throws { try check("lcm-4steps", lcm: true) }
    /// The same unet in StableDiffusionPipeline with TCD (eta 0.3): no classifier-free guidance, the negative prompt unused.
    func testLCMUnetWithTCDIgnoresTheNegativePrompt() throws { try check("lcm-tcd-sd-pipeline", lcm: true) }

    func testLCMUnetDefaults() throws {
        let lcm = try Self.lcmPipeline.get(), plain = try Self.pipeline.get()
        XCTAssertTrue(lcm.takesGuidanceScale)
        XCTAssertFalse(plain.takesGuidanceScale)
        XCTAssertEqual(lcm.defaultSteps, 4)
        XCTAssertEqual(lcm.defaultGuidance, 8.5)
        XCTAssertEqual(plain.defaultSteps, 20)
        XCTAssertEqual(plain.defaultGuidance, 7.5)
        XCTAssertEqual(SamplerName.default(for: lcm.scheduler), .lcm)
        // A guidance embedding of width 2 or 3 is undefined (diffusers divides by zero): refused with the key.
        for (dim, ok) in [(1, true), (2, false), (3, false), (4, true)] {
            var c = lcm.unet.config
            c.timeCondProjDim = dim
            let json = try JSONEncoder().encode(c)
            XCTAssertEqual((try? JSONDecoder().decode(UNet2DConditionConfig.self, from: json)) != nil, ok, "time_cond_proj_dim \(dim)")
        }
    }

    /// A text-to-image folder's sampling.json sets its defaults as it does for the class models',
    /// survives a save, and a bad one is an error naming the file.
    func testAFoldersSamplingJSONSetsItsDefaults() throws {
        let plain = try Self.pipeline.get()
        let tmp = try TemporaryFolder()
        let tuned = StableDiffusionPipeline(tokenizer: plain.tokenizer, textEncoder: plain.textEncoder, unet: plain.unet, vae: plain.vae,
                                            scheduler: plain.scheduler, samplingDefaults: SamplingDefaults(guidanceScale: 3.5, steps: 9))
        try tuned.save(to: tmp.url)
        let loaded = try StableDiffusionPipeline.load(tmp.url)
        XCTAssertEqual(loaded.samplingDefaults, SamplingDefaults(guidanceScale: 3.5, steps: 9))
        XCTAssertEqual(loaded.defaultGuidance, 3.5)
        XCTAssertEqual(loaded.defaultSteps, 9)
        try Data(#"{"num_inference_steps": 0}"#.utf8).write(to: tmp.url.appendingPathComponent("sampling.json"))
        XCTAssertThrowsError(try StableDiffusionPipeline.load(tmp.url)) { error in
            XCTAssert("\(error)".contains("sampling.json") && "\(error)".contains("num_inference_steps"), "\(error)")
        }
    }

    /// An F16 pipeline folder (the tiny golden one is F16) keeps its layer weights 16-bit in
    /// memory, and makes exactly the images the same weights make loaded as Float32.
    func testF16FolderStaysHalfAndMatchesFloatWeights() throws {
        let dir = Self.dir.appendingPathComponent("tiny")
        let half = try Self.pipeline.get()
        let f32 = StableDiffusionPipeline(tokenizer: half.tokenizer,
                                          textEncoder: try CLIPTextModel.load(dir.appendingPathComponent("text_encoder")),
                                          unet: try UNet2DConditionModel.load(dir.appendingPathComponent("unet")),
                                          vae: try AutoencoderKL.load(dir.appendingPathComponent("vae")), scheduler: half.scheduler)
        XCTAssertEqual(half.unet.stateDict()["conv_in.weight"]?.halfFormat, .f16)
        XCTAssertNil(half.unet.stateDict()["conv_in.bias"]?.halfFormat)
        XCTAssertNil(f32.unet.stateDict()["conv_in.weight"]?.halfFormat)
        XCTAssertEqual(half.textEncoder.namedParameters().first { $0.name.hasSuffix("q_proj.weight") }?.tensor.halfFormat, .f16)
        // 98 % of this tiny unet's scalars are layer weights; the rest (norms, biases) stay Float32.
        XCTAssertLessThan(half.unet.parameterBytes, f32.unet.parameterBytes * 52 / 100)
        let request = SamplingRequest(count: 1, sampler: .eulerAncestral, steps: 3, seed: 5, guidance: 4)
        let prompt = PromptConditioning(prompts: ["a red apple"], negativePrompt: "blurry")
        let a = try f32.generate(prompt, request: request, height: 64, width: 48)
        let b = try half.generate(prompt, request: request, height: 64, width: 48)
        XCTAssertEqual(a.images.scalars, b.images.scalars)
        XCTAssertEqual(a.latents.scalars, b.latents.scalars)
    }

    func testBadRequestsAreErrors() throws {
        let pipe = try Self.pipeline.get()
        let request = SamplingRequest(count: 1, steps: 2)
        XCTAssertThrowsError(try pipe.generate(PromptConditioning(prompts: ["a"]), request: request, height: 60, width: 64))
        XCTAssertThrowsError(try pipe.generate(PromptConditioning(prompts: ["a", "b"]), request: request, height: 64, width: 64))
        XCTAssertThrowsError(try pipe.generate(PromptConditioning(prompts: ["a"], clipSkip: 3), request: request, height: 64, width: 64))
    }
}
