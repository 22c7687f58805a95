import Foundation

/// Writes a file so that readers see either the old file or the complete new one: the bytes
/// go to a temporary file in the same folder, which is then renamed over the target. A failed
/// write removes the temporary file and leaves the target untouched.
public enum AtomicFile {
    /// Why an atomic write failed (the target is untouched and no temporary file is left).
    public struct WriteError: Error, CustomStringConvertible {
        public let file: String
        public let reason: String
        public var description: String { "\(file): \(reason)" }
    }

    /// For writers that take a path (C libraries): `body` writes the complete file at the
    /// temporary path it is given (same folder, same extension — some libraries look at it);
    /// the file is flushed to disk and renamed over `url`.
    public static func writeFile(to url: URL, _ body: (_ temporaryPath: String) throws -> Void) throws {
        let path = url.path
        let folder = url.deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDir), isDir.boolValue else {
            throw WriteError(file: path, reason: "folder \(folder) does not exist")
        }
        let ext = url.pathExtension.isEmpty ? "" : "." + url.pathExtension
        let temp = folder + "/." + url.deletingPathExtension().lastPathComponent
            + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))" + ext
        do {
            try body(temp)
            // fsync, so that a crash after the rename cannot leave an empty file under the final name.
            let fd = open(temp, O_RDONLY)
            guard fd >= 0 else { throw WriteError(file: path, reason: "the writer produced no file") }
            _ = fsync(fd)
            close(fd)
            guard rename(temp, path) == 0 else {
                throw WriteError(file: path, reason: "rename failed: \(String(cString: strerror(errno)))")
            }
        } catch {
            unlink(temp)
            throw error
        }
    }

    public static func write(_ data: Data, to url: URL) throws {
        try write(to: url) { handle in try handle.write(contentsOf: data) }
    }

    public static func write(to url: URL, _ body: (FileHandle) throws -> Void) throws {
        let dir = url.deletingLastPathComponent()
        let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        guard FileManager.default.createFile(atPath: tmp.path, contents: nil) else {
            throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: url.path,
                NSLocalizedDescriptionKey: "cannot create a file in \(dir.path)"])
        }
        do {
            let h = try FileHandle(forWritingTo: tmp)
            do {
                try body(h)
                try h.synchronize()
                try h.close()
            } catch {
                try? h.close()
                throw error
            }
            if rename(tmp.path, url.path) != 0 {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: url.path,
                    NSLocalizedDescriptionKey: "cannot rename into \(url.path): \(String(cString: strerror(errno)))"])
            }
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw error
        }
    }
}
