import Foundation

// Pointwise functions: forward and backward side by side.

public enum UnaryOp: Sendable {
    case exp, log, sqrt, rsqrt, tanh, sigmoid, silu, abs, square, reciprocal, relu
    /// x · tanh(softplus(x)), softplus with PyTorch's threshold of 20.
    case mish
    /// GELU with the exact erf form (PyTorch's default, `approximate="none"`).
    case gelu
    /// GELU with the tanh approximation (`approximate="tanh"`).
    case geluTanh
}

private let sqrtHalf: Float = 0.70710678118654752
private let invSqrt2Pi: Float = 0.39894228040143268
private let geluC: Float = 0.79788456080286536  // sqrt(2/pi)

@inline(__always) private func forwardLanes(_ op: UnaryOp, _ x: V8) -> V8 {
    switch op {
    case .exp: return vexp(x)
    case .sqrt: return x.squareRoot()
    case .rsqrt: return 1 / x.squareRoot()
    case .tanh: return vtanh(x)
    case .sigmoid: return vsigmoid(x)
    case .silu: return x * vsigmoid(x)
    case .abs: return x.replacing(with: -x, where: x .< 0)
    case .square: return x * x
    case .reciprocal: return 1 / x
    case .gelu: return 0.5 * x * (1 + verf(x * sqrtHalf))
    case .geluTanh: return 0.5 * x * (1 + vtanh(geluC * (x + 0.044715 * x * x * x)))
    case .relu: return x.replacing(with: 0, where: x .< 0)
    case .mish: return x * mishTanhSoftplus(vexp(x.replacing(with: 20, where: x .> 20)))
    case .log: fatalError("scalar op")
    }
}

/// tanh(softplus(x)) from e = exp(min(x, 20)): with n = e(e + 2) = (1 + e)² − 1 it is n / (n + 2),
/// with no cancellation for negative x; 1 in float above 20, where softplus is linear.
@inline(__always) private func mishTanhSoftplus(_ e: V8) -> V8 {
    let n = e * (e + 2)
    return n / (n + 2)
}

func unaryForward(_ op: UnaryOp, _ x: Tensor) -> Tensor {
    let y = Tensor(uninitialized: x.shape)
    let px = SendablePointer(x.data), py = SendablePointer(y.data)
    if let code = fastUnaryCode(op) {
        Parallel.chunks(x.count, grain: 1 << 14) { s, e in fastUnary(code, px.p + s, py.p + s, e - s) }
        return y
    }
    Parallel.chunks(x.count, grain: 1 << 14) { s, e in
        let a = px.p + s, b = py.p + s, n = e - s
        switch op {
        // A log kernel is not worth its code: no hot loop takes logs.
        case .log: for i in 0..<n { b[i] = Foundation.log(a[i]) }
        case .mish: map8(n, a, b) { forwardLanes(.mish, $0) }
        case .relu: map8(n, a, b) { forwardLanes(.relu, $0) }
        case .exp: map8(n, a, b) { forwardLanes(.exp, $0) }
        case .sqrt: map8(n, a, b) { forwardLanes(.sqrt, $0) }
        case .rsqrt: map8(n, a, b) { forwardLanes(.rsqrt, $0) }
        case .tanh: map8(n, a, b) { forwardLanes(.tanh, $0) }
        case .sigmoid: map8(n, a, b) { forwardLanes(.sigmoid, $0) }
        case .silu: map8(n, a, b) { forwardLanes(.silu, $0) }
        case .abs: map8(n, a, b) { forwardLanes(.abs, $0) }
        case .square: map8(n, a, b) { forwardLanes(.square, $0) }
        case .reciprocal: map8(n, a, b) { forwardLanes(.reciprocal, $0) }
        case .gelu: map8(n, a, b) { forwardLanes(.gelu, $0) }
        case .geluTanh: map8(n, a, b) { forwardLanes(.geluTanh, $0) }
        }
    }
    return y
}

/// The same functions in Swift SIMD (the reference the C kernels are tested against).
func unaryForwardReference(_ op: UnaryOp, _ x: Tensor) -> Tensor {
    let y = Tensor(uninitialized: x.shape)
    map8(x.count, x.data, y.data) { forwardLanes(op, $0) }
    return y
}

/// dx = g * f'(x), from the input x and the output y.
func unaryBackward(_ op: UnaryOp, x: Tensor, y: Tensor, g: Tensor) -> Tensor {
    let dx = Tensor(uninitialized: x.shape)
    let px = SendablePointer(x.data), py = SendablePointer(y.data)
    let pg = SendablePointer(g.data), pd = SendablePointer(dx.data)
    Parallel.chunks(x.count, grain: 1 << 14) { s, e in
        let xs = px.p + s, ys = py.p + s, gs = pg.p + s, ds = pd.p + s, n = e - s
        switch op {
        case .exp: zip8(n, ys, gs, ds) { y, g in g * y }
        case .log: zip8(n, xs, gs, ds) { x, g in g / x }
        case .sqrt: zip8(n, ys, gs, ds) { y, g in g * 0.5 / y }
        case .rsqrt: zip8(n, ys, gs, ds) { y, g in g * -0.5 * y * y * y }
        case .tanh: zip8(n, ys, gs, ds) { y, g in g * (1 - y * y) }
        case .sigmoid: zip8(n, ys, gs, ds) { y, g in g * y * (1 - y) }
        case .silu:
            zip8(n, xs, gs, ds) { x, g in
                let sg = vsigmoid(x)
                return g * sg * (1 + x * (1 - sg))
            }
        case .abs:
            zip8(n, xs, gs, ds) { x, g in
                let z = V8(repeating: 0)
                return g.replacing(with: -g, where: x .< 0).replacing(with: z, where: x .== 0)
            }
        case .square: zip8(n, xs, gs, ds) { x, g in 2 * g * x }
        case .relu: zip8(n, xs, gs, ds) { x, g in g.replacing(with: 0, where: x .<= 0) }
        case .mish:
            // d/dx x·tanh(sp(x)) = t + x (1 − t²) σ(x), t = tanh(sp(x)), σ(x) = e / (1 + e)
            zip8(n, xs, gs, ds) { x, g in
                let e = vexp(x.replacing(with: 20, where: x .> 20))
                let t = mishTanhSoftplus(e)
                return g * (t + x * (1 - t * t) * (e / (1 + e)))
            }
        case .reciprocal: zip8(n, ys, gs, ds) { y, g in -g * y * y }
        case .gelu:
            zip8(n, xs, gs, ds) { x, g in
                g * (0.5 * (1 + verf(x * sqrtHalf)) + x * invSqrt2Pi * vexp(-0.5 * x * x))
            }
        case .geluTanh:
            zip8(n, xs, gs, ds) { x, g in
                let t = vtanh(geluC * (x + 0.044715 * x * x * x))
                let du = geluC * (1 + 3 * 0.044715 * x * x)
                return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)
            }
        }
    }
    return dx
}

/// y = x * scale + shift
func affineForward(_ x: Tensor, scale: Float, shift: Float) -> Tensor {
    let y = Tensor(uninitialized: x.shape)
    let px = SendablePointer(x.data), py = SendablePointer(y.data)
    Parallel.chunks(x.count, grain: 1 << 15) { s, e in
        map8(e - s, px.p + s, py.p + s) { $0 * scale + shift }
    }
    return y
}

/// y = x^p; dx = g * p * x^(p-1)
func powForward(_ x: Tensor, _ p: Float) -> Tensor {
    let y = Tensor(uninitialized: x.shape)
    let px = SendablePointer(x.data), py = SendablePointer(y.data)
    Parallel.chunks(x.count, grain: 1 << 14) { s, e in
        for i in s..<e { py.p[i] = Foundation.pow(px.p[i], p) }
    }
    return y
}

func powBackward(_ x: Tensor, _ p: Float, g: Tensor) -> Tensor {
    let dx = Tensor(uninitialized: x.shape)
    let px = SendablePointer(x.data), pg = SendablePointer(g.data), pd = SendablePointer(dx.data)
    Parallel.chunks(x.count, grain: 1 << 14) { s, e in
        for i in s..<e { pd.p[i] = pg.p[i] * p * Foundation.pow(px.p[i], p - 1) }
    }
    return dx
}

/// y = min(max(x, lo), hi); the gradient passes where lo <= x <= hi (as PyTorch's clamp).
func clampForward(_ x: Tensor, _ lo: Float, _ hi: Float) -> Tensor {
    let y = Tensor(uninitialized: x.shape)
    let px = SendablePointer(x.data), py = SendablePointer(y.data)
    Parallel.chunks(x.count, grain: 1 << 15) { s, e in
        map8(e - s, px.p + s, py.p + s) { v in
            v.replacing(with: V8(repeating: lo), where: v .< lo).replacing(with: V8(repeating: hi), where: v .> hi)
        }
    }
    return y
}

func clampBackward(_ x: Tensor, _ lo: Float, _ hi: Float, g: Tensor) -> Tensor {
    let dx = Tensor(uninitialized: x.shape)
    let px = SendablePointer(x.data), pg = SendablePointer(g.data), pd = SendablePointer(dx.data)
    Parallel.chunks(x.count, grain: 1 << 15) { s, e in
        zip8(e - s, px.p + s, pg.p + s, pd.p + s) { v, g in
            let z = V8(repeating: 0)
            return g.replacing(with: z, where: v .< lo).replacing(with: z, where: v .> hi)
        }
    }
    return dx
}

// MARK: Public API

extension Tensor {
    func unary(_ op: UnaryOp) -> Tensor {
        let y = unaryForward(op, self)
        return y.recorded(.unary(op, output: y.detached()), [self])
    }

    public func exp() -> Tensor { unary(.exp) }
    public func log() -> Tensor { unary(.log) }
    public func sqrt() -> Tensor { unary(.sqrt) }
    public func rsqrt() -> Tensor { unary(.rsqrt) }
    public func tanh() -> Tensor { unary(.tanh) }
    public func sigmoid() -> Tensor { unary(.sigmoid) }
    public func silu() -> Tensor { unary(.silu) }
    public func gelu(approximateTanh: Bool = false) -> Tensor { unary(approximateTanh ? .geluTanh : .gelu) }
    public func abs() -> Tensor { unary(.abs) }
    public func square() -> Tensor { unary(.square) }
    public func reciprocal() -> Tensor { unary(.reciprocal) }
    public func relu() -> Tensor { unary(.relu) }
    public func mish() -> Tensor { unary(.mish) }

    /// x * scale + shift
    public func affine(scale: Float, shift: Float) -> Tensor {
        affineForward(self, scale: scale, shift: shift).recorded(.affine(scale: scale), [self])
    }

    public func pow(_ p: Float) -> Tensor { powForward(self, p).recorded(.pow(p), [self]) }

    public func clamped(min lo: Float = -.infinity, max hi: Float = .infinity) -> Tensor {
        clampForward(self, lo, hi).recorded(.clamp(lo, hi), [self])
    }
}
