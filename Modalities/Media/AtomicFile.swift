import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Writes a file atomically: the body writes a temporary file in the destination's folder,
/// which is then flushed to disk and renamed over the destination. If the body throws (or the
/// rename fails) the temporary file is removed and the destination is untouched.
public enum AtomicFile {
    /// - Parameters:
    ///   - url: the final destination (a file URL).
    ///   - body: writes the complete file at the temporary path it is given.
    public static func write(to url: URL, _ body: (_ temporaryPath: String) throws -> Void) throws {
        let path = url.path
        let folder = url.deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDir), isDir.boolValue else {
            throw MediaError.writeFailed(file: path, reason: "folder \(folder) does not exist")
        }
        // Same folder so that rename(2) is atomic; keep the extension (some libraries look at it).
        let ext = url.pathExtension.isEmpty ? "" : "." + url.pathExtension
        let temp = folder + "/." + url.deletingPathExtension().lastPathComponent
            + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))" + ext
        do {
            try body(temp)
            try flush(temp, file: path)
            guard rename(temp, path) == 0 else {
                throw MediaError.writeFailed(file: path, reason: "rename failed: \(String(cString: strerror(errno)))")
            }
        } catch {
            unlink(temp)
            if let e = error as? MediaError { throw e }
            throw MediaError.writeFailed(file: path, reason: "\(error)")
        }
    }

    /// fsync so that a crash after the rename cannot leave an empty file under the final name.
    private static func flush(_ temp: String, file: String) throws {
        let fd = open(temp, O_RDONLY)
        guard fd >= 0 else {
            throw MediaError.writeFailed(file: file, reason: "the encoder produced no file")
        }
        defer { close(fd) }
        _ = fsync(fd)
    }
}
