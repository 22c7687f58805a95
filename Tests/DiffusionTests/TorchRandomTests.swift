import Foundation
import XCTest
import Diffusion
import Tensor

/// TorchGenerator against torch 2.15.0 (Tests/References/make_torch_randn_goldens.py):
/// every stored value must have the same float32 bit pattern, and for large tensors the
/// count, the sequential sum and the sum of all bit patterns must agree too.
final class TorchRandomTests: XCTestCase {
    struct Draw: Decodable {
        let shape: [Int]
        let count: Int
        let bits: [UInt32]
        let sum: Double?
        let bits_sum: UInt64?
    }

    struct Case: Decodable {
        let name: String
        let seed: UInt64
        let draws: [Draw]
    }

    struct File: Decodable {
        let torch: String
        let cases: [Case]
    }

    static func load() throws -> File {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Goldens/torch_randn.json")
        return try JSONDecoder().decode(File.self, from: Data(contentsOf: url))
    }

    func testMatchesTorchBitForBit() throws {
        let file = try Self.load()
        XCTAssertGreaterThanOrEqual(file.cases.count, 40)
        var checked = 0
        for c in file.cases {
            var g = TorchGenerator(seed: c.seed)
            for (k, d) in c.draws.enumerated() {
                let t = g.randn(d.shape)
                XCTAssertEqual(t.shape, d.shape, c.name)
                let n = d.shape.reduce(1, *)
                XCTAssertEqual(n, d.count, c.name)
                let p = t.data
                var mismatches = 0
                for i in 0..<d.bits.count where p[i].bitPattern != d.bits[i] {
                    if mismatches < 3 {
                        XCTFail("\(c.name) draw \(k) [\(i)]: \(p[i]) (0x\(String(p[i].bitPattern, radix: 16))) vs "
                                + "\(Float(bitPattern: d.bits[i])) (0x\(String(d.bits[i], radix: 16)))")
                    }
                    mismatches += 1
                }
                checked += d.bits.count
                if let sum = d.sum, let bitsSum = d.bits_sum {
                    var s = 0.0
                    var b: UInt64 = 0
                    for i in 0..<n {
                        s += Double(p[i])
                        b = b &+ UInt64(p[i].bitPattern)
                    }
                    XCTAssertEqual(s.bitPattern, sum.bitPattern, "\(c.name) draw \(k): sum \(s) vs \(sum)")
                    XCTAssertEqual(b, bitsSum, "\(c.name) draw \(k): some element differs in its bits")
                    checked += n - d.bits.count
                }
            }
        }
        XCTAssertGreaterThan(checked, 18_000)  // 18,688 values in all
    }

    /// torch seeds its mt19937 with the low 32 bits of the seed.
    func testSeedUsesLow32Bits() {
        var a = TorchGenerator(seed: (1 << 32) + 7)
        var b = TorchGenerator(seed: 7)
        for shape in [[5], [33]] {
            let x = a.randn(shape), y = b.randn(shape)
            for i in 0..<x.count { XCTAssertEqual(x.data[i].bitPattern, y.data[i].bitPattern) }
        }
    }

    /// nextNormal is randn (the NoiseSource samplers draw through).
    func testNextNormalIsRandn() {
        var a = TorchGenerator(seed: 42)
        var b = TorchGenerator(seed: 42)
        for shape in [[3], [2, 9], [7]] {
            let x = a.nextNormal(shape), y = b.randn(shape)
            XCTAssertEqual(x.shape, shape)
            for i in 0..<x.count { XCTAssertEqual(x.data[i].bitPattern, y.data[i].bitPattern) }
        }
    }
}
