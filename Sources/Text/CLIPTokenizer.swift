import Foundation
import NN

/// A tokenizer folder that could not be read, with the file and the reason.
public struct TokenizerError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let reason: String
    public init(file: String, reason: String) { self.file = file; self.reason = reason }
    public var description: String { "\(file): \(reason)" }
}

/// transformers' `CLIPTokenizer` (the `tokenizers`-backed class of transformers 5, which Stable
/// Diffusion pipelines load), id for id. Byte-level BPE with `</w>` word ends:
///
///     text -> split off special tokens matched in the raw text (normalized: false)
///          -> per remaining segment: NFC, every run of white space -> " ", lower-case
///             (per character, Unicode's full mapping, no final-sigma rule)
///          -> split off special tokens matched in the normalised text (normalized: true)
///          -> words: <|startoftext|> | <|endoftext|> | 's 't 're 've 'm 'll 'd | \p{L}+ | \p{N} | [^\s\p{L}\p{N}]+
///             (GPT-2's byte-level regex then splits the two literals into "<|", name, "|>")
///          -> each word's UTF-8 bytes as GPT-2's byte-to-unicode symbols, `</w>` on the last
///          -> BPE: merge the adjacent pair of lowest rank (leftmost first) until none is left
///     ids = [BOS] + the first model_max_length − 2 ids + [EOS], padded with the pad token.
///
/// The folder holds vocab.json and merges.txt (`#version: 0.2` header), or tokenizer.json (what
/// transformers 5 saves; read first when present, as transformers does, and checked to be CLIP's
/// pipeline); tokenizer_config.json (or special_tokens_map.json) names the special tokens and
/// `model_max_length`. A special token written as a plain string is matched in the raw text, one
/// written as an object by its `normalized` flag; the last of bos, eos, unk, pad with the same
/// content decides (as transformers registers them); tokenizer.json's `added_tokens` flags win.
/// So Stable Diffusion 2's pad "!" splits every "!" off as id 0.
public final class CLIPTokenizer: @unchecked Sendable {
    /// A special token as the folder declares it.
    public struct SpecialToken: Equatable, Sendable {
        public let content: String
        public let id: Int
        /// Matched after normalisation (true) or in the raw text (false).
        public let normalized: Bool
    }

    public let vocabulary: [String: Int]
    public let bos: SpecialToken, eos: SpecialToken, pad: SpecialToken
    /// `model_max_length`: the length of every padded sequence (77 for CLIP).
    public let maxLength: Int
    /// The folder it was read from.
    public let folder: URL

    private let tokensByID: [Int: String]
    /// (left id, right id) packed as `left << 32 | right` -> (rank, merged id).
    private let merges: [UInt64: (rank: Int32, id: Int32)]
    /// Ids of the 256 byte symbols, and of the same with `</w>`.
    private let byteIDs: [Int32], byteEndIDs: [Int32]
    private let rawSpecials: [SpecialToken], normalizedSpecials: [SpecialToken]
    private var cache: [String: [Int32]] = [:]
    private let cacheLock = NSLock()

    public var bosTokenID: Int { bos.id }
    public var eosTokenID: Int { eos.id }
    public var padTokenID: Int { pad.id }
    public var vocabularySize: Int { vocabulary.count }

    /// Largest vocab.json / merges.txt / tokenizer.json accepted (CLIP's are 1, 0.5 and 2.2 MB).
    public static let maxFileBytes = 64 << 20
    /// Largest tokenizer_config.json / special_tokens_map.json accepted.
    public static let maxConfigBytes = 1 << 20
    /// Words longer than this (in bytes) are not cached.
    static let cachedWordBytes = 64, cacheLimit = 50_000

    /// Reads a tokenizer folder: tokenizer.json or vocab.json + merges.txt, and tokenizer_config.json
    /// and/or special_tokens_map.json (both optional: CLIP's defaults are used for what they lack).
    /// `padToken` replaces the folder's pad token (a plain string, as SD 2's "!").
    public init(folder: URL, padToken: String? = nil) throws {
        self.folder = folder
        // transformers 5 saves only tokenizer.json (and loads it first when present); folders
        // saved before have vocab.json + merges.txt.
        let jsonURL = folder.appendingPathComponent("tokenizer.json")
        var vocabURL = folder.appendingPathComponent("vocab.json")
        var mergesURL = folder.appendingPathComponent("merges.txt")
        var vocab: [String: Int]
        var pairs: [(String, String)], lines: [Int] = []
        var addedTokens: [TokenizerFile.AddedToken] = []
        if FileManager.default.fileExists(atPath: jsonURL.path) {
            let file = try Self.readTokenizerJSON(jsonURL)
            vocabURL = jsonURL; mergesURL = jsonURL
            vocab = file.model.vocab
            pairs = file.model.merges.map { ($0.left, $0.right) }
            addedTokens = file.addedTokens ?? []
            for t in addedTokens {
                guard t.id >= 0, t.id < Int(Int32.max), vocab[t.content] == nil || vocab[t.content] == t.id else {
                    throw TokenizerError(file: jsonURL.path, reason: "added token \(t.content.debugDescription) has id \(t.id), which the vocabulary gives to another token")
                }
                vocab[t.content] = t.id
            }
        } else {
            vocab = try Self.readVocabulary(vocabURL)
            (pairs, lines) = try Self.readMergesText(mergesURL)
        }
        vocabulary = vocab
        var byID: [Int: String] = [:]
        for (t, i) in vocab { byID[i] = t }
        tokensByID = byID

        let table = byteToUnicode
        var ids = [Int32](), endIDs = [Int32]()
        for b in 0..<256 {
            let s = String(table[b])
            guard let i = vocab[s], let e = vocab[s + "</w>"] else {
                throw TokenizerError(file: vocabURL.path, reason: "lacks the byte symbol \(s.debugDescription) (byte \(b)) or its </w> form: not a byte-level BPE vocabulary")
            }
            ids.append(Int32(i)); endIDs.append(Int32(e))
        }
        byteIDs = ids; byteEndIDs = endIDs
        merges = try Self.mergeTable(pairs, lines: lines, vocabulary: vocab, file: mergesURL, vocabFile: vocabURL.lastPathComponent)

        // Special tokens: tokenizer_config.json wins over special_tokens_map.json, key by key.
        let configURL = folder.appendingPathComponent("tokenizer_config.json")
        let mapURL = folder.appendingPathComponent("special_tokens_map.json")
        let config = try Self.readJSONObject(configURL)
        let map = try Self.readJSONObject(mapURL)
        let addedFlags = Dictionary(addedTokens.map { ($0.content, $0.normalized ?? !($0.special ?? false)) }, uniquingKeysWith: { $1 })
        func declared(_ key: String, default content: String) throws -> (content: String, normalized: Bool) {
            if key == "pad_token", let padToken { return (padToken, addedFlags[padToken] ?? false) }
            for (object, url) in [(config, configURL), (map, mapURL)] {
                guard let value = object?[key], !(value is NSNull) else { continue }
                if let s = value as? String { return (s, false) }
                if let d = value as? [String: Any], let s = d["content"] as? String {
                    return (s, (d["normalized"] as? Bool) ?? false)
                }
                throw TokenizerError(file: url.path, reason: "'\(key)' must be a string or an object with \"content\"")
            }
            return (content, false)
        }
        // Registered in transformers' order; the last registration of a content sets its flag.
        let order = [("bos_token", "<|startoftext|>"), ("eos_token", "<|endoftext|>"),
                     ("unk_token", "<|endoftext|>"), ("pad_token", "<|endoftext|>")]
        var normalizedFlag: [String: Bool] = [:]
        var contents: [String: String] = [:]
        for (key, def) in order {
            let (content, normalized) = try declared(key, default: def)
            guard vocab[content] != nil else {
                throw TokenizerError(file: (config != nil ? configURL : mapURL).path,
                                     reason: "'\(key)' \(content.debugDescription) is not in vocab.json")
            }
            guard !content.isEmpty else { throw TokenizerError(file: configURL.path, reason: "'\(key)' is empty") }
            contents[key] = content
            normalizedFlag[content] = addedFlags[content] ?? normalized  // tokenizer.json's flag wins
        }
        func special(_ key: String) -> SpecialToken {
            let c = contents[key]!
            return SpecialToken(content: c, id: vocab[c]!, normalized: normalizedFlag[c]!)
        }
        bos = special("bos_token"); eos = special("eos_token"); pad = special("pad_token")
        // Every added token of tokenizer.json is split off too (textual-inversion words, say).
        for (c, flag) in addedFlags where normalizedFlag[c] == nil { normalizedFlag[c] = flag }
        let all = Set(contents.values).union(addedFlags.keys).sorted()
            .map { c in SpecialToken(content: c, id: vocab[c]!, normalized: normalizedFlag[c]!) }
        rawSpecials = all.filter { !$0.normalized }
        normalizedSpecials = all.filter(\.normalized)

        var length = 77
        if let v = config?["model_max_length"] {
            guard let n = (v as? NSNumber)?.doubleValue, n == n.rounded(), n >= 2 else {
                throw TokenizerError(file: configURL.path, reason: "'model_max_length' must be an integer >= 2, got \(v)")
            }
            // transformers writes a huge sentinel when the length is unset: CLIP's 77 then.
            if n <= 1_000_000 { length = Int(n) }
        }
        maxLength = length
    }

    // MARK: Encoding

    /// BOS, the text's ids (at most `maxLength` − 2 of them), EOS: no padding.
    public func encode(_ text: String) -> [Int] {
        let body = tokenize(text)
        return [bos.id] + body.prefix(Swift.max(0, maxLength - 2)) + [eos.id]
    }

    /// `encode(text)` padded with the pad token to `maxLength`: what the text encoder receives
    /// (`tokenizer(text, padding="max_length", truncation=True)`).
    public func callAsFunction(_ text: String) -> [Int] {
        let ids = encode(text)
        return ids + Array(repeating: pad.id, count: maxLength - ids.count)
    }

    /// The token string of an id (byte-level symbols, `</w>` word ends), nil if unknown.
    public func token(_ id: Int) -> String? { tokensByID[id] }

    /// The ids of `text` without BOS, EOS, truncation or padding.
    public func tokenize(_ text: String) -> [Int] {
        var out: [Int] = []
        for raw in split(Array(text.unicodeScalars), on: rawSpecials) {
            switch raw {
            case .special(let id): out.append(id)
            case .text(let scalars):
                for piece in split(normalize(scalars), on: normalizedSpecials) {
                    switch piece {
                    case .special(let id): out.append(id)
                    case .text(let s):
                        for word in words(s) { out.append(contentsOf: bpe(word).lazy.map(Int.init)) }
                    }
                }
            }
        }
        return out
    }

    private enum Piece { case special(Int), text([Unicode.Scalar]) }

    /// Splits at occurrences of the tokens (leftmost, longest first), as tokenizers'
    /// added-vocabulary matching does.
    private func split(_ s: [Unicode.Scalar], on tokens: [SpecialToken]) -> [Piece] {
        guard !tokens.isEmpty, !s.isEmpty else { return s.isEmpty ? [] : [.text(s)] }
        let patterns = tokens.map { (Array($0.content.unicodeScalars), $0.id) }.sorted { $0.0.count > $1.0.count }
        var out: [Piece] = []
        var start = 0, i = 0
        while i < s.count {
            var matched: (length: Int, id: Int)? = nil
            for (p, id) in patterns where p.count <= s.count - i {
                var ok = true
                for k in 0..<p.count where s[i + k] != p[k] { ok = false; break }
                if ok { matched = (p.count, id); break }
            }
            if let m = matched {
                if start < i { out.append(.text(Array(s[start..<i]))) }
                out.append(.special(m.id))
                i += m.length; start = i
            } else {
                i += 1
            }
        }
        if start < s.count { out.append(.text(Array(s[start...]))) }
        return out
    }

    /// tokenizers' normaliser sequence: NFC, `\s+` -> " ", per-character lower-casing.
    private func normalize(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: s)
        let nfc = s.allSatisfy(\.isASCII) ? view : String(view).precomposedStringWithCanonicalMapping.unicodeScalars
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(s.count)
        var inSpace = false
        for c in nfc {
            if c.properties.isWhitespace {
                if !inSpace { out.append(" ") }
                inSpace = true
                continue
            }
            inSpace = false
            if c.isASCII {
                out.append(c.value >= 65 && c.value <= 90 ? Unicode.Scalar(c.value + 32)! : c)
            } else {
                out.append(contentsOf: c.properties.lowercaseMapping.unicodeScalars)
            }
        }
        return out
    }

    /// CLIP's pre-tokenizer regex (matches kept, the rest dropped), then GPT-2's byte-level regex,
    /// which only splits the two special-token literals further.
    private func words(_ s: [Unicode.Scalar]) -> [String] {
        func isLetter(_ c: Unicode.Scalar) -> Bool {
            switch c.properties.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
            default: return false
            }
        }
        func isNumber(_ c: Unicode.Scalar) -> Bool {
            switch c.properties.generalCategory {
            case .decimalNumber, .letterNumber, .otherNumber: return true
            default: return false
            }
        }
        func hasPrefix(_ p: [Unicode.Scalar], at i: Int) -> Bool {
            guard s.count - i >= p.count else { return false }
            for k in 0..<p.count where s[i + k] != p[k] { return false }
            return true
        }
        var out: [String] = []
        func emit(_ r: Range<Int>) {
            var v = String.UnicodeScalarView()
            v.append(contentsOf: s[r])
            out.append(String(v))
        }
        var i = 0
        while i < s.count {
            let c = s[i]
            if let lit = Self.literals.first(where: { hasPrefix($0, at: i) }) {
                // GPT-2's regex: "<|" (punctuation), the name (letters), "|>" (punctuation).
                emit(i..<(i + 2)); emit((i + 2)..<(i + lit.count - 2)); emit((i + lit.count - 2)..<(i + lit.count))
                i += lit.count
            } else if c == "'", let n = Self.contractions.first(where: { hasPrefix($0, at: i) })?.count {
                emit(i..<(i + n)); i += n
            } else if isLetter(c) {
                var j = i + 1
                while j < s.count, isLetter(s[j]) { j += 1 }
                emit(i..<j); i = j
            } else if isNumber(c) {
                emit(i..<(i + 1)); i += 1
            } else if c.properties.isWhitespace {
                i += 1
            } else {
                var j = i + 1
                while j < s.count, !isLetter(s[j]), !isNumber(s[j]), !s[j].properties.isWhitespace { j += 1 }
                emit(i..<j); i = j
            }
        }
        return out
    }

    private static let literals = ["<|startoftext|>", "<|endoftext|>"].map { Array($0.unicodeScalars) }
    private static let contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"].map { Array($0.unicodeScalars) }

    /// Byte-pair merges of one word (cached).
    private func bpe(_ word: String) -> [Int32] {
        let bytes = Array(word.utf8)
        let cacheable = bytes.count <= Self.cachedWordBytes
        if cacheable {
            cacheLock.lock()
            let hit = cache[word]
            cacheLock.unlock()
            if let hit { return hit }
        }
        var symbols = bytes.enumerated().map { i, b in i == bytes.count - 1 ? byteEndIDs[Int(b)] : byteIDs[Int(b)] }
        // Merge the lowest-ranked adjacent pair, leftmost first, until no pair has a rank.
        // Words are short: a linear scan per merge is cheaper than a heap here.
        while symbols.count > 1 {
            var best: (rank: Int32, at: Int, id: Int32)? = nil
            for k in 0..<(symbols.count - 1) {
                if let m = merges[UInt64(UInt32(symbols[k])) << 32 | UInt64(UInt32(symbols[k + 1]))],
                   best == nil || m.rank < best!.rank {
                    best = (m.rank, k, m.id)
                }
            }
            guard let b = best else { break }
            symbols[b.at] = b.id
            symbols.remove(at: b.at + 1)
        }
        if cacheable {
            cacheLock.lock()
            if cache.count >= Self.cacheLimit { cache.removeAll(keepingCapacity: true) }
            cache[word] = symbols
            cacheLock.unlock()
        }
        return symbols
    }

    // MARK: Reading the folder

    static func readFile(_ url: URL, limit: Int) throws -> Data {
        let attributes: [FileAttributeKey: Any]
        do { attributes = try FileManager.default.attributesOfItem(atPath: url.path) } catch {
            throw TokenizerError(file: url.path, reason: "missing or unreadable")
        }
        if let size = (attributes[.size] as? NSNumber)?.intValue, size > limit {
            throw TokenizerError(file: url.path, reason: "\(size) bytes, more than the \(limit) accepted for a tokenizer file")
        }
        do { return try Data(contentsOf: url) } catch {
            throw TokenizerError(file: url.path, reason: "unreadable: \(error.localizedDescription)")
        }
    }

    /// vocab.json: one JSON object, token -> id (a non-negative integer below 2^31).
    static func readVocabulary(_ url: URL) throws -> [String: Int] {
        let data = try readFile(url, limit: maxFileBytes)
        guard let vocab = try? JSONDecoder().decode([String: Int].self, from: data) else {
            // Say which entry is wrong, when the file is a JSON object at all.
            if let dict = try? JSONDecoder().decode([String: JSONValue].self, from: data),
               let bad = dict.first(where: { _, v in v.double.map { $0 != $0.rounded() || Swift.abs($0) > 1e15 } ?? true }) {
                throw TokenizerError(file: url.path, reason: "the id of \(bad.key.debugDescription) is not a non-negative integer")
            }
            throw TokenizerError(file: url.path, reason: "not a JSON object of token -> id")
        }
        if let bad = vocab.first(where: { $0.value < 0 || $0.value >= Int(Int32.max) }) {
            throw TokenizerError(file: url.path, reason: "the id of \(bad.key.debugDescription) is not a non-negative integer below 2^31: \(bad.value)")
        }
        guard !vocab.isEmpty else { throw TokenizerError(file: url.path, reason: "empty vocabulary") }
        return vocab
    }

    /// merges.txt: an optional `#version` line, then "left right" per line, by rank.
    static func readMergesText(_ url: URL) throws -> (pairs: [(String, String)], lines: [Int]) {
        let data = try readFile(url, limit: maxFileBytes)
        guard let text = String(data: data, encoding: .utf8) else {
            throw TokenizerError(file: url.path, reason: "not UTF-8 text")
        }
        var pairs: [(String, String)] = [], lines: [Int] = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if n == 0 && line.hasPrefix("#version") { continue }
            if line.isEmpty { continue }
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw TokenizerError(file: url.path, reason: "line \(n + 1): expected two symbols separated by one space, got \(String(line).debugDescription)")
            }
            pairs.append((String(parts[0]), String(parts[1])))
            lines.append(n + 1)
        }
        return (pairs, lines)
    }

    /// (left id, right id) -> (rank, merged id); every symbol and every result must be in the vocabulary.
    static func mergeTable(_ pairs: [(String, String)], lines: [Int] = [], vocabulary vocab: [String: Int], file: URL,
                           vocabFile: String) throws -> [UInt64: (rank: Int32, id: Int32)] {
        var merges: [UInt64: (rank: Int32, id: Int32)] = [:]
        merges.reserveCapacity(pairs.count)
        for (rank, (a, b)) in pairs.enumerated() {
            guard let ia = vocab[a], let ib = vocab[b], let im = vocab[a + b] else {
                let unknown = [a, b, a + b].first { vocab[$0] == nil }!
                let place = file.lastPathComponent == "merges.txt" ? "line \(lines[rank])" : "merge \(rank)"
                throw TokenizerError(file: file.path, reason: "\(place): merge \"\(a) \(b)\" uses \(unknown.debugDescription), which is not in \(vocabFile)")
            }
            let key = UInt64(UInt32(ia)) << 32 | UInt64(UInt32(ib))
            merges[key] = (Int32(rank), Int32(im))  // a repeated pair: the last rank wins, as in tokenizers
        }
        return merges
    }

    /// tokenizer.json (the `tokenizers` library's file), checked to be CLIP's pipeline: NFC,
    /// white space, lower case; CLIP's split regex and byte-level; BPE with `</w>`.
    static func readTokenizerJSON(_ url: URL) throws -> TokenizerFile {
        let data = try readFile(url, limit: maxFileBytes)
        let file: TokenizerFile
        do { file = try JSONDecoder().decode(TokenizerFile.self, from: data) } catch {
            throw TokenizerError(file: url.path, reason: "not a tokenizers JSON file with a BPE model: \(error)")
        }
        func fail(_ what: String) -> TokenizerError {
            TokenizerError(file: url.path, reason: "\(what) is not CLIP's: this tokenizer would not give CLIP's ids")
        }
        guard file.model.type == nil || file.model.type == "BPE", file.model.endOfWordSuffix == "</w>",
              (file.model.continuingSubwordPrefix ?? "").isEmpty else { throw fail("the model (BPE with </w> word ends)") }
        let normalizers = file.normalizer?["normalizers"]?.array?.compactMap { $0["type"]?.string }
        guard normalizers == ["NFC", "Replace", "Lowercase"] else { throw fail("the normalizer") }
        let pre = file.preTokenizer?["pretokenizers"]?.array ?? []
        guard pre.count == 2, pre[0]["type"]?.string == "Split",
              pre[0]["pattern"]?["Regex"]?.string == clipPattern, pre[0]["invert"]?.bool == true,
              pre[1]["type"]?.string == "ByteLevel", pre[1]["add_prefix_space"]?.bool != true else {
            throw fail("the pre-tokenizer")
        }
        return file
    }

    /// CLIP's split pattern as tokenizers spells it.
    static let clipPattern = #"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"#

    /// A JSON object file, or nil when the file does not exist.
    static func readJSONObject(_ url: URL) throws -> [String: Any]? {
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        let data = try readFile(url, limit: maxConfigBytes)
        guard let object = try? JSONSerialization.jsonObject(with: data), let dict = object as? [String: Any] else {
            throw TokenizerError(file: url.path, reason: "not a JSON object")
        }
        return dict
    }
}

/// GPT-2's `bytes_to_unicode`: printable Latin-1 bytes stand for themselves, the other 68
/// bytes for U+0100 onwards, in byte order.
let byteToUnicode: [Character] = {
    var table = [Character](repeating: " ", count: 256)
    var next: UInt32 = 256
    for b in 0..<256 {
        let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
        if printable { table[b] = Character(Unicode.Scalar(UInt32(b))!) } else {
            table[b] = Character(Unicode.Scalar(next)!)
            next += 1
        }
    }
    return table
}()

/// The parts of a tokenizers JSON file (tokenizer.json) that CLIP's tokenizer needs.
struct TokenizerFile: Decodable {
    struct AddedToken: Decodable {
        let id: Int
        let content: String
        let normalized: Bool?
        let special: Bool?
    }
    /// A merge, written "left right" (tokenizers < 0.20) or ["left", "right"].
    struct Merge: Decodable {
        let left: String, right: String
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) {
                let parts = s.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                    throw DecodingError.dataCorruptedError(in: c, debugDescription: "merge \(s.debugDescription) is not two symbols")
                }
                left = String(parts[0]); right = String(parts[1])
            } else {
                let a = try c.decode([String].self)
                guard a.count == 2 else { throw DecodingError.dataCorruptedError(in: c, debugDescription: "merge \(a) is not two symbols") }
                left = a[0]; right = a[1]
            }
        }
    }
    struct Model: Decodable {
        let type: String?
        let vocab: [String: Int]
        let merges: [Merge]
        let endOfWordSuffix: String?
        let continuingSubwordPrefix: String?
        enum CodingKeys: String, CodingKey {
            case type, vocab, merges
            case endOfWordSuffix = "end_of_word_suffix", continuingSubwordPrefix = "continuing_subword_prefix"
        }
    }
    let addedTokens: [AddedToken]?
    let normalizer: JSONValue?
    let preTokenizer: JSONValue?
    let model: Model
    enum CodingKeys: String, CodingKey {
        case addedTokens = "added_tokens", normalizer, preTokenizer = "pre_tokenizer", model
    }
}

extension JSONValue {
    subscript(key: String) -> JSONValue? { if case .object(let o) = self { return o[key] }; return nil }
    var array: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
}
