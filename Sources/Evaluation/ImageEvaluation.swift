import Foundation
import Tensor
import NN

/// Settings of an image evaluation.
public struct ImageEvaluationOptions: Sendable {
    /// Seeds the real set's split, the probe (weights, batches, shifts) and the KID subsets.
    public var seed: UInt64 = 0
    public var probeTraining = ProbeTraining()
    public var probeWidths = ImageProbeConfig.defaultWidths
    /// Train the probe on real only and on real + generated, and compare them on held-out real.
    public var augmentationGain = false
    /// Seeds the probe alone (default: `seed`).
    public var probeSeed: UInt64? = nil
    /// Random re-splits of the held-out real images that FD and the KID floor average over.
    public var repeats = 16
    /// Where trained probes are kept (nil: no cache).
    public var cacheDirectory: URL? = ProbeCache.defaultDirectory
    /// Words that tell the probe cache what else the real set depends on (the limit and image size).
    public var cacheSalt: [String] = []
    public init() {}
}

/// What `ImageEvaluation.run` measured. Codable with stable snake_case keys (`--json`).
public struct ImageEvaluationReport: Codable, Sendable {
    public struct SetSummary: Codable, Sendable {
        public var source: String
        public var images: Int
        public var classes: Int
    }

    public struct ProbeSummary: Codable, Sendable {
        /// Real images the probe trained on, and the held-out real images the metrics use.
        public var trainedOn: Int
        public var heldOut: Int
        /// Accuracy on the held-out real images (and on --test, when given).
        public var accuracy: Double
        public var testAccuracy: Double?
        public var steps: Int
        /// Training time (0 when loaded from the cache).
        public var seconds: Double
        public var cached: Bool
        public var path: String?
        public var featureDimension: Int

        enum CodingKeys: String, CodingKey {
            case trainedOn = "trained_on", heldOut = "held_out", accuracy, testAccuracy = "test_accuracy", steps, seconds, cached, path
            case featureDimension = "feature_dimension"
        }
    }

    /// FD at matched sample sizes: `compared` generated images and `compared` held-out real images,
    /// each against the same `reference` held-out real images (disjoint from the latter), so FD's
    /// small-sample bias is the same on both sides. Means (and standard deviations) over `repeats`
    /// random re-splits of the held-out images.
    public struct FrechetSummary: Codable, Sendable {
        public var generated: Double
        public var realFloor: Double
        /// generated / realFloor: steadier across seeds than either (both scale with the probe).
        public var ratio: Double
        public var generatedStd: Double
        public var realFloorStd: Double
        public var reference: Int
        public var compared: Int
        public var repeats: Int
        enum CodingKeys: String, CodingKey {
            case generated, realFloor = "real_floor", ratio, generatedStd = "generated_std", realFloorStd = "real_floor_std"
            case reference, compared, repeats
        }
    }

    /// A figure for generated vs held-out real, and the same figure between two halves of the
    /// held-out real images (what a perfect generator would get).
    public struct Comparison<Value: Codable & Sendable>: Codable, Sendable {
        public var generated: Value
        public var realFloor: Value
        enum CodingKeys: String, CodingKey { case generated, realFloor = "real_floor" }
    }

    public struct AugmentationGain: Codable, Sendable {
        public var realOnlyAccuracy: Double
        public var augmentedAccuracy: Double
        /// 100 × (augmented − real only): accuracy points.
        public var gainPoints: Double
        public var heldOut: String
        public var heldOutImages: Int
        public var realImages: Int
        public var generatedImages: Int
        public var steps: Int

        enum CodingKeys: String, CodingKey {
            case realOnlyAccuracy = "real_only_accuracy", augmentedAccuracy = "augmented_accuracy", gainPoints = "gain_points"
            case heldOut = "held_out", heldOutImages = "held_out_images", realImages = "real_images"
            case generatedImages = "generated_images", steps
        }
    }

    public var real: SetSummary
    public var generated: SetSummary
    public var test: SetSummary?
    public var seed: UInt64
    public var probe: ProbeSummary
    public var fd: FrechetSummary
    public var kid: Comparison<KernelDistance>
    public var precisionRecall: PrecisionRecall
    public var labelAgreement: Double?
    public var memorisation: Memorisation
    public var augmentationGain: AugmentationGain?

    enum CodingKeys: String, CodingKey {
        case real, generated, test, seed, probe, fd, kid, precisionRecall = "precision_recall"
        case labelAgreement = "label_agreement", memorisation, augmentationGain = "augmentation_gain"
    }
}

/// Where trained probes are kept: `$XDG_CACHE_HOME/diffuse/probes` (else `~/.cache/diffuse/probes`),
/// one folder per key (probe.json + probe.safetensors).
public enum ProbeCache {
    public static var defaultDirectory: URL { UserCache.directory.appendingPathComponent("probes") }
}

/// `diffuse evaluate image`: generated images against real ones in the feature space of a probe
/// classifier trained on the real images.
///
/// The real set R is shuffled with the seed and split in two halves: P trains the probe, and the
/// held-out half Q is what generated images are compared with — features of images the probe
/// trained on are tighter than those of new images, which would put even a perfect generator
/// above the floor. Q's halves against each other give the real-vs-real floor. Features are
/// standardised per dimension with Q's mean and standard deviation, so the figures do not scale
/// with how large one probe's activations happen to be.
///
///     FD                 |Q|/2 generated images vs a random half A of Q; floor: the other half
///                        vs A — the same sizes, so the same small-sample bias; mean over 16
///                        random re-splits
///     KID                generated vs Q; floor: the halves of Q against each other, pooled over
///                        the same re-splits (unbiased at any size)
///     precision/recall,  |Q| generated images vs Q, k = 3
///     density/coverage
///     label agreement    probe's class for each generated image vs the class it was made for
///     memorisation       in pixel space: generated vs all of R (the model's training images),
///                        τ from R's leave-one-out nearest-neighbour distances
///     probe accuracy     on Q (and on --test)
///     augmentation gain  probe trained on real vs on real + generated, same steps and seed,
///                        accuracy on --test (then all of R trains) or on Q (then P trains)
public enum ImageEvaluation {
    /// - Parameters:
    ///   - progress: (what, step, total) while a probe trains.
    ///   - log: notes for the user (cache use, warnings).
    public static func run(real: LabelledImages, generated: LabelledImages, test: LabelledImages?,
                           options: ImageEvaluationOptions,
                           progress: (String, Int, Int) -> Void = { _, _, _ in },
                           log: (String) -> Void = { _ in }) throws -> ImageEvaluationReport {
        // 16: the held-out half's halves need 4 images each (KID, 3rd neighbours).
        guard real.count >= 16 else { throw EvaluationError("\(real.source): \(real.count) images; the evaluation needs at least 16 real images") }
        guard generated.count >= 4 else { throw EvaluationError("\(generated.source): \(generated.count) images; at least 4 are needed") }
        guard real.classNames.count >= 2, real.labels.allSatisfy({ $0 != nil }) else {
            throw EvaluationError("\(real.source): the real set must be class folders DIR/<class>/*.png with at least 2 classes (the probe learns them)")
        }
        guard generated.images.shape.dropFirst() == real.images.shape.dropFirst() else {
            throw EvaluationError("\(generated.source): images \(Array(generated.images.shape.dropFirst())) differ from the real \(Array(real.images.shape.dropFirst()))")
        }
        let gen = try generated.relabelled(to: real.classNames)
        let testSet = try test?.relabelled(to: real.classNames)
        if let testSet, testSet.labels.contains(where: { $0 == nil }) {
            throw EvaluationError("\(testSet.source): every test image needs a class")
        }
        let seed = options.seed
        let classes = real.classNames

        // R → P (trains the probe) + Q (held out).
        var splitter = SplitMix64(seed: seed)
        let order = splitter.permutation(real.count)
        let half = real.count / 2
        let p = real.subset(Array(order[..<half])), q = real.subset(Array(order[half...]))
        let pLabels = p.labels.map { $0! }, qLabels = q.labels.map { $0! }

        let config = ImageProbeConfig(channels: real.channels, size: real.images.shape[2], classNames: classes,
                                      widths: options.probeWidths)
        let (probe, cached, path) = try trainOrLoad(
            config: config, images: p.images, labels: pLabels, training: options.probeTraining, seed: options.probeSeed ?? options.seed,
            cacheKey: [real.contentKey, "seed \(options.seed) probe \(options.probeSeed ?? options.seed)", "split halves"],
            cacheSalt: options.cacheSalt, cacheDirectory: options.cacheDirectory, progress: progress, log: log)
        let (fq, predQ) = probe.embed(q.images)
        let (fg, predG) = probe.embed(gen.images)
        let accuracy = Double(zip(predQ, qLabels).filter { $0 == $1 }.count) / Double(qLabels.count)
        let testAccuracy = testSet.map { t in probe.accuracy(t.images, labels: t.labels.map { $0! }) }

        let (sq, sg) = standardised(fq, fg)
        if q.count < 200 { log("note: \(q.count) held-out real images; FD and KID are noisy below a few hundred") }

        var rng = SplitMix64(seed: seed &+ 0xFD)
        let (fd, kid) = matchedDistances(heldOut: sq, generated: sg, rowsPerItem: 1, repeats: options.repeats, seed: seed, rng: &rng)
        // As many generated as held-out real images, as in the paper (the balls shrink with N).
        let pr = PrecisionRecall.compute(real: sq, generated: rows(sg, rng.sample(Swift.min(sq.shape[0], sg.shape[0]), from: sg.shape[0])), k: 3)
        let agreement = labelAgreement(predicted: predG, requested: gen.labels)
        let memorisation = Memorisation.measure(generated: gen.pixelRows, train: real.pixelRows)

        var gain: ImageEvaluationReport.AugmentationGain? = nil
        if options.augmentationGain {
            gain = try augmentationGain(p: p, q: q, all: real, generated: gen, test: testSet, config: config,
                                        options: options, progress: progress)
        }
        func summary(_ s: LabelledImages) -> ImageEvaluationReport.SetSummary {
            .init(source: s.source, images: s.count, classes: s.classNames.count)
        }
        return ImageEvaluationReport(
            real: summary(real), generated: summary(generated), test: testSet.map(summary), seed: seed,
            probe: .init(trainedOn: p.count, heldOut: q.count, accuracy: accuracy, testAccuracy: testAccuracy,
                         steps: probe.record?.steps ?? 0, seconds: cached ? 0 : probe.record?.seconds ?? 0, cached: cached,
                         path: path?.path, featureDimension: probe.featureDimension),
            fd: fd, kid: kid, precisionRecall: pr, labelAgreement: agreement, memorisation: memorisation,
            augmentationGain: gain)
    }

    /// FD and KID of generated features against held-out real ones at matched sizes, and their
    /// real-vs-real floors. Each of `repeats` repeats splits the held-out items afresh into a
    /// reference half A and a half B, and draws |B| generated items; FD(B, A) is the floor,
    /// FD(G_r, A) the figure. KID: generated vs all held-out, floor B vs A pooled over the repeats.
    ///
    /// An item is `rowsPerItem` consecutive rows (1 for images; a clip's frames for video), and
    /// items are what is split and drawn, so no item has rows on both sides of a comparison.
    ///
    /// With `classes`, B is drawn class by class to hold as many items of each class as the
    /// drawn generated items were made for (topped up at random where B's side lacks them): the
    /// floor is then what a perfect generator asked for those classes would get. Without it, a
    /// random B's class counts wander around the generated set's (which are usually equal by
    /// construction), and that alone raises the floor: 100 new real moving-fashion clips, 10 per
    /// class, scored 0.70 × a random floor and 1.00 × the class-matched one (seed 1).
    /// - Parameters:
    ///   - heldOut: [(N r), D], generated: [(M r), D], standardised alike.
    ///   - classes: per held-out item its class, per generated item the class it was made for.
    ///   - rng: draws the splits and subsets (left where it stops, for the caller's next draws).
    static func matchedDistances(heldOut sq: Tensor, generated sg: Tensor, rowsPerItem r: Int, repeats: Int, seed: UInt64,
                                 classes: (heldOut: [Int], generated: [Int])? = nil,
                                 rng: inout SplitMix64) -> (ImageEvaluationReport.FrechetSummary,
                                                            ImageEvaluationReport.Comparison<KernelDistance>) {
        precondition(r >= 1 && sq.shape[0] % r == 0 && sg.shape[0] % r == 0,
                     "matchedDistances: \(sq.shape) and \(sg.shape) are not whole items of \(r) rows")
        func itemRows(_ t: Tensor, _ items: some Collection<Int>) -> Tensor {
            rows(t, items.flatMap { i in (i * r)..<((i + 1) * r) })
        }
        let nq = sq.shape[0] / r, ng = sg.shape[0] / r
        let halfQ = nq / 2
        let m = Swift.min(nq - halfQ, ng)
        var fdGenerated: [Double] = [], fdFloor: [Double] = [], kidFloor: [KernelDistance] = []
        for k in 0..<repeats {
            let perm = rng.permutation(nq)
            let drawn = rng.sample(m, from: ng)
            var bItems = Array(perm[halfQ..<(halfQ + m)])
            if let classes {
                var wanted: [Int: Int] = [:]
                for i in drawn { wanted[classes.generated[i], default: 0] += 1 }
                var picked: [Int] = [], rest: [Int] = []
                for i in perm[halfQ...] {
                    let c = classes.heldOut[i]
                    if let w = wanted[c], w > 0 { picked.append(i); wanted[c] = w - 1 } else { rest.append(i) }
                }
                bItems = picked + rest.prefix(m - picked.count)
            }
            let a = itemRows(sq, perm[..<halfQ]), b = itemRows(sq, bItems)
            let g = itemRows(sg, drawn)
            let d = FrechetDistance.between(reference: GaussianFit(a), [GaussianFit(b), GaussianFit(g)])
            fdFloor.append(d[0]); fdGenerated.append(d[1])
            kidFloor.append(KernelDistance.compute(b, a, subsets: Swift.max(1, 100 / repeats), seed: seed &+ UInt64(k)))
        }
        let fd = ImageEvaluationReport.FrechetSummary(
            generated: mean(fdGenerated), realFloor: mean(fdFloor), ratio: mean(fdGenerated) / mean(fdFloor), generatedStd: std(fdGenerated), realFloorStd: std(fdFloor),
            reference: halfQ, compared: m, repeats: repeats)
        let kid = ImageEvaluationReport.Comparison(generated: KernelDistance.compute(sg, sq, seed: seed),
                                                   realFloor: KernelDistance.pooled(kidFloor))
        return (fd, kid)
    }

    /// The probe for this real set and these settings: from the cache when there, else trained on
    /// (images, labels) and saved there. A cache that cannot be read or written only costs time.
    /// - Parameters:
    ///   - cacheKey: what identifies the training images (the real set's content key, the seed,
    ///     how they were chosen); the probe's config and training settings are added to it.
    ///   - cacheSalt: what else the real set depends on (limit, sizes).
    static func trainOrLoad(config: ImageProbeConfig, images: Tensor, labels: [Int], training: ProbeTraining, seed: UInt64,
                            cacheKey: [String], cacheSalt: [String], cacheDirectory: URL?,
                            progress: (String, Int, Int) -> Void, log: (String) -> Void) throws -> (ImageProbe, cached: Bool, path: URL?) {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let settings = String(decoding: try enc.encode(config), as: UTF8.self) + String(decoding: try enc.encode(training), as: UTF8.self)
        let key = ContentHash.hex((["image-probe v1"] + cacheKey + [settings] + cacheSalt).joined(separator: "\n"))
        let folder = cacheDirectory?.appendingPathComponent(key)
        if let folder, FileManager.default.fileExists(atPath: folder.appendingPathComponent(ImageProbe.configName).path) {
            do {
                let probe = try ImageProbe.load(from: folder)
                if probe.config == config, probe.record?.training == training, probe.record?.images == labels.count {
                    log("probe: cached in \(folder.path)")
                    return (probe, true, folder)
                }
                log("probe: the cached probe in \(folder.path) does not match; training a new one")
            } catch {
                log("probe: cannot read the cached probe (\(error)); training a new one")
            }
        }
        let probe = ImageProbe.train(images: images, labels: labels, config: config, training: training,
                                     seed: seed) { step, total, _ in progress("probe", step, total) }
        if let folder {
            do { try probe.save(to: folder) } catch { log("probe: not cached (\(error))") }
        }
        return (probe, false, folder)
    }

    static func augmentationGain(p: LabelledImages, q: LabelledImages, all: LabelledImages, generated: LabelledImages,
                                 test: LabelledImages?, config: ImageProbeConfig, options: ImageEvaluationOptions,
                                 progress: (String, Int, Int) -> Void) throws -> ImageEvaluationReport.AugmentationGain {
        guard generated.labels.allSatisfy({ $0 != nil }) else {
            throw EvaluationError("\(generated.source): --augmentation-gain needs the class of every generated image (class folders or NNNN-<class>.png)")
        }
        let train = test == nil ? p : all
        let heldOut = test ?? q
        var training = options.probeTraining
        training.steps = training.steps(for: train.count + generated.count)  // the same for both probes
        let real = ImageProbe.train(images: train.images, labels: train.labels.map { $0! }, config: config, training: training,
                                    seed: options.seed) { s, t, _ in progress("probe (real only)", s, t) }
        let mixed = ImageProbe.train(images: Tensor.concat([train.images, generated.images], axis: 0),
                                     labels: (train.labels + generated.labels).map { $0! }, config: config, training: training,
                                     seed: options.seed) { s, t, _ in progress("probe (real + generated)", s, t) }
        let heldLabels = heldOut.labels.map { $0! }
        let a = real.accuracy(heldOut.images, labels: heldLabels), b = mixed.accuracy(heldOut.images, labels: heldLabels)
        return .init(realOnlyAccuracy: a, augmentedAccuracy: b, gainPoints: 100 * (b - a),
                     heldOut: test == nil ? "\(all.source) (held-out half)" : heldOut.source, heldOutImages: heldOut.count,
                     realImages: train.count, generatedImages: generated.count, steps: training.steps ?? 0)
    }

    static func mean(_ v: [Double]) -> Double { v.reduce(0, +) / Double(Swift.max(1, v.count)) }

    static func std(_ v: [Double]) -> Double {
        let m = mean(v)
        return (v.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(Swift.max(1, v.count))).squareRoot()
    }

    /// Both feature sets standardised per dimension with the reference's mean and standard
    /// deviation (a dimension that does not vary is divided by 1e-3 of the typical one instead).
    /// One global scale instead gave the same seed-to-seed spread (measured on blurred images,
    /// whose FD depends most on the probe), so nothing is lost by weighing dimensions equally.
    static func standardised(_ reference: Tensor, _ other: Tensor) -> (Tensor, Tensor) {
        let n = reference.shape[0], d = reference.shape[1]
        var mean = [Double](repeating: 0, count: d), variance = [Double](repeating: 0, count: d)
        for i in 0..<n { for j in 0..<d { mean[j] += Double(reference.data[i * d + j]) } }
        for j in 0..<d { mean[j] /= Double(n) }
        for i in 0..<n { for j in 0..<d { let e = Double(reference.data[i * d + j]) - mean[j]; variance[j] += e * e } }
        let std = variance.map { ($0 / Double(Swift.max(1, n - 1))).squareRoot() }
        let typical = std.reduce(0, +) / Double(Swift.max(1, d))
        let scale = std.map { 1 / Swift.max($0, 1e-3 * typical, 1e-12) }
        func apply(_ t: Tensor) -> Tensor {
            let out = Tensor.zeros(t.shape)
            for i in 0..<t.shape[0] { for j in 0..<d { out.data[i * d + j] = Float((Double(t.data[i * d + j]) - mean[j]) * scale[j]) } }
            return out
        }
        return (apply(reference), apply(other))
    }
}
