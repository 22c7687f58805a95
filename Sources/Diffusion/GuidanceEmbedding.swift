import Foundation
import Tensor

/// The guidance-scale embedding that LCM-distilled U-Nets take beside the timestep
/// (`time_cond_proj_dim`; Luo et al. 2023, §4.2, after Meng et al. 2023, "On Distillation of
/// Guided Diffusion Models"): sinusoidal features of 1000 w, as diffusers'
/// `LatentConsistencyModelPipeline.get_guidance_scale_embedding` computes them (VDM's
/// `get_timestep_embedding`), in the same float32 operation order:
///
///     f_j = exp(−j · ln(10000) / (h − 1)),  j = 0 ..< h,  h = ⌊dim / 2⌋
///     e(w) = [sin(1000 w f_0), …, sin(1000 w f_{h−1}), cos(1000 w f_0), …, cos(1000 w f_{h−1})] (+ one 0 if dim is odd)
///
/// diffusers' pipelines pass w = guidance scale − 1 (the Imagen form of classifier-free guidance
/// that Stable Diffusion uses, rewritten to LCM's).
/// - Returns: [N, dim] for N = `w.count`.
/// - Precondition: dim is 1 or at least 4 (for 2 and 3, h − 1 = 0 and diffusers returns NaN).
public func guidanceScaleEmbedding(_ w: [Float], dim: Int) -> Tensor {
    precondition(dim == 1 || dim >= 4, "guidanceScaleEmbedding: dim \(dim) (must be 1 or at least 4)")
    let half = dim / 2
    let out = Tensor.zeros([w.count, dim])
    guard half > 0 else { return out }
    // torch.log(torch.tensor(10000.0)) / (half_dim - 1), then exp(arange(half) * -emb), all float32
    let step = Foundation.log(Float(10000)) / Float(half - 1)
    let freqs = (0..<half).map { Foundation.exp(Float($0) * -step) }
    for (n, wn) in w.enumerated() {
        let scaled = wn * 1000
        let row = out.data + n * dim
        for j in 0..<half {
            let arg = scaled * freqs[j]
            row[j] = Foundation.sin(arg)
            row[half + j] = Foundation.cos(arg)
        }
    }
    return out
}
