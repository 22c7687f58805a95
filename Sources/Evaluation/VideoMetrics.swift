import Foundation
import Tensor

/// Measures of whether generated clips keep their object: where its mass is in each frame and
/// how smoothly that point moves, and how stable a per-frame classifier's label is.
public enum VideoMetrics {
    /// Centre of mass of each frame of a clip [F, C, H, W] in [-1, 1] on a dark background:
    /// pixels weigh max(0, brightness − `floor`) with brightness = mean over channels mapped to
    /// [0, 1] (the floor ignores codec noise in the background). (x, y) in pixels; nil for a
    /// frame with no mass.
    public static func centerOfMassTrack(_ frames: Tensor, floor: Float = 0.1) -> [SIMD2<Double>?] {
        precondition(frames.rank == 4, "centerOfMassTrack: expected [F, C, H, W], got \(frames.shape)")
        let (h, w) = (frames.shape[2], frames.shape[3])
        return (0..<frames.shape[0]).map { k in
            var m = 0.0, mx = 0.0, my = 0.0
            let bright = brightness(frames, frame: k)
            for y in 0..<h {
                for x in 0..<w {
                    let b = Double(bright[y * w + x] - floor)
                    if b > 0 { m += b; mx += b * Double(x); my += b * Double(y) }
                }
            }
            return m > 1e-9 ? SIMD2(mx / m, my / m) : nil
        }
    }

    /// Brightness of frame `k` of a clip [F, C, H, W] in [-1, 1]: the mean over channels mapped
    /// to [0, 1], [H · W] row by row — what every measure here looks at.
    public static func brightness(_ frames: Tensor, frame k: Int) -> [Float] {
        precondition(frames.rank == 4 && (0..<frames.shape[0]).contains(k), "brightness: frame \(k) of \(frames.shape)")
        let (c, plane) = (frames.shape[1], frames.shape[2] * frames.shape[3])
        let base = frames.data + k * c * plane
        return (0..<plane).map { i in
            var v: Float = 0
            for ch in 0..<c { v += base[ch * plane + i] }
            return (v / Float(c) + 1) / 2
        }
    }

    /// Roughness of a track: the mean length of its second difference |p_{k+1} − 2 p_k + p_{k−1}|
    /// (pixels per frame², 0 for uniform motion) over the triples of consecutive frames that all
    /// have mass; nil when there is no such triple.
    public static func roughness(_ track: [SIMD2<Double>?]) -> Double? {
        guard track.count >= 3 else { return nil }
        var sum = 0.0, n = 0
        for k in 1..<(track.count - 1) {
            guard let a = track[k - 1], let b = track[k], let c = track[k + 1] else { continue }
            let d = c - 2 * b + a
            sum += (d * d).sum().squareRoot()
            n += 1
        }
        return n > 0 ? sum / Double(n) : nil
    }

    /// Mean length of a track's first difference (pixels per frame) over consecutive frames with mass.
    public static func speed(_ track: [SIMD2<Double>?]) -> Double? {
        var sum = 0.0, n = 0
        for k in 1..<Swift.max(1, track.count) {
            guard let a = track[k - 1], let b = track[k] else { continue }
            let d = b - a
            sum += (d * d).sum().squareRoot()
            n += 1
        }
        return n > 0 ? sum / Double(n) : nil
    }

    /// Grain on the background of frame `k` of a clip [F, C, H, W] in [-1, 1]: of the pixels whose
    /// 3×3 neighbourhood (edges repeat the border) has a median brightness below `background`
    /// (mean over channels, mapped to [0, 1]) — the dark canvas — the share that are `threshold` or
    /// more brighter than that median. Real moving-fashion backgrounds are black up to codec
    /// ringing beside the items (at most 2.7 % of background pixels in 1,600 real frames); a
    /// sampler that leaves noise in the canvas shows it as grey grain, 10–30 % of the background.
    /// A frame with no background pixel has no grain.
    public static func speckle(_ frames: Tensor, frame k: Int, threshold: Float = 0.05, background: Float = 0.1) -> Double {
        let (h, w) = (frames.shape[2], frames.shape[3])
        let b = brightness(frames, frame: k)
        var canvas = 0, grain = 0
        var window = [Float](repeating: 0, count: 9)
        for y in 0..<h {
            for x in 0..<w {
                var n = 0
                for dy in -1...1 {
                    for dx in -1...1 {
                        window[n] = b[Swift.min(Swift.max(y + dy, 0), h - 1) * w + Swift.min(Swift.max(x + dx, 0), w - 1)]
                        n += 1
                    }
                }
                window.sort()
                guard window[4] < background else { continue }
                canvas += 1
                if b[y * w + x] - window[4] >= threshold { grain += 1 }
            }
        }
        return canvas > 0 ? Double(grain) / Double(canvas) : 0
    }

    /// A frame whose background has more than this share of grain (`speckle`) counts as speckled.
    public static let speckledShare = 0.05

    /// Per set of clips: how their centres of mass move, and how many frames are speckled.
    public struct Motion: Codable, Equatable, Sendable {
        public var clips: Int
        /// Mean over clips of `roughness` (clips without a value are left out).
        public var roughness: Double
        /// Mean over clips of `speed`.
        public var speed: Double
        /// Fraction of frames with no mass (an object that vanished).
        public var emptyFrames: Double
        /// Fraction of frames that are speckled (`speckle` > `speckledShare`), and the number of
        /// clips with at least one.
        public var speckledFrames: Double = 0
        public var speckledClips: Int = 0

        enum CodingKeys: String, CodingKey {
            case clips, roughness, speed, emptyFrames = "empty_frames"
            case speckledFrames = "speckled_frames", speckledClips = "speckled_clips"
        }
    }

    /// `Motion` of clips, each [F, C, H, W].
    public static func motion(_ clips: [Tensor], floor: Float = 0.1) -> Motion {
        var r: [Double] = [], s: [Double] = []
        var empty = 0, frames = 0, speckled = 0, speckledClips = 0
        for clip in clips {
            let t = centerOfMassTrack(clip, floor: floor)
            frames += t.count
            empty += t.filter { $0 == nil }.count
            let n = (0..<clip.shape[0]).filter { speckle(clip, frame: $0) > speckledShare }.count
            speckled += n
            if n > 0 { speckledClips += 1 }
            if let v = roughness(t) { r.append(v) }
            if let v = speed(t) { s.append(v) }
        }
        func mean(_ a: [Double]) -> Double { a.isEmpty ? .nan : a.reduce(0, +) / Double(a.count) }
        return Motion(clips: clips.count, roughness: mean(r), speed: mean(s),
                      emptyFrames: frames > 0 ? Double(empty) / Double(frames) : .nan,
                      speckledFrames: frames > 0 ? Double(speckled) / Double(frames) : .nan, speckledClips: speckledClips)
    }

    /// Mean absolute change of `brightness` between frames k − 1 and k of a clip [F, C, H, W].
    public static func frameChange(_ frames: Tensor, at k: Int) -> Double {
        precondition(k >= 1, "frameChange: frame \(k) has no predecessor")
        let a = brightness(frames, frame: k - 1), b = brightness(frames, frame: k)
        return a.isEmpty ? 0 : zip(a, b).reduce(0.0) { $0 + Double(abs($1.1 - $1.0)) } / Double(a.count)
    }

    /// How smoothly clips that continue their first `kept` frames (`generate video --init CLIP
    /// --keep-frames 0-(kept−1)`) go on: the mean change across the seam (frame kept − 1 → kept)
    /// against the mean change between consecutive kept frames. A continuation that jumps has a
    /// ratio well above 1; real clips, cut at the same frame, show what 1 looks like.
    public struct Seam: Codable, Equatable, Sendable {
        public let keptFrames: Int
        public let clips: Int
        /// Mean over clips of the mean `frameChange` between consecutive kept frames.
        public let inside: Double
        /// Mean over clips of the `frameChange` across the seam.
        public let across: Double
        /// across / inside (in the JSON for a reader's convenience).
        public let ratio: Double

        enum CodingKeys: String, CodingKey { case keptFrames = "kept_frames", clips, inside, across, ratio }

        public init(keptFrames: Int, clips: Int, inside: Double, across: Double) {
            self.keptFrames = keptFrames; self.clips = clips; self.inside = inside; self.across = across
            ratio = inside > 0 ? across / inside : .nan
        }
    }

    /// `Seam` of clips [F, C, H, W] whose first `kept` frames (2 ... F − 1) were given.
    public static func seam(_ clips: [Tensor], kept: Int) -> Seam {
        var inside = 0.0, across = 0.0
        for clip in clips {
            precondition(kept >= 2 && kept < clip.shape[0], "seam: \(kept) kept frames of \(clip.shape)")
            inside += (1..<kept).map { frameChange(clip, at: $0) }.reduce(0, +) / Double(kept - 1)
            across += frameChange(clip, at: kept)
        }
        let n = Double(Swift.max(clips.count, 1))
        return Seam(keptFrames: kept, clips: clips.count, inside: inside / n, across: across / n)
    }

    /// Label stability of clips from a per-frame classifier: for each clip (its frames' labels),
    /// the fraction of frames agreeing with the clip's most common label; the mean over clips.
    public static func labelStability(_ perFrameLabels: [[Int]]) -> Double {
        let fractions = perFrameLabels.filter { !$0.isEmpty }.map { labels -> Double in
            var counts: [Int: Int] = [:]
            for l in labels { counts[l, default: 0] += 1 }
            return Double(counts.values.max()!) / Double(labels.count)
        }
        return fractions.isEmpty ? .nan : fractions.reduce(0, +) / Double(fractions.count)
    }

    /// Consecutive-frame label stability of clips from a per-frame classifier: for each clip (its
    /// frames' labels), the fraction of consecutive frame pairs (k, k + 1) whose labels are equal;
    /// the mean over clips with at least two frames. Unlike `labelStability` it sees flicker: a
    /// clip labelled a b a b has majority stability 0.5 but consecutive stability 0; a a b b (one
    /// switch) has 0.5 and 0.67.
    public static func consecutiveLabelStability(_ perFrameLabels: [[Int]]) -> Double {
        let fractions = perFrameLabels.filter { $0.count >= 2 }.map { labels -> Double in
            let same = zip(labels, labels.dropFirst()).filter { $0 == $1 }.count
            return Double(same) / Double(labels.count - 1)
        }
        return fractions.isEmpty ? .nan : fractions.reduce(0, +) / Double(fractions.count)
    }
}
