import XCTest
import Foundation
@testable import NN
import Tensor
import TestSupport

/// Weights held as 16-bit floats (F16/BF16 checkpoints run for inference): conversions are
/// exact or correctly rounded, layers give the same numbers as with the widened weights, a
/// 16-bit file loads without a Float32 copy, and half the bytes are held.
final class HalfWeightTests: XCTestCase {
    /// Every one of the 65536 half bit patterns widens exactly as Swift's Float16 does; rounding
    /// back gives the same bits (NaNs stay NaN).
    func testEveryHalfPatternRoundTrips() {
        let t = Tensor.uninitialized([65536])
        var bits = [UInt16](0...65535)
        bits.withUnsafeBytes { t.assignHalf(bits: $0.baseAddress!, format: .f16) }
        let wide = t.materialized()
        for i in 0..<65536 {
            let want = Float(Float16(bitPattern: UInt16(i)))
            if want.isNaN { XCTAssertTrue(wide[flat: i].isNaN); continue }
            XCTAssertEqual(wide[flat: i].bitPattern, want.bitPattern, "pattern \(i)")
        }
        let back = Tensor.uninitialized([65536])
        back.storeAsHalf(.f16)
        back.copyFrom(wide)
        let again = back.materialized()
        for i in 0..<65536 where !wide[flat: i].isNaN { XCTAssertEqual(again[flat: i].bitPattern, wide[flat: i].bitPattern) }
        bits = []
    }

    /// Float32 → F16 and → BF16 round to nearest, ties to even, as Swift's conversions do
    /// (including overflow to infinity and subnormal results).
    func testRoundingMatchesSwift() {
        var rng = RandomGenerator(seed: 3)
        var values = rng.normal([1, 4096], std: 3).scalars
        values += [65504, 65519.99, 65520, 1e6, -1e6, 6e-8, 3e-8, 2.98e-8, 1e-5, -6.1e-5, 0, -0, 1.0009765625 + 0.00048828125]
        values += (0..<500).map { Float(bitPattern: 0x3380_0000 + UInt32($0) * 0x2_3457) }  // the half-subnormal range
        let src = Tensor(shape: [values.count], scalars: values)
        let h = src.copy(); h.storeAsHalf(.f16)
        let b = src.copy(); b.storeAsHalf(.bf16)
        let hw = h.materialized(), bw = b.materialized()
        for (i, v) in values.enumerated() {
            XCTAssertEqual(hw[flat: i].bitPattern, Float(Float16(v)).bitPattern, "f16 of \(v)")
            // bfloat16 by hand: round the float's bits to the top 16, ties to even.
            let x = v.bitPattern, r = (x &+ 0x7fff &+ ((x >> 16) & 1)) & 0xffff_0000
            XCTAssertEqual(bw[flat: i].bitPattern, r, "bf16 of \(v)")
        }
        XCTAssertEqual(h.elementBytes, values.count * 2)
    }

    /// A Linear and a Conv2d with 16-bit weights compute what they compute with the widened
    /// weights, bit for bit; the F32 path is untouched.
    func testLayersWithHalfWeightsMatchWidenedWeights() {
        NNInit.seed(7)
        let lin = Linear(24, 40), conv = Conv2d(6, 8, kernelSize: 3, padding: 1)
        var rng = RandomGenerator(seed: 2)
        let x = rng.normal([3, 5, 24]), img = rng.normal([2, 6, 9, 7])
        for format in [HalfFormat.f16, .bf16] {
            let l2 = Linear(24, 40), c2 = Conv2d(6, 8, kernelSize: 3, padding: 1)
            l2.weight.copyFrom(lin.weight); l2.bias!.copyFrom(lin.bias!)
            c2.weight.copyFrom(conv.weight); c2.bias!.copyFrom(conv.bias!)
            l2.storeWeightsAsHalf(format); c2.storeWeightsAsHalf(format)
            XCTAssertEqual(l2.weight.halfFormat, format)
            XCTAssertNil(l2.bias!.halfFormat, "biases stay Float32")
            // The reference: the same weights rounded, held as Float32.
            lin.weight.copyFrom(l2.weight.materialized()); conv.weight.copyFrom(c2.weight.materialized())
            let (y, y2) = GradMode.withoutGrad { (lin(x), l2(x)) }
            XCTAssertEqual(y.scalars, y2.scalars)
            let (z, z2) = GradMode.withoutGrad { (conv(img), c2(img)) }
            XCTAssertEqual(z.scalars, z2.scalars)
            XCTAssertEqual(l2.parameterBytes, 24 * 40 * 2 + 40 * 4)
        }
    }

    /// `load(keepHalf:)` from an F16 file holds the layer weights as F16 (biases and other
    /// parameters as Float32) and the model computes what the Float32 load of the same file does.
    func testKeepHalfLoadMatchesFloatLoad() throws {
        NNInit.seed(11)
        let net = TwoLayers()
        let dir = try TemporaryFolder()
        let file = dir.url.appendingPathComponent("w.safetensors")
        try net.save(safetensors: file, dtype: .F16)
        let a = try NNInit.skippingRandomInit { TwoLayers() }
        try a.load(safetensors: file)
        let b = try NNInit.skippingRandomInit { TwoLayers() }
        try b.load(safetensors: file, keepHalf: true)
        XCTAssertNil(a.lin.weight.halfFormat)
        XCTAssertEqual(b.lin.weight.halfFormat, .f16)
        XCTAssertEqual(b.conv.weight.halfFormat, .f16)
        XCTAssertNil(b.norm.weight!.halfFormat)
        XCTAssertLessThan(b.parameterBytes, a.parameterBytes * 6 / 10)
        var rng = RandomGenerator(seed: 4)
        let x = rng.normal([2, 4, 6, 6])
        let (ya, yb) = GradMode.withoutGrad { (a(x), b(x)) }
        XCTAssertEqual(ya.scalars, yb.scalars)
        // Saving a 16-bit model writes the same file back.
        let again = dir.url.appendingPathComponent("again.safetensors")
        try b.save(safetensors: again, dtype: .F16)
        XCTAssertEqual(try Data(contentsOf: again), try Data(contentsOf: file))
    }

    /// An F32 file loaded with keepHalf stays Float32 (nothing to keep).
    func testKeepHalfLeavesFloatFilesAlone() throws {
        NNInit.seed(12)
        let net = TwoLayers()
        let dir = try TemporaryFolder()
        let file = dir.url.appendingPathComponent("w.safetensors")
        try net.save(safetensors: file)
        let b = try NNInit.skippingRandomInit { TwoLayers() }
        try b.load(safetensors: file, keepHalf: true)
        XCTAssertNil(b.lin.weight.halfFormat)
        XCTAssertEqual(b.lin.weight.scalars, net.lin.weight.scalars)
    }
}

private final class TwoLayers: Module {
    let conv = Conv2d(4, 8, kernelSize: 3, padding: 1)
    let norm = GroupNorm(groups: 2, channels: 8)
    let lin = Linear(8, 5)
    func visit(_ v: inout ModuleVisitor) { v("conv", conv); v("norm", norm); v("lin", lin) }
    func callAsFunction(_ x: Tensor) -> Tensor {
        let h = norm(conv(x)).silu()  // [N, 8, H, W]
        return lin(h.mean(axis: 3).mean(axis: 2))
    }
}
