import Foundation

extension CLIPTokenizer {
    /// The built-in folder's name: openai/clip-vit-large-patch14's tokenizer, which Stable
    /// Diffusion 1.x uses and 2.x shares (with pad "!"); single-file checkpoints carry none.
    public static let builtinName = "clip-vit-large-patch14"

    /// Where the built-in tokenizer folder is: the SwiftPM resource bundle next to the running
    /// executable (`diffuse_Text.resources/` on Linux, `diffuse_Text.bundle/` on macOS), else
    /// this source tree's `Resources/` (a build run from its checkout). `Bundle.module` is not
    /// used: when the bundle is missing (a binary copied elsewhere) it traps instead of throwing.
    public static func builtinFolder() throws -> URL {
        var candidates: [URL] = []
        var executableDirs = [Bundle.main.bundleURL]
        if let exe = Bundle.main.executableURL {
            executableDirs.append(exe.resolvingSymlinksInPath().deletingLastPathComponent())
        }
        for dir in executableDirs {
            candidates.append(dir.appendingPathComponent("diffuse_Text.resources/\(builtinName)"))
            candidates.append(dir.appendingPathComponent("diffuse_Text.bundle/\(builtinName)"))
            candidates.append(dir.appendingPathComponent("diffuse_Text.bundle/Contents/Resources/\(builtinName)"))
        }
        candidates.append(URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Resources/\(builtinName)"))
        var seen = Set<String>()
        candidates = candidates.filter { seen.insert($0.standardizedFileURL.path).inserted }
        for c in candidates where FileManager.default.fileExists(atPath: c.appendingPathComponent("vocab.json").path) {
            return c
        }
        throw TokenizerError(file: "diffuse_Text.resources/\(builtinName)",
                             reason: "the built-in CLIP vocabulary is not next to the executable (looked in \(candidates.map(\.path).joined(separator: ", "))); give a tokenizer folder instead")
    }

    /// The pad token of Stable Diffusion 2.x's tokenizer folders (OpenCLIP pads with id 0).
    public static let sd2PadToken = "!"

    private static let builtinCache = BuiltinCache()

    /// The built-in CLIP tokenizer (read once per process and pad token): SD 1.x's as is,
    /// SD 2.x's with `padToken: CLIPTokenizer.sd2PadToken`.
    public static func builtin(padToken: String? = nil) throws -> CLIPTokenizer {
        try builtinCache.get(padToken ?? "") { try CLIPTokenizer(folder: builtinFolder(), padToken: padToken) }
    }
}

private final class BuiltinCache: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [String: CLIPTokenizer] = [:]
    func get(_ key: String, _ make: () throws -> CLIPTokenizer) throws -> CLIPTokenizer {
        lock.lock(); defer { lock.unlock() }
        if let value = values[key] { return value }
        let v = try make()
        values[key] = v
        return v
    }
}

extension CLIPTokenizer {
    /// Writes this tokenizer as a folder transformers reads: the vocabulary files it was read from
    /// (vocab.json, merges.txt, tokenizer.json and special_tokens_map.json, where present), and
    /// tokenizer_config.json with `model_max_length` = `maxLength` (default: this tokenizer's) and
    /// the pad token it uses. Each file atomically.
    public func save(to dir: URL, maxLength: Int? = nil) throws {
        let fm = FileManager.default
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        let same = dir.standardizedFileURL.resolvingSymlinksInPath().path == folder.standardizedFileURL.resolvingSymlinksInPath().path
        if !same {
            for name in ["vocab.json", "merges.txt", "tokenizer.json", "special_tokens_map.json"] {
                let src = folder.appendingPathComponent(name)
                guard fm.fileExists(atPath: src.path) else { continue }
                let data = try Self.readFile(src, limit: Self.maxFileBytes)
                try data.write(to: dir.appendingPathComponent(name), options: .atomic)
            }
        }
        let configURL = folder.appendingPathComponent("tokenizer_config.json")
        var config = (try Self.readJSONObject(configURL)) ?? ["tokenizer_class": "CLIPTokenizer", "do_lower_case": true]
        config["model_max_length"] = maxLength ?? self.maxLength
        config["pad_token"] = pad.content
        let data = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: dir.appendingPathComponent("tokenizer_config.json"), options: .atomic)
    }

    /// The built-in CLIP tokenizer written as a folder with sequences of `maxLength` tokens
    /// (a small text encoder trained here takes fewer than 77 positions).
    public static func writeBuiltinFolder(to dir: URL, maxLength: Int) throws {
        try builtin().save(to: dir, maxLength: maxLength)
    }
}
