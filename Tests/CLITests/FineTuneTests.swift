import XCTest
import TestSupport
import Foundation
import Tensor
import NN
import Image
import Workflow

/// `train … --init-from MODEL`: a run that starts from a model folder's weights (fine-tuning).
final class FineTuneTests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-finetune-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { if let tmp { try? FileManager.default.removeItem(at: tmp) } }

    static func config(widths: [Int] = [8, 16], classes: Int? = 11) throws -> UNet2DConfig {
        let json = """
        {"sample_size": 32, "in_channels": 1, "out_channels": 1, "block_out_channels": \(widths),
         "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
         "layers_per_block": 1, "norm_num_groups": 4, "attention_head_dim": 8\(classes.map { ", \"num_class_embeds\": \($0)" } ?? "")}
        """
        return try JSONDecoder().decode(UNet2DConfig.self, from: Data(json.utf8))
    }

    /// A saved model with seed-7 weights, as a fine-tuning source.
    func source(_ config: UNet2DConfig) throws -> (URL, [String: Tensor]) {
        NNInit.seed(7)
        let model = try UNet2DModel(config: config)
        let folder = tmp.appendingPathComponent("source-\(UUID().uuidString)")
        try model.save(to: folder)
        return (folder, model.stateDict())
    }

    func recipe(_ config: UNet2DConfig, from: URL?) -> ImageRecipe {
        var r = ImageRecipe.fashionMNIST()
        r.model = config
        r.initFrom = from?.path
        return r
    }

    func testARunStartsFromTheFoldersWeightsUnlessItResumes() throws {
        let config = try Self.config()
        let (folder, weights) = try source(config)
        let started = try ImageModality.makeModel(for: recipe(config, from: folder), resuming: false).stateDict()
        XCTAssertEqual(Set(started.keys), Set(weights.keys))
        for (k, w) in weights { XCTAssertEqual(started[k]!.scalars, w.scalars, k) }
        // A resumed run's checkpoint overwrites the weights: the folder is not read (nor needed).
        try FileManager.default.removeItem(at: folder)
        let resumed = try ImageModality.makeModel(for: recipe(config, from: folder), resuming: true).stateDict()
        XCTAssertNotEqual(resumed["conv_in.weight"]!.scalars, weights["conv_in.weight"]!.scalars)
        XCTAssertThrowsError(try ImageModality.makeModel(for: recipe(config, from: folder), resuming: false))
    }

    func testAnotherClassCountDrawsANewClassEmbeddingAndKeepsTheRest() throws {
        let (folder, weights) = try source(try Self.config(classes: 11))
        let model = try ImageModality.makeModel(for: recipe(try Self.config(classes: 4), from: folder), resuming: false)
        let state = model.stateDict()
        XCTAssertEqual(state["class_embedding.weight"]!.shape, [4, 32])
        for (k, w) in weights where !k.hasPrefix("class_embedding.") { XCTAssertEqual(state[k]!.scalars, w.scalars, k) }
        // The start reports what it left as drawn.
        XCTAssertEqual(try model.start(from: folder), ["class_embedding.weight"])
    }

    func testAnotherArchitectureOrAFolderWithoutWeightsIsRefusedByName() throws {
        let (folder, _) = try source(try Self.config(widths: [8, 16]))
        XCTAssertThrowsError(try ImageModality.makeModel(for: recipe(try Self.config(widths: [16, 32]), from: folder), resuming: false)) {
            let message = "\($0)"
            XCTAssert(message.contains(folder.path) && message.contains("block_out_channels"), message)
        }
        try FileManager.default.removeItem(at: folder.appendingPathComponent(ModelFolder.weightsName))
        XCTAssertThrowsError(try ImageModality.makeModel(for: recipe(try Self.config(), from: folder), resuming: false)) {
            let message = "\($0)"
            XCTAssert(message.contains(folder.path) && message.contains("safetensors"), message)
        }
    }

    func testInitFromIsRecordedKeptOnResumeAndDoesNotBlockIt() throws {
        let config = try Self.config()
        let a = recipe(config, from: URL(fileURLWithPath: "/models/a"))
        let json = try JSONEncoder().encode(a)
        XCTAssert(String(decoding: json, as: UTF8.self).contains("\"init_from\""))
        let back = try JSONDecoder().decode(ImageRecipe.self, from: json)
        XCTAssertEqual(back, a)
        // Where the weights started only matters before the first checkpoint.
        let b = recipe(config, from: nil)
        XCTAssert(a.canResume(as: b))
        XCTAssertEqual(b.resumed(from: a).initFrom, "/models/a")
        XCTAssertEqual(recipe(config, from: URL(fileURLWithPath: "/models/c")).resumed(from: a).initFrom, "/models/c")
    }

    /// Through the executable: fine-tune a one-step run's model without --config (the run takes
    /// the folder's config), resume it, and the refusals.
    func testTrainImageInitFromThroughTheCommand() throws {
        let recipeFile = tmp.appendingPathComponent("tiny.json"), first = tmp.appendingPathComponent("first")
        let config = String(decoding: try JSONEncoder().encode(try Self.config()), as: UTF8.self)
        try Data("{\"model\": \(config), \"training\": {\"steps\": 1, \"batch_size\": 2}}".utf8).write(to: recipeFile)
        var r = try runDiffuseCommand(["train", "image", "--data", "builtin:fashion-mnist", "--config", recipeFile.path, "--out", first.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let model = first.appendingPathComponent("model"), tuned = tmp.appendingPathComponent("tuned")
        r = try runDiffuseCommand(["train", "image", "--data", "builtin:fashion-mnist", "--init-from", model.path,
                                   "--steps", "1", "--batch", "2", "--out", tuned.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stdout.contains("starting from the weights of \(model.path)"), r.stdout)
        let recipe = try ImageRecipe.load(tuned.appendingPathComponent("recipe.json"))
        XCTAssertEqual(recipe.initFrom, model.path)
        XCTAssertEqual(recipe.model.blockOutChannels, [8, 16], "the folder's config, not the default recipe's")
        r = try runDiffuseCommand(["train", "image", "--data", "builtin:fashion-mnist", "--steps", "2", "--batch", "2",
                                   "--config", tuned.appendingPathComponent("recipe.json").path, "--out", tuned.path, "--resume"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try ImageRecipe.load(tuned.appendingPathComponent("recipe.json")).initFrom, model.path)
        // A folder of another kind is named with what it holds.
        r = try runDiffuseCommand(["train", "image", "--data", "builtin:fashion-mnist", "--init-from", tmp.appendingPathComponent("nothing").path,
                                   "--steps", "1", "--out", tmp.appendingPathComponent("bad").path])
        XCTAssertEqual(r.status, 1)
        XCTAssert(r.stderr.contains("nothing"), r.stderr)
    }
}
