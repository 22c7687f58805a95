import Foundation
import Tensor
import NN

/// A unet folder (config.json + diffusion_pytorch_model.safetensors, F32/F16/BF16), a pipeline
/// folder's `unet/`, or a bare config.json: `FolderModule`'s `load` and `save` (what we save loads
/// in diffusers' `UNet2DConditionModel.from_pretrained`).
extension UNet2DConditionModel: FolderModule {
    public static var className: String { UNet2DConditionConfig.className }
}
