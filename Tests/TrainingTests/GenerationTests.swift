import XCTest
import Foundation
import Tensor
import NN
@testable import Diffusion
import TestSupport

/// An analytic model: the exact ε̂ for x₀ ~ N(μ_y, d²) per label y (μ_y = y − 1; the null label
/// means μ = 0), so every output can be checked by hand.
final class GaussianModel: DiffusionModel {
    let schedule: NoiseSchedule
    let d: Float
    let nullLabel = 3
    var calls = 0
    init(schedule: NoiseSchedule, d: Float = 0.5) { self.schedule = schedule; self.d = d }
    var labelCount: Int? { 4 }
    func visit(_ v: inout ModuleVisitor) {}
    func predict(_ x: Tensor, timesteps: [Float], labels: [Int]?) -> Tensor {
        calls += 1
        let n = x.shape[0], per = x.count / n
        let out = Tensor.zeros(x.shape)
        for i in 0..<n {
            let ab = schedule.alphaBar(at: timesteps[i]), a = ab.squareRoot(), s = (1 - ab).squareRoot()
            let mu: Float = labels.map { $0[i] == nullLabel ? 0 : Float($0[i] - 1) } ?? 0
            // ε̂ = s (x − a μ) / (a² d² + s²)
            for j in 0..<per { out.data[i * per + j] = s * (x.data[i * per + j] - a * mu) / (a * a * d * d + s * s) }
        }
        return out
    }
}

final class GenerationTests: XCTestCase {
    let base = SchedulerConfig(.ddpm, ["clip_sample": .bool(false)])

    func testConditionalSamplesLandOnTheirClassMeans() throws {
        let schedule = try base.noiseSchedule()
        let model = GaussianModel(schedule: schedule)
        let sampler = try makeSampler(SamplerName.dpmpp2m.config(from: base), steps: 20)
        let labels = [0, 1, 2, 0, 1, 2]
        let out = try Generation.sample(model: model, shape: [6, 1, 500], sampler: sampler, schedule: schedule,
                                        seed: 4, labels: labels)
        for (i, y) in labels.enumerated() {
            let row = out.slice(axis: 0, i..<(i + 1))
            XCTAssertEqual(row.mean().item(), Float(y - 1), accuracy: 0.08, "sample \(i) class \(y)")
            XCTAssertEqual(row.variance().item().squareRoot(), 0.5, accuracy: 0.06)
        }
        // The same seed gives the same bits.
        let again = try Generation.sample(model: model, shape: [6, 1, 500], sampler: sampler, schedule: schedule,
                                          seed: 4, labels: labels)
        XCTAssertEqual(again.scalars, out.scalars)
    }

    func testGuidanceCombinesBothHalves() throws {
        let schedule = try base.noiseSchedule()
        let model = GaussianModel(schedule: schedule)
        let x = randomTensor([2, 1, 8], seed: 1)
        let cond = model.predict(x, timesteps: [500, 500], labels: [2, 0])
        let uncond = model.predict(x, timesteps: [500, 500], labels: [3, 3])
        let s: Float = 4
        let want = uncond + (cond - uncond) * s
        let got = Generation.denoiser(model, labels: [2, 0], guidance: Guidance(scale: s, nullLabel: 3))(x, 500)
        assertClose(got, want, atol: 1e-6)
        // Scale 1 is the plain conditional prediction; rescale 1 gives each sample the std of p_y.
        assertClose(Generation.denoiser(model, labels: [2, 0], guidance: Guidance(scale: 1, nullLabel: 3))(x, 500), cond)
        let r = Generation.denoiser(model, labels: [2, 0], guidance: Guidance(scale: s, rescale: 1, nullLabel: 3))(x, 500)
        for i in 0..<2 {
            XCTAssertEqual(r.slice(axis: 0, i..<(i + 1)).variance(correction: 1).item(),
                           cond.slice(axis: 0, i..<(i + 1)).variance(correction: 1).item(), accuracy: 1e-5)
        }
    }

    /// Autoguidance: the guided prediction moves away from the weaker model's prediction for the
    /// same labels (one call of each model per step, no null label), and for an unconditional
    /// model too; outside the interval the model alone.
    func testAutoguidanceMovesAwayFromTheWeakerModelsPrediction() throws {
        let schedule = try base.noiseSchedule()
        let model = GaussianModel(schedule: schedule), weak = GaussianModel(schedule: schedule, d: 0.9)
        let x = randomTensor([2, 1, 8], seed: 1)
        let g = Guidance(scale: 3, nullLabel: 3, interval: 100...600, guide: weak)
        for labels in [[2, 0], nil] as [[Int]?] {
            let good = model.predict(x, timesteps: [500, 500], labels: labels)
            let bad = weak.predict(x, timesteps: [500, 500], labels: labels)
            model.calls = 0; weak.calls = 0
            assertClose(Generation.denoiser(model, labels: labels, guidance: g)(x, 500), bad + (good - bad) * 3, atol: 1e-6)
            XCTAssertEqual([model.calls, weak.calls], [1, 1])
            assertClose(Generation.denoiser(model, labels: labels, guidance: g)(x, 700),
                        model.predict(x, timesteps: [700, 700], labels: labels))
            XCTAssertEqual(weak.calls, 1, "outside the interval the weaker model is not called")
        }
        // A whole trajectory: guided away from a wider model, samples come out narrower than the
        // model's own spread (d = 0.5) around the same class mean.
        let sampler = try makeSampler(SamplerName.dpmpp2m.config(from: base), steps: 20)
        let out = try Generation.sample(model: model, shape: [1, 1, 2000], sampler: sampler, schedule: schedule, seed: 5,
                                        labels: [2], guidance: Guidance(scale: 2, nullLabel: 3, guide: weak))
        XCTAssertEqual(out.mean().item(), 1, accuracy: 0.05)
        XCTAssertLessThan(out.variance().item().squareRoot(), 0.45)
    }

    /// Guidance in a limited interval: inside it both halves, outside the conditional prediction
    /// alone in one call; a whole trajectory with it counts its calls and ends between the
    /// unguided and the fully guided sample.
    func testGuidanceIntervalGuidesOnlyInsideIt() throws {
        let schedule = try base.noiseSchedule()
        let model = GaussianModel(schedule: schedule)
        let x = randomTensor([2, 1, 8], seed: 1)
        let g = Guidance(scale: 4, nullLabel: 3, interval: 100...600)
        let cond = model.predict(x, timesteps: [700, 700], labels: [2, 0])
        model.calls = 0
        assertClose(Generation.denoiser(model, labels: [2, 0], guidance: g)(x, 700), cond)
        XCTAssertEqual(model.calls, 1, "outside the interval: one call")
        let full = Generation.denoiser(model, labels: [2, 0], guidance: Guidance(scale: 4, nullLabel: 3))
        assertClose(Generation.denoiser(model, labels: [2, 0], guidance: g)(x, 600), full(x, 600))
        assertClose(Generation.denoiser(model, labels: [2, 0], guidance: g)(x, 100), full(x, 100))
        let sampler = try makeSampler(SamplerName.ddim.config(from: base), steps: 10)
        func sample(_ g: Guidance?) throws -> Float {
            model.calls = 0
            return try Generation.sample(model: model, shape: [1, 1, 400], sampler: sampler, schedule: schedule, seed: 3,
                                         labels: [2], guidance: g).mean().item()
        }
        let none = try sample(nil), all = try sample(Guidance(scale: 4, nullLabel: 3))
        let part = try sample(Guidance(scale: 4, nullLabel: 3, interval: 0...500))
        XCTAssertEqual(model.calls, 10, "one call per step, guided or not (both halves in one batch)")
        XCTAssertEqual(none, 1, accuracy: 0.05, "class 2 has mean 1")
        XCTAssertGreaterThan(all, part + 0.05)
        XCTAssertGreaterThan(part, none + 0.05)
        var request = SamplingRequest(count: 1)
        request.guidanceInterval = -1...600
        XCTAssertThrowsError(try request.validate())
    }

    func testInpaintingKeepsTheKnownRegionForEverySampler() throws {
        let schedule = try base.noiseSchedule()
        let model = GaussianModel(schedule: schedule)
        let known = Tensor.full([1, 1, 400], 0.9)
        // Generate the second half, keep the first: mask [1, 1, 400]
        let mask = Tensor(shape: [1, 1, 400], scalars: (0..<400).map { $0 < 200 ? 0 : 1 })
        // (Ancestral samplers at 20 steps under-disperse this Gaussian whether or not a region is
        // kept — DDPM and Euler-a both give std 0.38, 0.47 at 100 steps — so they sit this one out.)
        for name in [SamplerName.ddim, .dpmpp2m, .dpmpp2mSDE, .euler, .unipc] {
            let sampler = try makeSampler(name.config(from: base), steps: 20)
            let out = try Generation.sample(model: model, shape: [1, 1, 400], sampler: sampler, schedule: schedule, seed: 2,
                                            labels: [1], known: KnownRegion(sample: known, mask: mask))
            XCTAssertEqual(Array(out.scalars[0..<200]), [Float](repeating: 0.9, count: 200), name.rawValue)
            let gen = out.slice(axis: 2, 200..<400)
            XCTAssertEqual(gen.mean().item(), 0, accuracy: 0.1, "\(name.rawValue): class 1 has mean 0")
            XCTAssertEqual(gen.variance().item().squareRoot(), 0.5, accuracy: 0.1, name.rawValue)
        }
    }

    func testProgressReportsAndCancels() throws {
        let schedule = try base.noiseSchedule()
        let model = GaussianModel(schedule: schedule)
        let sampler = try makeSampler(SamplerName.euler.config(from: base), steps: 10)
        var seen: [Int] = []
        _ = try Generation.sample(model: model, shape: [1, 1, 4], sampler: sampler, schedule: schedule, seed: 0) { step, total in
            seen.append(step)
            XCTAssertEqual(total, 10)
            return true
        }
        XCTAssertEqual(seen, Array(1...10))
        model.calls = 0
        XCTAssertThrowsError(try Generation.sample(model: model, shape: [1, 1, 4], sampler: sampler, schedule: schedule,
                                                   seed: 0) { step, _ in step < 4 }) { e in
            XCTAssert(e is GenerationCancelled)
        }
        XCTAssertEqual(model.calls, 3, "no model call after cancelling")
    }
}

final class ImageToImageTests: XCTestCase {
    let base = SchedulerConfig(.ddpm, ["clip_sample": .bool(false)])

    func testStrengthMovesFromTheInitialSampleToTheModel() throws {
        let schedule = try base.noiseSchedule()
        // The model believes in class 2 (mean +1); the initial sample sits at −1.
        let initial = Tensor.full([1, 1, 2000], -1)
        for name in [SamplerName.ddim, .dpmpp2m, .euler, .heun, .unipc, .lms] {
            let sampler = try makeSampler(name.config(from: base), steps: 20)
            var means: [Float] = []
            for strength: Float in [0.05, 0.5, 1] {
                let model = GaussianModel(schedule: schedule)
                let out = try Generation.sample(model: model, shape: [1, 1, 2000], sampler: sampler, schedule: schedule,
                                                seed: 3, labels: [2], initial: (initial, strength))
                means.append(out.mean().item())
                // Only the last ⌊20 · strength⌋ steps run (Heun evaluates twice per step, but once at the end).
                let steps = Int(20 * strength)
                XCTAssertEqual(model.calls, name == .heun ? 2 * steps - 1 : steps, "\(name.rawValue) strength \(strength)")
            }
            XCTAssertLessThan(means[0], -0.7, "\(name.rawValue): low strength keeps the initial sample")
            XCTAssertGreaterThan(means[2], 0.75, "\(name.rawValue): full strength follows the model")
            XCTAssert(means[0] < means[1] && means[1] < means[2], "\(name.rawValue) \(means)")
        }
    }
}

final class StartNoiseTests: XCTestCase {
    func testStartingNoiseFromAFileGivesTheSameRunAsInMemory() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("noise-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let base = SchedulerConfig(.ddpm, ["clip_sample": .bool(false)])
        let schedule = try base.noiseSchedule()
        let z = randomTensor([2, 1, 16], seed: 9)
        let url = dir.appendingPathComponent("latents.safetensors")
        try SafeTensors.write(["latents": z], to: url)
        let sampler = try makeSampler(SamplerName.euler.config(from: base), steps: 8)
        let loaded = try Generation.startNoise(from: url, shape: [2, 1, 16])
        let a = try Generation.sample(model: GaussianModel(schedule: schedule), shape: [2, 1, 16], sampler: sampler,
                                      schedule: schedule, seed: 0, start: loaded)
        let b = try Generation.sample(model: GaussianModel(schedule: schedule), shape: [2, 1, 16], sampler: sampler,
                                      schedule: schedule, seed: 123, start: z)
        XCTAssertEqual(a.scalars, b.scalars, "the seed does not matter once the noise is given (deterministic sampler)")
        XCTAssertThrowsError(try Generation.startNoise(from: url, shape: [2, 1, 8])) { e in
            XCTAssert("\(e)".contains("latents.safetensors") && "\(e)".contains("[2, 1, 16]"), "\(e)")
        }
        XCTAssertThrowsError(try Generation.startNoise(from: url, key: "noise", shape: [2, 1, 16])) { e in
            XCTAssert("\(e)".contains("no tensor named 'noise'"), "\(e)")
        }
    }
}

final class RePaintTests: XCTestCase {
    func testRePaintKeepsTheKnownRegionAndResamplesTheRest() throws {
        let schedule = NoiseSchedule(numTrainTimesteps: 1000)
        let known = Tensor.full([1, 1, 600], 0.9)
        let mask = Tensor(shape: [1, 1, 600], scalars: (0..<600).map { $0 < 300 ? 0 : 1 })
        for (jumpLength, jumpSamples) in [(5, 1), (5, 3)] {
            let model = GaussianModel(schedule: schedule)
            var calls = 0
            let out = try Generation.repaint(model: model, known: KnownRegion(sample: known, mask: mask), schedule: schedule,
                                             steps: 50, jumpLength: jumpLength, jumpSamples: jumpSamples, seed: 1,
                                             labels: [2]) { step, total in
                calls = step
                // 50 steps, plus (jumpSamples − 1) · jumpLength for each of the 9 jump points.
                XCTAssertEqual(total, 50 + 9 * (jumpSamples - 1) * jumpLength)
                return true
            }
            XCTAssertEqual(model.calls, 50 + 9 * (jumpSamples - 1) * jumpLength)
            XCTAssertEqual(calls, model.calls)
            XCTAssertEqual(Array(out.scalars[0..<300]), [Float](repeating: 0.9, count: 300))
            let gen = out.slice(axis: 2, 300..<600)
            XCTAssertEqual(gen.mean().item(), 1, accuracy: 0.1, "class 2 has mean 1")
            XCTAssertEqual(gen.variance().item().squareRoot(), 0.5, accuracy: 0.1)
        }
    }
}

final class TorchNoiseOrderTests: XCTestCase {
    /// `.torch` is diffusers' order: one torch.Generator draws the whole batch's start noise,
    /// then each stochastic step's noise for the whole batch (checked against diffusers itself by
    /// Tests/References/check_diffusers_interop.py, which needs Python).
    func testTorchOrderDrawsTheStartThenEachStepFromOneGenerator() throws {
        let base = SchedulerConfig(.ddpm, ["clip_sample": .bool(false)])
        let schedule = try base.noiseSchedule()
        let model = GaussianModel(schedule: schedule)
        let shape = [3, 1, 20]
        let sampler = try makeSampler(SamplerName.ddpm.config(from: base), steps: 5)
        let got = try Generation.sample(model: model, shape: shape, sampler: sampler, schedule: schedule, seed: 11,
                                        labels: [0, 1, 2], noiseOrder: .torch)
        var g = TorchGenerator(seed: 11)
        let start = g.randn(shape)
        var replay = ReplayNoise((0..<4).map { _ in g.randn(shape) })  // DDPM draws at every step but the last
        let want = sampler.sample(from: start * sampler.initNoiseSigma, noise: &replay,
                                  denoise: Generation.denoiser(model, labels: [0, 1, 2], guidance: nil))
        XCTAssertEqual(replay.used, 4)
        XCTAssertEqual(got.scalars, want.scalars)
        let ours = try Generation.sample(model: model, shape: shape, sampler: sampler, schedule: schedule, seed: 11, labels: [0, 1, 2])
        XCTAssertNotEqual(got.scalars, ours.scalars, "the default order is our own per-sample one")
    }

    func testTorchOrderNeedsOneBatch() throws {
        var r = SamplingRequest(count: 4, steps: 2, batchSize: 2)
        r.noiseOrder = .torch
        XCTAssertThrowsError(try r.validate()) { e in XCTAssert("\(e)".hasPrefix("batch:") && "\(e)".contains("all 4"), "\(e)") }
        r.batchSize = 4
        XCTAssertNoThrow(try r.validate())
    }
}

/// Two positions that are always (nearly) equal: x₀ = (c, c) + d·noise, c ~ N(0, 1), d = 0.05.
/// The exact ε̂ = s (a² Σ + s² I)⁻¹ x_t is linear in x_t and couples the positions, made of
/// autograd ops (a matmul and a parameter `scale` = 1), so reconstruction guidance has a gradient
/// to follow and a weight to leave alone.
final class PairModel: DiffusionModel {
    let schedule: NoiseSchedule
    let scale = Tensor(shape: [1], scalars: [1])
    init(schedule: NoiseSchedule) { self.schedule = schedule; scale.requiresGrad = true }
    var labelCount: Int? { nil }
    func visit(_ v: inout ModuleVisitor) { v("scale", scale) }
    func matrix(_ t: Float) -> Tensor {
        let ab = Double(schedule.alphaBar(at: t)), a2 = ab, s = (1 - ab).squareRoot(), d2 = 0.0025
        // a² Σ + s² I = [[p, q], [q, p]], Σ = [[1 + d², 1], [1, 1 + d²]]; its inverse is [[p, −q], [−q, p]] / (p² − q²).
        let p = a2 * (1 + d2) + s * s, q = a2, det = p * p - q * q
        return Tensor(shape: [2, 2], scalars: [p, -q, -q, p].map { Float(s * $0 / det) })
    }
    func predict(_ x: Tensor, timesteps: [Float], labels: [Int]?) -> Tensor {
        x.matmul(matrix(timesteps[0])) * scale
    }
}

final class ReconstructionGuidanceTests: XCTestCase {
    let base = SchedulerConfig(.ddpm, ["clip_sample": .bool(false)])

    /// The guided output is ε̂ + (w a² / 2s) ∂L/∂x on the generated position, L = (x̂₀ − x₀)² on
    /// the kept one: checked against central differences of L (exact for a quadratic).
    func testTheStepFollowsTheGradientOfTheKeptRegionsError() throws {
        let schedule = try base.noiseSchedule()
        let model = PairModel(schedule: schedule)
        let t: Float = 400, w: Float = 3
        let ab = schedule.alphaBar(at: t), a = ab.squareRoot(), s = (1 - ab).squareRoot()
        let known = KnownRegion(sample: Tensor(shape: [1, 1, 2], scalars: [0.9, 0]), mask: Tensor(shape: [1, 1, 2], scalars: [0, 1]),
                                reconstructionGuidance: w)
        let x = Tensor(shape: [1, 1, 2], scalars: [0.3, -0.7])
        let inner: Denoiser = { x, t in model.predict(x, timesteps: [t], labels: nil) }
        let plain = GradMode.withoutGrad { inner(x, t) }
        let guided = GradMode.withoutGrad {
            Generation.reconstructionGuided(inner, x, t, alphaBar: ab, known: known, parameterization: Parameterization(.epsilon))
        }
        func loss(_ x1: Double) -> Double {
            let m = model.matrix(t).scalars.map(Double.init), x0v = 0.3
            let eps0 = x0v * m[0] + x1 * m[2]
            let x0hat = (x0v - Double(s) * eps0) / Double(a)
            return (x0hat - 0.9) * (x0hat - 0.9)
        }
        let h = 1e-3, dL = (loss(-0.7 + h) - loss(-0.7 - h)) / (2 * h)
        XCTAssertEqual(guided.scalars[0], plain.scalars[0], "the kept position's prediction is left as it is")
        XCTAssertEqual(Double(guided.scalars[1]), Double(plain.scalars[1]) + Double(w * a * a / (2 * s)) * dL, accuracy: 1e-4)
        XCTAssertNotEqual(guided.scalars[1], plain.scalars[1])
    }

    /// Continuing the kept position 0.9 (DDIM, 10 steps): replacement alone lands the generated one
    /// at 0.40, guidance 2 at 0.86 — near the exact
    /// conditional mean 0.9 / (1 + d²); the weights keep requiring
    /// gradients and receive none.
    func testGuidedSamplesAgreeWithTheKeptRegion() throws {
        let schedule = try base.noiseSchedule()
        let model = PairModel(schedule: schedule)
        let n = 64
        let sample = Tensor(shape: [n, 1, 2], scalars: (0..<n).flatMap { _ in [Float(0.9), 0] })
        let mask = Tensor(shape: [n, 1, 2], scalars: (0..<n).flatMap { _ in [Float(0), 1] })
        let target = 0.9 / 1.0025
        func run(_ w: Float) throws -> Double {
            let sampler = try makeSampler(SamplerName.ddim.config(from: base), steps: 10)
            let out = try Generation.sample(model: model, shape: [n, 1, 2], sampler: sampler, schedule: schedule, seed: 5,
                                            known: KnownRegion(sample: sample, mask: mask, reconstructionGuidance: w))
            XCTAssertEqual(out.scalars[0], 0.9)
            return (0..<n).map { Double(out.scalars[2 * $0 + 1]) }.reduce(0, +) / Double(n)
        }
        let plain = try run(0), guided = try run(2)
        print("pair continuation: replacement \(plain), guided \(guided), exact \(target)")
        XCTAssertLessThan(abs(guided - target), abs(plain - target))
        XCTAssertLessThan(abs(guided - target), 0.1)
        XCTAssertTrue(model.scale.requiresGrad)
        XCTAssertNil(model.scale.grad)
        var r = SamplingRequest(count: n, known: KnownRegion(sample: sample, mask: mask, reconstructionGuidance: -1))
        r.steps = 2
        XCTAssertThrowsError(try r.validate()) { XCTAssert("\($0)".contains("reconstruction guidance"), "\($0)") }
    }
}
