import XCTest
import Foundation
import Tensor
import NN
import Text
import TestSupport

/// CLIPTextModel against transformers (goldens from Tests/References/make_clip_text_goldens.py):
/// last_hidden_state, clip-skip states, pooled output (and text_embeds) within 1e-5.
final class CLIPTextModelTests: XCTestCase {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Goldens/clip_text")

    func check(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let folder = Self.dir.appendingPathComponent(name)
        let model = try CLIPTextModel.load(folder)
        let io = try SafeTensorsFile(url: folder.appendingPathComponent("io.safetensors"))
        let flat = try io.integers("input_ids"), l = 77
        let ids = stride(from: 0, to: flat.count, by: l).map { Array(flat[$0..<($0 + l)]) }
        XCTAssertNil(model.problem(with: ids), file: file, line: line)
        let out = GradMode.withoutGrad { model(ids) }
        assertClose(out.lastHiddenState, try io.tensor("last_hidden_state"), atol: 1e-5, rtol: 0, file: file, line: line)
        assertClose(out.pooled, try io.tensor("pooled"), atol: 1e-5, rtol: 0, file: file, line: line)
        XCTAssertEqual(out.hiddenStates.count, model.config.numHiddenLayers + 1, file: file, line: line)
        if io.entry("hidden_states_0") != nil {
            assertClose(out.hiddenStates[0], try io.tensor("hidden_states_0"), atol: 1e-5, rtol: 0, file: file, line: line)
        }
        for skip in [1, 2] {
            let e = GradMode.withoutGrad { model.promptEmbeddings(ids, clipSkip: skip) }
            assertClose(e, try io.tensor("clip_skip_\(skip)"), atol: 1e-5, rtol: 0, file: file, line: line)
        }
        let e0 = GradMode.withoutGrad { model.promptEmbeddings(ids, clipSkip: 0) }
        XCTAssertEqual(e0.scalars, out.lastHiddenState.scalars, file: file, line: line)
        if io.entry("text_embeds") != nil {
            assertClose(try XCTUnwrap(out.textEmbeds), try io.tensor("text_embeds"), atol: 1e-5, rtol: 0, file: file, line: line)
        } else {
            XCTAssertNil(out.textEmbeds, file: file, line: line)
        }
    }

    /// SD 1.x-like: quick_gelu, legacy eos_token_id 2 (pooled at the largest id).
    func testQuickGeluLegacyEOS() throws { try check("quick_gelu") }
    /// SD 2.x-like: gelu, eos_token_id set, pad 0 (pooled at the first EOS).
    func testGeluFirstEOS() throws { try check("gelu") }
    /// CLIPTextModelWithProjection: text_model.* plus text_projection.
    func testWithProjection() throws { try check("projection") }
    /// transformers 4's file: `text_model.` prefix, the position_ids buffer, F16 weights.
    func testPrefixedF16Checkpoint() throws { try check("prefixed") }

    func testConfigRoundTripsAndRejectsUnknownKeys() throws {
        let url = Self.dir.appendingPathComponent("quick_gelu/config.json")
        let c = try ConfigFile.read(CLIPTextConfig.self, from: url)
        XCTAssertEqual(c.hiddenAct, .quickGelu)
        XCTAssertEqual(c.eosTokenId, 2)
        XCTAssertEqual(c.extra["transformers_version"], .string("5.25.0"))
        let again = try JSONDecoder().decode(CLIPTextConfig.self, from: try JSONEncoder().encode(c))
        XCTAssertEqual(again, c)

        var object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        func rejected(_ change: [String: Any], key: String, file: StaticString = #filePath, line: UInt = #line) {
            var o = object
            for (k, v) in change { o[k] = v }
            let data = try! JSONSerialization.data(withJSONObject: o)
            XCTAssertThrowsError(try JSONDecoder().decode(CLIPTextConfig.self, from: data), file: file, line: line) { e in
                XCTAssertEqual((e as? ConfigError)?.key, key, "\(e)", file: file, line: line)
            }
        }
        rejected(["position_embedding_type": "rotary"], key: "position_embedding_type")
        rejected(["model_type": "t5"], key: "model_type")
        rejected(["hidden_act": "mish"], key: "hidden_act")
        rejected(["eos_token_id": [2, 3]], key: "eos_token_id")
        rejected(["use_attention_mask": true], key: "use_attention_mask")
        rejected(["architectures": ["CLIPVisionModel"]], key: "architectures")
        rejected(["num_attention_heads": 5], key: "num_attention_heads")
        rejected(["hidden_size": -4], key: "hidden_size")
        rejected(["vocab_size": 0], key: "vocab_size")
        rejected(["num_hidden_layers": 100_000], key: "num_hidden_layers")
        // Each size plausible, together 10^12 parameters: refused before any allocation.
        rejected(["vocab_size": 9_000_000, "hidden_size": 60_000, "num_attention_heads": 4], key: "hidden_size")
        object["use_attention_mask"] = false
        XCTAssertNoThrow(try JSONDecoder().decode(CLIPTextConfig.self, from: JSONSerialization.data(withJSONObject: object)))
    }

    /// The text_encoder/config.json of Stable Diffusion 1.5 and 2.1 folders as published
    /// (transformers 4.22 / 4.25), and a transformers 4 full dump's generic keys.
    func testPublishedSDConfigsDecode() throws {
        let sd15 = #"""
        {"_name_or_path": "openai/clip-vit-large-patch14", "architectures": ["CLIPTextModel"], "attention_dropout": 0.0,
         "bos_token_id": 0, "dropout": 0.0, "eos_token_id": 2, "hidden_act": "quick_gelu", "hidden_size": 768,
         "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-05,
         "max_position_embeddings": 77, "model_type": "clip_text_model", "num_attention_heads": 12,
         "num_hidden_layers": 12, "pad_token_id": 1, "projection_dim": 768, "torch_dtype": "float32",
         "transformers_version": "4.22.0.dev0", "vocab_size": 49408}
        """#
        let sd21 = #"""
        {"_name_or_path": "hf-models/stable-diffusion-v2-768x768/text_encoder", "architectures": ["CLIPTextModel"],
         "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0, "eos_token_id": 2, "hidden_act": "gelu",
         "hidden_size": 1024, "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 4096,
         "layer_norm_eps": 1e-05, "max_position_embeddings": 77, "model_type": "clip_text_model",
         "num_attention_heads": 16, "num_hidden_layers": 23, "pad_token_id": 1, "projection_dim": 512,
         "torch_dtype": "float32", "transformers_version": "4.25.0.dev0", "vocab_size": 49408,
         "return_dict": true, "output_hidden_states": false, "torchscript": false, "use_bfloat16": false,
         "pruned_heads": {}, "tie_word_embeddings": true, "is_encoder_decoder": false, "is_decoder": false,
         "add_cross_attention": false, "max_length": 20, "num_beams": 1, "bad_words_ids": null,
         "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}, "task_specific_params": null}
        """#
        let a = try JSONDecoder().decode(CLIPTextConfig.self, from: Data(sd15.utf8))
        XCTAssertEqual([a.hiddenSize, a.numHiddenLayers, a.numAttentionHeads, a.eosTokenId!], [768, 12, 12, 2])
        XCTAssertEqual(a.hiddenAct, .quickGelu)
        let b = try JSONDecoder().decode(CLIPTextConfig.self, from: Data(sd21.utf8))
        XCTAssertEqual([b.hiddenSize, b.numHiddenLayers, b.intermediateSize], [1024, 23, 4096])
        XCTAssertEqual(b.hiddenAct, .gelu)
        XCTAssertEqual(b.extra["max_length"], .number(20))
    }

    func testMismatchedCheckpointListsEveryKey() throws {
        let folder = Self.dir.appendingPathComponent("gelu")
        var c = try ConfigFile.read(CLIPTextConfig.self, from: folder.appendingPathComponent("config.json"))
        c.numHiddenLayers = 3
        let model = try CLIPTextModel(config: c)
        XCTAssertThrowsError(try model.load(safetensors: folder.appendingPathComponent("model.safetensors"))) { e in
            let m = e as? CheckpointMismatch
            XCTAssertEqual(m?.missing.count, 16, "\(e)")  // every parameter of layer 2
        }
    }

    /// An original-layout file's text encoder (`cond_stage_model.transformer.text_model.*` among
    /// other models' tensors) loads through its prefix.
    func testLoadsUnderAPrefixAmongOtherTensors() throws {
        let folder = Self.dir.appendingPathComponent("quick_gelu")
        let reference = try CLIPTextModel.load(folder)
        var tensors: [String: Tensor] = ["model.diffusion_model.out.0.weight": Tensor.zeros([4])]
        for (name, t) in reference.stateDict() { tensors["cond_stage_model.transformer.text_model." + name] = t }
        let model = try CLIPTextModel(config: reference.config)
        try model.load(checkpoint: tensors, prefix: "cond_stage_model.transformer.")
        for (name, t) in model.stateDict() { XCTAssertEqual(t.scalars, reference.stateDict()[name]!.scalars, name) }
        tensors["cond_stage_model.transformer.text_model.encoder.layers.9.mlp.fc1.weight"] = Tensor.zeros([1])
        XCTAssertThrowsError(try model.load(checkpoint: tensors, prefix: "cond_stage_model.transformer.")) { e in
            XCTAssertEqual((e as? CheckpointMismatch)?.unexpected, ["encoder.layers.9.mlp.fc1.weight"], "\(e)")
        }
    }

    /// An original SD 2.x file's OpenCLIP text tower (names, stacked q/k/v) gives the gelu
    /// case's outputs; layers past the model's count and logit_scale are ignored as diffusers
    /// does, anything else is reported.
    func testOpenCLIPCheckpoint() throws {
        let folder = Self.dir.appendingPathComponent("gelu")
        let config = try ConfigFile.read(CLIPTextConfig.self, from: folder.appendingPathComponent("config.json"))
        let file = try SafeTensorsFile(url: Self.dir.appendingPathComponent("openclip.safetensors"))
        let model = try CLIPTextModel(config: config)
        try model.load(openCLIP: file)
        let reference = try CLIPTextModel.load(folder)
        for (name, t) in model.stateDict() { XCTAssertEqual(t.scalars, reference.stateDict()[name]!.scalars, name) }

        var tensors = try file.all()
        tensors["cond_stage_model.model.transformer.resblocks.2.ln_1.weight"] = Tensor.zeros([32])  // SD 2's unused last layer
        tensors["first_stage_model.decoder.conv_in.weight"] = Tensor.zeros([1])  // another model's
        XCTAssertNoThrow(try model.load(openCLIP: tensors))
        tensors["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"] = Tensor.zeros([95, 32])
        tensors["cond_stage_model.model.visual.proj"] = Tensor.zeros([1])
        XCTAssertThrowsError(try model.load(openCLIP: tensors)) { e in
            let m = e as? CheckpointMismatch
            XCTAssertEqual(m?.unexpected, ["(openclip) visual.proj"], "\(e)")
            XCTAssertEqual(m?.mismatched.map(\.name).sorted(), ["encoder.layers.0.self_attn.k_proj.weight",
                "encoder.layers.0.self_attn.q_proj.weight", "encoder.layers.0.self_attn.v_proj.weight"], "\(e)")
        }
    }

    /// Loading builds the model without random draws (all weights come from the file).
    func testSkippingRandomInitDrawsNothing() throws {
        NNInit.seed(5)
        let first = NNInit.normal([3]).scalars
        NNInit.seed(5)
        let shapes = NNInit.skippingRandomInit { [NNInit.normal([4]).shape, NNInit.uniform([2], bound: 1).shape] }
        XCTAssertEqual(shapes, [[4], [2]])
        XCTAssertFalse(NNInit.isSkippingRandomInit)
        XCTAssertEqual(NNInit.normal([3]).scalars, first)
    }

    func testMissingFilesNameThePath() throws {
        let tmp = try TemporaryFolder()
        defer { tmp.remove() }
        XCTAssertThrowsError(try CLIPTextModel.load(tmp.url)) { e in
            XCTAssertTrue("\(e)".contains("config.json"), "\(e)")
        }
        try FileManager.default.copyItem(at: Self.dir.appendingPathComponent("gelu/config.json"), to: tmp.file("config.json"))
        XCTAssertThrowsError(try CLIPTextModel.load(tmp.url)) { e in
            XCTAssertTrue("\(e)".contains("model.safetensors"), "\(e)")
        }
    }
}
