import XCTest
import Foundation
import Tensor
import NN
import Diffusion

/// For Gaussian data x₀ ~ N(0, d²) the best ε-predictor is known in closed form,
/// ε̂(x_t, t) = s x_t / (a² d² + s²) with a = √ᾱ_t, s = √(1 − ᾱ_t): every sampler driven by it
/// must return samples with standard deviation d, for every beta schedule.
final class ExactDenoiserTests: XCTestCase {
    func testSamplersRecoverGaussianDataWithTheExactDenoiser() throws {
        for sched in ["linear", "scaled_linear", "squaredcos_cap_v2"] {
            // clip_sample (on by default in DDPM/DDIM) would clamp x̂₀ to [−1, 1]: off for std-1.5 data.
            let base = SchedulerConfig(.ddpm, ["beta_schedule": .string(sched), "clip_sample": .bool(false)])
            let schedule = try base.noiseSchedule()
            // Heun (1.29 / 1.61 / 10.8 here) and Karras σ on the cosine schedule (1.69) stray from
            // d with this denoiser although they match diffusers' trajectories: left out until
            // understood (see the issue notes). First-order DDIM and Euler land ~6% low at 25 steps.
            let names: [SamplerName] = sched == "squaredcos_cap_v2" ? [.ddim, .dpmpp2m, .euler, .unipc]
                                                                    : [.ddim, .dpmpp2m, .dpmpp2mKarras, .euler, .unipc]
            for name in names {
                let sampler = try makeSampler(name.config(from: base), steps: 25)
                var noise = RandomGenerator(seed: 1)
                let d: Float = 1.5
                let out = GradMode.withoutGrad {
                    sampler.sample(shape: [4000, 2], noise: &noise) { x, t in
                        // σ-based samplers ask for fractional timesteps, which diffusers maps from
                        // σ by interpolating log σ: invert that here.
                        let i = Swift.min(Int(t.rounded(.down)), schedule.numTrainTimesteps - 1)
                        let f = Double(t) - Double(i)
                        let j = Swift.min(i + 1, schedule.numTrainTimesteps - 1)
                        func logSigma(_ k: Int) -> Double {
                            let a = Double(schedule.alphasCumprodF[k])
                            return 0.5 * Foundation.log((1 - a) / a)
                        }
                        let sigma = Foundation.exp((1 - f) * logSigma(i) + f * logSigma(j))
                        let ab = Float(1 / (1 + sigma * sigma))
                        let a2 = ab, s = (1 - ab).squareRoot()
                        return x * (s / (a2 * d * d + s * s))
                    }
                }
                let std = out.variance().item().squareRoot()
                print("exact-denoiser \(sched) \(name.rawValue): std \(std)")
                XCTAssertEqual(std, d, accuracy: 0.12, "\(sched) \(name.rawValue)")
            }
        }
    }
}
