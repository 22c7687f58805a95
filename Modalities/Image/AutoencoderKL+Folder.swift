import Foundation
import Tensor
import NN

extension AutoencoderKL {
    /// Loads a diffusers vae folder (config.json + diffusion_pytorch_model.safetensors,
    /// F32/F16/BF16), a pipeline folder (model_index.json + vae/), or a bare config.json (random
    /// weights, seeded by `NNInit`). Strict: a missing, unexpected or mis-shaped tensor is an error
    /// listing them all. Older VAE folders name the mid-block attention `query`, `key`, `value`,
    /// `proj_attn` (diffusers converts them on load); those load too.
    public static func load(_ url: URL) throws -> AutoencoderKL {
        let (config, weightsURL) = try ModelFolder.config(AutoencoderKLConfig.self, at: url,
                                                          className: AutoencoderKLConfig.className, component: "vae")
        guard let weightsURL else { return try AutoencoderKL(config: config) }
        let model = try NNInit.skippingRandomInit { try AutoencoderKL(config: config) }  // every weight is overwritten
        try model.load(safetensors: weightsURL)
        return model
    }

    /// Writes config.json and diffusion_pytorch_model.safetensors into `folder` (created if
    /// needed), each atomically, with diffusers' current names (`to_q`, `to_k`, `to_v`,
    /// `to_out.0`): a folder diffusers' `AutoencoderKL.from_pretrained` loads.
    public func save(to folder: URL, dtype: SafeTensorsDType = .F32) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try save(safetensors: folder.appendingPathComponent(ModelFolder.weightsName), dtype: dtype, metadata: ["format": "pt"])
        try ConfigFile.write(config, to: folder.appendingPathComponent("config.json"))
    }
}
