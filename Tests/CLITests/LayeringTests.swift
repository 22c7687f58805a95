import XCTest
import Foundation

/// The layers point one way (README, Layout): every `import` of every source file is checked
/// against what its target may use. A modality imports no other modality but Video → Image.
final class LayeringTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Target → (folder, the project modules it may import).
    static let layers: [String: (String, Set<String>)] = {
        let core: Set<String> = ["Tensor", "NN", "Diffusion"]
        let shared = core.union(["Media", "Workflow"])
        return [
            "Tensor": ("Sources/Tensor", ["CBLAS", "CKernels"]),
            "NN": ("Sources/NN", ["Tensor"]),
            "Diffusion": ("Sources/Diffusion", ["Tensor", "NN"]),
            "Text": ("Sources/Text", ["Tensor", "NN"]),
            "Media": ("Modalities/Media", ["Tensor", "NN", "CPNG"]),
            "Workflow": ("Sources/Workflow", core.union(["Media", "CMPI"])),
            "Image": ("Modalities/Image", shared.union(["Text", "CZlib"])),
            "Audio": ("Modalities/Audio", shared.union(["CSndFile"])),
            "Video": ("Modalities/Video", shared.union(["Image", "CFFmpeg"])),
            "Evaluation": ("Sources/Evaluation", shared.union(["Image", "Audio", "Video"])),
            // The server sits beside Evaluation: it calls the modalities, never the command line.
            "Serve": ("Sources/Serve", shared.union(["Text", "Image", "Audio", "Video", "Hummingbird", "NIOCore", "ServiceLifecycle"])),
            "diffuse": ("Sources/diffuse", shared.union(["Text", "Image", "Audio", "Video", "Evaluation", "Serve", "ArgumentParser"])),
        ]
    }()
    static let project: Set<String> = Set(layers.keys).union(["CBLAS", "CKernels", "CPNG", "CZlib", "CSndFile", "CFFmpeg", "CMPI",
                                                              "Hummingbird", "NIOCore", "ServiceLifecycle"])

    func testEachTargetImportsOnlyTheLayersBelowIt() throws {
        var checked = 0
        for (target, (folder, allowed)) in Self.layers {
            let dir = Self.root.appendingPathComponent(folder)
            guard let files = FileManager.default.enumerator(atPath: dir.path) else { continue }
            for case let rel as String in files where rel.hasSuffix(".swift") {
                let text = try String(contentsOf: dir.appendingPathComponent(rel), encoding: .utf8)
                for line in text.split(separator: "\n") {
                    let words = line.split(separator: " ")
                    guard let i = words.firstIndex(of: "import"), i + 1 < words.count,
                          words[..<i].allSatisfy({ $0.hasPrefix("@") }) else { continue }
                    let module = String(words[i + 1])
                    guard Self.project.contains(module) else { continue }  // Foundation, Dispatch, Glibc…
                    XCTAssert(allowed.contains(module), "\(folder)/\(rel): \(target) imports \(module), which is not below it")
                    checked += 1
                }
            }
        }
        XCTAssertGreaterThan(checked, 100, "imports checked")
    }

    /// Package.swift declares the same layering: no target depends on one it may not import.
    func testPackageManifestFollowsTheLayers() throws {
        let manifest = try String(contentsOf: Self.root.appendingPathComponent("Package.swift"), encoding: .utf8)
        for (target, (_, allowed)) in Self.layers where target != "diffuse" {
            guard let r = manifest.range(of: "name: \"\(target)\", dependencies: [") else { continue }
            let deps = manifest[r.upperBound...].prefix { $0 != "]" }
            for dep in deps.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespacesAndNewlines).trimmingCharacters(in: ["\""]) })
            where Self.project.contains(dep) {
                XCTAssert(allowed.contains(dep), "Package.swift: \(target) depends on \(dep)")
            }
        }
    }
}
