import CKernels
import Foundation

/// The two 16-bit float formats checkpoints use.
public enum HalfFormat: Sendable {
    /// IEEE 754 binary16 (torch.float16).
    case f16
    /// bfloat16: the top 16 bits of a float32 (torch.bfloat16).
    case bf16
}

/// Elements held as 16-bit floats, 64-byte aligned: half the memory of Float32. Weights of a
/// model loaded for inference from an F16/BF16 checkpoint stay in this form ("F16 weights stay
/// 2-byte in memory"); a layer widens one weight at a time for its kernel (`materialized()`).
final class HalfStorage: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<UInt16>
    let count: Int
    let format: HalfFormat

    init(count: Int, format: HalfFormat) {
        var raw: UnsafeMutableRawPointer?
        let bytes = max(count, 1) * 2
        guard posix_memalign(&raw, 64, bytes) == 0, let raw else { fatalError("out of memory allocating \(bytes) bytes") }
        self.pointer = raw.bindMemory(to: UInt16.self, capacity: max(count, 1))
        self.count = count
        self.format = format
    }

    deinit { free(pointer) }

    /// Rounds `count` floats from `src` into this storage (nearest, ties to even).
    func assign(from src: UnsafePointer<Float>) {
        let s = SendablePointer(UnsafeMutablePointer(mutating: src)), d = SendablePointer(pointer), bf = format == .bf16 ? Int32(1) : 0
        Parallel.chunks(count, grain: 1 << 16) { a, b in ck_float_to_half(s.p + a, d.p + a, b - a, bf) }
    }

    /// Widens every element into `dst` (exact).
    func widen(into dst: UnsafeMutablePointer<Float>) {
        let s = SendablePointer(pointer), d = SendablePointer(dst), bf = format == .bf16 ? Int32(1) : 0
        Parallel.chunks(count, grain: 1 << 16) { a, b in ck_half_to_float(s.p + a, d.p + a, b - a, bf) }
    }
}

extension Tensor {
    /// A tensor whose elements the caller writes before reading any (e.g. a checkpoint about
    /// to be loaded into it): memory is reserved, not touched, so an mmap-backed allocation
    /// costs no resident pages until written.
    public static func uninitialized(_ shape: [Int]) -> Tensor { Tensor(uninitialized: shape) }

    /// The format the elements are held in, when 16-bit (nil: Float32).
    public var halfFormat: HalfFormat? { half?.format }

    /// This tensor, or — when it is held as 16-bit floats — a Float32 copy of it (no autograd
    /// history). Layers call this on their weights, so a 16-bit model costs one widened weight at
    /// a time; for Float32 tensors it is the tensor itself, and autograd is unchanged.
    public func materialized() -> Tensor {
        guard let half else { return self }
        let t = Tensor(uninitialized: shape)
        half.widen(into: t.storage.pointer)
        return t
    }

    /// Holds the elements as 16-bit floats from now on (rounded to nearest), freeing the Float32
    /// storage. For inference weights: the tensor stops taking gradients.
    public func storeAsHalf(_ format: HalfFormat) {
        if half?.format == format { return }
        let h = HalfStorage(count: count, format: format)
        h.assign(from: materialized().storage.pointer)
        adoptHalf(h)
    }

    /// Sets the elements from 16-bit floats as they lie in a file (little-endian, `count` of them
    /// from `bits`, any alignment) and holds them in that form from now on.
    public func assignHalf(bits: UnsafeRawPointer, format: HalfFormat) {
        let h = HalfStorage(count: count, format: format)
        memcpy(h.pointer, bits, count * 2)
        #if _endian(big)
        for i in 0..<count { h.pointer[i] = UInt16(littleEndian: h.pointer[i]) }
        #endif
        adoptHalf(h)
    }

    private func adoptHalf(_ h: HalfStorage) {
        precondition(node == nil, "storeAsHalf on a tensor with autograd history")
        half = h
        storage.pooled = false
        storage = Storage(unpooled: 0)
        requiresGrad = false
        grad = nil
    }

    /// Bytes the elements occupy (2 per element when 16-bit, else 4).
    public var elementBytes: Int { count * (half == nil ? 4 : 2) }
}
