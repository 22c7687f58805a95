import Foundation
import Workflow
import Image
import Audio
import Video

/// What a served model makes.
public enum ModelKind: String, Codable, Sendable, CaseIterable {
    /// A Stable Diffusion pipeline (folder or single .safetensors file): prompts → PNG.
    case textToImage = "text-to-image"
    /// The class models (`Pipeline<M>`): classes → PNG, WAV, MP4.
    case image, audio, video

    /// The kind of a pipeline folder's `_class_name` (model_index.json).
    static func of(pipelineClass: String) -> ModelKind? {
        switch pipelineClass {
        case StableDiffusionPipeline.className: return .textToImage
        case ImageModality.pipelineClass: return .image
        case AudioModality.pipelineClass: return .audio
        case VideoModality.pipelineClass: return .video
        default: return nil
        }
    }
}

/// The models a server offers, by name: the bundled ones (`samples/image`, `audio`, `video`,
/// `text-to-image` when present, each followed by its few-step student `NAME-fast`) and every pipeline folder or Stable Diffusion single file
/// directly inside a `--models` folder. A request names a model; the name is looked up in this
/// list and nothing else, so no request can reach a path outside the configured folders.
public struct ModelCatalog: Sendable {
    public struct Entry: Sendable, Equatable {
        public var name: String
        public var kind: ModelKind
        public var url: URL
    }

    public private(set) var entries: [Entry] = []
    /// Folders and files that were skipped, with why (the server prints them at start).
    public private(set) var skipped: [(path: String, reason: String)] = []

    public init(folders: [URL], bundled: Bool = true) throws {
        if bundled {
            // Each bundled model, then its distilled few-step student (NAME-fast) when present.
            for name in ["text-to-image", "image", "audio", "video"] {
                guard let dir = BundledModels.folder(name) else { continue }
                add(dir, name: name)
                if let student = BundledModels.student(of: dir) { add(student, name: name + "-fast") }
            }
        }
        let fm = FileManager.default
        for folder in folders {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: folder.path, isDirectory: &isDir), isDir.boolValue else {
                throw ModelFolderError(path: folder.path, reason: "--models needs a folder of model folders")
            }
            // The folder itself may be one model.
            if fm.fileExists(atPath: folder.appendingPathComponent("model_index.json").path) {
                add(folder, name: folder.lastPathComponent)
                continue
            }
            let items = try fm.contentsOfDirectory(at: folder, includingPropertiesForKeys: nil).sorted { $0.lastPathComponent < $1.lastPathComponent }
            for item in items where !item.lastPathComponent.hasPrefix(".") {
                if StableDiffusionPipeline.isSingleFile(item) {
                    add(item, name: item.deletingPathExtension().lastPathComponent, kind: .textToImage)
                } else if fm.fileExists(atPath: item.appendingPathComponent("model_index.json").path) {
                    add(item, name: item.lastPathComponent)
                }
            }
        }
    }

    private mutating func add(_ url: URL, name: String, kind: ModelKind? = nil) {
        var kind = kind
        if kind == nil {
            let index = url.appendingPathComponent("model_index.json")
            guard let cls = (try? ModelFolder.className(ofConfig: index)) ?? nil else {
                skipped.append((url.path, "model_index.json names no pipeline class")); return
            }
            guard let k = ModelKind.of(pipelineClass: cls) else {
                skipped.append((url.path, "pipeline class \(cls) is not served")); return
            }
            kind = k
        }
        guard entries.allSatisfy({ $0.name != name }) else {
            skipped.append((url.path, "a model named \(name) is already served")); return
        }
        entries.append(Entry(name: name, kind: kind!, url: url.standardizedFileURL))
    }

    /// The model called `name`, or nil. Only names listed here resolve: a name holding a path
    /// separator or `..` is never one.
    public func entry(_ name: String) -> Entry? {
        entries.first { $0.name == name }
    }

    /// The first model of `kind` (a request's default).
    public func first(_ kind: ModelKind) -> Entry? { entries.first { $0.kind == kind } }
}
