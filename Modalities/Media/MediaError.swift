import Foundation

/// Why reading or writing a media file failed. Every case names the file.
///
/// Anything a user's file or argument can cause is one of these; the codecs never trap on
/// bad input. Programmer errors (a tensor of the wrong rank) are preconditions instead.
public enum MediaError: Error, CustomStringConvertible, Equatable {
    /// The file could not be opened (missing, unreadable, not a file).
    case cannotOpen(file: String, reason: String)
    /// The bytes are not a valid file of the expected kind: wrong magic, truncated, corrupt.
    case invalidData(file: String, reason: String)
    /// A header field or argument is outside the limits we accept (zero or absurd sizes).
    case limitExceeded(file: String, reason: String)
    /// A valid file we do not handle: unknown codec, no video stream, missing encoder.
    case unsupported(file: String, reason: String)
    /// An argument to a write (columns, frame rate, quality) is out of range.
    case invalidArgument(file: String, reason: String)
    /// Writing failed; no partial file was left behind.
    case writeFailed(file: String, reason: String)

    public var file: String {
        switch self {
        case .cannotOpen(let f, _), .invalidData(let f, _), .limitExceeded(let f, _),
             .unsupported(let f, _), .invalidArgument(let f, _), .writeFailed(let f, _):
            return f
        }
    }

    public var reason: String {
        switch self {
        case .cannotOpen(_, let r), .invalidData(_, let r), .limitExceeded(_, let r),
             .unsupported(_, let r), .invalidArgument(_, let r), .writeFailed(_, let r):
            return r
        }
    }

    public var description: String {
        switch self {
        case .cannotOpen: return "\(file): cannot open: \(reason)"
        case .invalidData: return "\(file): invalid or corrupt data: \(reason)"
        case .limitExceeded: return "\(file): outside limits: \(reason)"
        case .unsupported: return "\(file): unsupported: \(reason)"
        case .invalidArgument: return "\(file): invalid argument: \(reason)"
        case .writeFailed: return "\(file): write failed: \(reason)"
        }
    }
}

/// Checks shared by the codecs before anything is allocated from a header field.
public enum MediaLimits {
    /// Throws `.limitExceeded` unless `1 <= value <= max`.
    public static func check(_ value: Int, max: Int, _ what: String, file: String) throws {
        guard value >= 1 else {
            throw MediaError.limitExceeded(file: file, reason: "\(what) is \(value), must be at least 1")
        }
        guard value <= max else {
            throw MediaError.limitExceeded(file: file, reason: "\(what) is \(value), more than the maximum \(max)")
        }
    }
}
