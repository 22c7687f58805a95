import Foundation

/// What a CPU offers, as far as choosing a BLAS kernel set goes (cpuid; the AVX and AVX-512
/// flags count only when the operating system saves those registers).
public struct CPUInfo: Codable, Equatable, Sendable {
    public enum Vendor: String, Codable, Sendable { case intel, amd, other }
    public var vendor: Vendor
    /// The brand string, as /proc/cpuinfo's "model name" ("Intel(R) Xeon(R) Processor").
    public var name: String
    public var family: Int, model: Int, stepping: Int
    public var avx: Bool
    /// AVX2 and FMA3.
    public var avx2FMA: Bool
    /// AVX-512 F, BW, DQ and VL (what OpenBLAS' SkylakeX kernels use).
    public var avx512: Bool
    /// AVX-512 BF16 (Cooper Lake, Sapphire Rapids and later, AMD Zen 4).
    public var avx512BF16: Bool

    public init(vendor: Vendor, name: String = "", family: Int = 0, model: Int = 0, stepping: Int = 0,
                avx: Bool = false, avx2FMA: Bool = false, avx512: Bool = false, avx512BF16: Bool = false) {
        self.vendor = vendor; self.name = name; self.family = family; self.model = model; self.stepping = stepping
        self.avx = avx; self.avx2FMA = avx2FMA; self.avx512 = avx512; self.avx512BF16 = avx512BF16
    }

    /// A CPU with every feature a core is chosen by (AMD, so that Zen is among its candidates).
    static let everything = CPUInfo(vendor: .amd, avx: true, avx2FMA: true, avx512: true, avx512BF16: true)

    /// The CPU this process runs on.
    public static var current: CPUInfo { BLAS.readCPU() }

    enum CodingKeys: String, CodingKey {
        case vendor, name, family, model, stepping, avx, avx2FMA = "avx2_fma", avx512, avx512BF16 = "avx512_bf16"
    }
}

/// Which OpenBLAS kernel set ("core") runs, and why.
///
/// OpenBLAS built with DYNAMIC_ARCH (Debian's) picks its kernels by cpuid model number when it
/// loads, and a CPU newer than the library falls through to a generic one: OpenBLAS 0.3.21 on
/// an Emerald Rapids Xeon (family 6, model 207) runs its SSE3 "Prescott" kernels, 5–10× slower
/// than its Cooperlake ones there (driver/others/dynamic.c: `get_coretype` has no case for
/// extended model 12, and control falls into the Pentium 4 branch). So before the first
/// product, the core OpenBLAS picked is compared with what the CPU offers; when a better core
/// exists in the library, it is self-checked once against a naive product (cached per
/// machine in `UserCache.directory/blas`) and switched to in this process.
///
/// Switching in the running process rather than re-executing with `OPENBLAS_CORETYPE` set:
/// `gotoblas_dynamic_init` (the code that runs at load) only reads the variable and cpuid,
/// points the `gotoblas` table at the chosen core and calls that core's `init` (its blocking
/// parameters, in its own table). The work buffers have one compile-time size for every core
/// of a DYNAMIC_ARCH build and are taken at call time; the thread server does not depend on
/// the core. So a switch before any product, with none running, is what a fresh start would
/// do — and it serves library users and test binaries too, not only the command line. A BLAS
/// without `gotoblas_dynamic_init` (another library, a static build) keeps its own choice.
///
/// A core the user set in `OPENBLAS_CORETYPE` is always kept (some machines set it because a
/// kernel miscomputes there).
public enum BLASCore {
    /// The choice made for this process; made on first use (the first product or thread
    /// setting reads it), once.
    public static let active: Report = {
        BLAS.pinSingleThreaded()
        return choose(environment: ProcessInfo.processInfo.environment, cacheDirectory: UserCache.directory)
    }()

    /// Candidate cores for `cpu`, best first, spelled as OpenBLAS spells them.
    public static func candidates(for cpu: CPUInfo) -> [String] {
        var out: [String] = []
        if cpu.avx512BF16 && cpu.avx512 { out.append("Cooperlake") }
        if cpu.avx512 { out.append("SkylakeX") }
        if cpu.avx2FMA { out += cpu.vendor == .amd ? ["Zen", "Haswell"] : ["Haswell"] }
        if cpu.avx { out.append("Sandybridge") }
        return out
    }

    /// What the CPU feature behind `core` is called, for the reason shown to the user.
    static func feature(of core: String) -> String {
        switch core.lowercased() {
        case "cooperlake": return "AVX-512 BF16"
        case "skylakex": return "AVX-512"
        case "haswell", "zen": return "AVX2+FMA"
        default: return "AVX"
        }
    }

    public enum Decision: Equatable, Sendable {
        /// Run the core the library picked (or the user set).
        case keep(reason: String)
        /// `core` would be better; its self-check result is needed to decide.
        case check(core: String)
        /// Switch to `core`.
        case use(core: String, reason: String)
    }

    /// The pure choice: `current` is the core the library picked, `userCore` the value of
    /// `OPENBLAS_CORETYPE` if set, `available` the cores the library can switch to, `checks`
    /// the self-check results known so far (core → passed). Call again after each `.check`.
    public static func decide(current: String, cpu: CPUInfo, userCore: String?, available: Set<String>,
                              checks: [String: Bool]) -> Decision {
        if let userCore, !userCore.isEmpty { return .keep(reason: "OPENBLAS_CORETYPE=\(userCore) set by the user") }
        let all = candidates(for: cpu)
        func named(_ name: String) -> (String) -> Bool { { $0.caseInsensitiveCompare(name) == .orderedSame } }
        let rank: Int
        if let i = all.firstIndex(where: named(current)) {
            rank = i
        } else if candidates(for: .everything).contains(where: named(current)) {
            // A vector core for features cpuid does not show us (a VM masking them, say): the
            // library knows better.
            return .keep(reason: "chosen by the library")
        } else {
            rank = all.count  // a generic core
        }
        if rank == 0 { return .keep(reason: "chosen by the library: the best core for this CPU") }
        let better = all[..<rank].filter(available.contains)
        if better.isEmpty {
            if all.isEmpty { return .keep(reason: "chosen by the library: this CPU has no AVX") }
            return .keep(reason: available.isEmpty ? "this BLAS cannot switch cores" : "chosen by the library: it has no better core for this CPU")
        }
        var failed: [String] = []
        for core in better {
            switch checks[core] {
            case nil: return .check(core: core)
            case false?: failed.append(core)
            case true?:
                let note = failed.isEmpty ? "" : "; \(failed.joined(separator: ", ")) failed the self-check"
                return .use(core: core, reason: "CPU has \(feature(of: core))\(note)")
            }
        }
        return .keep(reason: "\(failed.joined(separator: ", ")) failed the self-check")
    }

    /// The outcome, for `diffuse bench kernels`, `--verbose` and `--json`.
    public struct Report: Codable, Equatable, Sendable, CustomStringConvertible {
        /// "OpenBLAS 0.3.21".
        public var library: String
        /// The core that runs.
        public var core: String
        /// The core the library picked by itself.
        public var detected: String
        public var switched: Bool
        public var reason: String
        /// "passed" (run now) or "passed, cached"; nil when no core was checked.
        public var selfCheck: String?
        public var cpu: CPUInfo

        public var description: String {
            let why = switched ? "switched from \(detected): \(reason)" : reason
            return "\(library) core \(core) (\(why)\(selfCheck.map { "; self-check \($0)" } ?? ""))"
        }

        enum CodingKeys: String, CodingKey {
            case library, core, detected, switched, reason, selfCheck = "self_check", cpu
        }
    }

    /// Makes the choice for this process: decides, self-checks candidates not yet checked on
    /// this machine (recording the results in `cacheDirectory/blas`), and loads the core.
    /// No product may run meanwhile; `active` calls it once.
    static func choose(environment: [String: String], cacheDirectory: URL) -> Report {
        let detected = BLAS.loadedCore, config = BLAS.config
        let cpu = CPUInfo.current
        let words = config.split(separator: " ")
        let library = words.prefix(2).joined(separator: " ")
        // The build line names the running core: leave it out of the machine's key.
        let machine = "\(cpu.name) | family \(cpu.family) model \(cpu.model) stepping \(cpu.stepping) | "
            + words.filter { $0 != detected }.joined(separator: " ") + " | check \(SelfCheck.version)"
        let available = Set(candidates(for: cpu).filter(BLAS.canLoad(core:)))
        let cache = SelfCheckCache(directory: cacheDirectory.appendingPathComponent("blas"), machine: machine)
        var results = cache.load()
        var checkedNow: Set<String> = []
        while true {
            switch decide(current: detected, cpu: cpu, userCore: environment["OPENBLAS_CORETYPE"], available: available,
                          checks: results.mapValues(\.passed)) {
            case .check(let core):
                // A core that does not come up under its name counts as failed. (0.3.21 looks
                // names up only to SkylakeX: for "Cooperlake" it falls back to its own feature
                // test, which gives Cooperlake on a CPU with AVX-512 BF16.)
                let loaded = BLAS.load(core: core) && BLAS.loadedCore.caseInsensitiveCompare(core) == .orderedSame
                results[core] = loaded ? SelfCheck.run() : SelfCheck.Result(passed: false, maxError: .infinity)
                checkedNow.insert(core)
            case .use(let core, let reason):
                if BLAS.loadedCore != core { _ = BLAS.load(core: core) }
                if !checkedNow.isEmpty { cache.save(results) }
                return Report(library: library, core: BLAS.loadedCore, detected: detected, switched: true, reason: reason,
                              selfCheck: checkedNow.contains(core) ? "passed" : "passed, cached", cpu: cpu)
            case .keep(let reason):
                if BLAS.loadedCore != detected { _ = BLAS.load(core: nil) }
                if !checkedNow.isEmpty { cache.save(results) }
                return Report(library: library, core: BLAS.loadedCore, detected: detected, switched: false, reason: reason,
                              selfCheck: nil, cpu: cpu)
            }
        }
    }

    /// sgemm of the loaded core against a naive product in Double, on convolution-like shapes
    /// (M = output channels 64…256, K = input channels × 9 = 576…2304, odd sizes too, padded
    /// leading dimensions, β 0 and 1) in all four transpose cases.
    public enum SelfCheck {
        /// Part of the cache key: results of an older check are not reused.
        static let version = 2

        public struct Result: Codable, Equatable, Sendable {
            public var passed: Bool
            /// Largest |C − C_ref| / (γ · (Σₖ |a b| + |β c₀|)) with γ = (K + 2) · 2⁻²⁴, the
            /// worst-case rounding error of a float product summed in any order; ≤ 1 passes.
            /// Correct kernels stay near 1/√K of it (~0.003 here); a miscomputed element is off
            /// by ~10³ or more.
            public var maxError: Double

            enum CodingKeys: String, CodingKey { case passed, maxError = "max_error" }
        }

        /// (M, N, K, padding of the leading dimensions, β).
        static let shapes: [(Int, Int, Int, Int, Float)] = [
            (64, 49, 576, 0, 0), (129, 37, 1152, 3, 1), (256, 25, 2304, 0, 1), (97, 130, 1155, 5, 0),
        ]

        /// A row-major sgemm with `BLAS.sgemm`'s arguments.
        typealias Product = (_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int,
                             _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                             _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) -> Void

        /// Checks the core loaded now (single-threaded, with OpenBLAS' own entry point).
        public static func run() -> Result {
            run { transA, transB, m, n, k, a, lda, b, ldb, beta, c, ldc in
                BLAS.sgemmUnprepared(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda,
                                     b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            }
        }

        /// Checks `product` (tests hand in faulty ones).
        static func run(_ product: Product) -> Result {
            var worst = 0.0
            var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
            func next() -> Float {
                seed = seed &* 6364136223846793005 &+ 1442695040888963407
                return Float(Int32(truncatingIfNeeded: seed >> 32)) / Float(Int32.max)
            }
            for (m, n, k, pad, beta) in shapes {
                // One product op(A) [M, K] · op(B) [K, N] per shape, its reference computed once
                // (sum and Σ|a b|, in Double, i-p-j order) and checked in the four layouts.
                let opA = (0..<m * k).map { _ in next() }, opB = (0..<k * n).map { _ in next() }
                let ldc = n + pad
                let c0 = (0..<m * ldc).map { _ in next() }
                var sum = [Double](repeating: 0, count: m * n), magnitude = sum
                for i in 0..<m {
                    for p in 0..<k {
                        let x = Double(opA[i * k + p])
                        for j in 0..<n {
                            let xy = x * Double(opB[p * n + j])
                            sum[i * n + j] += xy
                            magnitude[i * n + j] += abs(xy)
                        }
                    }
                }
                let unit = Double(k + 2) * 0x1p-24
                for (transA, transB) in [(false, false), (true, false), (false, true), (true, true)] {
                    // op(A) is stored [K, M] when transA, op(B) [N, K] when transB; padding after each row.
                    let lda = (transA ? m : k) + pad, ldb = (transB ? k : n) + pad
                    var a = [Float](repeating: .nan, count: (transA ? k : m) * lda)
                    var b = [Float](repeating: .nan, count: (transB ? n : k) * ldb)
                    for i in 0..<m { for p in 0..<k { a[transA ? p * lda + i : i * lda + p] = opA[i * k + p] } }
                    for p in 0..<k { for j in 0..<n { b[transB ? j * ldb + p : p * ldb + j] = opB[p * n + j] } }
                    var c = c0
                    a.withUnsafeBufferPointer { a in
                        b.withUnsafeBufferPointer { b in
                            c.withUnsafeMutableBufferPointer { c in
                                product(transA, transB, m, n, k, a.baseAddress!, lda, b.baseAddress!, ldb, beta, c.baseAddress!, ldc)
                            }
                        }
                    }
                    for i in 0..<m {
                        for j in 0..<n {
                            let old = Double(beta) * Double(c0[i * ldc + j])
                            let err = abs(Double(c[i * ldc + j]) - (sum[i * n + j] + old))
                                / ((magnitude[i * n + j] + abs(old)) * unit)
                            worst = Swift.max(worst, err.isNaN ? .infinity : err)
                        }
                    }
                }
            }
            return Result(passed: worst <= 1, maxError: worst)
        }
    }
}

/// Self-check results of one machine (CPU model + library build), one JSON file per machine,
/// written atomically.
struct SelfCheckCache {
    var directory: URL
    var machine: String

    private struct File: Codable {
        var machine: String
        var cores: [String: BLASCore.SelfCheck.Result]
    }

    /// The file's name: a 64-bit FNV-1a hash of `machine` (the file holds `machine` in full).
    var url: URL {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in machine.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return directory.appendingPathComponent("selfcheck-" + String(h, radix: 16) + ".json")
    }

    /// Known results; none when the file is missing, unreadable or for another machine.
    func load() -> [String: BLASCore.SelfCheck.Result] {
        let dec = JSONDecoder()
        dec.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        guard let data = try? Data(contentsOf: url), let file = try? dec.decode(File.self, from: data),
              file.machine == machine else { return [:] }
        return file.cores
    }

    /// Writes the results (a cache: failing to write costs a check next time, nothing more).
    func save(_ cores: [String: BLASCore.SelfCheck.Result]) {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        guard let data = try? enc.encode(File(machine: machine, cores: cores)) else { return }
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try? data.write(to: url, options: .atomic)
    }
}
