import Foundation
import Tensor

/// Images in a folder: `DIR/<class>/*.png` (class names sorted → labels), or PNGs directly in
/// DIR (unconditional). Files are read when a batch needs them (large folders are streamed),
/// converted to gray or RGB, centre-cropped to a square and resized (bilinear) to `size`.
/// An unreadable file is skipped with a warning and counted; it never stops a run.
public final class ImageFolder: ImageDataset {
    public let root: URL
    public let files: [(url: URL, label: Int)]
    public let classNames: [String]
    public let channels: Int
    public let size: (height: Int, width: Int)
    /// Files that could not be read so far, and where the warnings go.
    public private(set) var skipped = Set<String>()
    public var warn: (String) -> Void = { FileHandle.standardError.write(Data(("warning: " + $0 + "\n").utf8)) }

    /// - Parameter channels: 1 (gray) or 3 (RGB); nil picks 3 when any of the first 32 files
    ///   (spread over the classes) is in colour, else 1.
    public init(_ root: URL, channels: Int?, size: Int) throws {
        precondition(channels == nil || channels == 1 || channels == 3, "ImageFolder: channels must be 1 or 3")
        let folder = try ClassFolder(root, extensions: ["png"])
        self.root = root
        self.size = (size, size)
        files = folder.files
        classNames = folder.classNames
        let list = files
        if let channels {
            self.channels = channels
        } else {
            let step = Swift.max(1, list.count / 32)
            let probe = stride(from: 0, to: list.count, by: step).prefix(32).map { list[$0].url }
            self.channels = probe.contains { (try? PNGCodec.isColor($0)) == true } ? 3 : 1
        }
    }

    public var count: Int { files.count }

    public func load(_ i: Int, into dst: UnsafeMutablePointer<Float>) throws -> Int {
        let (url, label) = files[i]
        let s = size.height
        do {
            let img = try PNGCodec.read(url, mode: channels == 1 ? .gray : .rgb)  // [C, H, W] in [-1, 1]
            Self.cropResize(img, side: s, into: dst)
        } catch {
            if !skipped.contains(url.path) { skipped.insert(url.path); warn("skipping \(error)") }
            dst.initialize(repeating: -1, count: channels * s * s)
        }
        return label
    }

    /// Centre square crop, bilinear resize to side × side (half-pixel centres, as PIL/torch).
    public static func cropResize(_ img: Tensor, side: Int, into dst: UnsafeMutablePointer<Float>) {
        cropResize(img, height: side, width: side, into: dst)
    }

    /// The centre of `img` [C, h, w] with the aspect of height × width, resized bilinearly into
    /// `dst` ([C, height, width] floats).
    public static func cropResize(_ img: Tensor, height: Int, width: Int, into dst: UnsafeMutablePointer<Float>) {
        let c = img.shape[0], h = img.shape[1], w = img.shape[2]
        // The largest centred crop of the target's aspect.
        var ch = h, cw = w
        if w * height > h * width { cw = Swift.max(1, (h * width + height / 2) / height) } else { ch = Swift.max(1, (w * height + width / 2) / width) }
        let y0 = (h - ch) / 2, x0 = (w - cw) / 2
        let scaleY = Float(ch) / Float(height), scaleX = Float(cw) / Float(width)
        for k in 0..<c {
            let plane = img.data + k * h * w
            for y in 0..<height {
                let sy = Swift.max(0, Swift.min(Float(ch - 1), (Float(y) + 0.5) * scaleY - 0.5))
                let iy = Int(sy), fy = sy - Float(iy), iy1 = Swift.min(iy + 1, ch - 1)
                for x in 0..<width {
                    let sx = Swift.max(0, Swift.min(Float(cw - 1), (Float(x) + 0.5) * scaleX - 0.5))
                    let ix = Int(sx), fx = sx - Float(ix), ix1 = Swift.min(ix + 1, cw - 1)
                    let p = { (yy: Int, xx: Int) in plane[(y0 + yy) * w + x0 + xx] }
                    let top = p(iy, ix) * (1 - fx) + p(iy, ix1) * fx
                    let bottom = p(iy1, ix) * (1 - fx) + p(iy1, ix1) * fx
                    dst[(k * height + y) * width + x] = top * (1 - fy) + bottom * fy
                }
            }
        }
    }
}
