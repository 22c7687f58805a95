// Numerically stable softmax over the last dim.

/// In place: row <- exp(row - max(row)); returns (max, sum of the exponentials).
@inline(__always) func expRow(_ p: UnsafeMutablePointer<Float>, _ n: Int) -> (Float, Float) {
    if n == 0 { return (0, 0) }
    var m = fastMax(p, n)
    if m == -.infinity { m = 0 }  // a fully masked row: exp(-inf) = 0 everywhere
    return (m, fastExpShiftSum(p, n, m))
}

/// In place: row <- softmax(row); returns the row's logsumexp.
@inline(__always) func softmaxRow(_ p: UnsafeMutablePointer<Float>, _ n: Int) -> Float {
    let (m, s) = expRow(p, n)
    let inv = 1 / s
    map8(n, p, p) { $0 * inv }
    return m + Foundation.log(s)
}

import Foundation

func softmaxForward(_ x: Tensor) -> Tensor {
    let D = x.shape.last!, rows = x.count / Swift.max(D, 1)
    let y = x.copy()
    let py = SendablePointer(y.data)
    Parallel.forEach(rows, grain: Swift.max(1, 4096 / Swift.max(D, 1))) { r in _ = softmaxRow(py.p + r * D, D) }
    return y
}

/// dx = y * (g - sum(g * y)) row by row.
func softmaxBackward(y: Tensor, g: Tensor) -> Tensor {
    let D = y.shape.last!, rows = y.count / Swift.max(D, 1)
    let dx = Tensor(uninitialized: y.shape)
    let py = SendablePointer(y.data), pg = SendablePointer(g.data), pd = SendablePointer(dx.data)
    Parallel.forEach(rows, grain: Swift.max(1, 4096 / Swift.max(D, 1))) { r in
        let ys = py.p + r * D, gs = pg.p + r * D, ds = pd.p + r * D
        var dot = 0.0
        for k in 0..<D { dot += Double(ys[k] * gs[k]) }
        let d = Float(dot)
        zip8(D, ys, gs, ds) { y, g in y * (g - d) }
    }
    return dx
}

extension Tensor {
    /// Softmax over `axis` (last by default).
    public func softmax(axis: Int = -1) -> Tensor {
        let a = normalizeAxis(axis)
        if a != rank - 1 { return transposed(a, -1).softmax().transposed(a, -1) }
        let y = softmaxForward(self)
        return y.recorded(.softmax(output: y.detached()), [self])
    }
}
