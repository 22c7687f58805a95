import XCTest
import Foundation
import Tensor
import NN
import TestSupport

/// Layers against PyTorch/diffusers: outputs and gradients from
/// `Tests/References/make_nn_goldens.py` (pinned versions in Tests/References/requirements.txt).
///
/// Golden file: `param.<diffusers name>`, `input.<name>`, `output`, `loss_weight`, and for
/// loss = Σ output · loss_weight, `grad.input.<name>` and `grad.param.<name>`; the metadata
/// holds the constructor arguments as JSON under `config`.
final class GoldenTests: XCTestCase {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Goldens")

    struct Golden {
        let file: SafeTensorsFile
        let config: [String: JSONValue]

        init(_ name: String) throws {
            file = try SafeTensorsFile(url: GoldenTests.dir.appendingPathComponent(name + ".safetensors"))
            let json = file.metadata["config"] ?? "{}"
            config = try JSONDecoder().decode([String: JSONValue].self, from: Data(json.utf8))
        }

        func int(_ k: String, _ d: Int? = nil) -> Int {
            if case .number(let v)? = config[k] { return Int(v) }
            if case .array(let a)? = config[k], case .number(let v)? = a.first { return Int(v) }
            guard let d else { fatalError("golden config lacks \(k)") }
            return d
        }
        func intOrNil(_ k: String) -> Int? {
            if case .number(let v)? = config[k] { return Int(v) }
            return nil
        }
        func float(_ k: String, _ d: Float) -> Float {
            if case .number(let v)? = config[k] { return Float(v) }
            return d
        }
        func bool(_ k: String, _ d: Bool) -> Bool {
            if case .bool(let v)? = config[k] { return v }
            return d
        }
        func string(_ k: String, _ d: String) -> String {
            if case .string(let v)? = config[k] { return v }
            return d
        }
        func t(_ k: String) throws -> Tensor { try file.tensor(k) }
        var params: [String: Tensor] {
            get throws {
                var d: [String: Tensor] = [:]
                for n in file.names where n.hasPrefix("param.") { d[String(n.dropFirst(6))] = try file.tensor(n) }
                return d
            }
        }
        func has(_ k: String) -> Bool { file.entry(k) != nil }
    }

    /// Loads the golden's parameters (strictly: names must match), runs `forward` on its inputs,
    /// and compares output and every gradient.
    func check(_ name: String, _ module: any Module, inputs: [String], tol: Float = 1e-5, gradTol: Float = 1e-4,
               file: StaticString = #filePath, line: UInt = #line,
               _ forward: ([Tensor]) -> Tensor) throws {
        let g = try Golden(name)
        try module.load(from: try g.params)
        let xs = try inputs.map { try g.t("input." + $0) }
        let differentiable = inputs.indices.filter { g.has("grad.input." + inputs[$0]) }
        for i in differentiable { xs[i].requiresGrad = true }
        let out = forward(xs)
        let want = try g.t("output")
        let scale = Swift.max(1, want.scalars.map { Swift.abs($0) }.max() ?? 1)
        assertClose(out, want, atol: tol * scale, rtol: tol, "\(name) output", file: file, line: line)
        var worst: Float = 0
        for i in 0..<Swift.min(out.count, want.count) { worst = Swift.max(worst, Swift.abs(out.data[i] - want.data[i]) / scale) }
        print("golden \(name): output max error \(worst) (relative to max |output| \(scale))")
        guard g.has("loss_weight") else { return }
        module.zeroGrad()
        (out * (try g.t("loss_weight"))).sum().backward()
        for i in differentiable {
            let w = try g.t("grad.input." + inputs[i])
            let s = Swift.max(1, w.scalars.map { Swift.abs($0) }.max() ?? 1)
            if let got = xs[i].grad { assertClose(got, w, atol: gradTol * s, rtol: gradTol, "\(name) grad of \(inputs[i])", file: file, line: line) }
            else { XCTFail("\(name): no gradient for input \(inputs[i])", file: file, line: line) }
        }
        for (pn, p) in module.namedParameters() where p.requiresGrad {
            guard g.has("grad.param." + pn) else { continue }
            let w = try g.t("grad.param." + pn)
            let s = Swift.max(1, w.scalars.map { Swift.abs($0) }.max() ?? 1)
            if let got = p.grad { assertClose(got, w, atol: gradTol * s, rtol: gradTol, "\(name) grad of \(pn)", file: file, line: line) }
            else { XCTFail("\(name): no gradient for \(pn)", file: file, line: line) }
        }
    }

    func testLinear() throws {
        for name in ["linear", "linear_nobias"] {
            let g = try Golden(name)
            let m = Linear(g.int("in_features"), g.int("out_features"), bias: g.bool("bias", true))
            try check(name, m, inputs: ["x"]) { m($0[0]) }
        }
    }

    func testConvolutions() throws {
        for name in ["conv2d", "conv2d_groups"] {
            let g = try Golden(name)
            let m = Conv2d(g.int("in_channels"), g.int("out_channels"), kernelSize: g.int("kernel_size"),
                           stride: g.int("stride", 1), padding: g.int("padding", 0), dilation: g.int("dilation", 1),
                           groups: g.int("groups", 1))
            try check(name, m, inputs: ["x"]) { m($0[0]) }
        }
        let g = try Golden("conv1d")
        let m = Conv1d(g.int("in_channels"), g.int("out_channels"), kernelSize: g.int("kernel_size"),
                       stride: g.int("stride", 1), padding: g.int("padding", 0))
        try check("conv1d", m, inputs: ["x"]) { m($0[0]) }
    }

    func testGroupNorm() throws {
        let g = try Golden("groupnorm")
        let m = GroupNorm(groups: g.int("num_groups"), channels: g.int("num_channels"), eps: g.float("eps", 1e-5))
        try check("groupnorm", m, inputs: ["x"]) { m($0[0]) }
    }

    func testTimeEmbeddings() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.dir.path)
            .filter { $0.hasPrefix("timesteps_") && $0.hasSuffix(".safetensors") }.map { String($0.dropLast(12)) }
        XCTAssertGreaterThanOrEqual(names.count, 3)
        for name in names {
            let g = try Golden(name)
            let m = Timesteps(numChannels: g.int("num_channels"), flipSinToCos: g.bool("flip_sin_to_cos", false),
                              downscaleFreqShift: g.float("downscale_freq_shift", 1))
            try check(name, m, inputs: ["timesteps"]) { m($0[0].scalars) }
        }
        let f = try Golden("fourier")
        let fm = GaussianFourierProjection(embeddingSize: f.int("embedding_size"), scale: f.float("scale", 1),
                                           log: f.bool("log", true), flipSinToCos: f.bool("flip_sin_to_cos", false))
        // Arguments reach 2π·log(500)·|W| ≈ 2000 rad, where one float32 ulp is 1.2e-4: PyTorch's own
        // float32 log/sin (SLEEF, ≤ 1 ulp) cannot be matched closer than that.
        try check("fourier", fm, inputs: ["timesteps"], tol: 3e-4) { fm($0[0].scalars) }
        let e = try Golden("timestep_embedding")
        let em = TimestepEmbedding(inChannels: e.int("in_channels"), timeEmbedDim: e.int("time_embed_dim"),
                                   act: Activation(rawValue: e.string("act_fn", "silu"))!)
        try check("timestep_embedding", em, inputs: ["x"]) { em($0[0]) }
    }

    func testAttention() throws {
        for name in ["attention", "attention_onehead"] {
            let g = try Golden(name)
            let m = Attention(queryDim: g.int("query_dim"), heads: g.int("heads", 8), dimHead: g.int("dim_head", 64),
                              bias: g.bool("bias", false), normNumGroups: g.intOrNil("norm_num_groups"),
                              eps: g.float("eps", 1e-5), residualConnection: g.bool("residual_connection", false),
                              rescaleOutputFactor: g.float("rescale_output_factor", 1))
            try check(name, m, inputs: ["x"]) { m($0[0]) }
        }
    }

    func testResnetBlocks() throws {
        for name in ["resnet2d", "resnet2d_scale_shift", "resnet2d_down", "resnet2d_up"] {
            let g = try Golden(name)
            let m = ResnetBlock(inChannels: g.int("in_channels"), outChannels: g.intOrNil("out_channels"),
                                tembChannels: g.intOrNil("temb_channels"), groups: g.int("groups", 32),
                                eps: g.float("eps", 1e-6),
                                act: Activation(rawValue: g.string("non_linearity", "silu"))!,
                                timeEmbeddingNorm: TimeEmbeddingNorm(rawValue: g.string("time_embedding_norm", "default"))!,
                                outputScaleFactor: g.float("output_scale_factor", 1),
                                up: g.bool("up", false), down: g.bool("down", false))
            try check(name, m, inputs: ["x", "temb"]) { m($0[0], temb: $0[1]) }
        }
    }

    func testResampling() throws {
        for name in ["downsample2d", "downsample2d_pad0", "downsample2d_avg"] {
            let g = try Golden(name)
            let m = Downsample(channels: g.int("channels"), useConv: g.bool("use_conv", false),
                               outChannels: g.intOrNil("out_channels"), padding: g.int("padding", 1))
            try check(name, m, inputs: ["x"]) { m($0[0]) }
        }
        let g = try Golden("upsample2d")
        let m = Upsample(channels: g.int("channels"), useConv: g.bool("use_conv", false), outChannels: g.intOrNil("out_channels"))
        try check("upsample2d", m, inputs: ["x"]) { m($0[0]) }
    }

    func testAdamWAndSGDMatchTorch() throws {
        for (name, make) in [("adamw", { (ps: [Tensor], c: Golden) -> Optimizer in
            AdamW(ps, learningRate: c.float("lr", 1e-2), beta1: 0.9, beta2: 0.999, eps: c.float("eps", 1e-8),
                  weightDecay: c.float("weight_decay", 0.1)) }),
                             ("sgd_momentum", { (ps: [Tensor], c: Golden) -> Optimizer in
            SGD(ps, learningRate: c.float("lr", 0.1), momentum: c.float("momentum", 0.9), weightDecay: c.float("weight_decay", 0.01)) }),
        ] {
            let g = try Golden(name)
            let ps = try ["p0", "p1"].map { try g.t("init." + $0) }
            for p in ps { p.requiresGrad = true }
            let opt = make(ps, g)
            var t = 0
            while g.has("grad.step\(t).p0") {
                for (i, p) in ps.enumerated() { p.grad = try g.t("grad.step\(t).p\(i)") }
                opt.step()
                for (i, p) in ps.enumerated() {
                    assertClose(p, try g.t("after.step\(t).p\(i)"), atol: 1e-6, rtol: 1e-5, "\(name) step \(t) p\(i)")
                }
                t += 1
            }
            XCTAssertGreaterThanOrEqual(t, 3, name)
        }
    }

    func testEMAMatchesDiffusers() throws {
        for name in ["ema", "ema_nowarmup"] {
            let g = try Golden(name)
            let ps = try ["p0", "p1"].map { try g.t("model.step0." + $0).copy() }
            for p in ps { p.requiresGrad = true }
            let ema = EMA(parameters: ps, decay: Double(g.float("decay", 0.9999)), minDecay: Double(g.float("min_decay", 0)),
                          updateAfterStep: g.int("update_after_step", 0), useWarmup: g.bool("use_ema_warmup", false),
                          invGamma: Double(g.float("inv_gamma", 1)), power: Double(g.float("power", 2.0 / 3)))
            let decays = try g.t("decay")
            var t = 0
            while g.has("shadow.step\(t).p0") {
                for (i, p) in ps.enumerated() { p.copyFrom(try g.t("model.step\(t).p\(i)")) }
                ema.step(ps)
                XCTAssertEqual(ema.decay(at: ema.optimizationStep), Double(decays.data[t]), accuracy: 1e-6, "\(name) decay \(t)")
                for i in ps.indices {
                    assertClose(ema.shadow[i], try g.t("shadow.step\(t).p\(i)"), atol: 1e-6, rtol: 1e-5, "\(name) step \(t)")
                }
                t += 1
            }
            XCTAssertGreaterThanOrEqual(t, 5, name)
        }
    }

    func testFilesWrittenByPythonSafetensors() throws {
        let dir = Self.dir.appendingPathComponent("pyfiles")
        // expected.json: {file: {"metadata": {..}, "tensors": [{"name", "dtype", "shape", "values"}]}}
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("expected.json")))
            as? [String: [String: Any]] ?? [:]
        XCTAssertEqual(Set(expected.keys), ["f32.safetensors", "f16.safetensors", "bf16.safetensors"])
        for (fileName, content) in expected {
            let f = try SafeTensorsFile(url: dir.appendingPathComponent(fileName))
            if let md = content["metadata"] as? [String: String] { XCTAssertEqual(f.metadata, md, fileName) }
            let tensors = content["tensors"] as? [[String: Any]] ?? []
            XCTAssertFalse(tensors.isEmpty, fileName)
            XCTAssertEqual(Set(f.names), Set(tensors.compactMap { $0["name"] as? String }), fileName)
            for e in tensors {
                let name = e["name"] as! String
                let t = try f.tensor(name)
                XCTAssertEqual(t.shape, e["shape"] as? [Int], "\(fileName) \(name)")
                XCTAssertEqual(f.entry(name)?.dtype.rawValue, e["dtype"] as? String, "\(fileName) \(name)")
                let values = (e["values"] as? [Double]) ?? (e["values"] as? [NSNumber])?.map(\.doubleValue) ?? []
                XCTAssertEqual(t.count, values.count, "\(fileName) \(name)")
                for (i, v) in values.enumerated() where i < t.count {
                    XCTAssertEqual(t.data[i].bitPattern, Float(v).bitPattern, "\(fileName) \(name)[\(i)]: \(t.data[i]) vs \(v)")
                }
            }
        }
    }

    func testCorruptCorpusIsRejected() throws {
        let dir = Self.dir.deletingLastPathComponent().appendingPathComponent("Corrupt")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".safetensors") }
        XCTAssertGreaterThanOrEqual(files.count, 14)
        for f in files {
            let u = dir.appendingPathComponent(f)
            XCTAssertThrowsError(try { let s = try SafeTensorsFile(url: u); _ = try s.all() }(), f) { e in
                XCTAssert(e is SafeTensorsError, "\(f): \(e)")
            }
        }
    }
}
