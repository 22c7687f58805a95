import XCTest
import Foundation
@testable import Evaluation
import Tensor
import NN
import Image

final class ProbeTests: XCTestCase {
    func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-eval-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    /// Two classes a translation-invariant probe can tell apart: a horizontal or a vertical bar
    /// (6 pixels) anywhere in a 16×16 image.
    func bars(_ n: Int, seed: UInt64) -> (Tensor, [Int]) {
        var rng = SplitMix64(seed: seed)
        let x = Tensor.full([n, 1, 16, 16], -1)
        var labels: [Int] = []
        for i in 0..<n {
            let c = i % 2
            let a = rng.below(16), b = rng.below(11)
            for k in 0..<6 { x.data[i * 256 + (c == 0 ? a * 16 + b + k : (b + k) * 16 + a)] = 1 }
            labels.append(c)
        }
        return (x, labels)
    }

    func testCrossEntropyAndItsGradient() {
        let logits = Tensor(shape: [2, 3], scalars: [1, 2, 3, -1, 0, 5], requiresGrad: true)
        let loss = crossEntropy(logits, [2, 0])
        var want = 0.0
        var softmax: [[Double]] = []
        for (i, label) in [2, 0].enumerated() {
            let z = (0..<3).map { Double(logits.data[i * 3 + $0]) }
            let sum = z.reduce(0) { $0 + exp($1) }
            want += log(sum) - z[label]
            softmax.append(z.map { exp($0) / sum })
        }
        XCTAssertEqual(Double(loss.item()), want / 2, accuracy: 1e-5)
        loss.backward()
        for (i, label) in [2, 0].enumerated() {
            for j in 0..<3 {  // d loss / d z = (softmax − onehot) / N
                XCTAssertEqual(Double(logits.grad!.data[i * 3 + j]), (softmax[i][j] - (j == label ? 1 : 0)) / 2, accuracy: 1e-6)
            }
        }
    }

    func testShiftedBatchMovesImagesAndRepeatsEdges() {
        let x = Tensor(shape: [1, 1, 3, 3], scalars: [1, 2, 3, 4, 5, 6, 7, 8, 9])
        XCTAssertEqual(ImageProbe.shiftedBatch(x, [0], shifts: [(1, 0)]).scalars, [1, 2, 3, 1, 2, 3, 4, 5, 6])
        XCTAssertEqual(ImageProbe.shiftedBatch(x, [0], shifts: [(0, -1)]).scalars, [2, 3, 3, 5, 6, 6, 8, 9, 9])
        XCTAssertEqual(ImageProbe.shiftedBatch(x, [0, 0], shifts: [(0, 0), (0, 0)]).scalars, x.scalars + x.scalars)
    }

    func testTrainingIsSeededAndLearnsAnEasyTask() {
        let (x, y) = bars(64, seed: 1)
        let config = ImageProbeConfig(channels: 1, size: 16, classNames: ["horizontal", "vertical"], widths: [8, 16, 16])
        var training = ProbeTraining()
        training.steps = 40
        training.batchSize = 16
        let a = ImageProbe.train(images: x, labels: y, config: config, training: training, seed: 3)
        let b = ImageProbe.train(images: x, labels: y, config: config, training: training, seed: 3)
        for ((name, ta), (_, tb)) in zip(a.namedParameters(), b.namedParameters()) {
            XCTAssertEqual(ta.scalars, tb.scalars, "\(name) differs between two runs with one seed")
        }
        XCTAssertEqual(a.record?.steps, 40)
        let (tx, ty) = bars(64, seed: 2)
        XCTAssertGreaterThan(a.accuracy(tx, labels: ty), 0.9)
        let c = ImageProbe.train(images: x, labels: y, config: config, training: training, seed: 4)
        XCTAssertNotEqual(c.namedParameters()[0].tensor.scalars, a.namedParameters()[0].tensor.scalars)
    }

    func testSaveLoadRoundTrip() throws {
        let dir = try temporaryDirectory()
        let (x, y) = bars(16, seed: 5)
        let config = ImageProbeConfig(channels: 1, size: 16, classNames: ["a", "b"], widths: [8, 16], groups: 4)
        var training = ProbeTraining()
        training.steps = 3
        let probe = ImageProbe.train(images: x, labels: y, config: config, training: training, seed: 1)
        try probe.save(to: dir)
        let back = try ImageProbe.load(from: dir)
        XCTAssertEqual(back.config, config)
        XCTAssertEqual(back.record, probe.record)
        let (f1, p1) = probe.embed(x), (f2, p2) = back.embed(x)
        XCTAssertEqual(f1.scalars, f2.scalars)
        XCTAssertEqual(p1, p2)
        XCTAssertEqual(f1.shape, [16, 16])

        // A probe of another shape does not load these weights: every mismatch is named.
        var other = config
        other.widths = [8, 32]
        try ProbeFiles.writeConfig(other, record: nil, to: dir)
        XCTAssertThrowsError(try ImageProbe.load(from: dir)) { error in
            XCTAssert("\(error)".contains("stages.1.conv.weight"), "\(error)")
        }
        // Broken or impossible descriptions are errors naming the file.
        try Data("{".utf8).write(to: dir.appendingPathComponent(ImageProbe.configName))
        XCTAssertThrowsError(try ImageProbe.load(from: dir)) { XCTAssert("\($0)".contains("probe.json"), "\($0)") }
        other.channels = 2
        try ProbeFiles.writeConfig(other, record: nil, to: dir)
        XCTAssertThrowsError(try ImageProbe.load(from: dir)) { XCTAssert("\($0)".contains("channels"), "\($0)") }
    }

    func testEvaluationRunsOnTheSmallestSets() throws {
        func set(_ n: Int, seed: UInt64) -> LabelledImages {
            let (x, y) = bars(n, seed: seed)
            return LabelledImages(images: x, classNames: ["horizontal", "vertical"], labels: y.map { Optional($0) },
                                  source: "bars\(n)", contentKey: "bars\(n)-\(seed)")
        }
        var options = ImageEvaluationOptions()
        options.probeTraining.steps = 3
        options.probeWidths = [8, 16]
        options.cacheDirectory = nil
        let r = try ImageEvaluation.run(real: set(16, seed: 1), generated: set(4, seed: 2), test: nil, options: options)
        XCTAssertEqual(r.probe.trainedOn, 8)
        XCTAssertEqual(r.fd.compared, 4)
        XCTAssert(r.fd.generated.isFinite && r.kid.generated.mean.isFinite && r.memorisation.share.isFinite)
        XCTAssertThrowsError(try ImageEvaluation.run(real: set(15, seed: 1), generated: set(4, seed: 2), test: nil, options: options)) {
            XCTAssert("\($0)".contains("at least 16"), "\($0)")
        }
    }

    /// A probe trained on 600 Fashion-MNIST images recognises held-out test images far above
    /// chance (10 %).
    func testProbeLearnsFashionMNIST() throws {
        guard FileManager.default.fileExists(atPath: FashionMNIST.defaultDirectory.appendingPathComponent("train-images-idx3-ubyte.gz").path) else {
            throw XCTSkip("Fashion-MNIST is not installed (dataset-fashion-mnist)")
        }
        let train = try ImageSource.load("builtin:fashion-mnist", channels: nil, size: 32, limit: 600, seed: 1)
        let test = try ImageSource.load("builtin:fashion-mnist-test", channels: nil, size: 32, limit: 500, seed: 2)
        let config = ImageProbeConfig(channels: 1, size: 32, classNames: train.classNames)
        var training = ProbeTraining()
        training.steps = 150
        let start = Date()
        let probe = ImageProbe.train(images: train.images, labels: train.labels.map { $0! }, config: config,
                                     training: training, seed: 0)
        let seconds = Date().timeIntervalSince(start)
        let accuracy = probe.accuracy(test.images, labels: test.labels.map { $0! })
        print(String(format: "probe: 600 images, 150 steps in %.1f s, test accuracy %.3f", seconds, accuracy))
        XCTAssertGreaterThan(accuracy, 0.6)
        XCTAssertEqual(probe.featureDimension, 128)
    }
}

/// Writes a probe.json by hand (to test what loading does with it).
enum ProbeFiles {
    static func writeConfig(_ config: ImageProbeConfig, record: ProbeRecord?, to dir: URL) throws {
        try ConfigFile.write(ImageProbe.FileContents(config: config, record: record), to: dir.appendingPathComponent(ImageProbe.configName))
    }
}
