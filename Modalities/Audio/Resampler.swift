import Foundation
import Tensor

/// Band-limited sample-rate conversion by a Kaiser-windowed sinc (polyphase).
///
/// Notation: the rate ratio is reduced to `up / down` (= to / from, by their gcd). Output
/// sample n sits at input position x = n·down/up = i0 + p/up (i0 integer, phase p). With the
/// cutoff `fc` = rolloff · min(1, to/from) in units of the input Nyquist frequency, the kernel is
///
///     h(t) = fc · sinc(fc · t) · kaiser(t / halfWidth, beta),   halfWidth = zeroCrossings / fc
///
/// and y[n] = Σ_i x[i] · h(x - i) over the 2K inputs with |x - i| < K = ceil(halfWidth).
/// Samples outside the clip count as zero. Each phase's taps are normalised to sum to 1 so
/// that DC passes exactly. Downsampling widens the kernel (fc < 1), which is the anti-alias
/// filter. Defaults: 16 zero crossings, rolloff 0.94, beta 9 (stopband below -80 dB).
public struct Resampler: Sendable {
    public let from: Int
    public let to: Int
    let up: Int
    let down: Int
    let halfTaps: Int
    let cutoff: Double
    let halfWidth: Double
    let beta: Double
    /// [up][2K] kernel per phase, when it fits in memory; otherwise computed per output sample.
    let table: [Float]?

    /// - Precondition: both rates positive.
    public init(from: Int, to: Int, zeroCrossings: Int = 16, rolloff: Double = 0.94, beta: Double = 9) {
        precondition(from > 0 && to > 0, "Resampler: rates must be positive, got \(from) -> \(to)")
        precondition(zeroCrossings >= 1 && rolloff > 0 && rolloff <= 1, "Resampler: bad filter parameters")
        self.from = from
        self.to = to
        let g = Resampler.gcd(from, to)
        up = to / g
        down = from / g
        cutoff = rolloff * min(1, Double(to) / Double(from))
        halfWidth = Double(zeroCrossings) / cutoff
        halfTaps = Int(halfWidth.rounded(.up))
        self.beta = beta
        let taps = 2 * halfTaps
        if up * taps <= 1 << 22 {
            var t = [Float](repeating: 0, count: up * taps)
            let (K, fc, hw, b, u) = (halfTaps, cutoff, halfWidth, beta, up)
            t.withUnsafeMutableBufferPointer { tb in
                for p in 0..<u {
                    Resampler.phaseTaps(frac: Double(p) / Double(u), halfTaps: K, cutoff: fc,
                                        halfWidth: hw, beta: b, into: tb.baseAddress! + p * taps)
                }
            }
            table = t
        } else {
            table = nil
        }
    }

    /// Output length for `n` input samples: ceil(n · to / from).
    public func outputLength(_ n: Int) -> Int { (n * up + down - 1) / down }

    /// Resamples every row of `x` [C, L] -> [C, ceil(L · to / from)].
    public func process(_ x: Tensor) -> Tensor {
        precondition(x.rank == 2, "Resampler: expected [C, L], got \(x.shape)")
        let (c, n) = (x.shape[0], x.shape[1])
        let m = outputLength(n)
        let y = Tensor.zeros([c, m])
        let taps = 2 * halfTaps
        let table = self.table ?? []
        var scratch = [Float](repeating: 0, count: taps)
        table.withUnsafeBufferPointer { tb in
            scratch.withUnsafeMutableBufferPointer { sb in
                for ch in 0..<c {
                    let src = x.data + ch * n, dst = y.data + ch * m
                    for j in 0..<m {
                        let pos = j * down
                        let i0 = pos / up, p = pos % up
                        let first = i0 - halfTaps + 1
                        let coeffs: UnsafePointer<Float>
                        if tb.isEmpty {
                            Resampler.phaseTaps(frac: Double(p) / Double(up), halfTaps: halfTaps, cutoff: cutoff,
                                                halfWidth: halfWidth, beta: beta, into: sb.baseAddress!)
                            coeffs = UnsafePointer(sb.baseAddress!)
                        } else {
                            coeffs = tb.baseAddress! + p * taps
                        }
                        // Only the taps whose input index lies inside [0, n) contribute.
                        let lo = max(0, -first), hi = min(taps, n - first)
                        var acc: Float = 0
                        if lo < hi {
                            for k in lo..<hi { acc += src[first + k] * coeffs[k] }
                        }
                        dst[j] = acc
                    }
                }
            }
        }
        return y
    }

    /// Taps for one phase: tap k multiplies input i0 - K + 1 + k, at distance t = frac + K - 1 - k.
    static func phaseTaps(frac: Double, halfTaps: Int, cutoff: Double, halfWidth: Double, beta: Double,
                          into out: UnsafeMutablePointer<Float>) {
        let taps = 2 * halfTaps
        var h = [Double](repeating: 0, count: taps)
        var sum = 0.0
        let i0beta = besselI0(beta)
        for k in 0..<taps {
            let t = frac + Double(halfTaps - 1 - k)
            let u = t / halfWidth
            guard abs(u) < 1 else { continue }
            let w = besselI0(beta * (1 - u * u).squareRoot()) / i0beta
            let a = cutoff * t
            let sinc = a == 0 ? 1 : sin(Double.pi * a) / (Double.pi * a)
            h[k] = cutoff * sinc * w
            sum += h[k]
        }
        for k in 0..<taps { out[k] = Float(h[k] / sum) }
    }

    /// Modified Bessel function of the first kind, order 0, by its power series.
    static func besselI0(_ x: Double) -> Double {
        var sum = 1.0, term = 1.0
        let q = x * x / 4
        var k = 1.0
        while term > 1e-12 * sum {
            term *= q / (k * k)
            sum += term
            k += 1
        }
        return sum
    }

    static func gcd(_ a: Int, _ b: Int) -> Int {
        var (a, b) = (a, b)
        while b != 0 { (a, b) = (b, a % b) }
        return a
    }
}
