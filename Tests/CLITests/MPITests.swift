import XCTest
import TestSupport
import Foundation
import Tensor
import NN
import Image
import Diffusion

/// `mpirun -np 2 diffuse ...` against one process: data-parallel training gives the same
/// weights, a run moves between rank counts, and sharded outputs are the same files. Each test
/// is skipped, saying why, where Open MPI's `mpirun` is missing.
final class MPITests: XCTestCase {
    static let mpirun: String? = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first { FileManager.default.isExecutableFile(atPath: $0) }

    var dir: URL!

    override func setUpWithError() throws {
        guard Self.mpirun != nil else {
            print("MPITests: skipped: no mpirun (install openmpi-bin: scripts/install-deps)")
            throw XCTSkip("no mpirun (install openmpi-bin)")
        }
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-mpi-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() {
        if let dir { try? FileManager.default.removeItem(at: dir) }
    }

    /// `mpirun -np n diffuse args...` (one thread per rank: the ranks share this machine's cores).
    func mpi(_ n: Int, _ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.mpirun!)
        let threads = ["train", "generate", "augment"].contains(args[0]) ? ["--threads", "1"] : []
        p.arguments = ["--oversubscribe", "--allow-run-as-root", "-np", "\(n)", diffuseExecutable.path] + args + threads
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    /// `diffuse args...` in one process.
    func one(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let r = try runDiffuseCommand(args)
        return (r.status, r.stdout, r.stderr)
    }

    /// Two classes of four 8×8 gray images, and a tiny conditional U-Net's recipe for them.
    func tinySet() throws -> (data: URL, recipe: URL) {
        let data = dir.appendingPathComponent("data")
        for (c, name) in ["bag", "shoe"].enumerated() {
            try FileManager.default.createDirectory(at: data.appendingPathComponent(name), withIntermediateDirectories: true)
            for k in 0..<4 {
                let v = (0..<64).map { Float((($0 * (c + 2) + k * 5) % 11)) / 5.5 - 1 }
                try PNGCodec.write(Tensor(shape: [1, 8, 8], scalars: v), to: data.appendingPathComponent("\(name)/\(k).png"))
            }
        }
        let recipe = dir.appendingPathComponent("recipe.json")
        try Data("""
        {"model": {"sample_size": 8, "in_channels": 1, "out_channels": 1, "block_out_channels": [8, 16],
                   "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
                   "layers_per_block": 1, "norm_num_groups": 4, "attention_head_dim": 4, "num_class_embeds": 3},
         "training": {"steps": 20, "batch_size": 5, "learning_rate": 0.001, "warmup_steps": 2, "checkpoint_every": 10,
                      "ema_decay": 0.9, "seed": 7},
         "label_dropout": 0.2, "preview_every": 20, "random_flip": true}
        """.utf8).write(to: recipe)
        return (data, recipe)
    }

    /// A run's trained weights: the latest checkpoint's (model.*) and the exported EMA model's (ema.*).
    func weights(_ run: URL) throws -> [String: Tensor] {
        let ckpt = try XCTUnwrap(Trainer.latestCheckpoint(in: run.appendingPathComponent("checkpoints")), "no checkpoint in \(run.path)")
        var out: [String: Tensor] = [:]
        let state = try SafeTensorsFile(url: ckpt.appendingPathComponent("training_state.safetensors"))
        for n in state.names where n.hasPrefix("model.") { out[n] = try state.tensor(n) }
        let ema = try SafeTensorsFile(url: run.appendingPathComponent("model/unet/diffusion_pytorch_model.safetensors"))
        for n in ema.names { out["ema." + n] = try ema.tensor(n) }
        return out
    }

    /// The largest difference between two runs' weights, and apart from it the largest of the
    /// attention key biases. Those get no gradient (softmax is unchanged by adding the same
    /// q·b to every key's score), so they move by AdamW steps of the gradient's rounding noise,
    /// which differs with any change of summation order — one process on 1 and 2 threads
    /// differs there as much as 1 process and 2 ranks do; the model's outputs never depend on them.
    func maxDifference(_ a: [String: Tensor], _ b: [String: Tensor]) -> (weights: Float, keyBiases: Float) {
        XCTAssertEqual(Set(a.keys), Set(b.keys))
        var m: Float = 0, k: Float = 0
        for (name, x) in a {
            guard let y = b[name], x.shape == y.shape else { XCTFail("\(name): shapes differ"); return (.infinity, .infinity) }
            var d: Float = 0
            for i in 0..<x.count { d = max(d, abs(x.data[i] - y.data[i])) }
            if name.hasSuffix("to_k.bias") { k = max(k, d) } else { m = max(m, d) }
        }
        return (m, k)
    }

    /// The test: 2 ranks and 1 process, 20 steps at global batch 5 (split 2 + 3), the
    /// same weights within 1e-5; the 2-rank run then resumes in one process and stays the run
    /// one process makes.
    func testTwoRanksTrainAsOneProcessAndResumeWithOne() throws {
        let (data, recipe) = try tinySet()
        let one = dir.appendingPathComponent("one"), two = dir.appendingPathComponent("two")
        let started = Date()
        var r: (status: Int32, stdout: String, stderr: String) = try self.one(["train", "image", "--data", data.path, "--config", recipe.path, "--out", one.path, "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try mpi(2, ["train", "image", "--data", data.path, "--config", recipe.path, "--out", two.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout.components(separatedBy: "model: ").count, 2, "rank 0 alone prints: \(r.stdout)")
        let d20 = maxDifference(try weights(one), try weights(two))
        print(String(format: "MPITests: 20 steps, 1 process vs 2 ranks: max |Δw| = %.3g (weights and EMA; attention key biases, which get no gradient: %.3g)", d20.weights, d20.keyBiases))
        XCTAssertLessThan(d20.weights, 1e-5)
        // rank 0 wrote everything, once: 20 loss rows, the same losses.
        let rows = { (u: URL) in try String(contentsOf: u.appendingPathComponent("loss.csv"), encoding: .utf8).split(separator: "\n").dropFirst() }
        let (l1, l2) = (try rows(one), try rows(two))
        XCTAssertEqual(l2.count, 20)
        for (a, b) in zip(l1, l2) {
            let (x, y) = (Float(a.split(separator: ",")[1])!, Float(b.split(separator: ",")[1])!)
            XCTAssertEqual(x, y, accuracy: 1e-5 * max(1, abs(x)), "\(a) vs \(b)")
        }
        let entries = try FileManager.default.contentsOfDirectory(atPath: two.path).filter { !$0.hasPrefix(".") }.sorted()
        XCTAssertEqual(entries, ["checkpoints", "loss.csv", "loss.png", "model", "previews", "recipe.json"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: two.appendingPathComponent("previews").path), ["step-20.png"])
        // Both runs go on to 30 steps in one process: the 2-rank run continues as one process's.
        for run in [one, two] {
            r = try self.one(["train", "image", "--data", data.path, "--config", recipe.path, "--out", run.path,
                                       "--steps", "30", "--resume", "--threads", "1"])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        XCTAssertEqual(Trainer.step(of: try XCTUnwrap(Trainer.latestCheckpoint(in: two.appendingPathComponent("checkpoints")))), 30)
        let d30 = maxDifference(try weights(one), try weights(two))
        print(String(format: "MPITests: after resuming both in one process to 30 steps: max |Δw| = %.3g (key biases %.3g)", d30.weights, d30.keyBiases))
        XCTAssertLessThan(d30.weights, 1e-5)
        print(String(format: "MPITests: training test %.1f s", Date().timeIntervalSince(started)))
    }

    /// `augment` under 2 ranks: the same files, byte for byte, and the same manifest lines in
    /// the same order as one process; `generate` deals its --batch calls and writes the same PNGs.
    func testTwoRanksAugmentAndGenerateAsOneProcess() throws {
        let (data, recipe) = try tinySet()
        let run = dir.appendingPathComponent("run")
        let started = Date()
        var r: (status: Int32, stdout: String, stderr: String) = try self.one(["train", "image", "--data", data.path, "--config", recipe.path, "--out", run.path,
                                       "--steps", "2", "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let model = run.appendingPathComponent("model").path
        let outs = [dir.appendingPathComponent("aug1"), dir.appendingPathComponent("aug2")]
        for mode in [["--per-class", "3"], ["--mode", "vary", "--strength", "0.5"]] {
            let args = ["augment", "image", "--data", data.path, "--model", model, "--steps", "3", "--batch", "2"] + mode
            r = try self.one(args + ["--out", outs[0].path, "--threads", "1"])
            XCTAssertEqual(r.status, 0, r.stderr)
            r = try mpi(2, args + ["--out", outs[1].path])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        let files = try FileManager.default.subpathsOfDirectory(atPath: outs[0].path).filter { $0.hasSuffix(".png") }.sorted()
        XCTAssertEqual(files.count, 2 * 3 + 8)
        XCTAssertEqual(try FileManager.default.subpathsOfDirectory(atPath: outs[1].path).filter { $0.hasSuffix(".png") }.sorted(), files)
        for f in files {
            XCTAssertEqual(try Data(contentsOf: outs[0].appendingPathComponent(f)), try Data(contentsOf: outs[1].appendingPathComponent(f)), f)
        }
        let manifests = try outs.map { try String(contentsOf: $0.appendingPathComponent("manifest.jsonl"), encoding: .utf8) }
        XCTAssertEqual(manifests[0].split(separator: "\n").count, files.count)
        XCTAssertEqual(manifests[0], manifests[1], "the same lines in the same order")

        let gen = [dir.appendingPathComponent("gen1"), dir.appendingPathComponent("gen2")]
        let args = ["generate", "image", "--model", model, "--count", "5", "--batch", "2", "--steps", "3"]
        r = try self.one(args + ["--out", gen[0].path, "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try mpi(2, args + ["--out", gen[1].path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let pngs = try FileManager.default.contentsOfDirectory(atPath: gen[0].path).sorted()
        XCTAssertEqual(pngs.count, 5)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: gen[1].path).sorted(), pngs)
        for f in pngs {
            XCTAssertEqual(try Data(contentsOf: gen[0].appendingPathComponent(f)), try Data(contentsOf: gen[1].appendingPathComponent(f)), f)
        }
        print(String(format: "MPITests: augment and generate test %.1f s", Date().timeIntervalSince(started)))
    }

    /// A rank killed mid-run takes the job down with Open MPI's message; the checkpoint on disk
    /// stays whole, and one process resumes from it.
    func testAKilledRankLeavesAResumableCheckpoint() throws {
        let (data, recipe) = try tinySet()
        let run = dir.appendingPathComponent("run")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.mpirun!)
        p.arguments = ["--oversubscribe", "--allow-run-as-root", "-np", "2", diffuseExecutable.path, "train", "image", "--data", data.path,
                       "--config", recipe.path, "--out", run.path, "--steps", "100000", "--threads", "1"]
        let err = Pipe()
        p.standardOutput = FileHandle.nullDevice
        p.standardError = err
        try p.run()
        // Wait for the first checkpoint (every 10 steps), then kill rank 1.
        let checkpoints = run.appendingPathComponent("checkpoints")
        let deadline = Date().addingTimeInterval(60)
        while Trainer.latestCheckpoint(in: checkpoints) == nil && Date() < deadline && p.isRunning { usleep(50_000) }
        guard let victim = Self.rank(1, childOf: p.processIdentifier) else {
            p.terminate()
            return XCTFail("no rank 1 among mpirun's children")
        }
        kill(victim, SIGKILL)
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertNotEqual(p.terminationStatus, 0)
        XCTAssert(message.contains("signal 9") || message.contains("Killed"), message)
        let latest = try XCTUnwrap(Trainer.latestCheckpoint(in: checkpoints))
        let step = try XCTUnwrap(Trainer.step(of: latest))
        let r = try self.one(["train", "image", "--data", data.path, "--config", recipe.path, "--out", run.path,
                              "--steps", "\(step + 2)", "--resume", "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(Trainer.latestCheckpoint(in: checkpoints).flatMap(Trainer.step(of:)), step + 2)
        print("MPITests: rank 1 killed after checkpoint \(step); one process resumed to \(step + 2)")
    }

    /// The child of `parent` that Open MPI started as `rank`.
    static func rank(_ rank: Int, childOf parent: Int32) -> Int32? {
        let procs = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for name in procs {
            guard let pid = Int32(name),
                  let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            // "pid (comm) state ppid ..."
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 1, Int32(fields[1]) == parent,
                  let env = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { continue }
            let vars = env.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            if vars.contains("OMPI_COMM_WORLD_RANK=\(rank)") { return pid }
        }
        return nil
    }

    /// Two hosts without a cluster: two network namespaces joined by a veth pair, Open MPI's TCP
    /// transport between them (no shared memory), `mpirun` reaching the second "host" through an
    /// rsh agent that enters its namespace instead of ssh. The run trains as one process does.
    /// Skipped, saying why, without the rights to make namespaces (CAP_SYS_ADMIN) or without `ip`.
    func testTwoHostsOverTCPInNetworkNamespaces() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") || FileManager.default.isExecutableFile(atPath: "/sbin/ip") else {
            print("MPITests: two-host test skipped: no `ip` (iproute2)")
            throw XCTSkip("no ip (iproute2)")
        }
        let tag = "dm\(getpid() % 100_000)"
        let net = "10.\(Int(getpid()) % 200 + 50).0"
        let (hostA, hostB) = ("\(net).1", "\(net).2")
        func ns(_ host: String) -> String { "\(tag)-\(host)" }
        func ip(_ args: String) -> (Int32, String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", "ip " + args + " 2>&1"]
            let out = Pipe()
            p.standardOutput = out
            guard (try? p.run()) != nil else { return (-1, "cannot run ip") }
            let o = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: o, as: UTF8.self))
        }
        let made = ip("netns add \(ns(hostA))")
        guard made.0 == 0 else {
            print("MPITests: two-host test skipped: cannot make a network namespace here (\(made.1.trimmingCharacters(in: .whitespacesAndNewlines)))")
            throw XCTSkip("no rights to make network namespaces")
        }
        defer { _ = ip("netns del \(ns(hostA))"); _ = ip("netns del \(ns(hostB))") }
        for command in ["netns add \(ns(hostB))", "link add \(tag)a type veth peer name \(tag)b",
                        "link set \(tag)a netns \(ns(hostA))", "link set \(tag)b netns \(ns(hostB))",
                        "-n \(ns(hostA)) addr add \(hostA)/24 dev \(tag)a", "-n \(ns(hostB)) addr add \(hostB)/24 dev \(tag)b",
                        "-n \(ns(hostA)) link set \(tag)a up", "-n \(ns(hostB)) link set \(tag)b up",
                        "-n \(ns(hostA)) link set lo up", "-n \(ns(hostB)) link set lo up"] {
            let r = ip(command)
            XCTAssertEqual(r.0, 0, "ip \(command): \(r.1)")
            if r.0 != 0 { return }
        }
        // Open MPI's "ssh": `agent HOST COMMAND...` runs COMMAND in that host's namespace.
        let agent = dir.appendingPathComponent("agent.sh"), hosts = dir.appendingPathComponent("hosts")
        try Data("#!/bin/sh\nhost=$1; shift\nexec ip netns exec \"\(tag)-$host\" sh -c \"$*\"\n".utf8).write(to: agent)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: agent.path)
        try Data("\(hostA) slots=1\n\(hostB) slots=1\n".utf8).write(to: hosts)

        let (data, recipe) = try tinySet()
        let one = dir.appendingPathComponent("one"), two = dir.appendingPathComponent("two")
        let started = Date()
        let r = try self.one(["train", "image", "--data", data.path, "--config", recipe.path, "--out", one.path, "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        let mpirun = [Self.mpirun!, "--allow-run-as-root", "--hostfile", hosts.path, "-np", "2", "--mca", "plm_rsh_agent", agent.path,
                      "--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", "\(net).0/24", "--mca", "oob_tcp_if_include", "\(net).0/24",
                      diffuseExecutable.path, "train", "image", "--data", data.path, "--config", recipe.path, "--out", two.path, "--threads", "1"]
        p.arguments = ["-c", "exec ip netns exec \(ns(hostA)) \"$@\"", "sh"] + mpirun
        let err = Pipe()
        p.standardOutput = FileHandle.nullDevice
        p.standardError = err
        try p.run()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, message)
        guard p.terminationStatus == 0 else { return }
        let d = maxDifference(try weights(one), try weights(two))
        print(String(format: "MPITests: two hosts (network namespaces, TCP): 20 steps, max |Δw| against one process = %.3g (key biases %.3g), %.1f s",
                     d.weights, d.keyBiases, Date().timeIntervalSince(started)))
        XCTAssertLessThan(d.weights, 1e-5)
    }

    /// A command that does not split its work refuses to run under mpirun (rather than every
    /// rank writing the same files); a failing rank takes the job down with its message.
    func testOtherCommandsRefuseAndAFailureEndsTheJob() throws {
        var r = try mpi(2, ["inspect", "samples/image"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssert(r.stderr.contains("runs in one process"), r.stderr)
        r = try mpi(2, ["train", "image", "--data", dir.appendingPathComponent("missing").path, "--out", dir.appendingPathComponent("run").path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssert(r.stderr.contains("missing"), r.stderr)
    }
}
