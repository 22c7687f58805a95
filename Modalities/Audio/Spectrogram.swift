import Foundation
import Tensor
import Media

/// Magnitude spectrograms for looking at clips: Hann-windowed STFT, dB relative to the clip's
/// loudest bin, drawn with low frequencies at the bottom.
public enum Spectrogram {
    /// |STFT| in dB, [bins = frame/2 + 1][frames]. `frame` must be a power of two.
    public static func decibels(_ x: [Float], frame: Int = 512, hop: Int = 128) -> [[Float]] {
        precondition(frame >= 4 && frame & (frame - 1) == 0 && hop >= 1, "Spectrogram: frame \(frame), hop \(hop)")
        let window = (0..<frame).map { Float(0.5 - 0.5 * cos(2 * Double.pi * Double($0) / Double(frame))) }
        let frames = x.count >= frame ? 1 + (x.count - frame) / hop : 1
        let bins = frame / 2 + 1
        var out = [[Float]](repeating: [Float](repeating: 0, count: frames), count: bins)
        var re = [Float](repeating: 0, count: frame), im = [Float](repeating: 0, count: frame)
        for f in 0..<frames {
            for j in 0..<frame {
                let i = f * hop + j
                re[j] = i < x.count ? x[i] * window[j] : 0
                im[j] = 0
            }
            FFT.transform(&re, &im)
            for b in 0..<bins { out[b][f] = 10 * log10(re[b] * re[b] + im[b] * im[b] + 1e-12) }
        }
        return out
    }

    /// An image [1, bins, frames] in [-1, 1]: `range` dB below the peak → black, the peak → white.
    public static func image(_ x: [Float], frame: Int = 512, hop: Int = 128, range: Float = 80) -> Tensor {
        let db = decibels(x, frame: frame, hop: hop)
        let bins = db.count, frames = db[0].count
        let peak = db.map { $0.max() ?? -120 }.max() ?? 0
        let t = Tensor.zeros([1, bins, frames])
        for b in 0..<bins {
            let row = bins - 1 - b  // low frequencies at the bottom
            for f in 0..<frames {
                let v = Swift.max(0, Swift.min(1, (db[b][f] - (peak - range)) / range))
                t.data[row * frames + f] = 2 * v - 1
            }
        }
        return t
    }

    /// Spectrograms of several clips side by side (a small gap between them) as one PNG.
    public static func write(_ clips: [[Float]], to url: URL, frame: Int = 512, hop: Int = 128) throws {
        let images = clips.map { image($0, frame: frame, hop: hop) }
        let h = images.map { $0.shape[1] }.max() ?? 1, gap = 4
        let w = images.reduce(0) { $0 + $1.shape[2] } + gap * Swift.max(0, images.count - 1)
        let canvas = Tensor(shape: [1, h, Swift.max(1, w)], scalars: [Float](repeating: 1, count: h * Swift.max(1, w)))
        var x0 = 0
        for img in images {
            let ih = img.shape[1], iw = img.shape[2]
            for y in 0..<ih { for x in 0..<iw { canvas.data[(h - ih + y) * w + x0 + x] = img.data[y * iw + x] } }
            x0 += iw + gap
        }
        try PNGCodec.write(canvas, to: url)
    }
}

/// In-place iterative radix-2 complex FFT.
enum FFT {
    static func transform(_ re: inout [Float], _ im: inout [Float]) {
        let n = re.count
        precondition(n == im.count && n & (n - 1) == 0, "FFT: length \(n)")
        var j = 0
        for i in 1..<n {
            var bit = n >> 1
            while j & bit != 0 { j ^= bit; bit >>= 1 }
            j |= bit
            if i < j { re.swapAt(i, j); im.swapAt(i, j) }
        }
        var len = 2
        while len <= n {
            let ang = -2 * Double.pi / Double(len)
            for start in stride(from: 0, to: n, by: len) {
                for k in 0..<(len / 2) {
                    let wr = Float(cos(ang * Double(k))), wi = Float(sin(ang * Double(k)))
                    let a = start + k, b = a + len / 2
                    let tr = re[b] * wr - im[b] * wi, ti = re[b] * wi + im[b] * wr
                    re[b] = re[a] - tr; im[b] = im[a] - ti
                    re[a] += tr; im[a] += ti
                }
            }
            len <<= 1
        }
    }
}
