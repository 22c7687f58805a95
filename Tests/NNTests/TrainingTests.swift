import XCTest
import Foundation
import Tensor
import NN
import TestSupport

final class TrainingTests: XCTestCase {
    func testParameterNamesFollowDiffusers() {
        let r = ResnetBlock(inChannels: 4, outChannels: 8, tembChannels: 6, groups: 2)
        XCTAssertEqual(r.namedParameters().map(\.name), [
            "norm1.weight", "norm1.bias", "conv1.weight", "conv1.bias", "time_emb_proj.weight", "time_emb_proj.bias",
            "norm2.weight", "norm2.bias", "conv2.weight", "conv2.bias", "conv_shortcut.weight", "conv_shortcut.bias",
        ])
        let a = Attention(channels: 8, attentionHeadDim: nil, normNumGroups: 2, eps: 1e-6)
        XCTAssertEqual(a.heads, 1)
        XCTAssertEqual(a.namedParameters().map(\.name), [
            "group_norm.weight", "group_norm.bias", "to_q.weight", "to_q.bias", "to_k.weight", "to_k.bias",
            "to_v.weight", "to_v.bias", "to_out.0.weight", "to_out.0.bias",
        ])
        let t = TimestepEmbedding(inChannels: 4, timeEmbedDim: 8)
        XCTAssertEqual(t.namedParameters().map(\.name), ["linear_1.weight", "linear_1.bias", "linear_2.weight", "linear_2.bias"])
        XCTAssertEqual(Downsample(channels: 4, useConv: true).namedParameters().map(\.name), ["conv.weight", "conv.bias"])
        XCTAssertEqual(Downsample(channels: 4, useConv: false).namedParameters().count, 0)
    }

    func testOneDimensionalBlocksShareTheTwoDimensionalCode() {
        NNInit.seed(8)
        let r = ResnetBlock(dims: 1, inChannels: 4, outChannels: 6, tembChannels: 5, groups: 2,
                            timeEmbeddingNorm: .scaleShift)
        let x = randomTensor([2, 4, 16], seed: 1), t = randomTensor([2, 5], seed: 2)
        XCTAssertEqual(r(x, temb: t).shape, [2, 6, 16])
        XCTAssertEqual(r.conv1.namedParameters().first?.tensor.shape, [6, 4, 3])
        XCTAssertEqual(Downsample(dims: 1, channels: 6, useConv: true)(r(x, temb: t)).shape, [2, 6, 8])
        XCTAssertEqual(Downsample(dims: 1, channels: 4, useConv: false)(x).shape, [2, 4, 8])
        XCTAssertEqual(Upsample(dims: 1, channels: 4, useConv: true)(x).shape, [2, 4, 32])
        let down = ResnetBlock(dims: 1, inChannels: 4, outChannels: 4, tembChannels: nil, groups: 2, down: true)
        XCTAssertEqual(down(x, temb: nil).shape, [2, 4, 8])
        // Gradients reach every parameter of the 1D block.
        r(x, temb: t).square().mean().backward()
        for (name, p) in r.namedParameters() { XCTAssertNotNil(p.grad, name) }
    }

    func testDefaultInitialisationBounds() {
        NNInit.seed(5)
        let l = Linear(50, 20)
        let bound = 1 / Float(50).squareRoot()
        XCTAssert(l.weight.scalars.allSatisfy { Swift.abs($0) <= bound })
        XCTAssert(l.weight.scalars.contains { Swift.abs($0) > 0.8 * bound })
        let c = Conv2d(3, 4, kernelSize: 3)
        XCTAssert(c.weight.scalars.allSatisfy { Swift.abs($0) <= 1 / Float(27).squareRoot() })
        let g = GroupNorm(groups: 2, channels: 4)
        XCTAssertEqual(g.weight!.scalars, [1, 1, 1, 1])
        XCTAssertEqual(g.bias!.scalars, [0, 0, 0, 0])
        NNInit.seed(5)
        XCTAssertEqual(Linear(50, 20).weight.scalars, l.weight.scalars, "same seed, same weights")
    }

    func testDropoutFollowsTrainingMode() {
        let r = ResnetBlock(inChannels: 4, outChannels: 4, tembChannels: nil, groups: 2, dropout: 0.5)
        let x = randomTensor([1, 4, 6, 6], seed: 1)
        r.setTraining(false)
        XCTAssertEqual(r(x, temb: nil).scalars, r(x, temb: nil).scalars)
        r.setTraining(true)
        XCTAssertFalse(r.dropout.isTraining == false)
        XCTAssertNotEqual(r(x, temb: nil).scalars, r(x, temb: nil).scalars)
    }

    func testLRSchedules() {
        XCTAssertEqual(LRSchedule.constant.factor(at: 100), 1)
        XCTAssertEqual(LRSchedule.constantWithWarmup(warmup: 10).factor(at: 5), 0.5)
        let lin = LRSchedule.linear(warmup: 10, total: 110)
        XCTAssertEqual(lin.factor(at: 0), 0)
        XCTAssertEqual(lin.factor(at: 10), 1)
        XCTAssertEqual(lin.factor(at: 60), 0.5, accuracy: 1e-12)
        XCTAssertEqual(lin.factor(at: 200), 0)
        let cos = LRSchedule.cosine(warmup: 10, total: 110)
        XCTAssertEqual(cos.factor(at: 10), 1, accuracy: 1e-12)
        XCTAssertEqual(cos.factor(at: 60), 0.5, accuracy: 1e-12)
        XCTAssertEqual(cos.factor(at: 110), 0, accuracy: 1e-12)
    }

    func testClipGradNorm() {
        let a = Tensor.zeros([2], requiresGrad: true), b = Tensor.zeros([1], requiresGrad: true)
        a.grad = Tensor(shape: [2], scalars: [3, 0])
        b.grad = Tensor(shape: [1], scalars: [4])
        let n = clipGradNorm([a, b], maxNorm: 1)
        XCTAssertEqual(n, 5, accuracy: 1e-6)
        XCTAssertEqual(a.grad!.data[0], 3 / (5 + 1e-6), accuracy: 1e-6)
        XCTAssertEqual(b.grad!.data[0], 4 / (5 + 1e-6), accuracy: 1e-6)
        XCTAssertEqual(clipGradNorm([a, b], maxNorm: 10), 1, accuracy: 1e-5)  // below the limit: unchanged
        XCTAssertEqual(b.grad!.data[0], 4 / (5 + 1e-6), accuracy: 1e-6)
    }

    func testGradientAccumulationEqualsOneBigBatch() {
        NNInit.seed(6)
        let l = Linear(3, 2)
        let x = randomTensor([4, 3], seed: 2)
        l((x)).square().mean().backward()
        let full = l.weight.grad!.scalars
        l.zeroGrad()
        for half in x.chunked(2, axis: 0) { (l(half).square().mean() * 0.5).backward() }
        XCTAssertEqual(l.weight.grad!.scalars, full, accuracy: 1e-6)
    }

    func testAdamWLearnsALine() {
        NNInit.seed(7)
        let l = Linear(1, 1)
        let opt = AdamW(l.trainableParameters(), learningRate: 0.05, weightDecay: 0)
        let x = Tensor(shape: [8, 1], scalars: (0..<8).map { Float($0) / 4 - 1 })
        let y = x * 3 + 0.5
        for _ in 0..<600 {
            l.zeroGrad()
            (l(x) - y).square().mean().backward()
            opt.step()
        }
        XCTAssertEqual(l.weight.item(), 3, accuracy: 0.02)
        XCTAssertEqual(l.bias!.item(), 0.5, accuracy: 0.02)
        // State round trip: a restored optimizer continues identically.
        let state = opt.stateDict().mapValues { $0.copy() }
        let opt2 = AdamW(l.trainableParameters(), learningRate: 0.05, weightDecay: 0)
        XCTAssertNoThrow(try opt2.loadState(state))
        XCTAssertEqual(opt2.stepCount, 600)
    }

    func testEMADecaySchedule() {
        let p = Tensor.zeros([2], requiresGrad: true)
        let ema = EMA(parameters: [p], decay: 0.999, updateAfterStep: 2, useWarmup: true, invGamma: 1, power: 2.0 / 3)
        XCTAssertEqual(ema.decay(at: 3), 0)
        XCTAssertEqual(ema.decay(at: 4), 1 - pow(2.0, -2.0 / 3), accuracy: 1e-12)
        let plain = EMA(parameters: [p], decay: 0.5)
        XCTAssertEqual(plain.decay(at: 2), 2.0 / 11, accuracy: 1e-12)
        XCTAssertEqual(plain.decay(at: 100), 0.5)
    }
}

private func XCTAssertEqual(_ a: [Float], _ b: [Float], accuracy: Float, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, file: file, line: line)
    for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: accuracy, file: file, line: line) }
}
