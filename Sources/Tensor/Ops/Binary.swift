// Broadcasting add / sub / mul / div: forward kernels, and the reductions their gradients need.

public enum BinaryOp: Sendable { case add, sub, mul, div }

/// A broadcast loop nest with adjacent dimensions merged wherever every operand allows it,
/// so `[N, C, H, W] + [1, C, 1, 1]` runs as `[N, C, (H W)]` with an inner stride of 0.
struct BroadcastPlan {
    var dims: [Int] = []
    var strides: [[Int]]  // per operand, one stride per dim (0 = broadcast)

    /// `shapes[k]` broadcasts to `out`; operand k's strides follow its own row-major layout.
    init(out: [Int], shapes: [[Int]]) {
        let r = out.count
        var st: [[Int]] = shapes.map { s in
            let own = Tensor.strides(s)
            return (0..<r).map { i in
                let j = i - (r - s.count)
                if j < 0 || s[j] == 1 { return 0 }
                return own[j]
            }
        }
        // Drop size-1 dims, then merge i into i+1 where contiguous for every operand.
        var d: [Int] = []
        var s2: [[Int]] = Array(repeating: [], count: shapes.count)
        for i in 0..<r where out[i] != 1 {
            d.append(out[i])
            for k in 0..<shapes.count { s2[k].append(st[k][i]) }
        }
        var md: [Int] = []
        var ms: [[Int]] = Array(repeating: [], count: shapes.count)
        for i in 0..<d.count {
            if let last = md.last,
               (0..<shapes.count).allSatisfy({ ms[$0].last! == s2[$0][i] * d[i] }) {
                md[md.count - 1] = last * d[i]
                for k in 0..<shapes.count { ms[k][ms[k].count - 1] = s2[k][i] }
            } else {
                md.append(d[i])
                for k in 0..<shapes.count { ms[k].append(s2[k][i]) }
            }
        }
        if md.isEmpty { md = [1]; ms = ms.map { _ in [0] } }
        dims = md
        st = ms
        strides = st
    }

    var inner: Int { dims.last! }
    var outer: Int { dims.dropLast().reduce(1, *) }

    /// Offset of operand k for outer row index `o` (row-major over dims without the last).
    @inline(__always) func offset(_ o: Int, _ k: Int) -> Int {
        var rem = o, off = 0
        var i = dims.count - 2
        while i >= 0 {
            let q = rem / dims[i]
            off += (rem - q * dims[i]) * strides[k][i]
            rem = q
            i -= 1
        }
        return off
    }
}

@inline(__always)
private func binaryRow(_ op: BinaryOp, _ n: Int, _ a: UnsafePointer<Float>, _ sa: Int,
                       _ b: UnsafePointer<Float>, _ sb: Int, _ y: UnsafeMutablePointer<Float>) {
    switch (sa, sb) {
    case (1, 1):
        switch op {
        case .add: zip8(n, a, b, y) { $0 + $1 }
        case .sub: zip8(n, a, b, y) { $0 - $1 }
        case .mul: zip8(n, a, b, y) { $0 * $1 }
        case .div: zip8(n, a, b, y) { $0 / $1 }
        }
    case (1, 0):
        let s = b[0]
        switch op {
        case .add: map8(n, a, y) { $0 + s }
        case .sub: map8(n, a, y) { $0 - s }
        case .mul: map8(n, a, y) { $0 * s }
        case .div: map8(n, a, y) { $0 / s }
        }
    case (0, 1):
        let s = a[0]
        switch op {
        case .add: map8(n, b, y) { s + $0 }
        case .sub: map8(n, b, y) { s - $0 }
        case .mul: map8(n, b, y) { s * $0 }
        case .div: map8(n, b, y) { s / $0 }
        }
    default:
        for i in 0..<n {
            let x = a[i * sa], z = b[i * sb]
            switch op {
            case .add: y[i] = x + z
            case .sub: y[i] = x - z
            case .mul: y[i] = x * z
            case .div: y[i] = x / z
            }
        }
    }
}

func binaryForward(_ op: BinaryOp, _ a: Tensor, _ b: Tensor) -> Tensor {
    let outShape = broadcastShape(a.shape, b.shape)
    let out = Tensor(uninitialized: outShape)
    if out.count == 0 { return out }
    let plan = BroadcastPlan(out: outShape, shapes: [a.shape, b.shape])
    let pa = SendablePointer(a.data), pb = SendablePointer(b.data), py = SendablePointer(out.data)
    let inner = plan.inner, outer = plan.outer
    let sa = plan.strides[0].last!, sb = plan.strides[1].last!
    if outer == 1 {
        Parallel.chunks(inner, grain: 1 << 15) { s, e in
            binaryRow(op, e - s, pa.p + s * sa, sa, pb.p + s * sb, sb, py.p + s)
        }
    } else {
        Parallel.chunks(outer, grain: Swift.max(1, (1 << 15) / inner)) { s, e in
            for o in s..<e {
                binaryRow(op, inner, pa.p + plan.offset(o, 0), sa, pb.p + plan.offset(o, 1), sb, py.p + o * inner)
            }
        }
    }
    return out
}

// MARK: Public API

extension Tensor {
    public static func + (a: Tensor, b: Tensor) -> Tensor { binaryForward(.add, a, b).recorded(.binary(.add), [a, b]) }
    public static func - (a: Tensor, b: Tensor) -> Tensor { binaryForward(.sub, a, b).recorded(.binary(.sub), [a, b]) }
    public static func * (a: Tensor, b: Tensor) -> Tensor { binaryForward(.mul, a, b).recorded(.binary(.mul), [a, b]) }
    public static func / (a: Tensor, b: Tensor) -> Tensor { binaryForward(.div, a, b).recorded(.binary(.div), [a, b]) }

    public static func + (a: Tensor, s: Float) -> Tensor { a.affine(scale: 1, shift: s) }
    public static func + (s: Float, a: Tensor) -> Tensor { a.affine(scale: 1, shift: s) }
    public static func - (a: Tensor, s: Float) -> Tensor { a.affine(scale: 1, shift: -s) }
    public static func - (s: Float, a: Tensor) -> Tensor { a.affine(scale: -1, shift: s) }
    public static func * (a: Tensor, s: Float) -> Tensor { a.affine(scale: s, shift: 0) }
    public static func * (s: Float, a: Tensor) -> Tensor { a.affine(scale: s, shift: 0) }
    public static func / (a: Tensor, s: Float) -> Tensor { a.affine(scale: 1 / s, shift: 0) }
    public static func / (s: Float, a: Tensor) -> Tensor { a.reciprocal() * s }
    public static prefix func - (a: Tensor) -> Tensor { a.affine(scale: -1, shift: 0) }
}

/// Sums `g` (shaped like a broadcast result) down to `shape`, the shape of one operand.
func reduceToShape(_ g: Tensor, _ shape: [Int]) -> Tensor {
    if g.shape == shape { return g }
    let r = g.rank
    let padded = [Int](repeating: 1, count: r - shape.count) + shape
    let axes = (0..<r).filter { padded[$0] == 1 && g.shape[$0] != 1 }
    return sumForward(g, axes: axes).reshaped(shape)
}
