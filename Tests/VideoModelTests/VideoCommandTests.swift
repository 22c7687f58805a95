import XCTest
import Foundation
import Tensor
import NN
import Image
import Video
import Diffusion
import TestSupport

/// The video commands end to end, as a user runs them: dataset → train (from an image model) →
/// generate MP4/GIF → continue a clip; inspect and forward take the video model folder.
final class VideoCommandTests: XCTestCase {
    func testDatasetTrainFromAnImageModelGenerateAndContinue() throws {
        let tmp = try TemporaryFolder()
        defer { tmp.remove() }
        func run(_ args: [String]) throws -> DiffuseResult { try runDiffuseCommand(args, env: ["DIFFUSE_THREADS": "1"]) }
        func exists(_ u: URL, _ f: String) -> Bool { FileManager.default.fileExists(atPath: u.appendingPathComponent(f).path) }

        // 1 clip per class, 8 frames of 32×32.
        let data = tmp.file("data")
        var r = try run(["dataset", "moving-fashion", "--out", data.path, "--per-class", "1", "--frames", "8"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: data.path).sorted(), (FashionMNIST.names + ["classes.json"]).sorted())
        // The dataset's own class order (Fashion-MNIST's 0-9), not the folders' sort order.
        XCTAssertEqual(try ClassFolder(data, extensions: ["mp4"]).classNames, FashionMNIST.names)
        let bagClip = data.appendingPathComponent("bag/00000.mp4")
        let probe = try ffprobe(bagClip)
        XCTAssert(["h264", "mpeg4"].contains(probe["codec_name"] ?? ""), "\(probe)")
        if probe["codec_name"] == "h264" { XCTAssertEqual(probe["pix_fmt"], "yuv420p") }
        XCTAssertEqual(probe["nb_read_frames"], "8")
        XCTAssertEqual(try run(["dataset", "moving-fashion", "--out", data.path, "--size", "10"]).status, 64)
        // Three classes keep the previews small.
        for name in FashionMNIST.names where !["bag", "coat", "sandal"].contains(name) {
            try FileManager.default.removeItem(at: data.appendingPathComponent(name))
        }

        // A tiny image model, one step, to start the video model from.
        let spatial = """
        "sample_size": 32, "in_channels": 1, "out_channels": 1, "block_out_channels": [8, 16],
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
        "layers_per_block": 1, "norm_num_groups": 4, "attention_head_dim": 8, "num_class_embeds": 11
        """
        let imageRecipe = tmp.file("image.json"), videoRecipe = tmp.file("video.json")
        try Data("{\"model\": {\(spatial)}, \"training\": {\"steps\": 1, \"batch_size\": 2}}".utf8).write(to: imageRecipe)
        let imageRun = tmp.file("image-run")
        r = try run(["train", "image", "--data", "builtin:fashion-mnist", "--config", imageRecipe.path, "--out", imageRun.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        try Data("""
        {"model": {\(spatial), "num_frames": 4, "temporal_attention_head_dim": 4, "temporal_conv": true},
         "training": {"steps": 2, "batch_size": 2, "checkpoint_every": 1}, "preview_every": 2, "joint_image_fraction": 0.5}
        """.utf8).write(to: videoRecipe)
        let videoRun = tmp.file("video-run")
        r = try run(["train", "video", "--data", data.path, "--config", videoRecipe.path, "--out", videoRun.path,
                     "--init-from", imageRun.appendingPathComponent("model").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        for f in ["recipe.json", "loss.csv", "loss.png", "previews/step-2.gif", "checkpoints/latest", "model/model_index.json",
                  "model/unet/config.json", "model/unet/diffusion_pytorch_model.safetensors", "model/classes.json"] {
            XCTAssert(exists(videoRun, f), "missing \(f)")
        }
        let recipe = try String(contentsOf: videoRun.appendingPathComponent("recipe.json"), encoding: .utf8)
        XCTAssert(recipe.contains("\"init_from\"") && recipe.contains("image-run"), recipe)
        XCTAssertEqual(try ffprobe(videoRun.appendingPathComponent("previews/step-2.gif"))["codec_name"], "gif")
        // Resuming to more steps works; a second run into the folder without --resume does not.
        r = try run(["train", "video", "--data", data.path, "--config", videoRecipe.path, "--out", videoRun.path])
        XCTAssertEqual(r.status, 1)
        XCTAssert(r.stderr.contains("--resume"), r.stderr)
        r = try run(["train", "video", "--data", data.path, "--config", videoRecipe.path, "--out", videoRun.path, "--steps", "3", "--resume"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let model = videoRun.appendingPathComponent("model")
        // A video model starts a whole run (fine-tuning): without --config the run takes its config.
        let tuned = tmp.file("tuned")
        r = try run(["train", "video", "--data", data.path, "--init-from", model.path, "--steps", "1", "--batch", "2", "--out", tuned.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let tunedRecipe = try VideoRecipe.load(tuned.appendingPathComponent("recipe.json"))
        XCTAssertEqual(tunedRecipe.initFrom, model.path)
        XCTAssertEqual(tunedRecipe.model.numFrames, 4)
        XCTAssert(tunedRecipe.model.temporalConv)

        // Two clips tiled into one MP4, three into a GIF grid, two files in a folder.
        let mp4 = tmp.file("two.mp4")
        r = try run(["generate", "video", "--model", model.path, "--class", "sandal,bag", "--steps", "2", "--out", mp4.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let p = try ffprobe(mp4)
        XCTAssert(["h264", "mpeg4"].contains(p["codec_name"] ?? ""), "\(p)")
        if p["codec_name"] == "h264" { XCTAssertEqual(p["pix_fmt"], "yuv420p") }
        XCTAssertEqual(p["width"], "66", "two 32-pixel clips and a 2-pixel gap")
        XCTAssertEqual(p["nb_read_frames"], "4", "the model's 4 frames")
        let gif = tmp.file("three.gif")
        r = try run(["generate", "video", "--model", model.path, "--count", "3", "--columns", "2", "--frames", "6", "--fps", "4",
                     "--steps", "2", "--sampler", "ddim", "--out", gif.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let g = try ffprobe(gif)
        XCTAssertEqual(g["codec_name"], "gif")
        XCTAssertEqual(g["height"], "66")
        XCTAssertEqual(g["nb_read_frames"], "6", "more frames than the model was trained on")
        let dir = tmp.file("clips")
        r = try run(["generate", "video", "--model", model.path, "--class", "coat", "--count", "2", "--steps", "1", "--format", "gif", "--out", dir.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(), ["0000-coat.gif", "0001-coat.gif"])

        // Continuing a clip keeps frames 0-3 exactly and generates the rest (8 frames: the whole clip).
        let raw = tmp.file("raw.safetensors")
        r = try run(["generate", "video", "--model", model.path, "--class", "bag", "--count", "1", "--steps", "2", "--frames", "8",
                     "--init", bagClip.path, "--keep-frames", "0-3", "--raw", raw.path, "--out", tmp.file("continued.mp4").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = try SafeTensorsFile(url: raw).tensor("sample")
        XCTAssertEqual(out.shape, [1, 1, 8, 32, 32])
        let original = try VideoPipeline.load(model).loadClip(bagClip, count: 1, frames: 8)
        XCTAssertEqual(Array(out.scalars[0..<(4 * 1024)]), Array(original.scalars[0..<(4 * 1024)]), "frames 0-3 kept")
        XCTAssertNotEqual(Array(out.scalars[(4 * 1024)...]), Array(original.scalars[(4 * 1024)...]), "frames 4-7 generated")
        XCTAssertEqual(try run(["generate", "video", "--model", model.path, "--keep-frames", "0-3", "--out", mp4.path]).status, 64)
        r = try run(["generate", "video", "--model", model.path, "--init", bagClip.path, "--keep-frames", "5", "--out", mp4.path])
        XCTAssertEqual(r.status, 64, "frame 5 of a 4-frame clip")
        r = try run(["generate", "video", "--model", model.path, "--class", "unicorn", "--out", mp4.path])
        XCTAssertEqual(r.status, 64)
        XCTAssert(r.stderr.contains("unicorn") && r.stderr.contains("sandal"), r.stderr)

        // Augmentation: one new clip per class and a variation of each real one, in the input's
        // layout; a manifest line makes its MP4 again bit for bit.
        let aug = tmp.file("aug")
        r = try run(["augment", "video", "--data", data.path, "--out", aug.path, "--model", model.path, "--per-class", "1", "--steps", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stdout.contains("3 new files"), r.stdout)
        r = try run(["augment", "video", "--data", data.path, "--out", aug.path, "--model", model.path, "--mode", "vary", "--steps", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stdout.contains("3 new files"), r.stdout)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: aug.appendingPathComponent("bag").path).sorted(),
                       ["00000-vary0-s0.mp4", "gen-s0-00000.mp4"])
        let augLines = try String(contentsOf: aug.appendingPathComponent("manifest.jsonl"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(augLines.count, 6)
        XCTAssertEqual(try ffprobe(aug.appendingPathComponent("bag/gen-s0-00000.mp4"))["nb_read_frames"], "4")
        for line in [augLines[0], augLines[4]] {
            let record = try JSONDecoder().decode(AugmentationRecord.self, from: Data(line.utf8))
            let again = tmp.file("again.mp4")
            r = try run(["augment", "video", "--reproduce", String(line), "--out", again.path])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertEqual(try Data(contentsOf: again), try Data(contentsOf: aug.appendingPathComponent(record.file)), record.file)
        }

        // inspect and forward pick VideoUNetModel from `_class_name`.
        r = try run(["inspect", model.path, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(report?["className"] as? String, "VideoUNetModel")
        let net = try VideoUNetModel.load(model)
        XCTAssertEqual(report?["parameters"] as? Int, net.parameterCount)
        XCTAssertEqual(try run(["inspect", model.path]).status, 0)
        let input = tmp.file("in.safetensors"), output = tmp.file("out.safetensors")
        let x = randomTensor([2, 1, 3, 32, 32], seed: 5)
        try SafeTensors.write(["sample": x, "timestep": Tensor(shape: [2], scalars: [20, 600]),
                               "class_labels": Tensor(shape: [2], scalars: [2, 1])], to: input)
        r = try run(["forward", model.path, "--input", input.path, "--output", output.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let want = GradMode.withoutGrad { net(x, timesteps: [20, 600], classLabels: [2, 1]) }
        assertSameUpToBLASRounding(try SafeTensorsFile(url: output).tensor("sample"), want, "forward through the CLI")
        try SafeTensors.write(["sample": randomTensor([2, 1, 32, 32], seed: 6), "timestep": Tensor(5),
                               "class_labels": Tensor(shape: [2], scalars: [8, 1])], to: input)
        r = try run(["forward", model.path, "--input", input.path, "--output", output.path])
        XCTAssertEqual(r.status, 1)
        XCTAssert(r.stderr.contains("[N, 1, F, H, W]"), r.stderr)
    }
}
