import XCTest
import Foundation
import Tensor
import NN
import Diffusion
import Audio
import TestSupport

/// Backward of the whole model against finite differences, the class-conditional extension,
/// and the model inside the core trainer and sampler.
final class UNet1DTrainingTests: XCTestCase {
    /// Tiny RL-family config: positional time features through the MLP, 2 levels.
    static func tinyTemporal(classes: Int? = nil) -> UNet1DConfig {
        var c = UNet1DConfig()
        c.sampleSize = 16; c.inChannels = 2; c.outChannels = 2
        c.timeEmbeddingType = .positional; c.useTimestepEmbedding = true; c.actFn = .mish; c.freqShift = 1
        c.blockOutChannels = [8, 16]
        c.downBlockTypes = [.downResnetBlock1D, .downResnetBlock1D]; c.upBlockTypes = [.upResnetBlock1D]
        c.midBlockType = .midResTemporalBlock1D; c.outBlockType = .outConv1DBlock
        c.numClassEmbeds = classes
        return c
    }

    /// Tiny Dance-family config: Fourier features concatenated to the input, attention, kernel resamplers.
    static func tinyDance(classes: Int? = nil) -> UNet1DConfig {
        var c = UNet1DConfig()
        c.sampleSize = 16; c.inChannels = 1; c.outChannels = 1
        c.timeEmbeddingDim = 8; c.extraInChannels = 8
        c.blockOutChannels = [32, 32]
        c.downBlockTypes = [.downBlock1DNoSkip, .attnDownBlock1D]; c.upBlockTypes = [.attnUpBlock1D, .upBlock1DNoSkip]
        c.numClassEmbeds = classes
        return c
    }

    /// Σ out · r in Double, and the analytic gradient of the same sum for a few entries of the
    /// named parameters, against central differences.
    func checkGradients(_ model: UNet1DModel, x: Tensor, t: [Float], labels: [Int]?, names: [String],
                        h: Float = 1e-3, file: StaticString = #filePath, line: UInt = #line) {
        let params = model.stateDict()
        let y = model(x, timesteps: t, classLabels: labels)
        let r = randomTensor(y.shape, seed: 77)
        model.zeroGrad()
        (y * r).sum().backward()
        func loss() -> Double {
            GradMode.withoutGrad {
                let out = model(x, timesteps: t, classLabels: labels)
                return (0..<out.count).reduce(0.0) { $0 + Double(out.data[$1]) * Double(r.data[$1]) }
            }
        }
        var worst: Float = 0, largest: Float = 0
        defer { print("UNet1D gradient check: max |analytic − numeric| \(worst), max |gradient| \(largest)") }
        for name in names {
            guard let p = params[name] else { XCTFail("no parameter \(name)", file: file, line: line); continue }
            guard let g = p.grad else { XCTFail("\(name) got no gradient", file: file, line: line); continue }
            for j in Set([0, p.count / 2, p.count - 1]) {
                let v = p.data[j]
                p.data[j] = v + h
                let lp = loss()
                p.data[j] = v - h
                let lm = loss()
                p.data[j] = v
                let numeric = Float((lp - lm) / (2 * Double(h)))
                worst = Swift.max(worst, Swift.abs(g.data[j] - numeric)); largest = Swift.max(largest, Swift.abs(numeric))
                XCTAssertEqual(g.data[j], numeric, accuracy: 2e-3 + 2e-2 * Swift.abs(numeric), "\(name)[\(j)]", file: file, line: line)
            }
        }
    }

    func testBackwardMatchesFiniteDifferencesTemporalBlocks() throws {
        NNInit.seed(3)
        let model = try UNet1DModel(config: Self.tinyTemporal(classes: 3))
        checkGradients(model, x: randomTensor([2, 2, 16], seed: 1), t: [3, 600], labels: [2, 0], names: [
            "time_mlp.linear_1.weight", "class_embedding.weight",
            "down_blocks.0.resnets.0.conv_in.conv1d.weight", "down_blocks.0.resnets.0.conv_in.group_norm.weight",
            "down_blocks.0.resnets.0.time_emb.weight", "down_blocks.0.resnets.0.residual_conv.weight",
            "down_blocks.0.downsample.conv.weight", "mid_block.resnets.1.conv_out.conv1d.bias",
            "up_blocks.0.resnets.0.conv_in.conv1d.weight", "up_blocks.0.upsample.conv.weight",
            "out_block.final_conv1d_gn.weight", "out_block.final_conv1d_2.weight",
        ])
    }

    func testBackwardMatchesFiniteDifferencesDanceBlocks() throws {
        NNInit.seed(4)
        let model = try UNet1DModel(config: Self.tinyDance(classes: 2))
        checkGradients(model, x: randomTensor([2, 1, 16], seed: 2), t: [0.2, 0.7], labels: [1, 0], names: [
            "class_embedding.weight",
            "down_blocks.0.resnets.0.conv_skip.weight", "down_blocks.0.resnets.0.conv_1.weight",
            "down_blocks.1.resnets.1.group_norm_1.bias", "down_blocks.1.attentions.0.query.weight",
            "down_blocks.1.attentions.2.proj_attn.weight", "mid_block.resnets.5.conv_2.weight",
            "mid_block.attentions.3.value.bias", "up_blocks.0.resnets.0.conv_1.weight",
            "up_blocks.1.resnets.2.conv_2.bias",
        ])
        // The Fourier frequencies and the resampling kernels are not trained.
        let trainable = Set(model.trainableParameters().map { ObjectIdentifier($0) })
        for (name, p) in model.namedParameters() where name.hasSuffix(".kernel") || name == "time_proj.weight" {
            XCTAssertFalse(trainable.contains(ObjectIdentifier(p)), name)
        }
    }

    func testOneTimestepIsTheSameAsItRepeated() throws {
        NNInit.seed(5)
        for c in [Self.tinyTemporal(), Self.tinyDance()] {
            let model = try UNet1DModel(config: c)
            let x = randomTensor([3, c.inChannels, 16], seed: 3)
            GradMode.withoutGrad {
                XCTAssertEqual(model(x, timesteps: [7]).scalars, model(x, timesteps: [7, 7, 7]).scalars)
            }
        }
    }

    func testClassLabelsChangeTheOutputAndUnconditionalConfigsHaveNoClassEmbedding() throws {
        NNInit.seed(6)
        for c in [Self.tinyTemporal(classes: 3), Self.tinyDance(classes: 3)] {
            let model = try UNet1DModel(config: c)
            XCTAssertEqual(model.labelCount, 3)
            XCTAssertEqual(model.stateDict()["class_embedding.weight"]?.shape, [3, c.timeEmbedDim])
            let x = randomTensor([2, c.inChannels, 16], seed: 4)
            GradMode.withoutGrad {
                let a = model(x, timesteps: [10, 10], classLabels: [0, 0])
                let b = model(x, timesteps: [10, 10], classLabels: [1, 2])
                let gap = zip(a.scalars, b.scalars).map { Swift.abs($0 - $1) }.max()!
                XCTAssertGreaterThan(gap, 1e-3)
            }
            var plain = c
            plain.numClassEmbeds = nil
            let unconditional = try UNet1DModel(config: plain)
            XCTAssertNil(unconditional.labelCount)
            XCTAssertFalse(unconditional.namedParameters().contains { $0.name.hasPrefix("class_embedding") })
        }
    }

    /// The model plugs into the core's trainer and generation loop on [N, C, L], class labels
    /// and guidance included: two classes of constant signals (−0.5 and +0.5).
    func testTrainsAndSamplesThroughTheCore() throws {
        NNInit.seed(1)
        var c = Self.tinyTemporal(classes: 3)  // two classes and the null label
        c.inChannels = 1; c.outChannels = 1; c.sampleSize = 32
        let model = try UNet1DModel(config: c)
        var o = TrainerOptions()
        o.steps = 40; o.batchSize = 8; o.learningRate = 3e-3; o.warmupSteps = 0; o.emaDecay = 0
        let schedule = NoiseSchedule(numTrainTimesteps: 1000)
        let trainer = try Trainer(model: model, objective: DiffusionObjective(schedule: schedule, labelDropout: 0.1, nullLabel: 2),
                                  options: o)
        var losses: [Float] = []
        for _ in 0..<o.steps {
            losses.append(try trainer.trainStep { rng in
                let y = rng.integers(8, below: 2)
                let x = Tensor.zeros([8, 1, 32])
                for i in 0..<8 { for j in 0..<32 { x.data[i * 32 + j] = y[i] == 0 ? -0.5 : 0.5 } }
                return (x, y)
            }.loss)
        }
        let first = losses.prefix(10).reduce(0, +), last = losses.suffix(10).reduce(0, +)
        XCTAssertLessThan(last, first * 0.8, "\(losses)")
        let sampler = try makeSampler(SamplerName.ddim.config(from: SchedulerConfig(.ddpm)), steps: 5)
        let out = try Generation.sample(model: model, shape: [2, 1, 32], sampler: sampler, schedule: schedule, seed: 1,
                                        labels: [0, 1], guidance: Guidance(scale: 2, nullLabel: 2))
        XCTAssertEqual(out.shape, [2, 1, 32])
        XCTAssert(out.scalars.allSatisfy { $0.isFinite })
    }
}
