// Group norm and layer norm: forward and backward side by side.
// Statistics summed in Double (group norm: float lanes first, in CKernels/norm.c); the saved mean
// and 1/std feed the backward pass.

import CKernels

/// Mean and 1/sqrt(var + eps) of n contiguous floats (two passes, population variance).
@inline(__always) private func moments(_ p: UnsafePointer<Float>, _ n: Int, eps: Float) -> (Float, Float) {
    let mean = rowSum(p, n) / Double(n)
    let m = Float(mean)
    var acc = V8(repeating: 0)
    var i = 0
    while i + 8 <= n { let d = load8(p + i) - m; acc += d * d; i += 8 }
    var v = 0.0
    for l in 0..<8 { v += Double(acc[l]) }
    while i < n { let d = Double(p[i]) - mean; v += d * d; i += 1 }
    v /= Double(n)
    return (m, Float(1 / (v + Double(eps)).squareRoot()))
}

/// y = (x - mean) * rstd * w[c] + b[c] over groups of channels, then SiLU if `silu`. x: [N, C, *S].
/// Each group runs in CKernels/norm.c (AVX-512/AVX2/baseline builds).
func groupNormForward(_ x: Tensor, groups G: Int, weight: Tensor?, bias: Tensor?, eps: Float, silu: Bool = false)
    -> (y: Tensor, mean: Tensor, rstd: Tensor) {
    let N = x.shape[0], C = x.shape[1], S = x.count / Swift.max(N * C, 1)
    let y = Tensor(uninitialized: x.shape)
    let mean = Tensor(uninitialized: [N, G]), rstd = Tensor(uninitialized: [N, G])
    let cg = C / G
    let px = SendablePointer(x.data), py = SendablePointer(y.data)
    let pm = SendablePointer(mean.data), pr = SendablePointer(rstd.data)
    let pw = weight.map { SendablePointer($0.data) }, pb = bias.map { SendablePointer($0.data) }
    Parallel.forEach(N * G) { ng in
        let base = ng * cg * S, c0 = (ng % G) * cg
        let w: UnsafePointer<Float>? = pw.map { UnsafePointer($0.p + c0) }
        let b: UnsafePointer<Float>? = pb.map { UnsafePointer($0.p + c0) }
        ck_group_norm_forward(px.p + base, Int32(cg), S, w, b, eps, silu ? 1 : 0, py.p + base, pm.p + ng, pr.p + ng)
    }
    return (y, mean, rstd)
}

/// Gradients of `groupNormForward` (with the same `silu`; the bias is needed only then).
func groupNormBackward(_ x: Tensor, groups G: Int, weight: Tensor?, bias: Tensor? = nil, silu: Bool = false,
                       mean: Tensor, rstd: Tensor, g gy: Tensor,
                       needX: Bool, needAffine: Bool) -> (dx: Tensor?, dw: Tensor?, db: Tensor?) {
    let N = x.shape[0], C = x.shape[1], S = x.count / Swift.max(N * C, 1)
    let cg = C / G
    let dx = needX ? Tensor(uninitialized: x.shape) : nil
    // Per-(n, c) partial sums of dy * xhat and dy, reduced over n in order afterwards.
    let pdw = Tensor(uninitialized: [N, C]), pdb = Tensor(uninitialized: [N, C])
    let px = SendablePointer(x.data), pg = SendablePointer(gy.data)
    let pm = SendablePointer(mean.data), pr = SendablePointer(rstd.data)
    let pw = weight.map { SendablePointer($0.data) }, pb = bias.map { SendablePointer($0.data) }
    let pdx = dx.map { SendablePointer($0.data) }
    let ppw = SendablePointer(pdw.data), ppb = SendablePointer(pdb.data)
    Parallel.forEach(N * G) { ng in
        let n = ng / G, c0 = (ng % G) * cg, base = (n * C + c0) * S
        let w: UnsafePointer<Float>? = pw.map { UnsafePointer($0.p + c0) }
        let b: UnsafePointer<Float>? = pb.map { UnsafePointer($0.p + c0) }
        let d: UnsafeMutablePointer<Float>? = pdx.map { $0.p + base }
        ck_group_norm_backward(px.p + base, pg.p + base, Int32(cg), S, w, b, pm.p[ng], pr.p[ng], silu ? 1 : 0,
                               d, ppw.p + n * C + c0, ppb.p + n * C + c0)
    }
    var dw: Tensor? = nil, db: Tensor? = nil
    if needAffine {
        dw = sumForward(pdw, axes: [0]).reshapedRaw([C])
        db = sumForward(pdb, axes: [0]).reshapedRaw([C])
    }
    return (dx, dw, db)
}

/// y = (x - mean) * rstd * w + b over the last dim D.
func layerNormForward(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float) -> (y: Tensor, mean: Tensor, rstd: Tensor) {
    let D = x.shape.last!, rows = x.count / Swift.max(D, 1)
    let y = Tensor(uninitialized: x.shape)
    let mean = Tensor(uninitialized: [rows]), rstd = Tensor(uninitialized: [rows])
    let px = SendablePointer(x.data), py = SendablePointer(y.data)
    let pm = SendablePointer(mean.data), pr = SendablePointer(rstd.data)
    let pw = weight.map { SendablePointer($0.data) }, pb = bias.map { SendablePointer($0.data) }
    Parallel.forEach(rows, grain: Swift.max(1, 4096 / Swift.max(D, 1))) { row in
        let xs = px.p + row * D, ys = py.p + row * D
        let (m, r) = moments(xs, D, eps: eps)
        pm.p[row] = m; pr.p[row] = r
        switch (pw, pb) {
        case let (w?, b?): for k in 0..<D { ys[k] = (xs[k] - m) * r * w.p[k] + b.p[k] }
        case let (w?, nil): for k in 0..<D { ys[k] = (xs[k] - m) * r * w.p[k] }
        case let (nil, b?): for k in 0..<D { ys[k] = (xs[k] - m) * r + b.p[k] }
        case (nil, nil): map8(D, xs, ys) { ($0 - m) * r }
        }
    }
    return (y, mean, rstd)
}

func layerNormBackward(_ x: Tensor, weight: Tensor?, mean: Tensor, rstd: Tensor, g gy: Tensor,
                       needX: Bool, needAffine: Bool) -> (dx: Tensor?, dw: Tensor?, db: Tensor?) {
    let D = x.shape.last!, rows = x.count / Swift.max(D, 1)
    let dx = needX ? Tensor(uninitialized: x.shape) : nil
    let grain = Swift.max(1, 4096 / Swift.max(D, 1))
    let T = Parallel.chunkCount(rows, grain: grain)
    let partW = Tensor.zeros([T, D]), partB = Tensor.zeros([T, D])
    let px = SendablePointer(x.data), pg = SendablePointer(gy.data)
    let pm = SendablePointer(mean.data), pr = SendablePointer(rstd.data)
    let pw = weight.map { SendablePointer($0.data) }
    let pdx = dx.map { SendablePointer($0.data) }
    let ppw = SendablePointer(partW.data), ppb = SendablePointer(partB.data)
    Parallel.indexedChunks(rows, grain: grain) { t, s, e in
        let aw = ppw.p + t * D, ab = ppb.p + t * D
        for row in s..<e {
            let xs = px.p + row * D, gs = pg.p + row * D
            let m = pm.p[row], r = pr.p[row]
            var sa = 0.0, sb = 0.0
            for k in 0..<D {
                let xh = (xs[k] - m) * r
                let dxh = gs[k] * (pw?.p[k] ?? 1)
                sa += Double(dxh); sb += Double(dxh * xh)
                aw[k] += gs[k] * xh; ab[k] += gs[k]
            }
            guard let pdx else { continue }
            let a = Float(sa / Double(D)), b = Float(sb / Double(D))
            let ds = pdx.p + row * D
            for k in 0..<D {
                let xh = (xs[k] - m) * r
                ds[k] = r * (gs[k] * (pw?.p[k] ?? 1) - a - xh * b)
            }
        }
    }
    var dw: Tensor? = nil, db: Tensor? = nil
    if needAffine {
        dw = sumForward(partW, axes: [0]).reshapedRaw([D])
        db = sumForward(partB, axes: [0]).reshapedRaw([D])
    }
    return (dx, dw, db)
}

// MARK: Public API

extension Tensor {
    /// Group normalisation of [N, C, *S] over C/groups channels and all of S, as
    /// `torch.nn.functional.group_norm`; weight and bias are per channel [C].
    /// With `silu`, SiLU follows in the same pass (the result is `groupNorm(…).silu()`; the backward
    /// recomputes the normalised values instead of keeping them).
    public func groupNorm(groups: Int, weight: Tensor? = nil, bias: Tensor? = nil, eps: Float = 1e-5,
                          silu: Bool = false) -> Tensor {
        precondition(rank >= 2 && groups >= 1 && shape[1] % groups == 0,
                     "groupNorm: \(groups) groups do not divide the channels of \(shape)")
        if let weight { precondition(weight.shape == [shape[1]], "groupNorm: weight \(weight.shape) for \(shape)") }
        if let bias { precondition(bias.shape == [shape[1]], "groupNorm: bias \(bias.shape) for \(shape)") }
        let (y, m, r) = groupNormForward(self, groups: groups, weight: weight, bias: bias, eps: eps, silu: silu)
        return y.recorded(.groupNorm(groups: groups, hasWeight: weight != nil, hasBias: bias != nil, silu: silu,
                                     mean: m, rstd: r),
                          [self] + [weight, bias].compactMap { $0 })
    }

    /// Layer normalisation over the last dim, as `torch.nn.functional.layer_norm`.
    public func layerNorm(weight: Tensor? = nil, bias: Tensor? = nil, eps: Float = 1e-5) -> Tensor {
        precondition(rank >= 1, "layerNorm of a scalar")
        if let weight { precondition(weight.shape == [shape.last!], "layerNorm: weight \(weight.shape) for \(shape)") }
        if let bias { precondition(bias.shape == [shape.last!], "layerNorm: bias \(bias.shape) for \(shape)") }
        let (y, m, r) = layerNormForward(self, weight: weight, bias: bias, eps: eps)
        return y.recorded(.layerNorm(hasWeight: weight != nil, hasBias: bias != nil, mean: m, rstd: r),
                          [self] + [weight, bias].compactMap { $0 })
    }
}
