import Foundation

/// The exact arithmetic of the few NumPy and PyTorch routines that diffusers builds its
/// schedules from. Reproducing diffusers to 1e-5 over 25 steps needs the same float32
/// betas bit for bit, the same banker's rounding of timesteps, the same `np.interp`; these
/// are those routines, checked against torch 2.15 / NumPy 2.4 in `ScheduleTests`.
enum Reference {
    /// `np.linspace(start, stop, num)` in float64: `start + i * step`, last element = `stop`.
    static func linspace(_ start: Double, _ stop: Double, _ num: Int) -> [Double] {
        guard num > 0 else { return [] }
        guard num > 1 else { return [start] }
        let step = (stop - start) / Double(num - 1)
        var y = (0..<num).map { Double($0) * step + start }
        y[num - 1] = stop
        return y
    }

    /// `torch.linspace(start, end, steps, dtype=torch.float32)` on the CPU: a float32 step,
    /// each element one fused multiply-add from the nearer end (halves meet at steps / 2).
    static func torchLinspaceFloat32(_ start: Double, _ end: Double, _ steps: Int) -> [Float] {
        guard steps > 1 else { return steps == 1 ? [Float(start)] : [] }
        let s = Float(start), e = Float(end)
        let step = (e - s) / Float(steps - 1)
        let half = steps / 2
        return (0..<steps).map { i in
            i < half ? s.addingProduct(step, Float(i)) : e.addingProduct(-step, Float(steps - 1 - i))
        }
    }

    /// `np.arange(start, stop, step)` for floats: element i = start + i * ((start + step) - start).
    static func arange(_ start: Double, _ stop: Double, _ step: Double) -> [Double] {
        let length = Int(((stop - start) / step).rounded(.up))
        guard length > 0 else { return [] }
        let delta = (start + step) - start
        return (0..<length).map { $0 == 0 ? start : start + Double($0) * delta }
    }

    /// `np.round` / `torch.round`: halves go to the even neighbour.
    static func round(_ x: Double) -> Double { x.rounded(.toNearestOrEven) }

    /// `np.interp(x, arange(len(fp)), fp)` for a table indexed 0, 1, 2, ...
    static func interp(_ x: Double, _ fp: [Double]) -> Double {
        let n = fp.count
        if x <= 0 { return fp[0] }
        if x >= Double(n - 1) { return fp[n - 1] }
        let j = Int(x.rounded(.down))
        if Double(j) == x { return fp[j] }
        let slope = (fp[j + 1] - fp[j]) / 1.0
        return slope * (x - Double(j)) + fp[j]
    }

    /// diffusers' `_sigma_to_t`: the fractional training timestep whose log-sigma is
    /// log(sigma), by linear interpolation in the float32 table `logSigmas`.
    static func sigmaToT(_ sigma: Double, logSigmas: [Float]) -> Double {
        let logSigma = Foundation.log(Swift.max(sigma, 1e-10))
        // low_idx = last index with log_sigma >= logSigmas[i] (the table increases), clipped.
        var count = 0
        var lowIdx = 0
        var best = -1
        for (i, l) in logSigmas.enumerated() {
            if logSigma - Double(l) >= 0 { count += 1 }
            if count > best { best = count; lowIdx = i }
        }
        lowIdx = Swift.min(lowIdx, logSigmas.count - 2)
        let low = logSigmas[lowIdx], high = logSigmas[lowIdx + 1]
        var w = (Double(low) - logSigma) / Double(low - high)  // low - high is float32 in NumPy
        w = Swift.min(Swift.max(w, 0), 1)
        return (1 - w) * Double(lowIdx) + w * Double(lowIdx + 1)
    }

    /// `torch.quantile(x, q)` (linear interpolation) for one row, in float32 like torch.
    static func quantile(_ sorted: [Float], _ q: Float) -> Float {
        let rank = q * Float(sorted.count - 1)
        let below = Int(rank)
        let above = Int(rank.rounded(.up))
        let w = rank - Float(below)
        let a = sorted[below], b = sorted[above]
        // at::lerp: start + w (end - start) for w < 0.5, else end - (end - start)(1 - w)
        return w < 0.5 ? a + w * (b - a) : b - (b - a) * (1 - w)
    }

    /// Small dense solve A x = b (partial pivoting), float32 like `torch.linalg.solve`.
    static func solve(_ a: [[Float]], _ b: [Float]) -> [Float] {
        let n = b.count
        var m = a, r = b
        for c in 0..<n {
            var p = c
            for i in (c + 1)..<Swift.max(n, c + 1) where Swift.abs(m[i][c]) > Swift.abs(m[p][c]) { p = i }
            m.swapAt(c, p); r.swapAt(c, p)
            for i in (c + 1)..<Swift.max(n, c + 1) {
                let f = m[i][c] / m[c][c]
                for j in c..<n { m[i][j] -= f * m[c][j] }
                r[i] -= f * r[c]
            }
        }
        var x = [Float](repeating: 0, count: n)
        for i in stride(from: n - 1, through: 0, by: -1) {
            var s = r[i]
            for j in (i + 1)..<Swift.max(n, i + 1) { s -= m[i][j] * x[j] }
            x[i] = s / m[i][i]
        }
        return x
    }
}
