import Foundation
import Tensor
import NN

/// A probe file that cannot be used, naming the file and the reason.
public struct ProbeError: Error, CustomStringConvertible {
    public let file: String
    public let reason: String
    public init(file: String, reason: String) { self.file = file; self.reason = reason }
    public var description: String { "\(file): \(reason)" }
}

/// Shape of an image probe.
public struct ImageProbeConfig: Codable, Equatable, Sendable {
    /// Image channels (1 gray, 3 RGB) and side (images are square).
    public var channels: Int
    public var size: Int
    /// Class names by label.
    public var classNames: [String]
    /// Channels of each stage: 3×3 convolution (stride 1 in the first stage, 2 after) + GroupNorm
    /// + SiLU. The last width is the feature dimension. Five stages on 32 × 32 images end at 2 × 2
    /// with a receptive field of 33 pixels: each feature sees the whole object.
    public var widths: [Int]
    /// Convolutions per stage (the first of a stage carries its stride).
    public var depth: Int
    public var groups: Int

    public init(channels: Int, size: Int, classNames: [String], widths: [Int] = ImageProbeConfig.defaultWidths, depth: Int = 1,
                groups: Int = 8) {
        self.channels = channels; self.size = size; self.classNames = classNames
        self.widths = widths; self.depth = depth; self.groups = groups
    }

    enum CodingKeys: String, CodingKey { case channels, size, classNames = "class_names", widths, depth, groups }

    /// Measured on 600 Fashion-MNIST images, 150 steps, 500 test images: 32/64/128 (three stages,
    /// receptive field 9 px) reached 50 % test accuracy; 16/32/64/128/128 (five, 33 px) 76 % in
    /// half the time; a second convolution per stage did not help.
    public static let defaultWidths = [16, 32, 64, 128, 128]

    /// Why this configuration cannot be built, or nil.
    public var problem: String? {
        if channels != 1 && channels != 3 { return "channels must be 1 or 3, not \(channels)" }
        if size < 4 || size > 1024 { return "size \(size) outside 4...1024" }
        if classNames.count < 2 { return "needs at least 2 classes, has \(classNames.count)" }
        if widths.isEmpty || widths.count > 6 || widths.contains(where: { $0 < 1 || $0 > 4096 }) { return "widths \(widths) invalid" }
        if depth < 1 || depth > 4 { return "depth \(depth) outside 1...4" }
        if groups < 1 || widths.contains(where: { $0 % Swift.min(groups, $0) != 0 }) { return "groups \(groups) do not divide widths \(widths)" }
        return nil
    }
}

/// How a probe is trained: AdamW, linear warm-up then cosine decay, random shifts as the only
/// augmentation (no flips: they would teach a digit probe that mirrored digits are fine).
public struct ProbeTraining: Codable, Equatable, Sendable {
    /// Steps = epochs × ⌈N / batch⌉, kept within minSteps...maxSteps (small sets still train long
    /// enough, large ones stop in reasonable time); `steps` overrides. Long training makes the
    /// feature space a steadier yardstick: on 500 Fashion-MNIST images, FD of held-out real images
    /// spread over 8 % across three probe seeds after 200 steps and over 3.5 % after 600.
    public var epochs = 64
    public var minSteps = 500
    public var maxSteps = 1000
    public var steps: Int? = nil
    public var batchSize = 64
    public var learningRate: Float = 3e-3
    public var weightDecay: Float = 0.01
    /// Each training image is moved by up to this many pixels in x and y (edges repeated).
    public var maxShift = 2

    public init() {}

    enum CodingKeys: String, CodingKey {
        case epochs, minSteps = "min_steps", maxSteps = "max_steps", steps, batchSize = "batch_size"
        case learningRate = "learning_rate", weightDecay = "weight_decay", maxShift = "max_shift"
    }

    public func steps(for count: Int) -> Int {
        if let steps { return steps }
        let perEpoch = (count + batchSize - 1) / Swift.max(1, batchSize)
        return Swift.min(maxSteps, Swift.max(minSteps, epochs * perEpoch))
    }
}

/// What a trained probe was trained on (kept in probe.json).
public struct ProbeRecord: Codable, Equatable, Sendable {
    public var training: ProbeTraining
    public var seed: UInt64
    public var images: Int
    public var steps: Int
    public var seconds: Double
    public var finalLoss: Float

    enum CodingKeys: String, CodingKey { case training, seed, images, steps, seconds, finalLoss = "final_loss" }
}

/// One stage: 3×3 convolution, GroupNorm, SiLU.
final class ProbeStage: Module {
    let conv: Conv2d
    let norm: GroupNorm

    init(_ cin: Int, _ cout: Int, stride: Int, groups: Int) {
        conv = Conv2d(cin, cout, kernelSize: 3, stride: stride, padding: 1)
        norm = GroupNorm(groups: Swift.min(groups, cout), channels: cout)
    }

    func visit(_ v: inout ModuleVisitor) {
        v("conv", conv)
        v("norm", norm)
    }

    func callAsFunction(_ x: Tensor) -> Tensor { norm(conv(x)).silu() }
}

/// A small image classifier trained on the real set, whose pooled activations are the feature
/// space of `diffuse evaluate image` — our stand-in for Inception, for which no weights exist here.
///
///     x [N, C, 32, 32] → stage(C→16, stride 1) → stage(16→32, s2) [16²] → stage(32→64, s2) [8²]
///       → stage(64→128, s2) [4²] → stage(128→128, s2) [2²] → mean over H, W → features [N, 128]
///       → Linear → logits [N, classes]
///
/// (stage = 3×3 convolution, GroupNorm, SiLU.) Global pooling makes the features blind to where
/// the object sits, as Inception's are.
///
/// Parameter names: `stages.<i>.conv.weight`, `stages.<i>.norm.bias`, `head.weight`, ...
public final class ImageProbe: Module {
    public let config: ImageProbeConfig
    public internal(set) var record: ProbeRecord?
    let stages: [ProbeStage]
    let head: Linear

    /// Fresh weights from `NNInit`'s stream. - Precondition: `config.problem == nil`.
    public init(config: ImageProbeConfig) {
        precondition(config.problem == nil, "ImageProbeConfig: \(config.problem ?? "")")
        self.config = config
        var cin = config.channels
        var list: [ProbeStage] = []
        for (i, w) in config.widths.enumerated() {
            for j in 0..<config.depth {
                list.append(ProbeStage(cin, w, stride: i > 0 && j == 0 ? 2 : 1, groups: config.groups))
                cin = w
            }
        }
        stages = list
        head = Linear(cin, config.classNames.count)
    }

    public func visit(_ v: inout ModuleVisitor) {
        v("stages", stages.map { $0 as any Module })
        v("head", head)
    }

    public var featureDimension: Int { config.widths.last! }
    public var classCount: Int { config.classNames.count }

    /// x: [N, C, S, S] -> [N, D], the pooled last stage.
    public func features(_ x: Tensor) -> Tensor {
        precondition(x.rank == 4 && x.shape[1] == config.channels, "ImageProbe(\(config.channels) channels) got \(x.shape)")
        var h = x
        for s in stages { h = s(h) }
        return h.mean(axes: [2, 3])  // [N, D, h, w] -> [N, D]
    }

    /// x: [N, C, S, S] -> logits [N, classes].
    public func callAsFunction(_ x: Tensor) -> Tensor { head(features(x)) }

    /// Features [N, D] and predicted classes of many images, in batches, with recording off.
    public func embed(_ images: Tensor, batchSize: Int = 256) -> (features: Tensor, predictions: [Int]) {
        let n = images.shape[0], d = featureDimension, k = classCount
        let out = Tensor.zeros([n, d])
        var predictions: [Int] = []
        predictions.reserveCapacity(n)
        GradMode.withoutGrad {
            var start = 0
            while start < n {
                let end = Swift.min(n, start + batchSize)
                let f = features(images.slice(axis: 0, start..<end))  // [b, D]
                (out.data + start * d).update(from: f.data, count: (end - start) * d)
                let logits = head(f)  // [b, K]
                for i in 0..<(end - start) {
                    var best = 0
                    for j in 1..<k where logits.data[i * k + j] > logits.data[i * k + best] { best = j }
                    predictions.append(best)
                }
                start = end
            }
        }
        return (out, predictions)
    }

    /// Share of `images` classified as `labels`.
    public func accuracy(_ images: Tensor, labels: [Int]) -> Double {
        precondition(images.shape[0] == labels.count, "accuracy: \(images.shape[0]) images, \(labels.count) labels")
        let p = embed(images).predictions
        return Double(zip(p, labels).filter { $0 == $1 }.count) / Double(Swift.max(1, labels.count))
    }

    // MARK: Training

    /// Trains a fresh probe on labelled images [N, C, S, S] in [-1, 1]. Deterministic for a seed:
    /// the initial weights, the batch order and the shifts all come from it.
    /// - Parameter onStep: (step, total, loss) after each step.
    public static func train(images: Tensor, labels: [Int], config: ImageProbeConfig, training: ProbeTraining = ProbeTraining(),
                             seed: UInt64, onStep: (Int, Int, Float) -> Void = { _, _, _ in }) -> ImageProbe {
        let n = images.shape[0]
        precondition(n >= 1 && labels.count == n, "ImageProbe.train: \(images.shape) images, \(labels.count) labels")
        precondition(labels.allSatisfy { $0 >= 0 && $0 < config.classNames.count }, "ImageProbe.train: label outside 0..<\(config.classNames.count)")
        precondition(images.shape == [n, config.channels, config.size, config.size],
                     "ImageProbe.train: images \(images.shape) for a \(config.channels)×\(config.size)² probe")
        let started = Date()
        let saved = NNInit.generator
        NNInit.seed(seed)
        let probe = ImageProbe(config: config)
        NNInit.generator = saved
        let steps = training.steps(for: n)
        let optimizer = AdamW(probe.trainableParameters(), learningRate: training.learningRate, weightDecay: training.weightDecay)
        let schedule = LRSchedule.cosine(warmup: Swift.max(1, steps / 20), total: steps)
        var rng = SplitMix64(seed: seed ^ 0x5EED_0F_9B0BE)
        let b = Swift.min(training.batchSize, n)
        var order = rng.permutation(n), position = 0
        var loss: Float = 0
        for step in 0..<steps {
            var idx: [Int] = []
            idx.reserveCapacity(b)
            while idx.count < b {
                if position == n { order = rng.permutation(n); position = 0 }
                idx.append(order[position]); position += 1
            }
            let s = training.maxShift
            let shifts = idx.map { _ in (s == 0 ? 0 : rng.below(2 * s + 1) - s, s == 0 ? 0 : rng.below(2 * s + 1) - s) }
            let x = shiftedBatch(images, idx, shifts: shifts)
            optimizer.learningRate = training.learningRate * Float(schedule.factor(at: step))
            probe.zeroGrad()
            let l = crossEntropy(probe(x), idx.map { labels[$0] })
            l.backward()
            optimizer.step()
            loss = l.item()
            onStep(step + 1, steps, loss)
        }
        probe.zeroGrad()
        probe.record = ProbeRecord(training: training, seed: seed, images: n, steps: steps,
                                   seconds: Date().timeIntervalSince(started), finalLoss: loss)
        return probe
    }

    /// Images idx of [N, C, S, S], each moved by (dy, dx) pixels with edge pixels repeated: [B, C, S, S].
    static func shiftedBatch(_ images: Tensor, _ idx: [Int], shifts: [(Int, Int)]) -> Tensor {
        let c = images.shape[1], h = images.shape[2], w = images.shape[3]
        let per = c * h * w
        let out = Tensor.zeros([idx.count, c, h, w])
        for (k, i) in idx.enumerated() {
            let (dy, dx) = shifts[k]
            let src = images.data + i * per, dst = out.data + k * per
            for ch in 0..<c {
                for y in 0..<h {
                    let sy = Swift.min(h - 1, Swift.max(0, y - dy))
                    let srow = src + (ch * h + sy) * w, drow = dst + (ch * h + y) * w
                    for x in 0..<w { drow[x] = srow[Swift.min(w - 1, Swift.max(0, x - dx))] }
                }
            }
        }
        return out
    }

    // MARK: Files

    public static let weightsName = "probe.safetensors"
    public static let configName = "probe.json"

    struct FileContents: Codable {
        var format = "diffuse-image-probe"
        var version = 1
        var config: ImageProbeConfig
        var record: ProbeRecord?
    }

    /// Writes probe.safetensors and probe.json into `folder` (created if needed), each atomically.
    public func save(to folder: URL) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try save(safetensors: folder.appendingPathComponent(Self.weightsName), metadata: ["format": "diffuse-image-probe"])
        try ConfigFile.write(FileContents(config: config, record: record), to: folder.appendingPathComponent(Self.configName))
    }

    /// Reads a folder `save(to:)` wrote; every key and shape is checked.
    public static func load(from folder: URL) throws -> ImageProbe {
        let json = folder.appendingPathComponent(configName)
        let contents: FileContents
        do { contents = try ConfigFile.read(FileContents.self, from: json) } catch {
            throw ProbeError(file: json.path, reason: "not a probe description: \(error)")
        }
        guard contents.format == "diffuse-image-probe", contents.version == 1 else {
            throw ProbeError(file: json.path, reason: "format \(contents.format) version \(contents.version) is not an image probe this version reads")
        }
        if let p = contents.config.problem { throw ProbeError(file: json.path, reason: p) }
        let probe = ImageProbe(config: contents.config)
        try probe.load(safetensors: folder.appendingPathComponent(weightsName))
        probe.record = contents.record
        return probe
    }
}

/// Mean cross-entropy of logits [N, K] against class labels, from primitives:
/// log Σ exp(z) − z_label with z = logits − rowmax (the max is a constant: it cancels in the
/// gradient and keeps exp from overflowing).
func crossEntropy(_ logits: Tensor, _ labels: [Int]) -> Tensor {
    precondition(logits.rank == 2 && logits.shape[0] == labels.count, "crossEntropy: logits \(logits.shape), \(labels.count) labels")
    let n = logits.shape[0], k = logits.shape[1]
    let maxes = Tensor.zeros([n, 1]), onehot = Tensor.zeros([n, k])
    for i in 0..<n {
        var m = -Float.infinity
        for j in 0..<k { m = Swift.max(m, logits.data[i * k + j]) }
        maxes.data[i] = m
        onehot.data[i * k + labels[i]] = 1
    }
    let z = logits - maxes  // [N, K]
    let lse = z.exp().sum(axis: 1, keepDims: true).log()  // [N, 1]
    let picked = (z * onehot).sum(axis: 1, keepDims: true)  // [N, 1]
    return (lse - picked).mean()
}
