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
        let c = img.shape[0], h = img.shape[1], w = img.shape[2]
        let m = Swift.min(h, w), y0 = (h - m) / 2, x0 = (w - m) / 2
        let scale = Float(m) / Float(side)
        for ch in 0..<c {
            let plane = img.data + ch * h * w
            for y in 0..<side {
                let sy = Swift.max(0, Swift.min(Float(m - 1), (Float(y) + 0.5) * scale - 0.5))
                let iy = Int(sy), fy = sy - Float(iy), iy1 = Swift.min(iy + 1, m - 1)
                for x in 0..<side {
                    let sx = Swift.max(0, Swift.min(Float(m - 1), (Float(x) + 0.5) * scale - 0.5))
                    let ix = Int(sx), fx = sx - Float(ix), ix1 = Swift.min(ix + 1, m - 1)
                    let p = { (yy: Int, xx: Int) in plane[(y0 + yy) * w + x0 + xx] }
                    let top = p(iy, ix) * (1 - fx) + p(iy, ix1) * fx
                    let bottom = p(iy1, ix) * (1 - fx) + p(iy1, ix1) * fx
                    dst[(ch * side + y) * side + x] = top * (1 - fy) + bottom * fy
                }
            }
        }
    }
}
