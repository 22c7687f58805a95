import XCTest
import TestSupport
import Foundation

/// `diffuse export` repairs folders written before float-typed config keys were written as
/// floats: transformers 5 refuses `"initializer_factor": 1` in a text encoder's config.
final class ExportRepairTests: XCTestCase {
    func testExportWritesFloatKeysAsFloatsAndLeavesTheRest() throws {
        let tiny = URL(fileURLWithPath: PromptCommandTests.model)
        let tmp = try TemporaryFolder()
        let old = tmp.url.appendingPathComponent("old"), new = tmp.url.appendingPathComponent("new")
        try FileManager.default.copyItem(at: tiny, to: old)
        // What an older diffuse wrote: JSONEncoder's integers for integral floats.
        let edits = [("text_encoder/config.json", "\"initializer_factor\": 1.0", "\"initializer_factor\": 1"),
                     ("text_encoder/config.json", "\"attention_dropout\": 0.0", "\"attention_dropout\": 0"),
                     ("unet/config.json", "\"dropout\": 0.0", "\"dropout\": 0")]
        for (rel, from, to) in edits {
            let url = old.appendingPathComponent(rel)
            let text = try String(contentsOf: url, encoding: .utf8)
            XCTAssert(text.contains(from), "\(rel) lacks \(from)")
            try text.replacingOccurrences(of: from, with: to).write(to: url, atomically: true, encoding: .utf8)
        }
        let r = try runDiffuseCommand(["export", old.path, "--out", new.path, "--dtype", "f16"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stdout.contains("in 2 config files"), r.stdout)
        // Byte for byte what diffusers and transformers wrote, which differed only there — except
        // that diffusers writes its int default `mid_block_scale_factor: 1` for a key it types float.
        for rel in ["text_encoder/config.json", "unet/config.json", "vae/config.json", "scheduler/scheduler_config.json", "model_index.json"] {
            let want = try String(contentsOf: tiny.appendingPathComponent(rel), encoding: .utf8)
                .replacingOccurrences(of: "\"mid_block_scale_factor\": 1,", with: "\"mid_block_scale_factor\": 1.0,")
            XCTAssertEqual(try String(contentsOf: new.appendingPathComponent(rel), encoding: .utf8), want, rel)
        }
        // A folder with nothing to repair says nothing about configs.
        let again = tmp.url.appendingPathComponent("again")
        let s = try runDiffuseCommand(["export", new.path, "--out", again.path])
        XCTAssertEqual(s.status, 0, s.stderr)
        XCTAssertFalse(s.stdout.contains("config"), s.stdout)
    }
}
