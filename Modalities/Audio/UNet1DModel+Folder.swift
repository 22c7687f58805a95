import Foundation
import Tensor
import NN

extension UNet1DModel {
    public static let weightsName = ModelFolder.weightsName

    /// Loads a diffusers model folder (config.json + diffusion_pytorch_model.safetensors, F32/F16/BF16),
    /// a pipeline folder (model_index.json + unet/), or a bare config.json (random weights,
    /// seeded by `NNInit`). Loading is strict: every missing, unexpected or mis-shaped tensor is
    /// reported at once (`CheckpointMismatch`).
    public static func load(_ url: URL) throws -> UNet1DModel {
        let (config, weightsURL) = try ModelFolder.config(UNet1DConfig.self, at: url, className: UNet1DConfig.className)
        let model = try UNet1DModel(config: config)
        if let weightsURL { try model.load(safetensors: weightsURL) }
        return model
    }

    /// Writes config.json and diffusion_pytorch_model.safetensors into `folder` (created if
    /// needed), each atomically. The resampling kernels are written as diffusers writes its
    /// buffers, so diffusers' `from_pretrained` finds every key.
    public func save(to folder: URL, dtype: SafeTensorsDType = .F32) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try save(safetensors: folder.appendingPathComponent(Self.weightsName), dtype: dtype, metadata: ["format": "pt"])
        try ConfigFile.write(config, to: folder.appendingPathComponent("config.json"))
    }
}
