import Foundation
import Tensor

/// What a sample is conditioned on, carried as one value from the command line to the
/// denoiser. The text-to-image issue adds a prompt (and a negative prompt) as another case.
public enum Conditioning {
    /// No conditioning (an unconditional model, or the null label of a conditional one).
    case unconditional
    /// One class label per sample, in the model's label numbers.
    case labels([Int])

    /// The labels of `.labels`, else nil.
    public var labels: [Int]? {
        if case .labels(let l) = self { return l }
        return nil
    }
}

/// The order noise is drawn in for one seed.
public enum NoiseOrder: String, CaseIterable, Codable, Sendable {
    /// Ours: every draw is per sample, so a sample does not depend on --batch, --threads or its
    /// neighbours in the batch.
    case diffuse
    /// diffusers' on the CPU: `torch.Generator().manual_seed(seed)` draws the start noise of the
    /// whole batch (`torch.randn([N, …])`), then each stochastic step's, so a seed gives the
    /// images diffusers gives for that seed. The samples depend on the batch, which must be one.
    case torch
}

/// Everything one generation asks for, built and checked once (`validate`) wherever it comes
/// from — a command's flags, an augmentation record, a library call — and handed as one value
/// to `Generation.batched`.
public struct SamplingRequest {
    /// How many samples.
    public var count: Int
    public var conditioning: Conditioning
    /// nil: the scheduler of the model's folder, as saved.
    public var sampler: SamplerName?
    public var steps: Int
    /// The step's stochasticity where the sampler has one: DDIM's η, TCD's γ (nil: the
    /// sampler's default, 0 and 0.3); others ignore it.
    public var eta: Float?
    public var seed: UInt64
    /// Classifier-free guidance scale (1 = none) and diffusers' `guidance_rescale` (0 = off).
    public var guidance: Float
    public var guidanceRescale: Float
    /// The training timesteps guidance applies at (nil: all; see `Guidance.interval`).
    public var guidanceInterval: ClosedRange<Float>? = nil
    /// Samples per model call (nil: all); every noise draw is per sample, so results do not depend on it.
    public var batchSize: Int?
    /// The samples are numbers `firstIndex`, `firstIndex` + 1, … of the seed's sequence.
    public var firstIndex: Int
    /// Starting noise for all `count` samples (nil: drawn from `seed`).
    public var start: Tensor?
    /// Image-to-image (SDEdit): all `count` inputs, noised to `strength` of the schedule.
    public var initial: (sample: Tensor, strength: Float)?
    /// Inpainting / continuation: what to keep of all `count` inputs.
    public var known: KnownRegion?
    /// The ranks of an `mpirun` job to deal the model calls over (call k on rank k mod K); every
    /// rank gets all samples back, each the same call's as in one process (nil: this process).
    public var ranks: Ranks? = nil
    /// How the noise is drawn from `seed`.
    public var noiseOrder: NoiseOrder = .diffuse

    public init(count: Int = 1, conditioning: Conditioning = .unconditional, sampler: SamplerName? = nil, steps: Int = 20,
                eta: Float? = nil, seed: UInt64 = 0, guidance: Float = 1, guidanceRescale: Float = 0, batchSize: Int? = nil,
                firstIndex: Int = 0, start: Tensor? = nil, initial: (sample: Tensor, strength: Float)? = nil,
                known: KnownRegion? = nil) {
        self.count = count; self.conditioning = conditioning; self.sampler = sampler; self.steps = steps; self.eta = eta; self.seed = seed
        self.guidance = guidance; self.guidanceRescale = guidanceRescale; self.batchSize = batchSize; self.firstIndex = firstIndex
        self.start = start; self.initial = initial; self.known = known
    }

    // The accepted ranges, named once: the command line's checks and help texts use them too.
    public static let countRange = 1...10_000
    public static let stepsRange = 1...1000
    public static let batchRange = 1...4096
    public static let guidanceRange: ClosedRange<Float> = 0...50
    public static let guidanceRescaleRange: ClosedRange<Float> = 0...1
    public static let etaRange: ClosedRange<Float> = 0...1

    /// Why a guidance interval cannot be used, or nil (timesteps: 0 ≤ low ≤ high ≤ 1000).
    public static func guidanceIntervalProblem(_ i: ClosedRange<Float>) -> String? {
        i.lowerBound >= 0 && i.upperBound <= 1000 ? nil : "must be timesteps LOW,HIGH with 0 ≤ LOW ≤ HIGH ≤ 1000, got \(i.lowerBound),\(i.upperBound)"
    }

    /// Why `v`, as a config file or request writes it, cannot be a guidance interval [low, high],
    /// or nil: two finite timesteps, 0 ≤ low ≤ high ≤ 1000.
    public static func guidanceIntervalProblem(_ v: [Float]) -> String? {
        guard v.count == 2, v[0].isFinite, v[1].isFinite, v[0] <= v[1] else {
            return "must be two timesteps [low, high] with low ≤ high (e.g. [82, 579]), got \(v)"
        }
        return guidanceIntervalProblem(v[0]...v[1])
    }

    /// `v` as a guidance interval, nil when it cannot be one (`guidanceIntervalProblem`).
    public static func guidanceInterval(_ v: [Float]) -> ClosedRange<Float>? {
        guidanceIntervalProblem(v) == nil ? v[0]...v[1] : nil
    }

    /// Why `strength` cannot be used, or nil (it must be in (0, 1]).
    public static func strengthProblem(_ strength: Float) -> String? {
        strength > 0 && strength <= 1 ? nil : "must be in (0, 1], got \(strength)"
    }

    /// Checks every number and that the per-sample inputs hold `count` samples; the error names
    /// the setting.
    public func validate() throws {
        func fail(_ key: String, _ reason: String) throws -> Never { throw SamplingRequestError(setting: key, reason: reason) }
        if !Self.countRange.contains(count) { try fail("count", "must be within \(Self.countRange), got \(count)") }
        if !Self.stepsRange.contains(steps) { try fail("steps", "must be within \(Self.stepsRange), got \(steps)") }
        if let b = batchSize, !Self.batchRange.contains(b) { try fail("batch", "must be within \(Self.batchRange), got \(b)") }
        if !Self.guidanceRange.contains(guidance) { try fail("guidance", "must be within 0–50, got \(guidance)") }
        if !Self.guidanceRescaleRange.contains(guidanceRescale) { try fail("guidance-rescale", "must be within 0–1, got \(guidanceRescale)") }
        if let i = guidanceInterval, let p = Self.guidanceIntervalProblem(i) { try fail("guidance-interval", p) }
        if let eta, !Self.etaRange.contains(eta) { try fail("eta", "must be within 0–1, got \(eta)") }
        if firstIndex < 0 { try fail("first index", "must be ≥ 0, got \(firstIndex)") }
        if noiseOrder == .torch {
            if let b = batchSize, b < count { try fail("batch", "torch noise is drawn for all samples at once, as diffusers draws it: the batch (\(b)) must hold all \(count)") }
            if firstIndex != 0 { try fail("first index", "torch noise starts at the seed's first draw: it must be 0, got \(firstIndex)") }
        }
        if let l = conditioning.labels, l.count != count { try fail("labels", "\(l.count) labels for \(count) samples") }
        if let s = initial?.strength, let p = Self.strengthProblem(s) { try fail("strength", p) }
        if let w = known?.reconstructionGuidance, !KnownRegion.reconstructionGuidanceRange.contains(w) {
            try fail("reconstruction guidance", "must be within \(KnownRegion.reconstructionGuidanceRange), got \(w)")
        }
        for (name, t) in [("start noise", start), ("init", initial?.sample), ("known", known?.sample), ("mask", known?.mask)] {
            if let t, t.shape.first != count { try fail(name, "holds \(t.shape.first ?? 0) samples for \(count)") }
        }
    }
}

/// A sampling setting that cannot be used.
public struct SamplingRequestError: Error, CustomStringConvertible {
    public var setting: String
    public var reason: String
    public init(setting: String, reason: String) { self.setting = setting; self.reason = reason }
    public var description: String { "\(setting): \(reason)" }
}

extension Generation {
    /// `request.count` samples of `sampleShape` ([C, ...]) from `model`, at most
    /// `request.batchSize` per model call. Every noise draw is per sample, so the result does not
    /// depend on the batch size; `progress(step, total)` counts steps over all batches. Returns
    /// the sampler's final values, unclamped.
    public static func batched(model: DiffusionModel, sampleShape: [Int], request r: SamplingRequest,
                               scheduler: SchedulerConfig, guidance: Guidance?,
                               progress: ((Int, Int) -> Bool)? = nil) throws -> Tensor {
        try r.validate()
        let count = r.count
        let config = r.sampler.map { $0.config(from: scheduler) } ?? scheduler
        let schedule = try config.noiseSchedule()
        let b = Swift.min(r.batchSize ?? count, count)
        let chunks = (count + b - 1) / b
        let labels = r.conditioning.labels
        let ranks = r.ranks.flatMap { $0.size > 1 && chunks > 1 ? $0 : nil }
        // Progress counts this rank's calls (all of them without ranks).
        let mine = ranks.map { rk in (0..<chunks).filter { $0 % rk.size == rk.rank } } ?? Array(0..<chunks)
        var parts: [Tensor] = []
        for k in 0..<chunks {
            let lo = k * b, hi = Swift.min(count, lo + b)
            if let ranks, k % ranks.size != ranks.rank {
                // Another rank's call: zeros here, its samples after the sum below.
                parts.append(Tensor.zeros([hi - lo] + sampleShape))
                continue
            }
            func rows(_ t: Tensor) -> Tensor { chunks == 1 ? t : t.slice(axis: 0, lo..<hi) }
            let part = try sample(
                model: model, shape: [hi - lo] + sampleShape, sampler: try makeSampler(config, steps: r.steps, eta: r.eta),
                schedule: schedule, seed: r.seed, start: r.start.map(rows), labels: labels.map { Array($0[lo..<hi]) },
                guidance: guidance, initial: r.initial.map { (rows($0.sample), $0.strength) },
                known: r.known.map { KnownRegion(sample: rows($0.sample), mask: rows($0.mask), reconstructionGuidance: $0.reconstructionGuidance) }, firstSample: r.firstIndex + lo, noiseOrder: r.noiseOrder,
                progress: progress.map { p in
                    let j = mine.firstIndex(of: k) ?? k
                    return { step, total in p(j * total + step, mine.count * total) }
                })
            parts.append(part)
        }
        let all = parts.count == 1 ? parts[0] : Tensor.concat(parts, axis: 0)
        if let ranks {
            // Each sample is non-zero on one rank only: the sum gathers them exactly (x + 0 = x).
            ranks.allReduceSum(UnsafeMutableBufferPointer(start: all.data, count: all.count))
        }
        return all
    }
}
