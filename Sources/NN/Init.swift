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

    /// U(-bound, bound): PyTorch's kaiming_uniform(a=√5) for Linear/Conv weights and their
    /// bias rule both give bound = 1/√fan_in.
    public static func uniform(_ shape: [Int], bound: Float) -> Tensor {
        if isSkippingRandomInit { return skipped(shape) }
        let t = generator.uniform([1, shape.reduce(1, *)], low: -bound, high: bound).reshaped(shape).detached()
        t.requiresGrad = true
        return t
    }

    public static func normal(_ shape: [Int], std: Float = 1) -> Tensor {
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
        Tensor.full(shape, value, requiresGrad: true)
    }

    /// 1/√fan_in
    static func bound(fanIn: Int) -> Float { fanIn > 0 ? 1 / Float(fanIn).squareRoot() : 0 }
}
