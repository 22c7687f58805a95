import XCTest
import TestSupport
import Foundation
import Tensor
import NN
import Image

/// `diffuse generate image --prompt` on the tiny Stable Diffusion folder of the pipeline goldens:
/// txt2img with the settings in a `parameters` chunk, --raw with latents and sample, img2img,
/// inpainting, and the errors a user meets.
final class PromptCommandTests: XCTestCase {
    static let model = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("ImageModelTests/Goldens/sd-pipeline/tiny").path

    func testPromptToImageImageToImageAndInpainting() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-prompt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let one = dir.appendingPathComponent("apple.png"), raw = dir.appendingPathComponent("raw.safetensors")
        var r = try runDiffuseCommand(["generate", "image", "--model", Self.model, "--prompt", "a red apple", "--negative-prompt", "blurry",
                                       "--width", "64", "--height", "96", "--steps", "3", "--seed", "7", "--out", one.path, "--raw", raw.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let image = try PNGCodec.read(one, mode: .rgb)
        XCTAssertEqual(image.shape, [3, 96, 64])
        let parameters = try PNGCodec.textChunks(one).first { $0.0 == "parameters" }?.1 ?? ""
        for part in ["a red apple", "Negative prompt: blurry", "Steps: 3", "Seed: 7", "Size: 64x96", "CFG scale: 7.5"] {
            XCTAssert(parameters.contains(part), "parameters lack \(part): \(parameters)")
        }
        let file = try SafeTensorsFile(url: raw)
        XCTAssertEqual(try file.tensor("latents").shape, [1, 4, 12, 8])
        XCTAssertEqual(try file.tensor("sample").shape, [1, 3, 96, 64])
        // The same seed makes the same image (batch sizes differ, so the last float bits may, and
        // after 8-bit quantisation a pixel by one step at most); --count makes a folder of them.
        let folder = dir.appendingPathComponent("many")
        r = try runDiffuseCommand(["generate", "image", "--model", Self.model, "--prompt", "a red apple", "--negative-prompt", "blurry",
                                   "--width", "64", "--height", "96", "--steps", "3", "--seed", "7", "--count", "2", "--out", folder.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let again = try PNGCodec.read(folder.appendingPathComponent("0000.png"), mode: .rgb)
        let step = zip(again.scalars, image.scalars).map { abs($0 - $1) }.max() ?? 1
        XCTAssertLessThanOrEqual(step, 2.5 / 255, "the first of two images against the image made alone")
        XCTAssert(FileManager.default.fileExists(atPath: folder.appendingPathComponent("0001.png").path))
        // --prompt-file: one prompt per line (blank lines skipped), --count of each, each PNG carrying its own prompt;
        // the first image of the file's first prompt is the one --prompt made alone.
        let prompts = dir.appendingPathComponent("prompts.txt")
        try Data("a red apple\n\n  a cat face \n".utf8).write(to: prompts)
        let listed = dir.appendingPathComponent("listed")
        r = try runDiffuseCommand(["generate", "image", "--model", Self.model, "--prompt-file", prompts.path, "--negative-prompt", "blurry",
                                   "--width", "64", "--height", "96", "--steps", "3", "--seed", "7", "--count", "2", "--out", listed.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let names = try FileManager.default.contentsOfDirectory(atPath: listed.path).sorted()
        XCTAssertEqual(names, ["0000.png", "0001.png", "0002.png", "0003.png"])
        for (i, want) in ["a red apple", "a red apple", "a cat face", "a cat face"].enumerated() {
            let text = try PNGCodec.textChunks(listed.appendingPathComponent(names[i])).first { $0.0 == "parameters" }?.1 ?? ""
            XCTAssert(text.hasPrefix(want + "\n") && text.contains("Sample: \(i)"), "\(names[i]): \(text)")
        }
        let first = try PNGCodec.read(listed.appendingPathComponent("0000.png"), mode: .rgb)
        XCTAssertLessThanOrEqual(zip(first.scalars, image.scalars).map { abs($0 - $1) }.max() ?? 1, 2.5 / 255)
        // Several images into one NAME.png ask for --grid.
        r = try runDiffuseCommand(["generate", "image", "--model", Self.model, "--prompt-file", prompts.path, "--steps", "1", "--out", one.path])
        XCTAssertEqual(r.status, 64)
        XCTAssert(r.stderr.contains("--grid"), r.stderr)
        try Data("\n  \n".utf8).write(to: prompts)
        r = try runDiffuseCommand(["generate", "image", "--model", Self.model, "--prompt-file", prompts.path, "--out", one.path])
        XCTAssertEqual(r.status, 1)
        XCTAssert(r.stderr.contains(prompts.path) && r.stderr.contains("no prompt"), r.stderr)
        // img2img and inpainting start from that picture.
        for extra in [["--strength", "0.5"], ["--mask", URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Recorded/in-mask.png").path]] {
            r = try runDiffuseCommand(["generate", "image", "--model", Self.model, "--prompt", "a green apple", "--init", one.path,
                                       "--width", "64", "--height", "64", "--steps", "4", "--out", dir.appendingPathComponent("edit.png").path] + extra)
            XCTAssertEqual(r.status, 0, "\(extra): \(r.stderr)")
        }
        // Errors: a size the VAE cannot take, --prompt with a class model, a text model without --prompt.
        r = try runDiffuseCommand(["generate", "image", "--model", Self.model, "--prompt", "x", "--width", "60", "--out", one.path])
        XCTAssertEqual(r.status, 64)
        XCTAssert(r.stderr.contains("--width"), r.stderr)
        r = try runDiffuseCommand(["generate", "image", "--model", Self.model, "--out", one.path])
        XCTAssertEqual(r.status, 64)
        XCTAssert(r.stderr.contains("--prompt"), r.stderr)
        r = try runDiffuseCommand(["generate", "image", "--prompt", "x", "--class", "bag", "--out", one.path])
        XCTAssertEqual(r.status, 64)
        // A user's files: a LoRA for another model, a truncated single file, a pickle: exit 1, the file named.
        let goldens = URL(fileURLWithPath: Self.model).deletingLastPathComponent().deletingLastPathComponent()
        let lora = goldens.appendingPathComponent("lora/kohya.safetensors").path
        r = try runDiffuseCommand(["generate", "image", "--model", Self.model, "--prompt", "x", "--lora", lora + ":0.5", "--width", "64",
                                   "--height", "64", "--steps", "2", "--out", one.path])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssert(r.stderr.contains("kohya.safetensors") && r.stderr.contains("another model"), r.stderr)
        let truncated = dir.appendingPathComponent("cut.safetensors"), pickle = dir.appendingPathComponent("model.ckpt")
        try Data(try Data(contentsOf: goldens.appendingPathComponent("sd-single-file/sd1.safetensors")).prefix(5000)).write(to: truncated)
        try Data("not a pickle we read".utf8).write(to: pickle)
        for (file, words) in [(truncated, "cut.safetensors"), (pickle, "convert it to .safetensors")] {
            r = try runDiffuseCommand(["generate", "image", "--model", file.path, "--prompt", "x", "--out", one.path])
            XCTAssertEqual(r.status, 1, r.stderr)
            XCTAssert(r.stderr.contains(words), r.stderr)
        }
    }
}
