import Foundation
import Tensor
import Image

/// Why an evaluation cannot run on what it was given (a set too small, classes that do not match).
public struct EvaluationError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Images in memory with the class each was made or labelled as, as the evaluation reads them.
public struct LabelledImages {
    /// [N, C, S, S] in [-1, 1].
    public var images: Tensor
    /// Names of the labels.
    public var classNames: [String]
    /// Per image, an index into `classNames` (nil: no class, e.g. an unconditional sample).
    public var labels: [Int?]
    /// The folder or builtin name it came from.
    public var source: String
    /// A hash of the source's content (see `ContentHash`), the probe cache's key.
    public var contentKey: String

    public init(images: Tensor, classNames: [String], labels: [Int?], source: String, contentKey: String) {
        precondition(images.rank == 4 && images.shape[0] == labels.count, "LabelledImages: \(images.shape) with \(labels.count) labels")
        self.images = images; self.classNames = classNames; self.labels = labels
        self.source = source; self.contentKey = contentKey
    }

    public var count: Int { labels.count }
    public var channels: Int { images.shape[1] }

    /// The images at `indices`, in that order.
    public func subset(_ indices: [Int]) -> LabelledImages {
        let per = images.count / Swift.max(1, count)
        let x = Tensor.zeros([indices.count] + Array(images.shape.dropFirst()))
        for (k, i) in indices.enumerated() { (x.data + k * per).update(from: images.data + i * per, count: per) }
        return LabelledImages(images: x, classNames: classNames, labels: indices.map { labels[$0] }, source: source, contentKey: contentKey)
    }

    /// The same images with labels re-expressed in `names` (matched by name).
    /// - Throws: `EvaluationError` naming the classes `names` lacks.
    public func relabelled(to names: [String]) throws -> LabelledImages {
        if names == classNames { return self }
        let index = Dictionary(names.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        let unknown = Set(labels.compactMap { $0 }.map { classNames[$0] }).filter { index[$0] == nil }
        guard unknown.isEmpty else {
            throw EvaluationError("\(source): classes \(unknown.sorted().joined(separator: ", ")) are not classes of the real set (\(names.joined(separator: ", ")))")
        }
        var out = self
        out.labels = labels.map { $0.map { index[classNames[$0]]! } }
        out.classNames = names
        return out
    }

    /// Every image as one row: [N, C·S·S] (a view).
    public var pixelRows: Tensor { images.reshaped([count, images.count / Swift.max(1, count)]) }
}

/// Where evaluation images come from: a folder, or a built-in set.
public enum ImageSource {
    /// The built-in sets: Fashion-MNIST's training and test splits (28×28 centred on the canvas,
    /// as `FashionMNIST` feeds the image models).
    public static let builtins = ["builtin:fashion-mnist", "builtin:fashion-mnist-test"]
    /// How many images a built-in set gives when no limit is set.
    public static let builtinDefaultLimit = 1000

    /// Loads a set, resized to size × size.
    ///
    /// A folder is `DIR/<class>/*.png`, or flat `DIR/*.png` where a file's class is what follows
    /// the first '-' of its name (`0007-sneaker.png`, as `diffuse generate image --out DIR`
    /// writes) and a name without '-' has no class.
    /// - Parameters:
    ///   - channels: 1 or 3, or nil to follow the files (colour if any is).
    ///   - limit: at most this many images, a random subset drawn with `seed` (default: all of a
    ///     folder, `builtinDefaultLimit` of a built-in set).
    public static func load(_ spec: String, channels: Int?, size: Int, limit: Int?, seed: UInt64) throws -> LabelledImages {
        if spec.hasPrefix("builtin:") {
            guard builtins.contains(spec) else {
                throw EvaluationError("\(spec): unknown built-in set (known: \(builtins.joined(separator: ", ")))")
            }
            let data = try FashionMNIST(train: spec == "builtin:fashion-mnist", size: size)
            let idx = choose(Swift.min(limit ?? builtinDefaultLimit, data.count), from: data.count, seed: seed)
            let (gray, labels) = try data.batch(idx)
            let x = channels == 3 ? gray.broadcast(to: [idx.count, 3, size, size]) : gray
            let prefix = spec == "builtin:fashion-mnist" ? "train" : "t10k"
            let files = ["images-idx3-ubyte.gz", "labels-idx1-ubyte.gz"].map {
                FashionMNIST.defaultDirectory.appendingPathComponent("\(prefix)-\($0)")
            }
            return LabelledImages(images: x, classNames: FashionMNIST.names, labels: labels.map { Optional($0) }, source: spec,
                                  contentKey: ContentHash.files(files, root: FashionMNIST.defaultDirectory, salt: spec))
        }
        let root = URL(fileURLWithPath: spec)
        let folder = try ImageFolder(root, channels: channels, size: size)
        var names = folder.classNames
        var labelOf: [Int?] = folder.files.map { $0.label }
        if names.isEmpty { (names, labelOf) = flatLabels(folder.files.map(\.url)) }
        let idx = choose(Swift.min(limit ?? folder.count, folder.count), from: folder.count, seed: seed)
        let (x, _) = try folder.batch(idx)
        return LabelledImages(images: x, classNames: names, labels: idx.map { labelOf[$0] }, source: spec,
                              contentKey: ContentHash.files(folder.files.map(\.url), root: root, salt: "folder"))
    }

    /// Classes of the files of a flat folder: what follows the first '-' of a file's name
    /// (`0007-sneaker.png`, as `diffuse generate image|video --out DIR` names them); nil for a
    /// name without '-'. Class names sorted → labels.
    static func flatLabels(_ urls: [URL]) -> (names: [String], labels: [Int?]) {
        let parsed = urls.map { url -> String? in
            let stem = url.deletingPathExtension().lastPathComponent
            return stem.split(separator: "-", maxSplits: 1).dropFirst().first.map(String.init)
        }
        let names = Array(Set(parsed.compactMap { $0 })).sorted()
        let index = Dictionary(names.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        return (names, parsed.map { $0.flatMap { index[$0] } })
    }

    /// k of 0..<n: all of them in order when k == n, else a seeded random subset in ascending order.
    static func choose(_ k: Int, from n: Int, seed: UInt64) -> [Int] {
        if k >= n { return Array(0..<n) }
        var rng = SplitMix64(seed: seed)
        return rng.sample(k, from: n).sorted()
    }
}

/// Content hashes that key the probe cache: FNV-1a (64-bit) over the sorted lines
/// "relative path, size in bytes, modification time" of every file of a set. Cheap to recompute
/// (no file is read), and any added, removed, renamed, rewritten or touched file changes it.
/// Not a cryptographic hash: it names cache entries, it does not defend against anyone.
public enum ContentHash {
    public static func fnv1a64(_ s: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h
    }

    public static func hex(_ s: String) -> String {
        let v = String(fnv1a64(s), radix: 16)
        return String(repeating: "0", count: 16 - v.count) + v
    }

    public static func files(_ urls: [URL], root: URL, salt: String) -> String {
        let base = root.standardizedFileURL.path
        let lines = urls.map { url -> String in
            var rel = url.standardizedFileURL.path
            if rel.hasPrefix(base) { rel = String(rel.dropFirst(base.count)) }
            let attributes = (try? FileManager.default.attributesOfItem(atPath: url.path)) ?? [:]
            let size = (attributes[.size] as? NSNumber)?.int64Value ?? -1
            let time = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            return "\(rel)\t\(size)\t\(time)"
        }.sorted()
        return hex(([salt] + lines).joined(separator: "\n"))
    }
}
