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
        let fd = open(tmp.path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else {
            throw WriteError(file: url.path, reason: "cannot create a file in \(dir.path): \(String(cString: strerror(errno)))")
        }
        do {
            let h = FileHandle(fileDescriptor: fd, closeOnDealloc: false)
            do {
                try body(h)
                try h.synchronize()
                close(fd)
            } catch {
                close(fd)
                throw WriteError(file: url.path, reason: reason(error))
            }
            if rename(tmp.path, url.path) != 0 {
                throw WriteError(file: url.path, reason: "cannot rename into place: \(String(cString: strerror(errno)))")
            }
        } catch {
            unlink(tmp.path)
            throw error
        }
    }

    /// Removes the temporary files and folders (`.NAME.tmp-PID…`) that writers of processes no
    /// longer alive left in `dir` and, `depth` levels down, in its subfolders: what a killed run
    /// leaves behind. Those of live processes (another run writing now) are kept. Returns the
    /// paths removed.
    @discardableResult
    public static func removeLeftovers(in dir: URL, depth: Int = 2) -> [String] {
        let fm = FileManager.default
        var removed: [String] = []
        for name in (try? fm.contentsOfDirectory(atPath: dir.path)) ?? [] {
            let u = dir.appendingPathComponent(name)
            if name.hasPrefix("."), let r = name.range(of: ".tmp-") {
                let pid = Int32(name[r.upperBound...].prefix(while: \.isNumber)) ?? 0
                if pid > 0, pid != getpid(), kill(pid, 0) != 0, errno == ESRCH, (try? fm.removeItem(at: u)) != nil {
                    removed.append(u.path)
                }
                continue
            }
            var isDir: ObjCBool = false
            if depth > 0, fm.fileExists(atPath: u.path, isDirectory: &isDir), isDir.boolValue {
                removed += removeLeftovers(in: u, depth: depth - 1)
            }
        }
        return removed
    }

    /// An I/O error in plain words ("No space left on device"), without Foundation's domain and
    /// code dump: the POSIX reason underneath when there is one.
    public static func reason(_ error: Error) -> String {
        if let e = error as? WriteError { return e.reason }
        let ns = error as NSError
        if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
        if let u = ns.userInfo[NSUnderlyingErrorKey] as? NSError, u.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(u.code)))
        }
        switch CocoaError.Code(rawValue: ns.code) {
        case .fileWriteOutOfSpace: return "no space left on device"
        case .fileWriteNoPermission, .fileReadNoPermission: return "permission denied"
        case .fileWriteVolumeReadOnly: return "read-only file system"
        case .fileNoSuchFile, .fileReadNoSuchFile: return "no such file or folder"
        case .fileWriteFileExists: return "a file is in the way"
        default: return (ns.userInfo[NSLocalizedDescriptionKey] as? String) ?? "I/O error \(ns.code)"
        }
    }
}

/// An advisory lock (`flock`) on a shared file (a manifest that several runs may append to),
/// held from `tryLock` until `unlock()` or the end of the process — which the kernel guarantees
/// even after kill -9. Appends go through the locked descriptor, opened with `O_APPEND`: one
/// `write` per call, never interleaved with another process's lines, never over them.
public final class FileLock {
    public let url: URL
    private var fd: Int32

    private init(url: URL, fd: Int32) { self.url = url; self.fd = fd }

    /// The exclusive lock on `url` (created if needed), or nil when another process holds it.
    public static func tryLock(_ url: URL) throws -> FileLock? {
        let fd = open(url.path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw AtomicFile.WriteError(file: url.path, reason: "cannot open: \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { close(fd); return nil }
        return FileLock(url: url, fd: fd)
    }

    /// Appends `data` at the end of the file and fsyncs.
    public func append(_ data: Data) throws {
        precondition(fd >= 0, "FileLock.append after unlock")
        try data.withUnsafeBytes { (b: UnsafeRawBufferPointer) in
            var done = 0
            while done < b.count {
                let n = Foundation.write(fd, b.baseAddress! + done, b.count - done)
                guard n > 0 else { throw AtomicFile.WriteError(file: url.path, reason: "cannot append: \(String(cString: strerror(errno)))") }
                done += n
            }
        }
        guard fsync(fd) == 0 else { throw AtomicFile.WriteError(file: url.path, reason: "cannot flush: \(String(cString: strerror(errno)))") }
    }

    public func unlock() {
        guard fd >= 0 else { return }
        flock(fd, LOCK_UN)
        close(fd)
        fd = -1
    }

    deinit { unlock() }
}
