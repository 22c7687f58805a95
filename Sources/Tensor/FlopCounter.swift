/// Floating-point operations of the forward kernels that dominate models (matrix products,
/// convolutions, attention), counted as 2 per multiply-add. Benchmarks read it to report
/// GFLOP/s; it is not synchronised and only ops started from one thread add to it.
public enum FlopCounter {
    nonisolated(unsafe) public static var forwardFlops: Double = 0

    @inline(__always) static func add(_ f: Double) { forwardFlops += f }
}
