import Foundation
import Tensor
import NN

/// The run was cancelled through its progress callback.
public struct GenerationCancelled: Error, CustomStringConvertible {
    public var description: String { "generation cancelled" }
}

extension NoiseSchedule {
    /// ᾱ at a possibly fractional training timestep, as σ-based samplers ask for it: diffusers
    /// maps σ to t by interpolating log σ between integer timesteps, so this inverts that.
    public func alphaBar(at t: Float) -> Float {
        let last = numTrainTimesteps - 1
        let i = Swift.max(0, Swift.min(Int(t.rounded(.down)), last))
        let f = Double(Swift.max(0, Swift.min(t, Float(last)))) - Double(i)
        if f == 0 { return alphasCumprodF[i] }
        func logSigma(_ k: Int) -> Double {
            let a = Double(alphasCumprodF[k])
            return 0.5 * Foundation.log((1 - a) / a)
        }
        let sigma = Foundation.exp((1 - f) * logSigma(i) + f * logSigma(Swift.min(i + 1, last)))
        return Float(1 / (1 + sigma * sigma))
    }
}

/// Classifier-free guidance (Ho & Salimans 2022) with guidance rescale (Lin et al. 2024,
/// "Common Diffusion Noise Schedules and Sample Steps are Flawed", §3.4):
///
///     p = p_∅ + s (p_y − p_∅)
///     p ← φ · p · std(p_y)/std(p) + (1 − φ) · p      (std per sample)
///
/// and, with `interval`, only at the timesteps within it (Kynkäänniemi et al. 2024, "Applying
/// Guidance in a Limited Interval Improves Sample and Distribution Quality in Diffusion
/// Models"): elsewhere the conditional prediction alone, in one call. Guidance at the highest
/// noise levels pulls every sample towards the same few layouts (it costs diversity) and near
/// the data it adds little; in the middle it gives the class.
///
/// With `guide`, autoguidance (Karras et al. 2024, "Guiding a Diffusion Model with a Bad Version
/// of Itself"): the prediction moves away from a weaker model's prediction *with the same
/// conditioning* instead of the unconditional one, p = p_weak + s (p_y − p_weak). Where the two
/// models disagree is where the weaker one errs (between classes, blurred detail), so samples
/// leave those regions without all being pulled to the same few layouts; it needs no null label
/// and works for unconditional models too.
public struct Guidance: @unchecked Sendable {
    public var scale: Float
    public var rescale: Float
    /// The label meaning "no class" (the model's extra embedding row).
    public var nullLabel: Int
    /// Training timesteps where guidance applies (nil: all).
    public var interval: ClosedRange<Float>?
    /// Autoguidance's weaker model (same inputs, labels and prediction type), or nil for
    /// classifier-free guidance. Only read while sampling.
    public var guide: DiffusionModel?

    public init(scale: Float, rescale: Float = 0, nullLabel: Int, interval: ClosedRange<Float>? = nil, guide: DiffusionModel? = nil) {
        self.scale = scale
        self.rescale = rescale
        self.nullLabel = nullLabel
        self.interval = interval
        self.guide = guide
    }
}

/// What to keep of a known sample (inpainting, continuation, frame filling): `mask` is 1 where
/// new content is generated and 0 where `sample` is kept; it broadcasts against the sample
/// ([N, 1, ...] masks all channels alike).
///
/// `reconstructionGuidance` w > 0 also steers the generated region towards agreement with the
/// kept one at every step (Ho et al. 2022, "Video Diffusion Models", §3.1, eq. 7): the model's x̂₀
/// of the generated region moves by −(w √ᾱ / 2) ∇ ‖(x₀ − x̂₀) ⊙ kept‖², the gradient taken
/// through the model with respect to x_t. Replacement alone lets the generated region see the
/// kept one only through the noised copy each call gets; the gradient makes it explain the kept
/// region, so a continuation goes on from it instead of jumping. One backward pass per model
/// call (about 3× the time).
public struct KnownRegion {
    public var sample: Tensor
    public var mask: Tensor
    public var reconstructionGuidance: Float
    public init(sample: Tensor, mask: Tensor, reconstructionGuidance: Float = 0) {
        self.sample = sample; self.mask = mask; self.reconstructionGuidance = reconstructionGuidance
    }
    /// The weights accepted (0: replacement only).
    public static let reconstructionGuidanceRange: ClosedRange<Float> = 0...1000
}

public enum Generation {
    /// The sampler's view of `model`: conditioning on `labels`, with guidance (both halves in one
    /// batch) when `guidance` is given and its scale is not 1; with autoguidance (`Guidance.guide`)
    /// the weaker model runs on the same batch and labels.
    public static func denoiser(_ model: DiffusionModel, labels: [Int]?, guidance: Guidance?) -> Denoiser {
        { x, t in
            let n = x.shape[0], timesteps = [Float](repeating: t, count: n)
            guard let g = guidance, g.scale != 1, labels != nil || g.guide != nil, g.interval?.contains(t) ?? true else {
                return model.predict(x, timesteps: timesteps, labels: labels)
            }
            let cond, uncond: Tensor
            if let weak = g.guide {
                cond = model.predict(x, timesteps: timesteps, labels: labels)
                uncond = weak.predict(x, timesteps: timesteps, labels: labels)
            } else {
                // [x; x] with [y; ∅] → [p_y; p_∅]
                let both = model.predict(Tensor.concat([x, x], axis: 0), timesteps: [Float](repeating: t, count: 2 * n),
                                         labels: labels! + [Int](repeating: g.nullLabel, count: n))
                let halves = both.chunked(2, axis: 0)
                cond = halves[0]; uncond = halves[1]
            }
            var p = uncond + (cond - uncond) * g.scale
            if g.rescale > 0 {
                let axes = Array(1..<x.rank)
                let ratio = (cond.variance(axes: axes, keepDims: true, correction: 1)
                    / p.variance(axes: axes, keepDims: true, correction: 1)).sqrt()
                p = p * ratio * g.rescale + p * (1 - g.rescale)
            }
            return p
        }
    }

    /// Generates samples of `shape` ([N, C, ...]) with `sampler`, starting from `start` (standard
    /// normal noise, scaled to `initNoiseSigma`; drawn from `seed` when nil). With `initial`
    /// (image-to-image / SDEdit, Meng et al. 2022), `initial.sample` is noised to the level where
    /// the last ⌊steps · strength⌋ steps begin and only those run. With `known`, the kept
    /// region is re-noised to each step's level before every model call (the replacement method
    /// of inpainting, as in RePaint, Lugmayr et al. 2022, without its resampling) and pasted into
    /// the result; it works for any rank, so audio gaps and video frames use it too. `progress(step, total)` returning false
    /// cancels: the remaining steps skip the model and `GenerationCancelled` is thrown.
    /// `firstSample = k` makes this batch the samples k, k+1, ... of a larger one with the same
    /// seed (every noise draw is per sample), so work split into batches gives the same images.
    /// `noiseOrder: .torch` draws instead as diffusers does on the CPU (see `NoiseOrder`).
    public static func sample(model: DiffusionModel, shape: [Int], sampler: any Sampler, schedule: NoiseSchedule,
                              seed: UInt64, start: Tensor? = nil, labels: [Int]? = nil, guidance: Guidance? = nil,
                              initial: (sample: Tensor, strength: Float)? = nil, known: KnownRegion? = nil,
                              firstSample: Int = 0, noiseOrder: NoiseOrder = .diffuse,
                              progress: ((_ step: Int, _ total: Int) -> Bool)? = nil) throws -> Tensor {
        model.setTraining(false)
        func run<N: NoiseSource>(_ rng: inout N) throws -> Tensor {
            try sample(model: model, shape: shape, sampler: sampler, schedule: schedule, noise: &rng, start: start, labels: labels,
                       guidance: guidance, initial: initial, known: known, progress: progress)
        }
        switch noiseOrder {
        case .diffuse:
            var rng = RandomGenerator(seed: seed, firstSample: firstSample)
            return try run(&rng)
        case .torch:
            precondition(firstSample == 0, "torch noise is drawn for a whole batch: no first sample \(firstSample)")
            var rng = TorchGenerator(seed: seed)
            return try run(&rng)
        }
    }

    private static func sample<N: NoiseSource>(model: DiffusionModel, shape: [Int], sampler: any Sampler, schedule: NoiseSchedule,
                                               noise rng: inout N, start: Tensor?, labels: [Int]?, guidance: Guidance?,
                                               initial: (sample: Tensor, strength: Float)?, known: KnownRegion?,
                                               progress: ((_ step: Int, _ total: Int) -> Bool)?) throws -> Tensor {
        try GradMode.withoutGrad {
            let z = start ?? rng.nextNormal(shape)
            precondition(z.shape == shape, "start noise \(z.shape) for shape \(shape)")
            var startIndex = 0
            var xT = z * sampler.initNoiseSigma
            if let initial {
                precondition(initial.sample.shape == shape, "initial sample \(initial.sample.shape) for shape \(shape)")
                precondition(initial.strength > 0 && initial.strength <= 1, "strength \(initial.strength) outside (0, 1]")
                startIndex = sampler.startIndex(strength: initial.strength)
                xT = try sampler.noised(initial.sample, noise: z, atIndex: startIndex)
            }
            var keptNoise: Tensor? = nil
            if let known { keptNoise = rng.nextNormal(known.sample.shape) }
            let inner = denoiser(model, labels: labels, guidance: guidance)
            // Reconstruction guidance differentiates with respect to x_t only: the weights are frozen meanwhile.
            let reconstruction = known.flatMap { $0.reconstructionGuidance > 0 ? $0 : nil }
            let parameterization = try reconstruction.map { _ in try sampler.config.parameterization() }
            let frozen = reconstruction == nil ? [] : model.namedParameters().map(\.tensor).filter(\.requiresGrad)
            for p in frozen { p.requiresGrad = false }
            defer { for p in frozen { p.requiresGrad = true } }
            let total = sampler.timesteps.count - startIndex
            var calls = 0
            var cancelled = false
            let denoise: Denoiser = { x, t in
                calls += 1
                if cancelled { return Tensor.zeros(x.shape) }
                if let progress, !progress(calls, total) { cancelled = true; return Tensor.zeros(x.shape) }
                guard let known, let noise = keptNoise else { return inner(x, t) }
                // x_t of the kept region at this level: √ᾱ x₀ + √(1 − ᾱ) ε  (the VP form samplers pass)
                let ab = schedule.alphaBar(at: t)
                let kept = known.sample * ab.squareRoot() + noise * (1 - ab).squareRoot()
                let blended = x * known.mask + kept * (1 - known.mask)
                if let parameterization {
                    return reconstructionGuided(inner, blended, t, alphaBar: ab, known: known, parameterization: parameterization)
                }
                return inner(blended, t)
            }
            var out = sampler.sample(from: xT, startIndex: startIndex, noise: &rng, denoise: denoise, onStep: nil)
            if cancelled { throw GenerationCancelled() }
            if let known { out = out * known.mask + known.sample * (1 - known.mask) }
            return out
        }
    }
}

extension Generation {
    /// Starting noise saved by another tool (diffusers' `latents`): the tensor `key` of a
    /// safetensors file, which must have `shape`. Errors name the file.
    public static func startNoise(from url: URL, key: String = "latents", shape: [Int]) throws -> Tensor {
        let file = try SafeTensorsFile(url: url)
        guard file.entry(key) != nil else {
            throw SafeTensorsError(file: url.path, reason: "no tensor named '\(key)' (has: \(file.names.sorted().joined(separator: ", ")))")
        }
        let t = try file.tensor(key)
        guard t.shape == shape else {
            throw SafeTensorsError(file: url.path, reason: "'\(key)' has shape \(t.shape), generation needs \(shape)")
        }
        guard t.scalars.allSatisfy(\.isFinite) else {
            throw SafeTensorsError(file: url.path, reason: "'\(key)' holds non-finite values")
        }
        return t
    }
}

extension Generation {
    /// The model's prediction at x (VP form, level ᾱ) with x̂₀ of the generated region moved by
    /// −(w √ᾱ / 2) ∇ₓ ‖(x₀ − x̂₀(x)) ⊙ (1 − m)‖² (`KnownRegion.reconstructionGuidance`), returned in
    /// the model's own parameterisation so any sampler takes it.
    static func reconstructionGuided(_ inner: Denoiser, _ x: Tensor, _ t: Float, alphaBar ab: Float, known: KnownRegion,
                                     parameterization p: Parameterization) -> Tensor {
        let a = ab.squareRoot(), s = (1 - ab).squareRoot()
        let input = x.detached()
        input.requiresGrad = true
        let (output, gradient): (Tensor, Tensor) = GradMode.withGrad {
            let out = inner(input, t)
            let miss = (p.x0(out, x: input, alpha: a, sigma: s) - known.sample) * (1 - known.mask)
            (miss * miss).sum().backward()
            return (out.detached(), input.grad ?? Tensor.zeros(x.shape))
        }
        return GradMode.withoutGrad {
            // Δx̂₀ on the generated region, then the output that gives x̂₀ + Δx̂₀ at this x.
            let dx0 = gradient * known.mask * (-known.reconstructionGuidance * a / 2)
            switch p.prediction {
            case .epsilon: return output - dx0 * (a / s)       // x̂₀ = (x − s ε) / a
            case .vPrediction: return output - dx0 * (1 / s)   // x̂₀ = a x − s v
            case .sample: return output + dx0
            }
        }
    }
}

extension Generation {
    /// Inpainting with RePaint's resampling (Lugmayr et al. 2022): DDPM ancestral steps where
    /// the kept region is the known sample noised to each level, and every `jumpLength` steps
    /// the result is re-noised `jumpLength` steps up (q(x_t | x_{t'}) of the same chain) and
    /// denoised again, `jumpSamples` times in all, so the two regions harmonise. Works on any rank.
    ///
    ///     x̂₀ from the model; unknown: x_{t'} ~ q(x_{t'} | x_t, x̂₀)   (posterior, Ho et al. eq. 6–7)
    ///     known: x_{t'} = √ᾱ_{t'} x₀ + √(1 − ᾱ_{t'}) z;   x_{t'} = m ⊙ unknown + (1 − m) ⊙ known
    ///     up:    x_t = √(ᾱ_t/ᾱ_{t'}) x_{t'} + √(1 − ᾱ_t/ᾱ_{t'}) z
    public static func repaint(model: DiffusionModel, known: KnownRegion, schedule: NoiseSchedule, steps: Int,
                               jumpLength: Int = 10, jumpSamples: Int = 10, seed: UInt64,
                               parameterization: Parameterization = Parameterization(),
                               labels: [Int]? = nil, guidance: Guidance? = nil,
                               progress: ((_ step: Int, _ total: Int) -> Bool)? = nil) throws -> Tensor {
        precondition(steps >= 1 && steps <= schedule.numTrainTimesteps && jumpLength >= 1 && jumpSamples >= 1,
                     "repaint: steps \(steps), jump length \(jumpLength), jump samples \(jumpSamples)")
        model.setTraining(false)
        return try GradMode.withoutGrad {
            var rng = RandomGenerator(seed: seed)
            let shape = known.sample.shape
            let stride = schedule.numTrainTimesteps / steps
            let denoise = denoiser(model, labels: labels, guidance: guidance)
            // ᾱ at step level k (timestep k·stride); level −1 is the clean sample.
            func abar(_ k: Int) -> Float { k < 0 ? 1 : schedule.alphasCumprodF[k * stride] }
            let jumpPoints = steps > jumpLength ? (steps - 1) / jumpLength : 0
            let total = steps + jumpPoints * (jumpSamples - 1) * jumpLength
            var calls = 0
            var x = rng.normal(shape)  // at level n − 1, as diffusers starts
            var level = steps - 1

            func down() throws {
                calls += 1
                if let progress, !progress(calls, total) { throw GenerationCancelled() }
                let aT = abar(level), aPrev = abar(level - 1)
                let out = denoise(x, Float(level * stride))
                let x0 = parameterization.clip(parameterization.x0(out, x: x, alpha: aT.squareRoot(), sigma: (1 - aT).squareRoot()))
                let alpha = aT / aPrev, beta = 1 - alpha
                let mean = x0 * (aPrev.squareRoot() * beta / (1 - aT)) + x * (alpha.squareRoot() * (1 - aPrev) / (1 - aT))
                let clean = level == 0
                let unknown = clean ? mean : mean + rng.normal(shape) * ((1 - aPrev) / (1 - aT) * beta).squareRoot()
                let kept = clean ? known.sample : known.sample * aPrev.squareRoot() + rng.normal(shape) * (1 - aPrev).squareRoot()
                x = unknown * known.mask + kept * (1 - known.mask)
                level -= 1
            }
            func up() {
                let alpha = abar(level + 1) / abar(level)
                x = x * alpha.squareRoot() + rng.normal(shape) * (1 - alpha).squareRoot()
                level += 1
            }

            while level >= 0 {
                try down()
                // Every `jumpLength` levels (below the top), go back up and come down again.
                if level >= 0 && level % jumpLength == 0 && level + jumpLength <= steps - 1 {
                    for _ in 0..<(jumpSamples - 1) {
                        for _ in 0..<jumpLength { up() }
                        for _ in 0..<jumpLength { try down() }
                    }
                }
            }
            return x
        }
    }
}
