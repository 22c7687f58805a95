import Foundation

/// A `DecodingError` as a sentence a user can act on, naming the field: "the field `seed` is
/// missing", "the field `steps` should be a number (Int)", "not valid JSON". Other errors as they describe themselves.
public enum DecodingProblem {
    public static func sentence(_ error: Error) -> String {
        guard let e = error as? DecodingError else { return "\(error)" }
        func field(_ path: [CodingKey]) -> String {
            let names = path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
            return names.isEmpty ? "the value" : "the field `" + names.joined(separator: ".").replacingOccurrences(of: ".[", with: "[") + "`"
        }
        switch e {
        case .keyNotFound(let key, let c):
            return "\(field(c.codingPath + [key])) is missing"
        case .valueNotFound(let type, let c):
            return "\(field(c.codingPath)) is null; it should be \(kind(type))"
        case .typeMismatch(let type, let c):
            return "\(field(c.codingPath)) should be \(kind(type))"
        case .dataCorrupted(let c):
            if c.codingPath.isEmpty { return "not valid JSON" }
            return "\(field(c.codingPath)) is not valid: \(c.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }

    static func kind(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "text"
        case is Bool.Type: return "true or false"
        case is Int.Type, is Int64.Type, is UInt64.Type, is UInt32.Type, is Int32.Type: return "a whole number"
        case is Float.Type, is Double.Type: return "a number"
        default:
            let name = "\(type)"
            if name.hasPrefix("Array") { return "a list" }
            if name.hasPrefix("Dictionary") { return "an object" }
            return "a \(name)"
        }
    }
}
