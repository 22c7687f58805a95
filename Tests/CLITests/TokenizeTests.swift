import XCTest
import TestSupport
import Foundation
import Tensor
import NN

/// `diffuse tokenize`: the ids of a known prompt, folders of each kind, and the errors.
final class TokenizeTests: XCTestCase {
    static let builtin = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Sources/Text/Resources/clip-vit-large-patch14").standardized
    /// "a photo of a cat" as transformers' CLIPTokenizer gives it for Stable Diffusion 1.x.
    static let cat = [49406, 320, 1125, 539, 320, 2368, 49407]

    /// A pipeline folder whose tokenizer/ is the built-in one, with `edit` applied to its files.
    func pipeline(in tmp: TemporaryFolder, edit: (URL) throws -> Void = { _ in }) throws -> URL {
        let root = tmp.file("pipe")
        let tok = root.appendingPathComponent("tokenizer")
        try FileManager.default.createDirectory(at: tok, withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: root.appendingPathComponent("model_index.json"))
        for f in ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"] {
            try FileManager.default.copyItem(at: Self.builtin.appendingPathComponent(f), to: tok.appendingPathComponent(f))
        }
        try edit(tok)
        return root
    }

    func testKnownPromptIds() throws {
        let r = try runDiffuse(["tokenize", "builtin", "--text", "A photo of a CAT", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let ids = try JSONDecoder().decode([Int].self, from: Data(r.stdout.utf8))
        XCTAssertEqual(ids, Self.cat + Array(repeating: 49407, count: 77 - Self.cat.count))
        let plain = try runDiffuse(["tokenize", "builtin", "--text", "a photo of a cat"])
        XCTAssertEqual(plain.stdout, "49406:<|startoftext|> 320:a</w> 1125:photo</w> 539:of</w> 320:a</w> 2368:cat</w> 49407:<|endoftext|>  + 70 × 49407\n")
    }

    func testFileOfPromptsThroughAPipelineFolderWithSD2Padding() throws {
        let tmp = try TemporaryFolder()
        defer { tmp.remove() }
        let root = try pipeline(in: tmp) { tok in
            for f in ["tokenizer_config.json", "special_tokens_map.json"] {
                let u = tok.appendingPathComponent(f)
                let s = try String(contentsOf: u, encoding: .utf8).replacingOccurrences(of: #""pad_token": "<|endoftext|>""#, with: #""pad_token": "!""#)
                try s.write(to: u, atomically: true, encoding: .utf8)
            }
        }
        try "a photo of a cat\n\nwow!\n".write(to: tmp.file("prompts.txt"), atomically: true, encoding: .utf8)
        let r = try runDiffuse(["tokenize", root.path, "--file", tmp.file("prompts.txt").path, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n").map { try! JSONDecoder().decode([Int].self, from: Data($0.utf8)) }
        XCTAssertEqual(lines.count, 3)
        XCTAssertEqual(lines[0], Self.cat + Array(repeating: 0, count: 70))
        XCTAssertEqual(lines[1], [49406, 49407] + Array(repeating: 0, count: 75))
        XCTAssertEqual(Array(lines[2].prefix(4)), [49406, 2781, 0, 49407])  // "!" is SD 2's pad token, split off
    }

    /// A single-file checkpoint: the built-in vocabulary, padded with "!" (id 0) when the file
    /// holds OpenCLIP's text encoder (SD 2.x), with EOS otherwise (SD 1.x).
    func testSingleFileCheckpointPadding() throws {
        let tmp = try TemporaryFolder()
        defer { tmp.remove() }
        for (name, key, pad) in [("sd1.safetensors", "cond_stage_model.transformer.text_model.final_layer_norm.weight", 49407),
                                 ("sd2.safetensors", "cond_stage_model.model.ln_final.weight", 0)] {
            try SafeTensors.write([key: Tensor.zeros([2])], to: tmp.file(name))
            let r = try runDiffuse(["tokenize", tmp.file(name).path, "--text", "a photo of a cat", "--json"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let ids = try JSONDecoder().decode([Int].self, from: Data(r.stdout.utf8))
            XCTAssertEqual(ids, Self.cat + Array(repeating: pad, count: 70), name)
        }
    }

    func testBadFolderExitsOneNamingTheFile() throws {
        let tmp = try TemporaryFolder()
        defer { tmp.remove() }
        let root = try pipeline(in: tmp) { tok in try Data("{\"a\": ".utf8).write(to: tok.appendingPathComponent("vocab.json")) }
        var r = try runDiffuse(["tokenize", root.path, "--text", "x"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("tokenizer/vocab.json"), r.stderr)
        try FileManager.default.removeItem(at: root.appendingPathComponent("tokenizer/merges.txt"))
        try Data("{}".utf8).write(to: root.appendingPathComponent("tokenizer/vocab.json"))
        r = try runDiffuse(["tokenize", root.path, "--text", "x"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("vocab.json"), r.stderr)
        r = try runDiffuse(["tokenize", tmp.file("nothing").path, "--text", "x"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("nothing"), r.stderr)
        XCTAssertEqual(try runDiffuse(["tokenize", "builtin"]).status, 64)
        XCTAssertEqual(try runDiffuse(["tokenize", "builtin", "--text", "a", "--file", "b"]).status, 64)
    }
}
