import XCTest
import Foundation
import TestSupport
import Tensor
import NN
import Image
import Diffusion

/// `--sampler lcm|tcd` and `--eta` on `generate`, and a folder whose scheduler_config.json
/// names LCMScheduler (a distilled student) being sampled with it when no sampler is given.
final class ConsistencySamplerCLITests: XCTestCase {
    func testFolderSchedulerIsUsedAndFlagsAreChecked() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-lcm-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var c = UNet2DConfig()
        c.sampleSize = [8, 8]; c.inChannels = 1; c.outChannels = 1
        c.blockOutChannels = [8, 16]; c.downBlockTypes = [.downBlock2D, .downBlock2D]
        c.upBlockTypes = [.upBlock2D, .upBlock2D]; c.layersPerBlock = 1; c.normNumGroups = 4
        NNInit.seed(5)
        let folder = dir.appendingPathComponent("student")
        try UNet2DModel(config: c).save(to: folder.appendingPathComponent("unet"))
        let scheduler = SchedulerConfig(.lcm, ["original_inference_steps": .number(25)])
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("scheduler"), withIntermediateDirectories: true)
        let schedulerFile = folder.appendingPathComponent("scheduler/scheduler_config.json")
        try scheduler.jsonData().write(to: schedulerFile)
        try Data(#"{"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"], "scheduler": ["diffusers", "LCMScheduler"]}"#.utf8)
            .write(to: folder.appendingPathComponent("model_index.json"))

        func raw(_ extra: [String], _ name: String) throws -> [Float] {
            let u = dir.appendingPathComponent(name + ".safetensors")
            let r = try runDiffuseCommand(["generate", "image", "--model", folder.path, "--count", "2", "--steps", "4", "--threads", "1",
                                           "--raw", u.path, "--out", dir.appendingPathComponent(name).path] + extra)
            XCTAssertEqual(r.status, 0, r.stderr)
            return try SafeTensorsFile(url: u).tensor("sample").scalars
        }
        let folderDefault = try raw([], "default")
        XCTAssertEqual(folderDefault, try raw(["--sampler", "lcm"], "lcm"), "no --sampler: the folder's LCM scheduler")
        XCTAssertNotEqual(folderDefault, try raw(["--sampler", "dpm++2m"], "dpm"))
        let tcd = try raw(["--sampler", "tcd"], "tcd")
        XCTAssertEqual(tcd, try raw(["--sampler", "tcd", "--eta", "0.3"], "tcd03"), "TCD's gamma defaults to 0.3")
        XCTAssertNotEqual(tcd, try raw(["--sampler", "tcd", "--eta", "0"], "tcd0"))
        // the file is read as written and is left as it was
        XCTAssertEqual(try SchedulerConfig.load(schedulerFile), scheduler)

        func status(_ extra: [String]) throws -> DiffuseResult {
            try runDiffuseCommand(["generate", "image", "--model", folder.path, "--count", "1", "--out", dir.appendingPathComponent("x").path] + extra)
        }
        var r = try status(["--sampler", "tcd", "--eta", "1.5"])
        XCTAssertEqual(r.status, 64)
        XCTAssert(r.stderr.contains("--eta"), r.stderr)
        r = try status(["--sampler", "euler", "--eta", "0.3"])
        XCTAssertEqual(r.status, 64)
        XCTAssert(r.stderr.contains("--eta"), r.stderr)
        r = try status(["--eta", "0.3"])
        XCTAssertEqual(r.status, 64, "the folder's LCM sampler has no eta")
        XCTAssert(r.stderr.contains("lcm"), r.stderr)
        r = try status(["--steps", "26"])
        XCTAssertEqual(r.status, 1, "more steps than the folder's original_inference_steps")
        XCTAssert(r.stderr.contains("original_inference_steps"), r.stderr)
    }
}
