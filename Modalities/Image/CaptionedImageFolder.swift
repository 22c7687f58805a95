import Foundation
import Tensor

/// A captioned image folder (`CaptionFolder`: metadata.jsonl or metadata.csv beside PNGs, the
/// Hugging Face imagefolder convention, as `diffuse dataset emoji` writes it) as text-to-image
/// training data: RGB images [3, H, W] in [-1, 1] (alpha composited on white) and their captions.
///
/// Every image must have the size of the first (or `size`, when given): such a folder is made
/// at the size one trains at, so a file of another size is an error naming it and both sizes,
/// not something to resize silently. Files are read when a batch asks for them; `loadAll`
/// reads every image at once (bounded by `maxLoadAllFloats`).
public final class CaptionedImageFolder: ImageDataset {
    public let folder: CaptionFolder
    public let channels = 3
    public let size: (height: Int, width: Int)
    /// No class labels: the conditioning is the caption.
    public var classNames: [String] { [] }

    /// Most floats `loadAll` allocates (4 GB).
    public static let maxLoadAllFloats = 1 << 30

    /// - Parameters:
    ///   - size: the (height, width) every image must have; nil: the first image's.
    ///   - textColumn: the caption column ("text").
    public init(_ root: URL, size: (height: Int, width: Int)? = nil, textColumn: String = "text",
                metadata: URL? = nil) throws {
        folder = try CaptionFolder(root, metadata: metadata, textColumn: textColumn, extensions: ["png"])
        if let size {
            guard (1...16384).contains(size.height), (1...16384).contains(size.width) else {
                throw MediaError.invalidArgument(file: root.path, reason: "image size \(size.height)×\(size.width) outside 1...16384")
            }
            self.size = size
        } else {
            let first = try PNGCodec.readPixels(folder.items[0].url, mode: .rgb)
            self.size = (first.height, first.width)
        }
    }

    public var count: Int { folder.count }
    public var captions: [String] { folder.captions }
    public var items: [CaptionFolder.Item] { folder.items }

    /// Writes image i into `dst` ([3, H, W] floats in [-1, 1]); returns 0 (no class label).
    /// - Throws: `MediaError` naming the file (unreadable, or not `size`).
    public func load(_ i: Int, into dst: UnsafeMutablePointer<Float>) throws -> Int {
        precondition(i >= 0 && i < count, "CaptionedImageFolder: index \(i) outside 0..<\(count)")
        let item = folder.items[i]
        let pixels = try PNGCodec.readPixels(item.url, mode: .rgb, background: 255)
        guard pixels.height == size.height, pixels.width == size.width else {
            throw MediaError.invalidData(file: item.url.path, reason: "\(pixels.width)×\(pixels.height) pixels; the folder's images are \(size.width)×\(size.height) (\(folder.metadata.lastPathComponent) line \(item.line))")
        }
        let plane = size.height * size.width
        pixels.bytes.withUnsafeBufferPointer { src in
            for p in 0..<plane {
                for k in 0..<3 { dst[k * plane + p] = Float(src[p * 3 + k]) * (2.0 / 255.0) - 1 }
            }
        }
        return 0
    }

    /// Images [N, 3, H, W] in [-1, 1] and their captions, for the given indices.
    public func captionedBatch(_ indices: [Int]) throws -> (images: Tensor, captions: [String]) {
        let (x, _) = try batch(indices)
        return (x, indices.map { folder.items[$0].text })
    }

    /// Every image [N, 3, H, W] in [-1, 1] and every caption, in metadata order.
    public func loadAll() throws -> (images: Tensor, captions: [String]) {
        let floats = count.multipliedReportingOverflow(by: 3 * size.height * size.width)
        guard !floats.overflow, floats.partialValue <= Self.maxLoadAllFloats else {
            throw MediaError.limitExceeded(file: folder.metadata.path, reason: "\(count) images of \(size.width)×\(size.height) need more than \(Self.maxLoadAllFloats) floats; read batches instead")
        }
        return try captionedBatch(Array(0..<count))
    }
}
