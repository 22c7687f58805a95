import ArgumentParser
import Foundation
import Tensor

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the engine's kernels and whole models.",
        subcommands: [Kernels.self, Model.self, Jobs.self, Core.self]
    )

    struct Kernels: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Time sgemm, convolutions, group norm, attention and SiLU (median of several runs).",
            discussion: "Build in release mode first: `swift build -c release`. GFLOP/s of the convolutions are also given as a fraction of the sgemm rate measured in the same run."
        )

        @OptionGroup var runtime: RuntimeOptions
        @Flag(help: "Print a JSON array instead of a table.") var json = false
        @Option(help: "Timed runs per kernel (after 2 warm-up runs); the median is reported.") var runs = 7

        func validate() throws {
            if runs < 5 || runs > 1000 { throw ValidationError("--runs must be between 5 and 1000, got \(runs)") }
        }

        func run() throws {
            runtime.apply()
            let results = KernelBenchmark.run(runs: runs) { name in
                if !json { note("  timing \(name)...") }
            }
            if json {
                try printJSON(KernelsReport(blas: BLASCore.active, kernels: results))
                return
            }
            print(BLASCore.active)
            print("diffuse bench kernels — \(Threads.count) threads, \(runs) runs, median")
            print(pad("kernel", 16) + pad("shape", 38) + lpad("time", 11) + lpad("rate", 16) + lpad("of sgemm", 10))
            for r in results {
                let rate = r.gflops.map { String(format: "%.1f GFLOP/s", $0) } ?? String(format: "%.1f GB/s", r.gbps ?? 0)
                let frac = r.fraction_of_sgemm.map { String(format: "%.0f %%", $0 * 100) } ?? ""
                print(pad(r.name, 16) + pad(r.shape, 38) + lpad(String(format: "%.2f ms", r.median_s * 1000), 11)
                      + lpad(rate, 16) + lpad(frac, 10))
            }
        }
    }

    /// `bench kernels --json`: which core the numbers are of, and the numbers.
    struct KernelsReport: Encodable {
        var blas: BLASCore.Report
        var kernels: [KernelTiming]
    }

    struct Core: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Say which OpenBLAS core runs and why.",
            discussion: "When OpenBLAS picked a generic kernel on a CPU that has a better one in the library, diffuse switches to that one after a one-time self-check against a naive product (cached in $XDG_CACHE_HOME/diffuse/blas, ~/.cache/diffuse/blas). A core set in OPENBLAS_CORETYPE is kept."
        )

        @Flag(help: "Print JSON instead of a line.") var json = false

        func run() throws {
            if json { try printJSON(BLASCore.active) } else { print(BLASCore.active) }
        }
    }
}
