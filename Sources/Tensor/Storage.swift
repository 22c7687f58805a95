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
/// Holds at most `limitBytes`; beyond that, buffers are freed.
public final class BufferPool: @unchecked Sendable {
    static let shared = BufferPool()

    private var free: [Int: [UnsafeMutablePointer<Float>]] = [:]
    private var cachedBytes = 0
    private let lock = NSLock()
    var limitBytes = 2 << 30

    init() { ck_keep_freed_memory() }

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
