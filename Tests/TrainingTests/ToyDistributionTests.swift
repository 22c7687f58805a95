import XCTest
import Foundation
import Tensor
import NN
import Diffusion
import TestSupport

/// A small MLP denoiser on 2-D points: the diffusion loop proven before any U-Net exists.
final class ToyDenoiser: DiffusionModel {
    let timeProj = Timesteps(numChannels: 32, flipSinToCos: true, downscaleFreqShift: 0)
    let timeMLP = TimestepEmbedding(inChannels: 32, timeEmbedDim: 128)
    let labelEmbedding: Embedding?
    let inProj = Linear(2, 128)
    let hidden1 = Linear(128, 128)
    let hidden2 = Linear(128, 128)
    let outProj = Linear(128, 2)

    init(labels: Int? = nil) { labelEmbedding = labels.map { Embedding($0, 128) } }

    var labelCount: Int? { labelEmbedding?.count }

    func visit(_ v: inout ModuleVisitor) {
        v("time_embedding", timeMLP)
        v("class_embedding", labelEmbedding)
        v("in_proj", inProj)
        v("hidden.0", hidden1)
        v("hidden.1", hidden2)
        v("out_proj", outProj)
    }

    /// x: [N, 2] -> ε̂: [N, 2]
    func predict(_ x: Tensor, timesteps: [Float], labels: [Int]?) -> Tensor {
        var emb = timeMLP(timeProj(timesteps))
        if let labelEmbedding, let labels { emb = emb + labelEmbedding(labels) }
        var h = (inProj(x) + emb).silu()
        h = (hidden1(h) + emb).silu()
        h = hidden2(h).silu()
        return outProj(h)
    }
}

/// Eight Gaussians of std 0.1 on a circle of radius 1.5, labelled by mode.
func eightGaussians(_ n: Int, rng: inout RandomGenerator) -> (Tensor, [Int]) {
    let modes = rng.integers(n, below: 8)
    let jitter = rng.normal([n, 2], std: 0.1)
    let x = Tensor.zeros([n, 2])
    for i in 0..<n {
        let a = Double(modes[i]) * Double.pi / 4
        x.data[2 * i] = Float(1.5 * cos(a)) + jitter.data[2 * i]
        x.data[2 * i + 1] = Float(1.5 * sin(a)) + jitter.data[2 * i + 1]
    }
    return (x, modes)
}

/// Unbiased MMD² with a Gaussian kernel of width `sigma` between point sets [N, 2] and [M, 2].
func mmd2(_ a: Tensor, _ b: Tensor, sigma: Double = 0.3) -> Double {
    func k(_ p: Tensor, _ i: Int, _ q: Tensor, _ j: Int) -> Double {
        let dx = Double(p.data[2 * i] - q.data[2 * j]), dy = Double(p.data[2 * i + 1] - q.data[2 * j + 1])
        return exp(-(dx * dx + dy * dy) / (2 * sigma * sigma))
    }
    let n = a.shape[0], m = b.shape[0]
    var aa = 0.0, bb = 0.0, ab = 0.0
    for i in 0..<n { for j in 0..<n where j != i { aa += k(a, i, a, j) } }
    for i in 0..<m { for j in 0..<m where j != i { bb += k(b, i, b, j) } }
    for i in 0..<n { for j in 0..<m { ab += k(a, i, b, j) } }
    return aa / Double(n * (n - 1)) + bb / Double(m * (m - 1)) - 2 * ab / Double(n * m)
}

final class ToyDistributionTests: XCTestCase {
    func testTrainedToyModelSamplesTheDistributionAndAWrongScheduleDoesNot() throws {
        // Linear betas (DDPM's): the cosine schedule's ᾱ_T ≈ 2e-9 makes x̂₀ = (x − σ ε̂)/α amplify
        // a learned ε̂'s error 20,000× at the first step.
        let schedule = NoiseSchedule(numTrainTimesteps: 1000, schedule: .linear)
        NNInit.seed(1)
        let model = ToyDenoiser()
        var options = TrainerOptions()
        options.steps = 6000
        options.batchSize = 256
        options.learningRate = 2e-3
        options.warmupSteps = 100
        options.emaDecay = 0.995
        options.seed = 7
        let trainer = try Trainer(model: model, objective: DiffusionObjective(schedule: schedule), options: options)
        let start = Date()
        var losses: [Float] = []
        for _ in 0..<options.steps {
            let r = try trainer.trainStep { rng in
                let (x, _) = eightGaussians(options.batchSize, rng: &rng)
                return (x, nil)
            }
            losses.append(r.loss)
        }
        let trainSeconds = Date().timeIntervalSince(start)
        let early = losses.prefix(100).reduce(0, +) / 100, late = losses.suffix(300).reduce(0, +) / 300
        XCTAssertLessThan(late, 0.7 * early, "the loss falls")
        _ = trainer.swapInEMA()
        model.setTraining(false)

        var rng = RandomGenerator(seed: 99)
        let (truth, _) = eightGaussians(2000, rng: &rng)
        let (truth2, _) = eightGaussians(2000, rng: &rng)
        func draw(_ config: SchedulerConfig, steps: Int = 20) throws -> Tensor {
            let sampler = try makeSampler(config, steps: steps)
            var noise = RandomGenerator(seed: 5)
            return GradMode.withoutGrad {
                sampler.sample(shape: [2000, 2], noise: &noise) { x, t in
                    model.predict(x, timesteps: [Float](repeating: t, count: x.shape[0]), labels: nil)
                }
            }
        }
        let right = SamplerName.dpmpp2m.config(from: SchedulerConfig(.ddpm, ["beta_schedule": .string("linear")]))
        let samples = try draw(right)
        let floor = mmd2(truth, truth2), good = mmd2(samples, truth)
        // The same sampler with the schedule the model was not trained with.
        let wrong = SamplerName.dpmpp2m.config(from: SchedulerConfig(.ddpm, ["beta_schedule": .string("scaled_linear")]))
        let bad = mmd2(try draw(wrong), truth)
        print(String(format: "toy: trained %d steps in %.1f s, MMD² real-real %.5f, DPM-Solver++ 20 steps %.5f, wrong schedule %.5f",
                     options.steps, trainSeconds, floor, good, bad))
        XCTAssertLessThan(good, 0.01, "samples match the eight Gaussians")
        XCTAssertGreaterThan(bad, 0.02, "a wrong schedule must fail the same bound")
        XCTAssertGreaterThan(bad, 3 * good)
        // Every mode is covered.
        var counts = [Int](repeating: 0, count: 8)
        for i in 0..<2000 {
            let a = atan2(Double(samples.data[2 * i + 1]), Double(samples.data[2 * i]))
            counts[(Int((a / (Double.pi / 4)).rounded()) + 8) % 8] += 1
        }
        XCTAssert(counts.allSatisfy { $0 > 120 }, "mode counts \(counts)")
    }
}
