import Foundation
import Tensor

/// Kernel Inception Distance (Bińkowski, Sutherland, Arbel & Gretton, "Demystifying MMD GANs",
/// ICLR 2018): the squared maximum mean discrepancy between two feature sets under the cubic
/// polynomial kernel
///
///     k(x, y) = (x·y / D + 1)³
///
/// with the unbiased estimator on m samples from each side (their eq. 4, diagonal terms left out):
///
///     MMD²ᵤ = [Σᵢ≠ⱼ k(xᵢ,xⱼ) + Σᵢ≠ⱼ k(yᵢ,yⱼ)] / (m(m−1)) − 2 Σᵢⱼ k(xᵢ,yⱼ) / m²
///
/// averaged over random subsets drawn without replacement, as their code and torch-fidelity do
/// (100 subsets). Unbiased: its mean is ~0 for two samples of one distribution (it can be
/// slightly negative), whatever the sample size — so unlike FD it can be compared across sizes.
///
/// Subset size: min(1000, half the smaller set). torch-fidelity uses min(1000, N), which for
/// N ≤ 1000 draws the same subset every time and reports a standard deviation of 0; half the set
/// keeps the subsets different, so `std` says how much the estimate moves.
public struct KernelDistance: Codable, Equatable, Sendable {
    public var mean: Double
    /// Population standard deviation over the subsets (numpy's default, as torch-fidelity).
    public var std: Double
    public var subsets: Int
    public var subsetSize: Int

    enum CodingKeys: String, CodingKey { case mean, std, subsets, subsetSize = "subset_size" }

    public init(mean: Double, std: Double, subsets: Int, subsetSize: Int) {
        self.mean = mean; self.std = std; self.subsets = subsets; self.subsetSize = subsetSize
    }

    /// - Precondition: x [Nx, D] and y [Ny, D] with Nx, Ny ≥ 4.
    public static func compute(_ x: Tensor, _ y: Tensor, subsets: Int = 100, subsetSize: Int? = nil,
                               seed: UInt64 = 0) -> KernelDistance {
        precondition(x.rank == 2 && y.rank == 2 && x.shape[1] == y.shape[1], "KID: features \(x.shape) and \(y.shape)")
        precondition(x.shape[0] >= 4 && y.shape[0] >= 4, "KID needs at least 4 samples per set, got \(x.shape[0]) and \(y.shape[0])")
        precondition(subsets >= 1, "KID: \(subsets) subsets")
        let smaller = Swift.min(x.shape[0], y.shape[0])
        let m = Swift.max(2, subsetSize.map { Swift.min($0, smaller) } ?? Swift.min(1000, smaller / 2))
        var rng = SplitMix64(seed: seed)
        var values: [Double] = []
        for _ in 0..<subsets {
            let xs = rows(x, rng.sample(m, from: x.shape[0])), ys = rows(y, rng.sample(m, from: y.shape[0]))
            values.append(mmd2Unbiased(xs, ys))
        }
        let mean = values.reduce(0, +) / Double(values.count)
        let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count)
        return KernelDistance(mean: mean, std: variance.squareRoot(), subsets: subsets, subsetSize: m)
    }

    /// Several estimates as one: the mean and population standard deviation over all their subsets.
    public static func pooled(_ parts: [KernelDistance]) -> KernelDistance {
        precondition(!parts.isEmpty, "KernelDistance.pooled of nothing")
        let n = Double(parts.reduce(0) { $0 + $1.subsets })
        let mean = parts.reduce(0) { $0 + Double($1.subsets) * $1.mean } / n
        let second = parts.reduce(0) { $0 + Double($1.subsets) * ($1.std * $1.std + $1.mean * $1.mean) } / n
        return KernelDistance(mean: mean, std: Swift.max(0, second - mean * mean).squareRoot(),
                              subsets: Int(n), subsetSize: parts.map(\.subsetSize).min()!)
    }

    /// MMD²ᵤ between all rows of x and all rows of y (equal counts m ≥ 2).
    public static func mmd2Unbiased(_ x: Tensor, _ y: Tensor) -> Double {
        precondition(x.shape[0] == y.shape[0] && x.shape[0] >= 2, "mmd2Unbiased: \(x.shape) and \(y.shape)")
        let m = x.shape[0], d = Double(x.shape[1])
        // Gram matrices through sgemm; the kernel and the sums in Double.
        let (kxx, kyy, kxy) = GradMode.withoutGrad {
            (x.matmul(x, transposeOther: true), y.matmul(y, transposeOther: true), x.matmul(y, transposeOther: true))
        }
        func kernelSum(_ g: Tensor, skipDiagonal: Bool) -> Double {
            var s = 0.0
            let p = g.data
            for i in 0..<m {
                for j in 0..<m where !(skipDiagonal && i == j) {
                    let v = Double(p[i * m + j]) / d + 1
                    s += v * v * v
                }
            }
            return s
        }
        let mm = Double(m)
        return (kernelSum(kxx, skipDiagonal: true) + kernelSum(kyy, skipDiagonal: true)) / (mm * (mm - 1))
            - 2 * kernelSum(kxy, skipDiagonal: false) / (mm * mm)
    }
}

/// The given rows of a [N, D] matrix, copied: [idx.count, D].
func rows(_ t: Tensor, _ idx: [Int]) -> Tensor {
    let d = t.shape[1]
    let out = Tensor.zeros([idx.count, d])
    for (k, i) in idx.enumerated() {
        precondition(i >= 0 && i < t.shape[0], "row \(i) outside 0..<\(t.shape[0])")
        (out.data + k * d).update(from: t.data + i * d, count: d)
    }
    return out
}

/// SplitMix64 (Steele, Lea & Flood, OOPSLA 2014): a tiny seeded generator for the evaluation's
/// choices (splits, subsets, batch order, shifts), the same on every machine and thread count.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in 0..<n (n ≥ 1), by rejection: no modulo bias.
    public mutating func below(_ n: Int) -> Int {
        precondition(n >= 1, "below(\(n))")
        let bound = UInt64(n)
        let limit = UInt64.max - UInt64.max % bound
        while true {
            let r = next()
            if r < limit { return Int(r % bound) }
        }
    }

    /// A uniformly random permutation of 0..<n (Fisher–Yates).
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        if n > 1 { for i in stride(from: n - 1, to: 0, by: -1) { p.swapAt(i, below(i + 1)) } }
        return p
    }

    /// k distinct indices from 0..<n, uniformly (partial Fisher–Yates), in draw order.
    public mutating func sample(_ k: Int, from n: Int) -> [Int] {
        precondition(k >= 0 && k <= n, "sample \(k) from \(n)")
        var p = Array(0..<n)
        for i in 0..<k { p.swapAt(i, i + below(n - i)) }
        return Array(p.prefix(k))
    }
}
