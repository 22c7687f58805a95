import Foundation

/// The step list of the consistency samplers (LCM, TCD), as diffusers' `set_timesteps` of
/// `LCMScheduler` and `TCDScheduler` builds it (Luo et al. 2023, §4.3 "skipping-step"):
///
///     k = ⌊T / N⌋                                  N = original_inference_steps (the distillation grid)
///     grid = k−1, 2k−1, …, ⌊N · strength⌋ k − 1     reversed: L = ⌊N · strength⌋ points, highest first
///     τ_i = grid[⌊i · L/n⌋],  i = 0 ..< n           (`np.floor(np.linspace(0, L, n, endpoint=False))`)
///
/// `strength` < 1 is the LCM image-to-image pipeline's way: the grid itself stops at the noise
/// level ⌊N · strength⌋ k − 1 and all n steps run below it (compare `Sampler.startIndex(strength:)`,
/// the Stable Diffusion img2img pipeline's `set_begin_index` way, which skips the first steps of
/// the full list instead).
enum ConsistencySteps {
    /// Integer training timesteps, descending. Throws (naming the key) what diffusers refuses.
    static func timesteps(_ c: SchedulerConfig, steps n: Int, strength: Float) throws -> [Int] {
        let T = try c.int("num_train_timesteps")
        let original = try c.int("original_inference_steps")
        guard original >= 1, original <= T else {
            throw c.bad("original_inference_steps", "expected 1 ... \(T) (num_train_timesteps)")
        }
        guard strength > 0, strength <= 1 else {
            throw SchedulerConfigError.badValue(key: "strength", value: "\(strength)", scheduler: c.className,
                                                hint: "expected a value in (0, 1]")
        }
        // Python: int(original_steps * strength); float32 here, as `startIndex(strength:)` computes it
        let count = Int(Float(original) * strength)
        guard n <= original, n <= count else {
            throw SchedulerConfigError.badValue(
                key: "num_inference_steps", value: "\(n)", scheduler: c.className,
                hint: "at most original_inference_steps × strength = \(original) × \(strength) → \(count) steps: the steps are a subset of that grid")
        }
        let k = T / original
        let grid = (1...count).reversed().map { $0 * k - 1 }
        let stride = Double(count) / Double(n)  // np.linspace(0, L, n, endpoint=False): i · (L / n) in float64
        return (0..<n).map { grid[Int((Double($0) * stride).rounded(.down))] }
    }

    /// The noise schedule of these classes: diffusers' LCM/TCD constructors know no sigmoid betas.
    static func noiseSchedule(_ c: SchedulerConfig) throws -> NoiseSchedule {
        if c.value("trained_betas") == .null, try c.choice("beta_schedule", BetaSchedule.self) == .sigmoid {
            throw c.bad("beta_schedule", "\(c.className) supports \"linear\", \"scaled_linear\" and \"squaredcos_cap_v2\"")
        }
        return try c.noiseSchedule()
    }
}
