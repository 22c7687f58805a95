import Foundation
import Tensor
import NN
import Diffusion
import Media

/// Makes a labelled folder bigger with a class-conditional model, in the same layout
/// (OUT/<class>/*.<ext>), listing every new file in OUT/manifest.jsonl with what made it. Inputs
/// are only read. Re-running skips what is already made; any record can be made again alone.
///
/// Sample numbers (the `index` that, with the seed, fixes a sample's noise) are stable: class
/// `label` × 1,000,000 + k for generated samples, source number × 1,000 + k for variations, so a
/// larger --per-class later adds files without touching the earlier ones.
public enum DatasetAugment {
    public enum Mode: String, Sendable, CaseIterable { case generate, vary }

    public struct Options: Sendable {
        public var mode = Mode.generate
        /// generate: new samples per class; or `total` spread over the classes (`balance`: so the
        /// classes end up as even as possible, real files included).
        public var perClass: Int? = nil
        public var total: Int? = nil
        public var balance = false
        /// vary: variations per real sample, and how far each is noised (0 keeps it, 1 replaces it).
        public var perSource = 1
        public var strength: Float = 0.5
        public var sampler = SamplerName.dpmpp2m
        public var steps = 20
        /// nil: the model folder's own default (`Pipeline.defaultGuidance`).
        public var guidance: Float? = nil
        /// diffusers' guidance_rescale (0: off) and the timesteps guidance applies at (nil: all).
        public var guidanceRescale: Float = 0
        /// nil: the model folder's own (`Pipeline.defaultGuidanceInterval`), else every timestep.
        public var guidanceInterval: ClosedRange<Float>? = nil
        /// DDIM's / TCD's η (nil: the sampler's default).
        public var eta: Float? = nil
        public var seed: UInt64 = 0
        public var batch = 32
        public init() {}
    }

    public struct Job {
        public var record: AugmentationRecord
        public var label: Int?          // the model's label (nil: unconditional)
    }

    /// What a run did: files made, files already there, real files skipped (unreadable, with why).
    public struct Outcome {
        public var made = 0
        public var kept = 0
        public var skipped: [(file: String, reason: String)] = []
        /// Class folders matched to a model class of another spelling (`Ankle_boot` → ankle-boot).
        public var matched: [(folder: String, className: String)] = []
        /// Every file made, relative to the output folder.
        public var files: [String] = []
    }

    /// Each class folder's model label: the class of its name however spelled (`ClassLabels.matching`).
    public static func modelLabels(_ data: ClassFolder, _ classes: ClassLabels) -> [Int?] {
        data.classNames.map { classes.matching($0) }
    }

    /// How many new samples each class gets.
    public static func counts(real: [Int], options o: Options) -> [Int] {
        let k = real.count
        if let n = o.perClass { return [Int](repeating: n, count: k) }
        guard let total = o.total, k > 0 else { return [Int](repeating: 0, count: k) }
        guard o.balance else { return (0..<k).map { total / k + ($0 < total % k ? 1 : 0) } }
        // Water-filling: raise the smallest classes first.
        var add = [Int](repeating: 0, count: k)
        for _ in 0..<total {
            let i = (0..<k).min { (real[$0] + add[$0], $0) < (real[$1] + add[$1], $1) }!
            add[i] += 1
        }
        return add
    }

    /// Every file the run should hold, in sample-number order.
    public static func plan(data: ClassFolder, classes: ClassLabels, fileExtension ext: String, modelDir: URL,
                            modelSHA256: String, options o: Options) throws -> [Job] {
        let names = data.classNames.isEmpty ? [""] : data.classNames
        func modelLabel(_ name: String) -> Int? { name.isEmpty ? nil : classes.matching(name) }
        let guidance = o.guidance ?? ClassLabels.defaultGuidance
        var jobs: [Job] = []
        func record(_ file: String, _ c: Int, _ source: String?, _ index: Int, guidance: Float) -> AugmentationRecord {
            var r = AugmentationRecord(file: file, className: names[c], label: modelLabel(names[c]) ?? -1, mode: o.mode.rawValue,
                                       source: source, strength: o.mode == .vary ? o.strength : nil, index: index, seed: o.seed,
                                       sampler: o.sampler.rawValue, steps: o.steps, guidance: guidance, model: modelDir.path,
                                       modelSHA256: modelSHA256)
            r.eta = o.eta
            // Recorded only where they act (a guided sample) and differ from their defaults.
            if guidance != 1 {
                r.guidanceRescale = o.guidanceRescale == 0 ? nil : o.guidanceRescale
                r.guidanceInterval = o.guidanceInterval.map { [$0.lowerBound, $0.upperBound] }
            }
            return r
        }
        func dir(_ c: Int) -> String { names[c].isEmpty ? "" : names[c] + "/" }
        switch o.mode {
        case .generate:
            if classes.isConditional {
                let unknown = names.filter { modelLabel($0) == nil }
                guard unknown.isEmpty else {
                    throw ModelFolderError(path: modelDir.path, reason: "the model has no class \(unknown.joined(separator: ", ")) (its classes: \(classes.names.joined(separator: ", "))); train one on the data with --train-steps")
                }
            } else if names.count > 1 {
                throw ModelFolderError(path: modelDir.path, reason: "the model is unconditional and the data has \(names.count) classes: use --mode vary, or train one with --train-steps")
            }
            let real = (0..<names.count).map { c in data.files.filter { $0.label == c }.count }
            for (c, n) in counts(real: real, options: o).enumerated() {
                for k in 0..<n {
                    let file = dir(c) + String(format: "gen-s%llu-%05d.", o.seed, k) + ext
                    jobs.append(Job(record: record(file, c, nil, c * 1_000_000 + k, guidance: modelLabel(names[c]) == nil ? 1 : guidance),
                                    label: modelLabel(names[c])))
                }
            }
        case .vary:
            for (s, f) in data.files.enumerated() {
                let stem = f.url.deletingPathExtension().lastPathComponent
                let label = modelLabel(names[f.label])
                for k in 0..<o.perSource {
                    let file = dir(f.label) + "\(stem)-vary\(k)-s\(o.seed).\(ext)"
                    // A class the model never saw: vary it unconditionally (the null label, no guidance).
                    jobs.append(Job(record: record(file, f.label, f.url.path, s * 1_000 + k, guidance: label == nil ? 1 : guidance),
                                    label: label ?? (classes.isConditional ? classes.nullLabel : nil)))
                }
            }
        }
        return jobs
    }

    /// Makes the planned files that are not there yet. A real file that cannot be read (vary) is
    /// skipped, reported through `warn` and counted; it never stops the run.
    ///
    /// Under `mpirun` (`ranks`) the model calls are dealt out in turn: call g is rank g mod K's,
    /// each rank writes its own files, and rank 0 alone holds the manifest, appending each round
    /// of K calls' lines in call order once the ranks have said which they made. Files, lines and
    /// their order are those of one process (each call is the same call, on whichever rank).
    @discardableResult
    public static func run<M: Modality>(_ type: M.Type, data: ClassFolder, modelDir: URL, out: URL, options o: Options,
                                                   ranks: Ranks? = MPIRanks.world,
                                                   warn: (String) -> Void = { _ in },
                                                   progress: (Int, Int) -> Void = { _, _ in }) throws -> Outcome {
        precondition(o.batch >= 1 && o.steps >= 1 && o.perSource >= 1, "augment: bad options")
        let ranks = ranks.flatMap { $0.size > 1 ? $0 : nil }
        let writer = ranks?.isWriter ?? true
        let pipeline = try Pipeline<M>.load(modelDir)
        var o = o
        o.guidance = o.guidance ?? pipeline.defaultGuidance
        if o.guidance != 1 { o.guidanceInterval = o.guidanceInterval ?? pipeline.defaultGuidanceInterval }
        let jobs0 = try plan(data: data, classes: pipeline.classes, fileExtension: M.fileExtension, modelDir: modelDir,
                            modelSHA256: try modelHash(modelDir), options: o)
        let fm = FileManager.default
        // Rank 0 takes the folder (a failure there ends the job) before any rank looks into it.
        var manifest: FileLock? = nil
        if writer {
            try fm.createDirectory(at: out, withIntermediateDirectories: true)
            manifest = try AugmentationManifest.open(in: out)
            AtomicFile.removeLeftovers(in: out)
        }
        defer { manifest?.unlock() }
        ranks?.barrier()
        let manifestURL = out.appendingPathComponent("manifest.jsonl")
        var done: [String: AugmentationRecord] = [:]
        for r in try AugmentationManifest.read(manifestURL) { done[r.file] = r }
        var outcome = Outcome()
        for (folder, label) in zip(data.classNames, modelLabels(data, pipeline.classes)) {
            if let label, pipeline.classes.names.indices.contains(label), pipeline.classes.names[label] != folder {
                outcome.matched.append((folder, pipeline.classes.names[label]))
            }
        }
        // Files come back in their inputs' shape (a vary source's, else their class's first file's).
        let modelShape = pipeline.unet.sampleShape
        var shapes: [String: [Int]?] = [:]
        func shape(of url: URL) -> [Int]? {
            if let s = shapes[url.path] { return s }
            let s = (try? M.fileShape(url)).flatMap { $0 }.flatMap { $0 == modelShape ? nil : $0 }
            shapes[url.path] = s
            return s
        }
        let firstFile = Dictionary(data.files.map { (data.classNames.isEmpty ? "" : data.classNames[$0.label], $0.url) },
                                   uniquingKeysWith: { a, _ in a })
        var jobs = jobs0
        for i in jobs.indices {
            let r = jobs[i].record
            if let u = r.source.map({ URL(fileURLWithPath: $0) }) ?? firstFile[r.className] { jobs[i].record.shape = shape(of: u) }
        }
        var pending: [Job] = []
        for j in jobs {
            let exists = fm.fileExists(atPath: out.appendingPathComponent(j.record.file).path)
            if let old = done[j.record.file], exists {
                guard old.sameSettings(j.record) else {
                    throw MediaError.invalidData(file: out.appendingPathComponent(j.record.file).path,
                                                 reason: "was made with other settings (see manifest.jsonl); choose another --out or --seed")
                }
                outcome.kept += 1
                continue
            }
            pending.append(j)
        }
        // Batches of consecutive sample numbers with one mode of conditioning.
        var groups: [[Job]] = []
        for j in pending {
            if var last = groups.last, last.count < o.batch, let p = last.last, p.record.index + 1 == j.record.index,
               (p.label == nil) == (j.label == nil), p.record.guidance == j.record.guidance, p.record.source == j.record.source,
               p.record.guidanceRescale == j.record.guidanceRescale, p.record.guidanceInterval == j.record.guidanceInterval, p.record.eta == j.record.eta {
                last.append(j); groups[groups.count - 1] = last
            } else {
                groups.append([j])
            }
        }
        for g in groups.indices {
            for i in groups[g].indices { groups[g][i].record.batchFirst = groups[g][0].record.index; groups[g][i].record.batchSize = groups[g].count }
        }
        // Every rank has looked at what is there before any rank writes.
        ranks?.barrier()
        // A group's sample numbers are consecutive, so a vary group has one source (numbers jump by
        // 1,000 between sources): it is read when the group runs, keeping one batch in memory, and
        // an unreadable one drops the group.
        let (rank, size) = (ranks?.rank ?? 0, ranks?.size ?? 1)
        var finished = 0
        progress(0, pending.count)
        for round in stride(from: 0, to: groups.count, by: size) {
            // status[k]: 1 = group round + k made, 2 = skipped (its source unreadable), 0 = none.
            var status = [Float](repeating: 0, count: size)
            var reason: String? = nil
            if round + rank < groups.count {
                let g = groups[round + rank]
                var x0: Tensor? = nil
                if let s = g[0].record.source {
                    do {
                        let one = try M.read(URL(fileURLWithPath: s), for: pipeline)
                        x0 = Tensor.concat([Tensor](repeating: one, count: g.count), axis: 0)
                    } catch {
                        reason = "\(error)"
                        warn("skipped \(s): \(error)")
                    }
                }
                if reason == nil {
                    let samples = try render(g.map(\.record), labels: g.map(\.label), inputs: x0, pipeline: pipeline, batch: o.batch)
                    for (i, j) in g.enumerated() {
                        let url = out.appendingPathComponent(j.record.file)
                        try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                        try M.write(samples.item(i), of: pipeline, to: url, shape: j.record.shape)
                    }
                }
                status[rank] = reason == nil ? 1 : 2
            }
            ranks?.allReduceSum(&status)
            for k in 0..<size where round + k < groups.count {
                let g = groups[round + k]
                if status[k] == 1 {
                    if let manifest { try AugmentationManifest.append(g.map(\.record), to: manifest) }
                    outcome.files += g.map(\.record.file)
                    outcome.made += g.count
                } else if let s = g[0].record.source {
                    outcome.skipped.append((s, k == rank ? reason ?? "unreadable" : "unreadable (rank \(k) said why)"))
                }
                finished += g.count
            }
            progress(finished, pending.count)
        }
        return outcome
    }

    /// Samples [N, …] for records with consecutive sample numbers (`inputs`: the vary sources).
    static func render<M: Modality>(_ records: [AugmentationRecord], labels: [Int?], inputs: Tensor?, pipeline: Pipeline<M>,
                                               batch: Int) throws -> Tensor {
        let first = records[0]
        let conditional = labels.allSatisfy { $0 != nil }
        var initial: (sample: Tensor, strength: Float)? = nil
        if first.mode == Mode.vary.rawValue {
            guard let inputs else { throw ConfigError(key: "source", reason: "a vary record without its source file") }
            initial = (inputs, first.strength ?? 0.5)
        }
        guard let sampler = SamplerName(rawValue: first.sampler) else {
            throw ConfigError(key: "sampler", reason: "unknown sampler \(first.sampler)")
        }
        var request = SamplingRequest(count: records.count, conditioning: conditional ? .labels(labels.map { $0! }) : .unconditional,
                                      sampler: sampler, steps: first.steps, eta: first.eta, seed: first.seed, guidance: first.guidance,
                                      guidanceRescale: first.guidanceRescale ?? 0, batchSize: batch, firstIndex: first.index, initial: initial)
        request.guidanceInterval = try first.samplingInterval()
        return try pipeline.generate(request)
    }

    /// Makes one record's file again (same model, checked by hash) and writes it to `url`.
    public static func reproduce<M: Modality>(_ type: M.Type, _ r: AugmentationRecord, to url: URL) throws {
        let dir = URL(fileURLWithPath: r.model)
        let hash = try modelHash(dir)
        guard hash == r.modelSHA256 else {
            throw ModelFolderError(path: dir.path, reason: "its weights have SHA-256 \(hash.prefix(12))…, the record needs \(r.modelSHA256.prefix(12))…")
        }
        let pipeline = try Pipeline<M>.load(dir)
        let label: Int? = r.label >= 0 ? r.label : (r.mode == Mode.vary.rawValue && pipeline.classes.isConditional ? pipeline.classes.nullLabel : nil)
        // The whole model call the record was made in (its class and source throughout).
        let first = r.batchFirst ?? r.index, size = r.batchSize ?? 1
        guard size >= 1 && size <= 4096 && r.index >= first && r.index < first + size else {
            throw ConfigError(key: "batch_first", reason: "sample \(r.index) is not in the recorded batch \(first)..<\(first + size)")
        }
        var x0: Tensor? = nil
        if r.mode == Mode.vary.rawValue {
            guard let s = r.source else { throw ConfigError(key: "source", reason: "a vary record without its source file") }
            let one = try M.read(URL(fileURLWithPath: s), for: pipeline)
            x0 = Tensor.concat([Tensor](repeating: one, count: size), axis: 0)
        }
        let records = (0..<size).map { k -> AugmentationRecord in
            var x = r
            x.index = first + k
            return x
        }
        let samples = try render(records, labels: [Int?](repeating: label, count: size), inputs: x0, pipeline: pipeline, batch: size)
        try M.write(samples.item(r.index - first), of: pipeline, to: url, shape: r.shape)
    }

    /// SHA-256 of a pipeline or model folder's weights file.
    public static func modelHash(_ dir: URL) throws -> String {
        for sub in ["unet/", ""] {
            let u = dir.appendingPathComponent(sub + "diffusion_pytorch_model.safetensors")
            if FileManager.default.fileExists(atPath: u.path) { return try SHA256.hex(file: u) }
        }
        throw ModelFolderError(path: dir.path, reason: "no diffusion_pytorch_model.safetensors in it or in unet/")
    }
}
