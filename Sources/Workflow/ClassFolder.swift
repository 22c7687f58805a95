import Foundation
import Media
import NN

/// A labelled folder of media files, as every modality reads it: `DIR/<class>/*.<ext>` (class
/// names sorted → labels 0, 1, ...), or the files directly in DIR (one unconditional class,
/// `classNames` empty). Hidden files and folders are ignored; empty class folders are dropped.
/// A dataset with an order of its own (Fashion-MNIST's 0–9) keeps it: `DIR/classes.json`, a
/// JSON list of class folder names, orders the classes it names first (the dataset makers write it).
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
        var subdirs = ((try? fm.contentsOfDirectory(atPath: root.path)) ?? []).sorted().filter {
            var d: ObjCBool = false
            return !$0.hasPrefix(".") && fm.fileExists(atPath: root.appendingPathComponent($0).path, isDirectory: &d) && d.boolValue
        }
        if let order = try Self.order(root) {
            subdirs = order.filter(subdirs.contains) + subdirs.filter { !order.contains($0) }
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

    /// The dataset's own class order (DIR/classes.json), or nil when it has none.
    static func order(_ root: URL) throws -> [String]? {
        let url = root.appendingPathComponent(orderFile)
        guard let data = FileManager.default.contents(atPath: url.path) else { return nil }
        guard let list = try? JSONDecoder().decode([String].self, from: data) else {
            throw MediaError.invalidData(file: url.path, reason: "not a JSON list of class folder names")
        }
        return list
    }

    /// The file that gives a class folder its dataset's class order.
    public static let orderFile = "classes.json"

    /// Writes DIR/classes.json: `names` (class folder names) in the dataset's own label order.
    public static func writeOrder(_ names: [String], in root: URL) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted]
        try AtomicFile.write(try enc.encode(names), to: root.appendingPathComponent(orderFile))
    }
}
