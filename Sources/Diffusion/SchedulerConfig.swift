import Foundation
import NN

// JSONValue (keys we do not model survive a round trip) is NN's.

/// A diffusers scheduler class that we reproduce (`_class_name` in `scheduler_config.json`).
public enum SchedulerClass: String, CaseIterable, Codable, Sendable {
    case ddpm = "DDPMScheduler"
    case ddim = "DDIMScheduler"
    case dpmSolverMultistep = "DPMSolverMultistepScheduler"
    case eulerDiscrete = "EulerDiscreteScheduler"
    case eulerAncestralDiscrete = "EulerAncestralDiscreteScheduler"
    case heunDiscrete = "HeunDiscreteScheduler"
    case uniPCMultistep = "UniPCMultistepScheduler"
    case pndm = "PNDMScheduler"
    case lmsDiscrete = "LMSDiscreteScheduler"
    /// Latent consistency models (Luo et al. 2023).
    case lcm = "LCMScheduler"
    /// Trajectory consistency distillation (Zheng et al. 2024).
    case tcd = "TCDScheduler"

    /// The class's `__init__` keys and defaults (diffusers 0.42.1). `nil` entries are Python None.
    public var defaults: [String: JSONValue] {
        let common: [String: JSONValue] = [
            "num_train_timesteps": .number(1000), "beta_start": .number(0.0001), "beta_end": .number(0.02),
            "beta_schedule": .string("linear"), "trained_betas": .null, "prediction_type": .string("epsilon"),
            "steps_offset": .number(0),
        ]
        let thresholding: [String: JSONValue] = [
            "thresholding": .bool(false), "dynamic_thresholding_ratio": .number(0.995), "sample_max_value": .number(1),
        ]
        let sigmaSpacing: [String: JSONValue] = [
            "use_karras_sigmas": .bool(false), "use_exponential_sigmas": .bool(false), "use_beta_sigmas": .bool(false),
        ]
        switch self {
        case .ddpm:
            return common.merging(thresholding) { a, _ in a }.merging([
                "variance_type": .string("fixed_small"), "clip_sample": .bool(true), "clip_sample_range": .number(1),
                "timestep_spacing": .string("leading"), "rescale_betas_zero_snr": .bool(false),
            ]) { a, _ in a }
        case .ddim:
            return common.merging(thresholding) { a, _ in a }.merging([
                "clip_sample": .bool(true), "set_alpha_to_one": .bool(true), "clip_sample_range": .number(1),
                "timestep_spacing": .string("leading"), "rescale_betas_zero_snr": .bool(false),
            ]) { a, _ in a }
        case .dpmSolverMultistep:
            return common.merging(thresholding) { a, _ in a }.merging(sigmaSpacing) { a, _ in a }.merging([
                "solver_order": .number(2), "algorithm_type": .string("dpmsolver++"), "solver_type": .string("midpoint"),
                "lower_order_final": .bool(true), "euler_at_final": .bool(false), "use_lu_lambdas": .bool(false),
                "use_flow_sigmas": .bool(false), "flow_shift": .number(1), "final_sigmas_type": .string("zero"),
                "lambda_min_clipped": .number(-.infinity), "variance_type": .null, "timestep_spacing": .string("linspace"),
                "rescale_betas_zero_snr": .bool(false), "use_dynamic_shifting": .bool(false),
                "time_shift_type": .string("exponential"),
            ]) { a, _ in a }
        case .eulerDiscrete:
            return common.merging(sigmaSpacing) { a, _ in a }.merging([
                "interpolation_type": .string("linear"), "sigma_min": .null, "sigma_max": .null,
                "timestep_spacing": .string("linspace"), "timestep_type": .string("discrete"),
                "rescale_betas_zero_snr": .bool(false), "final_sigmas_type": .string("zero"),
            ]) { a, _ in a }
        case .eulerAncestralDiscrete:
            return common.merging([
                "timestep_spacing": .string("linspace"), "rescale_betas_zero_snr": .bool(false),
            ]) { a, _ in a }
        case .heunDiscrete:
            return common.merging(sigmaSpacing) { a, _ in a }.merging([
                "beta_start": .number(0.00085), "beta_end": .number(0.012),
                "clip_sample": .bool(false), "clip_sample_range": .number(1), "timestep_spacing": .string("linspace"),
            ]) { _, b in b }
        case .lmsDiscrete:
            return common.merging(sigmaSpacing) { a, _ in a }.merging([
                "timestep_spacing": .string("linspace"),
            ]) { a, _ in a }
        case .pndm:
            return common.merging([
                "skip_prk_steps": .bool(false), "set_alpha_to_one": .bool(false), "timestep_spacing": .string("leading"),
            ]) { a, _ in a }
        case .uniPCMultistep:
            return common.merging(thresholding) { a, _ in a }.merging(sigmaSpacing) { a, _ in a }.merging([
                "solver_order": .number(2), "predict_x0": .bool(true), "solver_type": .string("bh2"),
                "lower_order_final": .bool(true), "disable_corrector": .array([]), "solver_p": .null,
                "use_flow_sigmas": .bool(false), "flow_shift": .number(1), "timestep_spacing": .string("linspace"),
                "final_sigmas_type": .string("zero"), "rescale_betas_zero_snr": .bool(false),
                "use_dynamic_shifting": .bool(false), "time_shift_type": .string("exponential"),
                "sigma_min": .null, "sigma_max": .null, "shift_terminal": .null,
            ]) { a, _ in a }
        case .lcm, .tcd:
            // (the two classes have the same signature and defaults)
            return common.merging(thresholding) { a, _ in a }.merging([
                "beta_start": .number(0.00085), "beta_end": .number(0.012), "beta_schedule": .string("scaled_linear"),
                "original_inference_steps": .number(50), "clip_sample": .bool(false), "clip_sample_range": .number(1),
                "set_alpha_to_one": .bool(true), "timestep_spacing": .string("leading"), "timestep_scaling": .number(10),
                "rescale_betas_zero_snr": .bool(false),
            ]) { _, b in b }
        }
    }
}

extension SchedulerClass {
    /// Values a class's `__init__` rewrites with `register_to_config` (solver types of the other
    /// multistep family, DEIS's algorithm type).
    func normalize(_ values: inout [String: JSONValue]) {
        switch self {
        case .uniPCMultistep:
            if let s = values["solver_type"]?.string, ["midpoint", "heun", "logrho"].contains(s) {
                values["solver_type"] = .string("bh2")
            }
        case .dpmSolverMultistep:
            if let s = values["solver_type"]?.string, ["logrho", "bh1", "bh2"].contains(s) {
                values["solver_type"] = .string("midpoint")
            }
            if values["algorithm_type"]?.string == "deis" { values["algorithm_type"] = .string("dpmsolver++") }
        default:
            break
        }
    }
}

/// A problem with a scheduler config that a user's file can cause.
public enum SchedulerConfigError: Error, Equatable, CustomStringConvertible {
    case unknownClass(String)
    case badValue(key: String, value: String, scheduler: String, hint: String)

    public var description: String {
        switch self {
        case .unknownClass(let c):
            return "scheduler_config.json: unknown _class_name \"\(c)\"; supported: "
                + SchedulerClass.allCases.map(\.rawValue).joined(separator: ", ")
        case .badValue(let k, let v, let s, let hint):
            return "scheduler_config.json: \(k) = \(v) is not supported by \(s); \(hint)"
        }
    }
}

/// `scheduler_config.json` in diffusers' format.
///
/// Holds every key of the file as read (unknown keys are written back unchanged) plus which of
/// the class's keys were *not* given, so that switching sampler behaves like diffusers'
/// `XScheduler.from_config(config)`: keys the file gave carry over, keys it did not take the
/// new class's defaults (diffusers' `_use_default_values`).
public struct SchedulerConfig: Codable, Equatable, Sendable {
    /// Equal when the files would be equal (`defaultedKeys` is provenance, not content: like
    /// diffusers' `_use_default_values`, it is not written).
    public static func == (a: SchedulerConfig, b: SchedulerConfig) -> Bool {
        a.className == b.className && a.values == b.values
    }

    /// `_class_name` as written (may name a class we do not reproduce).
    public var className: String
    /// All other entries, including `_diffusers_version` and keys of other classes.
    public var values: [String: JSONValue]
    /// Keys of `className`'s signature that were filled from defaults, not given.
    public var defaultedKeys: Set<String>

    /// A config for `cls` with its defaults and the given overrides (diffusers: `cls(**overrides)`).
    public init(_ cls: SchedulerClass, _ overrides: [String: JSONValue] = [:]) {
        className = cls.rawValue
        values = cls.defaults.merging(overrides) { _, b in b }
        defaultedKeys = Set(cls.defaults.keys).subtracting(overrides.keys)
    }

    public init(from decoder: Decoder) throws {
        var all = try [String: JSONValue](from: decoder)
        guard case .string(let name)? = all.removeValue(forKey: "_class_name") else {
            throw SchedulerConfigError.unknownClass("(missing)")
        }
        className = name
        values = all
        let cls = SchedulerClass(rawValue: name)
        // Like diffusers loading the file: the class's missing keys take its defaults.
        let missing = Set(cls?.defaults.keys ?? [:].keys).subtracting(all.keys)
        for k in missing { values[k] = cls!.defaults[k] }
        cls?.normalize(&values)
        defaultedKeys = missing
    }

    public func encode(to encoder: Encoder) throws {
        var all = values
        all["_class_name"] = .string(className)
        try all.encode(to: encoder)
    }

    /// Reads `scheduler_config.json` (or any file in its format).
    public static func load(_ url: URL) throws -> SchedulerConfig {
        try decode(Data(contentsOf: url))
    }

    /// Parses the file's bytes. Python's bare `Infinity` / `-Infinity` / `NaN` are accepted.
    public static func decode(_ data: Data) throws -> SchedulerConfig {
        try JSONDecoder().decode(SchedulerConfig.self, from: ConfigFile.quotingNonFiniteLiterals(data))
    }

    /// JSON with sorted keys and two-space indent, as diffusers' `save_config` writes.
    public func jsonData() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Infinite numbers are encoded as the strings "-Infinity"/"Infinity"; diffusers reads
        // (and writes) them as bare Python literals.
        var text = String(decoding: ConfigFile.markingFloats(try e.encode(self), keys: Self.floatKeys), as: UTF8.self)
        text = text.replacingOccurrences(of: "\"-Infinity\"", with: "-Infinity")
            .replacingOccurrences(of: "\"Infinity\"", with: "Infinity")
        return Data((text + "\n").utf8)
    }

    /// Keys that every scheduler class with them types as `float` in its `__init__` (diffusers
    /// 0.42.1; UniPC's `sigma_max` is untyped there): written as `1.0`, not `1`.
    public static let floatKeys: Set<String> = [
        "beta_start", "beta_end", "clip_sample_range", "dynamic_thresholding_ratio", "flow_shift", "lambda_min_clipped",
        "sample_max_value", "sigma_max", "sigma_min", "timestep_scaling",
    ]

    /// The class this config selects; throws for classes we do not reproduce.
    public func schedulerClass() throws -> SchedulerClass {
        guard let c = SchedulerClass(rawValue: className) else { throw SchedulerConfigError.unknownClass(className) }
        return c
    }

    /// diffusers' `cls.from_config(self)`: the new class takes every one of its keys that this
    /// config *gave*; the rest take the new class's defaults; other keys are kept as they are.
    public func converted(to cls: SchedulerClass) -> SchedulerConfig {
        var out = self
        out.className = cls.rawValue
        for k in defaultedKeys where cls.defaults[k] == nil { out.values.removeValue(forKey: k) }
        var defaulted = Set<String>()
        for (k, v) in cls.defaults where defaultedKeys.contains(k) || values[k] == nil {
            out.values[k] = v
            defaulted.insert(k)
        }
        out.defaultedKeys = defaulted
        cls.normalize(&out.values)
        return out
    }

    /// Only the keys this config's class has (what diffusers writes after `from_config`): a folder
    /// meant for one class, such as a distilled student's, loads there without warnings.
    public func keepingOwnKeys() -> SchedulerConfig {
        guard let cls = SchedulerClass(rawValue: className) else { return self }
        var out = self
        out.values = values.filter { cls.defaults[$0.key] != nil }
        out.defaultedKeys = defaultedKeys.filter { cls.defaults[$0] != nil }
        return out
    }

    /// Sets keys explicitly (they then carry over to other classes).
    public func setting(_ overrides: [String: JSONValue]) -> SchedulerConfig {
        var out = self
        for (k, v) in overrides { out.values[k] = v; out.defaultedKeys.remove(k) }
        return out
    }

    // MARK: Typed access (throws naming the key on a bad value)

    /// The value of `key` if this config's class has such a parameter (keys carried over from
    /// another class are kept for writing back but never used, as in diffusers).
    func value(_ key: String) -> JSONValue? {
        if let cls = SchedulerClass(rawValue: className), cls.defaults[key] == nil { return nil }
        return values[key]
    }

    func number(_ key: String) throws -> Double {
        guard let d = value(key)?.double else { throw bad(key, "expected a number") }
        return d
    }
    func optionalNumber(_ key: String) throws -> Double? {
        switch value(key) {
        case nil, .null?: return nil
        case .number(let d)?: return d
        default: throw bad(key, "expected a number or null")
        }
    }
    func int(_ key: String) throws -> Int {
        let d = try number(key)
        guard d == d.rounded() else { throw bad(key, "expected an integer") }
        return Int(d)
    }
    func flag(_ key: String) throws -> Bool {
        guard let b = value(key)?.bool else { throw bad(key, "expected true or false") }
        return b
    }
    func string(_ key: String) throws -> String {
        guard let s = value(key)?.string else { throw bad(key, "expected a string") }
        return s
    }
    func choice<E: RawRepresentable & CaseIterable>(_ key: String, _: E.Type) throws -> E where E.RawValue == String {
        let s = try string(key)
        guard let e = E(rawValue: s) else {
            throw bad(key, "expected one of " + E.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))
        }
        return e
    }
    func bad(_ key: String, _ hint: String) -> SchedulerConfigError {
        let v = values[key].map { v -> String in
            (try? String(decoding: JSONEncoder().encode(v), as: UTF8.self)) ?? "?"
        } ?? "(missing)"
        return .badValue(key: key, value: v, scheduler: className, hint: hint)
    }

    /// The noise schedule this config describes.
    public func noiseSchedule() throws -> NoiseSchedule {
        var trained: [Double]? = nil
        if case .array(let a)? = value("trained_betas") {
            trained = try a.map { guard let d = $0.double else { throw bad("trained_betas", "expected numbers") }; return d }
        }
        let n = try int("num_train_timesteps")
        guard n >= 2 else { throw bad("num_train_timesteps", "expected at least 2") }
        if let t = trained, t.count != n { throw bad("trained_betas", "expected \(n) values (num_train_timesteps)") }
        return NoiseSchedule(numTrainTimesteps: n, betaStart: try number("beta_start"), betaEnd: try number("beta_end"),
                             schedule: try choice("beta_schedule", BetaSchedule.self), trainedBetas: trained,
                             rescaleZeroTerminalSNR: value("rescale_betas_zero_snr")?.bool ?? false)
    }

    /// Whether training with either config is the same: the same noise schedule and prediction
    /// type (clipping, spacing and the sampler class only matter when sampling).
    public func trainsLike(_ other: SchedulerConfig) -> Bool {
        guard let a = try? noiseSchedule(), let b = try? other.noiseSchedule(),
              let p = try? parameterization(), let q = try? other.parameterization() else { return false }
        return a.alphasCumprodF == b.alphasCumprodF && p.prediction == q.prediction
    }

    /// Prediction type plus clipping/thresholding.
    public func parameterization() throws -> Parameterization {
        let p = try choice("prediction_type", PredictionType.self)
        var clip = SampleClipping.none
        if value("thresholding")?.bool == true {
            clip = .dynamicThreshold(ratio: Float(try number("dynamic_thresholding_ratio")),
                                     maxValue: Float(try number("sample_max_value")))
        } else if value("clip_sample")?.bool == true {
            clip = .clip(range: Float(try number("clip_sample_range")))
        }
        return Parameterization(p, clipping: clip)
    }
}
