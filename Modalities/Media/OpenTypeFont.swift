import Foundation

/// A read-only OpenType font file, parsed only as far as colour bitmap glyphs need: the table
/// directory, `maxp`'s glyph count, `cmap` (code point → glyph), `GSUB` ligatures (code point
/// sequences → glyph) and the `CBLC`/`CBDT` colour bitmaps (glyph → embedded PNG), as in Google's
/// Noto Color Emoji. Spec: OpenType 1.9, https://learn.microsoft.com/typography/opentype/spec/.
///
/// Every read is bounds-checked against its table: a truncated or hostile file is a
/// `MediaError` naming the file, the table and the offset, never a trap, and no allocation is
/// sized by a header field before the bytes it describes are known to exist.
public struct OpenTypeFont: Sendable {
    /// The file's path (what errors name).
    public let name: String
    let bytes: [UInt8]
    /// Table tag → its byte range in the file.
    public let tables: [String: Range<Int>]
    /// Number of glyphs (`maxp`).
    public let glyphCount: Int

    /// Largest font file we read (Noto Color Emoji is 11 MB).
    public static let maxFileSize = 1 << 30

    public init(contentsOf url: URL) throws {
        let attributes = try? FileManager.default.attributesOfItem(atPath: url.path)
        guard let size = (attributes?[.size] as? NSNumber)?.intValue, FileManager.default.isReadableFile(atPath: url.path) else {
            throw MediaError.cannotOpen(file: url.path, reason: "no readable file at this path")
        }
        guard size <= Self.maxFileSize else {
            throw MediaError.limitExceeded(file: url.path, reason: "\(size) bytes, more than the \(Self.maxFileSize) a font may have")
        }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw MediaError.cannotOpen(file: url.path, reason: error.localizedDescription)
        }
        try self.init(bytes: [UInt8](data), name: url.path)
    }

    /// Parses the table directory and `maxp` of a font held in memory.
    /// - Parameter name: what errors name (the file the bytes came from).
    public init(bytes: [UInt8], name: String) throws {
        self.name = name
        self.bytes = bytes
        let file = Reader(bytes: bytes, range: 0..<bytes.count, table: "header", file: name)
        let version = try file.u32(0)
        // 0x00010000: TrueType outlines, 'OTTO': CFF, 'true': Apple TrueType.
        guard version == 0x0001_0000 || version == 0x4F54_544F || version == 0x7472_7565 else {
            throw MediaError.invalidData(file: name, reason: String(format: "not an OpenType font (version tag 0x%08X)", version))
        }
        let count = try file.u16(4)
        var tables: [String: Range<Int>] = [:]
        for i in 0..<count {
            let record = 12 + 16 * i
            let tag = try file.tag(record)
            let offset = try file.u32(record + 8), length = try file.u32(record + 12)
            guard offset <= bytes.count, length <= bytes.count - offset else {
                throw MediaError.invalidData(file: name, reason: "table '\(tag)' (offset \(offset), \(length) bytes) runs past the end of the \(bytes.count)-byte file")
            }
            tables[tag] = offset..<(offset + length)
        }
        self.tables = tables
        let maxp = try Reader(font: bytes, tables: tables, tag: "maxp", file: name)
        glyphCount = try maxp.u16(4)
    }

    /// The bytes of table `tag` as a bounds-checked reader.
    func table(_ tag: String) throws -> Reader { try Reader(font: bytes, tables: tables, tag: tag, file: name) }

    // MARK: cmap

    /// Unicode code point → glyph id, from the best Unicode subtable: format 12 (platform 3
    /// encoding 10, or platform 0) when present, else format 4 (BMP only). Ranges are clipped to
    /// U+10FFFF and glyph ids to the font's glyph count.
    public func characterMap() throws -> [UInt32: Int] {
        let cmap = try table("cmap")
        let count = try cmap.u16(2)
        var format12: Int? = nil, format4: Int? = nil
        for i in 0..<count {
            let platform = try cmap.u16(4 + 8 * i), encoding = try cmap.u16(6 + 8 * i)
            let offset = try cmap.u32(8 + 8 * i)
            let unicode = platform == 0 || (platform == 3 && (encoding == 1 || encoding == 10))
            guard unicode else { continue }
            switch try cmap.u16(offset) {
            case 12 where format12 == nil: format12 = offset
            case 4 where format4 == nil: format4 = offset
            default: break
            }
        }
        var map: [UInt32: Int] = [:]
        // Overlapping ranges could make a small hostile table loop for hours: the code points
        // visited in all are bounded by twice what Unicode (or the BMP, for format 4) holds.
        var visited = 0
        func visit(_ n: Int) throws {
            visited += n
            guard visited <= 0x220000 else {
                throw MediaError.invalidData(file: name, reason: "cmap ranges cover more code points than Unicode has")
            }
        }
        if let at = format12 {
            let groups = try cmap.u32(at + 12)
            try cmap.need(at + 16, 12 * groups, "cmap format 12 groups")
            for g in 0..<groups {
                let base = at + 16 + 12 * g
                let start = try cmap.u32(base), end = Swift.min(try cmap.u32(base + 4), 0x10FFFF)
                let first = try cmap.u32(base + 8)
                guard start <= end else { continue }
                try visit(end - start + 1)
                for cp in start...end where first + (cp - start) < glyphCount && first + (cp - start) > 0 {
                    map[UInt32(cp)] = first + (cp - start)
                }
            }
        } else if let at = format4 {
            let segments = try cmap.u16(at + 6) / 2
            let ends = at + 14, starts = ends + 2 * segments + 2
            let deltas = starts + 2 * segments, rangeOffsets = deltas + 2 * segments
            try cmap.need(at, rangeOffsets + 2 * segments - at, "cmap format 4 segments")
            for s in 0..<segments {
                let start = try cmap.u16(starts + 2 * s), end = try cmap.u16(ends + 2 * s)
                let delta = try cmap.u16(deltas + 2 * s), rangeOffset = try cmap.u16(rangeOffsets + 2 * s)
                guard start <= end else { continue }
                try visit(end - start + 1)
                for cp in start...end where cp != 0xFFFF {
                    var glyph: Int
                    if rangeOffset == 0 {
                        glyph = (cp + delta) & 0xFFFF
                    } else {
                        // idRangeOffset counts bytes from its own slot into glyphIdArray.
                        glyph = try cmap.u16(rangeOffsets + 2 * s + rangeOffset + 2 * (cp - start))
                        if glyph != 0 { glyph = (glyph + delta) & 0xFFFF }
                    }
                    if glyph > 0 && glyph < glyphCount { map[UInt32(cp)] = glyph }
                }
            }
        } else {
            throw MediaError.unsupported(file: name, reason: "cmap has no Unicode subtable of format 4 or 12")
        }
        return map
    }

    // MARK: GSUB ligatures

    /// Most ligatures read from a GSUB table (Noto Color Emoji has about 4,000; offsets shared
    /// between sets could otherwise make a small file describe billions).
    public static let maxLigatures = 1 << 20

    /// One ligature lookup: first glyph → its ligatures in the font's order of preference.
    public typealias LigatureLookup = [Int: [(components: [Int], glyph: Int)]]

    /// The ligature substitutions (lookup type 4, also behind extension lookups of type 7) of
    /// every lookup a feature uses, in lookup-list order (the order a shaper applies them).
    /// Lookups of other types are left out: a contextual lookup that only supplies a fallback
    /// glyph (Noto's "unknown flag") is not something to draw. Empty when there is no GSUB.
    public func ligatureLookups() throws -> [LigatureLookup] {
        guard tables["GSUB"] != nil else { return [] }
        let gsub = try table("GSUB")
        let featureList = try gsub.u16(6), lookupList = try gsub.u16(8)
        var used = Set<Int>()
        let features = try gsub.u16(featureList)
        for f in 0..<features {
            let feature = featureList + (try gsub.u16(featureList + 2 + 6 * f + 4))
            let n = try gsub.u16(feature + 2)
            for k in 0..<n { used.insert(try gsub.u16(feature + 4 + 2 * k)) }
        }
        let lookupCount = try gsub.u16(lookupList)
        var result: [LigatureLookup] = []
        var budget = Self.maxLigatures
        for index in used.sorted() where index < lookupCount {
            let lookup = lookupList + (try gsub.u16(lookupList + 2 + 2 * index))
            let type = try gsub.u16(lookup)
            let subtables = try gsub.u16(lookup + 4)
            var ligatures: LigatureLookup = [:]
            var any = false
            for s in 0..<subtables {
                var subtable = lookup + (try gsub.u16(lookup + 6 + 2 * s))
                var subtype = type
                if type == 7 {  // extension: format, real type, 32-bit offset
                    subtype = try gsub.u16(subtable + 2)
                    subtable += try gsub.u32(subtable + 4)
                }
                guard subtype == 4 else { continue }
                any = true
                try readLigatures(gsub, at: subtable, into: &ligatures, budget: &budget)
            }
            if any { result.append(ligatures) }
        }
        return result
    }

    /// A ligature substitution subtable (format 1): coverage glyph i ↔ ligature set i.
    private func readLigatures(_ gsub: Reader, at subtable: Int, into ligatures: inout LigatureLookup,
                               budget: inout Int) throws {
        guard try gsub.u16(subtable) == 1 else {
            throw MediaError.invalidData(file: name, reason: "GSUB ligature subtable at \(subtable) has format \(try gsub.u16(subtable)), not 1")
        }
        let covered = try coverage(gsub, at: subtable + (try gsub.u16(subtable + 2)))
        let setCount = try gsub.u16(subtable + 4)
        for (i, first) in covered.enumerated() where i < setCount {
            let set = subtable + (try gsub.u16(subtable + 6 + 2 * i))
            let n = try gsub.u16(set)
            budget -= n
            guard budget >= 0 else {
                throw MediaError.limitExceeded(file: name, reason: "GSUB holds more than \(Self.maxLigatures) ligatures")
            }
            for k in 0..<n {
                let ligature = set + (try gsub.u16(set + 2 + 2 * k))
                let glyph = try gsub.u16(ligature)
                let componentCount = try gsub.u16(ligature + 2)
                guard componentCount >= 1 else { continue }
                try gsub.need(ligature + 4, 2 * (componentCount - 1), "ligature components")
                let components = try (0..<(componentCount - 1)).map { try gsub.u16(ligature + 4 + 2 * $0) }
                ligatures[first, default: []].append((components, glyph))
            }
        }
    }

    /// The glyphs of a coverage table in coverage-index order (formats 1 and 2).
    private func coverage(_ r: Reader, at offset: Int) throws -> [Int] {
        switch try r.u16(offset) {
        case 1:
            let n = try r.u16(offset + 2)
            try r.need(offset + 4, 2 * n, "coverage glyphs")
            return try (0..<n).map { try r.u16(offset + 4 + 2 * $0) }
        case 2:
            let n = try r.u16(offset + 2)
            try r.need(offset + 4, 6 * n, "coverage ranges")
            var glyphs: [Int] = []
            for k in 0..<n {
                let start = try r.u16(offset + 4 + 6 * k), end = try r.u16(offset + 6 + 6 * k)
                let index = try r.u16(offset + 8 + 6 * k)
                guard start <= end, index == glyphs.count else {
                    throw MediaError.invalidData(file: name, reason: "GSUB coverage range \(k) at \(offset) is out of order")
                }
                glyphs += Array(start...end)
            }
            return glyphs
        case let f:
            throw MediaError.invalidData(file: name, reason: "GSUB coverage table at \(offset) has format \(f)")
        }
    }

    // MARK: CBLC / CBDT colour bitmaps

    /// Where one glyph's bitmap lives in `CBDT`, and in which image format.
    public struct BitmapLocation: Sendable, Equatable {
        public var imageFormat: Int
        public var range: Range<Int>
    }

    /// The colour bitmap index of the strike with the most pixels per em (`CBLC` version 3):
    /// glyph id → location in `CBDT`. Index subtables of formats 1 and 3 (offset arrays) are
    /// read; glyphs under other index formats are returned in `unsupported` with the reason.
    public func colorBitmapIndex() throws -> (ppem: Int, glyphs: [Int: BitmapLocation], unsupported: [Int: String]) {
        let cblc = try table("CBLC")
        let cbdt = try table("CBDT")
        let major = try cblc.u16(0)
        guard major == 3 || major == 2 else {
            throw MediaError.unsupported(file: name, reason: "CBLC version \(major), expected 3")
        }
        let sizes = try cblc.u32(4)
        try cblc.need(8, 48 * sizes, "CBLC bitmap size records")
        guard sizes >= 1 else { throw MediaError.invalidData(file: name, reason: "CBLC has no bitmap strikes") }
        var best = 0, bestPPEM = -1
        for s in 0..<sizes {
            let ppem = try cblc.u8(8 + 48 * s + 45)
            if ppem > bestPPEM { best = s; bestPPEM = ppem }
        }
        let record = 8 + 48 * best
        let arrayOffset = try cblc.u32(record), subtableCount = try cblc.u32(record + 8)
        try cblc.need(arrayOffset, 8 * subtableCount, "CBLC index subtable array")
        var glyphs: [Int: BitmapLocation] = [:], unsupported: [Int: String] = [:]
        var covered = 0
        for k in 0..<subtableCount {
            let entry = arrayOffset + 8 * k
            let first = try cblc.u16(entry), last = try cblc.u16(entry + 2)
            let header = arrayOffset + (try cblc.u32(entry + 4))
            guard first <= last else {
                throw MediaError.invalidData(file: name, reason: "CBLC index subtable \(k) covers glyphs \(first)...\(last)")
            }
            covered += last - first + 1
            guard covered <= 2 * 65536 else {
                throw MediaError.invalidData(file: name, reason: "CBLC index subtables cover more glyphs than a font can have")
            }
            let indexFormat = try cblc.u16(header), imageFormat = try cblc.u16(header + 2)
            let imageData = try cblc.u32(header + 4)
            let n = last - first + 1
            let offsets: [Int]
            switch indexFormat {
            case 1:
                try cblc.need(header + 8, 4 * (n + 1), "CBLC index format 1 offsets")
                offsets = try (0...n).map { try cblc.u32(header + 8 + 4 * $0) }
            case 3:
                try cblc.need(header + 8, 2 * (n + 1), "CBLC index format 3 offsets")
                offsets = try (0...n).map { try cblc.u16(header + 8 + 2 * $0) }
            default:
                for g in first...last { unsupported[g] = "bitmap index format \(indexFormat)" }
                continue
            }
            for i in 0..<n {
                let start = imageData + offsets[i], end = imageData + offsets[i + 1]
                guard end > start else { continue }  // no bitmap for this glyph
                guard end <= cbdt.range.count else {
                    throw MediaError.invalidData(file: name, reason: "glyph \(first + i)'s bitmap (CBDT bytes \(start)..<\(end)) runs past the \(cbdt.range.count)-byte CBDT table")
                }
                glyphs[first + i] = BitmapLocation(imageFormat: imageFormat, range: start..<end)
            }
        }
        return (bestPPEM, glyphs, unsupported)
    }

    /// The PNG bytes of a glyph's colour bitmap (image formats 17, 18 and 19: small metrics,
    /// big metrics, metrics in CBLC; each followed by a 32-bit length and the PNG).
    public func pngData(_ location: BitmapLocation, glyph: Int) throws -> ArraySlice<UInt8> {
        let cbdt = try table("CBDT")
        let sub = Reader(bytes: bytes, range: (cbdt.range.lowerBound + location.range.lowerBound)..<(cbdt.range.lowerBound + location.range.upperBound),
                         table: "CBDT glyph \(glyph)", file: name)
        let lengthAt: Int
        switch location.imageFormat {
        case 17: lengthAt = 5   // smallGlyphMetrics
        case 18: lengthAt = 8   // bigGlyphMetrics
        case 19: lengthAt = 0
        default:
            throw MediaError.unsupported(file: name, reason: "glyph \(glyph): bitmap image format \(location.imageFormat) is not PNG (17/18/19)")
        }
        let length = try sub.u32(lengthAt)
        try sub.need(lengthAt + 4, length, "PNG data")
        let start = sub.range.lowerBound + lengthAt + 4
        return bytes[start..<(start + length)]
    }
}

extension OpenTypeFont {
    /// Bounds-checked big-endian reads within one table; offsets are relative to the table.
    struct Reader {
        let bytes: [UInt8]
        let range: Range<Int>
        let table: String
        let file: String

        init(bytes: [UInt8], range: Range<Int>, table: String, file: String) {
            self.bytes = bytes
            self.range = range
            self.table = table
            self.file = file
        }

        init(font bytes: [UInt8], tables: [String: Range<Int>], tag: String, file: String) throws {
            guard let range = tables[tag] else {
                throw MediaError.unsupported(file: file, reason: "no '\(tag)' table")
            }
            self.init(bytes: bytes, range: range, table: tag, file: file)
        }

        /// Throws unless `count` bytes from `offset` lie inside the table.
        func need(_ offset: Int, _ count: Int, _ what: String) throws {
            guard offset >= 0, count >= 0, offset <= range.count, count <= range.count - offset else {
                throw MediaError.invalidData(file: file, reason: "truncated '\(table)' table: \(what) at offset \(offset) needs \(count) bytes, the table has \(range.count)")
            }
        }

        func u8(_ offset: Int) throws -> Int {
            try need(offset, 1, "a byte")
            return Int(bytes[range.lowerBound + offset])
        }

        func u16(_ offset: Int) throws -> Int {
            try need(offset, 2, "a 16-bit field")
            let p = range.lowerBound + offset
            return Int(bytes[p]) << 8 | Int(bytes[p + 1])
        }

        func u32(_ offset: Int) throws -> Int {
            try need(offset, 4, "a 32-bit field")
            let p = range.lowerBound + offset
            return Int(bytes[p]) << 24 | Int(bytes[p + 1]) << 16 | Int(bytes[p + 2]) << 8 | Int(bytes[p + 3])
        }

        func tag(_ offset: Int) throws -> String {
            try need(offset, 4, "a tag")
            let p = range.lowerBound + offset
            return String(decoding: bytes[p..<(p + 4)], as: UTF8.self)
        }
    }
}

/// Maps code point sequences to single glyphs the way a shaper would for emoji: each code point
/// through `cmap`, then the font's ligature lookups in order, each replacing, left to right, the
/// first of its ligatures that matches at a position (no mark skipping: colour emoji fonts set
/// no lookup flags). Variation selectors the font has no glyph for (U+FE0E, U+FE0F) are dropped
/// first, as shapers hide them; Noto's ligatures are spelled without them.
public struct GlyphSequenceMap: Sendable {
    public let characterMap: [UInt32: Int]
    public let lookups: [OpenTypeFont.LigatureLookup]

    public init(_ font: OpenTypeFont) throws {
        characterMap = try font.characterMap()
        lookups = try font.ligatureLookups()
    }

    /// The one glyph the sequence becomes, or why it does not become one.
    public enum Result: Equatable, Sendable {
        case glyph(Int)
        /// A code point with no glyph of its own.
        case missing(UInt32)
        /// The ligatures leave more than one glyph.
        case noLigature(glyphs: Int)
    }

    public func glyph(for codePoints: [UInt32]) -> Result {
        var glyphs: [Int] = []
        for cp in codePoints {
            if let g = characterMap[cp] {
                glyphs.append(g)
            } else if cp != 0xFE0F && cp != 0xFE0E {
                return .missing(cp)
            }
        }
        for lookup in lookups where glyphs.count > 1 {
            var i = 0
            while i < glyphs.count {
                if let candidates = lookup[glyphs[i]],
                   let hit = candidates.first(where: { lig in
                       i + lig.components.count < glyphs.count
                           && lig.components.indices.allSatisfy { glyphs[i + 1 + $0] == lig.components[$0] }
                   }) {
                    glyphs.replaceSubrange(i...(i + hit.components.count), with: [hit.glyph])
                }
                i += 1
            }
        }
        return glyphs.count == 1 ? .glyph(glyphs[0]) : .noLigature(glyphs: glyphs.count)
    }
}
