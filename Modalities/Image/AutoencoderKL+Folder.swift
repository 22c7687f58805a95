import Foundation
import Tensor
import NN

/// A vae folder (config.json + diffusion_pytorch_model.safetensors, F32/F16/BF16), a pipeline
/// folder's `vae/`, or a bare config.json: `FolderModule`'s `load` and `save`. Older VAE folders
/// name the mid-block attention `query`, `key`, `value`, `proj_attn` (diffusers converts them on
/// load); those load too. `save` writes diffusers' current names (`to_q`, `to_k`, `to_v`,
/// `to_out.0`): a folder diffusers' `AutoencoderKL.from_pretrained` loads.
extension AutoencoderKL: FolderModule {
    public static var className: String { AutoencoderKLConfig.className }
    public static var component: String { "vae" }
}
