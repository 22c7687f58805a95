import Foundation
import Dispatch

/// A raw pointer that may cross into worker threads. Only `Parallel` and kernels use it; each
/// worker writes a disjoint range, which is what makes this sound.
public struct SendablePointer<T>: @unchecked Sendable {
    public let p: UnsafeMutablePointer<T>
    public init(_ p: UnsafeMutablePointer<T>) { self.p = p }
}

/// The one thread setting of the engine: our loops follow it, and so do matrix products
/// (split into panels over our threads; OpenBLAS itself stays single-threaded).
/// Default: `DIFFUSE_THREADS`, else the number of cores.
public enum Threads {
    nonisolated(unsafe) private static var _count: Int = {
        let n: Int
        if let s = ProcessInfo.processInfo.environment["DIFFUSE_THREADS"], let v = Int(s), v > 0 {
            n = v
        } else {
            n = ProcessInfo.processInfo.activeProcessorCount
        }
        _ = BLASCore.active  // OpenBLAS' core is chosen before the first product (and pinned to one thread)
        return n
    }()

    /// Number of threads used by parallel loops and by BLAS.
    public static var count: Int {
        get { _count }
        set {
            precondition(newValue >= 1, "Threads.count must be >= 1, got \(newValue)")
            _count = newValue
        }
    }
}

public enum Parallel {
    /// Splits `0..<n` into at most `Threads.count` contiguous chunks of at least `grain` items
    /// and runs `body(start, end)` on each, concurrently. Chunk boundaries depend only on `n`,
    /// `grain` and the thread count, so results are deterministic for a given thread count.
    @inline(__always)
    public static func chunks(_ n: Int, grain: Int = 1, _ body: (Int, Int) -> Void) {
        if n <= 0 { return }
        let t = Swift.min(Threads.count, Swift.max(1, n / Swift.max(grain, 1)))
        if t <= 1 { body(0, n); return }
        withoutActuallyEscaping(body) { body in
            let box = UnsafeSendableBox(body)
            DispatchQueue.concurrentPerform(iterations: t) { i in
                let start = n * i / t
                let end = n * (i + 1) / t
                if start < end { box.value(start, end) }
            }
        }
    }

    /// Like `chunks`, also passing the chunk's index (< `chunkCount(n, grain:)`), for
    /// per-chunk partial results that are combined afterwards in chunk order.
    @inline(__always)
    public static func indexedChunks(_ n: Int, grain: Int = 1, _ body: (Int, Int, Int) -> Void) {
        if n <= 0 { return }
        let t = chunkCount(n, grain: grain)
        if t <= 1 { body(0, 0, n); return }
        withoutActuallyEscaping(body) { body in
            let box = UnsafeSendableBox(body)
            DispatchQueue.concurrentPerform(iterations: t) { i in
                box.value(i, n * i / t, n * (i + 1) / t)
            }
        }
    }

    /// Runs `body(i)` for each i in `0..<n`, items distributed over the threads.
    @inline(__always)
    public static func forEach(_ n: Int, grain: Int = 1, _ body: (Int) -> Void) {
        chunks(n, grain: grain) { s, e in for i in s..<e { body(i) } }
    }

    /// Number of chunks `chunks(n, grain:)` would use (for per-thread scratch buffers).
    public static func chunkCount(_ n: Int, grain: Int = 1) -> Int {
        Swift.min(Threads.count, Swift.max(1, n / Swift.max(grain, 1)))
    }
}

struct UnsafeSendableBox<T>: @unchecked Sendable {
    let value: T
    init(_ v: T) { value = v }
}
