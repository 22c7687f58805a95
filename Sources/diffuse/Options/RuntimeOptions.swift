import ArgumentParser
import Foundation
import Tensor

/// Options every command that computes shares.
struct RuntimeOptions: ParsableArguments {
    @Option(help: "Threads for our loops and for OpenBLAS (default: DIFFUSE_THREADS, else the number of cores).")
    var threads: Int?

    @Flag(help: "Say on standard error which OpenBLAS core runs and why.")
    var verbose = false

    @Option(help: "Memory a model and its batches may plan to use, e.g. 8G or 512M (default: DIFFUSE_MAX_MEMORY, else 80% of this machine's memory).")
    var maxMemory: String?

    func validate() throws {
        if let maxMemory, MemoryBudget.parse(maxMemory) == nil {
            throw ValidationError("--max-memory must be a positive size such as 8G, 512M or 1000000 (bytes), got \(maxMemory)")
        }
        if let threads, threads < 1 || threads > 1024 {
            throw ValidationError("--threads must be between 1 and 1024, got \(threads)")
        }
    }

    /// Applies the settings to the engine, and has OpenBLAS' core chosen now, before any work
    /// is timed (a self-check may run on a machine's first use).
    func apply() {
        if let threads { Threads.count = threads }
        if let b = maxMemory.flatMap(MemoryBudget.parse) { MemoryBudget.set(b) }
        let core = BLASCore.active
        if verbose { note("BLAS: \(core)") }
    }
}
