import XCTest
import Foundation
import Tensor
import NN
@testable import Audio
import TestSupport

/// The generator's `formula_weight` (Tests/References/make_unet1d_goldens.py, shared with the 2D
/// goldens): a·(2u − 1), u from splitmix64 of (index + 1000003·Σ bytes(name)); a = 1/√fan_in for
/// matrices and kernels, 0.05 for vectors; norm weights 1 + that.
func formulaWeight(_ name: String, _ shape: [Int]) -> Tensor {
    let t = Tensor.zeros(shape)
    let seed = UInt64(1_000_003 * name.utf8.reduce(0) { $0 + Int($1) })
    let isNormWeight = name.contains("norm") && name.hasSuffix("weight")
    let fanIn = shape.count >= 2 ? shape.dropFirst().reduce(1, *) : 0
    let a = fanIn > 0 ? 1 / Double(fanIn).squareRoot() : 0.05
    for i in 0..<t.count {
        var x = (UInt64(i) &+ seed) &* 0x9E37_79B9_7F4A_7C15
        x ^= x >> 30; x = x &* 0xBF58_476D_1CE4_E5B9
        x ^= x >> 27; x = x &* 0x94D0_49BB_1331_11EB
        x ^= x >> 31
        let v = a * (2 * Double(x >> 40) / 16_777_216 - 1)
        t.data[i] = Float(isNormWeight ? 1 + v : v)
    }
    return t
}

/// True for diffusers' buffers (the Dance resampling kernels): state-dict entries that are not parameters.
func isBuffer(_ name: String) -> Bool { name.hasSuffix(".kernel") }

/// UNet1DModel against diffusers (goldens from Tests/References/make_unet1d_goldens.py):
/// same inputs, outputs within 1e-4 max abs.
final class UNet1DParityTests: XCTestCase {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Goldens")

    /// The model of a golden case: diffusers' saved folder, or its config with formula weights
    /// loaded strictly under exactly the state-dict keys (and shapes) diffusers listed.
    static func model(_ name: String, formula: Bool) throws -> UNet1DModel {
        let folder = Self.dir.appendingPathComponent(name)
        if !formula { return try UNet1DModel.load(folder) }
        let model = try UNet1DModel(config: try ConfigFile.read(UNet1DConfig.self, from: folder.appendingPathComponent("config.json")))
        let io = try SafeTensorsFile(url: folder.appendingPathComponent("io.safetensors"))
        let listed = try JSONSerialization.jsonObject(with: Data(io.metadata["state_dict"]!.utf8)) as! [String: [Int]]
        let own = model.stateDict()
        var dict: [String: Tensor] = [:]
        for (key, shape) in listed {
            dict[key] = isBuffer(key) ? (own[key] ?? Tensor.zeros(shape)).copy() : formulaWeight(key, shape)
        }
        try model.load(from: dict)  // strict: throws on any missing, unexpected or mis-shaped key
        return model
    }

    func check(_ name: String, formula: Bool, file: StaticString = #filePath, line: UInt = #line) throws {
        let net = try Self.model(name, formula: formula)
        let io = try SafeTensorsFile(url: Self.dir.appendingPathComponent(name).appendingPathComponent("io.safetensors"))
        let x = try io.tensor("input.sample")
        var cases = [("output", try io.tensor("input.timestep").scalars)]
        if io.entry("input.timestep_scalar") != nil { cases.append(("output_scalar", try io.tensor("input.timestep_scalar").scalars)) }
        for (key, t) in cases {
            let out = GradMode.withoutGrad { net(x, timesteps: t) }
            let want = try io.tensor(key)
            var worst: Float = 0
            for i in 0..<Swift.min(out.count, want.count) { worst = Swift.max(worst, Swift.abs(out.data[i] - want.data[i])) }
            print("UNet1D parity \(name) \(key): max abs error \(worst)")
            assertClose(out, want, atol: 1e-4, rtol: 0, "\(name) \(key)", file: file, line: line)
        }
    }

    func testDanceDiffusionLayout() throws { try check("dance", formula: true) }
    func testRLTemporalBlocksFromADiffusersFolder() throws { try check("rl_temporal", formula: false) }
    func testValueFunctionFromADiffusersFolder() throws { try check("value_function", formula: false) }
    func testLeanConfig() throws { try check("lean", formula: true) }

    func testLeanConfigIsTheGoldenOne() throws {
        let golden = try ConfigFile.read(UNet1DConfig.self, from: Self.dir.appendingPathComponent("lean/config.json"))
        var lean = UNet1DConfig.lean()
        lean.extra = golden.extra
        XCTAssertEqual(lean, golden)
        XCTAssertEqual(try UNet1DModel(config: lean).trainableParameterCount, 1_297_473)  // as its doc comment says
        XCTAssertEqual(lean.lengthMultiple, 128)
        var conditional = UNet1DConfig.lean(numClassEmbeds: 12)
        XCTAssertEqual(try UNet1DModel(config: conditional).trainableParameterCount, 1_297_473 + 12 * 16)
        XCTAssertEqual(conditional.numClassEmbeds, 12)
        conditional.numClassEmbeds = nil
        XCTAssertEqual(conditional, UNet1DConfig.lean())
    }

    func testFixedResamplingKernelsMatchDiffusers() throws {
        let io = try SafeTensorsFile(url: Self.dir.appendingPathComponent("kernels/io.safetensors"))
        let x = try io.tensor("input")
        for k in ResampleKernel1D.allCases {
            assertClose(KernelDownsample1d(k)(x), try io.tensor("output.down.\(k.rawValue)"), atol: 1e-6, rtol: 1e-5, "down \(k)")
            assertClose(KernelUpsample1d(k)(x), try io.tensor("output.up.\(k.rawValue)"), atol: 1e-6, rtol: 1e-5, "up \(k)")
        }
    }

    func testStrictLoadingReportsEveryBadKey() throws {
        let folder = Self.dir.appendingPathComponent("rl_temporal")
        let net = try UNet1DModel.load(folder)
        var dict = try [String: Tensor](uniqueKeysWithValues: SafeTensorsFile(url: folder.appendingPathComponent(UNet1DModel.weightsName))
            .names.map { ($0, try SafeTensorsFile(url: folder.appendingPathComponent(UNet1DModel.weightsName)).tensor($0)) })
        dict["mid_block.resnets.0.time_emb.weight"] = nil
        dict["up_blocks.9.resnets.0.conv_in.conv1d.weight"] = Tensor.zeros([1])
        dict["out_block.final_conv1d_2.bias"] = Tensor.zeros([3])
        XCTAssertThrowsError(try net.load(from: dict)) { e in
            guard let m = e as? CheckpointMismatch else { return XCTFail("\(e)") }
            XCTAssertEqual(m.missing, ["mid_block.resnets.0.time_emb.weight"])
            XCTAssertEqual(m.unexpected, ["up_blocks.9.resnets.0.conv_in.conv1d.weight"])
            XCTAssertEqual(m.mismatched.map(\.name), ["out_block.final_conv1d_2.bias"])
        }
        // A 2D model's folder is refused by its class name.
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("unet1d-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: tmp) }
        try Data(#"{"_class_name": "UNet2DModel"}"#.utf8).write(to: tmp)
        XCTAssertThrowsError(try UNet1DModel.load(tmp)) { XCTAssert("\($0)".contains("UNet2DModel"), "\($0)") }
    }

    func testSavedFolderReloadsToTheSameOutputs() throws {
        for (name, formula) in [("rl_temporal", false), ("dance", true)] {
            let src = try Self.model(name, formula: formula)
            let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("unet1d-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: tmp) }
            try src.save(to: tmp)
            let back = try UNet1DModel.load(tmp)
            XCTAssertEqual(Set(try SafeTensorsFile(url: tmp.appendingPathComponent(UNet1DModel.weightsName)).names),
                           Set(src.namedParameters().map(\.name)))
            let x = randomTensor([2, src.config.inChannels, src.config.minimumLength * 2], seed: 4)
            GradMode.withoutGrad { XCTAssertEqual(src(x, timesteps: [10, 3]).scalars, back(x, timesteps: [10, 3]).scalars, name) }
            // F16 weights load too, within half precision.
            try src.save(to: tmp, dtype: .F16)
            let half = try UNet1DModel.load(tmp)
            GradMode.withoutGrad { assertClose(half(x, timesteps: [10, 3]), src(x, timesteps: [10, 3]), atol: 2e-2, rtol: 0, name) }
        }
    }

    func testConfigRoundTripsAndKeepsUnknownKeys() throws {
        let url = Self.dir.appendingPathComponent("rl_temporal/config.json")
        var c = try ConfigFile.read(UNet1DConfig.self, from: url)
        XCTAssertEqual(c.timeEmbeddingType, .positional)
        XCTAssertEqual(c.freqShift, 1)
        XCTAssertEqual(c.actFn, .swish)
        XCTAssertEqual(c.outBlockType, .outConv1DBlock)
        XCTAssertEqual(c.lengthMultiple, 8)
        c.extra["a_future_key"] = .array([.number(1), .string("x")])
        let data = try JSONEncoder().encode(c)
        XCTAssertEqual(try JSONDecoder().decode(UNet1DConfig.self, from: data), c)
        let raw = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        XCTAssertEqual(raw["_class_name"] as? String, "UNet1DModel")
        XCTAssertNotNil(raw["a_future_key"])
        XCTAssertNil(raw["num_class_embeds"], "an unconditional config stays diffusers' own")
        c.numClassEmbeds = 5
        let back = try JSONDecoder().decode(UNet1DConfig.self, from: JSONEncoder().encode(c))
        XCTAssertEqual(back.numClassEmbeds, 5)
        let dance = try ConfigFile.read(UNet1DConfig.self, from: Self.dir.appendingPathComponent("dance/config.json"))
        XCTAssertEqual(dance.lengthMultiple, 8)
        XCTAssertEqual(dance.minimumLength, 24)
        XCTAssertEqual(dance.timeEmbedDim, 16)
    }

    func testImpossibleConfigsAreErrorsNamingTheKey() throws {
        /// A small RL config (valid once it has the time MLP and an activation) with `changes`.
        func rl(_ changes: [String: Any]) -> String {
            var c: [String: Any] = ["down_block_types": ["DownResnetBlock1D", "DownResnetBlock1D"],
                                    "up_block_types": ["UpResnetBlock1D"], "mid_block_type": "MidResTemporalBlock1D",
                                    "block_out_channels": [8, 16], "out_block_type": "OutConv1DBlock"]
            c.merge(changes) { _, new in new }
            return String(decoding: try! JSONSerialization.data(withJSONObject: c), as: UTF8.self)
        }
        let ok: [String: Any] = ["use_timestep_embedding": true, "act_fn": "mish"]
        XCTAssertNoThrow(try JSONDecoder().decode(UNet1DConfig.self, from: Data(rl(ok).utf8)))
        for (json, key) in [
            // diffusers' own defaults: the 64 Fourier channels need extra_in_channels 64.
            ("{}", "extra_in_channels"),
            (#"{"down_block_types": ["DownBlock1D"], "block_out_channels": [32, 32]}"#, "down_block_types"),
            (#"{"down_block_types": ["NoSuchBlock1D", "DownBlock1D", "AttnDownBlock1D"]}"#, "down_block_types"),
            (#"{"mid_block_type": null}"#, "mid_block_type"),
            (#"{"extra_in_channels": 64, "block_out_channels": [32, 32, 16]}"#, "block_out_channels"),  // attention under 32 wide
            (#"{"extra_in_channels": 64, "down_block_types": ["DownBlock1D", "DownBlock1DNoSkip", "AttnDownBlock1D"]}"#, "extra_in_channels"),
            (rl(["act_fn": "mish"]), "use_timestep_embedding"),
            (rl(["use_timestep_embedding": true]), "act_fn"),
            (rl(ok.merging(["up_block_types": [String]()]) { $1 }), "out_block_type"),
            (rl(ok.merging(["up_block_types": [String](), "out_block_type": NSNull()]) { $1 }), "out_channels"),
            (rl(ok.merging(["up_block_types": ["UpResnetBlock1D", "UpResnetBlock1D", "UpResnetBlock1D"]]) { $1 }), "up_block_types"),
            (rl(ok.merging(["block_out_channels": [8, 12]]) { $1 }), "block_out_channels"),
            (rl(ok.merging(["norm_num_groups": 3]) { $1 }), "norm_num_groups"),
            (rl(ok.merging(["mid_block_type": "UNetMidBlock1D"]) { $1 }), "block_out_channels"),
            (#"{"time_embedding_dim": 15, "extra_in_channels": 15}"#, "time_embedding_dim"),
            (#"{"sample_size": "long"}"#, "sample_size"),
        ] {
            XCTAssertThrowsError(try JSONDecoder().decode(UNet1DConfig.self, from: Data(json.utf8)), json) { e in
                XCTAssert("\(e)".contains(key), "\(json): \(e)")
            }
        }
    }
}
