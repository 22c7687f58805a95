import Foundation
import CKernels

/// A Float32 buffer, 64-byte aligned. Freed buffers go back to `BufferPool`, so a sampling
/// loop that makes the same shapes every step stops allocating after its first step.
final class Storage: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int

    init(count: Int) {
        precondition(count >= 0, "Storage: negative count \(count)")
        self.count = count
        self.pointer = BufferPool.shared.take(count)
    }

    /// A buffer that bypasses the pool (freed when released), for one-off sizes.
    init(unpooled count: Int) {
        self.count = count
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, max(count, 1) * 4) == 0, let raw else { fatalError("out of memory allocating \(count * 4) bytes") }
        self.pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        self.pooled = false
    }

    /// Whether the buffer goes back to `BufferPool` when released (weights replaced for good do not).
    var pooled = true

    deinit { if pooled { BufferPool.shared.give(pointer, count: count) } else { free(pointer) } }
}

/// Size-bucketed cache of freed buffers (exact element counts: tensor shapes repeat).
/// Holds at most `limitBytes` — a quarter of the memory budget, 2 GB at most; beyond that,
/// buffers are freed. (A fixed 2 GB let a process under `--max-memory 512M`, or the mp4 fuzz
/// target decoding inputs of ever new sizes, keep 2 GB of freed buffers: issue 21.)
public final class BufferPool: @unchecked Sendable {
    static let shared = BufferPool()

    private var free: [Int: [UnsafeMutablePointer<Float>]] = [:]
    private var cachedBytes = 0
    private let lock = NSLock()
    private(set) var limitBytes: Int

    init() {
        ck_keep_freed_memory()
        limitBytes = BufferPool.limit(budget: MemoryBudget.bytes)
    }

    /// What the pool may keep under a memory budget of `budget` bytes.
    static func limit(budget: Int) -> Int { min(2 << 30, max(budget, 0) / 4) }

    /// Follows a new budget (`MemoryBudget.set`), freeing what no longer fits.
    func setLimit(_ bytes: Int) {
        lock.lock()
        limitBytes = bytes
        let over = cachedBytes > bytes
        lock.unlock()
        if over { drain() }
    }

    /// Bytes of freed buffers the pool holds now.
    var cached: Int { lock.lock(); defer { lock.unlock() }; return cachedBytes }

    func take(_ count: Int) -> UnsafeMutablePointer<Float> {
        lock.lock()
        if var list = free[count], let p = list.popLast() {
            free[count] = list
            cachedBytes -= count * 4
            lock.unlock()
            return p
        }
        lock.unlock()
        var raw: UnsafeMutableRawPointer?
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        guard posix_memalign(&raw, 64, bytes) == 0, let raw else {
            fatalError("out of memory allocating \(bytes) bytes")
        }
        return raw.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    func give(_ p: UnsafeMutablePointer<Float>, count: Int) {
        let bytes = count * 4
        lock.lock()
        if cachedBytes + bytes <= limitBytes && count > 0 {
            free[count, default: []].append(p)
            cachedBytes += bytes
            lock.unlock()
        } else {
            lock.unlock()
            Foundation.free(p)
        }
    }

    /// Frees every buffer the shared pool caches (between phases whose shapes differ).
    public static func drain() { shared.drain() }

    /// Frees every cached buffer.
    func drain() {
        lock.lock()
        for (_, list) in free { for p in list { Foundation.free(p) } }
        free = [:]
        cachedBytes = 0
        lock.unlock()
    }
}
