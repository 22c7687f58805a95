import Foundation
import NN

/// A model folder that could not be used, naming the path and the reason.
public struct ModelFolderError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public init(path: String, reason: String) { self.path = path; self.reason = reason }
    public var description: String { "\(path): \(reason)" }
}

/// Where a diffusers model's files are: shared by every modality's model loader.
public enum ModelFolder {
    public static let weightsName = "diffusion_pytorch_model.safetensors"

    /// (config.json, weights or nil for a bare config) for a model folder, a pipeline folder
    /// (model_index.json + `component/`: `unet`, `vae`, ...), or a config file.
    public static func locate(_ url: URL, component: String = "unet") throws -> (config: URL, weights: URL?) {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
            throw ModelFolderError(path: url.path, reason: "no such file or folder")
        }
        if !isDir.boolValue {
            let ext = url.pathExtension.lowercased()
            guard ext == "json" else {
                throw ModelFolderError(path: url.path, reason: ext == "ckpt" || ext == "safetensors" || ext == "pt" || ext == "bin"
                    ? "a single weights file, not a model folder: give the folder that holds it with its config.json (a diffusers model or pipeline folder)"
                    : "not a model folder or a config.json")
            }
            return (url, nil)
        }
        var folder = url
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("model_index.json").path) {
            folder = url.appendingPathComponent(component)
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

    /// The config of the model at `url` (folder, pipeline folder or config file) decoded as `T`,
    /// and its weights file (nil for a bare config). A config that does not decode, or that
    /// declares a `_class_name` other than `className`, is an error naming the file.
    public static func config<T: Decodable>(_ type: T.Type, at url: URL, className: String? = nil,
                                            component: String = "unet") throws -> (config: T, weights: URL?) {
        let (configURL, weightsURL) = try locate(url, component: component)
        if let className, let name = try ModelFolder.className(ofConfig: configURL), name != className {
            throw ModelFolderError(path: url.path, reason: wrongKind(found: name, wanted: className))
        }
        do { return (try ConfigFile.read(T.self, from: configURL), weightsURL) } catch let e as ConfigError {
            throw ModelFolderError(path: configURL.path, reason: e.description)
        }
    }

    /// The `_class_name` a config file declares (nil when it declares none); unreadable files
    /// are an error naming the file.
    public static func className(ofConfig url: URL) throws -> String? {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ModelFolderError(path: url.path, reason: "cannot read the config file")
        }
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ModelFolderError(path: url.path, reason: "not a JSON object")
        }
        return obj["_class_name"] as? String
    }

    /// What each model class is for, and the command that runs it.
    public static let kinds: [String: (what: String, command: String)] = [
        "UNet2DModel": ("an image model", "diffuse generate image"),
        "UNet1DModel": ("an audio model", "diffuse generate audio"),
        "VideoUNetModel": ("a video model", "diffuse generate video"),
        "UNet2DConditionModel": ("a text-to-image model's denoiser", "diffuse generate image --prompt with its pipeline folder"),
        "AutoencoderKL": ("a VAE (part of a text-to-image pipeline)", "diffuse generate image --prompt with its pipeline folder"),
    ]

    /// Why a model of class `found` cannot stand in for a `wanted` one, and what to run instead:
    /// "this is an audio model (UNet1DModel), not an image model (UNet2DModel): use `diffuse generate audio`".
    public static func wrongKind(found: String, wanted: String) -> String {
        guard let f = kinds[found] else {
            return "declares a \(found), not a \(wanted) (models this tool runs: \(kinds.keys.sorted().joined(separator: ", ")))"
        }
        let w = kinds[wanted].map { "\($0.what) (\(wanted))" } ?? "a \(wanted)"
        return "this is \(f.what) (\(found)), not \(w): use `\(f.command)`"
    }

    /// The `_class_name` of the model at `url` (folder, pipeline folder or config file).
    public static func className(of url: URL) throws -> String? { try className(ofConfig: try locate(url).config) }
}
