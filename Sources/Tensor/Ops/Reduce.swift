// Sums over axes (and mean/variance built from them), and broadcasting, which is their gradient.

/// Sum of x over `axes`, keeping them as size-1 dims. Deterministic for a given thread count.
func sumForward(_ x: Tensor, axes: [Int]) -> Tensor {
    var outShape = x.shape
    for a in axes { outShape[a] = 1 }
    let out = Tensor(uninitialized: outShape)
    if out.count == 0 { return out }
    if x.count == 0 { out.fill(0); return out }
    let plan = BroadcastPlan(out: x.shape, shapes: [x.shape, outShape])
    let d = plan.dims, sx = plan.strides[0], so = plan.strides[1]
    let kept = d.indices.filter { so[$0] != 0 }
    let red = d.indices.filter { so[$0] == 0 }
    let px = SendablePointer(x.data), po = SendablePointer(out.data)
    let nOut = out.count
    let innerContiguous = red.last == d.count - 1 && sx[d.count - 1] == 1
    let rowLen = innerContiguous ? d[d.count - 1] : 1
    let outerRed = innerContiguous ? Array(red.dropLast()) : red
    let nRows = outerRed.reduce(1) { $0 * d[$1] }

    // Sum of the reduced set starting at `base`, over reduced rows r0..<r1.
    @inline(__always) func partial(_ base: Int, _ r0: Int, _ r1: Int) -> Double {
        var acc = 0.0
        for r in r0..<r1 {
            var rem = r, off = base
            for j in stride(from: outerRed.count - 1, through: 0, by: -1) {
                let dim = d[outerRed[j]]
                let q = rem / dim
                off += (rem - q * dim) * sx[outerRed[j]]
                rem = q
            }
            if innerContiguous { acc += rowSum(px.p + off, rowLen) } else { acc += Double(px.p[off]) }
        }
        return acc
    }

    if nOut == 1 {
        // One output: split the reduced rows (or the single row) across threads, combine in order.
        let T = Threads.count
        var parts = [Double](repeating: 0, count: T)
        parts.withUnsafeMutableBufferPointer { pp in
            let pparts = SendablePointer(pp.baseAddress!)
            if nRows >= T {
                Parallel.forEach(T) { t in pparts.p[t] = partial(0, nRows * t / T, nRows * (t + 1) / T) }
            } else {
                Parallel.forEach(T) { t in
                    let s = rowLen * t / T, e = rowLen * (t + 1) / T
                    var acc = 0.0
                    for r in 0..<nRows {
                        var rem = r, off = 0
                        for j in stride(from: outerRed.count - 1, through: 0, by: -1) {
                            let dim = d[outerRed[j]]
                            let q = rem / dim
                            off += (rem - q * dim) * sx[outerRed[j]]
                            rem = q
                        }
                        acc += rowSum(px.p + off + s, e - s)
                    }
                    pparts.p[t] = acc
                }
            }
        }
        po.p[0] = Float(parts.reduce(0, +))
        return out
    }

    if d.count == 2 && red == [0] && sx[1] == 1 {
        // [R, K] -> [K] (a bias's gradient, per-thread partials): whole rows added in columns
        // blocks, in Double like the other paths, each block's rows in order.
        let R = d[0], K = d[1], block = 512
        Parallel.chunks((K + block - 1) / block, grain: Swift.max(1, 64 / Swift.max(1, R))) { s, e in
            var acc = [Double](repeating: 0, count: block)
            acc.withUnsafeMutableBufferPointer { a in
                for b in s..<e {
                    let j0 = b * block, n = Swift.min(block, K - j0)
                    for j in 0..<n { a[j] = 0 }
                    for r in 0..<R {
                        let row = px.p + r * K + j0
                        for j in 0..<n { a[j] += Double(row[j]) }
                    }
                    for j in 0..<n { po.p[j0 + j] = Float(a[j]) }
                }
            }
        }
        return out
    }

    Parallel.chunks(nOut, grain: Swift.max(1, 4096 / Swift.max(1, nRows * rowLen))) { s, e in
        for o in s..<e {
            var rem = o, base = 0
            for j in stride(from: kept.count - 1, through: 0, by: -1) {
                let dim = d[kept[j]]
                let q = rem / dim
                base += (rem - q * dim) * sx[kept[j]]
                rem = q
            }
            po.p[o] = Float(partial(base, 0, nRows))
        }
    }
    return out
}

/// Sum of n contiguous floats: eight float lanes, then the lanes in Double.
@inline(__always) func rowSum(_ p: UnsafePointer<Float>, _ n: Int) -> Double {
    var acc = V8(repeating: 0), acc2 = V8(repeating: 0)
    var i = 0
    while i + 16 <= n {
        acc += load8(p + i)
        acc2 += load8(p + i + 8)
        i += 16
    }
    acc += acc2
    var total = 0.0
    for l in 0..<8 { total += Double(acc[l]) }
    while i < n { total += Double(p[i]); i += 1 }
    return total
}

/// x broadcast to `shape` (a copy).
func expandForward(_ x: Tensor, to shape: [Int]) -> Tensor {
    let out = Tensor(uninitialized: shape)
    if out.count == 0 { return out }
    let plan = BroadcastPlan(out: shape, shapes: [x.shape])
    let inner = plan.inner, sx = plan.strides[0].last!
    let px = SendablePointer(x.data), py = SendablePointer(out.data)
    Parallel.chunks(plan.outer, grain: Swift.max(1, (1 << 15) / inner)) { s, e in
        for o in s..<e {
            let src = px.p + plan.offset(o, 0), dst = py.p + o * inner
            if sx == 0 { dst.initialize(repeating: src[0], count: inner) }
            else { for i in 0..<inner { dst[i] = src[i * sx] } }
        }
    }
    return out
}

// MARK: Public API

extension Tensor {
    func normalizedAxes(_ axes: [Int]) -> [Int] {
        let a = axes.map { normalizeAxis($0) }
        precondition(Set(a).count == a.count, "repeated axis in \(axes) for shape \(shape)")
        return a.sorted()
    }

    /// Sum over `axes` (all axes when nil).
    public func sum(axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        let ax = axes.map(normalizedAxes) ?? Array(0..<rank)
        let kept = sumForward(self, axes: ax).recorded(.sum(inputShape: shape), [self])
        if keepDims { return kept }
        return kept.reshaped(shape.enumerated().filter { !ax.contains($0.offset) }.map(\.element))
    }

    public func sum(axis: Int, keepDims: Bool = false) -> Tensor { sum(axes: [axis], keepDims: keepDims) }

    /// Mean over `axes` (all axes when nil).
    public func mean(axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        let ax = axes.map(normalizedAxes) ?? Array(0..<rank)
        let n = ax.reduce(1) { $0 * shape[$1] }
        return sum(axes: ax, keepDims: keepDims) * (1 / Float(Swift.max(n, 1)))
    }

    public func mean(axis: Int, keepDims: Bool = false) -> Tensor { mean(axes: [axis], keepDims: keepDims) }

    /// Variance over `axes`, dividing by (n - correction): 0 is the population variance,
    /// 1 is PyTorch's default (unbiased).
    public func variance(axes: [Int]? = nil, keepDims: Bool = false, correction: Int = 0) -> Tensor {
        let ax = axes.map(normalizedAxes) ?? Array(0..<rank)
        let n = ax.reduce(1) { $0 * shape[$1] }
        let centered = self - mean(axes: ax, keepDims: true)
        return (centered * centered).sum(axes: ax, keepDims: keepDims) * (1 / Float(Swift.max(n - correction, 1)))
    }

    /// This tensor broadcast to `shape` (a copy).
    public func broadcast(to shape: [Int]) -> Tensor {
        precondition(broadcastShape(self.shape, shape) == shape, "cannot broadcast \(self.shape) to \(shape)")
        if shape == self.shape { return self }
        return expandForward(self, to: shape).recorded(.expand(inputShape: self.shape), [self])
    }
}
