import Foundation
import Tensor

/// Parameter initialisation as PyTorch's defaults, drawn from one seeded stream.
/// `NNInit.seed(s)` before building a model makes its initial weights reproducible.
public enum NNInit {
    nonisolated(unsafe) public static var generator = RandomGenerator(seed: 0)

    public static func seed(_ s: UInt64) { generator = RandomGenerator(seed: s) }

    /// True inside `skippingRandomInit`: random initialisers return zeros and draw nothing.
    nonisolated(unsafe) public private(set) static var isSkippingRandomInit = false

    /// Builds a model whose every parameter a checkpoint is about to overwrite (a strict load,
    /// which throws unless all are present): random draws are skipped (the memory is reserved, not written, leaving
    /// `generator` untouched), which for CLIP ViT-L/14's 123 M parameters saves ~5 s.
    public static func skippingRandomInit<R>(_ body: () throws -> R) rethrows -> R {
        let was = isSkippingRandomInit
        isSkippingRandomInit = true
        defer { isSkippingRandomInit = was }
        return try body()
    }

    /// Set while `counting` runs: the parameters made so far (nil: not counting).
    nonisolated(unsafe) private static var counted: Int? = nil

    /// The number of parameters `body` makes, without allocating them: every initialiser returns a
    /// placeholder tensor (shape only) and adds its size, so a model built from a hostile config can
    /// be weighed against `MemoryBudget` first. Products that overflow count as `Int.max`.
    public static func counting(_ body: () throws -> Void) rethrows -> Int {
        let was = counted
        counted = 0
        defer { counted = was }
        try body()
        return counted ?? 0
    }

    /// What `make` builds, once its parameters (counted first, without allocating) fit in
    /// `MemoryBudget` at `bytesPerParameter` each (4 for F32 inference, 2 for weights kept in
    /// 16 bits, `training` for weights + gradient + two AdamW moments + EMA). `what` names the
    /// model in the error.
    public static func budgeted<M>(_ what: String, bytesPerParameter: Double = 4, _ make: () throws -> M) throws -> M {
        let n = try counting { _ = try make() }
        try MemoryBudget.check(Double(n) * bytesPerParameter, "\(what) (\(n) parameters)")
        return try make()
    }

    /// Bytes per parameter while training: weights, gradient, AdamW's two moments, EMA weights.
    public static let training: Double = 20

    /// The placeholder for `shape` while counting, else nil.
    private static func counted(_ shape: [Int]) -> Tensor? {
        guard let c = counted else { return nil }
        var n = 1, overflow = false
        for d in shape where !overflow { (n, overflow) = n.multipliedReportingOverflow(by: Swift.max(d, 0)) }
        let (sum, o2) = c.addingReportingOverflow(n)
        counted = overflow || o2 ? Int.max : sum
        let t = Tensor.placeholder(shape.map { Swift.max($0, 0) })
        t.requiresGrad = true
        return t
    }

    /// U(-bound, bound): PyTorch's kaiming_uniform(a=√5) for Linear/Conv weights and their
    /// bias rule both give bound = 1/√fan_in.
    public static func uniform(_ shape: [Int], bound: Float) -> Tensor {
        if let t = counted(shape) { return t }
        if isSkippingRandomInit { return skipped(shape) }
        let t = generator.uniform([1, shape.reduce(1, *)], low: -bound, high: bound).reshaped(shape).detached()
        t.requiresGrad = true
        return t
    }

    public static func normal(_ shape: [Int], std: Float = 1) -> Tensor {
        if let t = counted(shape) { return t }
        if isSkippingRandomInit { return skipped(shape) }
        let t = generator.normal([1, shape.reduce(1, *)], std: std).reshaped(shape).detached()
        t.requiresGrad = true
        return t
    }

    /// A parameter the checkpoint will overwrite: reserved, not written (an mmap-backed
    /// buffer costs no memory until loaded into; weights loaded as 16-bit never touch it).
    private static func skipped(_ shape: [Int]) -> Tensor {
        let t = Tensor.uninitialized(shape)
        t.requiresGrad = true
        return t
    }

    public static func constant(_ shape: [Int], _ value: Float) -> Tensor {
        if let t = counted(shape) { return t }
        return Tensor.full(shape, value, requiresGrad: true)
    }

    /// 1/√fan_in
    static func bound(fanIn: Int) -> Float { fanIn > 0 ? 1 / Float(fanIn).squareRoot() : 0 }
}
