import Foundation
import XCTest

/// A fresh folder under the system temp directory, removed by `remove()` (call it in tearDown).
public struct TemporaryFolder {
    public let url: URL
    public init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    public func file(_ name: String) -> URL { url.appendingPathComponent(name) }
    /// Names of the files in the folder (to check that no temporary file was left behind).
    public func contents() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []).sorted()
    }
    public func remove() { try? FileManager.default.removeItem(at: url) }
}

/// What `ffprobe` says about the first stream of a file: `key=value` pairs of `-show_streams`
/// plus `format_name`. Throws XCTSkip when ffprobe is not installed; fails when it rejects the file.
public func ffprobe(_ url: URL, file: StaticString = #filePath, line: UInt = #line) throws -> [String: String] {
    let candidates = ["/usr/bin/ffprobe", "/usr/local/bin/ffprobe"]
    guard let tool = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        throw XCTSkip("ffprobe is not installed")
    }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tool)
    p.arguments = ["-v", "error", "-count_frames", "-show_streams", "-show_format", "-of", "flat=s=_", url.path]
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    XCTAssertEqual(p.terminationStatus, 0, "ffprobe rejected \(url.lastPathComponent): \(errors)", file: file, line: line)
    XCTAssertEqual(errors, "", "ffprobe complained about \(url.lastPathComponent)", file: file, line: line)
    var result: [String: String] = [:]
    for lineText in String(decoding: data, as: UTF8.self).split(separator: "\n") {
        guard let eq = lineText.firstIndex(of: "=") else { continue }
        var key = String(lineText[..<eq])
        for prefix in ["streams_stream_0_", "format_"] where key.hasPrefix(prefix) {
            key = String(key.dropFirst(prefix.count))
        }
        result[key] = String(lineText[lineText.index(after: eq)...]).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
    }
    return result
}

/// Every file in a test target's corpus folder, found next to the test source file.
public func corpusFiles(_ folder: String, testFile: String = #filePath) -> [URL] {
    let dir = URL(fileURLWithPath: testFile).deletingLastPathComponent().appendingPathComponent(folder)
    let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
    return names.sorted().map { dir.appendingPathComponent($0) }
}
