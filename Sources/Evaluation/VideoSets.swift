import Foundation
import Tensor
import Image
import Video

/// Clips in memory as the video evaluation reads them: every frame an image labelled with its
/// clip's class, so the image evaluation's probe, features and set operations apply unchanged.
public struct LabelledClips {
    /// Every frame of every clip, clip by clip: [(N F), C, S, S] in [-1, 1]; the label of a
    /// frame is its clip's class.
    public var frames: LabelledImages
    /// F: frames of each clip.
    public let framesPerClip: Int

    public init(frames: LabelledImages, framesPerClip: Int) {
        precondition(framesPerClip >= 1 && frames.count % framesPerClip == 0,
                     "LabelledClips: \(frames.count) frames are not whole clips of \(framesPerClip)")
        self.frames = frames
        self.framesPerClip = framesPerClip
    }

    /// N: clips.
    public var count: Int { frames.count / framesPerClip }
    public var source: String { frames.source }
    public var classNames: [String] { frames.classNames }
    public var channels: Int { frames.channels }
    public var size: Int { frames.images.shape[2] }
    /// Class of each clip (that of its first frame).
    public var labels: [Int?] { stride(from: 0, to: frames.count, by: framesPerClip).map { frames.labels[$0] } }

    /// Clip i: [F, C, S, S] (a copy), as `VideoMetrics` reads clips.
    public func clip(_ i: Int) -> Tensor {
        precondition(i >= 0 && i < count, "clip \(i) outside 0..<\(count)")
        let per = frames.images.count / frames.count * framesPerClip
        let out = Tensor.zeros([framesPerClip] + Array(frames.images.shape.dropFirst()))
        out.data.update(from: frames.images.data + i * per, count: per)
        return out
    }

    /// Indices of the frames of the given clips, clip by clip.
    public func frameIndices(_ clips: [Int]) -> [Int] {
        clips.flatMap { c in (c * framesPerClip)..<((c + 1) * framesPerClip) }
    }

    /// The clips at `indices`, in that order.
    public func subset(_ indices: [Int]) -> LabelledClips {
        LabelledClips(frames: frames.subset(frameIndices(indices)), framesPerClip: framesPerClip)
    }

    /// The same clips with labels re-expressed in `names` (see `LabelledImages.relabelled`).
    public func relabelled(to names: [String]) throws -> LabelledClips {
        LabelledClips(frames: try frames.relabelled(to: names), framesPerClip: framesPerClip)
    }
}

/// Where evaluation clips come from: a folder, or the built-in moving-fashion set.
public enum VideoSource {
    public static let builtins = ["builtin:moving-fashion"]
    /// How many clips the built-in set gives when no limit is set.
    public static let builtinDefaultLimit = 1000
    /// The most frames per clip an evaluation reads (a longer first clip sets this many).
    public static let maxFrames = 1000

    /// Frames per clip and frame side of a set: the built-in set's options, else its first
    /// file's frame count (at most `maxFrames`) and shorter side (the other set is decoded to
    /// the real set's).
    public static func geometry(_ spec: String) throws -> (frames: Int, size: Int) {
        if spec.hasPrefix("builtin:") {
            try checkBuiltin(spec)
            let o = MovingFashion.Options()
            return (o.frames, o.size)
        }
        let folder = try ClassFolder(URL(fileURLWithPath: spec), extensions: VideoFolder.extensions)
        // Decoded no further than a clip can be used: `load` cuts every clip to this many frames.
        let first = try VideoCodec.read(folder.files[0].url, mode: .gray, maxFrames: maxFrames).frames  // [F, 1, H, W]
        return (first.shape[0], Swift.min(first.shape[2], first.shape[3]))
    }

    /// Loads a set of clips, each cut or held to `frames` frames (every stored frame, no
    /// resampling in time) and each frame centre-cropped and resized to size × size.
    ///
    /// A folder is `DIR/<class>/*.mp4|gif|webm|...`, or flat `DIR/*.mp4` where a file's class is
    /// what follows the first '-' of its name (`0007-bag.mp4`, as `diffuse generate video --out
    /// DIR` writes). `builtin:moving-fashion` is rendered into its cache folder the first time.
    /// Unreadable files are left out (with a warning through `log`).
    /// - Parameters:
    ///   - channels: 1 or 3, or nil to follow the files (colour if any is).
    ///   - limit: at most this many clips, a random subset drawn with `seed` (default: all of a
    ///     folder, `builtinDefaultLimit` of the built-in set).
    ///   - progress: (done, total) while the built-in set renders.
    public static func load(_ spec: String, channels: Int?, frames: Int, size: Int, limit: Int?, seed: UInt64,
                            progress: (Int, Int) -> Void = { _, _ in },
                            log: @escaping (String) -> Void = { _ in }) throws -> LabelledClips {
        var root = URL(fileURLWithPath: spec)
        var defaultLimit: Int? = nil
        if spec.hasPrefix("builtin:") {
            try checkBuiltin(spec)
            root = try MovingFashion.renderBuiltin(progress: progress).folder
            defaultLimit = builtinDefaultLimit
        }
        let folder = try VideoFolder(root, frames: frames, size: size, channels: channels, fps: nil)
        folder.warn = { log("warning: " + $0) }
        var names = folder.classNames
        var labelOf: [Int?] = folder.files.map { $0.label }
        if names.isEmpty { (names, labelOf) = ImageSource.flatLabels(folder.files.map(\.url)) }
        let chosen = ImageSource.choose(Swift.min(limit ?? defaultLimit ?? folder.count, folder.count), from: folder.count, seed: seed)

        // [C, F, S, S] per clip as decoded -> [F, C, S, S] per clip, clip by clip.
        let c = folder.channels, plane = size * size, per = c * frames * plane
        var pixels = [Float](repeating: 0, count: chosen.count * per)
        var kept: [Int] = []
        for i in chosen {
            guard let clip = folder.clip(i) else { continue }
            let base = kept.count * per
            for f in 0..<frames {
                for ch in 0..<c {
                    let dst = base + (f * c + ch) * plane, src = (ch * frames + f) * plane
                    pixels.replaceSubrange(dst..<(dst + plane), with: clip[src..<(src + plane)])
                }
            }
            kept.append(i)
        }
        guard !kept.isEmpty else { throw EvaluationError("\(spec): none of its \(chosen.count) chosen video files could be read") }
        pixels.removeSubrange((kept.count * per)...)
        let images = Tensor(shape: [kept.count * frames, c, size, size], scalars: pixels)
        let labels = kept.flatMap { i in [Int?](repeating: labelOf[i], count: frames) }
        let key = ContentHash.files(folder.files.map(\.url), root: root, salt: spec.hasPrefix("builtin:") ? spec : "video folder")
        return LabelledClips(frames: LabelledImages(images: images, classNames: names, labels: labels, source: spec, contentKey: key),
                             framesPerClip: frames)
    }

    static func checkBuiltin(_ spec: String) throws {
        guard builtins.contains(spec) else {
            throw EvaluationError("\(spec): unknown built-in set (known: \(builtins.joined(separator: ", ")))")
        }
    }
}
