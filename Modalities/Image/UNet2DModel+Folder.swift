import Foundation
import Tensor
import NN

extension UNet2DModel {
    public static let weightsName = ModelFolder.weightsName

    /// Loads a diffusers model folder (config.json + diffusion_pytorch_model.safetensors, F32/F16/BF16),
    /// a pipeline folder (model_index.json + unet/), or a bare config.json (random weights,
    /// seeded by `NNInit`).
    public static func load(_ url: URL) throws -> UNet2DModel {
        let (config, weightsURL) = try ModelFolder.config(UNet2DConfig.self, at: url)
        let model = try UNet2DModel(config: config)
        if let weightsURL { try model.load(safetensors: weightsURL) }
        return model
    }

    /// (config.json, weights or nil for a bare config) for a folder, pipeline folder or config file.
    static func locate(_ url: URL) throws -> (URL, URL?) { try ModelFolder.locate(url) }

    /// Writes config.json and diffusion_pytorch_model.safetensors into `folder` (created if
    /// needed), each atomically.
    public func save(to folder: URL, dtype: SafeTensorsDType = .F32) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try save(safetensors: folder.appendingPathComponent(Self.weightsName), dtype: dtype, metadata: ["format": "pt"])
        try ConfigFile.write(config, to: folder.appendingPathComponent("config.json"))
    }
}
