import Foundation
import Tensor

/// A loss curve as a PNG: log-scale loss (raw in grey, a moving average in white) over steps.
public enum LossPlot {
    public static func write(csv: URL, to url: URL, width: Int = 480, height: Int = 240) throws {
        let text = (try? String(contentsOf: csv, encoding: .utf8)) ?? ""
        let losses = text.split(separator: "\n").dropFirst().compactMap { line -> Float? in
            let f = line.split(separator: ",")
            return f.count >= 2 ? Float(f[1]) : nil
        }.filter { $0 > 0 && $0.isFinite }
        let img = Tensor.full([1, height, width], -1)
        guard losses.count >= 2 else { try PNGCodec.write(img, to: url); return }
        let logs = losses.map { Foundation.log10($0) }
        let lo = logs.min()!, hi = Swift.max(logs.max()!, lo + 1e-3)
        let window = Swift.max(1, losses.count / 50)
        var smooth: [Float] = []
        var acc: Float = 0
        for (i, v) in logs.enumerated() {
            acc += v
            if i >= window { acc -= logs[i - window] }
            smooth.append(acc / Float(Swift.min(i + 1, window)))
        }
        func plot(_ ys: [Float], _ value: Float) {
            for x in 0..<width {
                let i = x * (ys.count - 1) / Swift.max(width - 1, 1)
                let y = Int((1 - (ys[i] - lo) / (hi - lo)) * Float(height - 1))
                img.data[Swift.max(0, Swift.min(height - 1, y)) * width + x] = value
            }
        }
        plot(logs, 0)
        plot(smooth, 1)
        try PNGCodec.write(img, to: url)
    }
}
