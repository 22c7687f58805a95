import XCTest
import Foundation
import Tensor
import NN
import Image
import TestSupport

/// LoRA merging against diffusers (goldens from Tests/References/make_lora_goldens.py): the base is the
/// tiny SD 1.x folder of the single-file goldens; expected weights are diffusers' `fuse_lora` (unet) and
/// a float64 torch merge (text encoder), for scales 1 and 0.5.
final class LoRATests: XCTestCase {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Goldens/lora")
    static let base = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Goldens/sd-single-file/sd1")

    func baseWeights() throws -> (unet: [String: Tensor], textEncoder: [String: Tensor]) {
        (try SafeTensorsFile(url: Self.base.appendingPathComponent("unet/diffusion_pytorch_model.safetensors")).all(),
         try SafeTensorsFile(url: Self.base.appendingPathComponent("text_encoder/model.safetensors")).all())
    }

    /// Every expected tensor within 1e-6 of the merge, every other weight untouched; returns the max error.
    @discardableResult
    func check(_ weights: [String: Tensor], against prefix: String, rename: (String) -> String = { $0 },
               count: Int, file: StaticString = #filePath, line: UInt = #line) throws -> Float {
        let expected = try SafeTensorsFile(url: Self.dir.appendingPathComponent("expected.safetensors"))
        let pristine = prefix.hasPrefix("unet") ? try baseWeights().unet : try baseWeights().textEncoder
        var worst: Float = 0, seen = Set<String>()
        for name in expected.names where name.hasPrefix(prefix) {
            let target = rename(String(name.dropFirst(prefix.count)))
            guard let got = weights[target] else { XCTFail("no weight \(target)", file: file, line: line); continue }
            let want = try expected.tensor(name)
            XCTAssertEqual(got.shape, want.shape, target, file: file, line: line)
            for i in 0..<want.count { worst = Swift.max(worst, Swift.abs(got.data[i] - want.data[i])) }
            seen.insert(target)
        }
        XCTAssertEqual(seen.count, count, "merged tensors with goldens", file: file, line: line)
        XCTAssertLessThanOrEqual(worst, 1e-6, prefix, file: file, line: line)
        for (name, t) in weights where !seen.contains(name) {
            XCTAssertEqual(t.scalars.map(\.bitPattern), pristine[name]!.scalars.map(\.bitPattern), "\(name) changed", file: file, line: line)
        }
        print("LoRA \(prefix): \(seen.count) merged weights, max abs error \(worst)")
        return worst
    }

    func testPEFTFileGivesDiffusersFusedWeights() throws {
        let lora = try LoRA.load(Self.dir.appendingPathComponent("peft.safetensors"))
        XCTAssertEqual(lora.unrecognized, [])
        for scale: Float in [1, 0.5] {
            let w = try baseWeights()
            let report = try lora.merge(unet: w.unet, textEncoder: w.textEncoder, scale: scale)
            XCTAssertEqual(report.applied.count, 182)
            XCTAssertEqual(report.unused, [])
            try check(w.unet, against: "unet.s\(scale == 1 ? "1.0" : "0.5").", count: 182)
        }
    }

    func testKohyaFileGivesTheSameUnetAndTheTextEncoderMerge() throws {
        let lora = try LoRA.load(Self.dir.appendingPathComponent("kohya.safetensors"))
        for scale: Float in [1, 0.5] {
            let w = try baseWeights()
            let report = try lora.merge(unet: w.unet, textEncoder: w.textEncoder, scale: scale)
            XCTAssertEqual(report.unused, [])
            let s = scale == 1 ? "1.0" : "0.5"
            try check(w.unet, against: "unet.s\(s).", count: 182)
            // The folder's text encoder has transformers 4's `text_model.` names; the goldens transformers 5's.
            try check(w.textEncoder, against: "text_encoder.s\(s).", rename: { "text_model." + $0 }, count: 12)
        }
    }

    /// diffusers' intermediate `<module>.lora.down.weight` / `lora.up.weight` + `.alpha` naming.
    func testDottedDownUpNamesWithAlpha() throws {
        let peft = try SafeTensorsFile(url: Self.dir.appendingPathComponent("peft.safetensors")).all()
        var dotted: [String: Tensor] = [:]
        for (k, v) in peft {
            let isDown = k.hasSuffix(".lora_A.weight")
            let module = String(k.dropLast(".lora_A.weight".count))
            dotted[module + (isDown ? ".lora.down.weight" : ".lora.up.weight")] = v
            dotted[module + ".alpha"] = Tensor(8)
        }
        let url = temp("dotted.safetensors")
        try SafeTensors.write(dotted, to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let w = try baseWeights()
        XCTAssertEqual(try LoRA.load(url).merge(into: w.unet, component: .unet, scale: 1).applied.count, 182)
        try check(w.unet, against: "unet.s1.0.", count: 182)
    }

    /// kohya files that name unet modules by the original (LDM) blocks: `lora_unet_input_blocks_4_1_proj_in`.
    /// The renaming comes from the single-file mapping (itself checked against diffusers).
    func testKohyaOriginalUNetNames() throws {
        let layout = try StableDiffusionCheckpoint.open(Self.base.deletingLastPathComponent().appendingPathComponent("sd1.safetensors")).layout
        var ldmModule: [String: String] = [:]  // underscored diffusers module → underscored LDM module
        for (name, recipe) in layout.unet where name.hasSuffix(".weight") {
            let ldm = recipe.source.dropFirst("model.diffusion_model.".count).dropLast(".weight".count)
            ldmModule[name.dropLast(7).replacingOccurrences(of: ".", with: "_")] = ldm.replacingOccurrences(of: ".", with: "_")
        }
        var renamed: [String: Tensor] = [:]
        for (k, v) in try SafeTensorsFile(url: Self.dir.appendingPathComponent("kohya.safetensors")).all() {
            guard k.hasPrefix("lora_unet_") else { continue }
            let module = String(k.dropFirst(10).prefix { $0 != "." })
            renamed["lora_unet_" + ldmModule[module]! + k.dropFirst(10 + module.count)] = v
        }
        XCTAssertTrue(renamed.keys.contains { $0.hasPrefix("lora_unet_input_blocks_4_1_") })
        XCTAssertTrue(renamed.keys.contains { $0.hasPrefix("lora_unet_output_blocks_3_0_in_layers_2") })
        let url = temp("ldm.safetensors")
        try SafeTensors.write(renamed, to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let w = try baseWeights()
        let report = try LoRA.load(url).merge(into: w.unet, component: .unet, scale: 1)
        XCTAssertEqual(report.unused, [])
        try check(w.unet, against: "unet.s1.0.", count: 182)
    }

    func testScaleZeroIsBitIdentical() throws {
        let lora = try LoRA.load(Self.dir.appendingPathComponent("kohya.safetensors"))
        let w = try baseWeights(), pristine = try baseWeights()
        let report = try lora.merge(unet: w.unet, textEncoder: w.textEncoder, scale: 0)
        XCTAssertEqual(report.applied.count, 182 + 12)
        for (name, t) in w.unet.merging(w.textEncoder, uniquingKeysWith: { a, _ in a }) {
            let p = pristine.unet[name] ?? pristine.textEncoder[name]!
            XCTAssertEqual(t.scalars.map(\.bitPattern), p.scalars.map(\.bitPattern), name)
        }
    }

    func testLoRAForAnotherModelIsAnErrorNamingTheFile() throws {
        let url = Self.dir.appendingPathComponent("kohya.safetensors")
        let lora = try LoRA.load(url)
        // The SD 2-shaped unet: same block names, other widths (linear proj_in, 8-wide text states).
        let sd2 = try SafeTensorsFile(url: Self.base.deletingLastPathComponent()
            .appendingPathComponent("sd2/unet/diffusion_pytorch_model.safetensors")).all()
        XCTAssertThrowsError(try lora.merge(into: sd2, component: .unet, scale: 1)) { error in
            XCTAssertTrue("\(error)".contains(url.path) && "\(error)".contains("another model"), "\(error)")
        }
        // No name in common at all.
        let vae = try SafeTensorsFile(url: Self.base.appendingPathComponent("vae/diffusion_pytorch_model.safetensors")).all()
        XCTAssertThrowsError(try lora.merge(into: vae, component: .textEncoder, scale: 1)) { error in
            XCTAssertTrue("\(error)".contains(url.path) && "\(error)".contains("another model"), "\(error)")
        }
    }

    func testUnknownTensorsAreReportedNotDropped() throws {
        var tensors = try SafeTensorsFile(url: Self.dir.appendingPathComponent("peft.safetensors")).all()
        tensors["unet.nowhere.to_q.lora_A.weight"] = .zeros([4, 4])
        tensors["unet.nowhere.to_q.lora_B.weight"] = .zeros([4, 4])
        tensors["lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_a"] = .zeros([2])
        tensors["emb_params"] = .zeros([3])
        let url = temp("extra.safetensors")
        try SafeTensors.write(tensors, to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let lora = try LoRA.load(url)
        let w = try baseWeights()
        let report = try lora.merge(unet: w.unet, textEncoder: nil, scale: 1)
        XCTAssertEqual(report.applied.count, 182)
        XCTAssertEqual(Set(report.unused), ["unet.nowhere.to_q.lora_A.weight", "unet.nowhere.to_q.lora_B.weight",
                                            "lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_a", "emb_params"])
    }

    func testMalformedFactorsAreErrors() throws {
        let url = temp("bad.safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensors.write(["lora_unet_conv_in.lora_down.weight": .zeros([4, 4, 3]),
                               "lora_unet_conv_in.lora_up.weight": .zeros([4, 4])], to: url)
        XCTAssertThrowsError(try LoRA.load(url)) { XCTAssertTrue("\($0)".contains(url.path) && "\($0)".contains("2 or 4 dims"), "\($0)") }
        try SafeTensors.write(["lora_unet_conv_in.lora_down.weight": .zeros([4, 4]),
                               "lora_unet_conv_in.lora_up.weight": .zeros([4, 3])], to: url)
        XCTAssertThrowsError(try LoRA.load(url)) { XCTAssertTrue("\($0)".contains("rank-r product"), "\($0)") }
        try SafeTensors.write(["something.else": .zeros([4])], to: url)
        XCTAssertThrowsError(try LoRA.load(url)) { XCTAssertTrue("\($0)".contains("no LoRA tensors"), "\($0)") }
    }

    func testCommandLineArgument() {
        XCTAssertEqual(LoRA.parseArgument("a.safetensors")?.scale, 1)
        XCTAssertEqual(LoRA.parseArgument("dir/a.safetensors:0.6")?.scale, 0.6)
        XCTAssertEqual(LoRA.parseArgument("dir/a.safetensors:0.6")?.path, "dir/a.safetensors")
        XCTAssertEqual(LoRA.parseArgument("c:/x/a.safetensors")?.path, "c:/x/a.safetensors")
        XCTAssertNil(LoRA.parseArgument(":0.5"))
    }

    func temp(_ name: String) -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("lora-\(ProcessInfo.processInfo.processIdentifier)-\(name)")
    }
}
