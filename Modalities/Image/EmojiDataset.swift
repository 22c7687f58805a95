import Foundation
import Tensor

/// One emoji of Unicode's `emoji-test.txt`: its code points, CLDR short name, group and subgroup.
public struct EmojiEntry: Sendable, Equatable {
    public var codePoints: [UInt32]
    /// The CLDR short name: "red apple", "woman firefighter: medium skin tone", "flag: Japan".
    public var name: String
    public var group: String
    public var subgroup: String
    /// 1-based line in emoji-test.txt.
    public var line: Int

    /// "1F469 1F3FD 200D 1F692", as emoji-test.txt spells the sequence.
    public var codePointsText: String { codePoints.map { String(format: "%04X", $0) }.joined(separator: " ") }
    /// "1f469-1f3fd-200d-1f692": unique per sequence, stable across Unicode versions.
    public var fileStem: String { codePoints.map { String(format: "%04x", $0) }.joined(separator: "-") }

    /// The fully-qualified emoji of an `emoji-test.txt` (Unicode's UTS #51 test file, Debian
    /// `unicode-data`), in file order. Lines look like
    /// `1F34E ; fully-qualified # 🍎 E0.6 red apple` under `# group:` and `# subgroup:` headers.
    public static func read(emojiTest url: URL) throws -> [EmojiEntry] {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw MediaError.cannotOpen(file: url.path, reason: "no readable file at this path (Debian package unicode-data)")
        }
        guard data.count <= 64 << 20, let text = String(data: data, encoding: .utf8) else {
            throw MediaError.invalidData(file: url.path, reason: "not a UTF-8 text file of at most 64 MB")
        }
        var entries: [EmojiEntry] = []
        var group = "", subgroup = ""
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("# group:") {
                group = line.dropFirst("# group:".count).trimmingCharacters(in: .whitespaces)
                continue
            }
            if line.hasPrefix("# subgroup:") {
                subgroup = line.dropFirst("# subgroup:".count).trimmingCharacters(in: .whitespaces)
                continue
            }
            if line.isEmpty || line.hasPrefix("#") { continue }
            let bad = { (why: String) in MediaError.invalidData(file: url.path, reason: "line \(i + 1): \(why)") }
            guard let semicolon = line.firstIndex(of: ";"), let hash = line.firstIndex(of: "#"), semicolon < hash else {
                throw bad("expected 'code points ; status # emoji E<version> name'")
            }
            let status = line[line.index(after: semicolon)..<hash].trimmingCharacters(in: .whitespaces)
            guard status == "fully-qualified" else { continue }
            let codes = line[..<semicolon].split(separator: " ")
            let codePoints = codes.compactMap { UInt32($0, radix: 16) }
            guard !codePoints.isEmpty, codePoints.count == codes.count, codePoints.count <= 16,
                  codePoints.allSatisfy({ $0 <= 0x10FFFF }) else {
                throw bad("bad code points '\(line[..<semicolon])'")
            }
            // "# 🍎 E0.6 red apple": the name follows the E<version> field.
            let comment = line[line.index(after: hash)...].split(separator: " ", omittingEmptySubsequences: true)
            guard let e = comment.firstIndex(where: { $0.hasPrefix("E") && Double($0.dropFirst()) != nil }), e + 1 < comment.count else {
                throw bad("no 'E<version> name' in the comment")
            }
            let name = comment[(e + 1)...].joined(separator: " ")
            entries.append(EmojiEntry(codePoints: codePoints, name: name, group: group, subgroup: subgroup, line: i + 1))
        }
        guard !entries.isEmpty else { throw MediaError.invalidData(file: url.path, reason: "no fully-qualified emoji") }
        return entries
    }
}

/// The colour emoji of a CBDT font (Noto Color Emoji, Debian `fonts-noto-color-emoji`) as a
/// captioned image folder (`CaptionFolder`'s convention): each fully-qualified emoji of
/// emoji-test.txt whose sequence the font draws as one bitmap glyph, composited on white,
/// padded to a square (centred) and area-resized to `size`, captioned with its CLDR name.
///
///     DIR/<code points>.png         e.g. 1f34e.png, 1f469-1f3fd-200d-1f692.png (8-bit RGB)
///     DIR/metadata.jsonl            {"file_name", "text", "group", "subgroup", "codepoints"} per line
///     DIR/holdout/<code points>.png the held-out names (never trained on)
///     DIR/holdout/metadata.jsonl    their lines (file names relative to holdout/)
///     DIR/holdout.jsonl             the same lines with file names relative to DIR
///
/// Held-out rule (`isHeldOut`): an emoji is held out when a hash of its name (64-bit FNV-1a of
/// the UTF-8 name, mixed by SplitMix64's finaliser) falls in the lowest `fraction` of the 64-bit
/// range — except the first emoji of each subgroup (in emoji-test.txt order), which is always
/// trained on, so every subgroup has training images. The rule depends on the name alone: a
/// name stays held out (or not) whatever the font, the Unicode version, the size or `limit`.
///
/// Lines are in emoji-test.txt order; the output depends only on the two input files and the
/// options (same bytes on every run). The folder is written beside `DIR` under a temporary name
/// and renamed into place when complete.
public enum EmojiDataset {
    public static let defaultFont = URL(fileURLWithPath: "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
    public static let defaultEmojiTest = URL(fileURLWithPath: "/usr/share/unicode/emoji/emoji-test.txt")

    public struct Options: Sendable {
        public var font = EmojiDataset.defaultFont
        public var emojiTest = EmojiDataset.defaultEmojiTest
        /// Side of the square images written.
        public var size = 64
        public var holdoutFraction = 0.1
        /// Only the first `limit` fully-qualified emoji of emoji-test.txt (nil: all).
        public var limit: Int? = nil
        public init() {}

        public func validate() throws {
            guard (8...1024).contains(size) else {
                throw MediaError.invalidArgument(file: "--size", reason: "\(size): give 8...1024 pixels")
            }
            guard holdoutFraction >= 0, holdoutFraction < 1 else {
                throw MediaError.invalidArgument(file: "--holdout-fraction", reason: "\(holdoutFraction): give a fraction in [0, 1)")
            }
            if let limit, limit < 1 { throw MediaError.invalidArgument(file: "--limit", reason: "\(limit): give at least 1") }
        }
    }

    /// What a run wrote and what it could not.
    public struct Summary: Sendable {
        /// Training images (in metadata.jsonl) and held-out ones (in holdout/).
        public var written = 0
        public var heldOut = 0
        /// Emoji that were not written, with why.
        public var skipped: [(entry: EmojiEntry, reason: String)] = []
        /// Skip reasons with their counts, most frequent first.
        public var skippedByReason: [(reason: String, count: Int)] {
            Dictionary(grouping: skipped, by: { EmojiDataset.reasonKind($0.reason) }).map { ($0.key, $0.value.count) }
                .sorted { $0.count != $1.count ? $0.count > $1.count : $0.reason < $1.reason }
        }
    }

    /// Whether `name` is held out (see the type's documentation) when it is not the first of its subgroup.
    public static func isHeldOut(_ name: String, fraction: Double) -> Bool {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in name.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        // SplitMix64's finaliser spreads FNV's weak low bits over the whole word.
        h = (h ^ (h >> 30)) &* 0xbf58_476d_1ce4_e5b9
        h = (h ^ (h >> 27)) &* 0x94d0_49bb_1331_11eb
        h ^= h >> 31
        return Double(h >> 11) / Double(1 << 53) < fraction
    }

    /// The entries with their held-out flags (the first of each subgroup is never held out).
    public static func split(_ entries: [EmojiEntry], fraction: Double) -> [(entry: EmojiEntry, heldOut: Bool)] {
        var seen = Set<String>()
        return entries.map { e in
            let first = seen.insert(e.group + "\u{1F}" + e.subgroup).inserted
            return (e, !first && isHeldOut(e.name, fraction: fraction))
        }
    }

    /// The font's glyph bitmaps, ready to render emoji sequences.
    public struct Font: Sendable {
        public let font: OpenTypeFont
        public let sequences: GlyphSequenceMap
        public let bitmaps: [Int: OpenTypeFont.BitmapLocation]
        public let unsupported: [Int: String]

        public init(_ url: URL) throws {
            font = try OpenTypeFont(contentsOf: url)
            sequences = try GlyphSequenceMap(font)
            (_, bitmaps, unsupported) = try font.colorBitmapIndex()
        }

        /// The emoji's bitmap (8-bit RGBA or whatever the PNG holds), or why there is none.
        public func pixels(_ codePoints: [UInt32]) -> Result<Pixels, SkipReason> {
            let glyph: Int
            switch sequences.glyph(for: codePoints) {
            case .glyph(let g): glyph = g
            case .missing(let cp): return .failure(SkipReason(String(format: "code point U+%04X not in the font's cmap", cp)))
            case .noLigature(let n): return .failure(SkipReason("no ligature: the sequence stays \(n) glyphs"))
            }
            guard let location = bitmaps[glyph] else {
                return .failure(SkipReason(unsupported[glyph].map { "glyph \(glyph): \($0)" } ?? "glyph \(glyph) has no colour bitmap"))
            }
            do {
                let png = try font.pngData(location, glyph: glyph)
                return .success(try png.withUnsafeBytes {
                    try PNGCodec.decodePixels($0, name: "\(font.name) glyph \(glyph)", limits: .init(maxDimension: 4096, maxPixels: 4096 * 4096))
                })
            } catch let e as MediaError {
                return .failure(SkipReason(e.reason))
            } catch {
                return .failure(SkipReason("\(error)"))
            }
        }
    }

    public struct SkipReason: Error, Sendable { public var text: String; init(_ t: String) { text = t } }

    /// A glyph bitmap composited on white (sRGB values, as PIL's alpha_composite), padded to a
    /// centred square and area-resized to `size` × `size`: 8-bit RGB.
    public static func render(_ glyph: Pixels, size: Int) -> Pixels {
        let side = Swift.max(glyph.width, glyph.height)
        let x0 = (side - glyph.width) / 2, y0 = (side - glyph.height) / 2
        // Composite into a white square of floats, then shrink (no 8-bit rounding in between).
        var square = [Float](repeating: 255, count: side * side * 3)
        let c = glyph.channels, gray = c < 3, hasAlpha = c == 2 || c == 4
        glyph.bytes.withUnsafeBufferPointer { src in
            square.withUnsafeMutableBufferPointer { dst in
                for y in 0..<glyph.height {
                    for x in 0..<glyph.width {
                        let s = (y * glyph.width + x) * c, d = ((y + y0) * side + x + x0) * 3
                        let alpha: Float = hasAlpha ? Float(src[s + c - 1]) * (1 / 255) : 1
                        for k in 0..<3 {
                            dst[d + k] = Float(src[s + (gray ? 0 : k)]) * alpha + 255 * (1 - alpha)
                        }
                    }
                }
            }
        }
        return square.withUnsafeBufferPointer {
            Pixels.areaResize($0.baseAddress!, width: side, height: side, channels: 3, toWidth: size, toHeight: size)
        }
    }

    /// Writes the folder (see the type's documentation) to `dir`, which must not exist, be
    /// empty, or be a folder this function wrote before (it is replaced).
    /// - Parameter onItem: (done, total) as images are rendered (from worker threads).
    /// - Returns: the summary and the rendered training images in file order (for previews).
    @discardableResult
    public static func write(to dir: URL, options: Options = Options(),
                             onItem: @Sendable (Int, Int) -> Void = { _, _ in }) throws -> (summary: Summary, images: [Pixels]) {
        try options.validate()
        var entries = try EmojiEntry.read(emojiTest: options.emojiTest)
        if let limit = options.limit { entries = Array(entries.prefix(limit)) }
        let font = try Font(options.font)
        let plan = split(entries, fraction: options.holdoutFraction)

        let fm = FileManager.default
        let parent = dir.deletingLastPathComponent()
        try fm.createDirectory(at: parent, withIntermediateDirectories: true)
        if fm.fileExists(atPath: dir.path) {
            let contents = (try? fm.contentsOfDirectory(atPath: dir.path)) ?? []
            let ours = fm.fileExists(atPath: dir.appendingPathComponent("holdout.jsonl").path)
                && fm.fileExists(atPath: dir.appendingPathComponent("metadata.jsonl").path)
            guard contents.isEmpty || ours else {
                throw MediaError.invalidArgument(file: dir.path, reason: "exists and is not an emoji folder made by this command; give a new or empty folder")
            }
        }
        let temp = parent.appendingPathComponent(".\(dir.lastPathComponent).partial-\(getpid())")
        try? fm.removeItem(at: temp)
        try fm.createDirectory(at: temp.appendingPathComponent("holdout"), withIntermediateDirectories: true)
        var finished = false
        defer { if !finished { try? fm.removeItem(at: temp) } }

        // Render and write every image on all cores; results land in their entry's slot.
        var results = [Result<Pixels, SkipReason>?](repeating: nil, count: plan.count)
        let counter = Counter()
        let size = options.size
        try results.withUnsafeMutableBufferPointer { slots in
            let out = SendablePointer(slots.baseAddress!)
            let failure = FirstError()
            Parallel.chunks(plan.count, grain: 8) { start, end in
                for i in start..<end {
                    let (entry, heldOut) = plan[i]
                    switch font.pixels(entry.codePoints) {
                    case .failure(let why): out.p[i] = .failure(why)
                    case .success(let glyph):
                        let image = render(glyph, size: size)
                        let url = temp.appendingPathComponent((heldOut ? "holdout/" : "") + entry.fileStem + ".png")
                        do {
                            try Data(try PNGCodec.encode(image, name: url.path)).write(to: url)
                            out.p[i] = .success(image)
                        } catch {
                            failure.set(MediaError.writeFailed(file: url.path, reason: "\(error)"))
                        }
                    }
                    onItem(counter.increment(), plan.count)
                }
            }
            if let error = failure.value { throw error }
        }

        var summary = Summary()
        var train: [String] = [], holdout: [String] = [], holdoutInside: [String] = []
        var images: [Pixels] = []
        for ((entry, heldOut), result) in zip(plan, results) {
            switch result! {
            case .failure(let why): summary.skipped.append((entry, why.text))
            case .success(let image):
                let fields = { (file: String) in CaptionFolder.jsonLine([
                    ("file_name", file), ("text", entry.name), ("group", entry.group),
                    ("subgroup", entry.subgroup), ("codepoints", entry.codePointsText),
                ]) }
                if heldOut {
                    summary.heldOut += 1
                    holdout.append(fields("holdout/\(entry.fileStem).png"))
                    holdoutInside.append(fields("\(entry.fileStem).png"))
                } else {
                    summary.written += 1
                    train.append(fields("\(entry.fileStem).png"))
                    images.append(image)
                }
            }
        }
        func lines(_ l: [String]) -> Data { Data(l.map { $0 + "\n" }.joined().utf8) }
        try lines(train).write(to: temp.appendingPathComponent("metadata.jsonl"))
        try lines(holdout).write(to: temp.appendingPathComponent("holdout.jsonl"))
        try lines(holdoutInside).write(to: temp.appendingPathComponent("holdout/metadata.jsonl"))

        // Swap the finished folder in: the old one (if any) moves aside first, then goes.
        let old = parent.appendingPathComponent(".\(dir.lastPathComponent).old-\(getpid())")
        if fm.fileExists(atPath: dir.path) {
            try? fm.removeItem(at: old)
            try fm.moveItem(at: dir, to: old)
        }
        try fm.moveItem(at: temp, to: dir)
        finished = true
        try? fm.removeItem(at: old)
        return (summary, images)
    }
}

extension EmojiDataset {
    /// A skip reason without its glyph number or code point, for counting by kind.
    public static func reasonKind(_ reason: String) -> String {
        if reason.hasPrefix("code point U+") { return "code point not in the font's cmap" }
        if reason.hasPrefix("glyph "), reason.hasSuffix("has no colour bitmap") { return "glyph has no colour bitmap" }
        if reason.hasPrefix("glyph "), let colon = reason.firstIndex(of: ":") {
            return String(reason[reason.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
        }
        return reason
    }
}

/// A thread-safe running count (progress from worker threads).
final class Counter: @unchecked Sendable {
    private var n = 0
    private let lock = NSLock()
    func increment() -> Int { lock.lock(); defer { lock.unlock() }; n += 1; return n }
}

/// The first error seen by worker threads.
final class FirstError: @unchecked Sendable {
    private var error: Error?
    private let lock = NSLock()
    func set(_ e: Error) { lock.lock(); if error == nil { error = e }; lock.unlock() }
    var value: Error? { lock.lock(); defer { lock.unlock() }; return error }
}
