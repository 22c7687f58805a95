import Foundation
import Tensor

/// A labelled image set the trainer can draw batches from. Samples are [C, H, W] in [-1, 1].
public protocol ImageDataset {
    var count: Int { get }
    var channels: Int { get }
    var size: (height: Int, width: Int) { get }
    /// Class names by index (empty for an unconditional set).
    var classNames: [String] { get }
    /// Writes sample i into `dst` ([C, H, W] floats) and returns its label (0 when unconditional).
    func load(_ i: Int, into dst: UnsafeMutablePointer<Float>) throws -> Int
}

extension ImageDataset {
    /// A batch [N, C, H, W] and its labels for the given indices.
    public func batch(_ indices: [Int]) throws -> (Tensor, [Int]) {
        let per = channels * size.height * size.width
        let x = Tensor.zeros([indices.count, channels, size.height, size.width])
        var labels: [Int] = []
        for (k, i) in indices.enumerated() { labels.append(try load(i, into: x.data + k * per)) }
        return (x, labels)
    }
}

/// Fashion-MNIST from Debian's dataset-fashion-mnist (IDX files, gzip'd): 60,000 training and
/// 10,000 test images of 28×28, ten classes. Centred on a canvas of `size` (default 32, as U-Nets
/// want sizes divisible by their down-sampling) filled with the background value −1.
public final class FashionMNIST: ImageDataset {
    public static let defaultDirectory = URL(fileURLWithPath: "/usr/share/datasets/fashion-mnist")
    public static let names = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]

    public let count: Int
    public let channels = 1
    public let size: (height: Int, width: Int)
    public var classNames: [String] { Self.names }
    private let pixels: [UInt8]
    private let labels: [UInt8]

    public init(train: Bool = true, directory: URL = FashionMNIST.defaultDirectory, size: Int = 32) throws {
        let prefix = train ? "train" : "t10k"
        let imagesURL = directory.appendingPathComponent("\(prefix)-images-idx3-ubyte.gz")
        let labelsURL = directory.appendingPathComponent("\(prefix)-labels-idx1-ubyte.gz")
        let (idims, ibytes) = try IDXReader.read(imagesURL)
        let (ldims, lbytes) = try IDXReader.read(labelsURL)
        guard idims.count == 3, idims[1] == 28, idims[2] == 28 else {
            throw IDXError(file: imagesURL.path, reason: "expected N×28×28 images, found \(idims)")
        }
        guard ldims.count == 1, ldims[0] == idims[0] else {
            throw IDXError(file: labelsURL.path, reason: "\(ldims.first ?? 0) labels for \(idims[0]) images")
        }
        if let bad = lbytes.first(where: { $0 > 9 }) {
            throw IDXError(file: labelsURL.path, reason: "label \(bad) outside 0...9")
        }
        guard size >= 28 else { throw IDXError(file: imagesURL.path, reason: "canvas \(size) smaller than 28") }
        count = idims[0]
        pixels = ibytes
        labels = lbytes
        self.size = (size, size)
    }

    public func label(_ i: Int) -> Int { Int(labels[i]) }

    public func load(_ i: Int, into dst: UnsafeMutablePointer<Float>) throws -> Int {
        precondition(i >= 0 && i < count, "Fashion-MNIST index \(i) outside 0..<\(count)")
        let s = size.height, off = (s - 28) / 2
        dst.initialize(repeating: -1, count: s * s)
        pixels.withUnsafeBufferPointer { p in
            let src = p.baseAddress! + i * 784
            for y in 0..<28 {
                for x in 0..<28 { dst[(y + off) * s + x + off] = Float(src[y * 28 + x]) / 127.5 - 1 }
            }
        }
        return Int(labels[i])
    }
}

extension Tensor {
    /// Mirrors, in place, the samples of a batch [N, C, H, W] whose `flags` are set left–right
    /// (a data-augmentation step; the tensor must not be part of a graph).
    func flipWidth(where flags: [Bool]) {
        precondition(rank == 4 && flags.count == shape[0], "flipWidth: \(shape) with \(flags.count) flags")
        let w = shape[3], rows = shape[1] * shape[2], per = rows * w
        for (n, f) in flags.enumerated() where f {
            let base = data + n * per
            for r in 0..<rows {
                let row = base + r * w
                var a = 0, b = w - 1
                while a < b { let t = row[a]; row[a] = row[b]; row[b] = t; a += 1; b -= 1 }
            }
        }
    }
}
