import XCTest
import Foundation
import Text
import TestSupport

/// CLIPTokenizer against transformers' (goldens from Tests/References/make_clip_tokenizer_goldens.py):
/// identical ids for every string of the corpus, padded to 77.
final class CLIPTokenizerTests: XCTestCase {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Goldens")

    /// (text, ids without padding) per line of a golden file.
    static func goldens(_ name: String) throws -> [(text: String, ids: [Int])] {
        // JSONDecoder, not JSONSerialization: the latter drops a leading U+FEFF inside a string.
        struct Line: Decodable { let text: String; let ids: [Int] }
        let data = try Data(contentsOf: dir.appendingPathComponent(name))
        return try data.split(separator: UInt8(ascii: "\n")).map { line in
            let l = try JSONDecoder().decode(Line.self, from: Data(line))
            return (l.text, l.ids)
        }
    }

    func check(_ tokenizer: CLIPTokenizer, golden: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let cases = try Self.goldens(golden)
        XCTAssertGreaterThan(cases.count, 300, file: file, line: line)
        var failures = 0
        for (text, ids) in cases {
            let got = tokenizer(text)
            let want = ids + Array(repeating: tokenizer.padTokenID, count: 77 - ids.count)
            if got != want {
                failures += 1
                if failures <= 10 {
                    XCTFail("\(text.debugDescription): got \(got.prefix(ids.count + 1)), want \(ids)", file: file, line: line)
                }
            }
        }
        XCTAssertEqual(failures, 0, "strings whose ids differ", file: file, line: line)
    }

    func testBuiltinMatchesTransformers() throws {
        let t = try CLIPTokenizer.builtin()
        XCTAssertEqual(t.vocabularySize, 49408)
        XCTAssertEqual([t.bosTokenID, t.eosTokenID, t.padTokenID, t.maxLength], [49406, 49407, 49407, 77])
        try check(t, golden: "clip_tokenizer.jsonl")
    }

    /// Stable Diffusion 2's folder: same vocabulary, pad "!" (id 0), split off wherever it occurs.
    func testSD2PadTokenMatchesTransformers() throws {
        let tmp = try TemporaryFolder()
        defer { tmp.remove() }
        let builtin = try CLIPTokenizer.builtinFolder()
        for name in ["vocab.json", "merges.txt"] {
            try FileManager.default.copyItem(at: builtin.appendingPathComponent(name), to: tmp.file(name))
        }
        for name in ["tokenizer_config.json", "special_tokens_map.json"] {
            try FileManager.default.copyItem(at: Self.dir.appendingPathComponent("sd2_tokenizer/\(name)"), to: tmp.file(name))
        }
        let t = try CLIPTokenizer(folder: tmp.url)
        XCTAssertEqual(t.padTokenID, 0)
        try check(t, golden: "clip_tokenizer_sd2.jsonl")
        // The built-in vocabulary with SD 2's pad (single-file SD 2 checkpoints) is the same tokenizer.
        try check(try CLIPTokenizer.builtin(padToken: CLIPTokenizer.sd2PadToken), golden: "clip_tokenizer_sd2.jsonl")
    }

    /// A folder as transformers 5 saves it: tokenizer.json (its template, with the built-in
    /// vocabulary and merges filled in) + tokenizer_config.json, no vocab.json or merges.txt.
    func transformers5Folder(edit: (inout [String: Any]) -> Void = { _ in }) throws -> TemporaryFolder {
        let tmp = try TemporaryFolder()
        let builtin = try CLIPTokenizer.builtinFolder()
        let v5 = Self.dir.appendingPathComponent("sd2_tokenizer_v5")
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: v5.appendingPathComponent("tokenizer.template.json"))) as! [String: Any]
        var model = json["model"] as! [String: Any]
        model["vocab"] = try JSONSerialization.jsonObject(with: Data(contentsOf: builtin.appendingPathComponent("vocab.json")))
        let merges = try String(contentsOf: builtin.appendingPathComponent("merges.txt"), encoding: .utf8)
        model["merges"] = merges.split(separator: "\n").dropFirst().map { $0.split(separator: " ").map(String.init) }
        json["model"] = model
        edit(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: tmp.file("tokenizer.json"))
        try FileManager.default.copyItem(at: v5.appendingPathComponent("tokenizer_config.json"), to: tmp.file("tokenizer_config.json"))
        return tmp
    }

    func testTransformers5FolderMatches() throws {
        let tmp = try transformers5Folder()
        defer { tmp.remove() }
        let t = try CLIPTokenizer(folder: tmp.url)
        XCTAssertEqual(t.padTokenID, 0)
        try check(t, golden: "clip_tokenizer_sd2.jsonl")
        // Another pre-tokenizer would give other ids: refused, naming tokenizer.json.
        let other = try transformers5Folder { json in json["pre_tokenizer"] = ["type": "Whitespace"] }
        assertRejected(other, naming: "tokenizer.json", "pre-tokenizer")
    }

    func testTokensAndTruncation() throws {
        let t = try CLIPTokenizer.builtin()
        XCTAssertEqual(t.encode("a photo of a cat"), [49406, 320, 1125, 539, 320, 2368, 49407])
        XCTAssertEqual(t.token(1125), "photo</w>")
        let long = t.encode(String(repeating: "cat ", count: 200))
        XCTAssertEqual(long.count, 77)
        XCTAssertEqual(long.first, 49406)
        XCTAssertEqual(long.last, 49407)
    }

    // MARK: Hostile folders

    func makeFolder(vocab: String? = nil, merges: String? = nil, config: String? = nil) throws -> TemporaryFolder {
        let tmp = try TemporaryFolder()
        let builtin = try CLIPTokenizer.builtinFolder()
        if let vocab { try vocab.write(to: tmp.file("vocab.json"), atomically: true, encoding: .utf8) }
        else { try FileManager.default.copyItem(at: builtin.appendingPathComponent("vocab.json"), to: tmp.file("vocab.json")) }
        if let merges { try merges.write(to: tmp.file("merges.txt"), atomically: true, encoding: .utf8) }
        else { try FileManager.default.copyItem(at: builtin.appendingPathComponent("merges.txt"), to: tmp.file("merges.txt")) }
        if let config { try config.write(to: tmp.file("tokenizer_config.json"), atomically: true, encoding: .utf8) }
        return tmp
    }

    func assertRejected(_ tmp: TemporaryFolder, naming fileName: String, _ fragment: String,
                        file: StaticString = #filePath, line: UInt = #line) {
        defer { tmp.remove() }
        XCTAssertThrowsError(try CLIPTokenizer(folder: tmp.url), file: file, line: line) { error in
            guard let e = error as? TokenizerError else { return XCTFail("untyped error \(error)", file: file, line: line) }
            XCTAssertTrue(e.file.hasSuffix(fileName), "\(e)", file: file, line: line)
            XCTAssertTrue(e.reason.contains(fragment), "\(e)", file: file, line: line)
        }
    }

    func testHostileFoldersThrowNamingTheFile() throws {
        let tmp = try TemporaryFolder()
        assertRejected(tmp, naming: "vocab.json", "missing")
        assertRejected(try makeFolder(vocab: "{not json"), naming: "vocab.json", "not a JSON object")
        assertRejected(try makeFolder(vocab: "[1, 2]"), naming: "vocab.json", "not a JSON object")
        assertRejected(try makeFolder(vocab: #"{"a": -1}"#), naming: "vocab.json", "non-negative integer")
        assertRejected(try makeFolder(vocab: #"{"a": "x"}"#), naming: "vocab.json", "non-negative integer")
        assertRejected(try makeFolder(vocab: #"{"a": 1e300}"#), naming: "vocab.json", "non-negative integer")
        assertRejected(try makeFolder(vocab: #"{"a": 0}"#), naming: "vocab.json", "byte symbol")
        assertRejected(try makeFolder(merges: "#version: 0.2\ni n\nzzzq qqq\n"), naming: "merges.txt", "line 3")
        assertRejected(try makeFolder(merges: "#version: 0.2\ni n x\n"), naming: "merges.txt", "two symbols")
        assertRejected(try makeFolder(config: "{"), naming: "tokenizer_config.json", "not a JSON object")
        assertRejected(try makeFolder(config: #"{"pad_token": "<|nope|>"}"#), naming: "tokenizer_config.json", "not in vocab.json")
        assertRejected(try makeFolder(config: #"{"pad_token": 3}"#), naming: "tokenizer_config.json", "must be a string")
        assertRejected(try makeFolder(config: #"{"model_max_length": 1}"#), naming: "tokenizer_config.json", "model_max_length")
        // A huge file is refused by its size before it is read.
        let huge = try makeFolder()
        let h = try FileHandle(forWritingTo: huge.file("merges.txt"))
        try h.truncate(atOffset: UInt64(CLIPTokenizer.maxFileBytes + 1))
        try h.close()
        assertRejected(huge, naming: "merges.txt", "bytes")
    }
}
