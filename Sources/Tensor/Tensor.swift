import Foundation

/// A contiguous, row-major Float32 tensor of rank 0–5 (rank 0 is a scalar).
///
/// Tensors are reference types so that autograd can attach a gradient and a creator node to
/// each. `reshaped` is a view that shares storage; every op that reorders memory copies.
public final class Tensor: @unchecked Sendable {
    public let shape: [Int]
    /// The Float32 elements; empty while the tensor is held as 16-bit floats (`half`).
    var storage: Storage
    /// Set while the elements are held as 16-bit floats (weights of a model loaded for
    /// inference from an F16/BF16 file): `materialized()` widens them for a kernel.
    var half: HalfStorage?

    /// When true, ops on this tensor are recorded and `backward()` fills `grad`.
    public var requiresGrad: Bool
    /// Gradient of the last `backward()` call, for tensors that require it.
    public var grad: Tensor?
    /// The op that made this tensor, when recorded (nil for leaves).
    var node: Node?

    static let maxRank = 5

    init(shape: [Int], storage: Storage) {
        precondition(shape.count <= Tensor.maxRank, "Tensor: rank \(shape.count) > \(Tensor.maxRank) for shape \(shape)")
        precondition(shape.allSatisfy { $0 >= 0 }, "Tensor: negative dimension in \(shape)")
        precondition(shape.reduce(1, *) <= storage.count, "Tensor: shape \(shape) needs more than \(storage.count) elements")
        self.shape = shape
        self.storage = storage
        self.requiresGrad = false
    }

    /// Uninitialised storage: every kernel that uses it writes each element.
    init(uninitialized shape: [Int]) {
        self.shape = shape
        self.storage = Storage(count: shape.reduce(1, *))
        self.requiresGrad = false
        precondition(shape.count <= Tensor.maxRank, "Tensor: rank \(shape.count) > \(Tensor.maxRank) for shape \(shape)")
        precondition(shape.allSatisfy { $0 >= 0 }, "Tensor: negative dimension in \(shape)")
    }

    public convenience init(shape: [Int], scalars: [Float], requiresGrad: Bool = false) {
        precondition(shape.reduce(1, *) == scalars.count,
                     "Tensor(shape: \(shape)) needs \(shape.reduce(1, *)) scalars, got \(scalars.count)")
        self.init(uninitialized: shape)
        scalars.withUnsafeBufferPointer { b in
            if let base = b.baseAddress { data.update(from: base, count: b.count) }
        }
        self.requiresGrad = requiresGrad
    }

    public convenience init(_ scalar: Float) {
        self.init(shape: [], scalars: [scalar])
    }

    public static func zeros(_ shape: [Int], requiresGrad: Bool = false) -> Tensor {
        full(shape, 0, requiresGrad: requiresGrad)
    }

    public static func ones(_ shape: [Int], requiresGrad: Bool = false) -> Tensor {
        full(shape, 1, requiresGrad: requiresGrad)
    }

    public static func full(_ shape: [Int], _ value: Float, requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(uninitialized: shape)
        t.fill(value)
        t.requiresGrad = requiresGrad
        return t
    }

    /// Evenly spaced values start, start + step, ... (count of them), as a rank-1 tensor.
    public static func arange(_ count: Int, start: Float = 0, step: Float = 1) -> Tensor {
        let t = Tensor(uninitialized: [count])
        for i in 0..<count { t.data[i] = start + Float(i) * step }
        return t
    }

    // MARK: Shape

    public var rank: Int { shape.count }
    public var count: Int { shape.reduce(1, *) }

    /// Size of `axis`; negative axes count from the end.
    public func size(_ axis: Int) -> Int { shape[normalizeAxis(axis)] }

    func normalizeAxis(_ axis: Int) -> Int {
        let a = axis < 0 ? axis + rank : axis
        precondition(a >= 0 && a < Swift.max(rank, 1), "axis \(axis) out of range for shape \(shape)")
        return a
    }

    /// Row-major strides of `shape`.
    public static func strides(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            s[i] = acc
            acc *= shape[i]
        }
        return s
    }

    // MARK: Data

    /// The first element's address. Kernels read and write through it.
    public var data: UnsafeMutablePointer<Float> {
        precondition(half == nil, "tensor \(shape) is held as 16-bit floats: read it through materialized()")
        precondition(storage !== Tensor.noElements || count == 0, "tensor \(shape) is a placeholder (counted, never allocated)")
        return storage.pointer
    }

    /// The storage of every placeholder: no elements.
    static let noElements = Storage(unpooled: 0)

    /// A tensor of `shape` with no elements behind it, to count a model's parameters before
    /// allocating them (`NNInit.counting`); reading or writing its data traps.
    public static func placeholder(_ shape: [Int]) -> Tensor { Tensor(placeholderShape: shape) }

    private init(placeholderShape shape: [Int]) {
        precondition(shape.count <= Tensor.maxRank && shape.allSatisfy { $0 >= 0 }, "Tensor.placeholder: bad shape \(shape)")
        self.shape = shape
        self.storage = Tensor.noElements
        self.requiresGrad = false
    }

    /// A copy of the elements in row-major order.
    public var scalars: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    /// The single element of a one-element tensor.
    public func item() -> Float {
        precondition(count == 1, "item() needs one element, shape is \(shape)")
        return data[0]
    }

    public subscript(flat i: Int) -> Float {
        get { precondition(i >= 0 && i < count, "flat index \(i) out of range for \(shape)"); return data[i] }
        set { precondition(i >= 0 && i < count, "flat index \(i) out of range for \(shape)"); data[i] = newValue }
    }

    /// Fills in place (not recorded by autograd).
    public func fill(_ value: Float) {
        if storage === Tensor.noElements { return }  // a placeholder: nothing behind it to fill
        let p = SendablePointer(data)
        Parallel.chunks(count, grain: 1 << 16) { s, e in
            (p.p + s).initialize(repeating: value, count: e - s)
        }
    }

    /// Copies `other`'s elements into this tensor in place (same count; not recorded).
    public func copyFrom(_ other: Tensor) {
        precondition(other.count == count, "copyFrom: \(other.shape) into \(shape)")
        if let half {  // rounded to this tensor's 16-bit format
            half.assign(from: other.materialized().data)
            return
        }
        let source = other.half == nil ? other : other.materialized()  // a 16-bit source widened first
        withExtendedLifetime(source) {
            let src = SendablePointer(source.data), dst = SendablePointer(data)
            Parallel.chunks(count, grain: 1 << 16) { s, e in
                (dst.p + s).update(from: src.p + s, count: e - s)
            }
        }
    }

    /// A new tensor with the same elements and no autograd history.
    public func copy() -> Tensor {
        let t = Tensor(uninitialized: shape)
        t.copyFrom(self)
        return t
    }

    /// This tensor's data without its autograd history (shares storage).
    public func detached() -> Tensor { Tensor(shape: shape, storage: storage) }

    /// Whether storage is shared with `other` (a reshape view of it, or the reverse).
    public func sharesStorage(with other: Tensor) -> Bool { storage === other.storage }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let n = Swift.min(count, 8)
        let head = (0..<n).map { String(format: "%.5g", data[$0]) }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(head)\(count > n ? ", ..." : "")])"
    }
}

/// Shape `a` and `b` broadcast to, numpy rules; traps with both shapes if they do not.
public func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int] {
    let r = Swift.max(a.count, b.count)
    var out = [Int](repeating: 1, count: r)
    for i in 0..<r {
        let da = i < r - a.count ? 1 : a[i - (r - a.count)]
        let db = i < r - b.count ? 1 : b[i - (r - b.count)]
        precondition(da == db || da == 1 || db == 1, "shapes \(a) and \(b) do not broadcast")
        out[i] = da == 1 ? db : da
    }
    return out
}
