import XCTest
import Foundation
import NN
import Diffusion
import Text
import Image
import TestSupport

/// The configs we write spell numbers as the Python libraries do: wherever diffusers or
/// transformers wrote a float (`"dropout": 0.0`, `"initializer_factor": 1.0`), we write one too,
/// and integers stay integers. transformers 5 refuses a text encoder config with
/// `"initializer_factor": 1` (its `@strict` CLIPTextConfig types it float).
final class FolderConfigFloatKeysTests: XCTestCase {
    static let goldens = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Goldens")
    static let textGoldens = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("TextTests/Goldens/clip_text")

    /// Top-level numbers of a pretty-printed JSON object as written: key → literal.
    static func numberLiterals(_ data: Data) -> [String: String] {
        var out: [String: String] = [:]
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") where line.hasPrefix("  \"") && !line.hasPrefix("   ") {
            let rest = line.dropFirst(3)
            guard let close = rest.firstIndex(of: "\"") else { continue }
            var value = rest[rest.index(after: close)...].drop(while: { $0 == " " || $0 == ":" })
            if value.hasSuffix(",") { value = value.dropLast() }
            if Double(value) != nil { out[String(rest[..<close])] = String(value) }
        }
        return out
    }

    static func isFloatLiteral(_ s: String) -> Bool { s.contains(".") || s.contains("e") || s.contains("E") }

    /// What we write for a config file Python wrote, read with the type its class names.
    static func rewritten(_ url: URL) throws -> Data {
        let object = try ConfigFile.read([String: JSONValue].self, from: url)
        if url.lastPathComponent == "scheduler_config.json" { return try SchedulerConfig.load(url).jsonData() }
        if object["model_type"]?.string == CLIPTextConfig.modelType { return try ConfigFile.jsonData(ConfigFile.read(CLIPTextConfig.self, from: url)) }
        switch object["_class_name"]?.string {
        case UNet2DConditionConfig.className?: return try ConfigFile.jsonData(ConfigFile.read(UNet2DConditionConfig.self, from: url))
        case UNet2DConfig.className?: return try ConfigFile.jsonData(ConfigFile.read(UNet2DConfig.self, from: url))
        case AutoencoderKLConfig.className?: return try ConfigFile.jsonData(ConfigFile.read(AutoencoderKLConfig.self, from: url))
        default: throw ConfigError(key: url.path, reason: "no config type for this test")
        }
    }

    static func assertSameNumberSpelling(python: Data, ours: Data, _ name: String, file: StaticString = #filePath, line: UInt = #line) {
        let p = numberLiterals(python), o = numberLiterals(ours)
        XCTAssertFalse(p.isEmpty, "\(name): no numbers read", file: file, line: line)
        for (key, literal) in p.sorted(by: { $0.key < $1.key }) {
            guard let mine = o[key] else { continue }  // keys we do not write (or write as null)
            if isFloatLiteral(literal) {
                XCTAssert(isFloatLiteral(mine), "\(name): \(key) is \(literal) in Python's file, \(mine) in ours", file: file, line: line)
            } else if !isFloatLiteral(mine) {
                XCTAssertEqual(Double(mine), Double(literal), "\(name): \(key)", file: file, line: line)
            }
        }
    }

    func testEveryReferenceConfigKeepsItsFloatsFloat() throws {
        var files: [URL] = []
        for root in [Self.goldens, Self.textGoldens] {
            for case let rel as String in FileManager.default.enumerator(atPath: root.path)!
                where rel.hasSuffix("/config.json") || rel.hasSuffix("scheduler_config.json") {
                files.append(root.appendingPathComponent(rel))
            }
        }
        XCTAssertGreaterThan(files.count, 20)
        for url in files {
            Self.assertSameNumberSpelling(python: try Data(contentsOf: url), ours: try Self.rewritten(url), url.path)
        }
    }

    func testSavedPipelineFolderIsWhatTransformers5Loads() throws {
        let tiny = Self.goldens.appendingPathComponent("sd-pipeline/tiny")
        let pipe = try StableDiffusionPipeline.load(tiny)
        let tmp = try TemporaryFolder()
        try pipe.save(to: tmp.url)
        for rel in ["text_encoder/config.json", "unet/config.json", "vae/config.json", "scheduler/scheduler_config.json"] {
            Self.assertSameNumberSpelling(python: try Data(contentsOf: tiny.appendingPathComponent(rel)),
                                          ours: try Data(contentsOf: tmp.url.appendingPathComponent(rel)), rel)
        }
        let text = Self.numberLiterals(try Data(contentsOf: tmp.url.appendingPathComponent("text_encoder/config.json")))
        for key in ["layer_norm_eps", "initializer_range", "initializer_factor", "attention_dropout"] {
            XCTAssert(text[key].map(Self.isFloatLiteral) ?? false, "\(key): \(text[key] ?? "absent")")
        }
        XCTAssertEqual(try StableDiffusionPipeline.load(tmp.url).textEncoder.config, pipe.textEncoder.config)
    }
}
