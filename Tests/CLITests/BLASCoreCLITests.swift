import XCTest
import Foundation
import TestSupport
import Tensor

/// `diffuse bench core`: the OpenBLAS core a fresh process runs, chosen by the real library on
/// this CPU (with `OPENBLAS_CORETYPE` unset, as on a user's machine), and the self-check cache.
final class BLASCoreCLITests: XCTestCase {
    func core(_ env: [String: String], unset: [String] = []) throws -> [String: Any] {
        let r = try runDiffuseCommand(["bench", "core", "--json"], env: env, unset: unset)
        XCTAssertEqual(r.status, 0, r.stderr)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
    }

    func testGenericCoreIsNeverRunOnAModernCPU() throws {
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-blascache-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: cache) }
        let env = ["XDG_CACHE_HOME": cache.path]
        let first = try core(env, unset: ["OPENBLAS_CORETYPE"])
        let cpu = CPUInfo.current
        let best = BLASCore.candidates(for: cpu)
        let ran = try XCTUnwrap(first["core"] as? String)
        if cpu.avx2FMA {
            // Cooperlake or SkylakeX on AVX-512, Haswell or Zen on AVX2: the best two at most.
            XCTAssertTrue(best.prefix(2).contains(ran), "\(first)")
        }
        guard first["switched"] as? Bool == true else { return }  // the library chose well by itself
        // A switch is made only after the self-check, whose result is then cached.
        XCTAssertEqual(first["self_check"] as? String, "passed", "\(first)")
        let files = try FileManager.default.contentsOfDirectory(atPath: cache.appendingPathComponent("diffuse/blas").path)
        XCTAssertEqual(files.count, 1, "\(files)")
        let again = try core(env, unset: ["OPENBLAS_CORETYPE"])
        XCTAssertEqual(again["core"] as? String, ran)
        XCTAssertEqual(again["self_check"] as? String, "passed, cached", "\(again)")

        // Had that core failed its self-check here, the next best one is checked and run.
        let file = cache.appendingPathComponent("diffuse/blas").appendingPathComponent(files[0])
        var stored = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any])
        var cores = try XCTUnwrap(stored["cores"] as? [String: Any])
        cores[ran] = ["passed": false, "max_error": 1e6]
        stored["cores"] = cores
        try JSONSerialization.data(withJSONObject: stored).write(to: file)
        let next = try core(env, unset: ["OPENBLAS_CORETYPE"])
        let fallback = try XCTUnwrap(next["core"] as? String)
        XCTAssertNotEqual(fallback, ran)
        if next["switched"] as? Bool == true {
            XCTAssertTrue(best.contains(fallback), "\(next)")
            XCTAssertEqual(next["self_check"] as? String, "passed", "\(next)")
            XCTAssert((next["reason"] as? String ?? "").hasSuffix("; \(ran) failed the self-check"), "\(next)")
        }
    }

    func testCoreSetByTheUserIsRespected() throws {
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-blascache-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: cache) }
        let r = try core(["XDG_CACHE_HOME": cache.path, "OPENBLAS_CORETYPE": "Haswell"])
        XCTAssertEqual(r["core"] as? String, "Haswell", "\(r)")
        XCTAssertEqual(r["switched"] as? Bool, false)
        XCTAssertEqual(r["reason"] as? String, "OPENBLAS_CORETYPE=Haswell set by the user")
        XCTAssertNil(r["self_check"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: cache.appendingPathComponent("diffuse/blas").path))
    }

    func testVerboseSaysWhichCoreRuns() throws {
        let help = try runDiffuseCommand(["bench", "kernels", "--help"])
        XCTAssert(help.stdout.contains("--verbose"), help.stdout)
        // The line comes before any work (here: before the missing folder is noticed).
        let r = try runDiffuseCommand(["forward", "/nonexistent/model", "--input", "/nonexistent/in.safetensors",
                                       "--output", "/nonexistent/out.safetensors", "--verbose"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssert(r.stderr.hasPrefix("BLAS: OpenBLAS ") && r.stderr.contains(" core "), r.stderr)
        let line = try runDiffuseCommand(["bench", "core"])
        XCTAssertEqual(line.status, 0, line.stderr)
        XCTAssert(line.stdout.hasPrefix("OpenBLAS ") && line.stdout.contains(" core "), line.stdout)
    }
}
