import Foundation
import Tensor
import Diffusion

/// Augmented clips have the model's trained length; real clips are cut or padded to it.
extension AudioPipeline: AugmentablePipeline {
    public static var augmentedExtension: String { "wav" }

    public func augmentationInput(_ url: URL) throws -> Tensor { try loadClip(url, count: 1, length: length) }

    public func augmentationSamples(count: Int, labels: [Int]?, sampler: SamplerName, steps: Int, seed: UInt64, guidance: Float,
                                    initial: (sample: Tensor, strength: Float)?, batchSize: Int, firstIndex: Int) throws -> Tensor {
        try generate(count: count, labels: labels, sampler: sampler, steps: steps, seed: seed, guidance: guidance,
                     initial: initial, batchSize: batchSize, firstIndex: firstIndex)
    }

    /// A [C, L] clip as 16-bit WAV at the model's rate.
    public func writeAugmented(_ sample: Tensor, to url: URL) throws {
        try AudioCodec.write(AudioClip(samples: sample, sampleRate: sampleRate), to: url)
    }
}
