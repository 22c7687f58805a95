// Vectorised float math over SIMD8<Float>: exp, erf and the activations built on them.
// Plain lane arithmetic only (generic SIMD helpers such as `clamped` compile to slow code).

typealias V8 = SIMD8<Float>

@inline(__always) func load8(_ p: UnsafePointer<Float>) -> V8 {
    UnsafeRawPointer(p).loadUnaligned(as: V8.self)
}

@inline(__always) func store8(_ v: V8, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: V8.self)
}

/// e^x, relative error ~2e-7 over the float range (Cody–Waite reduction, degree-6 polynomial).
@inline(__always) func vexp(_ x0: V8) -> V8 {
    var x = x0.replacing(with: 88.72283, where: x0 .> 88.72283)
    x = x.replacing(with: -87.33654, where: x .< -87.33654)
    let magic: Float = 12582912.0  // 1.5 * 2^23: adding it rounds to an integer in the low bits
    let t = x * 1.44269504088896341 + magic
    let n = t - magic
    var r = x - n * 0.693359375
    r = r - n * (-2.12194440e-4)
    var p: V8 = V8(repeating: 1.0 / 720)
    p = p * r + 1.0 / 120
    p = p * r + 1.0 / 24
    p = p * r + 1.0 / 6
    p = p * r + 0.5
    p = p * r + 1
    p = p * r + 1
    let tb = unsafeBitCast(t, to: SIMD8<Int32>.self)
    let mb = unsafeBitCast(V8(repeating: magic), to: SIMD8<Int32>.self)
    let scale = (tb &- mb) &<< 23
    return unsafeBitCast(unsafeBitCast(p, to: SIMD8<Int32>.self) &+ scale, to: V8.self)
}

/// erf(x), absolute error < 1.5e-7 (Abramowitz & Stegun 7.1.26).
@inline(__always) func verf(_ x: V8) -> V8 {
    let ax = x.replacing(with: -x, where: x .< 0)
    let t = 1 / (1 + 0.3275911 * ax)
    var p: V8 = V8(repeating: 1.061405429)
    p = p * t - 1.453152027
    p = p * t + 1.421413741
    p = p * t - 0.284496736
    p = p * t + 0.254829592
    p = p * t
    let y = 1 - p * vexp(-ax * ax)
    return y.replacing(with: -y, where: x .< 0)
}

@inline(__always) func vsigmoid(_ x: V8) -> V8 { 1 / (1 + vexp(-x)) }

@inline(__always) func vtanh(_ x: V8) -> V8 {
    // 1 - 2/(e^{2x}+1): exact limits at ±inf, absolute error ~1e-7 near 0.
    1 - 2 / (vexp(x + x) + 1)
}

/// Applies `f` to 8 lanes at a time over n elements; the tail goes through a padded vector.
@inline(__always)
func map8(_ n: Int, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ f: (V8) -> V8) {
    var i = 0
    while i + 8 <= n {
        store8(f(load8(x + i)), y + i)
        i += 8
    }
    if i < n {
        var v = V8(repeating: 0)
        for j in 0..<(n - i) { v[j] = x[i + j] }
        let r = f(v)
        for j in 0..<(n - i) { y[i + j] = r[j] }
    }
}

/// out = f(a, b) lane-wise over n elements (a and b contiguous).
@inline(__always)
func zip8(_ n: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
          _ y: UnsafeMutablePointer<Float>, _ f: (V8, V8) -> V8) {
    var i = 0
    while i + 8 <= n {
        store8(f(load8(a + i), load8(b + i)), y + i)
        i += 8
    }
    if i < n {
        var va = V8(repeating: 0), vb = V8(repeating: 0)
        for j in 0..<(n - i) { va[j] = a[i + j]; vb[j] = b[i + j] }
        let r = f(va, vb)
        for j in 0..<(n - i) { y[i + j] = r[j] }
    }
}

/// out = f(a, b, c) lane-wise over n elements.
@inline(__always)
func zip8(_ n: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafePointer<Float>,
          _ y: UnsafeMutablePointer<Float>, _ f: (V8, V8, V8) -> V8) {
    var i = 0
    while i + 8 <= n {
        store8(f(load8(a + i), load8(b + i), load8(c + i)), y + i)
        i += 8
    }
    if i < n {
        var va = V8(repeating: 0), vb = V8(repeating: 0), vc = V8(repeating: 0)
        for j in 0..<(n - i) { va[j] = a[i + j]; vb[j] = b[i + j]; vc[j] = c[i + j] }
        let r = f(va, vb, vc)
        for j in 0..<(n - i) { y[i + j] = r[j] }
    }
}
