import Foundation
import Tensor
import NN

/// A model folder that could not be used, naming the path and the reason.
public struct ModelFolderError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public init(path: String, reason: String) { self.path = path; self.reason = reason }
    public var description: String { "\(path): \(reason)" }
}

extension UNet2DModel {
    public static let weightsName = "diffusion_pytorch_model.safetensors"

    /// Loads a diffusers model folder (config.json + diffusion_pytorch_model.safetensors, F32/F16/BF16),
    /// a pipeline folder (model_index.json + unet/), or a bare config.json (random weights,
    /// seeded by `NNInit`).
    public static func load(_ url: URL) throws -> UNet2DModel {
        let (configURL, weightsURL) = try locate(url)
        let config: UNet2DConfig
        do { config = try ConfigFile.read(UNet2DConfig.self, from: configURL) } catch let e as ConfigError {
            throw ModelFolderError(path: configURL.path, reason: e.description)
        }
        let model = try UNet2DModel(config: config)
        if let weightsURL { try model.load(safetensors: weightsURL) }
        return model
    }

    /// (config.json, weights or nil for a bare config) for a folder, pipeline folder or config file.
    static func locate(_ url: URL) throws -> (URL, URL?) {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
            throw ModelFolderError(path: url.path, reason: "no such file or folder")
        }
        if !isDir.boolValue { return (url, nil) }
        var folder = url
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("model_index.json").path) {
            folder = url.appendingPathComponent("unet")
        }
        let config = folder.appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: config.path) else {
            throw ModelFolderError(path: folder.path, reason: "no config.json (expected a diffusers model folder)")
        }
        let weights = folder.appendingPathComponent(weightsName)
        guard FileManager.default.fileExists(atPath: weights.path) else {
            throw ModelFolderError(path: folder.path, reason: "no \(weightsName)")
        }
        return (config, weights)
    }

    /// Writes config.json and diffusion_pytorch_model.safetensors into `folder` (created if
    /// needed), each atomically.
    public func save(to folder: URL, dtype: SafeTensorsDType = .F32) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try save(safetensors: folder.appendingPathComponent(Self.weightsName), dtype: dtype, metadata: ["format": "pt"])
        try ConfigFile.write(config, to: folder.appendingPathComponent("config.json"))
    }
}
