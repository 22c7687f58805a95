import XCTest
import Foundation
import Tensor
import NN
import Image
import TestSupport

/// Single-file Stable Diffusion checkpoints against diffusers (goldens from
/// Tests/References/make_sd_single_file_goldens.py): a tiny pipeline folder and the same weights as
/// one original-layout file written by diffusers' conversion script; the mapped file must give the
/// folder's tensors bit for bit, under the same names. Configs are checked on the real SD 1.5 / 2.1
/// layouts (names and shapes only).
final class StableDiffusionCheckpointTests: XCTestCase {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Goldens/sd-single-file")

    static func readJSON(_ url: URL) throws -> [String: JSONValue] {
        try JSONDecoder().decode([String: JSONValue].self, from: Data(contentsOf: url))
    }

    /// Single file vs folder: identical key sets, bitwise-equal tensors, shape-derived configs equal.
    func checkAgainstFolder(_ name: String, family: StableDiffusionFamily, ignoredCount: Int) throws {
        let sd = try StableDiffusionCheckpoint.open(Self.dir.appendingPathComponent(name + ".safetensors"))
        XCTAssertEqual(sd.layout.family, family)
        XCTAssertFalse(sd.layout.inpainting)
        XCTAssertEqual(sd.layout.unexpected, [], "every tensor of the file is mapped or known to be ignorable")
        XCTAssertEqual(sd.layout.ignored.count, ignoredCount)
        let mapped = try sd.stateDicts()
        let folder = Self.dir.appendingPathComponent(name)
        let parts: [(String, [String: Tensor], String)] = [
            ("unet", mapped.unet, "unet/diffusion_pytorch_model.safetensors"),
            ("vae", mapped.vae, "vae/diffusion_pytorch_model.safetensors"),
            ("text_encoder", mapped.textEncoder, "text_encoder/model.safetensors"),
        ]
        for (component, got, path) in parts {
            let want = try SafeTensorsFile(url: folder.appendingPathComponent(path))
            // The folder's text encoder was saved with transformers 4's `text_model.` prefix; we map to 5's names.
            func key(_ n: String) -> String { component == "text_encoder" && n.hasPrefix("text_model.") ? String(n.dropFirst(11)) : n }
            let wantNames = Set(want.names.map(key))
            XCTAssertEqual(Set(got.keys), wantNames, "\(name) \(component): key sets; only in the file's mapping: "
                           + "\(Set(got.keys).subtracting(wantNames).sorted().prefix(5)), only in the folder: \(wantNames.subtracting(got.keys).sorted().prefix(5))")
            var differing: [String] = []
            for n in want.names {
                guard let g = got[key(n)] else { continue }
                let w = try want.tensor(n)
                if g.shape != w.shape || g.scalars.map(\.bitPattern) != w.scalars.map(\.bitPattern) { differing.append(n) }
            }
            XCTAssertEqual(differing, [], "\(name) \(component): tensors not bitwise equal")
            print("SD single file \(name) \(component): \(got.count) tensors, bitwise equal to the folder's: \(differing.isEmpty)")
        }
        // Whatever the shapes decide must agree with the folder's configs.
        let unet = try Self.readJSON(folder.appendingPathComponent("unet/config.json"))
        for k in ["block_out_channels", "layers_per_block", "in_channels", "out_channels", "cross_attention_dim",
                  "use_linear_projection", "down_block_types", "up_block_types", "transformer_layers_per_block"] {
            XCTAssertEqual(sd.layout.unetConfig[k], unet[k], "unet \(k)")
        }
        let vae = try Self.readJSON(folder.appendingPathComponent("vae/config.json"))
        for k in ["block_out_channels", "layers_per_block", "in_channels", "out_channels", "latent_channels",
                  "down_block_types", "up_block_types"] {
            XCTAssertEqual(sd.layout.vaeConfig[k], vae[k], "vae \(k)")
        }
        let te = try Self.readJSON(folder.appendingPathComponent("text_encoder/config.json"))
        for k in ["hidden_size", "num_hidden_layers", "intermediate_size", "vocab_size", "max_position_embeddings", "hidden_act"] {
            XCTAssertEqual(sd.layout.textEncoderConfig[k], te[k], "text encoder \(k)")
        }
    }

    /// SD 1.x: 12 DDPM buffers + logvar + 2 EMA counters + CLIP position_ids are ignored.
    func testSD1SingleFileGivesTheFolderTensors() throws {
        try checkAgainstFolder("sd1", family: .sd1, ignoredCount: 16)
    }

    /// SD 2.x: also OpenCLIP's 24th resblock (12 tensors), text_projection and logit_scale, instead of position_ids.
    func testSD2SingleFileGivesTheFolderTensors() throws {
        try checkAgainstFolder("sd2", family: .sd2, ignoredCount: 15 + 14)
        let sd = try StableDiffusionCheckpoint.open(Self.dir.appendingPathComponent("sd2.safetensors"))
        XCTAssertEqual(sd.layout.prediction, .vPrediction)
        XCTAssertEqual(sd.layout.tokenizer.padToken, "!")
        XCTAssertTrue(sd.layout.ignored.contains("cond_stage_model.model.transformer.resblocks.23.attn.in_proj_weight"))
        // A model loads from the mapped file one tensor at a time (TensorSource).
        XCTAssertEqual(sd.textEncoder.shape(of: "encoder.layers.0.self_attn.q_proj.weight"), [8, 8])
        XCTAssertEqual(try sd.textEncoder.tensor(named: "encoder.layers.0.self_attn.v_proj.bias").shape, [8])
    }

    // MARK: real layouts

    /// The configs inferred from the full-size SD 1.5 / 2.1 names and shapes are the hub configs diffusers uses.
    func testRealLayoutsGiveTheHubConfigs() throws {
        let doc = try Self.readJSON(Self.dir.appendingPathComponent("layouts.json"))
        guard case .object(let tensors)? = doc["tensors"], case .object(let configs)? = doc["configs"] else {
            return XCTFail("layouts.json: no tensors/configs")
        }
        func shapes(_ name: String, inChannels: Int? = nil) -> [String: [Int]] {
            guard case .array(let list)? = tensors[name] else { XCTFail("no \(name)"); return [:] }
            var out: [String: [Int]] = [:]
            for item in list {
                guard case .array(let pair) = item, case .string(let n) = pair[0], case .array(let s) = pair[1] else { continue }
                out[n] = s.map { Int($0.double!) }
            }
            if let c = inChannels { out["model.diffusion_model.input_blocks.0.0.weight"] = [320, c, 3, 3] }
            return out
        }
        let cases: [(String, [String: [Int]], StableDiffusionPrediction?, Int?, StableDiffusionFamily, StableDiffusionPrediction)] = [
            ("sd15", shapes("sd15"), nil, nil, .sd1, .epsilon),
            ("sd15-inpainting", shapes("sd15", inChannels: 9), nil, nil, .sd1, .epsilon),
            ("sd21-v", shapes("sd21-v"), nil, nil, .sd2, .vPrediction),
            ("sd2-inpainting", shapes("sd21-v", inChannels: 9), nil, nil, .sd2, .epsilon),
            ("sd21-base", shapes("sd21-v"), .epsilon, nil, .sd2, .epsilon),
            ("sd21-base", shapes("sd21-v"), nil, 875_000, .sd2, .epsilon),  // diffusers' legacy global_step rule
        ]
        for (name, s, override, step, family, prediction) in cases {
            let layout = try StableDiffusionLayout(shapes: s, file: name, prediction: override, globalStep: step)
            XCTAssertEqual(layout.family, family, name)
            XCTAssertEqual(layout.prediction, prediction, name)
            XCTAssertEqual(layout.inpainting, name.contains("inpainting"), name)
            XCTAssertEqual(layout.unexpected, [], name)
            guard case .object(let want)? = configs[name] else { XCTFail("no config \(name)"); continue }
            for (component, got) in [("unet", layout.unetConfig), ("vae", layout.vaeConfig),
                                     ("text_encoder", layout.textEncoderConfig), ("scheduler", layout.schedulerConfig)] {
                guard case .object(let w)? = want[component] else { XCTFail("\(name): no \(component)"); continue }
                XCTAssertEqual(Set(got.keys), Set(w.keys), "\(name) \(component) keys")
                for k in w.keys.sorted() where got[k] != w[k] {
                    XCTFail("\(name) \(component).\(k): got \(String(describing: got[k])), want \(String(describing: w[k]))")
                }
            }
            guard case .string(let pad)? = want["tokenizer_pad_token"] else { XCTFail("no pad token"); continue }
            XCTAssertEqual(layout.tokenizer.padToken, pad, name)
            // Every tensor is mapped or ignored; the mapped counts are those of diffusers' models.
            let sources = Set([layout.unet, layout.vae, layout.textEncoder].flatMap { $0.values.map(\.source) })
            XCTAssertEqual(sources.count + layout.ignored.count, s.count, name)
            XCTAssertEqual(layout.unet.count, 686, name)
            XCTAssertEqual(layout.vae.count, 248, name)
        }
    }

    // MARK: errors

    func write(_ tensors: [String: Tensor], _ name: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("sdfile-\(ProcessInfo.processInfo.processIdentifier)-\(name)")
        try SafeTensors.write(tensors, to: url)
        return url
    }

    func assertThrows(_ url: URL, containing parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try StableDiffusionCheckpoint.open(url), file: file, line: line) { error in
            let text = "\(error)"
            for p in parts + [url.path] { XCTAssertTrue(text.contains(p), "'\(text)' lacks '\(p)'", file: file, line: line) }
        }
    }

    func testTruncatedFileIsAnErrorNamingTheFile() throws {
        let data = try Data(contentsOf: Self.dir.appendingPathComponent("sd1.safetensors"))
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("sdfile-\(ProcessInfo.processInfo.processIdentifier)-truncated.safetensors")
        try data.prefix(data.count - 1000).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        assertThrows(url, containing: ["past the"])
    }

    func testSDXLIsNotSupportedYet() throws {
        let url = try write(["conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight": .zeros([77, 4]),
                             "model.diffusion_model.input_blocks.0.0.weight": .zeros([4, 4, 3, 3])], "sdxl.safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        assertThrows(url, containing: ["SDXL is not supported yet"])
    }

    func testUnknownLayoutNamesAFewKeys() throws {
        let url = try write(["encoder.weight": .zeros([2]), "decoder.bias": .zeros([2])], "unknown.safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        assertThrows(url, containing: ["not a Stable Diffusion single file", "decoder.bias", "encoder.weight"])
    }

    func testPickleIsRefused() {
        assertThrows(URL(fileURLWithPath: "/nonexistent/model.ckpt"), containing: ["safetensors"])
    }

    func testUnknownTensorsAreListedNotDropped() throws {
        let file = try SafeTensorsFile(url: Self.dir.appendingPathComponent("sd1.safetensors"))
        var s: [String: [Int]] = [:]
        for e in file.entries { s[e.name] = e.shape }
        s["embedding_manager.embedder.weight"] = [3]
        s["model.diffusion_model.input_blocks.1.0.mystery.weight"] = [3]
        let layout = try StableDiffusionLayout(shapes: s, file: "x")
        XCTAssertEqual(layout.unexpected, ["embedding_manager.embedder.weight", "model.diffusion_model.input_blocks.1.0.mystery.weight"])
        // An 8-channel unet (instruct-pix2pix) is recognised and refused; a 5-dim tensor too, before any read.
        var pix2pix = s
        pix2pix["model.diffusion_model.input_blocks.0.0.weight"] = [4, 8, 3, 3]
        XCTAssertThrowsError(try StableDiffusionLayout(shapes: pix2pix, file: "p2p.safetensors")) { error in
            XCTAssertTrue("\(error)".contains("p2p.safetensors") && "\(error)".contains("8 input channels"), "\(error)")
        }
        var deep = s
        deep["model.diffusion_model.input_blocks.1.0.in_layers.2.weight"]! += [1]
        XCTAssertThrowsError(try StableDiffusionLayout(shapes: deep, file: "deep.safetensors"))
    }
}
