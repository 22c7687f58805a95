import XCTest
import Foundation
import NN
import TestSupport

/// Float-typed config keys are written as floats (`1.0`), as Python writes them: transformers 5's
/// strict configs refuse `1` where they type a float, and JSONEncoder writes 1.0 as `1`.
final class ConfigFloatKeysTests: XCTestCase {
    struct Toy: Codable, FloatTypedConfig {
        static let floatKeys: Set<String> = ["scale", "eps", "nested", "negative", "absent", "fraction"]
        var scale: Float = 1
        var eps: Float = 1e-5
        var fraction: Double = 0.5
        var negative: Double = -2
        var count = 3
        var nested = ["scale": 1.0]
        var list: [Float] = [1, 2]
    }

    func testWritesFloatKeysAsFloatsAndNothingElse() throws {
        let text = String(decoding: try ConfigFile.jsonData(Toy()), as: UTF8.self)
        for line in ["  \"scale\" : 1.0", "  \"eps\" : 1e-05,", "  \"fraction\" : 0.5,", "  \"negative\" : -2.0,", "  \"count\" : 3,"] {
            XCTAssert(text.contains(line + "\n"), "lacks \(line):\n\(text)")
        }
        // Only top-level keys: a nested "scale" and list entries keep JSONEncoder's spelling.
        XCTAssert(text.contains("    \"scale\" : 1\n"), text)
        XCTAssert(text.contains("    1,\n    2\n"), text)
        XCTAssert(text.hasSuffix("}\n"))
        // The same values come back.
        let back = try JSONDecoder().decode(Toy.self, from: Data(text.utf8))
        XCTAssertEqual(back.scale, 1); XCTAssertEqual(back.negative, -2); XCTAssertEqual(back.count, 3)
        // An explicit set wins over the type's; an empty one writes JSONEncoder's bytes.
        let plain = String(decoding: try ConfigFile.jsonData(Toy(), floatKeys: []), as: UTF8.self)
        XCTAssert(plain.contains("  \"scale\" : 1\n"), plain)
        XCTAssertEqual(ConfigFile.markingFloats(Data(plain.utf8), keys: ["count"]),
                       Data(plain.replacingOccurrences(of: "\"count\" : 3,", with: "\"count\" : 3.0,").utf8))
    }

    func testMarkingReadsPythonsSpellingToo() {
        let python = "{\n  \"a\": 1,\n  \"b\": 2.5,\n  \"c\": \"1\",\n  \"d\": [\n    1\n  ],\n  \"e\": -7\n}"
        let out = String(decoding: ConfigFile.markingFloats(Data(python.utf8), keys: ["a", "b", "c", "d", "e"]), as: UTF8.self)
        XCTAssertEqual(out, "{\n  \"a\": 1.0,\n  \"b\": 2.5,\n  \"c\": \"1\",\n  \"d\": [\n    1\n  ],\n  \"e\": -7.0\n}")
    }

    func testRepairRewritesOnlyWhatItMustAndNamesBadFiles() throws {
        let tmp = try TemporaryFolder()
        let url = tmp.url.appendingPathComponent("config.json")
        // As diffuse wrote it before floats were marked (and a Python literal a scheduler may hold).
        let old = "{\n  \"_class_name\" : \"X\",\n  \"lambda_min_clipped\" : -Infinity,\n  \"scale\" : 1,\n  \"steps\" : 4\n}\n"
        try Data(old.utf8).write(to: url)
        XCTAssertTrue(try ConfigFile.repairFloats(at: url, floatKeys: ["scale", "lambda_min_clipped"]))
        XCTAssertEqual(String(decoding: try Data(contentsOf: url), as: UTF8.self), old.replacingOccurrences(of: "\"scale\" : 1,", with: "\"scale\" : 1.0,"))
        XCTAssertFalse(try ConfigFile.repairFloats(at: url, floatKeys: ["scale"]), "a repaired file stays as it is")
        // One JSON line (no layout to edit) is left alone; a file that is not JSON is an error naming it.
        try Data("{\"scale\": 1}".utf8).write(to: url)
        XCTAssertFalse(try ConfigFile.repairFloats(at: url, floatKeys: ["scale"]))
        try Data("not json".utf8).write(to: url)
        XCTAssertThrowsError(try ConfigFile.repairFloats(at: url, floatKeys: ["scale"])) { XCTAssert("\($0)".contains(url.path), "\($0)") }
    }
}
