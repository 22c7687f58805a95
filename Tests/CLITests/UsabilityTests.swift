import XCTest
import TestSupport
import Foundation
import Media
import Workflow
import Audio
import Tensor

/// Issue 20, through the executable with the bundled models (2-4 steps each).
final class UsabilityTests: XCTestCase {
    static let samples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("samples")
    var tmp: URL!

    override func setUpWithError() throws {
        for m in ["image", "audio"] {
            try XCTSkipUnless(FileManager.default.fileExists(atPath: Self.samples.appendingPathComponent("\(m)/model_index.json").path))
        }
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-usability-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { if let tmp { try? FileManager.default.removeItem(at: tmp) } }

    func run(_ args: [String], env: [String: String]? = nil) throws -> DiffuseResult {
        try runDiffuseCommand(args, env: env ?? ["DIFFUSE_SAMPLES": Self.samples.path])
    }
    func path(_ s: String) -> String { tmp.appendingPathComponent(s).path }
    func exists(_ s: String) -> Bool { FileManager.default.fileExists(atPath: path(s)) }

    // 1, 5: a file name writes one file; several need --grid; -o, --cfg-scale, --seed -1.
    func testOutFileOneOrAClearError() throws {
        var r = try run(["generate", "image", "--class", "bag", "--count", "1", "--steps", "2", "-o", path("one.png"), "--cfg-scale", "3", "--seed", "-1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        var isDir: ObjCBool = true
        XCTAssert(FileManager.default.fileExists(atPath: path("one.png"), isDirectory: &isDir) && !isDir.boolValue)
        XCTAssert(r.stdout.contains("1 image,") && r.stdout.contains("(random; --seed"), r.stdout)
        r = try run(["generate", "image", "--class", "bag", "--count", "2", "--steps", "2", "--out", path("two.png")])
        XCTAssertEqual(r.status, 64)
        XCTAssert(r.stderr.contains("--grid") && r.stderr.contains("Usage: diffuse generate image"), r.stderr)
        XCTAssertFalse(exists("two.png"))
        r = try run(["generate", "audio", "--steps", "2", "--out", path("e16.mp3")])
        XCTAssertEqual(r.status, 64)
        XCTAssert(r.stderr.contains(".mp3"), r.stderr)
        XCTAssertEqual(try run(["generate", "image", "--seed", "-2", "--out", path("x")]).status, 64)
    }

    // 2, 6: --init without --class keeps the input's class (from its name), makes one output named after it;
    // summaries pluralise and give the time; errors show the subcommand's usage; --json.
    func testInitKeepsItsInputAndSummaries() throws {
        var r = try run(["generate", "image", "--class", "sneaker", "--count", "1", "--steps", "2", "--out", path("sneaker.png")])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(r.stderr.contains("1/2  ") && r.stderr.range(of: #"1/\d+  \d{4,}"#, options: .regularExpression) != nil, r.stderr)
        r = try run(["generate", "image", "--init", path("sneaker.png"), "--steps", "4", "--out", path("var"), "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(obj?["classes"] as? [String], ["sneaker"])
        XCTAssertEqual(obj?["files"] as? [String], [path("var/sneaker-0000.png")])
        XCTAssertEqual(obj?["strength"] as? Double, 0.5)
        XCTAssertNotNil(obj?["seconds"] as? Double)
        r = try run(["generate", "image", "--class", "sneakr", "--steps", "2", "--out", path("x")])
        XCTAssertEqual(r.status, 64)
        XCTAssert(r.stderr.contains("Usage: diffuse generate image"), r.stderr)
        r = try run(["augment", "image", "--reproduce", "{\"file\": \"a.png\"}", "--out", path("a.png")])
        XCTAssertEqual(r.status, 64)
        XCTAssert(r.stderr.contains("the field `class` is missing") && r.stderr.contains("Usage: diffuse augment image"), r.stderr)
    }

    // 3: a filled gap has no click at its seams.
    func testGapFillCrossfadesAtTheSeams() throws {
        let rate = 16_000, n = 16_384
        let note = (0..<n).map { Float(0.4 * sin(2 * Double.pi * 261.63 * Double($0) / Double(rate))) }
        try AudioCodec.write(AudioClip(samples: Tensor(shape: [1, n], scalars: note), sampleRate: rate), to: tmp.appendingPathComponent("60.wav"))
        let r = try run(["generate", "audio", "--init", path("60.wav"), "--mask-from", "0.3", "--mask-to", "0.6", "--steps", "3", "--out", path("filled.wav")])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stdout.hasPrefix("1 clip (") && r.stdout.contains("class 60"), r.stdout)
        let out = try AudioCodec.read(tmp.appendingPathComponent("filled.wav")).samples.scalars
        let typical = zip(note.dropFirst(), note).map { abs($0 - $1) }.max()!
        for seam in [Int(0.3 * Double(rate)), Int(0.6 * Double(rate))] {
            let jump = (seam - 2..<seam + 2).map { abs(out[$0 + 1] - out[$0]) }.max()!
            XCTAssertLessThan(jump, 2 * typical + 0.01, "a click at sample \(seam)")
        }
    }

    // 4: a model of the wrong kind names what it is and the command that runs it.
    func testWrongKindOfModelSaysWhichCommand() throws {
        let r = try run(["generate", "image", "--model", Self.samples.appendingPathComponent("audio").path, "--steps", "2", "--out", path("x")])
        XCTAssertEqual(r.status, 1)
        XCTAssert(r.stderr.contains("this is an audio model (UNet1DModel)") && r.stderr.contains("diffuse generate audio"), r.stderr)
    }

    // 5, 8: --threads everywhere it computes; class names listed.
    func testHelpClassesAndBundledModelHint() throws {
        XCTAssertEqual(try run(["spectrogram", "--help"]).stdout.contains("--threads"), true)
        XCTAssertEqual(try run(["evaluate", "audio", "--help"]).stdout.contains("--threads"), true)
        XCTAssert(try run(["generate", "image", "--help"]).stdout.contains("ankle-boot"))
        let inspect = try run(["inspect", Self.samples.appendingPathComponent("image").path])
        XCTAssert(inspect.stdout.contains("classes") && inspect.stdout.contains("sneaker"), inspect.stdout)
    }

    // 9, 11, 12: augment matches differently spelled class folders, says so, and writes in the inputs' size.
    func testAugmentMatchesFolderNamesAndKeepsTheInputSize() throws {
        let data = tmp.appendingPathComponent("small")
        for name in ["Ankle_boot", "T-shirt_top"] {
            let dir = data.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try PNGCodec.write(Pixels(width: 28, height: 28, channels: 1, bytes: [UInt8](repeating: 40, count: 784)), to: dir.appendingPathComponent("a.png"))
        }
        let r = try run(["augment", "image", "--data", data.path, "--out", path("more"), "--per-class", "1", "--steps", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stdout.contains("Ankle_boot → the model's class ankle-boot") && r.stdout.contains("T-shirt_top → the model's class t-shirt"), r.stdout)
        let made = try PNGCodec.readPixels(tmp.appendingPathComponent("more/Ankle_boot/gen-s0-00000.png"))
        XCTAssertEqual([made.width, made.height, made.channels], [28, 28, 1])
        // The dataset's own order: classes.json orders the class folders.
        try ClassFolder.writeOrder(["T-shirt_top", "Ankle_boot"], in: data)
        XCTAssertEqual(try ClassFolder(data, extensions: ["png"]).classNames, ["T-shirt_top", "Ankle_boot"])
    }

    // 13: the README's quick start runs as written (with --steps 2 and the outputs in a temporary folder).
    func testReadmeQuickStartRuns() throws {
        let readme = Self.samples.deletingLastPathComponent().appendingPathComponent("README.md")
        let text = try String(contentsOf: readme, encoding: .utf8)
        guard let a = text.range(of: "<!-- quick start"), let b = text.range(of: "<!-- end quick start -->") else {
            return XCTFail("README has no quick start block")
        }
        let commands = text[a.upperBound..<b.lowerBound].split(separator: "\n").map(String.init).filter { $0.hasPrefix("diffuse ") }
        XCTAssertEqual(commands.count, 4, "the quick start's commands")
        for m in ["video", "text-to-image"] {
            try XCTSkipUnless(FileManager.default.fileExists(atPath: Self.samples.appendingPathComponent("\(m)/model_index.json").path))
        }
        for c in commands {
            var args = Array(Self.shellWords(c).dropFirst())
            for i in args.indices.dropLast() where args[i] == "-o" || args[i] == "--out" || args[i] == "--spectrogram" {
                args[i + 1] = path(args[i + 1])
            }
            let r = try run(args + ["--steps", "2"])
            XCTAssertEqual(r.status, 0, "\(c): \(r.stderr)")
        }
        for f in ["sneakers.png", "melody.wav", "melody.png", "bag.gif", "apples.png"] { XCTAssert(exists(f), f) }
    }

    /// A command line's words as a shell splits them: spaces separate, double quotes group.
    static func shellWords(_ line: String) -> [String] {
        var words: [String] = [], word = "", quoted = false, started = false
        for ch in line {
            if ch == "\"" { quoted.toggle(); started = true } else if ch == " " && !quoted {
                if started { words.append(word) }
                word = ""; started = false
            } else { word.append(ch); started = true }
        }
        if started { words.append(word) }
        return words
    }

    // 7: an installed binary finds the models in PREFIX/share/diffuse; a copied one without them names DIFFUSE_SAMPLES.
    func testInstalledLayoutAndACopiedBinary() throws {
        let fm = FileManager.default
        let bin = tmp.appendingPathComponent("prefix/bin")
        try fm.createDirectory(at: bin, withIntermediateDirectories: true)
        try fm.copyItem(at: diffuseExecutable, to: bin.appendingPathComponent("diffuse"))
        func copied(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
            let p = Process()
            p.executableURL = bin.appendingPathComponent("diffuse")
            p.arguments = args
            p.currentDirectoryURL = tmp
            p.environment = ProcessInfo.processInfo.environment.filter { $0.key != "DIFFUSE_SAMPLES" }
            let out = Pipe(), err = Pipe()
            p.standardOutput = out; p.standardError = err
            try p.run()
            let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
        }
        var r = try copied(["generate", "image", "--class", "bag", "--count", "1", "--steps", "1", "--out", path("a.png")])
        XCTAssertEqual(r.status, 1)
        XCTAssert(r.stderr.contains("DIFFUSE_SAMPLES") && r.stderr.contains("make install"), r.stderr)
        let share = tmp.appendingPathComponent("prefix/share/diffuse")
        try fm.createDirectory(at: share, withIntermediateDirectories: true)
        try fm.copyItem(at: Self.samples.appendingPathComponent("image"), to: share.appendingPathComponent("image"))
        r = try copied(["generate", "image", "--class", "bag", "--count", "1", "--steps", "1", "--out", path("a.png")])
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    // 12: the same index names the same class on the image and video models; summaries name the classes.
    func testClassIndicesAgreeAcrossBundledModels() throws {
        for m in ["video", "text-to-image"] {
            try XCTSkipUnless(FileManager.default.fileExists(atPath: Self.samples.appendingPathComponent("\(m)/model_index.json").path))
        }
        for m in ["image", "video"] {
            let r = try run(["generate", m, "--class", "0,9", "--count", "2", "--steps", "1"] + (m == "video" ? ["--frames", "2"] : [])
                            + ["--out", path(m), "--json"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            XCTAssertEqual(obj?["classes"] as? [String], ["t-shirt", "ankle-boot"], m)
        }
    }

    // A folder's sampling.json sets the guidance, the timesteps it applies at and the steps used
    // when none are asked for, in generate and augment alike; a bad one is an error naming it.
    func testAFoldersSamplingDefaultsApplyWhenNoneAreAsked() throws {
        let fm = FileManager.default
        let plain = tmp.appendingPathComponent("plain"), tuned = tmp.appendingPathComponent("tuned")
        try fm.copyItem(at: Self.samples.appendingPathComponent("audio"), to: plain)
        try? fm.removeItem(at: plain.appendingPathComponent("sampling.json"))
        try fm.copyItem(at: plain, to: tuned)
        try Data(#"{"guidance_scale": 3.5, "guidance_interval": [0, 400], "num_inference_steps": 2}"#.utf8)
            .write(to: tuned.appendingPathComponent("sampling.json"))
        func wav(_ model: URL, _ extra: [String], _ name: String) throws -> Data {
            let r = try run(["generate", "audio", "--model", model.path, "--class", "60", "--seed", "1", "--out", path(name)] + extra)
            XCTAssertEqual(r.status, 0, r.stderr)
            return try Data(contentsOf: URL(fileURLWithPath: path(name)))
        }
        let byDefault = try wav(tuned, [], "tuned.wav")
        XCTAssertEqual(byDefault, try wav(plain, ["--steps", "2", "--guidance", "3.5", "--guidance-interval", "0,400"], "asked.wav"))
        XCTAssertNotEqual(byDefault, try wav(plain, ["--steps", "2", "--guidance", "3.5"], "everywhere.wav"), "the interval acts (the first step is above 400)")
        XCTAssertNotEqual(byDefault, try wav(plain, ["--steps", "2"], "plain.wav"), "without it: guidance 2")
        XCTAssertEqual(try wav(tuned, ["--guidance", "2", "--guidance-interval", "0,1000"], "override.wav"), try wav(plain, ["--steps", "2"], "plain2.wav"),
                       "asked wins")
        // augment records the folder's guidance.
        let data = tmp.appendingPathComponent("data/60")
        try fm.createDirectory(at: data, withIntermediateDirectories: true)
        try byDefault.write(to: data.appendingPathComponent("real.wav"))
        let r = try run(["augment", "audio", "--data", data.deletingLastPathComponent().path, "--model", tuned.path, "--per-class", "1",
                         "--out", path("aug")])
        XCTAssertEqual(r.status, 0, r.stderr)
        let manifest = try String(contentsOfFile: path("aug/manifest.jsonl"), encoding: .utf8)
        XCTAssert(manifest.contains(#""guidance":3.5"#) && manifest.contains(#""steps":2"#) && manifest.contains(#""guidance_interval":[0,400]"#), manifest)
        for (text, key) in [(#"{"guidance_scale": 99}"#, "guidance_scale"), (#"{"guidance_interval": [600, 100]}"#, "guidance_interval"),
                            (#"{"guidance_interval": [0, 2000]}"#, "guidance_interval")] {
            try Data(text.utf8).write(to: tuned.appendingPathComponent("sampling.json"))
            let bad = try run(["generate", "audio", "--model", tuned.path, "--out", path("bad.wav")])
            XCTAssertEqual(bad.status, 1, text)
            XCTAssert(bad.stderr.contains("sampling.json") && bad.stderr.contains(key), bad.stderr)
        }
    }

    // Reconstruction guidance: --reconstruction-guidance on a gap fill changes the filled part
    // only, and equals the folder's sampling.json value when that is given instead; without a
    // kept part, or out of range, it is refused with a message naming the option.
    func testReconstructionGuidanceAppliesWhereAPartIsKept() throws {
        let fm = FileManager.default
        let tuned = tmp.appendingPathComponent("tuned-rg")
        try fm.copyItem(at: Self.samples.appendingPathComponent("audio"), to: tuned)
        // The bundled folder's own defaults plus the weight.
        let sampling = tuned.appendingPathComponent("sampling.json")
        var defaults = (try? JSONSerialization.jsonObject(with: Data(contentsOf: sampling)) as? [String: Any]) ?? [:]
        defaults["reconstruction_guidance"] = 5
        try JSONSerialization.data(withJSONObject: defaults).write(to: sampling)
        let note = tmp.appendingPathComponent("note.wav")
        let made = try run(["generate", "audio", "--class", "60", "--steps", "2", "--seed", "3", "--out", note.path])
        XCTAssertEqual(made.status, 0, made.stderr)
        func fill(_ extra: [String], model: URL? = nil, _ name: String) throws -> Data {
            let r = try run(["generate", "audio", "--init", note.path, "--mask-from", "0.4", "--mask-to", "0.6", "--class", "60",
                             "--steps", "3", "--seed", "4", "--out", path(name)] + (model.map { ["--model", $0.path] } ?? []) + extra)
            XCTAssertEqual(r.status, 0, r.stderr)
            return try Data(contentsOf: URL(fileURLWithPath: path(name)))
        }
        let plain = try fill([], "plain.wav"), guided = try fill(["--reconstruction-guidance", "5"], "guided.wav")
        XCTAssertNotEqual(plain, guided)
        XCTAssertEqual(try fill([], model: tuned, "tuned.wav"), guided, "the folder's sampling.json value is the default")
        XCTAssertEqual(try fill(["--reconstruction-guidance", "0"], model: tuned, "off.wav"), plain, "asked wins")
        // The summary says which weight a kept part was generated with (and says nothing where nothing was kept).
        let reported = try run(["generate", "audio", "--init", note.path, "--mask-from", "0.4", "--mask-to", "0.6", "--class", "60",
                                "--steps", "1", "--model", tuned.path, "--json", "--out", path("reported.wav")])
        XCTAssertEqual(reported.status, 0, reported.stderr)
        let summary = try JSONSerialization.jsonObject(with: Data(reported.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(summary?["reconstructionGuidance"] as? Double, 5, reported.stdout)
        let text = try run(["generate", "audio", "--init", note.path, "--mask-from", "0.4", "--mask-to", "0.6", "--class", "60",
                            "--steps", "1", "--out", path("text.wav")])
        XCTAssert(text.stdout.contains("reconstruction guidance 0"), text.stdout)
        let none = try run(["generate", "audio", "--class", "60", "--steps", "1", "--json", "--out", path("none.wav")])
        XCTAssertNil((try JSONSerialization.jsonObject(with: Data(none.stdout.utf8)) as? [String: Any])?["reconstructionGuidance"], none.stdout)
        let nothingKept = try run(["generate", "audio", "--class", "60", "--steps", "1", "--reconstruction-guidance", "2", "--out", path("x.wav")])
        XCTAssertNotEqual(nothingKept.status, 0)
        XCTAssert(nothingKept.stderr.contains("--reconstruction-guidance applies where part of an input is kept"), nothingKept.stderr)
        let negative = try run(["generate", "audio", "--class", "60", "--reconstruction-guidance", "-1", "--out", path("y.wav")])
        XCTAssertNotEqual(negative.status, 0)
        XCTAssert(negative.stderr.contains("--reconstruction-guidance"), negative.stderr)
    }

    /// --guidance-interval: a different image than full guidance, the same as no interval when it
    /// spans every timestep; reported in the summary and the PNG's parameters; bad values refused.
    func testGuidanceIntervalIsAppliedReportedAndChecked() throws {
        func image(_ extra: [String], _ name: String) throws -> (Data, DiffuseResult) {
            let r = try run(["generate", "image", "--class", "bag", "--count", "1", "--steps", "3", "--seed", "5", "--out", path(name)] + extra)
            XCTAssertEqual(r.status, 0, r.stderr)
            return (try Data(contentsOf: URL(fileURLWithPath: path(name))), r)
        }
        let full = try image([], "full.png").0
        let (limited, r) = try image(["--guidance-interval", "0,500", "--json"], "limited.png")
        XCTAssertNotEqual(limited, full)
        let summary = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(summary?["guidanceInterval"] as? [Double], [0, 500], r.stdout)
        let whole = try image(["--guidance-interval", "0,1000"], "whole.png")
        XCTAssert(whole.1.stdout.contains("guidance 2 at timesteps 0–1000"), whole.1.stdout)
        let text = try PNGCodec.textChunks(URL(fileURLWithPath: path("whole.png")))
        XCTAssert(text.contains { $0.0 == "parameters" && $0.1.contains("Guidance interval: 0.0-1000.0") }, "\(text)")
        XCTAssertEqual(try PNGCodec.read(URL(fileURLWithPath: path("whole.png"))).scalars,
                       try PNGCodec.read(URL(fileURLWithPath: path("full.png"))).scalars, "an interval over every timestep is full guidance")
        for bad in ["600,100", "-5,100", "0,2000", "x"] {
            let b = try run(["generate", "image", "--guidance-interval", bad, "--out", path("bad.png")])
            XCTAssertEqual(b.status, 64, bad)
            XCTAssert(b.stderr.contains("--guidance-interval"), b.stderr)
        }
        // augment records the interval and the rescale in its manifest, and each line makes its
        // file again; a run into the folder with other values is refused, not mixed in.
        let bag = tmp.appendingPathComponent("data/bag")
        try FileManager.default.createDirectory(at: bag, withIntermediateDirectories: true)
        try PNGCodec.write(Tensor(shape: [1, 28, 28], scalars: (0..<784).map { Float($0 % 9) / 9 }), to: bag.appendingPathComponent("0.png"))
        func augment(_ out: String, _ extra: [String]) throws -> DiffuseResult {
            try run(["augment", "image", "--data", path("data"), "--out", path(out), "--per-class", "2", "--steps", "3"] + extra)
        }
        var a = try augment("aug", ["--guidance-interval", "0,500", "--guidance-rescale", "0.5"])
        XCTAssertEqual(a.status, 0, a.stderr)
        let lines = try String(contentsOfFile: path("aug/manifest.jsonl"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        let record = try JSONDecoder().decode(AugmentationRecord.self, from: Data(lines[1].utf8))
        XCTAssertEqual(record.guidanceInterval, [0, 500])
        XCTAssertEqual(record.guidanceRescale, 0.5)
        a = try run(["augment", "image", "--reproduce", String(lines[1]), "--out", path("again.png")])
        XCTAssertEqual(a.status, 0, a.stderr)
        let made = try Data(contentsOf: URL(fileURLWithPath: path("aug/" + record.file)))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path("again.png"))), made)
        a = try augment("plain", [])
        XCTAssertEqual(a.status, 0, a.stderr)
        XCTAssertNotEqual(try Data(contentsOf: URL(fileURLWithPath: path("plain/" + record.file))), made, "the interval and rescale act")
        a = try augment("aug", ["--guidance-interval", "0,400", "--guidance-rescale", "0.5"])
        XCTAssertEqual(a.status, 1, a.stdout)
        XCTAssert(a.stderr.contains("other settings"), a.stderr)
        // and DDIM's η
        a = try augment("eta", ["--sampler", "ddim", "--eta", "0.5"])
        XCTAssertEqual(a.status, 0, a.stderr)
        let etaLine = try XCTUnwrap(try String(contentsOfFile: path("eta/manifest.jsonl"), encoding: .utf8).split(separator: "\n").last)
        let etaRecord = try JSONDecoder().decode(AugmentationRecord.self, from: Data(etaLine.utf8))
        XCTAssertEqual(etaRecord.eta, 0.5)
        a = try run(["augment", "image", "--reproduce", String(etaLine), "--out", path("again-eta.png")])
        XCTAssertEqual(a.status, 0, a.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path("again-eta.png"))),
                       try Data(contentsOf: URL(fileURLWithPath: path("eta/" + etaRecord.file))))
    }

    /// Autoguidance through the command: a model guided by itself is its plain conditional
    /// sampling (p_weak = p, bit for bit); a guide of another kind or shape is refused by name;
    /// a --fast student cannot take one.
    func testGuideModelThroughTheCommand() throws {
        let image = Self.samples.appendingPathComponent("image").path
        let args = ["generate", "image", "--class", "bag,shirt", "--steps", "3", "--seed", "5"]
        var r = try run(args + ["--guide-model", image, "--guidance", "3", "--raw", path("self.safetensors"), "--out", path("a")])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try run(args + ["--guidance", "1", "--raw", path("plain.safetensors"), "--out", path("b")])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path("self.safetensors"))),
                       try Data(contentsOf: URL(fileURLWithPath: path("plain.safetensors"))))
        let audio = Self.samples.appendingPathComponent("audio").path
        r = try run(args + ["--guide-model", audio, "--out", path("c")])
        XCTAssertEqual(r.status, 1)
        XCTAssert(r.stderr.contains(audio), r.stderr)
        r = try run(args + ["--guide-model", image, "--fast", "--out", path("d")])
        XCTAssertEqual(r.status, 64)
        XCTAssert(r.stderr.contains("--guide-model"), r.stderr)
    }
}
