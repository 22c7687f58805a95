import Foundation
import Tensor

/// Nearest-neighbour queries on feature sets [N, D] under the Euclidean distance. Squared
/// distances come as ‖a‖² + ‖b‖² − 2 a·b: the dot products through sgemm, a block of query rows
/// at a time (memory stays O(block · N)), the norms in Double; round-off negatives become 0.
enum Neighbours {
    /// Calls `body(firstRow, rows, d²)` with the squared distances [rows, b.count] from each block
    /// of a's rows to every row of b.
    static func forEachBlock(_ a: Tensor, _ b: Tensor, blockRows: Int = 256,
                             _ body: (Int, Int, UnsafePointer<Float>) -> Void) {
        precondition(a.rank == 2 && b.rank == 2 && a.shape[1] == b.shape[1], "Neighbours: features \(a.shape) and \(b.shape)")
        let na = a.shape[0], nb = b.shape[0]
        let normA = squaredNorms(a), normB = squaredNorms(b)
        var start = 0
        while start < na {
            let r = Swift.min(blockRows, na - start)
            let dots = GradMode.withoutGrad { a.slice(axis: 0, start..<(start + r)).matmul(b, transposeOther: true) }  // [r, nb]
            let p = dots.data
            for i in 0..<r {
                let ni = normA[start + i]
                for j in 0..<nb { p[i * nb + j] = Swift.max(0, Float(ni + normB[j] - 2 * Double(p[i * nb + j]))) }
            }
            body(start, r, p)
            start += r
        }
    }

    static func squaredNorms(_ t: Tensor) -> [Double] {
        let n = t.shape[0], d = t.shape[1]
        return (0..<n).map { i in
            var s = 0.0
            for j in 0..<d { let v = Double(t.data[i * d + j]); s += v * v }
            return s
        }
    }

    /// Squared distance from each row of x to its k-th nearest other row of x (itself excluded).
    static func kthNearestSquared(_ x: Tensor, k: Int) -> [Float] {
        precondition(k >= 1 && x.shape[0] > k, "k-th neighbour with k = \(k) among \(x.shape[0]) points")
        let n = x.shape[0]
        var out = [Float](repeating: 0, count: n)
        forEachBlock(x, x) { start, rows, d in
            for i in 0..<rows {
                var best = [Float](repeating: .infinity, count: k)  // ascending
                for j in 0..<n where j != start + i {
                    let v = d[i * n + j]
                    if v < best[k - 1] {
                        var p = k - 1
                        while p > 0 && best[p - 1] > v { best[p] = best[p - 1]; p -= 1 }
                        best[p] = v
                    }
                }
                out[start + i] = best[k - 1]
            }
        }
        return out
    }

    /// Squared distance from each row of x to its nearest row of y.
    static func nearestSquared(_ x: Tensor, in y: Tensor) -> [Float] {
        let m = y.shape[0]
        var out = [Float](repeating: 0, count: x.shape[0])
        forEachBlock(x, y) { start, rows, d in
            for i in 0..<rows {
                var best = Float.infinity
                for j in 0..<m { best = Swift.min(best, d[i * m + j]) }
                out[start + i] = best
            }
        }
        return out
    }

    /// For each row of x, how many balls of y hold it: #{j : ‖x − yⱼ‖² ≤ radii²[j]}.
    static func ballCounts(_ x: Tensor, balls y: Tensor, squaredRadii: [Float]) -> [Int] {
        let m = y.shape[0]
        var counts = [Int](repeating: 0, count: x.shape[0])
        forEachBlock(x, y) { start, rows, d in
            for i in 0..<rows {
                var c = 0
                for j in 0..<m where d[i * m + j] <= squaredRadii[j] { c += 1 }
                counts[start + i] = c
            }
        }
        return counts
    }
}

/// Improved precision and recall (Kynkäänniemi, Karras, Laine, Lehtinen & Aila, "Improved
/// Precision and Recall Metric for Assessing Generative Models", NeurIPS 2019): each set's
/// manifold is the union of balls around its points, each ball reaching the point's k-th nearest
/// neighbour within its own set (k = 3 as in the paper).
///
///     precision = share of generated samples inside the real manifold   (fidelity)
///     recall    = share of real samples inside the generated manifold   (coverage)
///
/// With density and coverage (Naeem, Oh, Uh, Choi & Yoo, "Reliable Fidelity and Diversity Metrics
/// for Generative Models", ICML 2020) from the same real balls (here with the same k = 3; the
/// paper uses 5). An outlying real sample has a large ball that lets precision accept anything
/// near it — with a few hundred samples in 128 dimensions, even noise images; these two use only
/// the real balls and count them:
///
///     density  = Σ over generated of the number of real balls holding it / (k · M)   (~1 when alike)
///     coverage = share of real samples whose ball holds at least one generated sample
public struct PrecisionRecall: Codable, Equatable, Sendable {
    public var precision: Double
    public var recall: Double
    public var density: Double
    public var coverage: Double
    public var k: Int

    /// - Precondition: both sets [N, D] with N > k.
    public static func compute(real: Tensor, generated: Tensor, k: Int = 3) -> PrecisionRecall {
        let realRadii = Neighbours.kthNearestSquared(real, k: k)
        let generatedRadii = Neighbours.kthNearestSquared(generated, k: k)
        let inReal = Neighbours.ballCounts(generated, balls: real, squaredRadii: realRadii)
        let inGenerated = Neighbours.ballCounts(real, balls: generated, squaredRadii: generatedRadii)
        let nearestGenerated = Neighbours.nearestSquared(real, in: generated)
        let m = Double(generated.shape[0]), n = Double(real.shape[0])
        return PrecisionRecall(precision: Double(inReal.filter { $0 > 0 }.count) / m,
                               recall: Double(inGenerated.filter { $0 > 0 }.count) / n,
                               density: Double(inReal.reduce(0, +)) / (Double(k) * m),
                               coverage: Double(zip(nearestGenerated, realRadii).filter { $0 <= $1 }.count) / n, k: k)
    }
}

/// How many generated samples sit unusually close to a training sample — copies rather than new
/// samples. Defined against what real data does:
///
///     τ     = the p-th percentile (p = 5, linear interpolation as numpy) of the real-to-real
///             nearest-neighbour distances: from each held-out real sample to its nearest
///             training sample, or, without a held-out set, from each training sample to its
///             nearest other training sample (leave-one-out)
///     share = share of generated samples whose nearest training sample is closer than τ
///
/// Fresh samples of the real distribution land below τ p % of the time (`referenceShare`, ~0.05
/// by construction); a model that reproduces its training images approaches 1. In the spirit of
/// the nearest-neighbour copy tests of Carlini et al. ("Extracting Training Data from Diffusion
/// Models", 2023) and the data-copying test of Meehan, Chaudhuri & Dasgupta (AISTATS 2020), with
/// real data as the yardstick instead of a fixed threshold.
public struct Memorisation: Codable, Equatable, Sendable {
    public var share: Double
    /// Share of the reference real samples below τ (≈ percentile / 100).
    public var referenceShare: Double
    /// τ, as a distance (not squared).
    public var threshold: Double
    public var percentile: Double
    /// Median nearest-training-neighbour distance of the generated and of the reference real samples.
    public var medianGenerated: Double
    public var medianReference: Double

    enum CodingKeys: String, CodingKey {
        case share, referenceShare = "reference_share", threshold, percentile
        case medianGenerated = "median_generated_distance", medianReference = "median_reference_distance"
    }

    /// - Parameter heldOut: real samples the model did not train on; nil: leave-one-out within `train`.
    /// - Precondition: all [N, D] with the same D; train has ≥ 2 rows, heldOut (if given) ≥ 1.
    public static func measure(generated: Tensor, train: Tensor, heldOut: Tensor? = nil, percentile: Double = 5) -> Memorisation {
        precondition(train.shape[0] >= 2 && (heldOut?.shape[0] ?? 1) >= 1, "Memorisation: reference sets too small")
        let reference = (heldOut.map { Neighbours.nearestSquared($0, in: train) } ?? Neighbours.kthNearestSquared(train, k: 1))
            .map { Double($0).squareRoot() }
        let generatedD = Neighbours.nearestSquared(generated, in: train).map { Double($0).squareRoot() }
        let tau = Self.percentile(reference, percentile)
        func share(_ v: [Double]) -> Double { Double(v.filter { $0 < tau }.count) / Double(Swift.max(1, v.count)) }
        return Memorisation(share: share(generatedD), referenceShare: share(reference), threshold: tau, percentile: percentile,
                            medianGenerated: Self.percentile(generatedD, 50), medianReference: Self.percentile(reference, 50))
    }

    /// The p-th percentile with linear interpolation between order statistics (numpy's default).
    public static func percentile(_ values: [Double], _ p: Double) -> Double {
        guard !values.isEmpty else { return .nan }
        let s = values.sorted()
        let pos = Swift.max(0, Swift.min(1, p / 100)) * Double(s.count - 1)
        let lo = Int(pos.rounded(.down)), hi = Swift.min(lo + 1, s.count - 1)
        return s[lo] + (s[hi] - s[lo]) * (pos - Double(lo))
    }
}

/// Share of samples whose predicted class is the class they were asked for (generated images
/// classified by the probe). Samples without a requested class are left out; nil when none has one.
public func labelAgreement(predicted: [Int], requested: [Int?]) -> Double? {
    precondition(predicted.count == requested.count, "labelAgreement: \(predicted.count) predictions for \(requested.count) labels")
    var asked = 0, agreed = 0
    for (p, r) in zip(predicted, requested) {
        guard let r else { continue }
        asked += 1
        if p == r { agreed += 1 }
    }
    return asked == 0 ? nil : Double(agreed) / Double(asked)
}
