import Foundation
import Tensor
import Workflow

extension FashionMNIST {
    /// Writes images as PNG class folders, `dir/<class name>/<index>.png` (index: the image's
    /// position in its split, five digits), 8-bit gray on this set's canvas — the 28×28 image
    /// centred on `size` × `size` black (32 × 32 by default), exactly the pixels `FashionMNIST`
    /// feeds a model, so a folder made here and `builtin:fashion-mnist` train and evaluate alike.
    ///
    /// - Parameters:
    ///   - perClass: at most this many images of each class (nil: all of them).
    ///   - offset: skip the first `offset` images of each class (in file order), so calls with
    ///     different offsets make disjoint sets.
    ///   - onFile: (written, total) after each file.
    /// - Returns: the number of files written.
    @discardableResult
    public func export(to dir: URL, perClass: Int? = nil, offset: Int = 0,
                       onFile: (Int, Int) -> Void = { _, _ in }) throws -> Int {
        precondition(offset >= 0 && (perClass ?? 0) >= 0, "export: offset \(offset), perClass \(perClass ?? -1)")
        var seen = [Int](repeating: 0, count: Self.names.count)
        var chosen: [Int] = []
        for i in 0..<count {
            let c = label(i)
            defer { seen[c] += 1 }
            if seen[c] >= offset && seen[c] < offset + (perClass ?? Int.max - offset) { chosen.append(i) }
        }
        for name in Self.names {
            try FileManager.default.createDirectory(at: dir.appendingPathComponent(name), withIntermediateDirectories: true)
        }
        try ClassFolder.writeOrder(Self.names, in: dir)
        let image = Tensor.zeros([1, size.height, size.width])
        for (k, i) in chosen.enumerated() {
            let c = try load(i, into: image.data)
            let url = dir.appendingPathComponent(Self.names[c]).appendingPathComponent(String(format: "%05d.png", i))
            try PNGCodec.write(image, to: url)
            onFile(k + 1, chosen.count)
        }
        return chosen.count
    }
}
