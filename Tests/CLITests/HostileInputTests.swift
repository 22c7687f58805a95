import XCTest
import Foundation
import TestSupport
import Tensor
import NN
import Image
import Audio
import Diffusion

/// Issue 21: legal files with hostile numbers, and concurrent use. Every case runs the built
/// `diffuse` as a user would, under an address-space limit: it must end in exit 1 with a
/// message naming the file and the key — no signal (a trap), no unbounded allocation, no hang.
final class HostileInputTests: XCTestCase {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Hostile/configs")
    /// What a tiny model's run maps at most (the Swift runtime and OpenBLAS' buffers included).
    static let memoryLimit = 6 << 30

    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-hostile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func run(_ args: [String], env: [String: String] = [:]) throws -> DiffuseResult {
        try runDiffuseCommand(args, env: env.merging(["DIFFUSE_THREADS": "1"]) { a, _ in a }, memoryLimitBytes: Self.memoryLimit)
    }

    /// A clean error: exit 1 (not a signal), the message holding every one of `words`.
    func assertCleanError(_ r: DiffuseResult, _ words: [String], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertFalse(r.signalled, "\(what): killed by signal \(r.status)\n\(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.status, 1, "\(what): \(r.stderr)", file: file, line: line)
        for w in words { XCTAssert(r.stderr.contains(w), "\(what): the message lacks '\(w)': \(r.stderr)", file: file, line: line) }
    }

    /// Every config of the corpus (Tests/References/make-hostile-corpus.py) through `inspect`,
    /// which builds the model: a clean error naming the file and the key.
    func testEveryHostileConfigIsACleanErrorNamingTheFileAndKey() throws {
        let expected = try JSONDecoder().decode([String: [String]].self, from: Data(contentsOf: Self.corpus.appendingPathComponent("expected.json")))
        XCTAssertGreaterThanOrEqual(expected.count, 25)
        for (name, words) in expected.sorted(by: { $0.key < $1.key }) {
            let r = try run(["inspect", Self.corpus.appendingPathComponent(name).path], env: ["DIFFUSE_MAX_MEMORY": "4G"])
            assertCleanError(r, [name] + words, name)
        }
        // The bases load: what fails above is the mutation, not the base.
        for base in ["base-unet2d", "base-unet1d", "base-video"] {
            let r = try run(["inspect", Self.corpus.appendingPathComponent(base + ".json").path])
            XCTAssertEqual(r.status, 0, "\(base): \(r.stderr)")
        }
    }

    /// generate takes the same configs (a bare config.json is a model with random weights): a
    /// class it does not know, and an image too big for the memory budget, are errors too.
    func testGenerateRefusesAnUnknownClassAndAPlanBeyondTheBudget() throws {
        let out = dir.appendingPathComponent("x.png").path
        var r = try run(["generate", "image", "--model", Self.corpus.appendingPathComponent("unet2d-class-unet3d.json").path,
                         "--steps", "1", "--count", "1", "--out", out])
        assertCleanError(r, ["unet2d-class-unet3d.json", "UNet3DModel"], "UNet3DModel")
        // 8192² pixels: a valid config, but the activations need ~15 GB.
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.corpus.appendingPathComponent("base-unet2d.json"))) as! [String: Any]
        config["sample_size"] = 8192
        let big = dir.appendingPathComponent("config.json")
        try JSONSerialization.data(withJSONObject: config).write(to: big)
        r = try run(["generate", "image", "--model", big.path, "--steps", "1", "--count", "1", "--out", out], env: ["DIFFUSE_MAX_MEMORY": "2G"])
        assertCleanError(r, ["would need", "memory budget"], "8192² image")
        r = try run(["generate", "image", "--model", big.path, "--steps", "1", "--count", "1", "--out", out, "--max-memory", "2G"])
        assertCleanError(r, ["would need", "2.0 GB"], "8192² image, --max-memory")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    /// train checks a training step's activations against the budget before allocating the
    /// model's optimiser state or touching the data loop.
    func testTrainRefusesABatchBeyondTheBudget() throws {
        let data = dir.appendingPathComponent("data/bag")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        for i in 0..<2 { try PNGCodec.write(Tensor.zeros([1, 32, 32]), to: data.appendingPathComponent("\(i).png")) }
        let runDir = dir.appendingPathComponent("run")
        let r = try run(["train", "image", "--data", data.deletingLastPathComponent().path, "--out", runDir.path, "--steps", "1",
                         "--batch", "4096", "--max-memory", "1G"])
        assertCleanError(r, ["a training step at batch 4096", "would need", "1.0 GB"], "batch 4096")
        XCTAssertFalse(FileManager.default.fileExists(atPath: runDir.appendingPathComponent("checkpoints").path))
    }

    /// A tiny image model folder whose weights file `tamper` rewrites: (name, dtype, shape, bytes) per tensor.
    func imageModel(tamper: (inout [(String, String, [Int], Data)]) -> Void) throws -> URL {
        let c = try JSONDecoder().decode(UNet2DConfig.self, from: Data(contentsOf: Self.corpus.appendingPathComponent("base-unet2d.json")))
        NNInit.seed(1)
        let model = try UNet2DModel(config: c)
        let folder = dir.appendingPathComponent("model-\(UUID().uuidString.prefix(6))")
        try model.save(to: folder)
        var tensors = model.stateDict().sorted { $0.key < $1.key }.map { (name, t) in
            (name, "F32", t.shape, t.scalars.withUnsafeBytes { Data($0) })
        }
        tamper(&tensors)
        try writeSafeTensors(tensors, to: folder.appendingPathComponent("diffusion_pytorch_model.safetensors"))
        return folder
    }

    func writeSafeTensors(_ tensors: [(String, String, [Int], Data)], to url: URL) throws {
        var header: [String: Any] = [:], data = Data()
        for (name, dtype, shape, bytes) in tensors {
            header[name] = ["dtype": dtype, "shape": shape, "data_offsets": [data.count, data.count + bytes.count]]
            data.append(bytes)
        }
        let h = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        var file = Data()
        withUnsafeBytes(of: UInt64(h.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(h)
        file.append(data)
        try file.write(to: url)
    }

    func testNonFiniteOrRelabelledWeightsAreRefusedNamingTheTensor() throws {
        let out = dir.appendingPathComponent("x.png").path
        for bad in [Float.nan, .infinity] {
            let folder = try imageModel { tensors in
                let i = tensors.firstIndex { $0.0 == "conv_in.weight" }!
                var floats = tensors[i].3.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
                floats[3] = bad
                tensors[i].3 = floats.withUnsafeBytes { Data($0) }
            }
            let r = try run(["generate", "image", "--model", folder.path, "--steps", "1", "--count", "1", "--out", out])
            assertCleanError(r, ["conv_in.weight", "finite", "diffusion_pytorch_model.safetensors"], "\(bad) weight")
        }
        // The same bytes called 16-bit integers (twice the elements, so sizes still agree) and
        // integers of the right shape: weights are floats.
        let folder = try imageModel { tensors in
            let i = tensors.firstIndex { $0.0 == "conv_out.bias" }!
            tensors[i].1 = "I16"
            tensors[i].3 = Data(count: tensors[i].2.reduce(1, *) * 2)
        }
        let r = try run(["generate", "image", "--model", folder.path, "--steps", "1", "--count", "1", "--out", out])
        assertCleanError(r, ["conv_out.bias", "I16"], "I16 weight")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    func testForwardRefusesARank6Sample() throws {
        let input = dir.appendingPathComponent("in.safetensors")
        try writeSafeTensors([("sample", "F32", [1, 1, 1, 1, 8, 8], Data(count: 256)), ("timestep", "F32", [1], Data(count: 4))], to: input)
        let r = try run(["forward", Self.corpus.appendingPathComponent("base-unet2d.json").path, "--input", input.path,
                         "--output", dir.appendingPathComponent("out.safetensors").path])
        assertCleanError(r, ["in.safetensors", "rank 6"], "rank 6")
    }

    /// A WAV header: PCM16 mono at `rate`, `frames` samples of a quiet sine.
    func wav(rate: Int, frames: Int, to url: URL) throws {
        var d = Data()
        func u32(_ v: Int) { withUnsafeBytes(of: UInt32(v).littleEndian) { d.append(contentsOf: $0) } }
        func u16(_ v: Int) { withUnsafeBytes(of: UInt16(v).littleEndian) { d.append(contentsOf: $0) } }
        d.append(contentsOf: Array("RIFF".utf8)); u32(36 + 2 * frames); d.append(contentsOf: Array("WAVEfmt ".utf8))
        u32(16); u16(1); u16(1); u32(rate); u32(2 * rate); u16(2); u16(16)
        d.append(contentsOf: Array("data".utf8)); u32(2 * frames)
        var samples = [Int16](repeating: 0, count: frames)
        for i in 0..<frames { samples[i] = Int16(3000 * sin(Double(i) * 0.05)) }
        samples.withUnsafeBytes { d.append(contentsOf: $0) }
        try d.write(to: url)
    }

    func audioModel() throws -> URL {
        var c = UNet1DConfig.lean(sampleSize: 256, sampleRate: 8000)
        c.blockOutChannels = [8, 16]
        c.downBlockTypes = [.downResnetBlock1D, .downResnetBlock1D]
        c.upBlockTypes = [.upResnetBlock1D]
        NNInit.seed(2)
        let folder = dir.appendingPathComponent("audio-model")
        try AudioPipeline(unet: try UNet1DModel(config: c), scheduler: SchedulerConfig(.ddpm), classNames: []).save(to: folder)
        return folder
    }

    func testAudioInputsAreBoundedByWhatTheModelUses() throws {
        let model = try audioModel().path
        let out = dir.appendingPathComponent("out.wav")
        // A 32 KB file whose header says 1 Hz would resample to hundreds of millions of samples.
        let slow = dir.appendingPathComponent("one-hertz.wav")
        try wav(rate: 1, frames: 16000, to: slow)
        var r = try run(["generate", "audio", "--model", model, "--init", slow.path, "--steps", "1", "--out", out.path])
        assertCleanError(r, ["one-hertz.wav", "sample rate", "minimum"], "1 Hz")
        // Ten minutes as --init: only what the longest clip uses (60 s) is read, with a note.
        let long = dir.appendingPathComponent("ten-minutes.wav")
        try wav(rate: 8000, frames: 8000 * 600, to: long)
        r = try run(["generate", "audio", "--model", model, "--init", long.path, "--steps", "1", "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stderr.contains("first 60 s"), r.stderr)
        let clip = try AudioCodec.read(out)
        XCTAssertLessThanOrEqual(clip.duration, 60.1)
        XCTAssertGreaterThanOrEqual(clip.duration, 59.9)
    }

    func testNegativeNumbersSayWhatTheValueMustBe() throws {
        let r = try run(["generate", "image", "--count", "-5", "--out", dir.appendingPathComponent("x.png").path])
        XCTAssertEqual(r.status, 64, r.stderr)
        XCTAssert(r.stderr.contains("--count must be between 1"), r.stderr)
        XCTAssertFalse(r.stderr.contains("Missing value"), r.stderr)
        let m = try run(["generate", "image", "--max-memory", "-1", "--out", dir.appendingPathComponent("x.png").path])
        XCTAssertEqual(m.status, 64, m.stderr)
        XCTAssert(m.stderr.contains("--max-memory must be a positive size"), m.stderr)
    }

    /// Writers name the path and the reason in plain words, not Foundation's error dump.
    func testAReadOnlyFolderIsNamedInPlainWords() throws {
        guard getuid() != 0 else { throw XCTSkip("root writes into read-only folders") }
        let ro = dir.appendingPathComponent("ro")
        try FileManager.default.createDirectory(at: ro, withIntermediateDirectories: true)
        try FileManager.default.setAttributes([.posixPermissions: 0o555], ofItemAtPath: ro.path)
        defer { try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: ro.path) }
        let r = try run(["generate", "image", "--steps", "1", "--count", "1", "--out", ro.appendingPathComponent("x.png").path])
        assertCleanError(r, [ro.path], "read-only folder")
        XCTAssertFalse(r.stderr.contains("NSCocoaErrorDomain"), r.stderr)
    }

    func testAtomicWritesNameThePathAndTheReason() throws {
        let missing = dir.appendingPathComponent("no/such/folder/file.json")
        XCTAssertThrowsError(try AtomicFile.write(Data("x".utf8), to: missing)) { e in
            let s = "\(e)"
            XCTAssert(s.contains(missing.path) && s.contains("No such file"), s)
            XCTAssertFalse(s.contains("NSCocoaErrorDomain"), s)
        }
    }

    // MARK: Shared folders, leftovers, resume

    /// A small labelled image set and a model trained for 2 steps on it.
    func trainedImageModel() throws -> (data: URL, model: URL) {
        let data = dir.appendingPathComponent("data")
        for (c, v) in [("bag", 0.5), ("sneaker", -0.3)] {
            try FileManager.default.createDirectory(at: data.appendingPathComponent(c), withIntermediateDirectories: true)
            for k in 0..<2 {
                try PNGCodec.write(Tensor(shape: [1, 32, 32], scalars: (0..<1024).map { Float(v) * Float(($0 + k) % 7) / 7 }),
                                   to: data.appendingPathComponent("\(c)/\(k).png"))
            }
        }
        let run = dir.appendingPathComponent("run")
        let r = try runDiffuseCommand(["train", "image", "--data", data.path, "--out", run.path, "--steps", "2", "--batch", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return (data, run)
    }

    /// Two augment runs into one folder at once: the second refuses with a message (or, when
    /// the first was already done, keeps its files); the manifest lists each file once, every
    /// listed file exists, and no file is replaced behind the manifest's back.
    func testTwoAugmentRunsIntoOneFolderNeverContradictEachOther() throws {
        let (data, run) = try trainedImageModel()
        let out = dir.appendingPathComponent("out")
        let args = ["augment", "image", "--data", data.path, "--out", out.path, "--model", run.appendingPathComponent("model").path,
                    "--steps", "3", "--batch", "1", "--per-class", "4"]
        let group = DispatchGroup()
        let results = ResultBox()
        for k in 0..<2 {
            group.enter()
            DispatchQueue.global().async {
                let r = try? runDiffuseCommand(args)
                results.set(k, r)
                group.leave()
            }
        }
        group.wait()
        let rs = (0..<2).compactMap { results.get($0) }
        XCTAssertEqual(rs.count, 2)
        for r in rs {
            XCTAssertFalse(r.signalled)
            XCTAssert(r.status == 0 || (r.status == 1 && r.stderr.contains("another augment run")), r.stderr)
        }
        XCTAssert(rs.contains { $0.status == 0 })
        let lines = try String(contentsOf: out.appendingPathComponent("manifest.jsonl"), encoding: .utf8).split(separator: "\n")
        let records = try lines.map { try JSONDecoder().decode(AugmentationRecord.self, from: Data($0.utf8)) }
        XCTAssertEqual(records.count, 8, "one line per file")
        XCTAssertEqual(Set(records.map(\.file)).count, 8, "no file listed twice")
        for rec in records { XCTAssert(FileManager.default.fileExists(atPath: out.appendingPathComponent(rec.file).path), rec.file) }
        // A third run finds everything made and changes nothing.
        let before = try records.map { try Data(contentsOf: out.appendingPathComponent($0.file)) }
        let again = try runDiffuseCommand(args)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssert(again.stdout.contains("0 new files"), again.stdout)
        XCTAssertEqual(try records.map { try Data(contentsOf: out.appendingPathComponent($0.file)) }, before)
        XCTAssertEqual(try String(contentsOf: out.appendingPathComponent("manifest.jsonl"), encoding: .utf8).split(separator: "\n").count, 8)
    }

    /// train --out refuses a folder of the user's; a resumed run removes what a killed one left
    /// (temporary checkpoint folders, partial weights files) and rewrites loss.csv up to the
    /// step it resumes from, so every step is logged once.
    func testTrainingNeverWritesIntoAForeignFolderCleansLeftoversAndLogsEachStepOnce() throws {
        let (data, run) = try trainedImageModel()
        let mine = dir.appendingPathComponent("mine")
        try FileManager.default.createDirectory(at: mine, withIntermediateDirectories: true)
        try Data("{\"mine\": true}\n".utf8).write(to: mine.appendingPathComponent("recipe.json"))
        try Data("my,own,log\n".utf8).write(to: mine.appendingPathComponent("loss.csv"))
        var r = try runDiffuseCommand(["train", "image", "--data", data.path, "--out", mine.path, "--steps", "2", "--batch", "2"])
        assertCleanError(r, [mine.path, "not a training run"], "foreign folder")
        XCTAssertEqual(try String(contentsOf: mine.appendingPathComponent("recipe.json"), encoding: .utf8), "{\"mine\": true}\n")
        XCTAssertEqual(try String(contentsOf: mine.appendingPathComponent("loss.csv"), encoding: .utf8), "my,own,log\n")

        // What a run killed after step 2 leaves: a temporary checkpoint folder, a partial weights
        // file, and loss.csv rows of steps no checkpoint holds.
        let dead = Process()
        dead.executableURL = URL(fileURLWithPath: "/bin/true")
        try dead.run()
        dead.waitUntilExit()
        let pid = dead.processIdentifier
        let tmpCheckpoint = run.appendingPathComponent("checkpoints/.checkpoint-3.tmp-\(pid)")
        try FileManager.default.createDirectory(at: tmpCheckpoint, withIntermediateDirectories: true)
        try Data(count: 1000).write(to: tmpCheckpoint.appendingPathComponent("training_state.safetensors"))
        let partial = run.appendingPathComponent("model/unet/.diffusion_pytorch_model.safetensors.tmp-\(pid)-7")
        try Data(count: 1000).write(to: partial)
        let log = run.appendingPathComponent("loss.csv")
        let h = try FileHandle(forWritingTo: log)
        try h.seekToEnd()
        try h.write(contentsOf: Data("3,0.5,0.001,1.0\n4,0.5,0.001,1.0\n".utf8))
        try h.close()

        // The user's own file beside a run (a log the shell opened before the run started) does
        // not make it a stranger's folder, and is left as it was.
        let userLog = run.appendingPathComponent("train.log")
        try Data("my log\n".utf8).write(to: userLog)
        r = try runDiffuseCommand(["train", "image", "--data", data.path, "--out", run.path, "--steps", "4", "--batch", "2", "--resume"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try String(contentsOf: userLog, encoding: .utf8), "my log\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmpCheckpoint.path), "leftover checkpoint folder")
        XCTAssertFalse(FileManager.default.fileExists(atPath: partial.path), "leftover partial weights")
        let steps = try String(contentsOf: log, encoding: .utf8).split(separator: "\n").dropFirst().map { Int($0.split(separator: ",")[0])! }
        XCTAssertEqual(steps, [1, 2, 3, 4])
    }
}

/// Results filled in by other threads.
private final class ResultBox: @unchecked Sendable {
    private var values: [Int: DiffuseResult] = [:]
    private let lock = NSLock()
    func set(_ k: Int, _ v: DiffuseResult?) { lock.lock(); values[k] = v; lock.unlock() }
    func get(_ k: Int) -> DiffuseResult? { lock.lock(); defer { lock.unlock() }; return values[k] }
}
