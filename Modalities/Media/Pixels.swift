import Tensor

/// An 8-bit image: `bytes` holds `height` rows of `width` pixels of `channels` interleaved
/// samples ([H, W, C] in einops notation). Channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA.
public struct Pixels: Equatable, Sendable {
    public var width: Int
    public var height: Int
    public var channels: Int
    public var bytes: [UInt8]

    /// - Precondition: `bytes.count == width * height * channels`, channels in 1...4.
    public init(width: Int, height: Int, channels: Int, bytes: [UInt8]) {
        precondition((1...4).contains(channels), "Pixels: channels must be 1...4, got \(channels)")
        precondition(width >= 0 && height >= 0 && bytes.count == width * height * channels,
                     "Pixels: \(bytes.count) bytes for \(width)x\(height)x\(channels)")
        self.width = width
        self.height = height
        self.channels = channels
        self.bytes = bytes
    }

    /// Planar floats: [H, W, C] bytes -> [C, H, W] in [-1, 1] (0 -> -1, 255 -> 1).
    public func tensor() -> Tensor {
        let plane = width * height
        let t = Tensor.zeros([channels, height, width])
        let out = t.data
        bytes.withUnsafeBufferPointer { src in
            for i in 0..<plane {
                for c in 0..<channels {
                    out[c * plane + i] = Float(src[i * channels + c]) * (2.0 / 255.0) - 1
                }
            }
        }
        return t
    }

    /// Quantises a [C, H, W] tensor in [-1, 1] to 8 bits: round((x + 1) / 2 * 255), clipped;
    /// NaN becomes 0.
    /// - Precondition: rank 3 and C in 1...4.
    public init(tensor t: Tensor) {
        precondition(t.rank == 3 && (1...4).contains(t.shape[0]),
                     "Pixels(tensor:): expected [C, H, W] with C in 1...4, got \(t.shape)")
        let (c, h, w) = (t.shape[0], t.shape[1], t.shape[2])
        let plane = h * w
        let src = t.data
        var bytes = [UInt8](repeating: 0, count: plane * c)
        bytes.withUnsafeMutableBufferPointer { dst in
            for i in 0..<plane {
                for k in 0..<c {
                    dst[i * c + k] = Pixels.quantize(src[k * plane + i])
                }
            }
        }
        self.init(width: w, height: h, channels: c, bytes: bytes)
    }

    @inline(__always)
    static func quantize(_ x: Float) -> UInt8 {
        let v = ((x + 1) * 127.5).rounded()
        // `!(v >= 0)` also catches NaN.
        if !(v >= 0) { return 0 }
        if v >= 255 { return 255 }
        return UInt8(v)
    }
}
