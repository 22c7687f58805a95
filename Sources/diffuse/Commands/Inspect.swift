import ArgumentParser
import Foundation
import Tensor
import NN
import Image
import Audio
import Video
import Workflow

/// What a model folder holds: config, parameter count, tensors by block, file sizes.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a model's config, parameter count and files.",
        discussion: "MODEL is a diffusers model folder, a pipeline folder, or a bare config.json, of a UNet2DModel, UNet1DModel or VideoUNetModel (`_class_name`)."
    )

    @Argument(help: "Model folder or config.json.") var model: String
    @Flag(help: "Print JSON.") var json = false

    struct Report: Codable {
        var path: String
        var className: String
        var parameters: Int
        var parametersByBlock: [String: Int]
        var files: [String: Int]
        var weightsDType: String?
        var config: [String: JSONValue]
        /// A pipeline folder's class names by label (classes.json), when it has them.
        var classes: [String]?
    }

    func run() throws {
        let url = URL(fileURLWithPath: model)
        let net = try Models.load(url)
        var byBlock: [String: Int] = [:]
        for (name, t) in net.namedParameters() {
            let parts = name.split(separator: ".")
            let key = parts.count > 2 && parts[1].allSatisfy(\.isNumber) ? "\(parts[0]).\(parts[1])" : String(parts[0])
            byBlock[key, default: 0] += t.count
        }
        var files: [String: Int] = [:]
        var dtype: String? = nil
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue {
            let folder = FileManager.default.fileExists(atPath: url.appendingPathComponent("model_index.json").path)
                ? url.appendingPathComponent("unet") : url
            for f in (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? [] {
                let a = try? FileManager.default.attributesOfItem(atPath: folder.appendingPathComponent(f).path)
                files[f] = (a?[.size] as? NSNumber)?.intValue ?? 0
            }
            let w = folder.appendingPathComponent(ModelFolder.weightsName)
            if let st = try? SafeTensorsFile(url: w) { dtype = Set(st.entries.map(\.dtype.rawValue)).sorted().joined(separator: ",") }
        }
        let cfg = try net.configJSON()
        let className = type(of: net).className
        var classes: [String]? = nil
        if isDir.boolValue, FileManager.default.fileExists(atPath: url.appendingPathComponent("classes.json").path) {
            classes = try ClassLabels.load(url, labelCount: nil).names
        }
        let r = Report(path: model, className: className, parameters: net.parameterCount,
                       parametersByBlock: byBlock, files: files, weightsDType: dtype, config: cfg, classes: classes)
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try enc.encode(r), as: UTF8.self))
            return
        }
        print("\(model): \(r.className), \(String(format: "%.3f", Double(r.parameters) / 1e6)) M parameters\(dtype.map { " (\($0) weights)" } ?? " (random weights from a bare config)")")
        for line in net.summary { print("  " + line) }
        if let classes {
            print("  classes (--class NAME or index):")
            for (i, c) in classes.enumerated() { print("    " + lpad(String(i), 3) + "  " + c) }
        }
        print("  parameters by block:")
        for (k, v) in byBlock.sorted(by: { $0.key < $1.key }) { print("    " + pad(k, 18) + lpad(String(v), 10)) }
        if !files.isEmpty {
            print("  files:")
            for (k, v) in files.sorted(by: { $0.key < $1.key }) { print("    " + pad(k, 40) + lpad(String(v), 12) + " bytes") }
        }
    }
}
