import ArgumentParser
import Foundation
import NN
import Image
import Tensor

/// Copies a model or pipeline folder with its weights in another precision.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy a model or pipeline folder, converting its weights to F16 or F32.",
        discussion: """
        Every .safetensors file under MODEL is rewritten in --dtype (F16 halves the size; our \
        models and diffusers load either); other files are copied as they are. The copy is made \
        in a temporary folder beside --out and renamed into place.
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
            var converted = 0
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
                }
            }
            try fm.moveItem(at: tmp, to: dst)
            print("\(dst.path) (\(converted) weight file\(converted == 1 ? "" : "s") in \(type.rawValue))")
        } catch {
            try? fm.removeItem(at: tmp)
            throw error
        }
    }
}
