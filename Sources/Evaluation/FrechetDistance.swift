import Foundation
import Tensor

/// Mean and covariance of a feature set [N, D], in Double. The covariance is the unbiased one
/// (divides by N − 1), as `numpy.cov` and pytorch-fid compute it.
public struct GaussianFit: Sendable {
    public let dim: Int
    public let mean: [Double]
    /// Row-major [D, D].
    public let covariance: [Double]

    public init(mean: [Double], covariance: [Double]) {
        precondition(covariance.count == mean.count * mean.count,
                     "GaussianFit: covariance of \(covariance.count) entries for dimension \(mean.count)")
        dim = mean.count
        self.mean = mean
        self.covariance = covariance
    }

    /// - Precondition: `features` is [N, D] with N ≥ 2.
    public init(_ features: Tensor) {
        precondition(features.rank == 2 && features.shape[0] >= 2, "GaussianFit needs [N ≥ 2, D] features, got \(features.shape)")
        let n = features.shape[0], d = features.shape[1]
        let x = features.data
        var mu = [Double](repeating: 0, count: d)
        for i in 0..<n { for j in 0..<d { mu[j] += Double(x[i * d + j]) } }
        for j in 0..<d { mu[j] /= Double(n) }
        var cov = [Double](repeating: 0, count: d * d)
        var row = [Double](repeating: 0, count: d)
        cov.withUnsafeMutableBufferPointer { c in
            for i in 0..<n {
                for j in 0..<d { row[j] = Double(x[i * d + j]) - mu[j] }
                for a in 0..<d {  // upper triangle; mirrored below
                    let ra = row[a]
                    let ca = c.baseAddress! + a * d
                    for b in a..<d { ca[b] += ra * row[b] }
                }
            }
            for a in 0..<d {
                for b in a..<d {
                    let v = c[a * d + b] / Double(n - 1)
                    c[a * d + b] = v
                    c[b * d + a] = v
                }
            }
        }
        dim = d
        mean = mu
        covariance = cov
    }
}

/// The Fréchet (2-Wasserstein) distance between Gaussians fitted to two feature sets, the
/// quantity behind FID (Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to
/// a Local Nash Equilibrium", NeurIPS 2017; Dowson & Landau 1982 for the formula):
///
///     d² = ‖μ₁ − μ₂‖² + Tr Σ₁ + Tr Σ₂ − 2 Tr (Σ₁ Σ₂)^½
///
/// Σ₁Σ₂ is not symmetric, but it is similar to S Σ₂ S with S = Σ₁^½ (S⁻¹ (S Σ₂ S) S = Σ₁ Σ₂ when
/// Σ₁ is invertible, and by continuity otherwise), which is symmetric positive semi-definite;
/// so Tr (Σ₁Σ₂)^½ = Σᵢ √λᵢ(S Σ₂ S), with both square roots taken through `SymmetricEigen` and
/// round-off negatives clipped to 0. pytorch-fid uses `scipy.linalg.sqrtm` on Σ₁Σ₂ instead; the
/// two agree to rounding on positive-definite inputs.
///
/// Like FID, the estimate from N samples is biased upward by O(D/N): compare values computed at
/// the same sample sizes.
public enum FrechetDistance {
    public static func between(_ a: Tensor, _ b: Tensor) -> Double {
        precondition(a.rank == 2 && b.rank == 2 && a.shape[1] == b.shape[1], "FrechetDistance: features \(a.shape) and \(b.shape)")
        return between(GaussianFit(a), GaussianFit(b))
    }

    public static func between(_ p: GaussianFit, _ q: GaussianFit) -> Double {
        precondition(p.dim == q.dim, "FrechetDistance: dimensions \(p.dim) and \(q.dim)")
        let d = p.dim
        var meanTerm = 0.0
        for i in 0..<d { let e = p.mean[i] - q.mean[i]; meanTerm += e * e }
        var traces = 0.0
        for i in 0..<d { traces += p.covariance[i * d + i] + q.covariance[i * d + i] }
        return meanTerm + traces - 2 * traceSqrtProduct(p.covariance, q.covariance, n: d)
    }

    /// Distances from one reference to several fits, taking the reference's square root once.
    public static func between(reference p: GaussianFit, _ others: [GaussianFit]) -> [Double] {
        let d = p.dim
        let s = SymmetricEigen(p.covariance, n: d).map { $0 > 0 ? $0.squareRoot() : 0 }
        return others.map { q in
            precondition(q.dim == d, "FrechetDistance: dimensions \(d) and \(q.dim)")
            var meanTerm = 0.0, traces = 0.0
            for i in 0..<d {
                let e = p.mean[i] - q.mean[i]
                meanTerm += e * e
                traces += p.covariance[i * d + i] + q.covariance[i * d + i]
            }
            let m = matmul(matmul(s, q.covariance, n: d), s, n: d)
            return meanTerm + traces - 2 * SymmetricEigen(m, n: d).values.reduce(0) { $0 + ($1 > 0 ? $1.squareRoot() : 0) }
        }
    }

    /// Tr (A B)^½ for symmetric positive semi-definite A, B (row-major n×n).
    public static func traceSqrtProduct(_ a: [Double], _ b: [Double], n: Int) -> Double {
        let s = SymmetricEigen(a, n: n).map { $0 > 0 ? $0.squareRoot() : 0 }
        let m = matmul(matmul(s, b, n: n), s, n: n)  // S B S: symmetric PSD
        return SymmetricEigen(m, n: n).values.reduce(0) { $0 + ($1 > 0 ? $1.squareRoot() : 0) }
    }
}
