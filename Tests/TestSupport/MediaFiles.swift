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

/// Deterministic damaged copies of a valid file, for "never crash" tests: bit flips, truncation,
/// overwritten runs (zeros, 0xFF, random) and duplicated spans.
public func mutations(of bytes: [UInt8], count: Int, seed: UInt64) -> [[UInt8]] {
    var state = seed
    func next() -> Int {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return Int(truncatingIfNeeded: (z ^ (z >> 31)) >> 1)
    }
    var out: [[UInt8]] = []
    for _ in 0..<count {
        var b = bytes
        switch next() % 4 {
        case 0:
            for _ in 0..<(1 + next() % 8) { b[next() % b.count] ^= UInt8(1 << (next() % 8)) }
        case 1:
            b = Array(b[0..<(next() % b.count)])
        case 2:
            let start = next() % b.count, len = min(b.count - start, 1 + next() % 16), kind = next() % 3
            for i in start..<(start + len) { b[i] = kind == 0 ? 0 : kind == 1 ? 0xFF : UInt8(truncatingIfNeeded: next()) }
        default:
            let start = next() % b.count, len = min(b.count - start, 1 + next() % 64)
            b.insert(contentsOf: b[start..<(start + len)], at: next() % b.count)
        }
        out.append(b)
    }
    return out
}

/// Feeds every mutation of `bytes` to `read`; each must succeed or throw (never crash), and
/// any error must be the codec's typed error. Returns how many were rejected.
@discardableResult
public func assertMutationsNeverCrash(_ bytes: [UInt8], count: Int, seed: UInt64, in folder: TemporaryFolder,
                                      ext: String, file: StaticString = #filePath, line: UInt = #line,
                                      isTypedError: (Error) -> Bool, read: (URL) throws -> Void) -> Int {
    var rejected = 0
    for (i, m) in mutations(of: bytes, count: count, seed: seed).enumerated() {
        let url = folder.file("mutant-\(i).\(ext)")
        XCTAssertNoThrow(try Data(m).write(to: url), file: file, line: line)
        do { try read(url) } catch {
            rejected += 1
            XCTAssertTrue(isTypedError(error), "mutant \(i): \(error)", file: file, line: line)
        }
        try? FileManager.default.removeItem(at: url)
    }
    return rejected
}

/// The `diffuse` executable beside the test bundle in the build folder (test targets that run
/// it depend on the `diffuse` target so that `swift build --build-tests` builds it).
public let diffuseExecutable: URL = {
    let bundle = URL(fileURLWithPath: CommandLine.arguments.first { $0.hasSuffix(".xctest") } ?? CommandLine.arguments[0])
    return bundle.deletingLastPathComponent().appendingPathComponent("diffuse")
}()

/// What a `diffuse` run returned.
public struct DiffuseResult {
    public var status: Int32; public var stdout: String; public var stderr: String
    /// Killed by a signal (a trap is SIGILL or SIGTRAP, the OOM killer SIGKILL): `status` is the signal.
    public var signalled = false
}

/// Runs `diffuse args...` and collects its exit status and output.
/// `env` adds to (or overrides) this process' environment; `unset` names variables to leave out.
/// `memoryLimitBytes`: the address space the process may map (`ulimit -v`), so that an
/// unbounded allocation fails inside it rather than taking the machine down.
public func runDiffuseCommand(_ args: [String], env: [String: String] = [:], unset: [String] = [],
                              memoryLimitBytes: Int? = nil) throws -> DiffuseResult {
    let p = Process()
    if let limit = memoryLimitBytes {
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "ulimit -v \(limit / 1024) && exec \"$0\" \"$@\"", diffuseExecutable.path] + args
    } else {
        p.executableURL = diffuseExecutable
        p.arguments = args
    }
    p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }.filter { !unset.contains($0.key) }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    // Read both pipes while the process runs, so neither fills up and blocks it.
    let errData = DataBox()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async { errData.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    let o = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    p.waitUntilExit()
    return DiffuseResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                         stderr: String(decoding: errData.data, as: UTF8.self), signalled: p.terminationReason == .uncaughtSignal)
}

/// Bytes filled in by another thread (read only after it is done).
private final class DataBox: @unchecked Sendable { var data = Data() }
