import Foundation
import Diffusion
import CMPI

/// The ranks of a job `mpirun` started (Open MPI): the one file that touches MPI.
///
/// `MPI_Init` is called only when Open MPI's launcher set `OMPI_COMM_WORLD_SIZE` > 1 in the
/// environment, so a plain `diffuse` run (and every test) never initialises MPI and never waits
/// for a peer. A rank that dies makes `mpirun` take the whole job down (MPI's default error
/// handler); a rank that fails calls `abort`, which does the same at once.
public final class MPIRanks: Ranks {
    public let rank: Int
    public let size: Int
    private var finished = false

    /// The job this process belongs to, set by `start()` (nil: one process, no MPI).
    public private(set) nonisolated(unsafe) static var world: MPIRanks? = nil

    private init(rank: Int, size: Int) { self.rank = rank; self.size = size }

    /// Joins the `mpirun` job when there is one of more than one rank; call once, early.
    @discardableResult
    public static func start(environment: [String: String] = ProcessInfo.processInfo.environment) -> MPIRanks? {
        if let world { return world }
        guard let s = environment["OMPI_COMM_WORLD_SIZE"].flatMap(Int.init), s > 1 else { return nil }
        guard diffuse_mpi_init() == 0 else {
            FileHandle.standardError.write(Data("diffuse: MPI_Init failed (started by mpirun with \(s) ranks)\n".utf8))
            exit(1)
        }
        let w = MPIRanks(rank: Int(diffuse_mpi_rank()), size: Int(diffuse_mpi_size()))
        world = w
        return w
    }

    /// Whether this process owns the files: rank 0, or the only process.
    public static var isWriter: Bool { world?.isWriter ?? true }

    /// Runs `body` on rank 0 alone while the others wait for it (a file they read next).
    public static func writerFirst(_ body: () throws -> Void) rethrows {
        if isWriter { try body() }
        world?.barrier()
    }

    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) {
        // In buckets of at most 4 Mi floats: MPI counts are Int32, and the library's scratch
        // space stays bounded whatever the model's size.
        let bucket = 1 << 22
        var start = 0
        while start < buffer.count {
            let n = Swift.min(bucket, buffer.count - start)
            // MPI_ERRORS_ARE_FATAL: a failed call ends the job; it never returns an error here.
            _ = diffuse_mpi_allreduce_sum(buffer.baseAddress! + start, Int32(n))
            start += n
        }
    }

    /// Leaves the job after success (every rank must).
    public func finish() {
        guard !finished else { return }
        finished = true
        _ = diffuse_mpi_finalize()
    }

    /// Takes the whole job down after `message` (a rank that failed while the others may be
    /// waiting for it in a collective call).
    public func abort(_ message: String, code: Int32 = 1) -> Never {
        FileHandle.standardError.write(Data("rank \(rank) of \(size): \(message)\n".utf8))
        _ = diffuse_mpi_abort(code)
        exit(code)
    }
}
