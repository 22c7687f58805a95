import Foundation

/// The processes of a data-parallel job as the trainer sees them: `size` ranks, each holding the
/// whole model and training on its slice of every batch, with gradients summed across them.
/// `MPIRanks` (Workflow) is the one `mpirun` starts; a run without it has none, and nothing changes.
public protocol Ranks: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// `buffer` summed over every rank, in place; every rank gets the same numbers.
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>)
}

extension Ranks {
    /// Rank 0 owns the files: checkpoints, logs, previews, manifests.
    public var isWriter: Bool { rank == 0 }

    /// The items of `n` this rank takes: contiguous, sizes differing by at most one, rank order.
    public func slice(of n: Int) -> Range<Int> { n * rank / size ..< n * (rank + 1) / size }

    public func allReduceSum(_ values: inout [Float]) { values.withUnsafeMutableBufferPointer { allReduceSum($0) } }

    /// Whether `flag` is true on any rank (a stop request, a failure seen by one rank).
    public func any(_ flag: Bool) -> Bool {
        var v: [Float] = [flag ? 1 : 0]
        allReduceSum(&v)
        return v[0] > 0
    }

    /// Returns when every rank has called it.
    public func barrier() { _ = any(false) }
}
