import XCTest
import Foundation
import Tensor
import NN
import Image
import TestSupport

/// UNet2DModel against diffusers (goldens from Tests/References/make_unet2d_goldens.py):
/// same inputs, outputs within 1e-4 max abs.
final class UNet2DParityTests: XCTestCase {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Goldens")

    /// The generator's `formula_weight`: a·(2u − 1), u from splitmix64 of (index + 1000003·Σ bytes(name));
    /// a = 1/√fan_in for matrices and kernels, 0.05 for vectors; norm weights 1 + that.
    static func formulaWeights(_ model: any Module) {
        for (name, t) in model.namedParameters() {
            let seed = UInt64(1_000_003 * name.utf8.reduce(0) { $0 + Int($1) })
            let isNormWeight = name.contains("norm") && name.hasSuffix("weight")
            let fanIn = t.rank >= 2 ? t.shape.dropFirst().reduce(1, *) : 0
            let a = fanIn > 0 ? 1 / Double(fanIn).squareRoot() : 0.05
            for i in 0..<t.count {
                var x = (UInt64(i) &+ seed) &* 0x9E37_79B9_7F4A_7C15
                x ^= x >> 30; x = x &* 0xBF58_476D_1CE4_E5B9
                x ^= x >> 27; x = x &* 0x94D0_49BB_1331_11EB
                x ^= x >> 31
                let v = a * (2 * Double(x >> 40) / 16_777_216 - 1)
                t.data[i] = Float(isNormWeight ? 1 + v : v)
            }
        }
    }

    func check(_ name: String, formula: Bool, file: StaticString = #filePath, line: UInt = #line) throws {
        let folder = Self.dir.appendingPathComponent(name)
        let model: UNet2DModel
        if formula {
            model = try UNet2DModel(config: try ConfigFile.read(UNet2DConfig.self, from: folder.appendingPathComponent("config.json")))
            Self.formulaWeights(model)
        } else {
            model = try UNet2DModel.load(folder)  // a folder diffusers saved
        }
        let io = try SafeTensorsFile(url: folder.appendingPathComponent("io.safetensors"))
        let labels = io.entry("input.class_labels") == nil ? nil : try io.integers("input.class_labels")
        let out = GradMode.withoutGrad {
            model(try! io.tensor("input.sample"), timesteps: try! io.tensor("input.timestep").scalars, classLabels: labels)
        }
        let want = try io.tensor("output")
        var worst: Float = 0
        for i in 0..<want.count { worst = Swift.max(worst, Swift.abs(out.data[i] - want.data[i])) }
        print("UNet2D parity \(name): max abs error \(worst)")
        assertClose(out, want, atol: 1e-4, rtol: 0, name, file: file, line: line)
    }

    func testDDPMCifar10Config() throws { try check("ddpm_cifar10", formula: true) }
    func testClassConditionalFashionConfig() throws { try check("fmnist_class", formula: true) }
    func testScaleShiftResnetResamplers() throws { try check("small_scale_shift", formula: false) }
    func testFourierResnetResamplersMish() throws { try check("small_fourier_resnet", formula: false) }
    func testTimestepClassEmbeddingWithoutMidAttention() throws { try check("small_timestep_class", formula: false) }

    func testConfigRoundTripsAndKeepsUnknownKeys() throws {
        let url = Self.dir.appendingPathComponent("ddpm_cifar10/config.json")
        var c = try ConfigFile.read(UNet2DConfig.self, from: url)
        XCTAssertEqual(c.freqShift, 1)
        XCTAssertEqual(c.flipSinToCos, false)
        XCTAssertNil(c.attentionHeadDim)
        XCTAssertEqual(c.downsamplePadding, 0)
        c.extra["a_future_key"] = .array([.number(1), .string("x")])
        let data = try JSONEncoder().encode(c)
        let back = try JSONDecoder().decode(UNet2DConfig.self, from: data)
        XCTAssertEqual(back, c)
        let raw = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        XCTAssertEqual(raw["_class_name"] as? String, "UNet2DModel")
        XCTAssertNotNil(raw["a_future_key"])
    }

    func testSavedFolderReloadsToTheSameOutputs() throws {
        let src = try UNet2DModel.load(Self.dir.appendingPathComponent("small_scale_shift"))
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("unet-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: tmp) }
        try src.save(to: tmp)
        let back = try UNet2DModel.load(tmp)
        let x = randomTensor([1, 2, 16, 16], seed: 4)
        GradMode.withoutGrad { XCTAssertEqual(src(x, timesteps: [10]).scalars, back(x, timesteps: [10]).scalars) }
        // F16 weights load too, within half precision.
        try src.save(to: tmp, dtype: .F16)
        let half = try UNet2DModel.load(tmp)
        GradMode.withoutGrad { assertClose(half(x, timesteps: [10]), src(x, timesteps: [10]), atol: 2e-2, rtol: 0) }
    }

    func testBadConfigsAreErrorsNamingTheKey() throws {
        for (json, key) in [(#"{"block_out_channels": [8, 16], "down_block_types": ["DownBlock2D"]}"#, "down_block_types"),
                            (#"{"down_block_types": ["NoSuchBlock2D"]}"#, "down_block_types"),
                            (#"{"norm_num_groups": 7, "block_out_channels": [8], "down_block_types": ["DownBlock2D"], "up_block_types": ["UpBlock2D"]}"#, "norm_num_groups"),
                            (#"{"sample_size": "big"}"#, "sample_size")] {
            XCTAssertThrowsError(try JSONDecoder().decode(UNet2DConfig.self, from: Data(json.utf8)), json) { e in
                XCTAssert("\(e)".contains(key), "\(json): \(e)")
            }
        }
    }

    func testGradientsFlowToEveryParameter() throws {
        let model = try UNet2DModel.load(Self.dir.appendingPathComponent("small_timestep_class"))
        let x = randomTensor([2, 3, 8, 8], seed: 1)
        model(x, timesteps: [5, 700], classLabels: [1, 2]).square().mean().backward()
        for (name, p) in model.namedParameters() where p.requiresGrad {
            XCTAssertNotNil(p.grad, name)
        }
    }
}

import Diffusion

final class UNet2DTrainingTests: XCTestCase {
    /// The U-Net plugs into the core's trainer and generation loop like any DiffusionModel.
    func testUNetTrainsAndSamplesThroughTheCore() throws {
        var c = UNet2DConfig()
        c.sampleSize = [8, 8]; c.inChannels = 1; c.outChannels = 1
        c.blockOutChannels = [8, 16]; c.downBlockTypes = [.downBlock2D, .attnDownBlock2D]
        c.upBlockTypes = [.attnUpBlock2D, .upBlock2D]; c.layersPerBlock = 1; c.normNumGroups = 4
        c.attentionHeadDim = 4; c.numClassEmbeds = 3
        NNInit.seed(1)
        let model = try UNet2DModel(config: c)
        var o = TrainerOptions()
        o.steps = 30; o.batchSize = 8; o.learningRate = 2e-3; o.warmupSteps = 0; o.emaDecay = 0
        let schedule = NoiseSchedule(numTrainTimesteps: 1000)
        let trainer = try Trainer(model: model, objective: DiffusionObjective(schedule: schedule, labelDropout: 0.1, nullLabel: 2),
                                  options: o)
        // Two classes of flat images: −0.5 and +0.5.
        var losses: [Float] = []
        for _ in 0..<o.steps {
            losses.append(try trainer.trainStep { rng in
                let y = rng.integers(8, below: 2)
                let x = Tensor.zeros([8, 1, 8, 8])
                for i in 0..<8 { for j in 0..<64 { x.data[i * 64 + j] = y[i] == 0 ? -0.5 : 0.5 } }
                return (x, y)
            }.loss)
        }
        XCTAssertLessThan(losses.suffix(5).reduce(0, +), losses.prefix(5).reduce(0, +))
        let sampler = try makeSampler(SamplerName.ddim.config(from: SchedulerConfig(.ddpm)), steps: 5)
        let out = try Generation.sample(model: model, shape: [2, 1, 8, 8], sampler: sampler, schedule: schedule, seed: 1,
                                        labels: [0, 1], guidance: Guidance(scale: 2, nullLabel: 2))
        XCTAssertEqual(out.shape, [2, 1, 8, 8])
        XCTAssert(out.scalars.allSatisfy { $0.isFinite })
    }
}
