import Foundation
import Tensor
import NN

extension UNet2DConditionModel {
    /// Loads a diffusers unet folder (config.json + diffusion_pytorch_model.safetensors, F32/F16/BF16),
    /// a pipeline folder (model_index.json + unet/), or a bare config.json (random weights, seeded
    /// by `NNInit`). Strict: a missing, unexpected or mis-shaped tensor is an error listing them all.
    public static func load(_ url: URL) throws -> UNet2DConditionModel {
        let (config, weightsURL) = try ModelFolder.config(UNet2DConditionConfig.self, at: url,
                                                          className: UNet2DConditionConfig.className)
        // The strict load overwrites every parameter: skip the random draws (SD 1.5's 860 M take ~40 s).
        guard let weightsURL else { return try UNet2DConditionModel(config: config) }
        let model = try NNInit.skippingRandomInit { try UNet2DConditionModel(config: config) }
        try model.load(safetensors: weightsURL)
        return model
    }

    /// Writes config.json and diffusion_pytorch_model.safetensors into `folder` (created if
    /// needed), each atomically: a unet folder diffusers' `UNet2DConditionModel.from_pretrained` loads.
    public func save(to folder: URL, dtype: SafeTensorsDType = .F32) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try save(safetensors: folder.appendingPathComponent(ModelFolder.weightsName), dtype: dtype, metadata: ["format": "pt"])
        try ConfigFile.write(config, to: folder.appendingPathComponent("config.json"))
    }
}
