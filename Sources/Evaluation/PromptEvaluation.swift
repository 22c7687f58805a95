import Foundation
import Tensor
import NN
import Diffusion
import Image
import Media
import Workflow

/// A captioned real set whose items carry a subgroup (and a group), as `diffuse dataset emoji`
/// writes them: the names prompts are drawn from, and the images they are judged against.
///
///     DIR/metadata.jsonl   {"file_name", "text", "subgroup", "group", ...}: the names the model trained on (seen)
///     DIR/holdout.jsonl    the same for names held out of training (optional; file names relative to DIR)
///
/// Images are read as RGB (alpha on white) and resized to `size` × `size` for the probe.
public struct CaptionedReference {
    public struct Entry: Sendable, Equatable {
        /// The caption: the prompt that names this image.
        public var name: String
        public var subgroup: Int
        public var heldOut: Bool
        public var url: URL
    }

    public var entries: [Entry]
    /// Subgroup names by label (sorted), and each subgroup's group (an index into `groupNames`).
    public var subgroupNames: [String]
    public var groupNames: [String]
    public var groupOfSubgroup: [Int]
    /// [N, 3, S, S] in [-1, 1], in `entries` order.
    public var images: Tensor
    public var source: String
    /// Content hash of the seen images and both metadata files (the probe cache's key).
    public var contentKey: String

    public var count: Int { entries.count }
    public var size: Int { images.shape[2] }

    public static let metadataName = "metadata.jsonl", heldOutName = "holdout.jsonl"

    /// - Throws: `MediaError` naming the metadata file and line (missing subgroup, unreadable
    ///   image), `EvaluationError` for a set the evaluation cannot use.
    public static func load(_ dir: URL, size: Int) throws -> CaptionedReference {
        guard (8...512).contains(size) else { throw EvaluationError("probe size \(size) outside 8...512") }
        let seen = try CaptionFolder(dir, extensions: ["png"])
        let heldURL = dir.appendingPathComponent(heldOutName)
        let held = FileManager.default.fileExists(atPath: heldURL.path)
            ? try CaptionFolder(dir, metadata: heldURL, extensions: ["png"]) : nil
        var keys: [String: (group: String, subgroup: String)] = [:]
        var rows: [(item: CaptionFolder.Item, key: String, heldOut: Bool)] = []
        for (folder, heldOut) in [(seen, false), (held, true)] {
            guard let folder else { continue }
            for item in folder.items {
                guard let subgroup = item.columns["subgroup"], !subgroup.isEmpty else {
                    throw MediaError.invalidData(file: folder.metadata.path, reason: "line \(item.line): no \"subgroup\" (the probe learns the subgroups; `diffuse dataset emoji` writes them)")
                }
                let group = item.columns["group"] ?? ""
                let key = group + "\u{1F}" + subgroup  // a subgroup name could recur under two groups
                keys[key] = (group, subgroup)
                rows.append((item, key, heldOut))
            }
        }
        let sortedKeys = keys.keys.sorted()
        let label = Dictionary(uniqueKeysWithValues: sortedKeys.enumerated().map { ($1, $0) })
        let groupNames = Array(Set(keys.values.map(\.group))).sorted()
        let groupIndex = Dictionary(uniqueKeysWithValues: groupNames.enumerated().map { ($1, $0) })
        let trainedSubgroups = Set(rows.filter { !$0.heldOut }.map(\.key))
        guard trainedSubgroups.count >= 2 else {
            throw EvaluationError("\(seen.metadata.path): the seen images cover \(trainedSubgroups.count) subgroup; the probe needs at least 2")
        }
        let images = Tensor.zeros([rows.count, 3, size, size])
        let per = 3 * size * size
        for (i, row) in rows.enumerated() {
            let img = try PNGCodec.read(row.item.url, mode: .rgb)
            ImageFolder.cropResize(img, side: size, into: images.data + i * per)
        }
        let files = rows.map(\.item.url) + [seen.metadata] + (held.map { [$0.metadata] } ?? [])
        return CaptionedReference(
            entries: rows.map { Entry(name: $0.item.text, subgroup: label[$0.key]!, heldOut: $0.heldOut, url: $0.item.url) },
            subgroupNames: sortedKeys.map { keys[$0]!.subgroup }, groupNames: groupNames,
            groupOfSubgroup: sortedKeys.map { groupIndex[keys[$0]!.group]! }, images: images, source: dir.path,
            contentKey: ContentHash.files(files, root: dir, salt: "captioned"))
    }

    /// Indices of the seen (false) or held-out (true) entries.
    public func indices(heldOut: Bool) -> [Int] { entries.indices.filter { entries[$0].heldOut == heldOut } }
}

/// Settings of a prompt evaluation.
public struct PromptEvaluationOptions: Sendable {
    /// The guidance sweep (at `atSteps`) and the steps sweep (at `atGuidance`).
    public var guidances: [Float] = [1, 3, 5, 7.5]
    public var steps: [Int] = [4, 8, 16, 25]
    /// Where the sweeps cross (default: guidance 5 when swept, else the largest; the most steps).
    public var atGuidance: Float? = nil
    public var atSteps: Int? = nil
    /// At most this many prompts of each set (seen, held out), a seeded random choice.
    public var maxPrompts = 64
    public var countPerPrompt = 1
    public var sampler: SamplerName? = nil
    /// Samples per model call (the images do not depend on it).
    public var batchSize = 16
    /// Seeds the choice of prompts, the start noise (the same at every point of the sweeps), the
    /// probe and the FD re-splits.
    public var seed: UInt64 = 0
    public var probeTraining = ProbeTraining()
    public var probeWidths = ImageProbeConfig.defaultWidths
    public var repeats = 16
    public var cacheDirectory: URL? = ProbeCache.defaultDirectory
    public var cacheSalt: [String] = []
    /// Keep this many prompts of each set's images at the crossing point, for a grid.
    public var gridPrompts = 0
    public init() {}

    public var crossing: (guidance: Float, steps: Int) {
        (atGuidance ?? (guidances.contains(5) ? 5 : guidances.max() ?? 5), atSteps ?? steps.max() ?? 25)
    }

    /// The sampling points: the guidance sweep at the crossing's steps, then the steps sweep at
    /// its guidance (the crossing once).
    public var points: [(guidance: Float, steps: Int)] {
        let c = crossing
        var out = guidances.map { (guidance: $0, steps: c.steps) }
        for s in steps where !out.contains(where: { $0.guidance == c.guidance && $0.steps == s }) { out.append((c.guidance, s)) }
        if !out.contains(where: { $0.guidance == c.guidance && $0.steps == c.steps }) { out.append(c) }
        return out
    }

    public func validate() throws {
        func fail(_ s: String) throws -> Never { throw EvaluationError(s) }
        if guidances.isEmpty || guidances.contains(where: { !SamplingRequest.guidanceRange.contains($0) }) {
            try fail("guidance scales must be within \(SamplingRequest.guidanceRange), got \(guidances)")
        }
        if steps.isEmpty || steps.contains(where: { !SamplingRequest.stepsRange.contains($0) }) {
            try fail("step counts must be within \(SamplingRequest.stepsRange), got \(steps)")
        }
        if let g = atGuidance, !SamplingRequest.guidanceRange.contains(g) { try fail("the crossing guidance \(g) is outside \(SamplingRequest.guidanceRange)") }
        if let s = atSteps, !SamplingRequest.stepsRange.contains(s) { try fail("the crossing steps \(s) are outside \(SamplingRequest.stepsRange)") }
        if !(1...10_000).contains(maxPrompts) { try fail("prompts per set must be within 1-10000, got \(maxPrompts)") }
        if !(1...64).contains(countPerPrompt) { try fail("images per prompt must be within 1-64, got \(countPerPrompt)") }
        if !SamplingRequest.batchRange.contains(batchSize) { try fail("batch must be within \(SamplingRequest.batchRange), got \(batchSize)") }
    }
}

/// What `PromptEvaluation.run` measured. Codable with stable snake_case keys (`--json`).
public struct PromptEvaluationReport: Codable, Sendable {
    public struct ProbeSummary: Codable, Sendable {
        public var trainedOn: Int
        public var subgroups: Int
        public var groups: Int
        /// On the real images of the held-out names (never seen by the probe): what a generator
        /// that drew exactly the named emoji would score (nil without held-out names).
        public var heldOutSubgroupAccuracy: Double?
        public var heldOutGroupAccuracy: Double?
        /// On its own training images (the seen names).
        public var seenSubgroupAccuracy: Double
        public var steps: Int
        public var seconds: Double
        public var cached: Bool
        public var path: String?
        public var featureDimension: Int
        enum CodingKeys: String, CodingKey {
            case trainedOn = "trained_on", subgroups, groups, heldOutSubgroupAccuracy = "held_out_subgroup_accuracy"
            case heldOutGroupAccuracy = "held_out_group_accuracy", seenSubgroupAccuracy = "seen_subgroup_accuracy"
            case steps, seconds, cached, path, featureDimension = "feature_dimension"
        }
    }

    /// The figures of one set of prompts at one sampling point.
    public struct SetScores: Codable, Sendable {
        public var prompts: Int
        public var images: Int
        /// Share of images the probe puts in the prompt's subgroup (and its group).
        public var subgroupAccuracy: Double
        public var groupAccuracy: Double
        /// Share of images whose nearest real image (probe features, among all real images) is
        /// the one the prompt names; within its 5 nearest.
        public var nearestIsNamed: Double
        public var namedInNearest5: Double
        /// FD against the set's real images at matched sizes, class-matched real floor.
        public var fd: ImageEvaluationReport.FrechetSummary?
        /// Precision/recall (k = 3) against the real images the prompts name.
        public var precisionRecall: PrecisionRecall?
        enum CodingKeys: String, CodingKey {
            case prompts, images, subgroupAccuracy = "subgroup_accuracy", groupAccuracy = "group_accuracy"
            case nearestIsNamed = "nearest_is_named", namedInNearest5 = "named_in_nearest_5", fd
            case precisionRecall = "precision_recall"
        }
    }

    public struct Point: Codable, Sendable {
        public var guidance: Float
        public var steps: Int
        public var seen: SetScores
        public var heldOut: SetScores?
        /// Sampling and scoring time of this point.
        public var seconds: Double
        enum CodingKeys: String, CodingKey { case guidance, steps, seen, heldOut = "held_out", seconds }
    }

    public var source: String
    public var model: String
    public var realImages: Int
    public var heldOutNames: Int
    public var seed: UInt64
    public var sampler: String
    public var size: Int
    public var countPerPrompt: Int
    public var probe: ProbeSummary
    public var crossingGuidance: Float
    public var crossingSteps: Int
    public var points: [Point]

    enum CodingKeys: String, CodingKey {
        case source, model, realImages = "real_images", heldOutNames = "held_out_names", seed, sampler, size
        case countPerPrompt = "count_per_prompt", probe, crossingGuidance = "crossing_guidance", crossingSteps = "crossing_steps", points
    }

    /// The guidance sweep (at the crossing's steps) and the steps sweep (at its guidance), each in
    /// the order of its values.
    public var guidanceSweep: [Point] { points.filter { $0.steps == crossingSteps }.sorted { $0.guidance < $1.guidance } }
    public var stepsSweep: [Point] { points.filter { $0.guidance == crossingGuidance }.sorted { $0.steps < $1.steps } }
}

/// `diffuse evaluate image --prompts DIR --model M`: a text-to-image model asked for the names of a
/// captioned set, judged by a probe trained on the set's real images.
///
/// The probe (`ImageProbe`) learns the subgroups of the images of the **seen** names (those the
/// model trained on); a predicted subgroup also gives its group. The images of the **held-out**
/// names are new to the probe as to the model: the probe's accuracy on them is the score of a
/// generator that drew exactly the named emoji. Prompts of each kind are drawn at random
/// (seeded), `countPerPrompt` images each, and every sampling point draws them from the same
/// start noise. Per set and point, with features standardised by the real images':
///
///     subgroup / group accuracy   probe's class of each image vs the prompt's
///     nearest is named            the image's nearest real image (among all, seen and held out)
///                                 is the one the prompt names (chance: 1 / real images); within 5
///     FD                          vs the set's real images, at matched sizes with a class-matched
///                                 real floor (`ImageEvaluation.matchedDistances`)
///     precision / recall          vs the real images the prompts name (as many as prompts)
public enum PromptEvaluation {
    /// - Parameters:
    ///   - progress: (what, step, total) while the probe trains and images are drawn.
    ///   - onGrid: at the crossing point, for each set (seen, held-out) the first `gridPrompts`
    ///     prompts' entry indices and their generated images [P·n, 3, H, W].
    public static func run(reference: CaptionedReference, pipeline: StableDiffusionPipeline, model: String,
                           options: PromptEvaluationOptions,
                           progress: (String, Int, Int) -> Void = { _, _, _ in }, log: (String) -> Void = { _ in },
                           onGrid: (Bool, [Int], Tensor) -> Void = { _, _, _ in }) throws -> PromptEvaluationReport {
        try options.validate()
        let seenRows = reference.indices(heldOut: false), heldRows = reference.indices(heldOut: true)
        let labels = reference.entries.map(\.subgroup)
        let config = ImageProbeConfig(channels: 3, size: reference.size, classNames: reference.subgroupNames, widths: options.probeWidths)
        let seenImages = rows(reference.images.reshaped([reference.count, 3 * reference.size * reference.size]), seenRows)
            .reshaped([seenRows.count, 3, reference.size, reference.size])
        let (probe, cached, path) = try ImageEvaluation.trainOrLoad(
            config: config, images: seenImages, labels: seenRows.map { labels[$0] }, training: options.probeTraining, seed: options.seed,
            cacheKey: [reference.contentKey, "seed \(options.seed)", "seen names by subgroup"], cacheSalt: options.cacheSalt,
            cacheDirectory: options.cacheDirectory, progress: progress, log: log)
        let (realFeatures, realPredictions) = probe.embed(reference.images)
        let (realStd, _) = ImageEvaluation.standardised(realFeatures, realFeatures)
        func accuracy(_ idx: [Int], group: Bool) -> Double? {
            guard !idx.isEmpty else { return nil }
            let hits = idx.filter { i in
                group ? reference.groupOfSubgroup[realPredictions[i]] == reference.groupOfSubgroup[labels[i]] : realPredictions[i] == labels[i]
            }
            return Double(hits.count) / Double(idx.count)
        }
        let probeSummary = PromptEvaluationReport.ProbeSummary(
            trainedOn: seenRows.count, subgroups: reference.subgroupNames.count, groups: reference.groupNames.count,
            heldOutSubgroupAccuracy: accuracy(heldRows, group: false), heldOutGroupAccuracy: accuracy(heldRows, group: true),
            seenSubgroupAccuracy: accuracy(seenRows, group: false) ?? 0, steps: probe.record?.steps ?? 0,
            seconds: cached ? 0 : probe.record?.seconds ?? 0, cached: cached, path: path?.path, featureDimension: probe.featureDimension)

        var chooser = SplitMix64(seed: options.seed ^ 0x9809_7715)
        func choose(_ rows: [Int]) -> [Int] {
            rows.count <= options.maxPrompts ? rows : chooser.sample(options.maxPrompts, from: rows.count).sorted().map { rows[$0] }
        }
        let sets: [(heldOut: Bool, prompts: [Int], realRows: [Int])] = [(false, choose(seenRows), seenRows)]
            + (heldRows.isEmpty ? [] : [(true, choose(heldRows), heldRows)])
        let side = pipeline.defaultSize, n = options.countPerPrompt
        let crossing = options.crossing
        var points: [PromptEvaluationReport.Point] = []
        for point in options.points {
            let started = Date()
            var scores: [PromptEvaluationReport.SetScores] = []
            for set in sets {
                let prompts = set.prompts.flatMap { [Int](repeating: $0, count: n) }
                let request = SamplingRequest(count: prompts.count, sampler: options.sampler, steps: point.steps,
                                              seed: options.seed &+ (set.heldOut ? 1 : 0), guidance: point.guidance,
                                              batchSize: options.batchSize)
                let what = String(format: "guidance %g, %d steps, %@ prompts", point.guidance, point.steps, set.heldOut ? "held-out" : "seen")
                let images = try withoutActuallyEscaping(progress) { report in
                    try pipeline.generate(PromptConditioning(prompts: prompts.map { reference.entries[$0].name }), request: request,
                                          height: side, width: side, progress: { step, total in report(what, step, total); return true }).images
                }
                if point.guidance == crossing.guidance && point.steps == crossing.steps && options.gridPrompts > 0 {
                    let k = Swift.min(options.gridPrompts, set.prompts.count)
                    onGrid(set.heldOut, Array(set.prompts.prefix(k)), images.slice(axis: 0, 0..<(k * n)))
                }
                let (features, predictions) = probe.embed(probeInput(images, size: reference.size))
                let (_, generatedStd) = ImageEvaluation.standardised(realFeatures, features)
                scores.append(score(prompts: prompts, predictions: predictions, generated: generatedStd, realStd: realStd,
                                    realRows: set.realRows, named: set.prompts, reference: reference, options: options))
            }
            points.append(.init(guidance: point.guidance, steps: point.steps, seen: scores[0], heldOut: scores.count > 1 ? scores[1] : nil,
                                seconds: Date().timeIntervalSince(started)))
        }
        return PromptEvaluationReport(
            source: reference.source, model: model, realImages: reference.count, heldOutNames: heldRows.count, seed: options.seed,
            sampler: (options.sampler ?? SamplerName.default(for: pipeline.scheduler)).rawValue, size: reference.size, countPerPrompt: n, probe: probeSummary,
            crossingGuidance: crossing.guidance, crossingSteps: crossing.steps, points: points)
    }

    /// A grid's images: per prompt, the real image it names (resized to the generated side)
    /// followed by its `perPrompt` generated images — `1 + perPrompt` columns, a row per prompt.
    public static func gridImages(reference: CaptionedReference, prompts: [Int], generated: Tensor, perPrompt: Int) throws -> Tensor {
        precondition(generated.shape[0] == prompts.count * perPrompt, "gridImages: \(generated.shape[0]) images for \(prompts.count) prompts × \(perPrompt)")
        let side = generated.shape[2], per = 3 * side * side
        let out = Tensor.zeros([prompts.count * (1 + perPrompt), 3, side, side])
        for (r, entry) in prompts.enumerated() {
            let row = out.data + r * (1 + perPrompt) * per
            ImageFolder.cropResize(try PNGCodec.read(reference.entries[entry].url, mode: .rgb), side: side, into: row)
            (row + per).update(from: generated.data + r * perPrompt * per, count: perPrompt * per)
        }
        return out
    }

    /// Generated images [M, 3, H, W] as the probe sees real ones: quantised to 8 bits (as their
    /// PNG would be) and resized to size × size the same way.
    static func probeInput(_ images: Tensor, size: Int) -> Tensor {
        let m = images.shape[0], per = 3 * size * size
        let out = Tensor.zeros([m, 3, size, size])
        for i in 0..<m {
            ImageFolder.cropResize(Pixels(tensor: images.item(i)).tensor(), side: size, into: out.data + i * per)
        }
        return out
    }

    /// - Parameters:
    ///   - prompts: per generated image, the entry its prompt names.
    ///   - generated: standardised features [M, D]; realStd: every real image's, [N, D].
    ///   - realRows: the real entries of this set (the FD reference); named: its prompts' entries.
    static func score(prompts: [Int], predictions: [Int], generated: Tensor, realStd: Tensor, realRows: [Int], named: [Int],
                      reference: CaptionedReference, options: PromptEvaluationOptions) -> PromptEvaluationReport.SetScores {
        let m = prompts.count
        let labels = prompts.map { reference.entries[$0].subgroup }
        let groupOf = reference.groupOfSubgroup
        let subgroupHits = zip(predictions, labels).filter { $0 == $1 }.count
        let groupHits = zip(predictions, labels).filter { groupOf[$0] == groupOf[$1] }.count
        // Rank of the named real image among all real images, by distance from each generated one.
        var top1 = 0, top5 = 0
        let n = realStd.shape[0]
        Neighbours.forEachBlock(generated, realStd) { start, count, d in
            for i in 0..<count {
                let row = d + i * n
                let named = row[prompts[start + i]]
                var closer = 0
                for j in 0..<n where row[j] < named { closer += 1 }
                if closer == 0 { top1 += 1 }
                if closer < 5 { top5 += 1 }
            }
        }
        var fd: ImageEvaluationReport.FrechetSummary? = nil
        if realRows.count >= 8 && m >= 4 {
            var rng = SplitMix64(seed: options.seed &+ 0xFD)
            fd = ImageEvaluation.matchedDistances(
                heldOut: rows(realStd, realRows), generated: generated, rowsPerItem: 1, repeats: options.repeats, seed: options.seed,
                classes: (realRows.map { reference.entries[$0].subgroup }, labels), rng: &rng).0
        }
        let pr = named.count > 3 && m > 3 ? PrecisionRecall.compute(real: rows(realStd, named), generated: generated, k: 3) : nil
        return .init(prompts: named.count, images: m, subgroupAccuracy: Double(subgroupHits) / Double(m),
                     groupAccuracy: Double(groupHits) / Double(m), nearestIsNamed: Double(top1) / Double(m),
                     namedInNearest5: Double(top5) / Double(m), fd: fd, precisionRecall: pr)
    }
}
