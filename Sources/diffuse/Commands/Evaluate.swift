import ArgumentParser
import Foundation
import Audio
import Evaluation
import Video

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure generated samples.",
        subcommands: [EvaluateImage.self, EvaluateAudio.self, EvaluateVideo.self]
    )
}

struct EvaluateAudio: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audio",
        abstract: "Pitch accuracy (YIN, when class folders are MIDI numbers), voicing, clipping and silence of clips.",
        discussion: """
        Reads DIR/<class>/*.wav|flac|ogg (as `diffuse generate audio --out DIR` and `diffuse dataset \
        notes` write them; a flat folder of NNNN-<class>.wav files works too). With --real, the \
        same figures for the real set are printed beside them.
        """
    )

    @Option(help: "Generated clips.") var generated: String
    @Option(help: "Real clips, measured the same way for comparison.") var real: String?
    @Option(help: "Sample rate the clips are measured at.") var rate = 16_000
    @Option(help: "Seconds of each clip measured.") var seconds = 1.0
    @Flag(help: "JSON output.") var json = false
    @OptionGroup var runtime: RuntimeOptions

    func measure(_ path: String) throws -> AudioMetrics {
        let url = URL(fileURLWithPath: path)
        let folder = try ClassFolder(url, extensions: AudioFolder.extensions)
        if !folder.classNames.isEmpty { return try AudioMetrics.measure(folder: url, sampleRate: rate, seconds: seconds) }
        // Flat: the class is what follows the first '-' of the name (generate's NNNN-<class>.wav).
        let f = try AudioFolder(url, sampleRate: rate, length: Int(seconds * Double(rate)))
        f.warn = { _ in }
        let clips = (0..<f.count).map { i -> ([Float], String?) in
            let stem = f.files[i].url.deletingPathExtension().lastPathComponent
            return (f.clip(i), stem.split(separator: "-", maxSplits: 1).dropFirst().first.map(String.init))
        }
        return AudioMetrics.measure(clips, sampleRate: rate)
    }

    func run() throws {
        runtime.apply()
        let g = try measure(generated)
        let r = try real.map(measure)
        if json {
            var obj: [String: AudioMetrics] = ["generated": g]
            if let r { obj["real"] = r }
            try printJSON(obj)
        } else {
            print("generated (\(generated)):\n" + g.summary.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
            if let r, let real { print("real (\(real)):\n" + r.summary.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n")) }
        }
    }
}

struct EvaluateImage: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "FD, KID, precision/recall, density/coverage, label agreement and memorisation of generated images, in the features of a probe trained on the real ones.",
        discussion: """
        No Inception weights exist here, so the feature space is a small CNN (the probe) trained on \
        the real images' classes: the real set is shuffled with --seed and halved; one half trains the \
        probe, the other (held out) is what the generated images are compared with, and its two \
        quarters against each other give the real-vs-real floor. FD is biased up at small sizes, so \
        both FD figures compare a quarter of the real set's size with another quarter (the mean over \
        16 random re-splits); KID is unbiased and uses every image. Memorisation compares pixels: the share of \
        generated images nearer to a real image than 95 % of real images are to their nearest other \
        real image (≈5 % for new images; --real should be what the model trained on). Sets are DIR/<class>/*.png, or flat DIR/NNNN-<class>.png as `diffuse generate image \
        --out DIR` writes them, or builtin:fashion-mnist / builtin:fashion-mnist-test; all are resized \
        to --size. Trained probes are cached in $XDG_CACHE_HOME/diffuse/probes (~/.cache/diffuse/probes) \
        under a hash of the real folder's file names, sizes and modification times and the settings.
        Prompt mode, for a text-to-image model: `--prompts DIR --model M` draws images of the names \
        of a captioned folder (seen ones, and held-out ones from its holdout.jsonl) and judges them \
        with a probe trained on the seen names' real images by subgroup: subgroup and group \
        accuracy, how often the nearest real image is the named one, FD and precision/recall, over \
        a guidance sweep and a steps sweep (--guidance, --steps, --max-prompts bounds the time).
        """
    )

    @Option(help: "Real images: DIR/<class>/*.png, builtin:fashion-mnist or builtin:fashion-mnist-test.") var real: String?
    @Option(help: "Generated images: DIR/<class>/*.png or DIR/NNNN-<class>.png.") var generated: String?
    @Option(help: "Held-out real images for --augmentation-gain (then all of --real trains; default: the held-out half of --real).")
    var test: String?
    @Flag(help: "Also train the probe on real only and on real + generated, and compare their accuracy on held-out real images.")
    var augmentationGain = false
    @Option(help: "Seed of the --limit subsets, the split, the probe and the KID subsets (one seed, one cached probe: compare models under the same seed).")
    var seed: UInt64 = 0
    @Option(help: "At most N images of each set, a seeded random subset (default: all of a folder, 1000 of a built-in set).")
    var limit: Int?
    @Option(help: "Side the images are resized to.") var size = 32
    @Option(help: "Probe training steps (default: 64 epochs of its training images, within 500-1000).") var probeSteps: Int?
    @Flag(help: "Train the probe afresh and keep it out of the cache.") var noCache = false
    @Flag(help: "JSON output.") var json = false
    @OptionGroup var promptMode: PromptModeOptions
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if promptMode.prompts != nil {
            if real != nil || generated != nil || test != nil || limit != nil || augmentationGain {
                throw ValidationError("--prompts (prompt mode) takes no --real, --generated, --test, --limit or --augmentation-gain")
            }
        } else if real == nil || generated == nil {
            throw ValidationError("give --real and --generated (class models), or --prompts and --model (a text-to-image model)")
        }
        for (flag, value) in [("--real", real ?? ""), ("--test", test ?? "")] where value.hasPrefix("builtin:") {
            if !ImageSource.builtins.contains(value) {
                throw ValidationError("\(flag): the built-in sets are \(ImageSource.builtins.joined(separator: ", "))")
            }
        }
        if let limit, limit < 16 || limit > 1_000_000 { throw ValidationError("--limit must be between 16 and 1000000") }
        if size < 8 || size > 512 { throw ValidationError("--size must be between 8 and 512") }
        if let probeSteps, probeSteps < 1 || probeSteps > 100_000 { throw ValidationError("--probe-steps must be between 1 and 100000") }
    }

    func run() throws {
        if let prompts = promptMode.prompts, let model = promptMode.model { return try runPrompts(prompts, model: model) }
        guard let real, let generated else { return }  // validate() requires both
        runtime.apply()
        let started = Date()
        let realSet = try ImageSource.load(real, channels: nil, size: size, limit: limit, seed: seed)
        let generatedSet = try ImageSource.load(generated, channels: realSet.channels, size: size, limit: limit, seed: seed &+ 1)
        let testSet = try test.map { try ImageSource.load($0, channels: realSet.channels, size: size, limit: limit, seed: seed &+ 2) }
        var options = ImageEvaluationOptions()
        options.seed = seed
        options.augmentationGain = augmentationGain
        options.probeTraining.steps = probeSteps
        options.cacheDirectory = noCache ? nil : ProbeCache.defaultDirectory
        options.cacheSalt = ["limit \(limit.map(String.init) ?? "default")", "size \(size)"]
        let report = try ImageEvaluation.run(real: realSet, generated: generatedSet, test: testSet, options: options,
                                             progress: Progress.stages(), log: note)
        if json {
            try printJSON(report)
        } else {
            print(Self.text(report, seconds: Date().timeIntervalSince(started)))
        }
    }

    static func text(_ r: ImageEvaluationReport, seconds: Double) -> String {
        func pct(_ x: Double) -> String { String(format: "%.1f %%", 100 * x) }
        func kid(_ k: KernelDistance) -> String { String(format: "%.2f ± %.2f", 1000 * k.mean, 1000 * k.std) }
        let probe = r.probe
        var lines = [
            "real       \(r.real.source): \(r.real.images) images, \(r.real.classes) classes (probe trains on \(probe.trainedOn), \(probe.heldOut) held out)",
            "generated  \(r.generated.source): \(r.generated.images) images",
            "probe      accuracy \(pct(probe.accuracy)) on the held-out real images"
                + (probe.testAccuracy.map { ", \(pct($0)) on \(r.test?.source ?? "--test")" } ?? "")
                + (probe.cached ? " (cached)" : String(format: " (trained %d steps in %.1f s)", probe.steps, probe.seconds)),
            "",
            pad("", 34) + lpad("generated", 18) + lpad("real floor", 18),
            pad("FD (probe features, \(r.fd.compared) vs \(r.fd.reference))", 34) + lpad(String(format: "%.3f", r.fd.generated), 18)
                + lpad(String(format: "%.3f", r.fd.realFloor), 18) + String(format: "   (%.2f × floor)", r.fd.ratio),
            pad("KID ×1000 (mean ± std)", 34) + lpad(kid(r.kid.generated), 18) + lpad(kid(r.kid.realFloor), 18),
            pad("precision / recall (k = \(r.precisionRecall.k))", 34)
                + lpad(String(format: "%.3f / %.3f", r.precisionRecall.precision, r.precisionRecall.recall), 18),
            pad("density / coverage", 34)
                + lpad(String(format: "%.3f / %.3f", r.precisionRecall.density, r.precisionRecall.coverage), 18),
            pad("label agreement", 34) + lpad(r.labelAgreement.map(pct) ?? "n/a", 18),
            pad("memorisation", 34) + lpad(pct(r.memorisation.share), 18) + lpad(pct(r.memorisation.referenceShare), 18),
        ]
        if let g = r.augmentationGain {
            lines.append("")
            lines.append(String(format: "augmentation gain  %+.1f points: real only %.1f %%, real + generated %.1f %%", g.gainPoints,
                                100 * g.realOnlyAccuracy, 100 * g.augmentedAccuracy)
                         + " (\(g.realImages) real + \(g.generatedImages) generated, \(g.steps) steps; tested on \(g.heldOutImages) of \(g.heldOut))")
        }
        lines.append("")
        lines.append(String(format: "memorisation: share of images nearer (in pixels) to a real image than the %.0fth percentile (%.3f) of", r.memorisation.percentile, r.memorisation.threshold))
        lines.append(String(format: "real-to-nearest-other-real distances; its floor is that share for the real images. %.1f s in all.", seconds))
        return lines.joined(separator: "\n")
    }
}

struct EvaluateVideo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "video",
        abstract: "Label stability, label agreement, motion smoothness, FD and KID of generated clips, frame by frame in the features of a probe trained on real frames.",
        discussion: """
        The real clips are shuffled with --seed and halved: every 4th frame of one half (labelled \
        with its clip's class) trains the image probe of `evaluate image`; the held-out half is \
        measured like the generated clips, as the reference. Per set: stability (share of \
        consecutive frame pairs the probe labels alike; share of frames with the clip's majority \
        label), label agreement (frames, and clips by majority, labelled as their class), and the \
        motion of the frames' centre of mass (roughness = mean |second difference|, speed, empty \
        frames). FD and KID are computed on every frame's features against the held-out real \
        frames, with their real-vs-real floors; splits draw whole clips. Both sets are decoded to \
        the real set's frame count and frame side (--frames, --size), gray or RGB as the real set. \
        Sets are DIR/<class>/*.mp4|gif|webm, or flat DIR/NNNN-<class>.mp4 as `diffuse generate \
        video --out DIR` writes them, or builtin:moving-fashion (rendered into \
        $XDG_CACHE_HOME/diffuse/moving-fashion the first time). Probes are cached as `evaluate \
        image`'s are. --kept-frames N measures continuations (`generate video --init CLIP \
        --keep-frames 0-(N-1)`): the mean change across the seam (frame N-1 to N) against the mean \
        change between the kept frames, beside the same figure of the real clips.
        """
    )

    @Option(help: "Real clips: DIR/<class>/*.mp4 or builtin:moving-fashion.") var real: String
    @Option(help: "Generated clips: DIR/<class>/*.mp4 or DIR/NNNN-<class>.mp4.") var generated: String
    @Option(help: "Seed of the --limit subsets, the split, the probe and the KID subsets.") var seed: UInt64 = 0
    @Option(help: "At most N clips of each set, a seeded random subset (default: all of a folder, 1000 of the built-in set).")
    var limit: Int?
    @Option(help: "Frames per clip (default: the real set's first clip's).") var frames: Int?
    @Option(help: "Side the frames are resized to (default: the real set's first clip's shorter side).") var size: Int?
    @Option(help: "Probe training steps (default: 500).") var probeSteps: Int?
    @Option(help: "The generated clips continue their first N frames (generate video --init CLIP --keep-frames 0-(N-1)): also measure the seam at frame N.")
    var keptFrames: Int?
    @Flag(help: "Train the probe afresh and keep it out of the cache.") var noCache = false
    @Flag(help: "JSON output.") var json = false
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if let keptFrames, keptFrames < 2 || keptFrames > 999 { throw ValidationError("--kept-frames must be between 2 and 999 (a seam needs 2 kept frames)") }
        if real.hasPrefix("builtin:") && !VideoSource.builtins.contains(real) {
            throw ValidationError("--real: the built-in set is \(VideoSource.builtins.joined(separator: ", "))")
        }
        if let limit, limit < 16 || limit > 1_000_000 { throw ValidationError("--limit must be between 16 and 1000000") }
        if let frames, frames < 2 || frames > 1000 { throw ValidationError("--frames must be between 2 and 1000") }
        if let size, size < 8 || size > 512 { throw ValidationError("--size must be between 8 and 512") }
        if let probeSteps, probeSteps < 1 || probeSteps > 100_000 { throw ValidationError("--probe-steps must be between 1 and 100000") }
    }

    func run() throws {
        runtime.apply()
        let started = Date()
        let geometry = try VideoSource.geometry(real)
        let f = frames ?? geometry.frames, s = size ?? geometry.size
        guard f >= 2 else { throw EvaluationError("\(real): clips of one frame; pass --frames") }
        var render: Progress? = nil
        let realSet = try VideoSource.load(real, channels: nil, frames: f, size: s, limit: limit, seed: seed, progress: { done, total in
            if render == nil { render = Progress(total: total, label: "render") }
            render?.update(done)
        }, log: note)
        let generatedSet = try VideoSource.load(generated, channels: realSet.channels, frames: f, size: s, limit: limit,
                                                seed: seed &+ 1, log: note)
        var options = VideoEvaluationOptions()
        options.seed = seed
        options.probeTraining.steps = probeSteps
        options.keptFrames = keptFrames
        options.cacheDirectory = noCache ? nil : ProbeCache.defaultDirectory
        options.cacheSalt = ["limit \(limit.map(String.init) ?? "default")", "frames \(f)", "size \(s)"]
        let report = try VideoEvaluation.run(real: realSet, generated: generatedSet, options: options, progress: Progress.stages(), log: note)
        if json {
            try printJSON(report)
        } else {
            print(Self.text(report, seconds: Date().timeIntervalSince(started)))
        }
    }

    static func text(_ r: VideoEvaluationReport, seconds: Double) -> String {
        func pct(_ x: Double?) -> String { x.map { String(format: "%.1f %%", 100 * $0) } ?? "n/a" }
        func num(_ x: Double, _ format: String = "%.3f") -> String { String(format: format, x) }
        func kid(_ k: KernelDistance) -> String { String(format: "%.2f ± %.2f", 1000 * k.mean, 1000 * k.std) }
        let probe = r.probe, g = r.generatedClips, q = r.realClips
        func row(_ name: String, _ a: String, _ b: String, _ tail: String = "") -> String {
            pad(name, 36) + lpad(a, 18) + lpad(b, 18) + tail
        }
        var lines: [String] = [
            "real       \(r.real.source): \(r.real.clips) clips, \(r.real.classes) classes, \(r.real.frames) frames of \(r.real.size)×\(r.real.size)"
                + (r.real.channels == 1 ? " gray" : " RGB"),
            "generated  \(r.generated.source): \(r.generated.clips) clips",
            "probe      trained on \(probe.trainedOn) frames of half the real clips; accuracy \(pct(probe.accuracy)) on the \(q.clips) held-out clips' frames"
                + (probe.cached ? " (cached)" : String(format: " (trained %d steps in %.1f s)", probe.steps, probe.seconds)),
            "",
            row("", "generated", "real (held out)"),
            row("label stability, consecutive frames", pct(g.consecutiveStability), pct(q.consecutiveStability)),
            row("label stability, majority", pct(g.majorityStability), pct(q.majorityStability)),
            row("label agreement, frames", pct(g.frameAgreement), pct(q.frameAgreement)),
            row("label agreement, clips (majority)", pct(g.clipAgreement), pct(q.clipAgreement)),
            row("motion roughness (px/frame²)", num(g.motion.roughness), num(q.motion.roughness)),
            row("motion speed (px/frame)", num(g.motion.speed), num(q.motion.speed)),
            row("empty frames", pct(g.motion.emptyFrames), pct(q.motion.emptyFrames)),
            row("speckled frames", pct(g.motion.speckledFrames), pct(q.motion.speckledFrames)),
            row("clips with a speckled frame", "\(g.motion.speckledClips) of \(g.motion.clips)", "\(q.motion.speckledClips) of \(q.motion.clips)"),
        ]
        if let gs = g.seam, let qs = q.seam {
            lines += [
                row("change inside the \(gs.keptFrames) kept frames", num(gs.inside, "%.4f"), num(qs.inside, "%.4f")),
                row("change across the seam (frame \(gs.keptFrames - 1) → \(gs.keptFrames))", num(gs.across, "%.4f"), num(qs.across, "%.4f")),
                row("seam ÷ inside", num(gs.ratio, "%.2f"), num(qs.ratio, "%.2f")),
            ]
        }
        lines += [
            "",
            row("", "generated", "real floor"),
            row("FD (frame features, \(r.fd.compared) vs \(r.fd.reference) clips)", num(r.fd.generated), num(r.fd.realFloor),
                String(format: "   (%.2f × floor)", r.fd.ratio)),
            row("KID ×1000 (mean ± std)", kid(r.kid.generated), kid(r.kid.realFloor)),
            "",
            "stability: how often the probe's label of a frame stays the same; roughness: mean length of the second",
            "difference of the frames' centre-of-mass track; speckled: grain on the background, more than 5 % of the",
            "dark canvas (3×3 median below 0.1) 0.05 or more brighter than its neighbourhood's median"
                + (g.seam != nil ? "; change: mean |brightness difference| of consecutive frames (0–1)." : "."),
            String(format: "%.1f s in all.", seconds),
        ]
        return lines.joined(separator: "\n")
    }
}
