import XCTest
import TestSupport
import Foundation

/// `diffuse args...` as a user runs it (TestSupport's runner).
func runDiffuse(_ args: [String], env: [String: String] = [:]) throws -> DiffuseResult {
    try runDiffuseCommand(args, env: env)
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
import Audio
import Diffusion

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
        // --resume with another recipe is refused; with more steps it extends the finished run.
        r = try runDiffuse(["train", "image", "--data", "builtin:fashion-mnist", "--out", run.path, "--steps", "4", "--batch", "4", "--lr", "0.01", "--resume"])
        XCTAssertEqual(r.status, 1, "a different learning rate is a different recipe")
        XCTAssert(r.stderr.contains("recipe.json"), r.stderr)
        XCTAssert(r.stderr.contains("training.learning_rate ("), "the message names what differs: \(r.stderr)")
        XCTAssertFalse(r.stderr.contains("training.steps"), "the steps may change: \(r.stderr)")
        r = try runDiffuse(["train", "image", "--data", "builtin:fashion-mnist", "--out", run.path, "--steps", "4", "--batch", "4", "--resume"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let log = try String(contentsOf: run.appendingPathComponent("loss.csv"), encoding: .utf8)
        XCTAssertEqual(log.split(separator: "\n").map { $0.split(separator: ",")[0] }, ["step", "1", "2", "3", "4"])
        // --raw keeps the unquantised samples, and at one thread --batch does not change a single
        // value (DDPM draws fresh noise every step: that too is per sample) — on OpenBLAS's AVX-512
        // cores; on its Haswell kernel the last bits move (~1e-5: `blasIsShapeStable`). With two
        // threads the work splits differ with the batch and the last bits can too (seen in CI; a
        // 3-step DDPM on an untrained model amplifies them).
        func raw(_ batch: String, _ name: String) throws -> Tensor {
            let u = dir.appendingPathComponent(name)
            let r = try runDiffuse(["generate", "image", "--model", run.appendingPathComponent("model").path, "--count", "3",
                                    "--batch", batch, "--threads", "1", "--sampler", "ddpm", "--steps", "3", "--raw", u.path,
                                    "--out", dir.appendingPathComponent("raw-\(name)").path])
            XCTAssertEqual(r.status, 0, r.stderr)
            return try SafeTensorsFile(url: u).tensor("sample")
        }
        let whole = try raw("3", "b3.safetensors"), split = try raw("2", "b2.safetensors")
        XCTAssertEqual(whole.shape, [3, 1, 32, 32])
        assertSameUpToBLASRounding(whole, split, "--batch 3 against --batch 2")
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
        let kept = try PNGCodec.read(inpainted.appendingPathComponent("init-0000.png"), mode: .gray)  // named after its input
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

final class AudioCommandTests: XCTestCase {
    func testNotesThenTrainGenerateFillAndEvaluate() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-audio-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let notes = dir.appendingPathComponent("notes")
        var r = try runDiffuse(["dataset", "notes", "--out", notes.path, "--pitches", "60-62", "--instruments", "piano,flute",
                                "--velocities", "100", "--seconds", "0.25"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: notes.path).sorted(), ["60", "61", "62"])
        XCTAssertEqual(try runDiffuse(["dataset", "notes", "--out", notes.path, "--pitches", "72-60"]).status, 64)
        // A tiny Dance-Diffusion-style model on 4096-sample clips.
        let recipe = dir.appendingPathComponent("recipe.json")
        try Data("""
        {"model": {"block_out_channels": [32, 32, 32], "in_channels": 1, "out_channels": 1, "extra_in_channels": 64,
                   "sample_size": 4096, "sample_rate": 16000, "num_class_embeds": 4},
         "training": {"steps": 2, "batch_size": 2, "checkpoint_every": 1}, "preview_every": 2}
        """.utf8).write(to: recipe)
        let run = dir.appendingPathComponent("run")
        r = try runDiffuse(["train", "audio", "--data", notes.path, "--out", run.path, "--config", recipe.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        for f in ["model/unet/config.json", "model/classes.json", "previews/step-2.wav", "previews/step-2.png", "loss.png"] {
            XCTAssert(FileManager.default.fileExists(atPath: run.appendingPathComponent(f).path), "missing \(f)")
        }
        let model = run.appendingPathComponent("model").path
        // Three classes joined into one clip; a class name wins over an index ("60" is the folder 60, not label 60).
        let melody = dir.appendingPathComponent("melody.wav")
        r = try runDiffuse(["generate", "audio", "--model", model, "--class", "60,62,61", "--steps", "2", "--out", melody.path,
                            "--spectrogram", dir.appendingPathComponent("melody.png").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let clip = try AudioCodec.read(melody)
        XCTAssertEqual(clip.sampleRate, 16_000)
        XCTAssertEqual(clip.length, 3 * 4096 - 2 * 160, "joined with 10 ms crossfades")
        r = try runDiffuse(["generate", "audio", "--model", model, "--class", "7", "--out", melody.path])
        XCTAssertEqual(r.status, 64, "label 7 does not exist")
        r = try runDiffuse(["generate", "audio", "--model", model, "--class", "60", "--guidance-rescale", "1.5", "--out", melody.path])
        XCTAssertEqual(r.status, 64, "--guidance-rescale is within 0-1")
        r = try runDiffuse(["generate", "audio", "--model", model, "--class", "60", "--steps", "2", "--guidance-rescale", "0.7",
                            "--out", dir.appendingPathComponent("rescaled.wav").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        // Filling a gap keeps everything outside it.
        let source = notes.appendingPathComponent("61/piano-v100.wav")
        let filled = dir.appendingPathComponent("filled")
        r = try runDiffuse(["generate", "audio", "--model", model, "--class", "61", "--count", "1", "--steps", "2", "--init", source.path,
                            "--mask-from", "0.05", "--mask-to", "0.1", "--raw", dir.appendingPathComponent("raw.safetensors").path,
                            "--out", filled.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = try SafeTensorsFile(url: dir.appendingPathComponent("raw.safetensors")).tensor("sample")
        XCTAssertEqual(out.shape, [1, 1, 4000], "the whole 0.25 s clip (already a multiple of the model's 8)")
        let original = try AudioCodec.read(source).samples
        for j in [0, 500, 799, 1600, 3999] { XCTAssertEqual(out.data[j], original.data[j], accuracy: 1e-6, "sample \(j) outside the gap") }
        // Augmentation: new clips per class and variations of the real ones; an unreadable file is
        // skipped and counted; a manifest line makes its clip again bit for bit.
        let small = dir.appendingPathComponent("small"), aug = dir.appendingPathComponent("aug")
        for c in ["60", "62"] {
            try FileManager.default.createDirectory(at: small.appendingPathComponent(c), withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: notes.appendingPathComponent("\(c)/flute-v100.wav"), to: small.appendingPathComponent("\(c)/flute.wav"))
        }
        try Data("RIFF, but not really".utf8).write(to: small.appendingPathComponent("62/broken.wav"))
        r = try runDiffuse(["augment", "audio", "--data", small.path, "--out", aug.path, "--model", model, "--per-class", "2", "--steps", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stdout.contains("4 new files"), r.stdout)
        r = try runDiffuse(["augment", "audio", "--data", small.path, "--out", aug.path, "--model", model, "--mode", "vary", "--steps", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stdout.contains("2 new files") && r.stdout.contains("skipped 1 unreadable"), r.stdout)
        XCTAssert(r.stderr.contains("broken.wav"), r.stderr)
        let augLines = try String(contentsOf: aug.appendingPathComponent("manifest.jsonl"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(augLines.count, 6)
        for line in [augLines[1], augLines[5]] {
            let record = try JSONDecoder().decode(AugmentationRecord.self, from: Data(line.utf8))
            XCTAssertEqual(try AudioCodec.read(aug.appendingPathComponent(record.file)).length, 4096, record.file)
            let again = dir.appendingPathComponent("again.wav")
            r = try runDiffuse(["augment", "audio", "--reproduce", String(line), "--out", again.path])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertEqual(try Data(contentsOf: again), try Data(contentsOf: aug.appendingPathComponent(record.file)), record.file)
        }
        // Spectrograms of files side by side; a broken file is named.
        let spec = dir.appendingPathComponent("spec.png")
        r = try runDiffuse(["spectrogram", source.path, notes.appendingPathComponent("62/flute-v100.wav").path, "--out", spec.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let drawing = try PNGCodec.read(spec, mode: .gray)
        XCTAssertEqual(drawing.shape[1], 257, "512-sample windows: 257 bins")
        XCTAssertEqual(drawing.shape[2], 2 * (1 + (4000 - 512) / 128) + 4, "two 0.25 s clips and a 4-pixel gap")
        r = try runDiffuse(["spectrogram", small.appendingPathComponent("62/broken.wav").path, "--out", spec.path])
        XCTAssertEqual(r.status, 1)
        XCTAssert(r.stderr.contains("broken.wav"), r.stderr)
        // Evaluation: pitch of the real notes.
        r = try runDiffuse(["evaluate", "audio", "--generated", notes.path, "--seconds", "0.25", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: [String: Any]]
        XCTAssertEqual(json["generated"]?["clips"] as? Int, 6)
        XCTAssertGreaterThanOrEqual(json["generated"]?["within_50_cents"] as? Double ?? 0, 0.8)
    }
}

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

final class AugmentCommandTests: XCTestCase {
    func testAugmentResumesAndEveryManifestLineRemakesItsFileBitForBit() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-aug-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        var r = try runDiffuse(["train", "image", "--data", "builtin:fashion-mnist", "--out", run.path, "--steps", "2", "--batch", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let model = run.appendingPathComponent("model").path
        // A small real set: two classes the model knows, two images each.
        let data = dir.appendingPathComponent("data")
        for (c, v) in [("bag", 0.5), ("sneaker", -0.3)] {
            try FileManager.default.createDirectory(at: data.appendingPathComponent(c), withIntermediateDirectories: true)
            for k in 0..<2 {
                try PNGCodec.write(Tensor(shape: [1, 32, 32], scalars: (0..<1024).map { Float(v) * Float(($0 + k) % 7) / 7 }),
                                   to: data.appendingPathComponent("\(c)/\(k).png"))
            }
        }
        let before = try FileManager.default.subpathsOfDirectory(atPath: data.path).sorted()
        let out = dir.appendingPathComponent("out")
        func augment(_ extra: [String]) throws -> DiffuseResult {
            try runDiffuse(["augment", "image", "--data", data.path, "--out", out.path, "--model", model, "--steps", "2", "--batch", "2"] + extra)
        }
        r = try augment(["--per-class", "3"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stdout.contains("6 new files"), r.stdout)
        r = try augment(["--per-class", "3"])
        XCTAssert(r.stdout.contains("0 new files") && r.stdout.contains("6 already there"), r.stdout)
        r = try augment(["--per-class", "4"])
        XCTAssert(r.stdout.contains("2 new files"), r.stdout)
        r = try augment(["--mode", "vary", "--strength", "0.6"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try FileManager.default.subpathsOfDirectory(atPath: data.path).sorted(), before, "inputs untouched")
        let lines = try String(contentsOf: out.appendingPathComponent("manifest.jsonl"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 12)
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: out.path)), ["bag", "sneaker", "manifest.jsonl"])
        for line in [lines[0], lines[5], lines[7], lines[11]] {
            let record = try JSONDecoder().decode(AugmentationRecord.self, from: Data(line.utf8))
            let again = dir.appendingPathComponent("again.png")
            r = try runDiffuse(["augment", "image", "--reproduce", String(line), "--out", again.path])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertEqual(try Data(contentsOf: again), try Data(contentsOf: out.appendingPathComponent(record.file)), "\(record.file)")
        }
        // Export to F16: half the bytes, the same pipeline.
        let half = dir.appendingPathComponent("half")
        r = try runDiffuse(["export", model, "--out", half.path, "--dtype", "f16"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let weights = "unet/diffusion_pytorch_model.safetensors"
        let size = { (u: URL) in try FileManager.default.attributesOfItem(atPath: u.appendingPathComponent(weights).path)[.size] as! Int }
        XCTAssertEqual(Double(try size(half)) / Double(try size(run.appendingPathComponent("model"))), 0.5, accuracy: 0.01)
        for f in ["model_index.json", "classes.json", "scheduler/scheduler_config.json"] {
            XCTAssertEqual(try Data(contentsOf: half.appendingPathComponent(f)), try Data(contentsOf: run.appendingPathComponent("model/" + f)))
        }
        XCTAssertEqual(try runDiffuse(["export", model, "--out", half.path]).status, 64, "an existing --out is refused")
        // Unknown classes are an error naming them, not a silent mismatch.
        try FileManager.default.createDirectory(at: data.appendingPathComponent("cat"), withIntermediateDirectories: true)
        try PNGCodec.write(Tensor.zeros([1, 8, 8]), to: data.appendingPathComponent("cat/c.png"))
        r = try augment(["--per-class", "1"])
        XCTAssertEqual(r.status, 1)
        XCTAssert(r.stderr.contains("cat") && r.stderr.contains("--train-steps"), r.stderr)
    }
}
