import XCTest
@testable import Tensor

/// The pool of freed tensor buffers keeps at most a quarter of the memory budget (2 GB at most).
final class BufferPoolTests: XCTestCase {
    func testThePoolFollowsTheMemoryBudget() {
        XCTAssertEqual(BufferPool.limit(budget: 24 << 30), 2 << 30)
        XCTAssertEqual(BufferPool.limit(budget: 64 << 20), 16 << 20)
        let old = MemoryBudget.bytes
        defer { MemoryBudget.set(old) }
        MemoryBudget.set(64 << 20)
        XCTAssertEqual(BufferPool.shared.limitBytes, 16 << 20)
        XCTAssertLessThanOrEqual(BufferPool.shared.cached, 16 << 20)   // what no longer fits was freed
        var big: Tensor? = Tensor.zeros([5 << 20])   // 20 MB: more than the pool may keep
        var before = BufferPool.shared.cached
        big = nil
        XCTAssertEqual(BufferPool.shared.cached, before)
        var small: Tensor? = Tensor.zeros([1031])     // small: kept when released
        before = BufferPool.shared.cached
        small = nil
        XCTAssertEqual(BufferPool.shared.cached, before + 1031 * 4)
        _ = (big, small)
        MemoryBudget.set(1 << 20)               // a smaller budget frees what no longer fits
        XCTAssertLessThanOrEqual(BufferPool.shared.cached, 256 << 10)
    }
}
