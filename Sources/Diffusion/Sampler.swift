import Foundation
import Tensor
import NN

/// The model as samplers see it: x (the sampler's model input, [N, C, ...]) and the timestep
/// the model was trained with (a training-timestep index, fractional for Karras-spaced Euler)
/// → the prediction its `PredictionType` names. Conditioning is captured by the closure.
public typealias Denoiser = (_ x: Tensor, _ t: Float) -> Tensor

/// Where stochastic samplers get their Gaussian noise.
public protocol NoiseSource {
    /// One tensor of independent N(0, 1) samples.
    mutating func nextNormal(_ shape: [Int]) -> Tensor
}

extension RandomGenerator: NoiseSource {
    public mutating func nextNormal(_ shape: [Int]) -> Tensor { normal(shape) }
}

/// Plays back recorded noise tensors in order (e.g. the exact draws diffusers made).
public struct ReplayNoise: NoiseSource {
    public private(set) var tensors: [Tensor]
    public private(set) var used = 0

    public init(_ tensors: [Tensor]) { self.tensors = tensors }

    public mutating func nextNormal(_ shape: [Int]) -> Tensor {
        precondition(used < tensors.count, "ReplayNoise: draw \(used + 1) requested, only \(tensors.count) recorded")
        let t = tensors[used]
        precondition(t.shape == shape, "ReplayNoise: draw \(used) has shape \(t.shape), sampler asked for \(shape)")
        used += 1
        return t
    }
}

/// One sampler: a fixed list of steps built from a scheduler config, and the loop that runs them.
///
/// A sampler is built with its step count and is immutable; `sample` keeps all per-run state
/// (multistep history, Heun's half step) local, so one sampler can run many times, on any
/// thread. Running it is the whole reverse process from x_T = `initNoiseSigma` · N(0, I).
public protocol Sampler: Sendable {
    /// The diffusers class this sampler reproduces.
    static var schedulerClass: SchedulerClass { get }
    /// Prediction types the sampler accepts (the config's `prediction_type`).
    static var predictionTypes: Set<PredictionType> { get }
    /// The (resolved) config it was built from; round-trips through `scheduler_config.json`.
    var config: SchedulerConfig { get }
    /// Number of inference steps asked for.
    var steps: Int { get }
    /// Timestep of each model evaluation, in order (Heun evaluates 2 n − 1 times).
    var timesteps: [Float] { get }
    /// Standard deviation of the starting noise.
    var initNoiseSigma: Float { get }
    /// √(1 − ᾱ) of the level the last step lands on (VP form): 0 where it returns the x₀
    /// prediction; √(1 − ᾱ₀) for DDIM and PNDM without `set_alpha_to_one` and for TCD, whose
    /// last step always stops at training timestep 0 — their result keeps that much noise.
    var finalNoiseLevel: Float { get }

    init(config: SchedulerConfig, steps: Int) throws

    /// Runs the steps from model evaluation `startIndex` on (0: the whole reverse process, from
    /// x_T; later: img2img, from x₀ noised to that level by `noised(_:noise:atIndex:)`).
    /// `onStep(i, x)` sees x after model evaluation i.
    func sample<N: NoiseSource>(from xT: Tensor, startIndex: Int, noise: inout N, denoise: Denoiser,
                                onStep: ((_ index: Int, _ x: Tensor) -> Void)?) -> Tensor

    /// Whether the sampler's state is x₀ + σ ε (Euler, Heun, LMS) rather than √ᾱ x₀ + √(1 − ᾱ) ε.
    static var varianceExploding: Bool { get }
    /// Model evaluations per step (diffusers' `scheduler.order`): 2 for Heun.
    static var order: Int { get }
}

extension Sampler {
    public static var predictionTypes: Set<PredictionType> { Set(PredictionType.allCases) }

    public static var varianceExploding: Bool { false }
    public static var order: Int { 1 }
    public var finalNoiseLevel: Float { 0 }

    /// The whole reverse process from x_T.
    public func sample<N: NoiseSource>(from xT: Tensor, noise: inout N, denoise: Denoiser,
                                       onStep: ((_ index: Int, _ x: Tensor) -> Void)? = nil) -> Tensor {
        sample(from: xT, startIndex: 0, noise: &noise, denoise: denoise, onStep: onStep)
    }

    /// Where an image-to-image run of `strength` in (0, 1] starts, as diffusers' img2img
    /// pipelines compute it: the last ⌊steps · strength⌋ steps are run.
    public func startIndex(strength: Float) -> Int {
        let initSteps = Swift.min(Int(Float(steps) * strength), steps)
        return Swift.max(steps - initSteps, 0) * Self.order
    }

    /// x₀ noised to the level of model evaluation `index`, in this sampler's own form
    /// (diffusers' `scheduler.add_noise` at `timesteps[index]`).
    public func noised(_ x0: Tensor, noise: Tensor, atIndex index: Int) throws -> Tensor {
        let ab = try config.noiseSchedule().alphaBar(at: timesteps[Swift.min(index, timesteps.count - 1)])
        return GradMode.withoutGrad {
            Self.varianceExploding ? x0 + noise * ((1 - ab) / ab).squareRoot()
                                   : x0 * ab.squareRoot() + noise * (1 - ab).squareRoot()
        }
    }

    /// Draws x_T from `noise` and runs the sampler.
    public func sample<N: NoiseSource>(shape: [Int], noise: inout N, denoise: Denoiser,
                                       onStep: ((_ index: Int, _ x: Tensor) -> Void)? = nil) -> Tensor {
        let xT = GradMode.withoutGrad { noise.nextNormal(shape) * initNoiseSigma }
        return sample(from: xT, noise: &noise, denoise: denoise, onStep: onStep)
    }

    /// Checks the config names this sampler's class and the step count is usable.
    static func validate(_ config: SchedulerConfig, steps: Int) throws -> SchedulerConfig {
        let cls = try config.schedulerClass()
        let c = cls == schedulerClass ? config : config.converted(to: schedulerClass)
        let train = try c.int("num_train_timesteps")
        guard steps >= 1, steps <= train else {
            throw SchedulerConfigError.badValue(key: "num_inference_steps", value: "\(steps)", scheduler: c.className,
                                                hint: "expected 1 ... \(train) (num_train_timesteps)")
        }
        return c
    }
}

/// The sampler type that reproduces a diffusers class.
public func samplerType(_ cls: SchedulerClass) -> any Sampler.Type {
    switch cls {
    case .ddpm: return DDPMSampler.self
    case .ddim: return DDIMSampler.self
    case .dpmSolverMultistep: return DPMSolverMultistepSampler.self
    case .eulerDiscrete: return EulerSampler.self
    case .eulerAncestralDiscrete: return EulerAncestralSampler.self
    case .heunDiscrete: return HeunSampler.self
    case .uniPCMultistep: return UniPCSampler.self
    case .pndm: return PNDMSampler.self
    case .lmsDiscrete: return LMSSampler.self
    case .lcm: return LCMSampler.self
    case .tcd: return TCDSampler.self
    }
}

/// Builds the sampler that `config`'s `_class_name` selects. `eta` is the step's stochasticity
/// where the class has one (diffusers' `step(eta=)`): DDIM's η (default 0) and TCD's γ (default
/// 0.3, `TCDSampler.defaultGamma`); the other classes ignore it.
public func makeSampler(_ config: SchedulerConfig, steps: Int, eta: Float? = nil) throws -> any Sampler {
    switch try config.schedulerClass() {
    case .ddpm: return try DDPMSampler(config: config, steps: steps)
    case .ddim: return try DDIMSampler(config: config, steps: steps, eta: eta ?? 0)
    case .dpmSolverMultistep: return try DPMSolverMultistepSampler(config: config, steps: steps)
    case .eulerDiscrete: return try EulerSampler(config: config, steps: steps)
    case .eulerAncestralDiscrete: return try EulerAncestralSampler(config: config, steps: steps)
    case .heunDiscrete: return try HeunSampler(config: config, steps: steps)
    case .uniPCMultistep: return try UniPCSampler(config: config, steps: steps)
    case .pndm: return try PNDMSampler(config: config, steps: steps)
    case .lmsDiscrete: return try LMSSampler(config: config, steps: steps)
    case .lcm: return try LCMSampler(config: config, steps: steps)
    case .tcd: return try TCDSampler(config: config, steps: steps, gamma: eta ?? TCDSampler.defaultGamma)
    }
}

/// The names users type for `--sampler`, each a diffusers class plus the options it sets.
public enum SamplerName: String, CaseIterable, Codable, Sendable {
    case ddpm
    case ddim
    case dpmpp2m = "dpm++2m"
    case dpmpp2mKarras = "dpm++2m-karras"
    case dpmpp2mSDE = "dpm++2m-sde"
    case dpmpp2mSDEKarras = "dpm++2m-sde-karras"
    case euler
    case eulerAncestral = "euler-a"
    case heun
    case unipc
    /// Pseudo linear multistep (PLMS; Runge–Kutta warm-up unless `skip_prk_steps`).
    case pndm
    /// Linear multistep in σ (k-diffusion's `sample_lms`, order 4).
    case lms
    /// Latent consistency sampling (for LCM-distilled models; 1–8 steps).
    case lcm
    /// Trajectory consistency sampling (for TCD/LCM-distilled models; γ from `--eta`, default 0.3).
    case tcd

    public var schedulerClass: SchedulerClass {
        switch self {
        case .ddpm: return .ddpm
        case .ddim: return .ddim
        case .dpmpp2m, .dpmpp2mKarras, .dpmpp2mSDE, .dpmpp2mSDEKarras: return .dpmSolverMultistep
        case .euler: return .eulerDiscrete
        case .eulerAncestral: return .eulerAncestralDiscrete
        case .heun: return .heunDiscrete
        case .unipc: return .uniPCMultistep
        case .pndm: return .pndm
        case .lms: return .lmsDiscrete
        case .lcm: return .lcm
        case .tcd: return .tcd
        }
    }

    /// Options this name fixes on top of the class (set explicitly, as a user would in Python).
    public var options: [String: JSONValue] {
        switch self {
        case .dpmpp2m:
            return ["algorithm_type": .string("dpmsolver++"), "solver_order": .number(2), "use_karras_sigmas": .bool(false)]
        case .dpmpp2mKarras:
            return ["algorithm_type": .string("dpmsolver++"), "solver_order": .number(2), "use_karras_sigmas": .bool(true)]
        case .dpmpp2mSDE:
            return ["algorithm_type": .string("sde-dpmsolver++"), "solver_order": .number(2), "use_karras_sigmas": .bool(false)]
        case .dpmpp2mSDEKarras:
            return ["algorithm_type": .string("sde-dpmsolver++"), "solver_order": .number(2), "use_karras_sigmas": .bool(true)]
        case .unipc:
            return ["solver_type": .string("bh2")]
        default:
            return [:]
        }
    }

    /// The sampler a model folder is sampled with when none is asked for: its own scheduler when
    /// that is a consistency sampler or DDIM (a distilled student needs its own: LCM, TCD, or the
    /// DDIM steps progressive distillation trained), else DPM-Solver++ 2M.
    public static func `default`(for folder: SchedulerConfig) -> SamplerName {
        switch SchedulerClass(rawValue: folder.className) {
        case .lcm?: return .lcm
        case .tcd?: return .tcd
        case .ddim?: return .ddim
        default: return .dpmpp2m
        }
    }

    /// `config` switched to this sampler the way `XScheduler.from_config(config, **options)` does.
    public func config(from base: SchedulerConfig) -> SchedulerConfig {
        base.converted(to: schedulerClass).setting(options)
    }
}
