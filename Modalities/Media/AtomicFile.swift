import Foundation
import NN

/// Atomic writes for the codecs: NN's `AtomicFile.writeFile` (temporary file in the same
/// folder, fsync, rename; nothing left behind on failure), with failures as `MediaError`.
public enum MediaFile {
    public static func write(to url: URL, _ body: (_ temporaryPath: String) throws -> Void) throws {
        do {
            try AtomicFile.writeFile(to: url, body)
        } catch let e as MediaError {
            throw e
        } catch let e as AtomicFile.WriteError {
            throw MediaError.writeFailed(file: e.file, reason: e.reason)
        } catch {
            throw MediaError.writeFailed(file: url.path, reason: "\(error)")
        }
    }
}
