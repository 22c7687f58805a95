import Foundation
import NN
import Diffusion

/// One file an augmentation run made, with everything needed to make it again bit for bit:
/// one line of OUT/manifest.jsonl.
public struct AugmentationRecord: Codable, Equatable, Sendable {
    /// The new file, relative to the output folder.
    public var file: String
    public var className: String
    public var label: Int
    /// "generate" (from noise) or "vary" (image-to-image from `source`).
    public var mode: String
    /// vary: the real file it varies (absolute path).
    public var source: String?
    public var strength: Float?
    /// The sample's number in the run's seeded sequence (its noise depends on (seed, index) only).
    public var index: Int
    public var seed: UInt64
    public var sampler: String
    public var steps: Int
    public var guidance: Float
    /// diffusers' guidance_rescale, and the training timesteps guidance applied at [low, high]
    /// (absent: 0 and every step — also in manifests written before they were recorded).
    public var guidanceRescale: Float?
    public var guidanceInterval: [Float]?
    /// DDIM's / TCD's η (absent: the sampler's default).
    public var eta: Float?
    /// The pipeline folder used, and the SHA-256 of its weights file.
    public var model: String
    public var modelSHA256: String
    /// The model call that made it: samples `batchFirst` ..< `batchFirst` + `batchSize`, all of
    /// this record's class and source. Reproducing makes that call again, so the floats do not
    /// depend on how the batch size splits work over threads and kernels. (Absent in manifests
    /// written before it was recorded: the file is then made alone.)
    public var batchFirst: Int?
    public var batchSize: Int?
    /// The file's shape [C, …] when it differs from the model's sample: the inputs' (their class's
    /// first file, or the varied source), the sample resized back to it (`Modality.write(_:of:to:shape:)`).
    public var shape: [Int]?

    enum CodingKeys: String, CodingKey {
        case file, className = "class", label, mode, source, strength, index, seed, sampler, steps, guidance
        case guidanceRescale = "guidance_rescale", guidanceInterval = "guidance_interval", eta
        case model, modelSHA256 = "model_sha256", batchFirst = "batch_first", batchSize = "batch_size", shape
    }

    public init(file: String, className: String, label: Int, mode: String, source: String?, strength: Float?, index: Int,
                seed: UInt64, sampler: String, steps: Int, guidance: Float, model: String, modelSHA256: String) {
        self.file = file; self.className = className; self.label = label; self.mode = mode; self.source = source
        self.strength = strength; self.index = index; self.seed = seed; self.sampler = sampler; self.steps = steps
        self.guidance = guidance; self.model = model; self.modelSHA256 = modelSHA256
    }

    /// The guidance interval as the sampler takes it (nil: every step; a malformed one is an error).
    public func samplingInterval() throws -> ClosedRange<Float>? {
        guard let i = guidanceInterval else { return nil }
        if let p = SamplingRequest.guidanceIntervalProblem(i) { throw ConfigError(key: "guidance_interval", reason: p) }
        return i[0]...i[1]
    }

    /// Whether `other` comes from the same generation settings (all but file, class, source and
    /// the model call it was made in).
    public func sameSettings(_ other: AugmentationRecord) -> Bool {
        mode == other.mode && strength == other.strength && seed == other.seed && sampler == other.sampler
            && steps == other.steps && guidance == other.guidance && modelSHA256 == other.modelSHA256
            && (guidanceRescale ?? 0) == (other.guidanceRescale ?? 0) && guidanceInterval == other.guidanceInterval && eta == other.eta
    }
}

/// OUT/manifest.jsonl: one `AugmentationRecord` per line, appended after the files it lists are
/// written (a line never names a missing file). Reading skips a torn last line.
public enum AugmentationManifest {
    public static func read(_ url: URL) throws -> [AugmentationRecord] {
        guard let data = try? Data(contentsOf: url) else { return [] }
        let lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true)
        var out: [AugmentationRecord] = []
        for (i, line) in lines.enumerated() {
            do { out.append(try JSONDecoder().decode(AugmentationRecord.self, from: Data(line))) } catch {
                if i == lines.count - 1 { break }  // a line cut short by a killed run
                throw ConfigError(key: "manifest", reason: "\(url.path) line \(i + 1) is not a record: \(DecodingProblem.sentence(error))")
            }
        }
        return out
    }

    public static func line(_ r: AugmentationRecord) throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var d = try enc.encode(r)
        d.append(UInt8(ascii: "\n"))
        return d
    }

    /// OUT/manifest.jsonl opened for appending and locked for as long as an augmentation run
    /// writes into OUT: a second run into the same folder stops with a message instead of racing
    /// it (the lock dies with the process, so a killed run never blocks the next).
    public static func open(in out: URL) throws -> FileLock {
        guard let l = try FileLock.tryLock(out.appendingPathComponent("manifest.jsonl")) else {
            throw AugmentationBusy(folder: out.path)
        }
        return l
    }

    /// Appends records in one `O_APPEND` write (and fsyncs) through the run's lock.
    public static func append(_ records: [AugmentationRecord], to manifest: FileLock) throws {
        var d = Data()
        for r in records { d.append(try line(r)) }
        try manifest.append(d)
    }
}

/// Another augmentation run is writing into the same output folder.
public struct AugmentationBusy: Error, CustomStringConvertible {
    public var folder: String
    public var description: String {
        "\(folder): another augment run is writing into this folder; wait for it to finish (this run would then keep its files) or choose another --out"
    }
}
