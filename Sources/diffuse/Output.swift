import Foundation

/// `s` left-aligned in a column of `n` characters (at least one space after).
func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }

/// `s` right-aligned in a column of `n` characters (at least one space before).
func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? " " + s : String(repeating: " ", count: n - s.count) + s }

/// A line on standard error (progress and warnings; standard output stays machine-readable).
func note(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }

/// `value` as pretty JSON with sorted keys on standard output (NaN and infinities as strings:
/// a metric with nothing to measure is "nan", not an encoding error).
func printJSON<T: Encodable>(_ value: T) throws {
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    print(String(decoding: try enc.encode(value), as: UTF8.self))
}

/// `n` and the word, pluralised: "1 image", "3 images", "1 clip".
func plural(_ n: Int, _ word: String) -> String { "\(n) \(word)\(n == 1 ? "" : "s")" }

/// What a `generate` run wrote, as the end summary (text) or `--json`: the files (every one,
/// extra files such as a spectrogram included), the samples' classes, the seed and settings, and
/// how long it took.
struct GenerationSummary: Encodable {
    var files: [String]
    var samples: Int
    /// "image", "clip".
    var kind: String
    var classes: [String]?
    /// How the class was chosen when no --class was given for an input (nil otherwise).
    var classNote: String?
    var seed: UInt64
    var randomSeed: Bool
    /// "torch" when the noise was drawn as diffusers draws it (nil: our own order).
    var rng: String? = nil
    var sampler: String
    var steps: Int
    var guidance: Float
    /// The timesteps [low, high] guidance applied at (nil: all).
    var guidanceInterval: [Float]? = nil
    var strength: Float?
    /// Where part of an input was kept (a continuation, a gap, a mask): the reconstruction-guidance
    /// weight it was generated with (0: the kept part only replaced at every step).
    var reconstructionGuidance: Float? = nil
    var model: String
    /// Autoguidance's weaker model (`--guide-model`), when one guided.
    var guideModel: String? = nil
    var seconds: Double
    var detail: String?

    func report(json: Bool) throws {
        if json { return try printJSON(self) }
        var what = plural(samples, kind)
        if let detail { what += " (\(detail))" }
        var parts = [what]
        if let classNote { parts.append("class \(classNote)") } else if let classes {
            var distinct: [String] = []
            for c in classes where !distinct.contains(c) { distinct.append(c) }
            parts.append((distinct.count == 1 ? "class " : "classes ") + distinct.joined(separator: ", "))
        }
        parts.append("seed \(seed)\(rng.map { " (\($0) noise)" } ?? "")\(randomSeed ? " (random; --seed \(seed) makes it again)" : "")")
        if let i = guidanceInterval { parts.append("guidance \(String(format: "%g", guidance)) at timesteps \(String(format: "%g", i[0]))–\(String(format: "%g", i[1]))") }
        if let guideModel { parts.append("guided away from \(guideModel)") }
        if let w = reconstructionGuidance { parts.append("reconstruction guidance \(String(format: "%g", w))") }
        parts.append(String(format: "%.1f s", seconds))
        print(parts.joined(separator: ", ") + ":")
        for f in files { print("  " + f) }
    }
}
