import Foundation
import Tensor
import Diffusion

extension ImagePipeline: AugmentablePipeline {
    public static var augmentedExtension: String { "png" }

    public func augmentationInput(_ url: URL) throws -> Tensor { try loadImage(url, count: 1) }

    public func augmentationSamples(count: Int, labels: [Int]?, sampler: SamplerName, steps: Int, seed: UInt64, guidance: Float,
                                    initial: (sample: Tensor, strength: Float)?, batchSize: Int, firstIndex: Int) throws -> Tensor {
        try generate(count: count, labels: labels, sampler: sampler, steps: steps, seed: seed, guidance: guidance,
                     initial: initial, batchSize: batchSize, firstIndex: firstIndex)
    }

    public func writeAugmented(_ sample: Tensor, to url: URL) throws { try PNGCodec.write(sample, to: url) }
}
