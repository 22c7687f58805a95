import Foundation
import Media

/// A labelled folder of media files, as every modality reads it: `DIR/<class>/*.<ext>` (class
/// names sorted → labels 0, 1, ...), or the files directly in DIR (one unconditional class,
/// `classNames` empty). Hidden files and folders are ignored; empty class folders are dropped.
public struct ClassFolder {
    public let root: URL
    public let files: [(url: URL, label: Int)]
    public let classNames: [String]

    /// - Parameter extensions: lower-case file extensions without the dot, e.g. ["png"].
    public init(_ root: URL, extensions: Set<String>) throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: root.path, isDirectory: &isDir), isDir.boolValue else {
            throw MediaError.cannotOpen(file: root.path, reason: "not a folder")
        }
        func media(_ dir: URL) -> [URL] {
            ((try? fm.contentsOfDirectory(atPath: dir.path)) ?? []).sorted()
                .filter { !$0.hasPrefix(".") && extensions.contains(($0 as NSString).pathExtension.lowercased()) }
                .map { dir.appendingPathComponent($0) }
        }
        let subdirs = ((try? fm.contentsOfDirectory(atPath: root.path)) ?? []).sorted().filter {
            var d: ObjCBool = false
            return !$0.hasPrefix(".") && fm.fileExists(atPath: root.appendingPathComponent($0).path, isDirectory: &d) && d.boolValue
        }
        var list: [(URL, Int)] = []
        var names: [String] = []
        for name in subdirs {
            let found = media(root.appendingPathComponent(name))
            if found.isEmpty { continue }
            names.append(name)
            list += found.map { ($0, names.count - 1) }
        }
        if list.isEmpty { list = media(root).map { ($0, 0) } }
        guard !list.isEmpty else {
            throw MediaError.invalidData(file: root.path, reason: "no .\(extensions.sorted().joined(separator: "/.")) files in it or in its class folders")
        }
        self.root = root
        files = list
        classNames = names
    }
}
