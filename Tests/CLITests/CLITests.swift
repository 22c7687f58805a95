import XCTest
import Foundation

/// The executable sits beside the test bundle in the build folder.
let diffuseExecutable: URL = {
    let bundle = URL(fileURLWithPath: CommandLine.arguments.first { $0.hasSuffix(".xctest") } ?? CommandLine.arguments[0])
    return bundle.deletingLastPathComponent().appendingPathComponent("diffuse")
}()

struct CommandResult { var status: Int32; var stdout: String; var stderr: String }

/// Runs `diffuse args...` and collects its exit status and output.
func runDiffuse(_ args: [String], env: [String: String] = [:]) throws -> CommandResult {
    let p = Process()
    p.executableURL = diffuseExecutable
    p.arguments = args
    p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return CommandResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                         stderr: String(decoding: e, as: UTF8.self))
}

/// The `diffuse` executable as a user runs it: help text and exit codes
/// (0 ok, 1 runtime error, 64 usage).
final class CLITests: XCTestCase {
    func testExecutableIsBuilt() {
        XCTAssert(FileManager.default.isExecutableFile(atPath: diffuseExecutable.path), "no executable at \(diffuseExecutable.path)")
    }

    func testHelpListsSubcommands() throws {
        let r = try runDiffuse(["--help"])
        XCTAssertEqual(r.status, 0)
        XCTAssert(r.stdout.contains("bench"), r.stdout)
        let k = try runDiffuse(["bench", "kernels", "--help"])
        XCTAssertEqual(k.status, 0)
        for flag in ["--json", "--threads", "--runs"] { XCTAssert(k.stdout.contains(flag), "help lacks \(flag): \(k.stdout)") }
    }

    func testBadUsageExits64() throws {
        XCTAssertEqual(try runDiffuse(["bench", "kernels", "--runs", "2"]).status, 64)
        XCTAssertEqual(try runDiffuse(["bench", "kernels", "--threads", "0"]).status, 64)
        XCTAssertEqual(try runDiffuse(["no-such-command"]).status, 64)
        let r = try runDiffuse(["bench", "kernels", "--threads", "zero"])
        XCTAssertEqual(r.status, 64)
        XCTAssert(r.stderr.contains("threads"), r.stderr)
    }
}

import Tensor
import NN
import Image

final class ForwardCommandTests: XCTestCase {
    func testForwardMatchesTheLibraryAndRejectsBadInput() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-fwd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var c = UNet2DConfig()
        c.sampleSize = [8, 8]; c.inChannels = 1; c.outChannels = 1
        c.blockOutChannels = [8, 16]; c.downBlockTypes = [.downBlock2D, .attnDownBlock2D]
        c.upBlockTypes = [.attnUpBlock2D, .upBlock2D]; c.layersPerBlock = 1; c.normNumGroups = 4
        c.attentionHeadDim = 4; c.numClassEmbeds = 3
        NNInit.seed(11)
        let model = try UNet2DModel(config: c)
        let folder = dir.appendingPathComponent("model")
        try model.save(to: folder)
        var rng = RandomGenerator(seed: 3)
        let x = rng.normal([2, 1, 8, 8])
        let input = dir.appendingPathComponent("in.safetensors"), output = dir.appendingPathComponent("out.safetensors")
        try SafeTensors.write(["sample": x, "timestep": Tensor(shape: [2], scalars: [10, 500]),
                               "class_labels": Tensor(shape: [2], scalars: [2, 0]), "ignored": Tensor.ones([3])], to: input)
        let r = try runDiffuse(["forward", folder.path, "--input", input.path, "--output", output.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let got = try SafeTensorsFile(url: output).tensor("sample")
        let want = GradMode.withoutGrad { model(x, timesteps: [10, 500], classLabels: [2, 0]) }
        XCTAssertEqual(got.shape, [2, 1, 8, 8])
        XCTAssertEqual(got.scalars, want.scalars)

        // inspect reads the same folder.
        let inspect = try runDiffuse(["inspect", folder.path, "--json"])
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        let report = try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(report?["parameters"] as? Int, model.parameterCount)
        XCTAssertEqual(report?["weightsDType"] as? String, "F32")

        // A label outside the model's classes, a missing key, and a corrupt file: exit 1, file named.
        try SafeTensors.write(["sample": x, "timestep": Tensor(5), "class_labels": Tensor(shape: [2], scalars: [7, 0])], to: input)
        var bad = try runDiffuse(["forward", folder.path, "--input", input.path, "--output", output.path])
        XCTAssertEqual(bad.status, 1)
        XCTAssert(bad.stderr.contains("in.safetensors") && bad.stderr.contains("7"), bad.stderr)
        try SafeTensors.write(["sample": x], to: input)
        bad = try runDiffuse(["forward", folder.path, "--input", input.path, "--output", output.path])
        XCTAssertEqual(bad.status, 1)
        XCTAssert(bad.stderr.contains("timestep"), bad.stderr)
        try Data("{}".utf8).write(to: input)
        bad = try runDiffuse(["forward", folder.path, "--input", input.path, "--output", output.path])
        XCTAssertEqual(bad.status, 1)
        XCTAssert(bad.stderr.contains("in.safetensors"), bad.stderr)
        // A broken config.json names the file and the key.
        try Data(#"{"block_out_channels": [8, 16], "down_block_types": ["DownBlock2D"]}"#.utf8)
            .write(to: folder.appendingPathComponent("config.json"))
        bad = try runDiffuse(["forward", folder.path, "--input", input.path, "--output", output.path])
        XCTAssertEqual(bad.status, 1)
        XCTAssert(bad.stderr.contains("config.json") && bad.stderr.contains("down_block_types"), bad.stderr)
    }
}

final class TrainGenerateCommandTests: XCTestCase {
    func testTrainThenGenerateImagesAndRefuseToOverwriteARun() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-train-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        var r = try runDiffuse(["train", "image", "--data", "builtin:fashion-mnist", "--out", run.path, "--steps", "3", "--batch", "4"])
        XCTAssertEqual(r.status, 0, r.stderr)
        for f in ["recipe.json", "loss.csv", "loss.png", "model/model_index.json", "model/unet/config.json",
                  "model/unet/diffusion_pytorch_model.safetensors", "model/scheduler/scheduler_config.json",
                  "model/classes.json", "checkpoints/latest"] {
            XCTAssert(FileManager.default.fileExists(atPath: run.appendingPathComponent(f).path), "missing \(f)")
        }
        // A second run into the same folder must not silently overwrite it.
        r = try runDiffuse(["train", "image", "--data", "builtin:fashion-mnist", "--out", run.path, "--steps", "3", "--batch", "4"])
        XCTAssertEqual(r.status, 1)
        XCTAssert(r.stderr.contains("--resume"), r.stderr)
        // --resume with more steps continues from step 3.
        r = try runDiffuse(["train", "image", "--data", "builtin:fashion-mnist", "--out", run.path, "--steps", "4", "--batch", "4", "--resume"])
        XCTAssertEqual(r.status, 1, "a different step count is a different recipe")
        // Generation: class names, a grid, and per-image files named by class.
        let grid = dir.appendingPathComponent("grid.png")
        r = try runDiffuse(["generate", "image", "--model", run.appendingPathComponent("model").path, "--class", "sneaker,3",
                            "--count", "4", "--steps", "3", "--grid", "--out", grid.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(FileManager.default.fileExists(atPath: grid.path))
        let files = dir.appendingPathComponent("files")
        r = try runDiffuse(["generate", "image", "--model", run.appendingPathComponent("model").path, "--class", "sneaker,3",
                            "--count", "2", "--steps", "2", "--sampler", "euler", "--out", files.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: files.path).sorted(), ["0000-sneaker.png", "0001-dress.png"])
        // Inpainting keeps the black part of the mask exactly; img2img runs too.
        let initPNG = dir.appendingPathComponent("init.png"), maskPNG = dir.appendingPathComponent("mask.png")
        try PNGCodec.write(Tensor(shape: [1, 32, 32], scalars: (0..<1024).map { ($0 % 32) < 16 ? 0.6 : -0.6 }), to: initPNG)
        try PNGCodec.write(Tensor(shape: [1, 32, 32], scalars: (0..<1024).map { $0 < 512 ? -1 : 1 }), to: maskPNG)
        let inpainted = dir.appendingPathComponent("inpainted")
        r = try runDiffuse(["generate", "image", "--model", run.appendingPathComponent("model").path, "--class", "bag",
                            "--count", "1", "--steps", "3", "--init-image", initPNG.path, "--mask", maskPNG.path, "--out", inpainted.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let kept = try PNGCodec.read(inpainted.appendingPathComponent("0000-bag.png"), mode: .gray)
        let original = try PNGCodec.read(initPNG, mode: .gray)
        XCTAssertEqual(Array(kept.scalars[0..<512]), Array(original.scalars[0..<512]))
        r = try runDiffuse(["generate", "image", "--model", run.appendingPathComponent("model").path, "--count", "1",
                            "--steps", "4", "--init-image", initPNG.path, "--strength", "0.5", "--out", dir.appendingPathComponent("i2i").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try runDiffuse(["generate", "image", "--mask", maskPNG.path, "--out", files.path]).status, 64)
        r = try runDiffuse(["generate", "image", "--model", run.appendingPathComponent("model").path, "--class", "unicorn", "--out", files.path])
        XCTAssertEqual(r.status, 64)
        XCTAssert(r.stderr.contains("unicorn") && r.stderr.contains("sneaker"), r.stderr)
    }
}

import Audio

final class AudioModelCommandTests: XCTestCase {
    /// forward, inspect and bench model pick UNet1DModel from config.json's `_class_name`.
    func testCommandsTakeAUNet1DFolder() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-fwd1d-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var c = UNet1DConfig.lean(sampleSize: 256, numClassEmbeds: 3)
        c.blockOutChannels = [8, 16]
        c.downBlockTypes = [.downResnetBlock1D, .downResnetBlock1D]
        c.upBlockTypes = [.upResnetBlock1D]
        NNInit.seed(12)
        let model = try UNet1DModel(config: c)
        let folder = dir.appendingPathComponent("model")
        try model.save(to: folder)
        var rng = RandomGenerator(seed: 3)
        let x = rng.normal([2, 1, 64])
        let input = dir.appendingPathComponent("in.safetensors"), output = dir.appendingPathComponent("out.safetensors")
        try SafeTensors.write(["sample": x, "timestep": Tensor(shape: [2], scalars: [10, 500]),
                               "class_labels": Tensor(shape: [2], scalars: [2, 0])], to: input)
        let r = try runDiffuse(["forward", folder.path, "--input", input.path, "--output", output.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let got = try SafeTensorsFile(url: output).tensor("sample")
        XCTAssertEqual(got.scalars, GradMode.withoutGrad { model(x, timesteps: [10, 500], classLabels: [2, 0]) }.scalars)

        // A length the U-Net cannot halve back: exit 1, naming the file and the multiple.
        try SafeTensors.write(["sample": rng.normal([2, 1, 63]), "timestep": Tensor(5),
                               "class_labels": Tensor(shape: [2], scalars: [2, 0])], to: input)
        let bad = try runDiffuse(["forward", folder.path, "--input", input.path, "--output", output.path])
        XCTAssertEqual(bad.status, 1)
        XCTAssert(bad.stderr.contains("in.safetensors") && bad.stderr.contains("multiple of 2"), bad.stderr)

        let inspect = try runDiffuse(["inspect", folder.path, "--json"])
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        let report = try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(report?["className"] as? String, "UNet1DModel")
        XCTAssertEqual(report?["parameters"] as? Int, model.parameterCount)
        XCTAssertEqual(try runDiffuse(["inspect", folder.path]).status, 0)

        let bench = try runDiffuse(["bench", "model", folder.appendingPathComponent("config.json").path,
                                    "--mode", "train", "--batch", "2", "--json"])
        XCTAssertEqual(bench.status, 0, bench.stderr)
        let b = try JSONSerialization.jsonObject(with: Data(bench.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(b?["parameters"] as? Int, model.parameterCount)
        XCTAssertGreaterThan(b?["gflop"] as? Double ?? 0, 0)
    }
}
