import XCTest
import Foundation
import Tensor
import NN
import TestSupport

final class CheckpointTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-nn-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func testSafeTensorsRoundTripF32AndF16() throws {
        let tensors: [String: Tensor] = [
            "a.weight": randomTensor([3, 4, 5], seed: 1),
            "b": randomTensor([7], seed: 2),
            "scalar": Tensor(3.5),
            "empty": Tensor.zeros([0, 3]),
        ]
        let f32 = dir.appendingPathComponent("m.safetensors")
        try SafeTensors.write(tensors, to: f32, metadata: ["format": "pt", "note": "quote \" and \\ ok"])
        let file = try SafeTensorsFile(url: f32)
        XCTAssertEqual(file.metadata["note"], "quote \" and \\ ok")
        XCTAssertEqual(Set(file.names), Set(tensors.keys))
        for (k, t) in tensors {
            let back = try file.tensor(k)
            XCTAssertEqual(back.shape, t.shape, k)
            XCTAssertEqual(back.scalars, t.scalars, k)
        }
        let f16 = dir.appendingPathComponent("h.safetensors")
        try SafeTensors.write(tensors, to: f16, dtype: .F16)
        let h = try SafeTensorsFile(url: f16)
        XCTAssertEqual(h.entry("b")?.dtype, .F16)
        assertClose(try h.tensor("a.weight"), tensors["a.weight"]!, atol: 1e-3, rtol: 1e-3)
        // Nothing but the two files is left in the folder (temp files renamed away).
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(), ["h.safetensors", "m.safetensors"])
    }

    func testFailedWriteLeavesTargetIntact() throws {
        let url = dir.appendingPathComponent("keep.safetensors")
        try SafeTensors.write(["x": Tensor.ones([2])], to: url)
        struct Boom: Error {}
        XCTAssertThrowsError(try AtomicFile.write(to: url) { h in
            try h.write(contentsOf: Data([1, 2, 3]))
            throw Boom()
        })
        XCTAssertEqual(try SafeTensorsFile(url: url).tensor("x").scalars, [1, 1])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["keep.safetensors"])
    }

    func testMalformedHeadersAreRejectedWithTheFileName() throws {
        func file(_ bytes: [UInt8]) -> URL {
            let u = dir.appendingPathComponent("bad-\(UUID().uuidString).safetensors")
            FileManager.default.createFile(atPath: u.path, contents: Data(bytes))
            return u
        }
        func header(_ json: String, data: Int = 0) -> [UInt8] {
            var h = Array(json.utf8)
            let n = UInt64(h.count)
            h = (0..<8).map { UInt8((n >> (8 * UInt64($0))) & 0xff) } + h
            return h + [UInt8](repeating: 0, count: data)
        }
        let cases: [(String, [UInt8])] = [
            ("empty", []),
            ("short", [1, 2, 3]),
            ("length past end", [200, 0, 0, 0, 0, 0, 0, 0, 123, 125]),
            ("absurd length", [0, 0, 0, 0, 0, 0, 0, 1]),
            ("not json", header("{nope")),
            ("not object", header("[1,2]")),
            ("unknown dtype", header(#"{"x":{"dtype":"F8_XYZ","shape":[1],"data_offsets":[0,1]}}"#, data: 1)),
            ("size mismatch", header(#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, data: 8)),
            ("past end", header(#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: 4)),
            ("overlap", header(#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: 8)),
            ("reversed", header(#"{"x":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}"#, data: 4)),
            ("negative shape", header(#"{"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, data: 4)),
            ("fractional shape", header(#"{"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, data: 4)),
            ("no offsets", header(#"{"x":{"dtype":"F32","shape":[1]}}"#, data: 4)),
            ("bad metadata", header(#"{"__metadata__":{"a":1}}"#)),
            ("not utf8", [4, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0xff, 0xfe, 0x7d]),
        ]
        for (name, bytes) in cases {
            let u = file(bytes)
            XCTAssertThrowsError(try SafeTensorsFile(url: u), name) { e in
                let err = e as? SafeTensorsError
                XCTAssertNotNil(err, "\(name): \(e)")
                XCTAssertEqual(err?.file, u.path, name)
            }
        }
    }

    func testLoadReportsEveryProblemAtOnce() throws {
        NNInit.seed(1)
        let m = Linear(3, 2)
        let good = m.stateDict().mapValues { $0.copy() }
        let target = Linear(3, 2)
        try target.load(from: good)
        XCTAssertEqual(target.weight.scalars, m.weight.scalars)

        let bad: [String: Tensor] = ["weight": Tensor.zeros([3, 2]), "extra": Tensor.zeros([1])]
        let before = target.weight.scalars
        XCTAssertThrowsError(try target.load(from: bad)) { e in
            guard let mm = e as? CheckpointMismatch else { return XCTFail("\(e)") }
            XCTAssertEqual(mm.missing, ["bias"])
            XCTAssertEqual(mm.unexpected, ["extra"])
            XCTAssertEqual(mm.mismatched.map(\.name), ["weight"])
            XCTAssertEqual(mm.mismatched.first?.model, [2, 3])
            XCTAssertEqual(mm.mismatched.first?.checkpoint, [3, 2])
            XCTAssert(mm.description.contains("[2, 3]") && mm.description.contains("[3, 2]"))
        }
        XCTAssertEqual(target.weight.scalars, before, "a failed strict load changes nothing")
        let report = try target.load(from: ["bias": Tensor.ones([2]), "extra": Tensor.zeros([1])], strict: false)
        XCTAssertEqual(report.loaded, ["bias"])
        XCTAssertEqual(report.missing, ["weight"])
        XCTAssertEqual(target.bias!.scalars, [1, 1])
    }

    func testLegacyAttentionNamesLoad() throws {
        NNInit.seed(2)
        let a = Attention(channels: 8, attentionHeadDim: 4, normNumGroups: 2, eps: 1e-6)
        var legacy: [String: Tensor] = [:]
        for (n, t) in a.stateDict() {
            let old = n.replacingOccurrences(of: "to_q.", with: "query.").replacingOccurrences(of: "to_k.", with: "key.")
                .replacingOccurrences(of: "to_v.", with: "value.").replacingOccurrences(of: "to_out.0.", with: "proj_attn.")
            legacy[old] = t.copy() * 2
        }
        XCTAssertNotNil(legacy["proj_attn.weight"])
        let b = Attention(channels: 8, attentionHeadDim: 4, normNumGroups: 2, eps: 1e-6)
        try b.load(from: legacy)
        assertClose(b.toOut.weight, a.toOut.weight * 2)
        assertClose(b.toQ.bias!, a.toQ.bias! * 2)
    }

    func testModuleRoundTripThroughAFile() throws {
        NNInit.seed(3)
        let m = ResnetBlock(inChannels: 4, outChannels: 8, tembChannels: 6, groups: 2)
        let url = dir.appendingPathComponent("r.safetensors")
        try m.save(safetensors: url)
        NNInit.seed(4)
        let n = ResnetBlock(inChannels: 4, outChannels: 8, tembChannels: 6, groups: 2)
        try n.load(safetensors: url)
        let x = randomTensor([2, 4, 5, 5], seed: 9), t = randomTensor([2, 6], seed: 10)
        XCTAssertEqual(m(x, temb: t).scalars, n(x, temb: t).scalars)
    }

    struct DemoConfig: Codable, Equatable {
        var sampleSize = 32
        var blockOutChannels = [64, 128]
        var attentionHeadDim: Int? = 8
        var extra: [String: JSONValue] = [:]

        init() {}
        init(from decoder: Decoder) throws {
            let r = try ConfigReader(decoder)
            let d = DemoConfig()
            sampleSize = try r.get("sample_size", d.sampleSize)
            blockOutChannels = try r.get("block_out_channels", d.blockOutChannels)
            attentionHeadDim = try r.optional("attention_head_dim", d.attentionHeadDim)
            extra = try r.remaining()
        }
        func encode(to encoder: Encoder) throws {
            var w = try ConfigWriter(encoder, className: "DemoModel", extra: extra)
            try w.set("sample_size", sampleSize)
            try w.set("block_out_channels", blockOutChannels)
            try w.setOptional("attention_head_dim", attentionHeadDim)
        }
    }

    func testConfigKeepsUnknownKeysAndFileValuesWin() throws {
        let json = #"{"_class_name":"DemoModel","sample_size":28,"attention_head_dim":null,"future_key":{"a":[1,2.5,"x",true,null]}}"#
        let c = try JSONDecoder().decode(DemoConfig.self, from: Data(json.utf8))
        XCTAssertEqual(c.sampleSize, 28)
        XCTAssertEqual(c.blockOutChannels, [64, 128])
        XCTAssertNil(c.attentionHeadDim, "an explicit null wins over the default")
        XCTAssertNotNil(c.extra["future_key"])
        let url = dir.appendingPathComponent("config.json")
        try ConfigFile.write(c, to: url)
        let back = try ConfigFile.read(DemoConfig.self, from: url)
        XCTAssertEqual(back, c)
        let text = try String(contentsOf: url, encoding: .utf8)
        XCTAssert(text.contains("\"_class_name\" : \"DemoModel\""), text)
        XCTAssert(text.contains("_diffusers_version"))
        // A mistyped value names its key.
        XCTAssertThrowsError(try JSONDecoder().decode(DemoConfig.self, from: Data(#"{"sample_size":"big"}"#.utf8))) { e in
            XCTAssert("\(e)".contains("sample_size"), "\(e)")
        }
    }
}
