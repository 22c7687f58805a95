import Foundation
import Tensor

/// Element types of the safetensors format.
public enum SafeTensorsDType: String, CaseIterable, Sendable {
    case F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL

    public var size: Int {
        switch self {
        case .F64, .I64: return 8
        case .F32, .I32: return 4
        case .F16, .BF16, .I16: return 2
        case .I8, .U8, .BOOL: return 1
        }
    }
}

/// A safetensors file that could not be read, with the file and the reason.
public struct SafeTensorsError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let reason: String
    public init(file: String, reason: String) { self.file = file; self.reason = reason }
    public var description: String { "\(file): \(reason)" }
}

/// A safetensors file, memory-mapped and validated on open:
///
///     [u64 little-endian header length N][N bytes of JSON header][data]
///     header: {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}
///
/// Everything in the header is checked before anything is allocated from it: the length bound,
/// well-formed JSON, known dtypes, shape × dtype size = byte range, ranges inside the data and
/// not overlapping. Tensors are converted to Float32 on request.
public final class SafeTensorsFile {
    public struct Entry: Sendable {
        public let name: String
        public let dtype: SafeTensorsDType
        public let shape: [Int]
        public let range: Range<Int>  // within the data section
    }

    public let url: URL
    public let metadata: [String: String]
    /// Entries in file order (by offset).
    public let entries: [Entry]
    private let byName: [String: Entry]
    private let base: UnsafeMutableRawPointer?
    private let length: Int
    private let dataStart: Int

    /// Largest header accepted (the reference implementation's limit).
    public static let maxHeaderBytes = 100_000_000

    public init(url: URL) throws {
        self.url = url
        let file = url.path
        func fail(_ reason: String) -> SafeTensorsError { SafeTensorsError(file: file, reason: reason) }
        let fd = open(file, O_RDONLY)
        guard fd >= 0 else { throw fail("cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw fail("cannot stat: \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw fail("not a regular file") }
        let size = Int(st.st_size)
        guard size >= 8 else { throw fail("file is \(size) bytes, too short for the 8-byte header length") }
        guard let m = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), m != MAP_FAILED else {
            throw fail("cannot map: \(String(cString: strerror(errno)))")
        }
        do {
            let n = Int(exactly: UInt64(littleEndian: m.loadUnaligned(as: UInt64.self))) ?? Int.max
            guard n <= SafeTensorsFile.maxHeaderBytes else {
                throw fail("header length \(n) exceeds the limit of \(SafeTensorsFile.maxHeaderBytes) bytes")
            }
            guard n >= 2, 8 + n <= size else {
                throw fail("header length \(n) does not fit in a file of \(size) bytes")
            }
            let headerBytes = Data(bytes: m + 8, count: n)
            guard String(data: headerBytes, encoding: .utf8) != nil else { throw fail("header is not UTF-8") }
            let json: Any
            do { json = try JSONSerialization.jsonObject(with: headerBytes) } catch {
                throw fail("header is not valid JSON")
            }
            guard let obj = json as? [String: Any] else { throw fail("header is not a JSON object") }
            if let dup = duplicateTopLevelKey(headerBytes) { throw fail("header names '\(dup)' more than once") }
            let dataSize = size - 8 - n
            var meta: [String: String] = [:]
            var list: [Entry] = []
            for (name, value) in obj {
                if name == "__metadata__" {
                    guard let md = value as? [String: Any] else { throw fail("__metadata__ is not an object") }
                    for (k, v) in md {
                        guard let s = v as? String else { throw fail("__metadata__ value of '\(k)' is not a string") }
                        meta[k] = s
                    }
                    continue
                }
                guard let e = value as? [String: Any] else { throw fail("entry '\(name)' is not an object") }
                guard let ds = e["dtype"] as? String else { throw fail("entry '\(name)' has no dtype") }
                guard let dtype = SafeTensorsDType(rawValue: ds) else { throw fail("entry '\(name)' has unknown dtype '\(ds)'") }
                guard let shapeAny = e["shape"] as? [Any] else { throw fail("entry '\(name)' has no shape") }
                var shape: [Int] = []
                for d in shapeAny {
                    guard let v = exactInteger(d) else { throw fail("entry '\(name)' has an invalid shape \(shapeAny)") }
                    shape.append(v)
                }
                guard shape.count <= 8 else { throw fail("entry '\(name)' has rank \(shape.count)") }
                guard let offs = e["data_offsets"] as? [Any], offs.count == 2,
                      let begin = exactInteger(offs[0]), let end = exactInteger(offs[1]) else {
                    throw fail("entry '\(name)' has no valid data_offsets")
                }
                guard begin >= 0, begin <= end else { throw fail("entry '\(name)' has offsets [\(begin), \(end)] out of order") }
                guard end <= dataSize else {
                    throw fail("entry '\(name)' ends at byte \(end), past the \(dataSize) bytes of data")
                }
                var count = 1
                for d in shape {
                    let (r, o) = count.multipliedReportingOverflow(by: d)
                    guard !o else { throw fail("entry '\(name)' shape \(shape) overflows") }
                    count = r
                }
                let (bytes, o) = count.multipliedReportingOverflow(by: dtype.size)
                guard !o, bytes == end - begin else {
                    throw fail("entry '\(name)': shape \(shape) of \(ds) needs \(o ? -1 : bytes) bytes, offsets give \(end - begin)")
                }
                list.append(Entry(name: name, dtype: dtype, shape: shape, range: begin..<end))
            }
            list.sort { ($0.range.lowerBound, $0.range.upperBound, $0.name) < ($1.range.lowerBound, $1.range.upperBound, $1.name) }
            // The tensors tile the data section exactly: no overlap, no hole, nothing after.
            var end = 0
            for e in list {
                if e.range.lowerBound < end { throw fail("entry '\(e.name)' overlaps the tensor before it") }
                if e.range.lowerBound > end { throw fail("unused bytes \(end)..<\(e.range.lowerBound) before entry '\(e.name)'") }
                end = e.range.upperBound
            }
            if end != dataSize { throw fail("\(dataSize - end) bytes after the last tensor") }
            metadata = meta
            entries = list
            byName = Dictionary(list.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            base = m
            length = size
            dataStart = 8 + n
        } catch {
            munmap(m, size)
            throw error
        }
    }

    deinit { if let base { munmap(base, length) } }

    public var names: [String] { entries.map(\.name) }

    public func entry(_ name: String) -> Entry? { byName[name] }

    /// The tensor `name` as Float32 (integers and booleans converted).
    public func tensor(_ name: String) throws -> Tensor {
        guard let e = byName[name] else { throw SafeTensorsError(file: url.path, reason: "no tensor named '\(name)'") }
        guard e.shape.count <= 5 else {
            throw SafeTensorsError(file: url.path, reason: "tensor '\(name)' has rank \(e.shape.count); at most 5 dimensions are supported")
        }
        let t = Tensor.uninitialized(e.shape)  // every element written below
        let src = UnsafeRawPointer(base!) + dataStart + e.range.lowerBound
        let n = t.count, dst = t.data
        switch e.dtype {
        case .F32: for i in 0..<n { dst[i] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
        case .F16: for i in 0..<n { dst[i] = Float(Float16(bitPattern: UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))) }
        case .BF16: for i in 0..<n { dst[i] = Float(bitPattern: UInt32(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16) }
        case .F64: for i in 0..<n { dst[i] = Float(Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
        case .I64: for i in 0..<n { dst[i] = Float(Int64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
        case .I32: for i in 0..<n { dst[i] = Float(Int32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) }
        case .I16: for i in 0..<n { dst[i] = Float(Int16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))) }
        case .I8: for i in 0..<n { dst[i] = Float(src.load(fromByteOffset: i, as: Int8.self)) }
        case .U8, .BOOL: for i in 0..<n { dst[i] = Float(src.load(fromByteOffset: i, as: UInt8.self)) }
        }
        releasePages(dataStart + e.range.lowerBound, dataStart + e.range.upperBound)
        return t
    }

    /// The weight `name` as Float32: a float dtype (F32, F16, BF16, F64; integers here are a
    /// relabelled or foreign file) and every value finite, else an error naming the tensor.
    public func weight(_ name: String) throws -> Tensor {
        if let e = byName[name], ![.F32, .F16, .BF16, .F64].contains(e.dtype) {
            throw SafeTensorsError(file: url.path, reason: "tensor '\(name)' is \(e.dtype.rawValue): weights must be F32, F16, BF16 or F64")
        }
        let t = try tensor(name)
        let p = t.data
        for i in 0..<t.count where !p[i].isFinite {
            throw SafeTensorsError(file: url.path, reason: "tensor '\(name)' holds \(p[i]) at element \(i): weights must be finite")
        }
        return t
    }

    /// Loads `name` — or the `target.count` elements from `elementOffset` on (a row range) — into
    /// `target` in 16-bit form, when the file holds it as F16 or BF16; false for other dtypes.
    public func loadHalf(_ name: String, elementOffset: Int, into target: Tensor) throws -> Bool {
        guard let e = byName[name] else { throw SafeTensorsError(file: url.path, reason: "no tensor named '\(name)'") }
        let format: HalfFormat
        switch e.dtype {
        case .F16: format = .f16
        case .BF16: format = .bf16
        default: return false
        }
        precondition(elementOffset >= 0 && elementOffset + target.count <= e.shape.reduce(1, *), "loadHalf: \(name) range")
        let lo = dataStart + e.range.lowerBound + 2 * elementOffset
        // All exponent bits set: Inf or NaN, in either format.
        let exponent: UInt16 = format == .f16 ? 0x7C00 : 0x7F80
        let bits = UnsafeRawPointer(base!) + lo
        for i in 0..<target.count {
            let b = UInt16(littleEndian: bits.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
            if b & exponent == exponent {
                throw SafeTensorsError(file: url.path, reason: "tensor '\(name)' holds \(b & 0x03FF == 0 && format == .f16 || b & 0x7F == 0 && format == .bf16 ? "an infinity" : "NaN") at element \(elementOffset + i): weights must be finite")
            }
        }
        target.assignHalf(bits: UnsafeRawPointer(base!) + lo, format: format)
        releasePages(lo, lo + 2 * target.count)
        return true
    }

    /// Lets the kernel drop the mapped pages of bytes lo..<hi from this process (a tensor just
    /// copied out): a 2 GB checkpoint converted to F32 then never holds file pages and floats at
    /// once. The mapping is private and read-only, so a later read faults the file's bytes back in.
    private func releasePages(_ lo: Int, _ hi: Int) {
        guard let base, hi > lo else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = lo / page * page, end = Swift.min(length, (hi + page - 1) / page * page)
        if end > start { _ = madvise(base + start, end - start, MADV_DONTNEED) }
    }

    /// Integer tensors exactly (class labels are I64 as torch saves them).
    public func integers(_ name: String) throws -> [Int] {
        guard let e = byName[name] else { throw SafeTensorsError(file: url.path, reason: "no tensor named '\(name)'") }
        let src = UnsafeRawPointer(base!) + dataStart + e.range.lowerBound
        let n = e.shape.reduce(1, *)
        switch e.dtype {
        case .I64: return (0..<n).map { Int(Int64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self))) }
        case .I32: return (0..<n).map { Int(Int32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) }
        case .I16: return (0..<n).map { Int(Int16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * $0, as: Int16.self))) }
        case .I8: return (0..<n).map { Int(src.load(fromByteOffset: $0, as: Int8.self)) }
        case .U8, .BOOL: return (0..<n).map { Int(src.load(fromByteOffset: $0, as: UInt8.self)) }
        default:
            let t = try tensor(name)
            return try t.scalars.map { v in
                guard v.rounded() == v, Swift.abs(v) < 1e15 else {
                    throw SafeTensorsError(file: url.path, reason: "tensor '\(name)' holds non-integer \(v)")
                }
                return Int(v)
            }
        }
    }

    /// Every tensor, by name.
    public func all() throws -> [String: Tensor] {
        var d: [String: Tensor] = [:]
        for e in entries { d[e.name] = try tensor(e.name) }
        return d
    }
}

/// The first top-level key of a JSON object that occurs twice (JSONSerialization keeps the last
/// silently). Keys are compared as written, escapes included.
private func duplicateTopLevelKey(_ data: Data) -> String? {
    let b = [UInt8](data)
    var i = 0, depth = 0
    var seen = Set<[UInt8]>()
    var expectKey = false
    while i < b.count {
        let c = b[i]
        if c == UInt8(ascii: "\"") {
            let start = i + 1
            i += 1
            while i < b.count && b[i] != UInt8(ascii: "\"") { i += b[i] == UInt8(ascii: "\\") ? 2 : 1 }
            if depth == 1 && expectKey {
                let key = Array(b[start..<Swift.min(i, b.count)])
                if !seen.insert(key).inserted { return String(decoding: key, as: UTF8.self) }
                expectKey = false
            }
        } else if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") {
            depth += 1
            if depth == 1 { expectKey = true }
        } else if c == UInt8(ascii: "}") || c == UInt8(ascii: "]") {
            depth -= 1
        } else if c == UInt8(ascii: ",") && depth == 1 {
            expectKey = true
        }
        i += 1
    }
    return nil
}

/// A non-negative integer below 2^53 from a JSON number, else nil.
private func exactInteger(_ v: Any) -> Int? {
    guard let n = v as? NSNumber else { return nil }
    let d = n.doubleValue
    guard d >= 0, d < 9_007_199_254_740_992, d.rounded() == d else { return nil }
    return Int(d)
}

public enum SafeTensors {
    /// Writes `tensors` as F32 or F16 (atomically). Names sorted; header padded to 8 bytes.
    public static func write(_ tensors: [String: Tensor], to url: URL, dtype: SafeTensorsDType = .F32,
                             metadata: [String: String] = [:]) throws {
        precondition(dtype == .F32 || dtype == .F16, "safetensors write supports F32 and F16, not \(dtype)")
        let names = tensors.keys.sorted()
        var header = "{"
        var parts: [String] = []
        if !metadata.isEmpty {
            let md = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }.joined(separator: ",")
            parts.append("\"__metadata__\":{\(md)}")
        }
        var offset = 0
        for n in names {
            let t = tensors[n]!
            let bytes = t.count * dtype.size
            parts.append("\(jsonString(n)):{\"dtype\":\"\(dtype.rawValue)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}")
            offset += bytes
        }
        header += parts.joined(separator: ",") + "}"
        var headerData = Data(header.utf8)
        while headerData.count % 8 != 0 { headerData.append(0x20) }
        try AtomicFile.write(to: url) { h in
            var len = UInt64(headerData.count).littleEndian
            try h.write(contentsOf: Data(bytes: &len, count: 8))
            try h.write(contentsOf: headerData)
            for n in names {
                let t = tensors[n]!.materialized()  // 16-bit weights widened (exact), then written
                var out = Data(count: t.count * dtype.size)
                out.withUnsafeMutableBytes { raw in
                    for i in 0..<t.count {
                        if dtype == .F32 {
                            raw.storeBytes(of: t.data[i].bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self)
                        } else {
                            raw.storeBytes(of: Float16(t.data[i]).bitPattern.littleEndian, toByteOffset: 2 * i, as: UInt16.self)
                        }
                    }
                }
                try h.write(contentsOf: out)
            }
        }
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }
}
