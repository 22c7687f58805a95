import XCTest
import Foundation
@testable import Evaluation
import TestSupport
import Tensor
import Image

/// `evaluate image --prompts DIR --model M`: a text-to-image model judged on the names of a
/// captioned folder. The model is the random tiny pipeline of the SD goldens; the folder is a
/// synthetic emoji-like set (3 groups × 2 subgroups of coloured shapes, 8 held-out names).
final class PromptEvaluationTests: XCTestCase {
    static let model = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("ImageModelTests/Goldens/sd-pipeline/tiny")

    /// 16×16 images: group = colour, subgroup = shape (square or bar), 5 per subgroup seen and
    /// some held out, each captioned by a distinct name.
    static func captionedFolder(_ dir: URL, heldOut: Bool = true, subgroups: Bool = true) throws {
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("holdout"), withIntermediateDirectories: true)
        let colours: [(String, [Float])] = [("red", [1, -1, -1]), ("green", [-1, 1, -1]), ("blue", [-1, -1, 1])]
        var seen: [String] = [], held: [String] = []
        for (g, (colour, rgb)) in colours.enumerated() {
            for shape in ["square", "bar"] {
                for k in 0..<7 {
                    let x = Tensor.zeros([3, 16, 16])
                    for c in 0..<3 {
                        for y in 0..<16 {
                            for xx in 0..<16 {
                                let inside = shape == "square" ? (4..<12).contains(y) && (4..<12).contains(xx)
                                                               : (7..<9).contains(y) && (1 + k / 2..<15).contains(xx)
                                x.data[(c * 16 + y) * 16 + xx] = inside ? rgb[c] * (1 - 0.1 * Float(k)) : 1
                            }
                        }
                    }
                    let isHeld = heldOut && k >= 5 && (g + k) % 2 == 0 || heldOut && k == 6
                    let file = (isHeld ? "holdout/" : "") + "\(colour)-\(shape)-\(k).png"
                    try PNGCodec.write(x, to: dir.appendingPathComponent(file))
                    var fields = [("file_name", file), ("text", "\(colour) \(shape) number \(k)"), ("group", colour)]
                    if subgroups { fields.append(("subgroup", "\(colour)-\(shape)")) }
                    let line = "{" + fields.map { "\"\($0.0)\": \"\($0.1)\"" }.joined(separator: ", ") + "}"
                    if isHeld { held.append(line) } else { seen.append(line) }
                }
            }
        }
        try (seen.joined(separator: "\n") + "\n").write(to: dir.appendingPathComponent("metadata.jsonl"), atomically: true, encoding: .utf8)
        if heldOut { try (held.joined(separator: "\n") + "\n").write(to: dir.appendingPathComponent("holdout.jsonl"), atomically: true, encoding: .utf8) }
    }

    func testReadsTheFolderAndSweeps() throws {
        let tmp = try TemporaryFolder()
        let data = tmp.url.appendingPathComponent("shapes")
        try Self.captionedFolder(data)
        let reference = try CaptionedReference.load(data, size: 16)
        XCTAssertEqual(reference.count, 42)
        XCTAssertEqual(reference.subgroupNames.count, 6)
        XCTAssertEqual(reference.groupNames, ["blue", "green", "red"])
        let held = reference.indices(heldOut: true)
        XCTAssertEqual(held.count, 8)
        XCTAssert(held.allSatisfy { reference.entries[$0].url.path.contains("/holdout/") })
        XCTAssertEqual(reference.groupOfSubgroup[reference.entries[held[0]].subgroup],
                       reference.groupNames.firstIndex(of: String(reference.entries[held[0]].name.split(separator: " ")[0])))

        var options = PromptEvaluationOptions()
        options.guidances = [1, 3]
        options.steps = [2, 3]
        options.maxPrompts = 6
        options.countPerPrompt = 2
        options.probeTraining.steps = 40
        options.repeats = 4
        options.cacheDirectory = tmp.url.appendingPathComponent("cache")
        options.gridPrompts = 2
        XCTAssertEqual(options.crossing.guidance, 3)
        XCTAssertEqual(options.crossing.steps, 3)
        XCTAssertEqual(options.points.map { "\($0.guidance)/\($0.steps)" }, ["1.0/3", "3.0/3", "3.0/2"])
        let pipe = try StableDiffusionPipeline.load(Self.model)
        var grids: [(Bool, [Int], [Int])] = []
        let report = try PromptEvaluation.run(reference: reference, pipeline: pipe, model: "tiny", options: options,
                                              onGrid: { grids.append(($0, $1, $2.shape)) })
        XCTAssertEqual(report.points.count, 3)
        XCTAssertEqual(report.guidanceSweep.map(\.guidance), [1, 3])
        XCTAssertEqual(report.stepsSweep.map(\.steps), [2, 3])
        XCTAssertEqual(report.probe.trainedOn, 34)
        XCTAssertFalse(report.probe.cached)
        XCTAssertEqual(grids.map(\.0), [false, true])
        XCTAssertEqual(grids[0].2, [4, 3, 64, 64], "2 prompts × 2 images at the model's size")
        for point in report.points {
            XCTAssertEqual(point.seen.prompts, 6); XCTAssertEqual(point.seen.images, 12)
            XCTAssertEqual(point.heldOut?.prompts, 6)
            for s in [point.seen, point.heldOut!] {
                for v in [s.subgroupAccuracy, s.groupAccuracy, s.nearestIsNamed, s.namedInNearest5] { XCTAssert((0...1).contains(v)) }
                XCTAssertGreaterThanOrEqual(s.groupAccuracy, s.subgroupAccuracy, "a right subgroup is a right group")
                XCTAssertGreaterThanOrEqual(s.namedInNearest5, s.nearestIsNamed)
                XCTAssertNotNil(s.precisionRecall)
            }
            XCTAssertNotNil(point.seen.fd, "34 seen real images")
            XCTAssertNotNil(point.heldOut?.fd, "8 held-out real images")
        }
        // The same seed gives the same figures, and the probe comes from the cache.
        let again = try PromptEvaluation.run(reference: reference, pipeline: pipe, model: "tiny", options: options)
        XCTAssertTrue(again.probe.cached)
        let enc = JSONEncoder()
        enc.outputFormatting = .sortedKeys
        XCTAssertEqual(try enc.encode(again.points.map(\.seen.subgroupAccuracy)), try enc.encode(report.points.map(\.seen.subgroupAccuracy)))
        XCTAssertEqual(again.points.map { $0.seen.fd?.generated }, report.points.map { $0.seen.fd?.generated })
    }

    /// The scores of a generator that returns the named real images: every nearest real image is
    /// the named one, and the accuracies are the probe's own on those images.
    func testAPerfectGeneratorFindsItsNames() throws {
        let tmp = try TemporaryFolder()
        let data = tmp.url.appendingPathComponent("shapes")
        try Self.captionedFolder(data)
        let reference = try CaptionedReference.load(data, size: 16)
        let labels = reference.entries.map(\.subgroup)
        let config = ImageProbeConfig(channels: 3, size: 16, classNames: reference.subgroupNames)
        var training = ProbeTraining()
        training.steps = 40
        let probe = ImageProbe.train(images: reference.images, labels: labels, config: config, training: training, seed: 1)
        let (features, predictions) = probe.embed(reference.images)
        let (std, _) = ImageEvaluation.standardised(features, features)
        let named = reference.indices(heldOut: false)
        var options = PromptEvaluationOptions()
        options.repeats = 2
        let s = PromptEvaluation.score(prompts: named, predictions: named.map { predictions[$0] }, generated: rows(std, named), realStd: std,
                                       realRows: named, named: named, reference: reference, options: options)
        XCTAssertEqual(s.nearestIsNamed, 1)
        XCTAssertEqual(s.namedInNearest5, 1)
        XCTAssertEqual(s.subgroupAccuracy, Double(named.filter { predictions[$0] == labels[$0] }.count) / Double(named.count))
        XCTAssertEqual(s.precisionRecall?.precision, 1)
        XCTAssertEqual(s.precisionRecall?.recall, 1)
        // Shuffled names: the nearest real image is no longer the named one.
        let shifted = named.map { named[(named.firstIndex(of: $0)! + 1) % named.count] }
        let t = PromptEvaluation.score(prompts: shifted, predictions: named.map { predictions[$0] }, generated: rows(std, named), realStd: std,
                                       realRows: named, named: named, reference: reference, options: options)
        XCTAssertEqual(t.nearestIsNamed, 0)
    }

    func testCommandLine() throws {
        let tmp = try TemporaryFolder()
        let data = tmp.url.appendingPathComponent("shapes"), grid = tmp.url.appendingPathComponent("grid.png")
        try Self.captionedFolder(data)
        let env = ["XDG_CACHE_HOME": tmp.url.appendingPathComponent("cache").path]
        let base = ["evaluate", "image", "--prompts", data.path, "--model", Self.model.path, "--size", "16", "--probe-steps", "30",
                    "--max-prompts", "3"]
        var r = try runDiffuseCommand(base + ["--guidance", "1,2", "--steps", "2", "--grid", grid.path], env: env)
        XCTAssertEqual(r.status, 0, r.stderr)
        for part in ["guidance sweep at 2 steps", "steps sweep at guidance 2", "held-out 3", "seen 3", "subgroup", "nearest"] {
            XCTAssert(r.stdout.contains(part), "lacks \(part):\n\(r.stdout)")
        }
        let image = try PNGCodec.read(grid, mode: .rgb)
        XCTAssertEqual(image.shape[0], 3)
        XCTAssertGreaterThan(image.shape[1], image.shape[2] * 2, "6 rows of 2 columns")
        r = try runDiffuseCommand(base + ["--guidance", "1", "--steps", "2", "--json"], env: env)
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        let points = json?["points"] as? [[String: Any]]
        XCTAssertEqual(points?.count, 1)
        XCTAssertNotNil((points?.first?["held_out"] as? [String: Any])?["subgroup_accuracy"])
        XCTAssertEqual((json?["probe"] as? [String: Any])?["cached"] as? Bool, true)
        // Usage errors exit 64; a folder without subgroups is an error naming its metadata.
        for bad in [["evaluate", "image", "--prompts", data.path], base + ["--real", data.path], base + ["--guidance", "1,x"],
                    base + ["--steps", "0"], ["evaluate", "image", "--model", Self.model.path], base + ["--grid", "g.gif"]] {
            XCTAssertEqual(try runDiffuseCommand(bad, env: env).status, 64, "\(bad)")
        }
        let plain = tmp.url.appendingPathComponent("plain")
        try Self.captionedFolder(plain, heldOut: false, subgroups: false)
        r = try runDiffuseCommand(["evaluate", "image", "--prompts", plain.path, "--model", Self.model.path, "--size", "16"], env: env)
        XCTAssertEqual(r.status, 1)
        XCTAssert(r.stderr.contains("metadata.jsonl") && r.stderr.contains("subgroup"), r.stderr)
    }
}
