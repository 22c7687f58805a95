import Foundation
import Tensor
import Video

/// Settings of a video evaluation.
public struct VideoEvaluationOptions: Sendable {
    /// Seeds the real set's split, the training frames, the probe and the KID subsets.
    public var seed: UInt64 = 0
    /// The image probe's training. Its frames come from few clips (an item gliding over 16
    /// frames is nearly the same picture 16 times), so 500 steps are the most by default.
    public var probeTraining: ProbeTraining = {
        var t = ProbeTraining()
        t.maxSteps = 500
        return t
    }()
    public var probeWidths = ImageProbeConfig.defaultWidths
    /// The probe trains on every `frameStride`-th frame of each training clip, from a random
    /// first frame per clip (so every frame position is seen).
    public var frameStride = 4
    /// Random re-splits of the held-out real clips that FD and the KID floor average over.
    public var repeats = 16
    /// The generated clips continue their first `keptFrames` frames (`generate video --init CLIP
    /// --keep-frames 0-(n−1)`): measure the seam (`VideoMetrics.seam`) of both sets at that frame.
    public var keptFrames: Int? = nil
    /// Where trained probes are kept (nil: no cache).
    public var cacheDirectory: URL? = ProbeCache.defaultDirectory
    /// Words that tell the probe cache what else the real set depends on (limit, frames, size).
    public var cacheSalt: [String] = []
    public init() {}
}

/// What `VideoEvaluation.run` measured. Codable with stable snake_case keys (`--json`).
public struct VideoEvaluationReport: Codable, Sendable {
    public struct SetSummary: Codable, Sendable {
        public var source: String
        public var clips: Int
        public var classes: Int
        /// Frames per clip, frame side and channels the clips were decoded to.
        public var frames: Int
        public var size: Int
        public var channels: Int
    }

    /// How a set of clips keeps its object, from the probe's per-frame labels and the frames'
    /// centres of mass.
    public struct ClipFigures: Codable, Sendable {
        public var clips: Int
        /// Mean over clips of the share of consecutive frame pairs with the same probe label
        /// (`VideoMetrics.consecutiveLabelStability`).
        public var consecutiveStability: Double
        /// Mean over clips of the share of frames with the clip's most common probe label
        /// (`VideoMetrics.labelStability`).
        public var majorityStability: Double
        /// Share of frames the probe labels as their clip's class (nil: no clip has a class).
        public var frameAgreement: Double?
        /// Share of clips whose most common probe label (the lowest on a tie) is their class.
        public var clipAgreement: Double?
        public var motion: VideoMetrics.Motion
        /// With `VideoEvaluationOptions.keptFrames`: the change across the seam against the change
        /// inside the kept frames.
        public var seam: VideoMetrics.Seam?

        enum CodingKeys: String, CodingKey {
            case clips, consecutiveStability = "consecutive_stability", majorityStability = "majority_stability"
            case frameAgreement = "frame_agreement", clipAgreement = "clip_agreement", motion, seam
        }
    }

    public var real: SetSummary
    public var generated: SetSummary
    public var seed: UInt64
    /// trained_on and held_out count frames; accuracy is per frame on the held-out real clips.
    public var probe: ImageEvaluationReport.ProbeSummary
    /// Per-frame features; `compared` and `reference` count clips (all their frames).
    public var fd: ImageEvaluationReport.FrechetSummary
    public var kid: ImageEvaluationReport.Comparison<KernelDistance>
    public var generatedClips: ClipFigures
    /// The held-out real clips: what real motion and a probe's stability on real clips look like.
    public var realClips: ClipFigures

    enum CodingKeys: String, CodingKey {
        case real, generated, seed, probe, fd, kid, generatedClips = "generated_clips", realClips = "real_clips"
    }
}

/// `diffuse evaluate video`: generated clips against real ones, frame by frame in the feature
/// space of the image probe (`ImageProbe`) trained on frames of real clips, and clip by clip in
/// time.
///
/// The real clips are shuffled with the seed and halved: every `frameStride`-th frame of the
/// first half (a random first frame per clip), labelled with its clip's class, trains the probe;
/// the held-out half Q is what the generated clips are compared with, and its figures are the
/// reference a generator should reach.
///
///     FD, KID            in the features of every frame, standardised with Q's frames, as
///                        `ImageEvaluation` does; the random splits and subsets draw whole clips,
///                        so frames of one clip never sit on both sides of a floor, and the
///                        floor's clips have the generated clips' classes. Per frame, not
///                        per clip: a clip's mean feature would give ~100 samples in 128
///                        dimensions, too few for a covariance. Frames of one clip are alike, so
///                        both figures and their floors sit above what as many independent images
///                        would give; compare them with the floor, not with `evaluate image`.
///     stability          of the probe's label across each clip's frames: consecutive pairs that
///                        agree, and frames that agree with the clip's majority
///     label agreement    frames (and clips, by majority) labelled as the class the clip was
///                        made for or belongs to
///     motion             the frames' centres of mass (`VideoMetrics.motion`): roughness (second
///                        difference), speed, share of empty frames; speckled frames
///     seam               with `keptFrames`, for continuations: the change across the seam
///                        against the change inside the kept frames (`VideoMetrics.seam`)
public enum VideoEvaluation {
    /// - Parameters:
    ///   - progress: (what, step, total) while the probe trains.
    ///   - log: notes for the user (cache use, warnings).
    public static func run(real: LabelledClips, generated: LabelledClips, options: VideoEvaluationOptions,
                           progress: (String, Int, Int) -> Void = { _, _, _ in },
                           log: (String) -> Void = { _ in }) throws -> VideoEvaluationReport {
        // 16: the held-out half's halves need 4 clips each, as the image evaluation's do.
        guard real.count >= 16 else { throw EvaluationError("\(real.source): \(real.count) clips; the evaluation needs at least 16 real clips") }
        guard generated.count >= 2 else { throw EvaluationError("\(generated.source): \(generated.count) clips; at least 2 are needed") }
        guard real.classNames.count >= 2, real.labels.allSatisfy({ $0 != nil }) else {
            throw EvaluationError("\(real.source): the real set must be class folders DIR/<class>/*.mp4 with at least 2 classes (the probe learns them)")
        }
        guard generated.framesPerClip == real.framesPerClip,
              generated.frames.images.shape.dropFirst() == real.frames.images.shape.dropFirst() else {
            throw EvaluationError("\(generated.source): clips of \(generated.framesPerClip) frames \(Array(generated.frames.images.shape.dropFirst())) differ from the real \(real.framesPerClip) frames \(Array(real.frames.images.shape.dropFirst()))")
        }
        precondition(options.frameStride >= 1, "VideoEvaluationOptions.frameStride \(options.frameStride)")
        if let k = options.keptFrames, !(2..<real.framesPerClip).contains(k) {
            throw EvaluationError("\(k) kept frames: a seam needs at least 2 kept frames and one after them, in clips of \(real.framesPerClip) frames")
        }
        let gen = try generated.relabelled(to: real.classNames)
        let seed = options.seed, f = real.framesPerClip

        // Real clips → P (their frames train the probe) + Q (held out).
        var splitter = SplitMix64(seed: seed)
        let order = splitter.permutation(real.count)
        let half = real.count / 2
        let p = real.subset(Array(order[..<half])), q = real.subset(Array(order[half...]))
        let stride = Swift.min(options.frameStride, f)
        var phase = SplitMix64(seed: seed &+ 0xF4A3)
        let chosen = (0..<p.count).flatMap { c -> [Int] in
            Array(Swift.stride(from: phase.below(stride), to: f, by: stride)).map { c * f + $0 }
        }
        let train = p.frames.subset(chosen)

        let config = ImageProbeConfig(channels: real.channels, size: real.size, classNames: real.classNames, widths: options.probeWidths)
        let (probe, cached, path) = try ImageEvaluation.trainOrLoad(
            config: config, images: train.images, labels: train.labels.map { $0! }, training: options.probeTraining, seed: seed,
            cacheKey: [real.frames.contentKey, "seed \(seed)",
                       "video: clip halves, every \(stride)th of \(f) frames from a random first frame"],
            cacheSalt: options.cacheSalt, cacheDirectory: options.cacheDirectory, progress: progress, log: log)
        let (fq, predQ) = probe.embed(q.frames.images)
        let (fg, predG) = probe.embed(gen.frames.images)
        let qLabels = q.frames.labels.map { $0! }
        let accuracy = Double(zip(predQ, qLabels).filter { $0 == $1 }.count) / Double(qLabels.count)

        let (sq, sg) = ImageEvaluation.standardised(fq, fg)
        if q.count < 100 { log("note: \(q.count) held-out real clips; FD and KID are noisy below a hundred or so") }
        var rng = SplitMix64(seed: seed &+ 0xFD)
        // The floor's real clips are drawn with the generated clips' classes when every one has a class.
        let genClasses = gen.labels
        let strata = genClasses.allSatisfy({ $0 != nil }) ? (heldOut: q.labels.map { $0! }, generated: genClasses.map { $0! }) : nil
        let (fd, kid) = ImageEvaluation.matchedDistances(heldOut: sq, generated: sg, rowsPerItem: f, repeats: options.repeats,
                                                         seed: seed, classes: strata, rng: &rng)

        func summary(_ s: LabelledClips) -> VideoEvaluationReport.SetSummary {
            .init(source: s.source, clips: s.count, classes: s.classNames.count, frames: s.framesPerClip, size: s.size, channels: s.channels)
        }
        return VideoEvaluationReport(
            real: summary(real), generated: summary(generated), seed: seed,
            probe: .init(trainedOn: train.count, heldOut: q.frames.count, accuracy: accuracy, testAccuracy: nil,
                         steps: probe.record?.steps ?? 0, seconds: cached ? 0 : probe.record?.seconds ?? 0, cached: cached,
                         path: path?.path, featureDimension: probe.featureDimension),
            fd: fd, kid: kid, generatedClips: figures(gen, predictions: predG, kept: options.keptFrames),
            realClips: figures(q, predictions: predQ, kept: options.keptFrames))
    }

    /// Stability, agreement and motion of clips whose frames the probe labelled `predictions`
    /// (clip by clip, as `clips.frames`).
    static func figures(_ clips: LabelledClips, predictions: [Int], kept: Int? = nil) -> VideoEvaluationReport.ClipFigures {
        let f = clips.framesPerClip
        precondition(predictions.count == clips.frames.count, "figures: \(predictions.count) labels for \(clips.frames.count) frames")
        let perClip = (0..<clips.count).map { Array(predictions[($0 * f)..<(($0 + 1) * f)]) }
        let frames = (0..<clips.count).map(clips.clip)
        let majority = perClip.map { labels -> Int in
            var counts: [Int: Int] = [:]
            for l in labels { counts[l, default: 0] += 1 }
            return counts.max { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }!.key
        }
        return .init(clips: clips.count,
                     consecutiveStability: VideoMetrics.consecutiveLabelStability(perClip),
                     majorityStability: VideoMetrics.labelStability(perClip),
                     frameAgreement: labelAgreement(predicted: predictions, requested: clips.frames.labels),
                     clipAgreement: labelAgreement(predicted: majority, requested: clips.labels),
                     motion: VideoMetrics.motion(frames),
                     seam: kept.map { VideoMetrics.seam(frames, kept: $0) })
    }
}
