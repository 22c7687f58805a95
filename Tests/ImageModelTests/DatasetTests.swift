import XCTest
import Foundation
import Tensor
@testable import Image
import Diffusion
import NN
import Workflow

final class FashionMNISTTests: XCTestCase {
    func testLoadsDebiansFashionMNIST() throws {
        let train = try FashionMNIST(train: true)
        XCTAssertEqual(train.count, 60_000)
        XCTAssertEqual(train.classNames.count, 10)
        let test = try FashionMNIST(train: false)
        XCTAssertEqual(test.count, 10_000)
        var counts = [Int](repeating: 0, count: 10)
        for i in 0..<train.count { counts[train.label(i)] += 1 }
        XCTAssertEqual(counts, [Int](repeating: 6000, count: 10), "Fashion-MNIST is balanced")
        let (x, labels) = try train.batch([0, 1, 59_999])
        XCTAssertEqual(x.shape, [3, 1, 32, 32])
        XCTAssertEqual(labels.count, 3)
        XCTAssert(x.scalars.allSatisfy { $0 >= -1 && $0 <= 1 })
        // The 2-pixel border is background; the item itself is not empty.
        XCTAssertEqual(x.data[0], -1)
        XCTAssertGreaterThan(x.scalars.filter { $0 > 0 }.count, 100)
    }

    func testMalformedIDXFilesAreErrorsNamingTheFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("idx-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let cases: [(String, [UInt8])] = [
            ("empty", []),
            ("bad magic", [1, 2, 3, 4, 0, 0, 0, 1, 5]),
            ("not bytes", [0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0]),
            ("zero dims", [0, 0, 8, 0]),
            ("zero size", [0, 0, 8, 1, 0, 0, 0, 0]),
            ("absurd size", [0, 0, 8, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 28]),
            ("truncated", [0, 0, 8, 1, 0, 0, 0, 10, 1, 2, 3]),
        ]
        for (name, bytes) in cases {
            let u = dir.appendingPathComponent(name.replacingOccurrences(of: " ", with: "-"))
            try Data(bytes).write(to: u)
            XCTAssertThrowsError(try IDXReader.read(u), name) { e in
                XCTAssert("\(e)".contains(u.path), "\(name): \(e)")
            }
        }
        XCTAssertThrowsError(try IDXReader.read(dir.appendingPathComponent("missing")))
    }
}

final class ImageFolderTests: XCTestCase {
    func testClassFoldersCropResizeAndSkipBadFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("folder-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        for c in ["cat", "ant"] { try FileManager.default.createDirectory(at: dir.appendingPathComponent(c), withIntermediateDirectories: true) }
        // A 3×40×20 red image: the centre 20×20 square, resized to 8×8.
        let red = Tensor.zeros([3, 40, 20])
        for i in 0..<(40 * 20) { red.data[i] = 1; red.data[800 + i] = -1; red.data[1600 + i] = -1 }
        try PNGCodec.write(red, to: dir.appendingPathComponent("cat/a.png"))
        try PNGCodec.write(red, to: dir.appendingPathComponent("ant/b.png"))
        try Data("not a png".utf8).write(to: dir.appendingPathComponent("ant/broken.png"))
        let ds = try ImageFolder(dir, channels: 3, size: 8)
        XCTAssertEqual(ds.classNames, ["ant", "cat"], "class names sorted → labels")
        XCTAssertEqual(ds.count, 3)
        var warnings: [String] = []
        ds.warn = { warnings.append($0) }
        let (x, labels) = try ds.batch([0, 1, 2])
        XCTAssertEqual(x.shape, [3, 3, 8, 8])
        XCTAssertEqual(labels, [0, 0, 1])
        XCTAssertEqual(x.data[0], 1, accuracy: 0.02)           // red channel of b.png
        XCTAssertEqual(x.data[64], -1, accuracy: 0.02)         // green
        XCTAssertEqual(warnings.count, 1)
        XCTAssert(warnings[0].contains("broken.png"), warnings[0])
        XCTAssertEqual(ds.skipped.count, 1)
        XCTAssertThrowsError(try ImageFolder(dir.appendingPathComponent("nope"), channels: 1, size: 8))
        XCTAssertEqual(try ImageFolder(dir, channels: nil, size: 8).channels, 3, "colour files: RGB by default")
        let gray = dir.appendingPathComponent("gray")
        try FileManager.default.createDirectory(at: gray, withIntermediateDirectories: true)
        try PNGCodec.write(Tensor.zeros([1, 4, 4]), to: gray.appendingPathComponent("g.png"))
        XCTAssertEqual(try ImageFolder(gray, channels: nil, size: 8).channels, 1, "gray files: gray by default")
    }

    func testRandomFlipMirrorsOnlyChosenSamples() throws {
        let x = Tensor(shape: [2, 1, 2, 3], scalars: [1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6])
        x.flipWidth(where: [false, true])
        XCTAssertEqual(x.scalars, [1, 2, 3, 4, 5, 6, 3, 2, 1, 6, 5, 4])
    }
}

final class ImageRecipeTests: XCTestCase {
    func testRecipeRoundTripsAndOnlyStepsMayChangeOnResume() throws {
        let r = ImageRecipe.fashionMNIST()
        let back = try JSONDecoder().decode(ImageRecipe.self, from: JSONEncoder().encode(r))
        XCTAssertEqual(back, r)
        var longer = r
        longer.training.steps += 1000
        XCTAssert(r.canResume(as: longer))
        var other = r
        other.training.learningRate *= 2
        XCTAssertFalse(r.canResume(as: other))
        other = r
        other.randomFlip = true
        XCTAssertFalse(r.canResume(as: other))
        other = r
        other.scheduler = r.scheduler.setting(["beta_schedule": .string("squaredcos_cap_v2")])
        XCTAssertFalse(r.canResume(as: other), "another noise schedule trains another model")
        other.scheduler = r.scheduler.setting(["thresholding": .bool(false), "timestep_spacing": .string("trailing")])
        other.previewEvery = 7
        XCTAssert(r.canResume(as: other), "sampling-only settings may change")
        // Keys left out take the defaults.
        let minimal = try JSONDecoder().decode(ImageRecipe.self, from: Data(#"{"model": {"in_channels": 3, "out_channels": 3}}"#.utf8))
        XCTAssertEqual(minimal.model.inChannels, 3)
        XCTAssertEqual(minimal.training, r.training)
        XCTAssertFalse(minimal.randomFlip)
        XCTAssertNil(minimal.snrGamma)
        XCTAssertEqual(minimal.noiseOffset, 0)
    }

    func testObjectiveSettingsRoundTripCountOnResumeAndAreValidated() throws {
        var r = ImageRecipe.fashionMNIST()
        XCTAssertFalse(String(decoding: try JSONEncoder().encode(r), as: UTF8.self).contains("snr_gamma"),
                       "recipes without them stay as they were")
        r.snrGamma = 5
        r.noiseOffset = 0.05
        let back = try JSONDecoder().decode(ImageRecipe.self, from: JSONEncoder().encode(r))
        XCTAssertEqual(back.snrGamma, 5)
        XCTAssertEqual(back.noiseOffset, 0.05)
        XCTAssertFalse(ImageRecipe.fashionMNIST().canResume(as: r), "another loss weighting trains another model")
        let (o, _) = try TrainingRun.objective(recipe: r, labelCount: 11, classes: 10, out: URL(fileURLWithPath: "/tmp/run"))
        XCTAssertEqual(o.minSNRGamma, 5)
        XCTAssertEqual(o.offsetNoise, 0.05)
        for bad in [#""snr_gamma": 0"#, #""snr_gamma": -5"#, #""noise_offset": 2"#, #""noise_offset": -0.1"#] {
            XCTAssertThrowsError(try JSONDecoder().decode(ImageRecipe.self, from: Data(#"{"model": {}, \#(bad)}"#.utf8)), bad) {
                XCTAssert("\($0)".contains(bad.components(separatedBy: "\"")[1]), "\($0)")
            }
        }
    }
}
