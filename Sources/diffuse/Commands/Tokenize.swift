import ArgumentParser
import Foundation
import NN
import Text

/// The CLIP token ids a Stable Diffusion text encoder receives for a prompt: a debugging and
/// interop tool, like `forward`.
struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the CLIP token ids the text encoder receives for a prompt.",
        discussion: """
        MODEL is a pipeline folder (its tokenizer/ is read), a tokenizer folder (vocab.json, \
        merges.txt, tokenizer_config.json), `builtin` (CLIP ViT-L/14's vocabulary, as Stable \
        Diffusion 1.x uses it), or a single-file checkpoint (the built-in vocabulary; padded with \
        "!" as SD 2.x when the file holds OpenCLIP's `cond_stage_model.model.*` tensors). \
        Each input (--text, or each line of --file) gives one line: the padded ids (BOS, at most \
        model_max_length − 2 tokens, EOS, pad) as a JSON array with --json, else id:token pairs \
        up to EOS and the padding's count.
        """
    )

    @Argument(help: "Pipeline folder, tokenizer folder, `builtin`, or single-file checkpoint.") var model: String
    @Option(help: "The prompt.") var text: String?
    @Option(help: "A text file: one prompt per line.") var file: String?
    @Flag(help: "Print each input's ids as one JSON array.") var json = false

    func validate() throws {
        guard (text == nil) != (file == nil) else { throw ValidationError("give exactly one of --text and --file") }
    }

    func run() throws {
        let tokenizer = try Self.tokenizer(for: model)
        var inputs: [String]
        if let text { inputs = [text] } else {
            let url = URL(fileURLWithPath: file!)
            guard let data = FileManager.default.contents(atPath: url.path) else {
                throw TokenizerError(file: url.path, reason: "missing or unreadable")
            }
            guard let s = String(data: data, encoding: .utf8) else { throw TokenizerError(file: url.path, reason: "not UTF-8 text") }
            inputs = s.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            if inputs.last == "" { inputs.removeLast() }  // the final newline ends the last line
        }
        for input in inputs {
            let ids = tokenizer(input)
            if json {
                print("[" + ids.map(String.init).joined(separator: ", ") + "]")
            } else {
                let used = tokenizer.encode(input).count
                let pairs = ids.prefix(used).map { "\($0):\(tokenizer.token($0) ?? "?")" }
                let padding = ids.count - used
                print(pairs.joined(separator: " ") + (padding > 0 ? "  + \(padding) × \(tokenizer.padTokenID)" : ""))
            }
        }
    }

    /// The tokenizer MODEL names (see the discussion).
    static func tokenizer(for model: String) throws -> CLIPTokenizer {
        if model == "builtin" { return try CLIPTokenizer.builtin() }
        let url = URL(fileURLWithPath: model)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
            throw TokenizerError(file: url.path, reason: "no such file or folder")
        }
        if !isDir.boolValue {
            // A single-file checkpoint: SD 2.x's text encoder is OpenCLIP's (`cond_stage_model.model.*`).
            let sd2 = (try? SafeTensorsFile(url: url))?.names.contains { $0.hasPrefix("cond_stage_model.model.") } ?? false
            return try CLIPTokenizer.builtin(padToken: sd2 ? CLIPTokenizer.sd2PadToken : nil)
        }
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("model_index.json").path) {
            return try CLIPTokenizer(folder: url.appendingPathComponent("tokenizer"))
        }
        return try CLIPTokenizer(folder: url)
    }
}
