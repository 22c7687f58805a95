import ArgumentParser
import Foundation
import NN
import Image
import Audio
import Video
import Text
import Diffusion
import Tensor

/// Copies a model or pipeline folder with its weights in another precision.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy a model or pipeline folder, converting its weights to F16 or F32.",
        discussion: """
        Every .safetensors file under MODEL is rewritten in --dtype (F16 halves the size; our \
        models and diffusers load either); other files are copied as they are. The copy is made \
        in a temporary folder beside --out and renamed into place. Config files of the classes we \
        write (unet, vae, text encoder, scheduler) get their float-typed keys written as floats \
        (`1.0`, not `1`): folders saved by older versions of diffuse wrote `1`, which \
        transformers 5 refuses in a text encoder's config.
        """
    )

    @Argument(help: "Model or pipeline folder.") var model: String
    @Option(help: "Destination folder (must not exist yet).") var out: String
    /// The precisions weights are written in.
    enum DType: String, ExpressibleByArgument, CaseIterable {
        case f16, f32
        var safetensors: SafeTensorsDType { self == .f16 ? .F16 : .F32 }
    }

    @Option(help: "Precision of the weights written.") var dtype: DType = .f16

    func run() throws {
        let fm = FileManager.default
        let src = URL(fileURLWithPath: model), dst = URL(fileURLWithPath: out)
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: src.path, isDirectory: &isDir), isDir.boolValue else {
            throw ModelFolderError(path: src.path, reason: "not a folder")
        }
        guard !fm.fileExists(atPath: dst.path) else { throw ValidationError("--out \(dst.path) exists; choose a new folder") }
        let type = dtype.safetensors
        let tmp = dst.deletingLastPathComponent().appendingPathComponent(".\(dst.lastPathComponent).tmp-\(getpid())")
        try? fm.removeItem(at: tmp)
        do {
            var converted = 0, repaired = 0
            for case let rel as String in fm.enumerator(atPath: src.path)! {
                let s = src.appendingPathComponent(rel), d = tmp.appendingPathComponent(rel)
                var dir: ObjCBool = false
                fm.fileExists(atPath: s.path, isDirectory: &dir)
                if dir.boolValue { try fm.createDirectory(at: d, withIntermediateDirectories: true); continue }
                try fm.createDirectory(at: d.deletingLastPathComponent(), withIntermediateDirectories: true)
                if rel.hasSuffix(".safetensors") {
                    let file = try SafeTensorsFile(url: s)
                    var tensors: [String: Tensor] = [:]
                    for n in file.names { tensors[n] = try file.tensor(n) }
                    try SafeTensors.write(tensors, to: d, dtype: type, metadata: file.metadata)
                    converted += 1
                } else {
                    try fm.copyItem(at: s, to: d)
                    if rel.hasSuffix(".json"), let keys = Self.floatKeys(ofConfig: d), try ConfigFile.repairFloats(at: d, floatKeys: keys) {
                        repaired += 1
                    }
                }
            }
            try fm.moveItem(at: tmp, to: dst)
            print("\(dst.path) (\(converted) weight file\(converted == 1 ? "" : "s") in \(type.rawValue)"
                  + (repaired > 0 ? "; float keys written as floats in \(repaired) config file\(repaired == 1 ? "" : "s"))" : ")"))
        } catch {
            try? fm.removeItem(at: tmp)
            throw error
        }
    }

    /// The float-typed keys of a config file's class (`_class_name`, or a transformers
    /// `model_type`), or nil for a JSON file of another kind.
    static func floatKeys(ofConfig url: URL) -> Set<String>? {
        guard let data = try? Data(contentsOf: url),
              let object = try? JSONDecoder().decode([String: JSONValue].self, from: ConfigFile.quotingNonFiniteLiterals(data))
        else { return nil }
        if object["model_type"]?.string == CLIPTextConfig.modelType { return CLIPTextConfig.floatKeys }
        switch object["_class_name"]?.string {
        case UNet2DConditionConfig.className?: return UNet2DConditionConfig.floatKeys
        case UNet2DConfig.className?: return UNet2DConfig.floatKeys
        case AutoencoderKLConfig.className?: return AutoencoderKLConfig.floatKeys
        case UNet1DConfig.className?: return UNet1DConfig.floatKeys
        case VideoUNetConfig.className?: return VideoUNetConfig.floatKeys
        case let name? where SchedulerClass(rawValue: name) != nil: return SchedulerConfig.floatKeys
        default: return nil
        }
    }
}
