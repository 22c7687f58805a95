import ArgumentParser
import Foundation
import Tensor
import Diffusion
import Image
import Evaluation

/// `evaluate image --prompts DIR --model M`: the prompt mode of `evaluate image`, for a
/// text-to-image model and a captioned folder of real images (PromptEvaluation).
struct PromptModeOptions: ParsableArguments {
    @Option(help: """
        Prompt mode: a captioned folder (metadata.jsonl with subgroup and group columns, and holdout.jsonl for \
        names held out of training), as `diffuse dataset emoji` writes it; its names are the prompts.
        """)
    var prompts: String?
    @Option(help: "Prompt mode: the text-to-image model (a Stable Diffusion pipeline folder).") var model: String?
    @Option(help: "Prompt mode: guidance scales of the guidance sweep, comma-separated.") var guidance = "1,3,5,7.5"
    @Option(help: "Prompt mode: step counts of the steps sweep, comma-separated.") var steps = "4,8,16,25"
    @Option(help: "Prompt mode: guidance of the steps sweep (default: 5 when swept, else the largest).") var atGuidance: Float?
    @Option(help: "Prompt mode: steps of the guidance sweep (default: the most swept).") var atSteps: Int?
    @Option(help: "Prompt mode: at most N prompts of each set, seen and held out (a seeded random choice; bounds the time).")
    var maxPrompts = 64
    @Option(help: "Prompt mode: images per prompt.") var countPerPrompt = 1
    @Option(help: "Prompt mode: sampler (default: the folder's own when it is lcm, tcd or ddim — a distilled student's — else dpm++2m).") var sampler: SamplerName?
    @Option(help: "Prompt mode: samples per model call (the images do not depend on it).") var batch = 16
    @Option(help: "Prompt mode: write a grid PNG at the sweeps' crossing: per prompt (8 seen, 8 held out) the real emoji, then its images.")
    var grid: String?

    func list<T>(_ text: String, _ flag: String, _ parse: (String) -> T?) throws -> [T] {
        let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let values = parts.compactMap(parse)
        guard !parts.isEmpty, values.count == parts.count, values.count <= 32 else {
            throw ValidationError("\(flag) takes up to 32 comma-separated numbers, got \(text)")
        }
        return values
    }

    func options() throws -> PromptEvaluationOptions {
        var o = PromptEvaluationOptions()
        o.guidances = try list(guidance, "--guidance") { Float($0) }
        o.steps = try list(steps, "--steps") { Int($0) }
        o.atGuidance = atGuidance
        o.atSteps = atSteps
        o.maxPrompts = maxPrompts
        o.countPerPrompt = countPerPrompt
        o.sampler = sampler
        o.batchSize = batch
        o.gridPrompts = grid == nil ? 0 : 8
        return o
    }

    func validate() throws {
        guard prompts != nil else {
            if model != nil || grid != nil { throw ValidationError("--model and --grid go with --prompts (prompt mode)") }
            return
        }
        guard model != nil else { throw ValidationError("--prompts needs --model: the text-to-image model to evaluate") }
        do { try options().validate() } catch let e as EvaluationError { throw ValidationError(e.description) }
        if let grid, outputExtension(grid) != "png" { throw ValidationError("--grid: give NAME.png") }
    }
}

extension EvaluateImage {
    func runPrompts(_ dir: String, model: String) throws {
        runtime.apply()
        let started = Date()
        let reference = try CaptionedReference.load(URL(fileURLWithPath: dir), size: size)
        let pipe = try StableDiffusionPipeline.load(URL(fileURLWithPath: model))
        var options = try promptMode.options()
        options.seed = seed
        options.probeTraining.steps = probeSteps
        options.cacheDirectory = noCache ? nil : ProbeCache.defaultDirectory
        options.cacheSalt = ["size \(size)"]
        var parts: [(heldOut: Bool, prompts: [Int], images: Tensor)] = []
        let report = try PromptEvaluation.run(reference: reference, pipeline: pipe, model: model, options: options,
                                              progress: Progress.stages(), log: note, onGrid: { parts.append(($0, $1, $2)) })
        if let grid = promptMode.grid {
            let tiles = try parts.map { try PromptEvaluation.gridImages(reference: reference, prompts: $0.prompts, generated: $0.images,
                                                                        perPrompt: options.countPerPrompt) }
            try ImageGrid.write(Tensor.concat(tiles, axis: 0), columns: 1 + options.countPerPrompt, to: URL(fileURLWithPath: grid))
            note("grid: \(grid) (a row per prompt: the real emoji, then its \(options.countPerPrompt) image\(options.countPerPrompt == 1 ? "" : "s"); "
                 + parts.map { "\($0.prompts.count) \($0.heldOut ? "held-out" : "seen")" }.joined(separator: ", then ") + ")")
        }
        if json {
            try printJSON(report)
        } else {
            print(Self.promptText(report, seconds: Date().timeIntervalSince(started)))
        }
    }

    static func promptText(_ r: PromptEvaluationReport, seconds: Double) -> String {
        func num(_ x: Double?, _ f: String = "%.2f") -> String { x.map { String(format: f, $0) } ?? "n/a" }
        let p = r.probe
        var lines = [
            "real       \(r.source): \(r.realImages) images (\(r.realImages - r.heldOutNames) seen names, \(r.heldOutNames) held out), \(p.subgroups) subgroups in \(p.groups) groups",
            "model      \(r.model): \(r.sampler), \(r.countPerPrompt) image\(r.countPerPrompt == 1 ? "" : "s") per prompt, judged at \(r.size)×\(r.size)",
            "probe      trained on the \(p.trainedOn) seen images by subgroup"
                + (p.cached ? " (cached)" : String(format: " (%d steps in %.1f s)", p.steps, p.seconds))
                + "; accuracy on the held-out names' real images: subgroup \(num(p.heldOutSubgroupAccuracy)), group \(num(p.heldOutGroupAccuracy))"
                + " (on its own training images: \(num(p.seenSubgroupAccuracy)))",
        ]
        let header = pad("", 10) + pad("prompts", 13) + lpad("subgroup", 9) + lpad("group", 7) + lpad("nearest", 9) + lpad("top-5", 7)
            + lpad("FD (× floor)", 17) + lpad("precision", 11) + lpad("recall", 8) + lpad("s", 7)
        func rows(_ point: PromptEvaluationReport.Point, _ label: String) -> [String] {
            var out: [String] = []
            for (name, s) in [("seen", point.seen), ("held-out", point.heldOut)] {
                guard let s else { continue }
                let fd = s.fd.map { String(format: "%.2f (%.2f×)", $0.generated, $0.ratio) } ?? "n/a"
                out.append(pad(out.isEmpty ? label : "", 10) + pad("\(name) \(s.prompts)", 13) + lpad(num(s.subgroupAccuracy), 9)
                           + lpad(num(s.groupAccuracy), 7) + lpad(num(s.nearestIsNamed), 9) + lpad(num(s.namedInNearest5), 7) + lpad(fd, 17)
                           + lpad(num(s.precisionRecall?.precision), 11) + lpad(num(s.precisionRecall?.recall), 8)
                           + lpad(out.isEmpty ? String(format: "%.0f", point.seconds) : "", 7))
            }
            return out
        }
        lines += ["", "guidance sweep at \(r.crossingSteps) steps", pad("guidance", 10) + String(header.dropFirst(10))]
        for point in r.guidanceSweep { lines += rows(point, String(format: "%g", point.guidance)) }
        lines += ["", String(format: "steps sweep at guidance %g", r.crossingGuidance), pad("steps", 10) + String(header.dropFirst(10))]
        for point in r.stepsSweep { lines += rows(point, "\(point.steps)") }
        lines += [
            "",
            "subgroup/group: share of images the probe puts in the prompt's subgroup/group (goal for seen names: ≥ 0.70;",
            "a generator drawing exactly the named emoji scores the probe's accuracy above). nearest: share whose nearest",
            String(format: "real image (probe features, %d images, chance %.4f) is the named one; top-5: among the 5 nearest.", r.realImages, 1 / Double(max(1, r.realImages))),
            "FD: against the set's real images, with a floor of as many real images of the same subgroups. precision/",
            String(format: "recall (k = 3): against the real images the prompts name. %.0f s in all.", seconds),
        ]
        return lines.joined(separator: "\n")
    }
}
