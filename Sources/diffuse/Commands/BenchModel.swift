import ArgumentParser
import Foundation
import Tensor
import NN
import Image
import Diffusion

extension Bench {
    struct Model: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Time one forward pass or one training step of a model (median of several runs).",
            discussion: "MODEL is a diffusers model folder, a pipeline folder, or a bare config.json (random weights) of a UNet2DModel, UNet1DModel or VideoUNetModel (`_class_name`); inputs have the config's sample_size (and num_frames). An AutoencoderKL folder or config times `decode` of latents of sample_size / 2^(levels - 1) (64×64 for SD's VAE)."
        )

        enum Mode: String, ExpressibleByArgument, CaseIterable { case forward, train }
        enum Weights: String, ExpressibleByArgument, CaseIterable { case f32, f16, bf16 }

        @Argument(help: "Model folder or config.json.") var model: String
        @OptionGroup var runtime: RuntimeOptions
        @Option(help: "Batch size.") var batch = 1
        @Option(help: "forward: one inference pass; train: forward + backward + AdamW.") var mode = Mode.forward
        @Option(help: "Timed runs (after 2 warm-up runs); the median is reported.") var runs = 5
        @Option(help: "How layer weights are held in memory in --mode forward: f32, or f16/bf16 (2 bytes each, widened per layer as an F16 Stable Diffusion checkpoint is run).")
        var weights = Weights.f32
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            if batch < 1 || batch > 4096 { throw ValidationError("--batch must be between 1 and 4096, got \(batch)") }
            if runs < 5 || runs > 1000 { throw ValidationError("--runs must be between 5 and 1000, got \(runs)") }
            if weights != .f32 && mode == .train { throw ValidationError("--weights \(weights.rawValue) is for --mode forward (16-bit weights take no gradients)") }
        }

        struct Result: Codable {
            var model: String, mode: String, weights: String, batch: Int, threads: Int, parameters: Int
            var median_s: Double, samples_per_s: Double, peak_rss_bytes: Int
            /// Forward FLOPs of convolutions, products and attention (train: 3× forward).
            var gflop: Double, gflops: Double, sgemm_gflops: Double
        }

        func run() throws {
            runtime.apply()
            switch try ModelFolder.className(of: URL(fileURLWithPath: model)) {
            case AutoencoderKLConfig.className?: return try runAutoencoder()
            case UNet2DConditionConfig.className?: return try runConditionalUNet()
            default: break
            }
            let net = try Models.load(URL(fileURLWithPath: model))
            halve(net)
            var rng = RandomGenerator(seed: 1)
            let x = rng.normal([batch] + net.sampleShape)
            let t = rng.integers(batch, below: 1000).map(Float.init)
            let labels = net.labelRange.map { rng.integers(batch, below: $0) }
            let before = FlopCounter.forwardFlops
            let y = GradMode.withoutGrad { net.predict(x, timesteps: t, labels: labels) }
            let flops = (FlopCounter.forwardFlops - before) * (mode == .train ? 3 : 1)
            let median: Double
            switch mode {
            case .forward:
                net.setTraining(false)
                median = GradMode.withoutGrad {
                    KernelBenchmark.median(runs: runs) { OpProfile.mark(); _ = net.predict(x, timesteps: t, labels: labels) }
                }
            case .train:
                net.setTraining(true)
                let opt = AdamW(net.trainableParameters(), learningRate: 1e-4)
                let target = rng.normal(y.shape)  // shaped like the prediction ([N, 1] for a value function)
                median = KernelBenchmark.median(runs: runs) {
                    net.zeroGrad()
                    OpProfile.mark()
                    (net.predict(x, timesteps: t, labels: labels) - target).square().mean().backward()
                    opt.step()
                }
            }
            if OpProfile.isEnabled { note("time by op (all runs, warm-up included):\n" + OpProfile.report()) }
            try report(mode: mode.rawValue, parameters: net.parameterCount, median: median, flops: flops)
        }

        func halve(_ m: any Module) {
            switch weights {
            case .f32: break
            case .f16: m.storeWeightsAsHalf(.f16)
            case .bf16: m.storeWeightsAsHalf(.bf16)
            }
        }

        /// The VAE's `decode` of [batch, latent, h, w] latents (what a pipeline runs once per image).
        func runAutoencoder() throws {
            guard mode == .forward else { throw ValidationError("an AutoencoderKL is timed in --mode forward (its decode) only") }
            let vae = try AutoencoderKL.load(URL(fileURLWithPath: model))
            halve(vae)
            let s = vae.config.sampleSize, f = vae.downFactor
            var rng = RandomGenerator(seed: 1)
            let z = rng.normal([batch, vae.config.latentChannels, s[0] / f, s[1] / f])
            let before = FlopCounter.forwardFlops
            _ = vae.decode(z)
            let flops = FlopCounter.forwardFlops - before
            let median = KernelBenchmark.median(runs: runs) { _ = vae.decode(z) }
            try report(mode: "decode", parameters: vae.parameterCount, median: median, flops: flops)
        }

        /// A text-conditioned unet on random latents at its sample size and random text states
        /// [batch, 77, cross_attention_dim] (one step of a guided Stable Diffusion image at batch 2).
        func runConditionalUNet() throws {
            guard mode == .forward else { throw ValidationError("a UNet2DConditionModel is timed in --mode forward only") }
            let unet = try UNet2DConditionModel.load(URL(fileURLWithPath: model))
            halve(unet)
            let s = unet.config.sampleSize ?? [64, 64]
            var rng = RandomGenerator(seed: 1)
            let x = rng.normal([batch, unet.config.inChannels, s[0], s[s.count - 1]])
            let text = rng.normal([batch, 77, unet.contextWidth])
            let t = rng.integers(batch, below: 1000).map(Float.init)
            unet.setTraining(false)
            let run = { _ = GradMode.withoutGrad { unet(x, timesteps: t, encoderHiddenStates: text) } }
            let before = FlopCounter.forwardFlops
            run()
            let flops = FlopCounter.forwardFlops - before
            let median = KernelBenchmark.median(runs: runs) { run() }
            try report(mode: "forward", parameters: unet.parameterCount, median: median, flops: flops)
        }

        func report(mode: String, parameters: Int, median: Double, flops: Double) throws {
            let r = Result(model: model, mode: mode, weights: weights.rawValue, batch: batch, threads: Threads.count,
                           parameters: parameters, median_s: median, samples_per_s: Double(batch) / median,
                           peak_rss_bytes: peakRSS(), gflop: flops / 1e9, gflops: flops / median / 1e9,
                           sgemm_gflops: KernelBenchmark.sgemmRate())
            if json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try enc.encode(r), as: UTF8.self))
            } else {
                print(String(format: "%@ %@ batch %d, %d threads, %.2f M parameters (%@): %.2f ms median, %.1f samples/s, %.1f GFLOP/s (sgemm %.1f), peak RSS %.0f MB",
                             model, mode, batch, r.threads, Double(r.parameters) / 1e6, weights.rawValue, median * 1000,
                             r.samples_per_s, r.gflops, r.sgemm_gflops, Double(r.peak_rss_bytes) / 1e6))
            }
        }
    }
}

/// Peak resident set size of this process, bytes.
func peakRSS() -> Int {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return u.ru_maxrss * 1024
}
