import ArgumentParser
import Foundation
import Tensor

/// Options every command that computes shares.
struct RuntimeOptions: ParsableArguments {
    @Option(help: "Threads for our loops and for OpenBLAS (default: DIFFUSE_THREADS, else the number of cores).")
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 || threads > 1024 {
            throw ValidationError("--threads must be between 1 and 1024, got \(threads)")
        }
    }

    /// Applies the settings to the engine.
    func apply() {
        if let threads { Threads.count = threads }
    }
}
