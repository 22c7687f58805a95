/// A fixed 6×7×6 RGB palette (252 colours; green gets the extra level, the eye is most
/// sensitive to it) with 4×4 ordered dithering. Fixed rather than adaptive: previews stay
/// stable from frame to frame and need no pass over the clip first.
enum GIFPalette {
    static let levels = (r: 6, g: 7, b: 6)

    /// ARGB entries, index = (r * 7 + g) * 6 + b.
    static let colors: [UInt32] = {
        var out: [UInt32] = []
        for r in 0..<levels.r {
            for g in 0..<levels.g {
                for b in 0..<levels.b {
                    let R = UInt32(r * 255 / (levels.r - 1)), G = UInt32(g * 255 / (levels.g - 1))
                    let B = UInt32(b * 255 / (levels.b - 1))
                    out.append(0xFF00_0000 | R << 16 | G << 8 | B)
                }
            }
        }
        return out
    }()

    /// Bayer 4×4 thresholds in (0, 1).
    private static let bayer: [Float] = [0, 8, 2, 10, 12, 4, 14, 6, 3, 11, 1, 9, 15, 7, 13, 5].map { (Float($0) + 0.5) / 16 }

    /// [H, W, 3] bytes -> [H, W] palette indices (rows `stride` bytes apart).
    static func indices(rgb: UnsafePointer<UInt8>, width: Int, height: Int,
                        into out: UnsafeMutablePointer<UInt8>, stride: Int) {
        @inline(__always) func q(_ v: UInt8, _ n: Int, _ t: Float) -> Int {
            // Position between the two nearest levels; the threshold decides which one.
            let x = Float(v) * Float(n - 1) / 255
            let lo = Int(x)
            return min(n - 1, lo + (x - Float(lo) > t ? 1 : 0))
        }
        for y in 0..<height {
            for x in 0..<width {
                let t = bayer[(y & 3) * 4 + (x & 3)]
                let p = rgb + (y * width + x) * 3
                let r = q(p[0], levels.r, t), g = q(p[1], levels.g, t), b = q(p[2], levels.b, t)
                out[y * stride + x] = UInt8((r * levels.g + g) * levels.b + b)
            }
        }
    }
}
