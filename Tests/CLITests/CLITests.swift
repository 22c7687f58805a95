import XCTest
import Foundation

/// The `diffuse` executable as a user runs it: help text and exit codes
/// (0 ok, 1 runtime error, 64 usage).
final class CLITests: XCTestCase {
    /// The executable sits beside the test bundle in the build folder.
    static var executable: URL {
        let bundle = URL(fileURLWithPath: CommandLine.arguments.first { $0.hasSuffix(".xctest") } ?? CommandLine.arguments[0])
        return bundle.deletingLastPathComponent().appendingPathComponent("diffuse")
    }

    struct Result { var status: Int32; var stdout: String; var stderr: String }

    func run(_ args: [String], env: [String: String] = [:]) throws -> Result {
        let p = Process()
        p.executableURL = Self.executable
        p.arguments = args
        p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    func testExecutableIsBuilt() {
        XCTAssert(FileManager.default.isExecutableFile(atPath: Self.executable.path), "no executable at \(Self.executable.path)")
    }

    func testHelpListsSubcommands() throws {
        let r = try run(["--help"])
        XCTAssertEqual(r.status, 0)
        XCTAssert(r.stdout.contains("bench"), r.stdout)
        let k = try run(["bench", "kernels", "--help"])
        XCTAssertEqual(k.status, 0)
        for flag in ["--json", "--threads", "--runs"] { XCTAssert(k.stdout.contains(flag), "help lacks \(flag): \(k.stdout)") }
    }

    func testBadUsageExits64() throws {
        XCTAssertEqual(try run(["bench", "kernels", "--runs", "2"]).status, 64)
        XCTAssertEqual(try run(["bench", "kernels", "--threads", "0"]).status, 64)
        XCTAssertEqual(try run(["no-such-command"]).status, 64)
        let r = try run(["bench", "kernels", "--threads", "zero"])
        XCTAssertEqual(r.status, 64)
        XCTAssert(r.stderr.contains("threads"), r.stderr)
    }
}
