import Foundation

/// Any JSON value: what a config keeps for keys it does not know, to write them back.
public enum JSONValue: Codable, Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) {
            // Python's json writes ±inf and nan as bare Infinity / NaN, which Foundation rejects;
            // diffusers' `lambda_min_clipped` default is -inf, so read the strings we write back.
            switch s {
            case "-Infinity": self = .number(-.infinity)
            case "Infinity": self = .number(.infinity)
            case "NaN": self = .number(.nan)
            default: self = .string(s)
            }
        }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let d):
            if d.isInfinite { try c.encode(d < 0 ? "-Infinity" : "Infinity") }
            else if d == d.rounded(), Swift.abs(d) < 1e15 { try c.encode(Int(d)) }
            else { try c.encode(d) }
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    public var double: Double? { if case .number(let d) = self { return d }; return nil }
    public var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var string: String? { if case .string(let s) = self { return s }; return nil }
}

public struct ConfigKey: CodingKey, Hashable {
    public var stringValue: String
    public var intValue: Int? { nil }
    public init(_ s: String) { stringValue = s }
    public init?(stringValue: String) { self.stringValue = stringValue }
    public init?(intValue: Int) { nil }
}

/// An impossible or mistyped value in a config file.
public struct ConfigError: Error, CustomStringConvertible {
    public let key: String
    public let reason: String
    public init(key: String, reason: String) { self.key = key; self.reason = reason }
    public var description: String { "config key '\(key)': \(reason)" }
}

/// Ranges every model config checks its numbers against before anything is allocated: far above
/// every published diffusers model, far below what overflows an `Int` when multiplied out.
/// Within them a model can still be too big for the machine; `MemoryBudget` decides that.
public enum ConfigCheck {
    /// Channels of a block, an embedding width.
    public static let maxWidth = 16_384
    /// Down (or up) blocks of a U-Net.
    public static let maxBlocks = 16
    /// Layers in one block.
    public static let maxLayers = 64
    /// Rows of a class (or timestep) embedding.
    public static let maxEmbeddings = 1_000_000
    /// Pixels along one side of an image, samples of an audio window.
    public static let maxSide = 1 << 16, maxLength = 1 << 24

    /// `value` must lie in `range`.
    public static func int(_ key: String, _ value: Int, _ range: ClosedRange<Int>) throws {
        guard range.contains(value) else { throw ConfigError(key: key, reason: "must be in \(range.lowerBound)...\(range.upperBound), got \(value)") }
    }

    /// `value`, when present, must lie in `range`.
    public static func int(_ key: String, _ value: Int?, _ range: ClosedRange<Int>) throws {
        if let value { try int(key, value, range) }
    }

    /// Every element of `values` must lie in `range` (and there must be 1...`maxCount` of them).
    public static func ints(_ key: String, _ values: [Int], _ range: ClosedRange<Int>, maxCount: Int = maxBlocks) throws {
        guard (1...maxCount).contains(values.count), values.allSatisfy(range.contains) else {
            throw ConfigError(key: key, reason: "needs 1 to \(maxCount) values in \(range.lowerBound)...\(range.upperBound), got \(values)")
        }
    }

    /// `value` must be finite and lie in `range` (NaN never does).
    public static func float<F: BinaryFloatingPoint>(_ key: String, _ value: F, _ range: ClosedRange<F>) throws {
        guard value.isFinite, range.contains(value) else { throw ConfigError(key: key, reason: "must be in \(range.lowerBound)...\(range.upperBound), got \(value)") }
    }

    /// `value` must be finite and positive (epsilons, rates).
    public static func positive<F: BinaryFloatingPoint>(_ key: String, _ value: F) throws {
        guard value.isFinite, value > 0 else { throw ConfigError(key: key, reason: "must be a positive number, got \(value)") }
    }

    /// `value` must be finite (scales, shifts).
    public static func finite<F: BinaryFloatingPoint>(_ key: String, _ value: F) throws {
        guard value.isFinite else { throw ConfigError(key: key, reason: "must be a finite number, got \(value)") }
    }

    /// `groups` must divide each of `widths` (group norms).
    public static func groups(_ key: String, _ groups: Int, divide widths: [Int]) throws {
        for c in widths where groups < 1 || c % groups != 0 {
            throw ConfigError(key: key, reason: "\(groups) groups do not divide block width \(c)")
        }
    }
}

/// Reads a diffusers config: known keys with their defaults (a key present in the file always
/// wins), everything else kept in `remaining()` so it is written back unchanged.
public final class ConfigReader {
    private let c: KeyedDecodingContainer<ConfigKey>
    private var used = Set<String>(["_class_name", "_diffusers_version"])

    public init(_ decoder: Decoder) throws { c = try decoder.container(keyedBy: ConfigKey.self) }

    public var className: String? { try? c.decodeIfPresent(String.self, forKey: ConfigKey("_class_name")) }

    /// The value at `key`, `default` when absent or null.
    public func get<T: Decodable>(_ key: String, _ default: T) throws -> T {
        used.insert(key)
        let k = ConfigKey(key)
        guard c.contains(k), try !c.decodeNil(forKey: k) else { return `default` }
        do { return try c.decode(T.self, forKey: k) } catch {
            throw ConfigError(key: key, reason: "expected \(T.self)")
        }
    }

    /// The value at `key` when present and not null (for optional fields whose null means "none").
    public func optional<T: Decodable>(_ key: String, _ default: T? = nil) throws -> T? {
        used.insert(key)
        let k = ConfigKey(key)
        guard c.contains(k) else { return `default` }
        if try c.decodeNil(forKey: k) { return nil }
        do { return try c.decode(T.self, forKey: k) } catch {
            throw ConfigError(key: key, reason: "expected \(T.self) or null")
        }
    }

    /// Keys this reader was not asked about, with their values.
    public func remaining() throws -> [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        for k in c.allKeys where !used.contains(k.stringValue) { out[k.stringValue] = try c.decode(JSONValue.self, forKey: k) }
        return out
    }
}

/// Writes a diffusers config: `_class_name`, `_diffusers_version`, the known keys, then the
/// kept unknown ones.
public struct ConfigWriter {
    private var c: KeyedEncodingContainer<ConfigKey>

    /// The diffusers version our files claim to match.
    public static let diffusersVersion = "0.36.0"

    public init(_ encoder: Encoder, className: String, extra: [String: JSONValue]) throws {
        c = encoder.container(keyedBy: ConfigKey.self)
        try c.encode(className, forKey: ConfigKey("_class_name"))
        try c.encode(ConfigWriter.diffusersVersion, forKey: ConfigKey("_diffusers_version"))
        for (k, v) in extra { try c.encode(v, forKey: ConfigKey(k)) }
    }

    public mutating func set<T: Encodable>(_ key: String, _ value: T) throws {
        try c.encode(value, forKey: ConfigKey(key))
    }

    /// Writes null for nil (diffusers writes `null` for unset optional fields).
    public mutating func setOptional<T: Encodable>(_ key: String, _ value: T?) throws {
        if let value { try c.encode(value, forKey: ConfigKey(key)) } else { try c.encodeNil(forKey: ConfigKey(key)) }
    }
}

public enum ConfigFile {
    /// Decodes a config file, naming the file in any error.
    public static func read<T: Decodable>(_ type: T.Type, from url: URL) throws -> T {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ConfigError(key: url.lastPathComponent, reason: "cannot read \(url.path)")
        }
        do { return try JSONDecoder().decode(T.self, from: data) } catch let e as ConfigError {
            throw ConfigError(key: e.key, reason: "\(e.reason) (in \(url.path))")
        } catch {
            throw ConfigError(key: url.lastPathComponent, reason: "\(url.path) is not a valid JSON config: \(error)")
        }
    }

    /// Writes a config as pretty JSON with sorted keys (atomically). The top-level keys in
    /// `floatKeys` (default: the type's `FloatTypedConfig.floatKeys`) are written as floats.
    public static func write<T: Encodable>(_ value: T, to url: URL, floatKeys: Set<String>? = nil) throws {
        try AtomicFile.write(try jsonData(value, floatKeys: floatKeys), to: url)
    }

    /// The bytes `write` writes: pretty JSON with sorted keys, two-space indent, a final newline.
    public static func jsonData<T: Encodable>(_ value: T, floatKeys: Set<String>? = nil) throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let keys = floatKeys ?? (T.self as? FloatTypedConfig.Type)?.floatKeys ?? []
        var data = try markingFloats(enc.encode(value), keys: keys)
        data.append(0x0A)
        return data
    }

    /// Pretty-printed JSON (one top-level key per line, two-space indent, as JSONEncoder and
    /// Python's `json.dumps(indent=2)` write it) with every integral number at a top-level key of
    /// `keys` written as a float: `"initializer_factor" : 1` becomes `... : 1.0`. JSONEncoder
    /// writes 1.0 as `1`, and transformers 5's strict configs refuse an int where they type a
    /// float. Other lines are left byte for byte.
    public static func markingFloats(_ json: Data, keys: Set<String>) -> Data {
        if keys.isEmpty { return json }
        var lines = String(decoding: json, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for (i, line) in lines.enumerated() {
            guard line.hasPrefix("  \""), !line.hasPrefix("   ") else { continue }
            let rest = line.dropFirst(3)
            guard let close = rest.firstIndex(of: "\""), keys.contains(String(rest[..<close])) else { continue }
            var value = rest[rest.index(after: close)...].drop(while: { $0 == " " })
            guard value.first == ":" else { continue }
            value = value.dropFirst().drop(while: { $0 == " " })
            let comma = value.hasSuffix(",")
            let number = comma ? value.dropLast() : value
            let digits = number.first == "-" ? number.dropFirst() : number
            guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { continue }
            lines[i] = String(line.dropLast(comma ? 1 : 0)) + ".0" + (comma ? "," : "")
        }
        return Data(lines.joined(separator: "\n").utf8)
    }

    /// Rewrites bare `-Infinity`, `Infinity`, `NaN` outside strings as JSON strings
    /// (Python's json writes ±inf and nan so; Foundation's decoder rejects them).
    public static func quotingNonFiniteLiterals(_ data: Data) -> Data {
        let bytes = [UInt8](data)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 16)
        var i = 0, inString = false
        let words: [[UInt8]] = [Array("-Infinity".utf8), Array("Infinity".utf8), Array("NaN".utf8)]
        while i < bytes.count {
            let b = bytes[i]
            if inString {
                out.append(b)
                if b == UInt8(ascii: "\\"), i + 1 < bytes.count { out.append(bytes[i + 1]); i += 2; continue }
                if b == UInt8(ascii: "\"") { inString = false }
                i += 1
                continue
            }
            if b == UInt8(ascii: "\"") { inString = true; out.append(b); i += 1; continue }
            if let w = words.first(where: { i + $0.count <= bytes.count && Array(bytes[i..<i + $0.count]) == $0 }) {
                out.append(UInt8(ascii: "\"")); out.append(contentsOf: w); out.append(UInt8(ascii: "\""))
                i += w.count
                continue
            }
            out.append(b)
            i += 1
        }
        return Data(out)
    }

    /// Repairs a config file that wrote integral floats as integers (diffuse before it marked
    /// them, or any other writer): `markingFloats` on its bytes, so nothing else changes. A file
    /// that is not a pretty-printed JSON object is left as it is. Returns whether it changed.
    @discardableResult
    public static func repairFloats(at url: URL, floatKeys: Set<String>) throws -> Bool {
        let old: Data
        do { old = try Data(contentsOf: url) } catch { throw ConfigError(key: url.lastPathComponent, reason: "cannot read \(url.path)") }
        let parse = { (d: Data) in try? JSONDecoder().decode([String: JSONValue].self, from: quotingNonFiniteLiterals(d)) }
        guard let before = parse(old) else {
            throw ConfigError(key: url.lastPathComponent, reason: "\(url.path) is not a JSON object")
        }
        let new = markingFloats(old, keys: floatKeys)
        guard new != old, parse(new) == before else { return false }
        try AtomicFile.write(new, to: url)
        return true
    }
}

/// A config whose reference class (diffusers' or transformers') types some keys as `float`:
/// `ConfigFile.write` writes their values as floats (`1.0`, not `1`), as Python writes them.
public protocol FloatTypedConfig {
    static var floatKeys: Set<String> { get }
}
