import XCTest
import TestSupport
import Foundation
import Tensor
import Image

/// `diffuse args...` as a user runs it (TestSupport's runner).
private func runDiffuse(_ args: [String], env: [String: String] = [:]) throws -> DiffuseResult {
    try runDiffuseCommand(args, env: env)
}

final class EvaluateCommandTests: XCTestCase {
    /// `dataset fashion-mnist` makes two disjoint real folders; `evaluate image` puts one real
    /// folder far closer to the other than a folder of noise, caches its probe, and reports
    /// every figure in JSON.
    func testRealVsRealFDIsFarBelowRealVsNoise() throws {
        guard FileManager.default.fileExists(atPath: FashionMNIST.defaultDirectory.appendingPathComponent("train-images-idx3-ubyte.gz").path) else {
            throw XCTSkip("Fashion-MNIST is not installed (dataset-fashion-mnist)")
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-evaluate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let env = ["XDG_CACHE_HOME": dir.appendingPathComponent("cache").path]
        let real = dir.appendingPathComponent("real"), other = dir.appendingPathComponent("other"), noise = dir.appendingPathComponent("noise")

        var r = try runDiffuse(["dataset", "fashion-mnist", "--out", real.path, "--per-class", "20"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try runDiffuse(["dataset", "fashion-mnist", "--out", other.path, "--per-class", "20", "--offset", "20"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let sneakers = try FileManager.default.contentsOfDirectory(atPath: real.appendingPathComponent("sneaker").path).sorted()
        XCTAssertEqual(sneakers.count, 20)
        XCTAssert(sneakers.allSatisfy { $0.count == 9 && $0.hasSuffix(".png") }, "\(sneakers)")
        XCTAssert(Set(sneakers).isDisjoint(with: try FileManager.default.contentsOfDirectory(atPath: other.appendingPathComponent("sneaker").path)))
        let first = try PNGCodec.readPixels(real.appendingPathComponent("sneaker").appendingPathComponent(sneakers[0]))
        XCTAssertEqual([first.width, first.height, first.channels], [32, 32, 1])

        // Noise named as `generate image` names its files: NNNN-<class>.png.
        try FileManager.default.createDirectory(at: noise, withIntermediateDirectories: true)
        var rng = RandomGenerator(seed: 1)
        let pixels = rng.uniform([200, 1, 32, 32], low: -1, high: 1)
        for i in 0..<200 {
            let one = Tensor(shape: [1, 32, 32], scalars: Array(pixels.scalars[(i * 1024)..<((i + 1) * 1024)]))
            try PNGCodec.write(one, to: noise.appendingPathComponent(String(format: "%04d", i) + "-\(FashionMNIST.names[i % 10]).png"))
        }

        func evaluate(_ generated: URL, _ extra: [String] = []) throws -> [String: Any] {
            let r = try runDiffuse(["evaluate", "image", "--real", real.path, "--generated", generated.path, "--json",
                                    "--probe-steps", "60"] + extra, env: env)
            XCTAssertEqual(r.status, 0, r.stderr)
            return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        }
        let start = Date()
        let same = try evaluate(other, ["--augmentation-gain"])
        let fromNoise = try evaluate(noise)
        print(String(format: "evaluate image: two runs in %.1f s", Date().timeIntervalSince(start)))
        func number(_ o: [String: Any], _ path: String...) -> Double {
            var v: Any? = o
            for k in path { v = (v as? [String: Any])?[k] }
            return (v as? NSNumber)?.doubleValue ?? .nan
        }
        let fdSame = number(same, "fd", "generated"), fdNoise = number(fromNoise, "fd", "generated")
        print("FD real vs real \(fdSame), real vs noise \(fdNoise), floor \(number(same, "fd", "real_floor"));",
              "precision \(number(same, "precision_recall", "precision")) vs \(number(fromNoise, "precision_recall", "precision"))")
        XCTAssertLessThan(fdSame * 5, fdNoise)
        XCTAssertEqual(number(same, "fd", "compared"), 50)
        XCTAssertEqual(number(same, "fd", "repeats"), 16)
        XCTAssertGreaterThan(number(same, "label_agreement"), 0.3)
        XCTAssertLessThan(number(fromNoise, "precision_recall", "precision"), number(same, "precision_recall", "precision") - 0.3)
        XCTAssertLessThan(number(fromNoise, "precision_recall", "coverage"), 0.1)
        XCTAssertGreaterThan(number(same, "precision_recall", "coverage"), 0.5)
        XCTAssertLessThan(number(same, "kid", "generated", "mean"), number(fromNoise, "kid", "generated", "mean"))
        XCTAssertEqual(number(same, "probe", "trained_on"), 100)
        XCTAssertEqual(number(same, "probe", "cached"), 0)
        XCTAssertEqual(number(fromNoise, "probe", "cached"), 1, "the second run reuses the probe")
        XCTAssertEqual(number(same, "memorisation", "reference_share"), 0.05, accuracy: 0.006)
        XCTAssertLessThan(number(same, "memorisation", "share"), 0.2)
        XCTAssertEqual(number(same, "augmentation_gain", "real_images"), 100)
        XCTAssertEqual(number(same, "augmentation_gain", "generated_images"), 200)
        for key in ["real", "generated", "seed", "probe", "fd", "kid", "precision_recall", "label_agreement", "memorisation"] {
            XCTAssertNotNil(fromNoise[key], "JSON lacks \(key)")
        }

        // The real images handed in as generated ones: every one is a copy.
        XCTAssertEqual(number(try evaluate(real), "memorisation", "share"), 1)

        // Text output; a generated class the real set lacks; a bad flag.
        let text = try runDiffuse(["evaluate", "image", "--real", real.path, "--generated", noise.path, "--probe-steps", "60"], env: env)
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssert(text.stdout.contains("FD (probe features") && text.stdout.contains("(cached)"), text.stdout)
        try PNGCodec.write(Tensor.zeros([1, 32, 32]), to: noise.appendingPathComponent("0999-unicorn.png"))
        let unknown = try runDiffuse(["evaluate", "image", "--real", real.path, "--generated", noise.path], env: env)
        XCTAssertEqual(unknown.status, 1)
        XCTAssert(unknown.stderr.contains("unicorn"), unknown.stderr)
        XCTAssertEqual(try runDiffuse(["evaluate", "image", "--real", "builtin:mnist", "--generated", noise.path]).status, 64)
    }
}
