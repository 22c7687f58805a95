import Foundation
import Tensor
import NN
import Diffusion

/// Class names of a conditional model and the labels users type: a class *name* wins over an
/// index (`--class 60` on a notes model means MIDI pitch 60, not the 61st folder). The null
/// label (classifier-free guidance) is the embedding row after the classes, when there is one.
public struct ClassLabels: Sendable, Equatable {
    public var names: [String]
    /// Rows of the model's class embedding (nil: unconditional).
    public var labelCount: Int?

    public init(names: [String], labelCount: Int?) {
        self.names = names
        self.labelCount = labelCount
    }

    public var isConditional: Bool { labelCount != nil }
    /// The guidance scale of class models when none is asked for.
    public static let defaultGuidance: Float = 2

    /// The label meaning "no class": one more embedding than classes.
    public var nullLabel: Int? {
        guard let k = labelCount, k == names.count + 1 else { return nil }
        return k - 1
    }

    /// Classifier-free guidance for sampling `labels` at `scale` (nil when there is nothing to
    /// guide: no labels, scale 1, or a model trained without the null label). `rescale` is
    /// diffusers' `guidance_rescale` (Lin et al. 2024, §3.4): the guided prediction's spread is
    /// pulled back towards the conditional one's, which tames over-bright images and loud audio.
    public func guidance(scale: Float, rescale: Float = 0, labels: [Int]?) -> Guidance? {
        guard scale != 1, labels != nil, let null = nullLabel else { return nil }
        return Guidance(scale: scale, rescale: rescale, nullLabel: null)
    }

    /// A label from what a user typed: a class name (any case) wins over an index.
    public func label(_ s: String) -> Int? {
        let s = s.trimmingCharacters(in: .whitespaces)
        if let i = names.firstIndex(where: { $0.caseInsensitiveCompare(s) == .orderedSame }) { return i }
        if let i = Int(s), i >= 0, i < (labelCount ?? 0), i != nullLabel { return i }
        return nil
    }

    /// Labels for `count` samples from a comma-separated list given in turn (`3,7` → 3, 7, 3, 7...).
    public func labels(_ list: String, count: Int) throws -> [Int] {
        let wanted = try list.split(separator: ",").map { s -> Int in
            guard let l = label(String(s)) else { throw UnknownClass(given: String(s), known: names) }
            return l
        }
        guard !wanted.isEmpty else { throw UnknownClass(given: list, known: names) }
        return (0..<count).map { wanted[$0 % wanted.count] }
    }

    /// Up to `k` labels spread evenly over `count` classes, lowest and highest included (the
    /// classes a training preview shows).
    public static func spread(_ count: Int, _ k: Int) -> [Int] {
        guard count > k else { return Array(0..<count) }
        return (0..<k).map { Int((Double($0) * Double(count - 1) / Double(k - 1)).rounded()) }
    }

    /// Every class in turn (the default of a conditional model's generation).
    public func cycling(count: Int) -> [Int] {
        let k = Swift.max(1, nullLabel ?? (labelCount ?? 1))
        return (0..<count).map { $0 % k }
    }

    /// The conditioning of `count` samples: the labels `list` asks for (given in turn), every
    /// class in turn when it is nil — or, with an input to vary and no list, the input's own
    /// content kept unconditioned (the null label) instead of another class forced on it.
    /// `guided` is false for that last case (no guidance). Throws `UnknownClass`, or
    /// `UnconditionalModel` when a list is given to a model without classes.
    public func conditioning(_ list: String?, count: Int, hasInput: Bool) throws -> (conditioning: Conditioning, guided: Bool) {
        if let list {
            guard isConditional else { throw UnconditionalModel() }
            return (.labels(try labels(list, count: count)), true)
        }
        if hasInput { return (nullLabel.map { .labels([Int](repeating: $0, count: count)) } ?? .unconditional, false) }
        return (isConditional ? .labels(cycling(count: count)) : .unconditional, true)
    }

    /// The name of a label (its number when the model has no names).
    public func name(_ label: Int) -> String { names.indices.contains(label) ? names[label] : String(label) }

    /// classes.json in a pipeline folder: a JSON list of names; absent → numbers.
    public static func load(_ dir: URL, labelCount: Int?) throws -> ClassLabels {
        let url = dir.appendingPathComponent("classes.json")
        guard let d = try? Data(contentsOf: url) else {
            return ClassLabels(names: labelCount.map { (0..<$0).map(String.init) } ?? [], labelCount: labelCount)
        }
        guard let list = try? JSONDecoder().decode([String].self, from: d) else {
            throw ConfigError(key: "classes.json", reason: "\(url.path) is not a JSON list of class names")
        }
        return ClassLabels(names: list, labelCount: labelCount)
    }

    public func save(_ dir: URL) throws {
        guard !names.isEmpty else { return }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted]
        try AtomicFile.write(try enc.encode(names), to: dir.appendingPathComponent("classes.json"))
    }
}

/// Classes were asked of a model trained without them.
public struct UnconditionalModel: Error, CustomStringConvertible {
    public init() {}
    public var description: String { "the model is unconditional: it takes no class" }
}

/// A class the model does not know.
public struct UnknownClass: Error, CustomStringConvertible {
    public var given: String
    public var known: [String]
    public var description: String { "\(given): not a class of this model (\(known.joined(separator: ", ")))" }
}

/// The folder every pipeline shares (diffusers layout):
///
///     model_index.json                           pipeline class, unet and scheduler classes
///     unet/config.json, unet/diffusion_pytorch_model.safetensors
///     scheduler/scheduler_config.json
///     classes.json                               (ours) class names by label
public enum PipelineFolder {
    /// The scheduler of a pipeline folder (DDPM defaults when the folder has none).
    public static func scheduler(in dir: URL) throws -> SchedulerConfig {
        let u = dir.appendingPathComponent("scheduler/scheduler_config.json")
        return FileManager.default.fileExists(atPath: u.path) ? try SchedulerConfig.load(u) : SchedulerConfig(.ddpm)
    }

    /// Writes model_index.json, the scheduler and classes.json; the caller writes unet/.
    public static func save(to dir: URL, pipelineClass: String, unetClass: String, scheduler: SchedulerConfig,
                            classes: ClassLabels) throws {
        let fm = FileManager.default
        try fm.createDirectory(at: dir.appendingPathComponent("scheduler"), withIntermediateDirectories: true)
        try AtomicFile.write(try scheduler.jsonData(), to: dir.appendingPathComponent("scheduler/scheduler_config.json"))
        let index: [String: JSONValue] = [
            "_class_name": .string(pipelineClass), "_diffusers_version": .string(ConfigWriter.diffusersVersion),
            "unet": .array([.string("diffusers"), .string(unetClass)]),
            "scheduler": .array([.string("diffusers"), .string(scheduler.className)]),
        ]
        try ConfigFile.write(index, to: dir.appendingPathComponent("model_index.json"))
        try classes.save(dir)
    }
}

