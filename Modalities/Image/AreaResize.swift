import Foundation
import Media

extension Pixels {
    /// Resized by area averaging (a box filter over each output pixel's footprint, with
    /// fractional edge weights): every source pixel contributes to the output in proportion to
    /// the area it shares with an output pixel, so shrinking by a non-integer factor (136 → 64)
    /// neither aliases nor blurs more than needed. PIL's `Image.reduce`/`resize(BOX)` and
    /// OpenCV's `INTER_AREA` do the same. Works on every channel alike (alpha included: composite
    /// first for results that do not mix transparent colours in).
    /// - Precondition: width, height >= 1.
    public func areaResized(width outW: Int, height outH: Int) -> Pixels {
        precondition(outW >= 1 && outH >= 1 && width >= 1 && height >= 1,
                     "areaResized: \(width)x\(height) -> \(outW)x\(outH)")
        let floats = bytes.map { Float($0) }
        return floats.withUnsafeBufferPointer {
            Self.areaResize($0.baseAddress!, width: width, height: height, channels: channels, toWidth: outW, toHeight: outH)
        }
    }

    /// `areaResized` on float samples in 0...255 ([H, W, C] interleaved), rounded to 8 bits.
    static func areaResize(_ src: UnsafePointer<Float>, width: Int, height: Int, channels c: Int,
                           toWidth outW: Int, toHeight outH: Int) -> Pixels {
        let wx = TapTable(from: width, to: outW), wy = TapTable(from: height, to: outH)
        // Rows first: [H, W, C] -> [H, outW, C], then columns -> [outH, outW, C].
        var rows = [Float](repeating: 0, count: height * outW * c)
        rows.withUnsafeMutableBufferPointer { rows in
            for y in 0..<height {
                let row = src + y * width * c, dst = rows.baseAddress! + y * outW * c
                for x in 0..<outW {
                    for t in wx.range(x) {
                        let w = wx.weights[t], s = row + wx.sources[t] * c
                        for k in 0..<c { dst[x * c + k] += w * s[k] }
                    }
                }
            }
        }
        var out = [UInt8](repeating: 0, count: outH * outW * c)
        let n = outW * c
        rows.withUnsafeBufferPointer { rows in
            out.withUnsafeMutableBufferPointer { out in
                var acc = [Float](repeating: 0, count: n)
                for y in 0..<outH {
                    for i in 0..<n { acc[i] = 0 }
                    for t in wy.range(y) {
                        let w = wy.weights[t], s = rows.baseAddress! + wy.sources[t] * n
                        for i in 0..<n { acc[i] += w * s[i] }
                    }
                    // Weights sum to 1, so values stay in 0...255 up to rounding error.
                    for i in 0..<n { out[y * n + i] = UInt8(Swift.max(0, Swift.min(255, acc[i] + 0.5))) }
                }
            }
        }
        return Pixels(width: outW, height: outH, channels: c, bytes: out)
    }

    /// `areaWeights` flattened: output i's taps are `starts[i]..<starts[i + 1]`.
    struct TapTable {
        var sources: [Int] = [], weights: [Float] = [], starts: [Int] = [0]
        init(from n: Int, to m: Int) {
            for taps in Pixels.areaWeights(from: n, to: m) {
                for (s, w) in taps { sources.append(s); weights.append(w) }
                starts.append(sources.count)
            }
        }
        func range(_ i: Int) -> Range<Int> { starts[i]..<starts[i + 1] }
    }

    /// For each of `m` output pixels over `n` source pixels, the source pixels it covers and
    /// their weights (overlap length / footprint length, summing to 1).
    static func areaWeights(from n: Int, to m: Int) -> [[(Int, Float)]] {
        let scale = Double(n) / Double(m)
        return (0..<m).map { i in
            let lo = Double(i) * scale, hi = Double(i + 1) * scale
            var taps: [(Int, Float)] = []
            var s = Int(lo.rounded(.down))
            while Double(s) < hi && s < n {
                let overlap = Swift.min(hi, Double(s + 1)) - Swift.max(lo, Double(s))
                if overlap > 1e-9 { taps.append((s, Float(overlap / scale))) }
                s += 1
            }
            return taps
        }
    }
}
