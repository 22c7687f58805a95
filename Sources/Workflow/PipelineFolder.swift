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
    public func guidance(scale: Float, rescale: Float = 0, interval: ClosedRange<Float>? = nil, labels: [Int]?) -> Guidance? {
        guard scale != 1, labels != nil, let null = nullLabel else { return nil }
        return Guidance(scale: scale, rescale: rescale, nullLabel: null, interval: interval)
    }

    /// A label from what a user typed: a class name (any case, or spelled as `matching` allows)
    /// wins over an index.
    public func label(_ s: String) -> Int? {
        let s = s.trimmingCharacters(in: .whitespaces)
        if let i = matching(s) { return i }
        if let i = Int(s), i >= 0, i < (labelCount ?? 0), i != nullLabel { return i }
        return nil
    }

    /// The class a name means, however a dataset or a file system spells it: any case, words
    /// joined by `_`, `-`, `/`, `.` or spaces, plurals (`Ankle_boots` → ankle-boot), and a name
    /// that adds words after a class's (`T-shirt_top` → t-shirt). Exact (case-insensitive) names
    /// win; a looser spelling that fits more than one class matches none. Never an index.
    public func matching(_ name: String) -> Int? {
        if let i = names.firstIndex(where: { $0.caseInsensitiveCompare(name) == .orderedSame }) { return i }
        let words = Self.words(name)
        guard !words.isEmpty else { return nil }
        let all = names.map(Self.words)
        let same = all.indices.filter { all[$0] == words }
        if same.count == 1 { return same[0] }
        if !same.isEmpty { return nil }
        let prefix = all.indices.filter { i in
            let a = all[i], (short, long) = a.count < words.count ? (a, words) : (words, a)
            return !short.isEmpty && Array(long.prefix(short.count)) == short
        }
        return prefix.count == 1 ? prefix[0] : nil
    }

    /// A name's words, lower-cased and made singular (`Ankle_Boots` → ["ankle", "boot"]).
    static func words(_ name: String) -> [String] {
        name.lowercased().split(whereSeparator: { !$0.isLetter && !$0.isNumber }).map { w -> String in
            let w = String(w)
            if w.count > 4 && w.hasSuffix("ies") { return String(w.dropLast(3)) + "y" }
            if w.count > 4 && ["sses", "shes", "ches", "xes"].contains(where: w.hasSuffix) { return String(w.dropLast(2)) }
            if w.count > 3 && w.hasSuffix("s") && !w.hasSuffix("ss") && !w.hasSuffix("us") { return String(w.dropLast()) }
            return w
        }
    }

    /// The class an input file stands for, from its folder's name (`…/sneaker/x.png`) or its own
    /// (`sneaker.png`, `0003-sneaker.png`, `60.wav`): nil when neither names a class.
    public func label(ofFile url: URL) -> Int? {
        let stem = url.deletingPathExtension().lastPathComponent
        let named = stem.drop(while: { $0.isNumber }).drop(while: { $0 == "-" || $0 == "_" || $0 == " " })
        let candidates = [url.deletingLastPathComponent().lastPathComponent, stem] + (named.isEmpty || named.count == stem.count ? [] : [String(named)])
        for c in candidates { if let i = matching(c), i != nullLabel { return i } }
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
    /// class in turn when it is nil — or, with an input to vary and no list, the input's own class
    /// when its folder or file name names one (`…/sneaker/x.png`, `0003-sneaker.png`, `60.wav`),
    /// else its own content kept unconditioned (the null label) instead of another class forced
    /// on it. `guided` is false for that last case (no guidance); `note` says which class an input
    /// kept. Throws `UnknownClass`, or `UnconditionalModel` when a list is given to a model without classes.
    public func conditioning(_ list: String?, count: Int, input: URL?) throws -> (conditioning: Conditioning, guided: Bool, note: String?) {
        if let list {
            guard isConditional else { throw UnconditionalModel() }
            return (.labels(try labels(list, count: count)), true, nil)
        }
        if let input {
            if isConditional, let own = label(ofFile: input) {
                return (.labels([Int](repeating: own, count: count)), true, "\(name(own)), from the input's name")
            }
            return (nullLabel.map { .labels([Int](repeating: $0, count: count)) } ?? .unconditional, false,
                    isConditional ? "none: the input's own content (its name names no class; --class sets one)" : nil)
        }
        return (isConditional ? .labels(cycling(count: count)) : .unconditional, true, nil)
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

/// A small JSON record a pipeline folder keeps beside model_index.json for our own tools
/// (diffusers ignores it): `distillation.json` (a student's record), `sampling.json` (the folder's
/// sampling defaults). One load and one save for all of them: missing is nil, unreadable or
/// out-of-range is an error naming the file.
public protocol PipelineFolderRecord: Codable {
    /// The file's name in the pipeline folder.
    static var fileName: String { get }
    /// What the record is, for errors ("is not a readable distillation record").
    static var recordName: String { get }
    /// Why a decoded record cannot be used, nil when it can.
    func problem() -> String?
}

extension PipelineFolderRecord {
    /// The record in pipeline folder `dir`, nil when it has none.
    public static func load(_ dir: URL) throws -> Self? {
        let url = dir.appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        let record: Self
        do { record = try JSONDecoder().decode(Self.self, from: Data(contentsOf: url)) } catch {
            throw ModelFolderError(path: url.path, reason: "is not a readable \(recordName): \(error)")
        }
        if let p = record.problem() { throw ModelFolderError(path: url.path, reason: p) }
        return record
    }

    /// Writes the record into `dir` (atomically: a temp file renamed).
    public func save(_ dir: URL) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try enc.encode(self), to: dir.appendingPathComponent(Self.fileName))
    }
}
