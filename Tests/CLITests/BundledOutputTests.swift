import XCTest
import TestSupport
import Foundation
import NN

/// The bundled models make exactly what they made before the pipelines were refactored:
/// every `run NAME ARGS…` line of Tests/References/record_bundled_outputs.sh (the command that
/// recorded Tests/CLITests/Recorded/NAME.safetensors) is run again, and its `--raw` output must
/// equal the recording bit for bit. One thread and OpenBLAS's Haswell kernel, as recorded.
final class BundledOutputTests: XCTestCase {
    static let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static let recorded = here.appendingPathComponent("Recorded")
    static let script = here.deletingLastPathComponent().appendingPathComponent("References/record_bundled_outputs.sh")

    /// (name, arguments) of each `run` line, with $R and $tmp put in.
    func recordedCalls(tmp: URL) throws -> [(String, [String])] {
        let text = try String(contentsOf: Self.script, encoding: .utf8)
        return text.split(separator: "\n").compactMap { line -> (String, [String])? in
            let words = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard words.first == "run", words.count > 2 else { return nil }
            let args = words.dropFirst(2).map {
                $0.replacingOccurrences(of: "\"", with: "").replacingOccurrences(of: "$R", with: Self.recorded.path)
                    .replacingOccurrences(of: "$tmp", with: tmp.path)
            }
            return (words[1], args)
        }
    }

    func testBundledModelsGenerateWhatWasRecorded() throws {
        let samples = Self.here.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("samples")
        for m in ["image", "audio", "video"] {
            try XCTSkipUnless(FileManager.default.fileExists(atPath: samples.appendingPathComponent("\(m)/model_index.json").path),
                              "no bundled \(m) model")
        }
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-recorded-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let calls = try recordedCalls(tmp: tmp)
        XCTAssertEqual(calls.count, 9, "the recording script's run lines")
        for (name, args) in calls {
            let raw = tmp.appendingPathComponent("\(name).safetensors")
            let r = try runDiffuseCommand(args + ["--threads", "1", "--raw", raw.path],
                                          env: ["OPENBLAS_CORETYPE": "Haswell", "DIFFUSE_THREADS": "1", "DIFFUSE_SAMPLES": samples.path])
            XCTAssertEqual(r.status, 0, "\(name): \(r.stderr)")
            guard r.status == 0 else { continue }
            let want = try SafeTensorsFile(url: Self.recorded.appendingPathComponent("\(name).safetensors")).tensor("sample")
            let got = try SafeTensorsFile(url: raw).tensor("sample")
            XCTAssertEqual(got.shape, want.shape, name)
            let differing = zip(got.scalars, want.scalars).filter { $0.bitPattern != $1.bitPattern }.count
            XCTAssertEqual(differing, 0, "\(name): \(differing) of \(want.scalars.count) floats differ from the recording")
        }
    }
}
