import XCTest
import Foundation
@testable import Tensor

/// The choice of OpenBLAS core with faked core names and CPUs, the self-check, and its cache.
/// (`Tests/CLITests/BLASCoreCLITests.swift` runs the real switch in a fresh process.)
final class BLASCoreTests: XCTestCase {
    let emeraldRapids = CPUInfo(vendor: .intel, name: "Intel(R) Xeon(R) Processor", family: 6, model: 207,
                                avx: true, avx2FMA: true, avx512: true, avx512BF16: true)
    let haswell = CPUInfo(vendor: .intel, family: 6, model: 63, avx: true, avx2FMA: true)
    let zen2 = CPUInfo(vendor: .amd, family: 23, model: 49, avx: true, avx2FMA: true)
    let zen4 = CPUInfo(vendor: .amd, family: 25, model: 17, avx: true, avx2FMA: true, avx512: true, avx512BF16: true)
    /// What Debian's OpenBLAS 0.3.21 holds (and can switch to).
    let debian: Set<String> = ["Cooperlake", "SkylakeX", "Haswell", "Zen", "Sandybridge"]

    func decide(_ current: String, _ cpu: CPUInfo, user: String? = nil, available: Set<String>? = nil,
                _ checks: [String: Bool] = [:]) -> BLASCore.Decision {
        BLASCore.decide(current: current, cpu: cpu, userCore: user, available: available ?? debian, checks: checks)
    }

    func testGenericCoreOnAVX512BF16IsReplacedByCooperlakeAfterItsSelfCheck() {
        XCTAssertEqual(decide("Prescott", emeraldRapids), .check(core: "Cooperlake"))
        XCTAssertEqual(decide("Prescott", emeraldRapids, ["Cooperlake": true]),
                       .use(core: "Cooperlake", reason: "CPU has AVX-512 BF16"))
        // An older library picks Haswell on that CPU: still worth switching.
        XCTAssertEqual(decide("Haswell", emeraldRapids, ["Cooperlake": true]),
                       .use(core: "Cooperlake", reason: "CPU has AVX-512 BF16"))
        guard case .keep = decide("Cooperlake", emeraldRapids) else { return XCTFail("the best core is kept") }
    }

    func testFailedSelfCheckFallsToTheNextBestCore() {
        XCTAssertEqual(decide("Prescott", emeraldRapids, ["Cooperlake": false]), .check(core: "SkylakeX"))
        XCTAssertEqual(decide("Prescott", emeraldRapids, ["Cooperlake": false, "SkylakeX": true]),
                       .use(core: "SkylakeX", reason: "CPU has AVX-512; Cooperlake failed the self-check"))
        XCTAssertEqual(decide("Prescott", emeraldRapids, ["Cooperlake": false, "SkylakeX": false]), .check(core: "Haswell"))
        let allFailed = ["Cooperlake": false, "SkylakeX": false, "Haswell": false, "Sandybridge": false]
        XCTAssertEqual(decide("Prescott", emeraldRapids, allFailed),
                       .keep(reason: "Cooperlake, SkylakeX, Haswell, Sandybridge failed the self-check"))
        // Only cores better than the running one are tried.
        XCTAssertEqual(decide("SkylakeX", emeraldRapids, ["Cooperlake": false]),
                       .keep(reason: "Cooperlake failed the self-check"))
    }

    func testCoreSetByTheUserIsKept() {
        XCTAssertEqual(decide("Haswell", emeraldRapids, user: "Haswell"), .keep(reason: "OPENBLAS_CORETYPE=Haswell set by the user"))
        XCTAssertEqual(decide("Prescott", emeraldRapids, user: "prescott", ["Cooperlake": true]),
                       .keep(reason: "OPENBLAS_CORETYPE=prescott set by the user"))
    }

    func testAMD() {
        XCTAssertEqual(decide("Prescott", zen2), .check(core: "Zen"))
        XCTAssertEqual(decide("Prescott", zen2, ["Zen": true]), .use(core: "Zen", reason: "CPU has AVX2+FMA"))
        XCTAssertEqual(decide("Prescott", zen2, ["Zen": false]), .check(core: "Haswell"))
        guard case .keep = decide("Zen", zen2) else { return XCTFail("Zen is the best core for Zen 2") }
        // Zen 4 has AVX-512 BF16: OpenBLAS itself picks Cooperlake there; a Zen pick is improved on.
        XCTAssertEqual(decide("Zen", zen4), .check(core: "Cooperlake"))
        guard case .keep = decide("COOPERLAKE", zen4) else { return XCTFail("names compare case-insensitively") }
    }

    func testAVX2OnlyCPU() {
        XCTAssertEqual(BLASCore.candidates(for: haswell), ["Haswell", "Sandybridge"])
        XCTAssertEqual(decide("Prescott", haswell), .check(core: "Haswell"))
        XCTAssertEqual(decide("Prescott", haswell, ["Haswell": true]), .use(core: "Haswell", reason: "CPU has AVX2+FMA"))
        guard case .keep = decide("Haswell", haswell) else { return XCTFail("Haswell is kept on Haswell") }
        XCTAssertEqual(decide("Sandybridge", haswell), .check(core: "Haswell"))
        // The library picked a vector core cpuid does not show (features masked): kept.
        XCTAssertEqual(decide("SkylakeX", haswell), .keep(reason: "chosen by the library"))
    }

    func testLibraryWithoutSwitchableCores() {
        XCTAssertEqual(decide("Prescott", emeraldRapids, available: []), .keep(reason: "this BLAS cannot switch cores"))
        // A build without Cooperlake (older OpenBLAS): SkylakeX is the best it has.
        XCTAssertEqual(decide("Prescott", emeraldRapids, available: ["SkylakeX", "Haswell"]), .check(core: "SkylakeX"))
        guard case .keep = decide("Prescott", CPUInfo(vendor: .other)) else { return XCTFail("nothing better without AVX") }
    }

    func testReportLine() {
        let r = BLASCore.Report(library: "OpenBLAS 0.3.21", core: "Cooperlake", detected: "Prescott", switched: true,
                                reason: "CPU has AVX-512 BF16", selfCheck: "passed, cached", cpu: emeraldRapids)
        XCTAssertEqual(r.description,
                       "OpenBLAS 0.3.21 core Cooperlake (switched from Prescott: CPU has AVX-512 BF16; self-check passed, cached)")
    }

    // MARK: self-check

    /// The core this process runs passes; the check fails kernels that are wrong in one place.
    func testSelfCheck() {
        let core = BLAS.coreName  // chosen first
        let ok = BLASCore.SelfCheck.run()
        XCTAssertTrue(ok.passed, "\(core): \(ok.maxError)")
        XCTAssertLessThan(ok.maxError, 0.1, core)

        let right: BLASCore.SelfCheck.Product = { transA, transB, m, n, k, a, lda, b, ldb, beta, c, ldc in
            BLAS.sgemmUnprepared(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                                 beta: beta, c: c, ldc: ldc)
        }
        // One element of one transpose case off by ~10 % (the check bounds rounding, not noise).
        let oneElement = BLASCore.SelfCheck.run { transA, transB, m, n, k, a, lda, b, ldb, beta, c, ldc in
            right(transA, transB, m, n, k, a, lda, b, ldb, beta, c, ldc)
            if transA && !transB && m == 97 { c[96 * ldc + 129] += 1 }
        }
        XCTAssertFalse(oneElement.passed, "\(oneElement.maxError)")
        // The last K step dropped (a tail loop bug).
        let shortK = BLASCore.SelfCheck.run { transA, transB, m, n, k, a, lda, b, ldb, beta, c, ldc in
            right(transA, transB, m, n, k - 1, a, lda, b, ldb, beta, c, ldc)
        }
        XCTAssertFalse(shortK.passed)
        // β ignored.
        let noBeta = BLASCore.SelfCheck.run { transA, transB, m, n, k, a, lda, b, ldb, beta, c, ldc in
            right(transA, transB, m, n, k, a, lda, b, ldb, 0, c, ldc)
        }
        XCTAssertFalse(noBeta.passed)
    }

    /// Every core the library could switch to on this CPU computes right here (the choice
    /// checks only the ones it needs); the running core is restored afterwards.
    func testEveryCandidateCorePassesTheSelfCheckHere() {
        let running = BLASCore.active.core
        defer { _ = BLAS.load(core: running); XCTAssertEqual(BLAS.loadedCore, running) }
        for core in BLASCore.candidates(for: .current) where BLAS.canLoad(core: core) {
            XCTAssertTrue(BLAS.load(core: core))
            XCTAssertEqual(BLAS.loadedCore, core)
            let r = BLASCore.SelfCheck.run()
            XCTAssertTrue(r.passed, "\(core): \(r.maxError)")
            XCTAssertLessThan(r.maxError, 0.1, core)
        }
    }

    /// On a CPU with AVX2 and no core set by the user, this test process does not run a
    /// generic kernel: the switch happened on first use.
    func testThisProcessRunsAGoodCore() {
        let report = BLASCore.active
        XCTAssertEqual(report.core, BLAS.coreName)
        let cpu = CPUInfo.current
        guard cpu.avx2FMA, ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil else { return }
        XCTAssertTrue(BLASCore.candidates(for: cpu).prefix(2).contains(report.core), "\(report)")
    }

    // MARK: cache

    func testCacheRoundTrip() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-blas-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let cache = SelfCheckCache(directory: dir, machine: "Some CPU | family 6 model 207 | OpenBLAS 0.3.21")
        XCTAssertEqual(cache.load(), [:])
        let results = ["Cooperlake": BLASCore.SelfCheck.Result(passed: true, maxError: 0.003),
                       "SkylakeX": BLASCore.SelfCheck.Result(passed: false, maxError: .infinity)]
        cache.save(results)
        XCTAssertEqual(cache.load(), results)
        // No temporary file left beside it (written atomically, by rename).
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [cache.url.lastPathComponent])
        // Another machine or library does not see these results.
        XCTAssertEqual(SelfCheckCache(directory: dir, machine: "Some CPU | family 6 model 207 | OpenBLAS 0.3.26").load(), [:])
        // A damaged file counts as no results.
        try Data("{\"machine\": ".utf8).write(to: cache.url)
        XCTAssertEqual(cache.load(), [:])
    }
}
