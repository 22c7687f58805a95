import XCTest
import Foundation
@testable import Evaluation
import Tensor

/// Samples [n, d] with column j ~ N(mean[j], std[j]²).
func gaussian(_ n: Int, _ d: Int, seed: UInt64, mean: [Float]? = nil, std: [Float]? = nil) -> Tensor {
    var rng = RandomGenerator(seed: seed)
    let x = rng.normal([n, d])
    for i in 0..<n {
        for j in 0..<d { x.data[i * d + j] = x.data[i * d + j] * (std?[j] ?? 1) + (mean?[j] ?? 0) }
    }
    return x
}

/// A random symmetric n×n matrix (row-major Doubles).
func randomSymmetric(_ n: Int, seed: UInt64) -> [Double] {
    var rng = SplitMix64(seed: seed)
    var a = [Double](repeating: 0, count: n * n)
    for i in 0..<n {
        for j in i..<n {
            let v = Double(rng.next() >> 11) / Double(1 << 53) * 2 - 1
            a[i * n + j] = v; a[j * n + i] = v
        }
    }
    return a
}

final class MetricTests: XCTestCase {
    func testJacobiDiagonalisesSymmetricMatrices() {
        for n in [1, 2, 7, 17] {
            let a = randomSymmetric(n, seed: UInt64(n))
            let e = SymmetricEigen(a, n: n)
            XCTAssertEqual(e.values, e.values.sorted(), "ascending")
            var worst = 0.0, worstOrtho = 0.0
            for i in 0..<n {
                for j in 0..<n {
                    var r = 0.0, o = 0.0
                    for k in 0..<n {
                        r += e.vectors[i * n + k] * e.values[k] * e.vectors[j * n + k]  // V Λ Vᵀ
                        o += e.vectors[k * n + i] * e.vectors[k * n + j]  // Vᵀ V
                    }
                    worst = max(worst, abs(r - a[i * n + j]))
                    worstOrtho = max(worstOrtho, abs(o - (i == j ? 1 : 0)))
                }
            }
            XCTAssertLessThan(worst, 1e-12, "n = \(n): V Λ Vᵀ differs from A")
            XCTAssertLessThan(worstOrtho, 1e-12, "n = \(n): V is not orthogonal")
        }
    }

    /// For 2×2 matrices with positive eigenvalues, Tr √M = √(Tr M + 2 √det M) (M = AB need not be symmetric).
    func testTraceSqrtProductMatchesTheTwoByTwoFormula() {
        var rng = SplitMix64(seed: 5)
        func spd() -> [Double] {
            let b = (0..<4).map { _ in Double(rng.next() >> 11) / Double(1 << 53) * 4 - 2 }
            // B Bᵀ + 0.1 I
            return [b[0] * b[0] + b[1] * b[1] + 0.1, b[0] * b[2] + b[1] * b[3],
                    b[0] * b[2] + b[1] * b[3], b[2] * b[2] + b[3] * b[3] + 0.1]
        }
        for _ in 0..<20 {
            let a = spd(), b = spd()
            let m = matmul(a, b, n: 2)
            let detA = a[0] * a[3] - a[1] * a[2], detB = b[0] * b[3] - b[1] * b[2]
            let direct = (m[0] + m[3] + 2 * (detA * detB).squareRoot()).squareRoot()
            XCTAssertEqual(FrechetDistance.traceSqrtProduct(a, b, n: 2), direct, accuracy: 1e-10 * direct)
        }
    }

    /// A = Q diag(a) Qᵀ and B = Q diag(b) Qᵀ commute: Tr √(AB) = Σ √(aᵢ bᵢ).
    func testTraceSqrtProductOfCommutingMatrices() {
        let n = 6
        let q = SymmetricEigen(randomSymmetric(n, seed: 9), n: n).vectors  // a random orthogonal matrix
        let a: [Double] = [0.5, 1, 2, 3, 0.01, 7], b: [Double] = [4, 0.2, 1, 9, 1, 0.3]
        func conj(_ d: [Double]) -> [Double] {
            var m = [Double](repeating: 0, count: n * n)
            for i in 0..<n { for j in 0..<n { for k in 0..<n { m[i * n + j] += q[i * n + k] * d[k] * q[j * n + k] } } }
            return m
        }
        let want = zip(a, b).reduce(0) { $0 + ($1.0 * $1.1).squareRoot() }
        XCTAssertEqual(FrechetDistance.traceSqrtProduct(conj(a), conj(b), n: n), want, accuracy: 1e-10 * want)
    }

    func testFrechetDistanceOfIdenticalSetsIsZero() {
        let x = gaussian(300, 16, seed: 1, std: (0..<16).map { 0.5 + Float($0) / 8 })
        XCTAssertEqual(FrechetDistance.between(x, x), 0, accuracy: 1e-8)
    }

    /// Diagonal Gaussians: d² = ‖μ₁ − μ₂‖² + Σ (σ₁ᵢ − σ₂ᵢ)².
    func testFrechetDistanceMatchesTheDiagonalClosedForm() {
        let mu1: [Double] = [0, 0, 0, 0], mu2: [Double] = [1, 0, -0.5, 0]
        let s1: [Double] = [1, 1, 1, 1], s2: [Double] = [2, 0.5, 1, 1.5]
        let closed = zip(mu1, mu2).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
            + zip(s1, s2).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
        func diagonal(_ s: [Double]) -> [Double] {
            var c = [Double](repeating: 0, count: 16)
            for i in 0..<4 { c[i * 4 + i] = s[i] * s[i] }
            return c
        }
        let exact = FrechetDistance.between(GaussianFit(mean: mu1, covariance: diagonal(s1)), GaussianFit(mean: mu2, covariance: diagonal(s2)))
        XCTAssertEqual(exact, closed, accuracy: 1e-12)
        // From samples: within sampling error (≈ 1 % here).
        let x = gaussian(20_000, 4, seed: 2, mean: mu1.map(Float.init), std: s1.map(Float.init))
        let y = gaussian(20_000, 4, seed: 3, mean: mu2.map(Float.init), std: s2.map(Float.init))
        XCTAssertEqual(FrechetDistance.between(x, y), closed, accuracy: 0.05 * closed)
    }

    func testFrechetDistanceFromOneReferenceMatchesPairwise() {
        let a = gaussian(200, 8, seed: 40), b = gaussian(200, 8, seed: 41, std: [Float](repeating: 2, count: 8))
        let c = gaussian(200, 8, seed: 42, mean: [Float](repeating: 1, count: 8))
        let many = FrechetDistance.between(reference: GaussianFit(a), [GaussianFit(b), GaussianFit(c)])
        XCTAssertEqual(many[0], FrechetDistance.between(a, b), accuracy: 1e-9)
        XCTAssertEqual(many[1], FrechetDistance.between(c, a), accuracy: 1e-9, "FD is symmetric")
    }

    func testPooledKIDIsTheMeanAndStdOfAllSubsets() {
        let p = KernelDistance.pooled([KernelDistance(mean: 1, std: 0, subsets: 2, subsetSize: 10),
                                       KernelDistance(mean: 3, std: 1, subsets: 2, subsetSize: 8)])
        // Subset values {1, 1, 2, 4}: mean 2, population variance 1.5.
        XCTAssertEqual(p.mean, 2, accuracy: 1e-12)
        XCTAssertEqual(p.std, 1.5.squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(p.subsets, 4)
        XCTAssertEqual(p.subsetSize, 8)
    }

    /// The unbiased MMD² against a direct double loop over the kernel.
    func testUnbiasedMMDMatchesTheDefinition() {
        let x = gaussian(5, 3, seed: 4), y = gaussian(5, 3, seed: 5, mean: [0.5, 0, 0])
        func k(_ a: Tensor, _ i: Int, _ b: Tensor, _ j: Int) -> Double {
            var dot = 0.0
            for c in 0..<3 { dot += Double(a.data[i * 3 + c]) * Double(b.data[j * 3 + c]) }
            return pow(dot / 3 + 1, 3)
        }
        var xx = 0.0, yy = 0.0, xy = 0.0
        for i in 0..<5 {
            for j in 0..<5 {
                if i != j { xx += k(x, i, x, j); yy += k(y, i, y, j) }
                xy += k(x, i, y, j)
            }
        }
        let want = (xx + yy) / 20 - 2 * xy / 25
        XCTAssertEqual(KernelDistance.mmd2Unbiased(x, y), want, accuracy: 1e-5 * max(1, abs(want)))
    }

    func testKIDIsNearZeroForOneDistributionAndPositiveForAShiftedOne() {
        let d = 16
        let x = gaussian(600, d, seed: 10), y = gaussian(600, d, seed: 11)
        let shifted = gaussian(600, d, seed: 12, mean: [Float](repeating: 0.5, count: d))
        let same = KernelDistance.compute(x, y, seed: 1)
        let apart = KernelDistance.compute(x, shifted, seed: 1)
        XCTAssertEqual(same.subsetSize, 300)
        XCTAssertEqual(same.subsets, 100)
        XCTAssertGreaterThan(same.std, 0, "different subsets give different estimates")
        // Unbiased: the same distribution sits within a few standard deviations of 0.
        XCTAssertLessThan(abs(same.mean), 3 * same.std + 1e-3, "\(same)")
        XCTAssertGreaterThan(apart.mean, 10 * (abs(same.mean) + same.std), "same \(same), shifted \(apart)")
        // Same seed, same subsets.
        XCTAssertEqual(KernelDistance.compute(x, y, seed: 1), same)
    }

    func testPrecisionAndRecallOfIdenticalDisjointAndNarrowSets() {
        let x = gaussian(300, 8, seed: 20)
        let same = PrecisionRecall.compute(real: x, generated: x)
        XCTAssertEqual(same.precision, 1)
        XCTAssertEqual(same.recall, 1)
        XCTAssertEqual(same.coverage, 1)
        XCTAssertGreaterThan(same.density, 1, "each point is in its own ball and its 3 neighbours' at least")
        XCTAssertEqual(same.k, 3)
        let far = gaussian(300, 8, seed: 21, mean: [Float](repeating: 50, count: 8))
        let disjoint = PrecisionRecall.compute(real: x, generated: far)
        XCTAssertEqual(disjoint.precision, 0)
        XCTAssertEqual(disjoint.recall, 0)
        XCTAssertEqual(disjoint.density, 0)
        XCTAssertEqual(disjoint.coverage, 0)
        // Density counts balls: a sample of the same distribution has density near 1.
        let fresh = PrecisionRecall.compute(real: x, generated: gaussian(300, 8, seed: 24))
        XCTAssertEqual(fresh.density, 1, accuracy: 0.25, "\(fresh)")
        XCTAssertGreaterThan(fresh.coverage, 0.8, "\(fresh)")
        // A generator that only makes one half of the distribution: faithful, not diverse (in 2-D,
        // where 3-NN balls are small against the distribution).
        let y = gaussian(600, 2, seed: 22)
        let half = rows(y, (0..<600).filter { y.data[$0 * 2] > 0 })
        let dropped = PrecisionRecall.compute(real: gaussian(300, 2, seed: 23), generated: half)
        XCTAssertGreaterThan(dropped.precision, 0.8, "\(dropped)")
        XCTAssertLessThan(dropped.recall, dropped.precision - 0.2, "\(dropped)")
        XCTAssertLessThan(dropped.coverage, 0.7, "half the real balls hold no generated sample: \(dropped)")
    }

    func testMemorisationCountsCopiesAndNotNewSamples() {
        let d = 32
        let train = gaussian(300, d, seed: 30), heldOut = gaussian(300, d, seed: 31)
        let copies = rows(train, Array(0..<100))
        for i in 0..<copies.count { copies.data[i] += 1e-3 }
        let copied = Memorisation.measure(generated: copies, train: train, heldOut: heldOut)
        XCTAssertEqual(copied.share, 1)
        XCTAssertEqual(copied.referenceShare, 0.05, accuracy: 1e-9, "15 of 300 lie below the interpolated 5th percentile")
        XCTAssertLessThan(copied.medianGenerated, 0.01)
        let fresh = Memorisation.measure(generated: gaussian(300, d, seed: 32), train: train, heldOut: heldOut)
        XCTAssertLessThan(fresh.share, 0.15, "\(fresh)")
        XCTAssertEqual(fresh.medianGenerated, fresh.medianReference, accuracy: 0.1 * fresh.medianReference)
        // Leave-one-out within the training set instead of a held-out set.
        let loo = Memorisation.measure(generated: copies, train: train)
        XCTAssertEqual(loo.share, 1)
        XCTAssertEqual(loo.referenceShare, 0.05, accuracy: 1e-9)
        let looFresh = Memorisation.measure(generated: heldOut, train: train)
        XCTAssertLessThan(looFresh.share, 0.15, "\(looFresh)")
        XCTAssertEqual(Memorisation.percentile([4, 1, 3, 2], 50), 2.5)
        XCTAssertEqual(Memorisation.percentile([4, 1, 3, 2], 0), 1)
        XCTAssertEqual(Memorisation.percentile([4, 1, 3, 2], 100), 4)
    }

    func testLabelAgreementSkipsSamplesWithoutAClass() {
        XCTAssertEqual(labelAgreement(predicted: [0, 1, 2, 2], requested: [0, 1, 1, nil]), 2.0 / 3.0)
        XCTAssertNil(labelAgreement(predicted: [0], requested: [nil]))
    }

    func testSplitMixSamplesAreDistinctAndSeeded() {
        var a = SplitMix64(seed: 3), b = SplitMix64(seed: 3)
        let s = a.sample(50, from: 60)
        XCTAssertEqual(Set(s).count, 50)
        XCTAssertEqual(s, b.sample(50, from: 60))
        XCTAssertEqual(a.permutation(10).sorted(), Array(0..<10))
    }

    /// A generator asked only for class 0 that makes perfect class-0 samples: against a random
    /// real half its FD is far above the floor; with the floor's real items drawn with the
    /// generated items' classes it sits at the floor. Items of two rows (a clip's frames) move
    /// together.
    func testClassMatchedFloorAndMultiRowItems() {
        let d = 4, r = 2
        func items(_ classes: [Int], seed: UInt64) -> Tensor {
            let x = gaussian(classes.count * r, d, seed: seed)
            for (i, c) in classes.enumerated() { for k in 0..<r { for j in 0..<d { x.data[(i * r + k) * d + j] += c == 0 ? 3 : -3 } } }
            return x
        }
        let heldOutClasses = (0..<160).map { $0 % 2 }, generatedClasses = [Int](repeating: 0, count: 40)
        let q = items(heldOutClasses, seed: 1), g = items(generatedClasses, seed: 2)
        var rng = SplitMix64(seed: 3)
        let (random, _) = ImageEvaluation.matchedDistances(heldOut: q, generated: g, rowsPerItem: r, repeats: 4, seed: 0, rng: &rng)
        rng = SplitMix64(seed: 3)
        let (matched, _) = ImageEvaluation.matchedDistances(heldOut: q, generated: g, rowsPerItem: r, repeats: 4, seed: 0,
                                                            classes: (heldOutClasses, generatedClasses), rng: &rng)
        XCTAssertEqual(random.compared, 40)
        XCTAssertEqual(random.reference, 80)
        XCTAssertEqual(random.generated, matched.generated, accuracy: 1e-9, "the same generated draws")
        XCTAssertGreaterThan(random.ratio, 5)
        XCTAssertEqual(matched.ratio, 1, accuracy: 0.5)
    }
}

final class AudioNoiseFloorTests: XCTestCase {
    /// A 1 s note at 440 Hz (amplitude 0.5, a decaying envelope), plus white noise of `noise` std.
    func note(noise: Float, seed: UInt64 = 1) -> [Float] {
        var rng = RandomGenerator(seed: seed)
        let n = rng.normal([16_000])
        return (0..<16_000).map { i in
            let t = Float(i) / 16_000
            return 0.5 * exp(-2 * t) * sin(2 * .pi * 440 * t) + noise * n.data[i]
        }
    }

    func testACleanNoteHasAFloorFarBelowItsPeakAndHissRaisesIt() throws {
        let clean = try XCTUnwrap(AudioMetrics.noiseFloor(note(noise: 0)))
        XCTAssertGreaterThan(clean, 90, "a pure tone leaves only the window's leakage")
        // White noise of std σ in a Hann frame of 512: E|X|² = σ² Σw² = 192 σ²; the median of an
        // exponential is ln 2 of its mean. The peak bin of a tone of amplitude A is (A · 256 / 2)².
        for sigma: Float in [0.001, 0.01] {
            let expected = 10 * log10(Double(64 * 64) / (192 * Double(sigma * sigma) * log(2)))
            let floor = try XCTUnwrap(AudioMetrics.noiseFloor(note(noise: sigma)))
            XCTAssertEqual(floor, expected, accuracy: 1.5, "σ \(sigma)")
        }
        XCTAssertNil(AudioMetrics.noiseFloor([Float](repeating: 0, count: 16_000)), "silence has no floor")
    }

    func testMetricsReportTheMedianFloorOfNonSilentClips() {
        let clips: [(samples: [Float], className: String?)] = [(note(noise: 0.01), "69"), (note(noise: 0.01, seed: 2), "69"),
                                                               ([Float](repeating: 0, count: 16_000), "69")]
        let m = AudioMetrics.measure(clips, sampleRate: 16_000)
        XCTAssertEqual(m.silentClips, 1.0 / 3, accuracy: 1e-9)
        XCTAssertEqual(m.noiseFloorDB ?? 0, AudioMetrics.noiseFloor(clips[0].samples) ?? -1, accuracy: 1)
        XCTAssert(m.summary.contains("noise floor"), m.summary)
    }
}
