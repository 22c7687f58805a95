import Foundation
import CZlib

/// A malformed or unreadable IDX file (the MNIST family's format), naming the file.
public struct IDXError: Error, CustomStringConvertible {
    public let file: String
    public let reason: String
    public var description: String { "\(file): \(reason)" }
}

/// Reads IDX files, gzip'd or plain (zlib reads both): big-endian magic 0x0000 08 NN
/// (unsigned bytes, NN dimensions), then NN big-endian u32 sizes, then the bytes.
public enum IDXReader {
    /// Largest payload accepted (the training images are 47 MB).
    public static let maxBytes = 1 << 30

    /// (dimensions, bytes) of an unsigned-byte IDX file.
    public static func read(_ url: URL) throws -> (dims: [Int], bytes: [UInt8]) {
        let path = url.path
        func fail(_ r: String) -> IDXError { IDXError(file: path, reason: r) }
        guard FileManager.default.isReadableFile(atPath: path) else { throw fail("cannot read the file") }
        guard let f = gzopen(path, "rb") else { throw fail("cannot open: \(String(cString: strerror(errno)))") }
        defer { gzclose(f) }
        func readExactly(_ n: Int) throws -> [UInt8] {
            var buf = [UInt8](repeating: 0, count: n)
            var got = 0
            while got < n {
                let r = buf.withUnsafeMutableBytes { gzread(f, $0.baseAddress! + got, UInt32(Swift.min(n - got, 1 << 30))) }
                if r < 0 { throw fail("corrupt gzip data") }
                if r == 0 { throw fail("truncated: expected \(n) bytes, got \(got)") }
                got += Int(r)
            }
            return buf
        }
        let magic = try readExactly(4)
        guard magic[0] == 0, magic[1] == 0 else { throw fail("not an IDX file (bad magic)") }
        guard magic[2] == 0x08 else { throw fail("element type 0x\(String(magic[2], radix: 16)) is not unsigned bytes") }
        let nd = Int(magic[3])
        guard (1...4).contains(nd) else { throw fail("\(nd) dimensions") }
        let head = try readExactly(4 * nd)
        var dims: [Int] = []
        for d in 0..<nd {
            dims.append(Int(head[4 * d]) << 24 | Int(head[4 * d + 1]) << 16 | Int(head[4 * d + 2]) << 8 | Int(head[4 * d + 3]))
        }
        var total = 1
        for d in dims {
            guard d > 0 else { throw fail("zero dimension in \(dims)") }
            let (p, o) = total.multipliedReportingOverflow(by: d)
            guard !o, p <= maxBytes else { throw fail("dimensions \(dims) exceed \(maxBytes) bytes") }
            total = p
        }
        return (dims, try readExactly(total))
    }
}
