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
