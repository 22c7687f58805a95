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
        let (f, c, h, w) = (frames.shape[0], frames.shape[1], frames.shape[2], frames.shape[3])
        let plane = h * w
        return (0..<f).map { k in
            var m = 0.0, mx = 0.0, my = 0.0
            let base = frames.data + k * c * plane
            for y in 0..<h {
                for x in 0..<w {
                    var v: Float = 0
                    for ch in 0..<c { v += base[ch * plane + y * w + x] }
                    let b = Double((v / Float(c) + 1) / 2 - floor)
                    if b > 0 { m += b; mx += b * Double(x); my += b * Double(y) }
                }
            }
            return m > 1e-9 ? SIMD2(mx / m, my / m) : nil
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

    /// Per set of clips: how their centres of mass move.
    public struct Motion: Codable, Equatable, Sendable {
        public var clips: Int
        /// Mean over clips of `roughness` (clips without a value are left out).
        public var roughness: Double
        /// Mean over clips of `speed`.
        public var speed: Double
        /// Fraction of frames with no mass (an object that vanished).
        public var emptyFrames: Double

        enum CodingKeys: String, CodingKey { case clips, roughness, speed, emptyFrames = "empty_frames" }
    }

    /// `Motion` of clips, each [F, C, H, W].
    public static func motion(_ clips: [Tensor], floor: Float = 0.1) -> Motion {
        var r: [Double] = [], s: [Double] = []
        var empty = 0, frames = 0
        for clip in clips {
            let t = centerOfMassTrack(clip, floor: floor)
            frames += t.count
            empty += t.filter { $0 == nil }.count
            if let v = roughness(t) { r.append(v) }
            if let v = speed(t) { s.append(v) }
        }
        func mean(_ a: [Double]) -> Double { a.isEmpty ? .nan : a.reduce(0, +) / Double(a.count) }
        return Motion(clips: clips.count, roughness: mean(r), speed: mean(s),
                      emptyFrames: frames > 0 ? Double(empty) / Double(frames) : .nan)
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
