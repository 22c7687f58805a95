import XCTest
import Foundation
import Tensor
import NN
import Diffusion
import TestSupport

final class TrainerTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("trainer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func makeTrainer(labels: Bool = false) throws -> Trainer {
        NNInit.seed(3)
        let model = ToyDenoiser(labels: labels ? 9 : nil)
        var o = TrainerOptions()
        o.steps = 40; o.batchSize = 32; o.learningRate = 1e-3; o.warmupSteps = 5; o.emaDecay = 0.99
        o.gradientAccumulation = 2; o.seed = 11
        let objective = DiffusionObjective(schedule: NoiseSchedule(numTrainTimesteps: 100), prediction: .vPrediction,
                                           minSNRGamma: 5, offsetNoise: 0.05,
                                           labelDropout: labels ? 0.2 : 0, nullLabel: labels ? 8 : nil)
        return try Trainer(model: model, objective: objective, options: o)
    }

    func batch(_ rng: inout RandomGenerator) -> (Tensor, [Int]?) {
        let (x, y) = eightGaussians(32, rng: &rng)
        return (x, y)
    }

    func testResumedRunEqualsAnUninterruptedOne() throws {
        let straight = try makeTrainer(labels: true)
        for _ in 0..<20 { try straight.trainStep(batch: batch) }

        let first = try makeTrainer(labels: true)
        for _ in 0..<8 { try first.trainStep(batch: batch) }
        let saved = try first.saveCheckpoint(in: dir)
        XCTAssertEqual(saved.lastPathComponent, "checkpoint-8")
        XCTAssertEqual(Trainer.latestCheckpoint(in: dir)?.standardizedFileURL.path, saved.standardizedFileURL.path)

        let resumed = try makeTrainer(labels: true)  // fresh weights, as after a crash
        try resumed.resume(from: Trainer.latestCheckpoint(in: dir)!)
        XCTAssertEqual(resumed.step, 8)
        for _ in 8..<20 { try resumed.trainStep(batch: batch) }
        for ((n, a), (_, b)) in zip(straight.model.namedParameters(), resumed.model.namedParameters()) {
            XCTAssertEqual(a.scalars, b.scalars, "\(n) differs after resume")
        }
        for (a, b) in zip(straight.ema!.shadow, resumed.ema!.shadow) { XCTAssertEqual(a.scalars, b.scalars) }
    }

    func testCheckpointsAreKeptAndOldOnesPruned() throws {
        let t = try makeTrainer()
        for k in 1...4 {
            try t.trainStep(batch: batch)
            try t.saveCheckpoint(in: dir, keep: 2)
            XCTAssertEqual(Trainer.latestCheckpoint(in: dir)?.lastPathComponent, "checkpoint-\(k)")
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        XCTAssertEqual(names, ["checkpoint-3", "checkpoint-4", "latest"], "no temporary folders or old checkpoints left")
        // A damaged checkpoint is an error naming the file, not a crash.
        try Data("{".utf8).write(to: dir.appendingPathComponent("checkpoint-4/trainer_state.json"))
        XCTAssertThrowsError(try makeTrainer().resume(from: dir.appendingPathComponent("checkpoint-4"))) { e in
            XCTAssert("\(e)".contains("trainer_state.json"), "\(e)")
        }
        try Data([1, 2, 3]).write(to: dir.appendingPathComponent("checkpoint-3/training_state.safetensors"))
        XCTAssertThrowsError(try makeTrainer().resume(from: dir.appendingPathComponent("checkpoint-3"))) { e in
            XCTAssert("\(e)".contains("training_state.safetensors"), "\(e)")
        }
    }

    func testObjectivePieces() throws {
        // Label dropout replaces about p of the labels with the null label.
        final class Spy: DiffusionModel {
            var seen: [Int] = []
            let w = Linear(2, 2)
            var labelCount: Int? { 9 }
            func visit(_ v: inout ModuleVisitor) { v("w", w) }
            func predict(_ x: Tensor, timesteps: [Float], labels: [Int]?) -> Tensor { seen += labels ?? []; return w(x) }
        }
        let spy = Spy()
        let obj = DiffusionObjective(schedule: NoiseSchedule(numTrainTimesteps: 1000), labelDropout: 0.25, nullLabel: 8)
        var rng = RandomGenerator(seed: 1)
        let x = Tensor.zeros([4000, 2])
        _ = obj.loss(spy, x0: x, labels: [Int](repeating: 3, count: 4000), rng: &rng)
        let dropped = Double(spy.seen.filter { $0 == 8 }.count) / 4000
        XCTAssertEqual(dropped, 0.25, accuracy: 0.03)
        XCTAssert(spy.seen.allSatisfy { $0 == 3 || $0 == 8 })

        // min-SNR-γ with ε-prediction only ever down-weights: the weighted loss is at most the plain one.
        let plain = DiffusionObjective(schedule: NoiseSchedule(numTrainTimesteps: 1000))
        var weighted = plain
        weighted.minSNRGamma = 5
        var r1 = RandomGenerator(seed: 2), r2 = RandomGenerator(seed: 2)
        let data = randomTensor([256, 2], seed: 3)
        let l1 = plain.loss(spy, x0: data, labels: nil, rng: &r1).item()
        let l2 = weighted.loss(spy, x0: data, labels: nil, rng: &r2).item()
        XCTAssertLessThan(l2, l1)
    }

    func testRecipeOptionsValidate() throws {
        let o = try JSONDecoder().decode(TrainerOptions.self, from: Data(#"{"steps": 50, "learning_rate": 0.001, "lr_schedule": "linear"}"#.utf8))
        XCTAssertEqual(o.steps, 50)
        XCTAssertEqual(o.lrSchedule, "linear")
        XCTAssertEqual(o.batchSize, TrainerOptions().batchSize)
        XCTAssertThrowsError(try JSONDecoder().decode(TrainerOptions.self, from: Data(#"{"lr_schedule": "wavy"}"#.utf8))) { e in
            XCTAssert("\(e)".contains("lr_schedule"), "\(e)")
        }
        XCTAssertThrowsError(try JSONDecoder().decode(TrainerOptions.self, from: Data(#"{"batch_size": 0}"#.utf8)))
    }
}

final class TrainerRunTests: XCTestCase {
    func testRunCheckpointsCallsBackAndResumesAfterAStop() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("run-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        func trainer() throws -> Trainer {
            NNInit.seed(5)
            var o = TrainerOptions()
            o.steps = 12; o.batchSize = 16; o.warmupSteps = 2; o.checkpointEvery = 5; o.emaDecay = 0.9; o.seed = 3
            return try Trainer(model: ToyDenoiser(), objective: DiffusionObjective(schedule: NoiseSchedule(numTrainTimesteps: 50)),
                               options: o)
        }
        let batch: (inout RandomGenerator) throws -> (Tensor, [Int]?) = { rng in (eightGaussians(16, rng: &rng).0, nil) }
        // An uninterrupted run.
        let straight = try trainer()
        try straight.run(checkpointDir: nil, batch: batch)
        // A run stopped after step 7 (as by a signal), then started again with the same command.
        var previews: [Int] = []
        let first = try trainer()
        try first.run(checkpointDir: dir, batch: batch, periodic: [.init(every: 3) { _, r in previews.append(r.step) }]) { $0.step < 7 }
        XCTAssertEqual(first.step, 7)
        XCTAssertEqual(Trainer.latestCheckpoint(in: dir)?.lastPathComponent, "checkpoint-7")
        XCTAssertEqual(previews, [3, 6])
        let second = try trainer()
        try second.run(checkpointDir: dir, batch: batch)
        XCTAssertEqual(second.step, 12)
        XCTAssertEqual(Trainer.latestCheckpoint(in: dir)?.lastPathComponent, "checkpoint-12")
        for ((n, a), (_, b)) in zip(straight.model.namedParameters(), second.model.namedParameters()) {
            XCTAssertEqual(a.scalars, b.scalars, n)
        }
    }
}
