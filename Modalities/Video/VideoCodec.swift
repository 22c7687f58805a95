import Foundation
import Media
import Tensor

/// A short video: `frames` [F, C, H, W] in [-1, 1] (C = 3 RGB or 1 gray) shown at `fps`.
public struct VideoClip {
    public var frames: Tensor
    public var fps: Double

    /// - Precondition: rank 4 and fps > 0.
    public init(frames: Tensor, fps: Double) {
        precondition(frames.rank == 4, "VideoClip: expected frames [F, C, H, W], got \(frames.shape)")
        precondition(fps > 0, "VideoClip: fps \(fps) must be positive")
        self.frames = frames
        self.fps = fps
    }
}

/// Video decoding (anything FFmpeg reads: MP4/H.264, WebM, AVI, GIF, ...) into tensors, and
/// encoding to MP4 (H.264 yuv420p through libx264, MPEG-4 Part 2 where libx264 is missing)
/// and animated GIF.
public enum VideoCodec {
    /// Largest inputs we decode; dimensions are checked before a decoder allocates.
    public struct Limits: Sendable {
        public var maxDimension: Int
        public var maxFrames: Int
        /// Decoded 8-bit bytes over all frames (the float tensor is 4× this).
        public var maxBytes: Int
        /// - Parameter maxBytes: default: 2^31, or a fifth of the memory budget if that is less
        ///   (the bytes and their float tensor must fit in it together).
        public init(maxDimension: Int = 16384, maxFrames: Int = 10_000, maxBytes: Int? = nil) {
            self.maxDimension = maxDimension
            self.maxFrames = maxFrames
            self.maxBytes = maxBytes ?? Swift.min(1 << 31, MemoryBudget.bytes / 5)
        }
    }

    public enum ColorMode: Sendable { case rgb, gray }

    /// Which MP4 encoder to use.
    public enum Encoder: String, CaseIterable, Sendable {
        /// libx264 when FFmpeg has it, otherwise MPEG-4 Part 2.
        case auto
        case h264
        case mpeg4
    }

    /// libx264 speed/size trade-off (ignored by MPEG-4 Part 2).
    public enum Preset: String, CaseIterable, Sendable {
        case ultrafast, superfast, veryfast, faster, fast, medium, slow, slower, veryslow
    }

    /// Decodes a video file into frames [F, C, H, W] in [-1, 1].
    /// - Parameters:
    ///   - fps: resample to this frame rate by holding/dropping frames (nil: every frame, at the
    ///     stream's own rate).
    ///   - width, height: scale to this size (bicubic); one of them alone keeps the aspect ratio.
    ///   - mode: RGB (C = 3) or gray (C = 1).
    ///   - maxFrames: stop after this many output frames (no error).
    /// - Throws: `MediaError` for an unreadable, corrupt, truncated or out-of-limits file, or
    ///   out-of-range arguments.
    public static func read(_ url: URL, fps: Double? = nil, width: Int? = nil, height: Int? = nil,
                            mode: ColorMode = .rgb, maxFrames: Int? = nil, limits: Limits = Limits()) throws -> VideoClip {
        let path = url.path
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw MediaError.cannotOpen(file: path, reason: "no readable file at this path")
        }
        if let fps, !(fps > 0 && fps <= 1000) {
            throw MediaError.invalidArgument(file: path, reason: "fps \(fps) must be in (0, 1000]")
        }
        for (name, v) in [("width", width), ("height", height)] {
            if let v { try checkArgument(v, 1...limits.maxDimension, name, file: path) }
        }
        if let maxFrames { try checkArgument(maxFrames, 1...limits.maxFrames, "maxFrames", file: path) }
        let req = FFmpeg.DecodeRequest(fps: fps, width: width, height: height, gray: mode == .gray,
                                       maxFrames: maxFrames, limits: limits)
        let raw = try FFmpeg.decode(path: path, req)
        return VideoClip(frames: tensor(raw), fps: raw.fps)
    }

    /// Encodes frames [F, C, H, W] in [-1, 1] (C = 1 or 3) as an MP4 (yuv420p, BT.601, moov at
    /// the front), atomically. Odd widths/heights are padded to even by repeating the last
    /// column/row (a decoder then returns the padded size).
    /// - Parameters:
    ///   - crf: quality, 0 (best) ... 51; 18 is visually near-lossless. MPEG-4 Part 2 uses a
    ///     fixed quantiser of about crf / 6.
    /// - Returns: the FFmpeg encoder used ("libx264" or "mpeg4").
    @discardableResult
    public static func writeMP4(_ frames: Tensor, fps: Double, to url: URL, crf: Int = 18,
                                preset: Preset = .medium, encoder: Encoder = .auto) throws -> String {
        try checkArgument(crf, 0...51, "crf", file: url.path)
        let raw = try bytes(frames, fps: fps, evenSize: true, file: url.path)
        var name = ""
        try MediaFile.write(to: url) { temp in
            name = try FFmpeg.encode(path: temp, file: url.path, frames: raw,
                                     .init(container: .mp4, crf: crf, preset: preset.rawValue, encoder: encoder))
        }
        return name
    }

    /// Writes frames [F, C, H, W] in [-1, 1] as an endlessly looping animated GIF, atomically.
    /// Gray frames are exact; colour goes through a fixed 252-colour palette with ordered dither.
    /// GIF delays are in 1/100 s, so the frame rate is rounded to that grid.
    public static func writeGIF(_ frames: Tensor, fps: Double, to url: URL) throws {
        let raw = try bytes(frames, fps: fps, evenSize: false, file: url.path)
        try MediaFile.write(to: url) { temp in
            _ = try FFmpeg.encode(path: temp, file: url.path, frames: raw,
                                  .init(container: .gif, crf: 0, preset: "", encoder: .auto))
        }
    }

    /// `writeMP4` for a clip at its own frame rate.
    @discardableResult
    public static func writeMP4(_ clip: VideoClip, to url: URL, crf: Int = 18, preset: Preset = .medium,
                                encoder: Encoder = .auto) throws -> String {
        try writeMP4(clip.frames, fps: clip.fps, to: url, crf: crf, preset: preset, encoder: encoder)
    }

    /// `writeGIF` for a clip at its own frame rate.
    public static func writeGIF(_ clip: VideoClip, to url: URL) throws {
        try writeGIF(clip.frames, fps: clip.fps, to: url)
    }

    // MARK: Conversions

    /// Output size for a source of sw×sh: the request, or the source; one side alone keeps the
    /// aspect ratio.
    static func outputSize(sourceWidth sw: Int, sourceHeight sh: Int, width: Int?, height: Int?) -> (Int, Int) {
        switch (width, height) {
        case let (w?, h?): return (w, h)
        case let (w?, nil): return (w, max(1, Int((Double(sh) * Double(w) / Double(sw)).rounded())))
        case let (nil, h?): return (max(1, Int((Double(sw) * Double(h) / Double(sh)).rounded())), h)
        case (nil, nil): return (sw, sh)
        }
    }

    /// [F, H, W, C] bytes -> [F, C, H, W] floats in [-1, 1].
    static func tensor(_ raw: FFmpeg.Frames) -> Tensor {
        let (f, h, w, c) = (raw.frameCount, raw.height, raw.width, raw.channels)
        let t = Tensor.zeros([f, c, h, w])
        let plane = h * w
        let dst = t.data
        raw.bytes.withUnsafeBufferPointer { src in
            for i in 0..<f {
                let s = src.baseAddress! + i * plane * c, d = dst + i * plane * c
                for p in 0..<plane {
                    for k in 0..<c { d[k * plane + p] = Float(s[p * c + k]) * (2.0 / 255.0) - 1 }
                }
            }
        }
        return t
    }

    /// [F, C, H, W] floats -> [F, H', W', C] bytes (rounded, clipped, NaN -> 0), with H', W'
    /// rounded up to even by repeating the last row/column when `evenSize`.
    static func bytes(_ frames: Tensor, fps: Double, evenSize: Bool, file: String) throws -> FFmpeg.Frames {
        precondition(frames.rank == 4 && (frames.shape[1] == 1 || frames.shape[1] == 3),
                     "VideoCodec: expected frames [F, C, H, W] with C = 1 or 3, got \(frames.shape)")
        guard fps > 0 && fps <= 1000 else {
            throw MediaError.invalidArgument(file: file, reason: "fps \(fps) must be in (0, 1000]")
        }
        let (f, c, h, w) = (frames.shape[0], frames.shape[1], frames.shape[2], frames.shape[3])
        let limits = Limits()
        try checkArgument(f, 1...limits.maxFrames, "frame count", file: file)
        try checkArgument(w, 1...limits.maxDimension, "width", file: file)
        try checkArgument(h, 1...limits.maxDimension, "height", file: file)
        let (h2, w2) = evenSize ? (h + h % 2, w + w % 2) : (h, w)
        var out = [UInt8](repeating: 0, count: f * h2 * w2 * c)
        let src = frames.data
        out.withUnsafeMutableBufferPointer { dst in
            for i in 0..<f {
                for y in 0..<h2 {
                    let sy = min(y, h - 1)
                    for x in 0..<w2 {
                        let sx = min(x, w - 1)
                        for k in 0..<c {
                            let v = src[((i * c + k) * h + sy) * w + sx]
                            dst[((i * h2 + y) * w2 + x) * c + k] = quantize(v)
                        }
                    }
                }
            }
        }
        return FFmpeg.Frames(width: w2, height: h2, channels: c, fps: fps, frameCount: f, bytes: out)
    }

    @inline(__always)
    static func quantize(_ x: Float) -> UInt8 {
        let v = ((x + 1) * 127.5).rounded()
        if !(v >= 0) { return 0 }   // also NaN
        if v >= 255 { return 255 }
        return UInt8(v)
    }

    static func checkArgument(_ v: Int, _ range: ClosedRange<Int>, _ name: String, file: String) throws {
        guard range.contains(v) else {
            throw MediaError.invalidArgument(file: file, reason: "\(name) \(v) must be in \(range.lowerBound)...\(range.upperBound)")
        }
    }
}
