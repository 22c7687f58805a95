import Foundation
import Media
import NN

/// A captioned folder of media files in the convention of Hugging Face datasets' `imagefolder`
/// and `audiofolder` (and so of diffusers' text-to-image training scripts):
///
///     DIR/metadata.jsonl   one JSON object a line: {"file_name": "a.png", "text": "a red apple", ...}
///     DIR/metadata.csv     or a CSV table whose header names file_name and text (RFC 4180 quoting)
///     DIR/a.png ...        the files, named relative to DIR (subfolders allowed)
///
/// Columns other than `file_name` and the caption are kept as strings (numbers and booleans in
/// their JSON spelling, null as ""). Every problem is a `MediaError` naming the metadata file and
/// its line: a line that is not a JSON object, a missing or non-string `file_name`/caption, a
/// file that does not exist, a name leaving the folder, a name listed twice. Sizes are bounded
/// before reading (`maxMetadataBytes`, `maxItems`).
public struct CaptionFolder: Sendable {
    /// One captioned file.
    public struct Item: Sendable, Equatable {
        public var url: URL
        /// `file_name` as written in the metadata.
        public var fileName: String
        public var text: String
        /// The other columns.
        public var columns: [String: String]
        /// 1-based line of the metadata file the item came from.
        public var line: Int
    }

    public let root: URL
    /// The metadata file read (metadata.jsonl or metadata.csv).
    public let metadata: URL
    public let items: [Item]

    public static let maxMetadataBytes = 1 << 30
    public static let maxItems = 10_000_000

    /// - Parameters:
    ///   - textColumn: the caption's column (diffusers' `--caption_column`, "text" by default).
    ///   - extensions: lower-case extensions the files must have (e.g. ["png"]); nil: any.
    ///   - checkFiles: whether every named file must exist (a metadata file describing files
    ///     elsewhere, like holdout.jsonl next to a holdout/ folder, resolves against `root`).
    public init(_ root: URL, metadata: URL? = nil, textColumn: String = "text", extensions: Set<String>? = nil,
                checkFiles: Bool = true) throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: root.path, isDirectory: &isDir), isDir.boolValue else {
            throw MediaError.cannotOpen(file: root.path, reason: "not a folder")
        }
        let jsonl = root.appendingPathComponent("metadata.jsonl"), csv = root.appendingPathComponent("metadata.csv")
        let file: URL
        if let metadata {
            file = metadata
        } else {
            switch (fm.fileExists(atPath: jsonl.path), fm.fileExists(atPath: csv.path)) {
            case (true, false): file = jsonl
            case (false, true): file = csv
            case (true, true):
                throw MediaError.invalidData(file: root.path, reason: "has both metadata.jsonl and metadata.csv; keep one")
            case (false, false):
                throw MediaError.cannotOpen(file: jsonl.path, reason: "no metadata.jsonl or metadata.csv (lines of {\"file_name\": ..., \"\(textColumn)\": ...}) in the folder")
            }
        }
        let size = ((try? fm.attributesOfItem(atPath: file.path))?[.size] as? NSNumber)?.intValue
        guard let size, let data = fm.contents(atPath: file.path) else {
            throw MediaError.cannotOpen(file: file.path, reason: "no readable file at this path")
        }
        guard size <= Self.maxMetadataBytes, data.count <= Self.maxMetadataBytes else {
            throw MediaError.limitExceeded(file: file.path, reason: "\(data.count) bytes, more than the \(Self.maxMetadataBytes) a metadata file may have")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw MediaError.invalidData(file: file.path, reason: "not UTF-8 text")
        }
        let rows = file.pathExtension.lowercased() == "csv"
            ? try Self.csvRows(text, file: file.path)
            : try Self.jsonRows(text, textColumn: textColumn, file: file.path)
        var seen: [String: Int] = [:]
        var items: [Item] = []
        for (line, row) in rows {
            let bad = { (reason: String) in MediaError.invalidData(file: file.path, reason: "line \(line): \(reason)") }
            guard var name = row["file_name"], !name.isEmpty else { throw bad("no \"file_name\"") }
            guard let caption = row[textColumn] else { throw bad("no \"\(textColumn)\" caption") }
            if name.hasPrefix("./") { name.removeFirst(2) }
            guard !name.hasPrefix("/"), !name.split(separator: "/").contains("..") else {
                throw bad("file_name \"\(name)\" leaves the folder (absolute or with ..)")
            }
            if let extensions, !extensions.contains((name as NSString).pathExtension.lowercased()) {
                throw bad("file_name \"\(name)\" is not a .\(extensions.sorted().joined(separator: "/."))")
            }
            if let first = seen[name] { throw bad("file_name \"\(name)\" is listed again (first on line \(first))") }
            seen[name] = line
            let url = root.appendingPathComponent(name)
            if checkFiles && !fm.isReadableFile(atPath: url.path) {
                throw bad("no readable file \(url.path)")
            }
            var columns = row
            columns["file_name"] = nil
            columns[textColumn] = nil
            items.append(Item(url: url, fileName: name, text: caption, columns: columns, line: line))
        }
        guard !items.isEmpty else { throw MediaError.invalidData(file: file.path, reason: "no items") }
        self.root = root
        self.metadata = file
        self.items = items
    }

    public var count: Int { items.count }
    public var captions: [String] { items.map(\.text) }

    /// The values of column `name` (e.g. "group"), "" where an item lacks it; nil when no item has it.
    public func column(_ name: String) -> [String]? {
        guard items.contains(where: { $0.columns[name] != nil }) else { return nil }
        return items.map { $0.columns[name] ?? "" }
    }

    // MARK: Reading

    /// (line, columns) of each non-blank line of a JSON Lines file.
    static func jsonRows(_ text: String, textColumn: String = "text", file: String) throws -> [(Int, [String: String])] {
        var rows: [(Int, [String: String])] = []
        var lineNumber = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            guard rows.count < maxItems else {
                throw MediaError.limitExceeded(file: file, reason: "more than \(maxItems) lines")
            }
            let object: [String: MetadataValue]
            do {
                object = try JSONDecoder().decode([String: MetadataValue].self, from: Data(trimmed.utf8))
            } catch {
                let isJSON = (try? JSONDecoder().decode(JSONValue.self, from: Data(trimmed.utf8))) != nil
                throw MediaError.invalidData(file: file, reason: "line \(lineNumber): " + (isJSON ? "not a JSON object" : "not JSON (\(trimmed.prefix(60)))"))
            }
            for key in ["file_name", textColumn] {
                if let value = object[key], !value.isString {
                    throw MediaError.invalidData(file: file, reason: "line \(lineNumber): \"\(key)\" is not a string")
                }
            }
            let row = object.mapValues(\.text)
            rows.append((lineNumber, row))
        }
        return rows
    }

    /// (line, columns) of each record of a CSV file with a header row (RFC 4180: fields in
    /// double quotes may hold commas, newlines and "" for a quote; a UTF-8 BOM is skipped).
    /// The line is where the record starts.
    static func csvRows(_ text: String, file: String) throws -> [(Int, [String: String])] {
        var records: [(Int, [String])] = []
        var field = "", record: [String] = []
        // inQuotes: inside "..."; quotedField: the field began with a quote; closed: just after its closing quote.
        var inQuotes = false, quotedField = false, closed = false
        var line = 1, recordLine = 1
        func endField() { record.append(field); field = ""; quotedField = false; closed = false }
        func endRecord() throws {
            let blank = record.isEmpty && field.isEmpty && !quotedField
            endField()
            if !blank { records.append((recordLine, record)) }
            record = []
            guard records.count <= maxItems + 1 else {
                throw MediaError.limitExceeded(file: file, reason: "more than \(maxItems) rows")
            }
        }
        var scalars = Substring(text).unicodeScalars[...]
        if scalars.first == "\u{FEFF}" { scalars = scalars.dropFirst() }
        // Unicode scalars, not Characters: "\r\n" is one Character in Swift.
        for c in scalars {
            if inQuotes {
                if c == "\"" { inQuotes = false; closed = true } else {
                    if c == "\n" { line += 1 }
                    field.unicodeScalars.append(c)
                }
                continue
            }
            switch c {
            case "\"":
                if closed { field += "\""; inQuotes = true; closed = false }  // "" inside quotes
                else if field.isEmpty && !quotedField { inQuotes = true; quotedField = true }
                else { throw MediaError.invalidData(file: file, reason: "line \(line): stray quote inside an unquoted field") }
            case ",": endField()
            case "\r": continue
            case "\n":
                try endRecord()
                line += 1
                recordLine = line
            default:
                if closed { throw MediaError.invalidData(file: file, reason: "line \(line): text after a closing quote") }
                field.unicodeScalars.append(c)
            }
        }
        if inQuotes { throw MediaError.invalidData(file: file, reason: "line \(recordLine): quoted field never closed") }
        try endRecord()
        guard let header = records.first else { throw MediaError.invalidData(file: file, reason: "empty: no header row") }
        guard Set(header.1).count == header.1.count else {
            throw MediaError.invalidData(file: file, reason: "line 1: a column name appears twice in the header")
        }
        return try records.dropFirst().map { (recordLine, fields) in
            guard fields.count == header.1.count else {
                throw MediaError.invalidData(file: file, reason: "line \(recordLine): \(fields.count) fields, the header has \(header.1.count)")
            }
            return (recordLine, Dictionary(uniqueKeysWithValues: zip(header.1, fields)))
        }
    }

    // MARK: Writing

    /// One metadata.jsonl line (no newline) with the keys in the given order, e.g.
    /// `{"file_name": "1f34e.png", "text": "red apple"}`. Strings are written as UTF-8 with
    /// only quotes, backslashes and control characters escaped.
    public static func jsonLine(_ fields: [(key: String, value: String)]) -> String {
        "{" + fields.map { "\(quoted($0.key)): \(quoted($0.value))" }.joined(separator: ", ") + "}"
    }

    static func quoted(_ s: String) -> String {
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

/// A metadata value as text: strings as they are, null as "", numbers and booleans and nested
/// values in their JSON spelling (keys sorted).
private enum MetadataValue: Decodable {
    case string(String)
    case other(String)

    var isString: Bool { if case .string = self { return true } else { return false } }
    var text: String { switch self { case .string(let s), .other(let s): return s } }

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .other(""); return }
        if let s = try? c.decode(String.self) { self = .string(s); return }
        let value = try c.decode(JSONValue.self)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        self = .other(String(decoding: try encoder.encode(value), as: UTF8.self))
    }
}
