import XCTest
import Foundation
import Tensor
import NN
import Image
import TestSupport

/// AutoencoderKL against diffusers (goldens from Tests/References/make_vae_goldens.py): the
/// encoder's posterior mean and log-variance, plain and tiled decodes, within 1e-5 max abs.
final class AutoencoderKLParityTests: XCTestCase {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Goldens")

    static func model(_ name: String) throws -> AutoencoderKL {
        let folder = dir.appendingPathComponent(name)
        if FileManager.default.fileExists(atPath: folder.appendingPathComponent(ModelFolder.weightsName).path) {
            return try AutoencoderKL.load(folder)  // a folder diffusers saved (F16 weights)
        }
        let model = try AutoencoderKL(config: try ConfigFile.read(AutoencoderKLConfig.self, from: folder.appendingPathComponent("config.json")))
        UNet2DParityTests.formulaWeights(model)
        return model
    }

    static func maxAbsError(_ a: Tensor, _ b: Tensor) -> Float {
        precondition(a.shape == b.shape, "\(a.shape) vs \(b.shape)")
        var worst: Float = 0
        for i in 0..<a.count { worst = Swift.max(worst, Swift.abs(a.data[i] - b.data[i])) }
        return worst
    }

    /// Every `encode.<tag>` and `decode.<tag>` run of the case's io.safetensors; tags with
    /// "tiled" run tiled. Returns the number of runs checked.
    @discardableResult
    func check(_ name: String, atol: Float = 1e-5, file: StaticString = #filePath, line: UInt = #line) throws -> Int {
        let vae = try Self.model(name)
        let io = try SafeTensorsFile(url: Self.dir.appendingPathComponent(name).appendingPathComponent("io.safetensors"))
        let inputs = io.names.filter { $0.hasSuffix(".input") }.sorted()
        for key in inputs {
            let prefix = String(key.dropLast(".input".count))
            let tiled = prefix.contains("tiled")
            let x = try io.tensor(key)
            var outputs: [(String, Tensor)] = []
            if prefix.hasPrefix("encode.") {
                let posterior = vae.encode(x, tiled: tiled)
                outputs = [("mean", posterior.mean), ("logvar", posterior.logvar)]
            } else {
                outputs = [("output", vae.decode(x, tiled: tiled))]
            }
            for (field, got) in outputs {
                let want = try io.tensor("\(prefix).\(field)")
                print("AutoencoderKL parity \(name) \(prefix).\(field) \(want.shape): max abs error \(Self.maxAbsError(got, want))")
                assertClose(got, want, atol: atol, rtol: 0, "\(name) \(prefix).\(field)", file: file, line: line)
            }
        }
        XCTAssertFalse(inputs.isEmpty, file: file, line: line)
        return inputs.count
    }

    func testSmallFolderWithHalfWeightsPlainAndTiled() throws { XCTAssertEqual(try check("vae_small"), 6) }
    func testThreeLevelsWithoutPostQuantConvPlainAndTiled() throws { XCTAssertEqual(try check("vae_three_levels"), 4) }
    func testNoMidAttentionMishWithoutQuantConv() throws { try check("vae_no_attention") }
    func testStableDiffusion15Config() throws { try check("vae_sd15") }

    func testTiledDecodeOfOneTileIsThePlainDecode() throws {
        // Latents no larger than one tile are decoded whole, as diffusers does.
        let vae = try Self.model("vae_small")
        let z = randomTensor([1, 4, 8, 6], seed: 3)
        XCTAssertEqual(vae.decode(z, tiled: true).scalars, vae.decode(z).scalars)
    }

    func testBatchesDecodeAsTheirSamples() throws {
        let vae = try Self.model("vae_small")
        let z = randomTensor([3, 4, 6, 4], seed: 5)
        let whole = vae.decode(z)
        for i in 0..<3 {
            XCTAssertEqual(whole.slice(axis: 0, i..<(i + 1)).scalars, vae.decode(z.slice(axis: 0, i..<(i + 1))).scalars)
        }
    }

    func testPosteriorSampleAndMode() throws {
        let vae = try Self.model("vae_small")
        let posterior = vae.encode(randomTensor([1, 3, 8, 8], seed: 2))
        let noise = randomTensor(posterior.mean.shape, seed: 9)
        let s = posterior.sample(noise: noise)
        for i in 0..<s.count {
            let want = posterior.mean.data[i] + Foundation.exp(0.5 * posterior.logvar.data[i]) * noise.data[i]
            XCTAssertEqual(s.data[i], want, accuracy: 1e-6)
        }
        XCTAssertEqual(posterior.mode.scalars, posterior.mean.scalars)
    }

    func testLegacyAttentionNamesLoad() throws {
        // Older VAE folders name the mid-block attention query/key/value/proj_attn.
        let folder = Self.dir.appendingPathComponent("vae_small")
        let file = try SafeTensorsFile(url: folder.appendingPathComponent(ModelFolder.weightsName))
        var legacy: [String: Tensor] = [:]
        for name in file.names {
            let old = name.replacingOccurrences(of: ".to_q.", with: ".query.").replacingOccurrences(of: ".to_k.", with: ".key.")
                .replacingOccurrences(of: ".to_v.", with: ".value.").replacingOccurrences(of: ".to_out.0.", with: ".proj_attn.")
            legacy[old] = try file.tensor(name)
        }
        XCTAssert(legacy.keys.contains("decoder.mid_block.attentions.0.proj_attn.weight"))
        let vae = try AutoencoderKL(config: try ConfigFile.read(AutoencoderKLConfig.self, from: folder.appendingPathComponent("config.json")))
        try vae.load(from: legacy)
        let reference = try AutoencoderKL.load(folder)
        let z = randomTensor([1, 4, 4, 4], seed: 1)
        XCTAssertEqual(vae.decode(z).scalars, reference.decode(z).scalars)
    }

    func testSavedFolderReloadsAndPipelineFoldersFindTheirVAE() throws {
        let src = try Self.model("vae_three_levels")
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("vae-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: tmp) }
        try src.save(to: tmp.appendingPathComponent("vae"))
        try Data("{}".utf8).write(to: tmp.appendingPathComponent("model_index.json"))
        let back = try AutoencoderKL.load(tmp)  // the pipeline folder
        XCTAssertEqual(back.config, src.config)
        let names = Set(try SafeTensorsFile(url: tmp.appendingPathComponent("vae/\(ModelFolder.weightsName)")).names)
        XCTAssert(names.contains("encoder.mid_block.attentions.0.to_out.0.weight"))
        XCTAssert(names.contains("encoder.down_blocks.0.downsamplers.0.conv.weight"))
        let z = randomTensor([1, 4, 3, 5], seed: 4)
        XCTAssertEqual(src.decode(z).scalars, back.decode(z).scalars)
        // An F16 folder loads within half precision.
        try src.save(to: tmp.appendingPathComponent("vae"), dtype: .F16)
        assertClose(try AutoencoderKL.load(tmp).decode(z), src.decode(z), atol: 2e-2, rtol: 0)
    }

    func testConfigRoundTripsAndCountsParameters() throws {
        var c = try ConfigFile.read(AutoencoderKLConfig.self, from: Self.dir.appendingPathComponent("vae_no_attention/config.json"))
        XCTAssertEqual(c.shiftFactor, 0.0609)
        XCTAssertEqual(c.scalingFactor, 0.13025)
        XCTAssertEqual(c.actFn, .mish)
        XCTAssertFalse(c.forceUpcast)
        c.extra["a_future_key"] = .string("x")
        let data = try JSONEncoder().encode(c)
        XCTAssertEqual(try JSONDecoder().decode(AutoencoderKLConfig.self, from: data), c)
        let raw = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        XCTAssertEqual(raw["_class_name"] as? String, "AutoencoderKL")
        XCTAssertEqual(raw["sample_size"] as? Int, 32)
        for name in ["vae_small", "vae_three_levels", "vae_no_attention"] {
            let vae = try Self.model(name)
            XCTAssertEqual(vae.config.parameterCount, vae.parameterCount, name)
        }
        let sd = try AutoencoderKL(config: try ConfigFile.read(AutoencoderKLConfig.self,
                                                               from: Self.dir.appendingPathComponent("vae_sd15/config.json")))
        XCTAssertEqual(sd.config.parameterCount, sd.parameterCount)
        XCTAssertEqual(sd.parameterCount, 83_653_863)  // diffusers' count for this config
        XCTAssertEqual(sd.config.tileLatentMinSize, 64)
        XCTAssertEqual(sd.downFactor, 8)
    }

    func testBadConfigsAreErrorsNamingTheKey() throws {
        let blocks = #""down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"], "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"]"#
        let two = "\"block_out_channels\": [8, 16], \"norm_num_groups\": 4, \(blocks)"
        for (json, key) in [(#"{"block_out_channels": [8, 16]}"#, "down_block_types"),
                            (#"{"down_block_types": ["AttnDownEncoderBlock2D"]}"#, "down_block_types"),
                            (#"{"up_block_types": ["UpBlock2D"]}"#, "up_block_types"),
                            ("{\"block_out_channels\": [8, 24], \"norm_num_groups\": 16, \(blocks)}", "norm_num_groups"),
                            ("{\(two), \"latents_mean\": [0.1, 0.2, 0.3, 0.4]}", "latents_mean"),
                            ("{\(two), \"latents_std\": [1, 1, 1, 1]}", "latents_std"),
                            ("{\(two), \"act_fn\": \"tanh\"}", "act_fn"),
                            ("{\(two), \"sample_size\": 2}", "sample_size"),
                            ("{\(two), \"sample_size\": \"big\"}", "sample_size"),
                            ("{\(two), \"sample_size\": [16]}", "sample_size"),
                            ("{\(two), \"scaling_factor\": 0}", "scaling_factor"),
                            ("{\(two), \"layers_per_block\": 0}", "layers_per_block"),
                            ("{\(two), \"latent_channels\": -4}", "latent_channels"),
                            (#"{"block_out_channels": [65536, 65536, 65536], "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"], "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]}"#,
                             "block_out_channels"),
                            (#"{"block_out_channels": [9223372036854775807]}"#, "block_out_channels")] {
            XCTAssertThrowsError(try JSONDecoder().decode(AutoencoderKLConfig.self, from: Data(json.utf8)), json) { e in
                XCTAssert("\(e)".contains(key), "\(json): \(e)")
            }
        }
        // latents_mean null is SD's own value.
        XCTAssertNoThrow(try JSONDecoder().decode(AutoencoderKLConfig.self, from: Data("{\(two), \"latents_mean\": null}".utf8)))
        // sample_size [h, w]: tiles follow h, as diffusers' tile_latent_min_size does; written back as a list.
        let hw = try JSONDecoder().decode(AutoencoderKLConfig.self, from: Data("{\(two), \"sample_size\": [16, 24]}".utf8))
        XCTAssertEqual(hw.sampleSize, [16, 24])
        XCTAssertEqual(hw.tileLatentMinSize, 8)
        let raw = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(hw)) as! [String: Any]
        XCTAssertEqual(raw["sample_size"] as? [Int], [16, 24])
    }

    func testAUNetFolderIsNotAVAE() throws {
        XCTAssertThrowsError(try AutoencoderKL.load(UNet2DParityTests.dir.appendingPathComponent("small_scale_shift"))) { e in
            XCTAssert("\(e)".contains("AutoencoderKL"), "\(e)")
        }
    }
}
