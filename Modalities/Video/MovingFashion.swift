import Foundation
import Tensor
import Image
import Workflow

/// Moving-MNIST-style clips (Srivastava et al. 2015) with Fashion-MNIST items: one or two items
/// of one class glide in straight lines over a black square canvas and bounce off its edges.
/// The label is the items' class. Every clip depends only on (seed, class, index).
public enum MovingFashion {
    public struct Options: Sendable, Equatable {
        /// Canvas side (32 or 64 are the usual ones).
        public var size = 32
        public var frames = 16
        public var fps: Double = 8
        /// Item side: nil picks 28 (the Fashion-MNIST size) on canvases of 56 or more, else 14.
        public var itemSize: Int? = nil
        /// Items per clip: 1...maxItems, drawn per clip.
        public var maxItems = 2
        /// Speed range in pixels per frame: nil picks size/32 ... size/16.
        public var speed: ClosedRange<Double>? = nil
        public var seed: UInt64 = 0
        public init() {}

        public var item: Int { itemSize ?? (size >= 56 ? 28 : 14) }
        public var speeds: ClosedRange<Double> { speed ?? (Double(size) / 32)...(Double(size) / 16) }

        public func validate() throws {
            func bad(_ r: String) -> Error { MediaError.invalidArgument(file: "moving-fashion", reason: r) }
            guard (8...512).contains(size) else { throw bad("canvas size \(size) outside 8...512") }
            guard (1...1000).contains(frames) else { throw bad("\(frames) frames outside 1...1000") }
            guard fps > 0 && fps <= 1000 else { throw bad("fps \(fps) outside (0, 1000]") }
            guard item >= 1 && item < size else { throw bad("items of \(item) pixels do not move on a \(size)-pixel canvas") }
            guard (1...8).contains(maxItems) else { throw bad("items per clip \(maxItems) outside 1...8") }
            guard speeds.lowerBound >= 0 && speeds.upperBound <= Double(size - item) else {
                throw bad("speed \(speeds) must lie within 0...\(size - item) pixels per frame")
            }
        }
    }

    /// One clip with how it was made.
    public struct Clip {
        /// [F, 1, size, size] in [-1, 1] (background −1).
        public var frames: Tensor
        public var label: Int
        /// Source image of each item (an index into the item set).
        public var items: [Int]
        /// Top-left corner of each item in each frame: positions[item][frame] = (x, y), in
        /// 0...size − itemSize.
        public var positions: [[(x: Int, y: Int)]]
    }

    /// Where each item is in each frame: straight lines from a random start at a random speed
    /// and direction, mirrored at the walls (`limit` = canvas − item). One draw of 4 uniforms per item.
    static func paths(count: Int, frames: Int, limit: Int, speeds: ClosedRange<Double>, uniforms u: [Float]) -> [[(x: Int, y: Int)]] {
        let l = Double(limit)
        return (0..<count).map { k in
            var x = Double(u[4 * k]) * l, y = Double(u[4 * k + 1]) * l
            let angle = 2 * Double.pi * Double(u[4 * k + 2])
            let speed = speeds.lowerBound + (speeds.upperBound - speeds.lowerBound) * Double(u[4 * k + 3])
            var vx = speed * Foundation.cos(angle), vy = speed * Foundation.sin(angle)
            var out: [(x: Int, y: Int)] = []
            for _ in 0..<frames {
                out.append((Swift.min(limit, Swift.max(0, Int(x.rounded()))), Swift.min(limit, Swift.max(0, Int(y.rounded())))))
                x += vx; y += vy
                // A bounce: the overshoot is mirrored back inside and the velocity flips.
                if x < 0 { x = -x; vx = -vx } else if x > l { x = 2 * l - x; vx = -vx }
                if y < 0 { y = -y; vy = -vy } else if y > l { y = 2 * l - y; vy = -vy }
            }
            return out
        }
    }

    /// Clip `index` of class `label`, its items drawn from `pool` (indices into `items`, all of
    /// that class). `items` is a set of square gray images [1, s, s] in [-1, 1] (Fashion-MNIST
    /// items scaled to the item size).
    public static func clip(index: Int, label: Int, pool: [Int], items: ItemImages, options o: Options) -> Clip {
        precondition(!pool.isEmpty, "MovingFashion: no items of class \(label)")
        var rng = RandomGenerator(seed: o.seed, firstSample: label &* 10_000_000 &+ index)
        let u = rng.uniform([1, 1 + 5 * o.maxItems]).scalars
        let count = 1 + Swift.min(o.maxItems - 1, Int(u[0] * Float(o.maxItems)))
        let chosen = (0..<count).map { pool[Swift.min(pool.count - 1, Int(u[1 + $0] * Float(pool.count)))] }
        let s = items.side, limit = o.size - s
        let positions = paths(count: count, frames: o.frames, limit: limit, speeds: o.speeds,
                              uniforms: Array(u[(1 + o.maxItems)...]))
        let plane = o.size * o.size
        let frames = Tensor.full([o.frames, 1, o.size, o.size], -1)
        for (k, item) in chosen.enumerated() {
            let img = items.image(item)
            for f in 0..<o.frames {
                let (px, py) = positions[k][f]
                let dst = frames.data + f * plane
                // Items are drawn with max (as Moving MNIST): overlapping items both stay visible.
                for y in 0..<s {
                    for x in 0..<s {
                        let i = (py + y) * o.size + px + x
                        dst[i] = Swift.max(dst[i], img[y * s + x])
                    }
                }
            }
        }
        return Clip(frames: frames, label: label, items: chosen, positions: positions)
    }

    /// Fashion-MNIST items at the item size, grouped by class.
    public final class ItemImages {
        public let side: Int
        public let labels: [Int]
        private let pixels: [Float]

        /// Images [1, s, s] in [-1, 1] and their labels (for tests and other item sets).
        public init(side: Int, pixels: [Float], labels: [Int]) {
            precondition(pixels.count == labels.count * side * side, "ItemImages: \(pixels.count) pixels for \(labels.count) items of \(side)²")
            self.side = side; self.pixels = pixels; self.labels = labels
        }

        /// The first `limit` items of a Fashion-MNIST split, resized (bilinear; 28 → 14 is the
        /// exact 2×2 mean) to `side`.
        public convenience init(fashion: FashionMNIST, side: Int, limit: Int? = nil) throws {
            let n = Swift.min(fashion.count, limit ?? fashion.count)
            var px = [Float](repeating: 0, count: n * side * side)
            var labels: [Int] = []
            let raw = Tensor.zeros([1, fashion.size.height, fashion.size.width])
            try px.withUnsafeMutableBufferPointer { dst in
                for i in 0..<n {
                    labels.append(try fashion.load(i, into: raw.data))
                    if side == fashion.size.height {
                        (dst.baseAddress! + i * side * side).update(from: raw.data, count: side * side)
                    } else {
                        ImageFolder.cropResize(raw, side: side, into: dst.baseAddress! + i * side * side)
                    }
                }
            }
            self.init(side: side, pixels: px, labels: labels)
        }

        public var count: Int { labels.count }
        /// Item i's side × side pixels, row-major.
        public func image(_ i: Int) -> [Float] {
            let n = side * side
            return Array(pixels[(i * n)..<((i + 1) * n)])
        }
        /// Indices of the items of each label 0..<classes.
        public func pools(classes: Int) -> [[Int]] {
            var out = [[Int]](repeating: [], count: classes)
            for (i, l) in labels.enumerated() where l >= 0 && l < classes { out[l].append(i) }
            return out
        }
    }

    /// Where `builtin:moving-fashion` lives: $XDG_CACHE_HOME/diffuse/moving-fashion (else
    /// ~/.cache/diffuse/moving-fashion).
    public static var builtinDirectory: URL { UserCache.folder("moving-fashion") }

    /// Renders `builtin:moving-fashion` (1000 clips per class, items from the first 20,000
    /// Fashion-MNIST training images) into `builtinDirectory`, keeping the clips already there.
    /// Returns the folder and the number of clips written.
    @discardableResult
    public static func renderBuiltin(options o: Options = Options(),
                                     progress: (Int, Int) -> Void = { _, _ in }) throws -> (folder: URL, written: Int) {
        let dir = builtinDirectory
        let items = try ItemImages(fashion: try FashionMNIST(train: true, size: 28), side: o.item, limit: 20_000)
        return (dir, try write(to: dir, perClass: 1000, options: o, items: items, progress: progress))
    }

    /// Writes `perClass` clips of every Fashion-MNIST class to `out/<class name>/<index>.mp4`
    /// (H.264 through our codec, MPEG-4 Part 2 where libx264 is missing). Files already there are
    /// kept, so an interrupted run resumes. Returns the number of files written.
    @discardableResult
    public static func write(to out: URL, perClass: Int, options o: Options, items: ItemImages,
                             classNames: [String] = FashionMNIST.names, progress: (Int, Int) -> Void = { _, _ in }) throws -> Int {
        try o.validate()
        guard items.side == o.item else {
            throw MediaError.invalidArgument(file: out.path, reason: "items are \(items.side) pixels, the options ask for \(o.item)")
        }
        let pools = items.pools(classes: classNames.count)
        let fm = FileManager.default
        var written = 0
        let total = classNames.count * perClass
        try fm.createDirectory(at: out, withIntermediateDirectories: true)
        try ClassFolder.writeOrder(classNames, in: out)
        for (label, name) in classNames.enumerated() {
            guard !pools[label].isEmpty else { throw MediaError.invalidData(file: out.path, reason: "no items of class \(name)") }
            let dir = out.appendingPathComponent(name)
            try fm.createDirectory(at: dir, withIntermediateDirectories: true)
            for k in 0..<perClass {
                let done = label * perClass + k
                if done % 50 == 0 { progress(done, total) }
                let url = dir.appendingPathComponent(String(format: "%05d.mp4", k))
                if fm.fileExists(atPath: url.path) { continue }
                let c = clip(index: k, label: label, pool: pools[label], items: items, options: o)
                try VideoCodec.writeMP4(c.frames, fps: o.fps, to: url, crf: 12, preset: .medium)
                written += 1
            }
        }
        progress(total, total)
        return written
    }
}
