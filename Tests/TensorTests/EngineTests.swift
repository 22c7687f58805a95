import XCTest
import Tensor
import TestSupport

/// Autograd mechanics, random numbers, threads and determinism.
final class EngineTests: XCTestCase {
    override func tearDown() { Threads.count = ProcessInfo.processInfo.activeProcessorCount }

    func testItemCopiesOneEntryOfTheFirstAxis() {
        let x = Tensor(shape: [3, 2, 2], scalars: (0..<12).map(Float.init))
        let one = x.item(1)
        XCTAssertEqual(one.shape, [2, 2])
        XCTAssertEqual(one.scalars, [4, 5, 6, 7])
        one.data[0] = -1
        XCTAssertEqual(x.scalars[4], 4, "a copy, not a view")
        XCTAssertEqual(Tensor(shape: [2], scalars: [7, 8]).item(1).scalars, [8])
    }

    func testNoGradModeRecordsNothing() {
        let w = Tensor.ones([3], requiresGrad: true)
        let y = GradMode.withoutGrad { (w * 2).exp() }
        XCTAssertFalse(y.requiresGrad)
        XCTAssertTrue(y.isLeaf)
        let z = (w * 2).exp()
        XCTAssertTrue(z.requiresGrad)
        XCTAssertFalse(z.isLeaf)
    }

    func testGradientsAccumulateAcrossBackwardCalls() {
        let w = Tensor(shape: [2], scalars: [1, 2], requiresGrad: true)
        (w * w).sum().backward()
        (w * 3).sum().backward()
        XCTAssertEqual(w.grad!.scalars, [2 + 3, 4 + 3])
        w.grad = nil
        (w.reshaped([2, 1]) * w).sum().backward()  // [2,1] x [2] -> [2,2]: each w used twice
        XCTAssertEqual(w.grad!.scalars, [2 * (1 + 2) - 1 + 1, 2 * (1 + 2) + 2 - 2 + 2 - 2].map { _ in 0 }.enumerated().map { i, _ in
            // d/dw_i sum_{a,b} w_a w_b = 2 * sum(w)
            Float(2 * 3)
        })
    }

    func testInputsWithoutGradGetNone() {
        let a = Tensor.ones([2], requiresGrad: true), b = Tensor.ones([2])
        (a * b).sum().backward()
        XCTAssertNotNil(a.grad)
        XCTAssertNil(b.grad)
    }

    func testRandomIsReproducibleAndBatchIndependent() {
        var g1 = RandomGenerator(seed: 42), g2 = RandomGenerator(seed: 42)
        let a = g1.normal([4, 3, 5]), b = g2.normal([4, 3, 5])
        XCTAssertEqual(a.scalars, b.scalars)
        // sample i depends only on (seed, draw, i): a batch of 2 is the first 2 of a batch of 4
        var g3 = RandomGenerator(seed: 42)
        XCTAssertEqual(g3.normal([2, 3, 5]).scalars, Array(a.scalars[0..<30]))
        // the next draw differs
        XCTAssertNotEqual(g1.normal([4, 3, 5]).scalars, a.scalars)
        // resuming from (seed, draws) continues the stream
        var g4 = RandomGenerator(seed: 42, draws: 1)
        var g5 = RandomGenerator(seed: 42)
        _ = g5.normal([1])
        XCTAssertEqual(g4.uniform([3, 7]).scalars, g5.uniform([3, 7]).scalars)
    }

    func testRandomDoesNotDependOnThreadCount() {
        Threads.count = 1
        var g1 = RandomGenerator(seed: 7)
        let a = g1.normal([3, 50_000])
        Threads.count = 2
        var g2 = RandomGenerator(seed: 7)
        XCTAssertEqual(a.scalars, g2.normal([3, 50_000]).scalars)
    }

    func testNormalStatistics() {
        var g = RandomGenerator(seed: 1)
        let x = g.normal([1, 200_000])
        let m = x.mean().item(), v = x.variance().item()
        XCTAssertEqual(m, 0, accuracy: 0.01)
        XCTAssertEqual(v, 1, accuracy: 0.01)
        let u = g.uniform([1, 200_000])
        XCTAssertEqual(u.mean().item(), 0.5, accuracy: 0.005)
        XCTAssert(u.scalars.allSatisfy { $0 >= 0 && $0 < 1 })
        let ints = g.integers(10_000, below: 7)
        XCTAssert(ints.allSatisfy { (0..<7).contains($0) })
        XCTAssertEqual(Set(ints).count, 7)
    }

    func testResultsAreDeterministicForAThreadCount() {
        func run() -> [Float] {
            let x = randomTensor([4, 8, 16, 16], seed: 5), w = randomTensor([8, 8, 3, 3], seed: 6)
            x.requiresGrad = true; w.requiresGrad = true
            let y = x.conv2d(w, padding: 1).groupNorm(groups: 4).silu()
            let q = y.reshaped([4, 8, 256]).transposed(1, 2)
            let loss = Tensor.multiHeadAttention(query: q, key: q, value: q, heads: 2).mean()
            loss.backward()
            return [loss.item()] + w.grad!.scalars + x.grad!.scalars
        }
        for t in [1, 2] {
            Threads.count = t
            XCTAssertEqual(run(), run(), "threads = \(t)")
        }
        Threads.count = 1
        let one = run()
        Threads.count = 2
        XCTAssertEqual(one[0], run()[0], accuracy: 1e-5)
    }

    func testGradientOfTheLeafSurvivesIntermediatesDoNot() {
        let w = Tensor.ones([3], requiresGrad: true)
        let h = w * 2
        let loss = h.sum()
        loss.backward()
        XCTAssertNil(h.grad)
        XCTAssertEqual(w.grad!.scalars, [2, 2, 2])
    }
}

final class BufferReuseTests: XCTestCase {
    func testInferenceReusesFreedBuffers() {
        GradMode.withoutGrad {
            let x = randomTensor([257, 3], seed: 1)
            // Each temporary dies at the end of its statement; the next one of that size gets its buffer.
            var seen = Set<UnsafeMutablePointer<Float>>()
            for _ in 0..<4 { seen.insert((x * 3).data) }
            XCTAssertEqual(seen.count, 1)
        }
    }
}
