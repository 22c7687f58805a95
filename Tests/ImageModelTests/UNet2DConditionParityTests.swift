import XCTest
import Foundation
import Tensor
import NN
import Image
import TestSupport

/// UNet2DConditionModel against diffusers 0.42.1 (goldens from
/// Tests/References/make_unet2d_condition_goldens.py): folders diffusers saved, same inputs,
/// outputs within 1e-5 max abs (outputs are O(1); torch's own float32 vs float64 gap is ~1e-6).
final class UNet2DConditionParityTests: XCTestCase {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Goldens")

    static func folder(_ name: String) -> URL { dir.appendingPathComponent("cond_" + name) }

    @discardableResult
    func check(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> UNet2DConditionModel {
        let model = try UNet2DConditionModel.load(Self.folder(name))
        let io = try SafeTensorsFile(url: Self.folder(name).appendingPathComponent("io.safetensors"))
        let labels = io.entry("input.class_labels") == nil ? nil : try io.integers("input.class_labels")
        let cond = io.entry("input.timestep_cond") == nil ? nil : try io.tensor("input.timestep_cond")
        let sample = try io.tensor("input.sample"), text = try io.tensor("input.encoder_hidden_states")
        let t = try io.tensor("input.timestep").scalars
        let out = GradMode.withoutGrad {
            model(sample, timesteps: t, encoderHiddenStates: text, timestepCond: cond, classLabels: labels)
        }
        let want = try io.tensor("output")
        XCTAssertEqual(out.shape, want.shape, file: file, line: line)
        var worst: Float = 0
        for i in 0..<want.count { worst = Swift.max(worst, Swift.abs(out.data[i] - want.data[i])) }
        print("UNet2DCondition parity \(name): max abs error \(worst)")
        assertClose(out, want, atol: 1e-5, rtol: 0, name, file: file, line: line)
        return model
    }

    /// SD 1.x shape: conv projections, 77 tokens, non-square latent, F16 folder.
    func testSD1Shaped() throws { try check("sd1") }
    /// SD 2.x shape: linear projections, per-block head counts, upcast_attention, a latent that
    /// is not a multiple of the U-Net's factor, F32 folder.
    func testSD2Shaped() throws { try check("sd2") }
    /// 9-channel inpainting input; only_cross_attention per block.
    func testInpaintingInput() throws { try check("inpaint") }
    /// time_cond_proj_dim (LCM), scale-shift resnets, per-block layers and depths, post/extra
    /// time activations, a "timestep" class embedding.
    func testGuidanceEmbeddingAndPerBlockLayers() throws { try check("lcm") }
    /// num_class_embeds with class_embeddings_concat, no mid block, 1×1/5×5 conv_in/out, centred
    /// input, mish, downsample padding 0.
    func testClassEmbeddingsAndSmallKeys() throws { try check("class") }

    func testParameterNamesAreDiffusersKeys() throws {
        let model = try UNet2DConditionModel.load(Self.folder("sd1"))
        let names = Set(model.namedParameters().map(\.name))
        let file = try SafeTensorsFile(url: Self.folder("sd1").appendingPathComponent(ModelFolder.weightsName))
        XCTAssertEqual(names, Set(file.names))
        XCTAssert(names.contains("down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k.weight"))
        XCTAssert(names.contains("mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight"))
        XCTAssert(names.contains("up_blocks.1.attentions.2.proj_out.weight"))
        // inspect-style counting goes through the same visitor.
        XCTAssertEqual(model.parameterCount, file.names.reduce(0) { $0 + file.entry($1)!.shape.reduce(1, *) })
        XCTAssertEqual(model.parameterCount, 74_188)  // torch's sum(p.numel()) for this config
    }

    func testSavedFolderReloadsToTheSameOutputs() throws {
        let src = try UNet2DConditionModel.load(Self.folder("sd2"))
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("unetcond-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: tmp) }
        try src.save(to: tmp)
        let back = try UNet2DConditionModel.load(tmp)
        XCTAssertEqual(back.config, src.config)
        let x = randomTensor([1, 4, 8, 8], seed: 4), text = randomTensor([1, 3, 24], seed: 5)
        GradMode.withoutGrad {
            XCTAssertEqual(src(x, timesteps: [10], encoderHiddenStates: text).scalars,
                           back(x, timesteps: [10], encoderHiddenStates: text).scalars)
        }
        // A pipeline folder's unet/ loads too.
        let pipe = tmp.appendingPathComponent("pipe")
        try FileManager.default.createDirectory(at: pipe, withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: pipe.appendingPathComponent("model_index.json"))
        try src.save(to: pipe.appendingPathComponent("unet"), dtype: .F16)
        let half = try UNet2DConditionModel.load(pipe)
        GradMode.withoutGrad {
            assertClose(half(x, timesteps: [10], encoderHiddenStates: text), src(x, timesteps: [10], encoderHiddenStates: text),
                        atol: 2e-2, rtol: 0)
        }
    }

    func testWeightsOfAnotherConfigAreAnErrorListingTheKeys() throws {
        // SD 2-shaped config, SD 1-shaped weights: conv vs linear projections, other widths.
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("unetcond-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: tmp) }
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: Self.folder("sd2").appendingPathComponent("config.json"),
                                         to: tmp.appendingPathComponent("config.json"))
        try FileManager.default.copyItem(at: Self.folder("sd1").appendingPathComponent(ModelFolder.weightsName),
                                         to: tmp.appendingPathComponent(ModelFolder.weightsName))
        XCTAssertThrowsError(try UNet2DConditionModel.load(tmp)) { e in
            let text = "\(e)"
            XCTAssert(text.contains(ModelFolder.weightsName), text)
            XCTAssert(text.contains("missing") && text.contains("down_blocks.1.attentions.0.proj_in.weight"), text)
            XCTAssert(text.contains("unexpected") && text.contains("down_blocks.0.attentions.1.norm.weight"), text)
        }
        // A UNet2DModel folder is not taken for a conditional one.
        XCTAssertThrowsError(try UNet2DConditionModel.load(Self.dir.appendingPathComponent("small_scale_shift"))) { e in
            XCTAssert("\(e)".contains("UNet2DModel"), "\(e)")
        }
    }

    func testConfigRoundTripsAndKeepsUnknownKeys() throws {
        let url = Self.folder("sd2").appendingPathComponent("config.json")
        var c = try ConfigFile.read(UNet2DConditionConfig.self, from: url)
        XCTAssertEqual(c.attentionHeadDim, .each([2, 4, 8]))
        XCTAssertTrue(c.useLinearProjection)
        XCTAssertTrue(c.upcastAttention)
        c.extra["a_future_key"] = .array([.number(1), .string("x")])
        let data = try JSONEncoder().encode(c)
        XCTAssertEqual(try JSONDecoder().decode(UNet2DConditionConfig.self, from: data), c)
        // Every key diffusers wrote is written back (and nothing is lost into `extra`).
        let theirs = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let ours = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        XCTAssertEqual(Set(theirs.keys).subtracting(ours.keys), [])
        XCTAssertEqual(try ConfigFile.read(UNet2DConditionConfig.self, from: url).extra, [:])
    }

    /// The real SD 1.5 unet config reads; its model would have diffusers' 859,520,964 parameters.
    func testStableDiffusion15ConfigReads() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Goldens/cond_sd15_config.json")
        let c = try ConfigFile.read(UNet2DConditionConfig.self, from: url)
        XCTAssertEqual(c.blockOutChannels, [320, 640, 1280, 1280])
        XCTAssertEqual(c.crossAttentionDim, .all(768))
        XCTAssertEqual(c.extra, [:])
    }

    func testBadConfigsAreErrorsNamingTheKey() throws {
        // A small valid config with one key replaced.
        func with(_ key: String, _ value: String) -> String {
            var keys = ["block_out_channels": "[8, 16]", "down_block_types": #"["CrossAttnDownBlock2D", "DownBlock2D"]"#,
                        "up_block_types": #"["UpBlock2D", "CrossAttnUpBlock2D"]"#, "norm_num_groups": "4",
                        "cross_attention_dim": "8", "attention_head_dim": "2"]
            keys[key] = value
            return "{" + keys.map { "\"\($0.key)\": \($0.value)" }.joined(separator: ", ") + "}"
        }
        XCTAssertNoThrow(try JSONDecoder().decode(UNet2DConditionConfig.self, from: Data(with("in_channels", "9").utf8)))
        for (json, key, words) in [
            (with("addition_embed_type", #""text_time""#), "addition_embed_type", "XL"),
            (with("down_block_types", #"["SimpleCrossAttnDownBlock2D", "DownBlock2D"]"#), "down_block_types", "SimpleCrossAttnDownBlock2D"),
            (with("mid_block_type", #""UNetMidBlock2DSimpleCrossAttn""#), "mid_block_type", "not supported"),
            (with("num_attention_heads", "8"), "num_attention_heads", "null"),
            (with("encoder_hid_dim", "1024"), "encoder_hid_dim", "null"),
            (with("dual_cross_attention", "true"), "dual_cross_attention", "true"),
            (with("time_embedding_type", #""fourier""#), "time_embedding_type", "fourier"),
            (with("class_embed_type", #""projection""#), "class_embed_type", "projection"),
            (with("attention_type", #""gated""#), "attention_type", "gated"),
            (with("transformer_layers_per_block", "[[1, 2], [2, 2]]"), "transformer_layers_per_block", "per-layer"),
            (with("norm_num_groups", "3"), "norm_num_groups", "divide"),
            (with("norm_num_groups", "null"), "norm_num_groups", "null"),
            (with("attention_head_dim", "[2, 4, 8]"), "attention_head_dim", "3 values"),
            (with("attention_head_dim", "9"), "attention_head_dim", "heads"),
            (with("block_out_channels", "[8, 1000000000]"), "block_out_channels", "widths"),
            (with("block_out_channels", "[8, 16, 16]"), "down_block_types", "3 block_out_channels"),
            (with("layers_per_block", "-1"), "layers_per_block", "1..."),
            (with("conv_in_kernel", "4"), "conv_in_kernel", "odd"),
            (with("sample_size", #""big""#), "sample_size", "expected"),
        ] {
            XCTAssertThrowsError(try JSONDecoder().decode(UNet2DConditionConfig.self, from: Data(json.utf8)), json) { e in
                XCTAssert("\(e)".contains(key) && "\(e)".contains(words), "\(json): \(e)")
            }
        }
        // Huge but well-formed: refused by the parameter estimate, before anything is allocated.
        var c = UNet2DConditionConfig()
        c.blockOutChannels = [16384, 16384, 16384, 16384]
        XCTAssertThrowsError(try UNet2DConditionModel(config: c)) { e in XCTAssert("\(e)".contains("parameters"), "\(e)") }
    }

    func testGradientsFlowToEveryParameter() throws {
        let model = try UNet2DConditionModel.load(Self.folder("inpaint"))
        let x = randomTensor([1, 9, 8, 8], seed: 1), text = randomTensor([1, 5, 16], seed: 2)
        model(x, timesteps: [5], encoderHiddenStates: text).square().mean().backward()
        for (name, p) in model.namedParameters() where p.requiresGrad {
            XCTAssertNotNil(p.grad, name)
        }
    }
}
