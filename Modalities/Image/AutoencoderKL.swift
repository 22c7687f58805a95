import Foundation
import Tensor
import NN

/// diffusers' `AutoencoderKL` (Kingma & Welling's VAE with the KL-regularised latent of Rombach
/// et al., "High-Resolution Image Synthesis with Latent Diffusion Models", 2022): the image
/// codec of Stable Diffusion 1.x/2.x.
///
///     moments = quant_conv(encoder(x))        x [N, 3, H, W] in [-1, 1] -> [N, 2·4, H/8, W/8]
///     mean, logvar = moments split on channels; logvar clamped to [-30, 20]
///     image = decoder(post_quant_conv(z))     z [N, 4, h, w] -> [N, 3, 8h, 8w]
///
/// (8 = 2^(levels − 1) for SD's four levels.) A pipeline multiplies encoded latents by
/// `scalingFactor` before the denoiser and divides by it before `decode`, as diffusers'
/// pipelines do. `encode` and `decode` are inference: no autograd tape is recorded, and each
/// sample of a batch runs on its own (diffusers' `enable_slicing`; the outputs do not change),
/// so activations are held for one image at a time. `tiled: true` is diffusers' `enable_tiling`.
/// Parameter names are diffusers' (`decoder.up_blocks.0.resnets.1.conv1.weight`).
public final class AutoencoderKL: Module {
    public let config: AutoencoderKLConfig
    let encoder: AutoencoderEncoder
    let decoder: AutoencoderDecoder
    let quantConv: Conv2d?
    let postQuantConv: Conv2d?

    public init(config c: AutoencoderKLConfig) throws {
        try c.validate()
        config = c
        encoder = AutoencoderEncoder(c)
        decoder = AutoencoderDecoder(c)
        quantConv = c.useQuantConv ? Conv2d(2 * c.latentChannels, 2 * c.latentChannels, kernelSize: 1) : nil
        postQuantConv = c.usePostQuantConv ? Conv2d(c.latentChannels, c.latentChannels, kernelSize: 1) : nil
    }

    public func visit(_ v: inout ModuleVisitor) {
        v("encoder", encoder)
        v("decoder", decoder)
        v("quant_conv", quantConv)
        v("post_quant_conv", postQuantConv)
    }

    /// z = scalingFactor · latent is what the denoiser sees (0.18215 for SD 1.x/2.x).
    public var scalingFactor: Float { config.scalingFactor }

    /// Image pixels per latent pixel along each side (8 for SD).
    public var downFactor: Int { config.downFactor }

    // MARK: Encode

    /// The posterior q(z | x) of images x [N, Cin, H, W] (in [-1, 1]; H and W multiples of
    /// `downFactor`): a diagonal Gaussian over latents [N, latent, H/f, W/f]. `tiled`: images
    /// larger than `sample_size` are encoded in overlapping tiles, blended (diffusers' tiling).
    public func encode(_ x: Tensor, tiled: Bool = false) -> DiagonalGaussian {
        precondition(x.rank == 4 && x.shape[1] == config.inChannels,
                     "AutoencoderKL.encode expects [N, \(config.inChannels), H, W], got \(x.shape)")
        precondition(x.shape[2] > 0 && x.shape[3] > 0 && x.shape[2] % downFactor == 0 && x.shape[3] % downFactor == 0,
                     "image size \(x.shape[2])×\(x.shape[3]) must be a positive multiple of \(downFactor)")
        let tiling = Tiling(inputTile: config.tileSampleMinSize, outputTile: config.tileLatentMinSize)
        let moments = GradMode.withoutGrad {
            Self.perSample(x) { xi in tiled && tiling.splits(xi) ? tiling.run(xi, body: encodeMoments) : encodeMoments(xi) }
        }
        return DiagonalGaussian(moments: moments)
    }

    /// [N, Cin, H, W] -> moments [N, 2·latent, H/f, W/f]
    private func encodeMoments(_ x: Tensor) -> Tensor {
        let h = encoder(x)
        return quantConv.map { $0(h) } ?? h
    }

    // MARK: Decode

    /// Images [N, Cout, h·f, w·f] (about [-1, 1]; not clamped) from latents z [N, latent, h, w]
    /// already divided by `scalingFactor`, as diffusers' `vae.decode(z)`. Any latent size decodes.
    /// `tiled`: latents larger than sample_size / f are decoded in overlapping tiles and blended,
    /// as diffusers' `vae.enable_tiling()`: activations then scale with the tile, not the image.
    public func decode(_ z: Tensor, tiled: Bool = false) -> Tensor {
        precondition(z.rank == 4 && z.shape[1] == config.latentChannels && z.shape[2] > 0 && z.shape[3] > 0,
                     "AutoencoderKL.decode expects [N, \(config.latentChannels), h, w], got \(z.shape)")
        let tiling = Tiling(inputTile: config.tileLatentMinSize, outputTile: config.tileSampleMinSize)
        return GradMode.withoutGrad {
            Self.perSample(z) { zi in tiled && tiling.splits(zi) ? tiling.run(zi, body: decodeWhole) : decodeWhole(zi) }
        }
    }

    /// [N, latent, h, w] -> [N, Cout, h·f, w·f], the whole batch at once (recorded for autograd
    /// when gradients are on).
    func decodeWhole(_ z: Tensor) -> Tensor {
        decoder(postQuantConv.map { $0(z) } ?? z)
    }

    /// `body` on each sample of x [N, ...] alone, the results joined on the batch axis.
    private static func perSample(_ x: Tensor, _ body: (Tensor) -> Tensor) -> Tensor {
        let n = x.shape[0]
        if n == 1 { return body(x) }
        return Tensor.concat((0..<n).map { body(x.slice(axis: 0, $0..<($0 + 1))) }, axis: 0)
    }
}

/// diffusers' tiled encode and decode (`_tiled_encode`, `tiled_decode`, after `enable_tiling()`):
/// input tiles of `tile`² every `step` = ¾ tile (smaller at the right and bottom edges), each
/// mapped on its own; each output tile is blended into the one above and the one to its left
/// over `blend` = ¼ output tile rows/columns (`blend_v`, `blend_h`: linear ramps, in place, so
/// later neighbours see it blended), then its top-left `keep`² (output tile − blend) is kept.
/// Encoding tiles the image by sample_size and the latents come out in tiles of
/// sample_size / 2^(levels − 1); decoding the other way round.
struct Tiling {
    let tile: Int, step: Int, blend: Int, keep: Int

    /// Python's int() of the products, as diffusers computes them.
    init(inputTile: Int, outputTile: Int) {
        let overlap = AutoencoderKLConfig.tileOverlapFactor
        tile = inputTile
        step = Int(Double(inputTile) * (1 - overlap))
        blend = Int(Double(outputTile) * overlap)
        keep = outputTile - blend
        precondition(step > 0 && keep > 0, "tiling step \(step), kept \(keep): tile \(inputTile) too small")
    }

    /// Whether x [N, C, H, W] is larger than one tile (diffusers tiles only then).
    func splits(_ x: Tensor) -> Bool { x.shape[2] > tile || x.shape[3] > tile }

    /// `body` over the tiles of x [N, C, H, W], blended and joined. Holds two rows of output
    /// tiles and the result, never every tile.
    func run(_ x: Tensor, body: (Tensor) -> Tensor) -> Tensor {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        var above: [Tensor] = []
        var rows: [Tensor] = []
        for i in stride(from: 0, to: h, by: step) {
            var row: [Tensor] = []
            for (k, j) in stride(from: 0, to: w, by: step).enumerated() {
                // x[:, :, i : i + tile, j : j + tile]
                let t = body(x.cropped(offset: [0, 0, i, j], size: [n, c, Swift.min(tile, h - i), Swift.min(tile, w - j)]))
                if !above.isEmpty { Self.blendRows(above[k], into: t, extent: blend) }
                if k > 0 { Self.blendColumns(row[k - 1], into: t, extent: blend) }
                row.append(t)
            }
            // each tile's [:, :, :keep, :keep], side by side
            rows.append(Tensor.concat(row.map { t in
                t.cropped(offset: [0, 0, 0, 0], size: [t.shape[0], t.shape[1], Swift.min(keep, t.shape[2]), Swift.min(keep, t.shape[3])])
            }, axis: 3))
            above = row
        }
        return Tensor.concat(rows, axis: 2)
    }

    /// diffusers' `blend_v`: b[:, :, y, :] = a[:, :, Ha − e + y, :]·(1 − y/e) + b[:, :, y, :]·(y/e)
    /// for y < e = min(Ha, Hb, extent). a [N, C, Ha, W], b [N, C, Hb, W], b changed in place.
    static func blendRows(_ a: Tensor, into b: Tensor, extent: Int) {
        let e = Swift.min(a.shape[2], b.shape[2], extent)
        let (planes, ha, hb, w) = (a.shape[0] * a.shape[1], a.shape[2], b.shape[2], a.shape[3])
        precondition(b.shape[0] * b.shape[1] == planes && b.shape[3] == w, "blend_v: \(a.shape) above \(b.shape)")
        for y in 0..<e {
            // PyTorch multiplies a float32 tensor by the Python float weight in float32.
            let wa = Float(1 - Double(y) / Double(e)), wb = Float(Double(y) / Double(e))
            for p in 0..<planes {
                let src = a.data + (p * ha + ha - e + y) * w, dst = b.data + (p * hb + y) * w
                for x in 0..<w { dst[x] = src[x] * wa + dst[x] * wb }
            }
        }
    }

    /// diffusers' `blend_h`: b[..., x] = a[..., Wa − e + x]·(1 − x/e) + b[..., x]·(x/e) for
    /// x < e = min(Wa, Wb, extent). a [N, C, H, Wa], b [N, C, H, Wb], b changed in place.
    static func blendColumns(_ a: Tensor, into b: Tensor, extent: Int) {
        let e = Swift.min(a.shape[3], b.shape[3], extent)
        let (rows, wa, wb) = (a.shape[0] * a.shape[1] * a.shape[2], a.shape[3], b.shape[3])
        precondition(b.shape[0] * b.shape[1] * b.shape[2] == rows, "blend_h: \(a.shape) left of \(b.shape)")
        for x in 0..<e {
            let fa = Float(1 - Double(x) / Double(e)), fb = Float(Double(x) / Double(e))
            for r in 0..<rows {
                let dst = b.data + r * wb + x
                dst.pointee = a.data[r * wa + wa - e + x] * fa + dst.pointee * fb
            }
        }
    }
}

/// diffusers' `DiagonalGaussianDistribution`: the VAE's posterior N(mean, exp(logvar)) per
/// latent element. mean, logvar: [N, latent, h, w]; logvar is clamped to [-30, 20] as diffusers does.
public struct DiagonalGaussian {
    public let mean: Tensor
    public let logvar: Tensor

    /// moments [N, 2·C, h, w]: mean in the first C channels, log-variance in the rest.
    public init(moments: Tensor) {
        precondition(moments.rank == 4 && moments.shape[1] % 2 == 0, "moments must be [N, 2C, h, w], got \(moments.shape)")
        (mean, logvar) = GradMode.withoutGrad {
            let parts = moments.chunked(2, axis: 1)
            return (parts[0], parts[1].clamped(min: -30, max: 20))
        }
    }

    /// exp(logvar / 2)
    public var std: Tensor { GradMode.withoutGrad { (logvar * 0.5).exp() } }

    /// exp(logvar)
    public var variance: Tensor { GradMode.withoutGrad { logvar.exp() } }

    /// The latent of highest density (diffusers' `mode()`, `argmax` in its pipelines).
    public var mode: Tensor { mean }

    /// mean + std · noise, noise [N, C, h, w] standard normal (diffusers' `sample(generator)`).
    public func sample(noise: Tensor) -> Tensor {
        precondition(noise.shape == mean.shape, "noise \(noise.shape) for latents \(mean.shape)")
        return GradMode.withoutGrad { mean + std * noise }
    }
}

// MARK: Training

extension AutoencoderKL {
    /// The loss of training the autoencoder on images x [N, Cin, H, W] in [-1, 1], as the
    /// latent-diffusion autoencoders were trained without their adversarial term:
    /// mean |x − decode(z)| with z = mean + std·noise from the posterior, plus `klWeight` times
    /// the KL divergence to N(0, I) per latent element. `noise` is [N, latent, H/f, W/f].
    /// Recorded for autograd; the batch is encoded and decoded at once (no per-sample split).
    public func trainingLoss(_ x: Tensor, noise: Tensor, klWeight: Float) -> (loss: Tensor, reconstruction: Tensor) {
        let moments = encodeMoments(x)
        let parts = moments.chunked(2, axis: 1)
        let mean = parts[0], logvar = parts[1].clamped(min: -30, max: 20)
        precondition(noise.shape == mean.shape, "noise \(noise.shape) for latents \(mean.shape)")
        let z = mean + (logvar * 0.5).exp() * noise
        let recon = decodeWhole(z)
        let l1 = (recon - x).abs().mean()
        // KL(N(μ, σ²) ‖ N(0, 1)) = ½ (μ² + σ² − 1 − log σ²), averaged over latent elements.
        let kl = ((mean.square() + logvar.exp() - logvar) - 1).mean() * 0.5
        return (l1 + kl * klWeight, recon)
    }
}

/// The decoder half of an AutoencoderKL (`decoder.*`, `post_quant_conv.*`, the VAE's own
/// names) as a module of its own: what trains when the encoder, and so the latent space, is frozen.
final class AutoencoderDecoderPart: Module {
    let vae: AutoencoderKL
    init(_ vae: AutoencoderKL) { self.vae = vae }
    func visit(_ v: inout ModuleVisitor) {
        v("decoder", vae.decoder)
        v("post_quant_conv", vae.postQuantConv)
    }
}
