import XCTest
import Foundation
import Tensor
import NN
import Diffusion
import Text
import Image
import TestSupport

/// Training a Stable Diffusion pipeline from scratch (`TextToImageTraining`) on a toy captioned
/// set: both stages learn, a killed run resumes to the same weights, and the exported folder is
/// an ordinary pipeline that loads and generates.
final class TextToImageTrainingTests: XCTestCase {
    /// 16×16 images of a coloured square in one of four colours, captioned by colour.
    static func toyData() -> (images: Tensor, captions: [String]) {
        let colours: [(String, [Float])] = [("red", [1, -1, -1]), ("green", [-1, 1, -1]), ("blue", [-1, -1, 1]), ("yellow", [1, 1, -1])]
        var pixels: [Float] = [], captions: [String] = []
        for i in 0..<16 {
            let (name, rgb) = colours[i % 4]
            let x0 = 2 + (i / 4) * 2
            for c in 0..<3 {
                for y in 0..<16 {
                    for x in 0..<16 { pixels.append((x0..<(x0 + 8)).contains(x) && (4..<12).contains(y) ? rgb[c] : 1) }
                }
            }
            captions.append("\(name) square")
        }
        return (Tensor(shape: [16, 3, 16, 16], scalars: pixels), captions)
    }

    static func tinyRecipe(vaeSteps: Int = 30, steps: Int = 30) -> TextToImageRecipe {
        var r = TextToImageRecipe.emoji()
        r.vae.blockOutChannels = [16, 16]
        r.vae.downBlockTypes = [.downEncoderBlock2D, .downEncoderBlock2D]
        r.vae.upBlockTypes = [.upDecoderBlock2D, .upDecoderBlock2D]
        r.vae.normNumGroups = 8
        r.vae.sampleSize = [16, 16]
        r.textEncoder.hiddenSize = 32
        r.textEncoder.intermediateSize = 64
        r.textEncoder.numHiddenLayers = 1
        r.textEncoder.numAttentionHeads = 2
        r.textEncoder.maxPositionEmbeddings = 8
        r.unet.sampleSize = [8, 8]
        r.unet.blockOutChannels = [32, 32]
        r.unet.downBlockTypes = [.crossAttnDownBlock2D, .downBlock2D]
        r.unet.upBlockTypes = [.upBlock2D, .crossAttnUpBlock2D]
        r.unet.crossAttentionDim = .all(32)
        r.unet.attentionHeadDim = .all(2)
        r.unet.normNumGroups = 8
        r.vaeTraining.steps = vaeSteps; r.vaeTraining.batchSize = 8; r.vaeTraining.warmupSteps = 5
        r.vaeTraining.learningRate = 2e-3; r.vaeTraining.checkpointEvery = 10
        r.vaeDecoderTraining.steps = 10; r.vaeDecoderTraining.batchSize = 8; r.vaeDecoderTraining.warmupSteps = 2
        r.vaeDecoderTraining.learningRate = 2e-3; r.vaeDecoderTraining.checkpointEvery = 10
        r.training.steps = steps; r.training.batchSize = 8; r.training.warmupSteps = 5
        r.training.learningRate = 1e-3; r.training.checkpointEvery = 10; r.training.emaDecay = 0.9
        r.previewEvery = 20
        r.previewPrompts = ["red square", "blue square"]
        return r
    }

    func testTrainsResumesAndExportsAPipeline() throws {
        let (images, captions) = Self.toyData()
        let tmp = try TemporaryFolder()
        let run = tmp.url.appendingPathComponent("run")
        var vaeLosses: [Float] = [], decoderLosses: [Float] = [], losses: [Float] = []
        // Stop partway through stage 2, as a signal would.
        XCTAssertThrowsError(try TextToImageTraining.run(recipe: Self.tinyRecipe(), images: images, captions: captions, out: run,
                                                         resume: false) { stage, r in
            switch stage.name {
            case "vae": vaeLosses.append(r.loss)
            case "vae-decoder": decoderLosses.append(r.loss)
            default: losses.append(r.loss)
            }
            return !(stage.name == "unet" && r.step == 15)
        }) { XCTAssertTrue($0 is TrainingInterrupted, "\($0)") }
        XCTAssertEqual(vaeLosses.count, 30)
        XCTAssertEqual(decoderLosses.count, 10)
        XCTAssertEqual(losses.count, 15)
        XCTAssertLessThan(vaeLosses.suffix(5).reduce(0, +), vaeLosses.prefix(5).reduce(0, +) * 0.8, "the autoencoder learns: \(vaeLosses)")
        // Resume: the VAE stage is done and not repeated; stage 2 goes on from step 15.
        var resumedSteps: [Int] = []
        let pipe = try TextToImageTraining.run(recipe: Self.tinyRecipe(), images: images, captions: captions, out: run, resume: true) { stage, r in
            XCTAssertEqual(stage.name, "unet")
            resumedSteps.append(r.step)
            return true
        }
        XCTAssertEqual(resumedSteps, Array(16...30), "resumes from the checkpoint the stop wrote")
        // An uninterrupted run reaches the same weights (every draw is seeded per step).
        let straight = try TextToImageTraining.run(recipe: Self.tinyRecipe(), images: images, captions: captions,
                                                   out: tmp.url.appendingPathComponent("straight"), resume: false)
        XCTAssertTrue(pipe.unet.stateDict()["conv_in.weight"]!.scalars == straight.unet.stateDict()["conv_in.weight"]!.scalars)
        // The exported folder is a Stable Diffusion pipeline with the scaled VAE and a short tokenizer.
        let model = run.appendingPathComponent("model")
        for f in ["model_index.json", "tokenizer/vocab.json", "tokenizer/merges.txt", "text_encoder/model.safetensors",
                  "unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                  "scheduler/scheduler_config.json", "previews/step-20.png", "vae/loss.png", "loss.png"] {
            let u = f.hasPrefix("previews") || f.hasSuffix("loss.png") ? run.appendingPathComponent(f) : model.appendingPathComponent(f)
            XCTAssertTrue(FileManager.default.fileExists(atPath: u.path), f)
        }
        let loaded = try StableDiffusionPipeline.load(model)
        XCTAssertEqual(loaded.tokenizer.maxLength, 8)
        XCTAssertNotEqual(loaded.vae.scalingFactor, AutoencoderKLConfig().scalingFactor)
        // The decoder stage trained the decoder alone: the encoder (the latents the unet learnt
        // from) is stage 1's bit for bit, the decoder is not.
        let stage1 = try AutoencoderKL.load(run.appendingPathComponent("vae/model")).stateDict()
        let final = loaded.vae.stateDict()
        for (name, t) in stage1 {
            let same = t.scalars == final[name]!.scalars
            if name.hasPrefix("encoder.") || name.hasPrefix("quant_conv.") { XCTAssertTrue(same, name) }
        }
        XCTAssertFalse(stage1["decoder.conv_out.weight"]!.scalars == final["decoder.conv_out.weight"]!.scalars, "the decoder trained")
        XCTAssertEqual(loaded.defaultSize, 16)
        let request = SamplingRequest(count: 2, sampler: .dpmpp2m, steps: 4, seed: 3, guidance: 3)
        let a = try loaded.generate(PromptConditioning(prompts: ["red square", "blue square"]), request: request, height: 16, width: 16)
        let b = try pipe.generate(PromptConditioning(prompts: ["red square", "blue square"]), request: request, height: 16, width: 16)
        XCTAssertEqual(a.images.shape, [2, 3, 16, 16])
        XCTAssertTrue(a.images.scalars == b.images.scalars, "the exported folder makes the trained pipeline's images")
    }

    func testRecipeChecksItsParts() throws {
        var r = Self.tinyRecipe()
        r.unet.crossAttentionDim = .all(48)
        XCTAssertThrowsError(try r.validate()) { XCTAssertTrue("\($0)".contains("cross_attention_dim"), "\($0)") }
        r = Self.tinyRecipe()
        r.captionDropout = 1
        XCTAssertThrowsError(try r.validate())
        r = Self.tinyRecipe()
        r.unet.sampleSize = [4, 4]
        XCTAssertThrowsError(try r.validate()) { XCTAssertTrue("\($0)".contains("sample_size"), "\($0)") }
        // A recipe round-trips through JSON, and keys left out take the emoji recipe's values.
        let enc = JSONEncoder()
        enc.outputFormatting = .sortedKeys
        let data = try enc.encode(Self.tinyRecipe())
        XCTAssertEqual(try enc.encode(try JSONDecoder().decode(TextToImageRecipe.self, from: data)), data)
        XCTAssertEqual(try enc.encode(try JSONDecoder().decode(TextToImageRecipe.self, from: Data("{}".utf8))),
                       try enc.encode(TextToImageRecipe.emoji()))
        XCTAssertTrue(try JSONDecoder().decode(TextToImageRecipe.self, from: data).canResume(as: Self.tinyRecipe()))
        var longer = Self.tinyRecipe()
        longer.training.steps *= 2
        XCTAssertTrue(Self.tinyRecipe().canResume(as: longer))
        longer.training.learningRate *= 2
        XCTAssertFalse(Self.tinyRecipe().canResume(as: longer))
        // Min-SNR weighting of the unet stage: validated, kept, and part of what a resume must match.
        var weighted = Self.tinyRecipe()
        weighted.snrGamma = 5
        let back = try JSONDecoder().decode(TextToImageRecipe.self, from: enc.encode(weighted))
        XCTAssertEqual(back.snrGamma, 5)
        XCTAssertFalse(Self.tinyRecipe().canResume(as: weighted))
        XCTAssertThrowsError(try JSONDecoder().decode(TextToImageRecipe.self, from: Data(#"{"snr_gamma": -1}"#.utf8))) {
            XCTAssertTrue("\($0)".contains("snr_gamma"), "\($0)")
        }
    }
}
