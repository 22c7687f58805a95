import Foundation
import Tensor
import NN
import Diffusion

/// Augmented clips have the model's frame count, size and rate; real clips are resampled to them.
extension VideoPipeline: AugmentablePipeline {
    public static var augmentedExtension: String { "mp4" }

    public func augmentationInput(_ url: URL) throws -> Tensor { try loadClip(url, count: 1) }

    public func augmentationSamples(count: Int, labels: [Int]?, sampler: SamplerName, steps: Int, seed: UInt64, guidance: Float,
                                    initial: (sample: Tensor, strength: Float)?, batchSize: Int, firstIndex: Int) throws -> Tensor {
        try generate(count: count, labels: labels, sampler: sampler, steps: steps, seed: seed, guidance: guidance,
                     initial: initial, batchSize: batchSize, firstIndex: firstIndex)
    }

    /// A [C, F, H, W] clip as MP4 (H.264 yuv420p where FFmpeg has it) at the model's frame rate.
    public func writeAugmented(_ sample: Tensor, to url: URL) throws {
        _ = try VideoCodec.writeMP4(GradMode.withoutGrad { sample.permuted(1, 0, 2, 3) }, fps: fps, to: url)
    }
}
