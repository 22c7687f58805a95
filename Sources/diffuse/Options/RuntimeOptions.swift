import ArgumentParser
import Foundation
import Tensor

/// Options every command that computes shares.
struct RuntimeOptions: ParsableArguments {
    @Option(help: "Threads for our loops and for OpenBLAS (default: DIFFUSE_THREADS, else the number of cores).")
    var threads: Int?

    @Flag(help: "Say on standard error which OpenBLAS core runs and why.")
    var verbose = false

    func validate() throws {
        if let threads, threads < 1 || threads > 1024 {
            throw ValidationError("--threads must be between 1 and 1024, got \(threads)")
        }
    }

    /// Applies the settings to the engine, and has OpenBLAS' core chosen now, before any work
    /// is timed (a self-check may run on a machine's first use).
    func apply() {
        if let threads { Threads.count = threads }
        let core = BLASCore.active
        if verbose { note("BLAS: \(core)") }
    }
}
