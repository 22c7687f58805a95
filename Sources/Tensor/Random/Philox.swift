import Foundation

/// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011):
/// a counter-based generator. Output = f(key, counter), so any element can be made
/// independently of the others — in any order, on any thread.
@inlinable
public func philox4x32(_ counter: SIMD4<UInt32>, key: SIMD2<UInt32>) -> SIMD4<UInt32> {
    var c = counter, k = key
    for _ in 0..<10 {
        let p0 = UInt64(0xD251_1F53) &* UInt64(c[0])
        let p1 = UInt64(0xCD9E_8D57) &* UInt64(c[2])
        let hi0 = UInt32(truncatingIfNeeded: p0 >> 32), lo0 = UInt32(truncatingIfNeeded: p0)
        let hi1 = UInt32(truncatingIfNeeded: p1 >> 32), lo1 = UInt32(truncatingIfNeeded: p1)
        c = SIMD4(hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0)
        k = k &+ SIMD2(0x9E37_79B9, 0xBB67_AE85)
    }
    return c
}

/// A seeded stream of random tensors.
///
/// Every call to a drawing method is one "draw" with its own index. Element j of sample i
/// (index i along the first dim) of draw d is a function of (seed, d, i, j) only: the same
/// seed gives the same numbers whatever the batch size, thread count or order of work.
/// Counter layout: (j / 4, i, d low, d high); key = the seed's two halves.
public struct RandomGenerator: Sendable, Equatable, Codable {
    public let seed: UInt64
    /// Number of draws made so far; save it with `seed` to resume a stream exactly.
    public var draws: UInt64
    /// Index of this stream's first sample: a generator with `firstSample = k` draws for a batch
    /// exactly what samples k, k+1, ... of a larger batch get. Lets work be split into batches
    /// without changing any number.
    public var firstSample: Int

    public init(seed: UInt64, draws: UInt64 = 0, firstSample: Int = 0) {
        precondition(firstSample >= 0, "RandomGenerator: firstSample \(firstSample)")
        self.seed = seed
        self.draws = draws
        self.firstSample = firstSample
    }

    enum CodingKeys: String, CodingKey { case seed, draws, firstSample }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(seed: try c.decode(UInt64.self, forKey: .seed), draws: try c.decode(UInt64.self, forKey: .draws),
                  firstSample: try c.decodeIfPresent(Int.self, forKey: .firstSample) ?? 0)
    }

    var key: SIMD2<UInt32> { SIMD2(UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32)) }

    /// Four raw 32-bit words for block `block` of sample `sample` in draw `draw`.
    @inline(__always)
    static func block(key: SIMD2<UInt32>, draw: UInt64, sample: Int, block: Int) -> SIMD4<UInt32> {
        philox4x32(SIMD4(UInt32(truncatingIfNeeded: block), UInt32(truncatingIfNeeded: sample),
                         UInt32(truncatingIfNeeded: draw), UInt32(truncatingIfNeeded: draw >> 32)), key: key)
    }

    /// Fills a tensor of `shape` by blocks of four values per counter: `fill(words, out, n)`
    /// writes n ≤ 4 values from four random words.
    private mutating func generate(_ shape: [Int], _ fill: @escaping @Sendable (SIMD4<UInt32>, UnsafeMutablePointer<Float>, Int) -> Void) -> Tensor {
        let t = Tensor(uninitialized: shape)
        let samples = shape.first ?? 1
        let per = samples == 0 ? 0 : t.count / samples
        let blocks = (per + 3) / 4
        let key = self.key, draw = draws, first = firstSample
        draws += 1
        let p = SendablePointer(t.data)
        Parallel.forEach(samples * blocks, grain: 1024) { idx in
            let i = idx / blocks, b = idx % blocks
            let w = RandomGenerator.block(key: key, draw: draw, sample: first + i, block: b)
            fill(w, p.p + i * per + b * 4, Swift.min(4, per - b * 4))
        }
        return t
    }

    /// Uniform floats in [low, high).
    public mutating func uniform(_ shape: [Int], low: Float = 0, high: Float = 1) -> Tensor {
        generate(shape) { w, out, n in
            for l in 0..<n { out[l] = low + (high - low) * unitFloat(w[l]) }
        }
    }

    /// Standard normal floats (Box–Muller on pairs of words).
    public mutating func normal(_ shape: [Int], mean: Float = 0, std: Float = 1) -> Tensor {
        generate(shape) { w, out, n in
            let (a, b) = boxMuller(w[0], w[1]), (c, d) = boxMuller(w[2], w[3])
            let v = SIMD4(a, b, c, d)
            for l in 0..<n { out[l] = mean + std * v[l] }
        }
    }

    /// `count` integers uniform in 0..<upperBound (one per sample of the draw).
    public mutating func integers(_ count: Int, below upperBound: Int) -> [Int] {
        precondition(upperBound > 0 && upperBound <= Int(UInt32.max), "integers(below: \(upperBound))")
        let key = self.key, draw = draws, first = firstSample
        draws += 1
        return (0..<count).map { i in
            let w = RandomGenerator.block(key: key, draw: draw, sample: first + i, block: 0)
            let wide = (UInt64(w[1]) << 32) | UInt64(w[0])
            return Int(wide % UInt64(upperBound))
        }
    }
}

/// A float in [0, 1) from the top 24 bits.
@inline(__always) func unitFloat(_ w: UInt32) -> Float { Float(w >> 8) * (1.0 / 16_777_216.0) }

@inline(__always) func boxMuller(_ w1: UInt32, _ w2: UInt32) -> (Float, Float) {
    let u1 = Float((w1 >> 8) + 1) * (1.0 / 16_777_216.0)  // (0, 1]: log is finite
    let u2 = unitFloat(w2)
    let r = (-2 * Foundation.log(u1)).squareRoot()
    let th = 2 * Float.pi * u2
    return (r * Foundation.cos(th), r * Foundation.sin(th))
}

extension Tensor {
    /// Zeroes each element with probability p and scales the rest by 1/(1-p) (training only).
    public func dropout(_ p: Float, rng: inout RandomGenerator, training: Bool = true) -> Tensor {
        precondition(p >= 0 && p < 1, "dropout probability \(p) outside [0, 1)")
        if !training || p == 0 { return self }
        let keep = 1 / (1 - p)
        let mask = rng.uniform(shape)
        let pm = SendablePointer(mask.data)
        Parallel.chunks(mask.count, grain: 1 << 15) { s, e in
            for i in s..<e { pm.p[i] = pm.p[i] >= p ? keep : 0 }
        }
        return self * mask
    }
}
