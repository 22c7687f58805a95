import Foundation
import Tensor
import Image

/// Video clips in a folder: `DIR/<class>/*.mp4|webm|gif|...` (class names sorted → labels), or
/// the files directly in DIR (unconditional). Each clip is decoded with our codec, resampled in
/// time to `fps` (frames held or dropped), cut to its first `frames` frames (the last frame held
/// when shorter), centre-cropped to a square and resized to `size`, in gray or RGB. Clips are
/// decoded when a batch first needs them and kept while they fit in `cacheBytes`. An unreadable
/// file is skipped with a warning and counted: a batch that draws it takes the next readable clip.
public final class VideoFolder {
    public static let extensions: Set<String> = ["mp4", "m4v", "mov", "mkv", "webm", "avi", "gif"]

    public let root: URL
    public let files: [(url: URL, label: Int)]
    public let classNames: [String]
    public let frames: Int
    public let size: Int
    public let channels: Int
    public let fps: Double?
    public private(set) var skipped = Set<String>()
    public var warn: (String) -> Void = { FileHandle.standardError.write(Data(("warning: " + $0 + "\n").utf8)) }
    private var cache: [Int: [Float]] = [:]
    private let cacheLimit: Int

    /// - Parameters:
    ///   - channels: 1 (gray) or 3 (RGB); nil picks 3 when any of the first files (up to 8,
    ///     spread over the classes) is in colour, else 1.
    ///   - fps: the frame rate clips are resampled to (nil: every frame as stored).
    public init(_ root: URL, frames: Int, size: Int, channels: Int? = nil, fps: Double?, cacheBytes: Int = 1 << 30) throws {
        precondition(frames >= 1 && size >= 1, "VideoFolder: \(frames) frames of \(size)×\(size)")
        precondition(channels == nil || channels == 1 || channels == 3, "VideoFolder: channels must be 1 or 3")
        let folder = try ClassFolder(root, extensions: Self.extensions)
        self.root = root
        files = folder.files
        classNames = folder.classNames
        self.frames = frames
        self.size = size
        self.fps = fps
        if let channels {
            self.channels = channels
        } else {
            let list = folder.files
            let step = Swift.max(1, list.count / 8)
            self.channels = stride(from: 0, to: list.count, by: step).prefix(8).contains { (try? Self.isColor(list[$0].url)) == true } ? 3 : 1
        }
        cacheLimit = cacheBytes / Swift.max(1, 4 * frames * self.channels * size * size)
    }

    public var count: Int { files.count }
    public func label(_ i: Int) -> Int { files[i].label }

    /// Clip i as [C, F, size, size] floats in [-1, 1]; nil (warned once) when it cannot be read.
    public func clip(_ i: Int) -> [Float]? {
        if let c = cache[i] { return c }
        let url = files[i].url
        if skipped.contains(url.path) { return nil }
        do {
            let t = try Self.decode(url, frames: frames, size: size, channels: channels, fps: fps)
            let out = t.scalars
            if cache.count < cacheLimit { cache[i] = out }
            return out
        } catch {
            skipped.insert(url.path)
            warn("skipping \(error)")
            return nil
        }
    }

    /// A batch x [N, C, F, size, size] and its labels. A clip that cannot be read is replaced by
    /// the next readable one; throws only when no file in the folder can be read.
    public func batch(_ indices: [Int]) throws -> (Tensor, [Int]) {
        let per = channels * frames * size * size
        let x = Tensor.zeros([indices.count, channels, frames, size, size])
        var labels: [Int] = []
        for (k, i0) in indices.enumerated() {
            var i = i0, tries = 0
            while true {
                if let c = clip(i) {
                    c.withUnsafeBufferPointer { (x.data + k * per).update(from: $0.baseAddress!, count: per) }
                    labels.append(files[i].label)
                    break
                }
                tries += 1
                guard tries < count else {
                    throw MediaError.invalidData(file: root.path, reason: "none of its \(count) video files could be read")
                }
                i = (i + 1) % count
            }
        }
        return (x, labels)
    }

    /// One frame of each given clip as one-frame clips [N, C, 1, size, size] (joint training on
    /// images): frame `frameIndices[k]` of clip `indices[k]`.
    public func frameBatch(_ indices: [Int], frameIndices: [Int]) throws -> (Tensor, [Int]) {
        precondition(indices.count == frameIndices.count, "frameBatch: \(indices.count) clips, \(frameIndices.count) frames")
        let (clips, labels) = try batch(indices)
        let plane = size * size
        let x = Tensor.zeros([indices.count, channels, 1, size, size])
        for k in 0..<indices.count {
            let f = frameIndices[k]
            precondition(f >= 0 && f < frames, "frame \(f) outside 0..<\(frames)")
            for c in 0..<channels {
                (x.data + (k * channels + c) * plane)
                    .update(from: clips.data + ((k * channels + c) * frames + f) * plane, count: plane)
            }
        }
        return (x, labels)
    }

    /// A video file as [C, F, size, size] in [-1, 1]: resampled to `fps`, its first `frames`
    /// frames (the last one held when the file is shorter), each centre-cropped to a square and
    /// resized (bilinear) to `size`. Throws `MediaError` for unreadable files.
    public static func decode(_ url: URL, frames: Int, size: Int, channels: Int, fps: Double?) throws -> Tensor {
        let clip = try VideoCodec.read(url, fps: fps, mode: channels == 1 ? .gray : .rgb, maxFrames: frames)
        let src = clip.frames  // [F', C, H, W]
        let (n, h, w) = (src.shape[0], src.shape[2], src.shape[3])
        let plane = size * size
        let out = Tensor.zeros([channels, frames, size, size])
        let frame = Tensor.zeros([channels, size, size])
        for f in 0..<frames {
            let k = Swift.min(f, n - 1)
            let one = src.item(k)
            if h == size && w == size { frame.copyFrom(one) } else { ImageFolder.cropResize(one, side: size, into: frame.data) }
            for c in 0..<channels { (out.data + (c * frames + f) * plane).update(from: frame.data + c * plane, count: plane) }
        }
        return out
    }

    /// Whether a video's first frames are in colour (any pixel's channels differ by more than
    /// a codec's rounding).
    public static func isColor(_ url: URL) throws -> Bool {
        let t = try VideoCodec.read(url, width: 64, height: 64, mode: .rgb, maxFrames: 2).frames  // [F, 3, 64, 64]
        let plane = 64 * 64
        for f in 0..<t.shape[0] {
            let base = t.data + f * 3 * plane
            for p in 0..<plane {
                let r = base[p], g = base[plane + p], b = base[2 * plane + p]
                if Swift.max(Swift.abs(r - g), Swift.abs(g - b)) > 0.08 { return true }
            }
        }
        return false
    }
}
