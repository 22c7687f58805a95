import XCTest
import Foundation
@testable import Tensor
import TestSupport

/// Fast kernels against naive Double loops, on odd sizes (1, 3, 17, ...).
final class KernelTests: XCTestCase {
    func r(_ s: [Int], _ seed: UInt64) -> Tensor { randomTensor(s, seed: seed) }

    // MARK: naive references

    func naiveConv2d(_ x: Tensor, _ w: Tensor, _ b: Tensor?, stride: (Int, Int), pad: (Int, Int),
                     dil: (Int, Int), groups: Int) -> Tensor {
        let (n, cin, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (cout, cig, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3])
        let ho = (h + 2 * pad.0 - dil.0 * (kh - 1) - 1) / stride.0 + 1
        let wo = (wd + 2 * pad.1 - dil.1 * (kw - 1) - 1) / stride.1 + 1
        let cog = cout / groups
        var out = [Float](repeating: 0, count: n * cout * ho * wo)
        for b0 in 0..<n { for co in 0..<cout { for oy in 0..<ho { for ox in 0..<wo {
            var acc = Double(b?.data[co] ?? 0)
            let g = co / cog
            for ci in 0..<cig { for i in 0..<kh { for j in 0..<kw {
                let iy = oy * stride.0 - pad.0 + i * dil.0, ix = ox * stride.1 - pad.1 + j * dil.1
                if iy < 0 || iy >= h || ix < 0 || ix >= wd { continue }
                let xv = x.data[((b0 * cin + g * cig + ci) * h + iy) * wd + ix]
                acc += Double(xv) * Double(w.data[((co * cig + ci) * kh + i) * kw + j])
            } } }
            out[((b0 * cout + co) * ho + oy) * wo + ox] = Float(acc)
        } } } }
        _ = cin
        return Tensor(shape: [n, cout, ho, wo], scalars: out)
    }

    func naiveMatmul(_ a: [Float], _ b: [Float], m: Int, k: Int, n: Int) -> [Float] {
        var c = [Float](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n {
            var acc = 0.0
            for l in 0..<k { acc += Double(a[i * k + l]) * Double(b[l * n + j]) }
            c[i * n + j] = Float(acc)
        } }
        return c
    }

    // MARK: tests

    func testConv2dMatchesNaive() {
        let cases: [([Int], [Int], (Int, Int), (Int, Int), (Int, Int), Int)] = [
            ([1, 1, 1, 1], [1, 1, 1, 1], (1, 1), (0, 0), (1, 1), 1),
            ([2, 3, 17, 5], [4, 3, 3, 3], (1, 1), (1, 1), (1, 1), 1),
            ([3, 4, 9, 11], [6, 2, 3, 5], (2, 3), (1, 2), (1, 1), 2),
            ([1, 3, 13, 13], [3, 1, 3, 3], (1, 1), (2, 2), (2, 2), 3),
            ([2, 17, 33, 33], [3, 17, 1, 1], (1, 1), (0, 0), (1, 1), 1),  // pointwise, P >= 1024
            ([5, 8, 7, 3], [16, 8, 1, 1], (1, 1), (0, 0), (1, 1), 1),
            ([2, 2, 6, 6], [2, 2, 4, 4], (2, 2), (0, 0), (1, 1), 1),
        ]
        for (k, c) in cases.enumerated() {
            let x = r(c.0, UInt64(k * 3)), w = r(c.1, UInt64(k * 3 + 1)), b = r([c.1[0]], UInt64(k * 3 + 2))
            let got = x.conv2d(w, bias: b, stride: c.2, padding: c.3, dilation: c.4, groups: c.5)
            let want = naiveConv2d(x, w, b, stride: c.2, pad: c.3, dil: c.4, groups: c.5)
            assertClose(got, want, atol: 1e-4, rtol: 1e-4, "case \(k)")
        }
    }

    func testWinogradConv2dMatchesNaive() {
        // 3×3, stride 1, ≥ 16 channels: Winograd F(2×2, 3×3). Odd and even sizes (a last tile
        // half outside), paddings 0, 1 and 2, many tile rows (runs split across threads), and
        // the input gradient (the flipped-kernel convolution, padding 2 − p) through it. Each
        // case has ≥ 512 tiles (fewer stay on im2col).
        let cases: [([Int], [Int], Int)] = [
            ([26, 16, 7, 9], [17, 16, 3, 3], 1),
            ([57, 20, 8, 8], [16, 20, 3, 3], 0),
            ([43, 16, 5, 4], [24, 16, 3, 3], 2),
            ([9, 32, 16, 16], [32, 32, 3, 3], 1),
            ([256, 18, 2, 3], [16, 18, 3, 3], 1),
        ]
        for (k, c) in cases.enumerated() {
            let p = c.2
            XCTAssertTrue(ConvGeometry(x: c.0, weight: c.1, Conv2dParams(padding: (p, p))).winograd, "case \(k) takes the path")
            let x = r(c.0, UInt64(500 + k * 3)), w = r(c.1, UInt64(501 + k * 3)), b = r([c.1[0]], UInt64(502 + k * 3))
            let got = x.conv2d(w, bias: b, padding: p)
            let want = naiveConv2d(x, w, b, stride: (1, 1), pad: (p, p), dil: (1, 1), groups: 1)
            assertClose(got, want, atol: 1e-4, rtol: 1e-4, "case \(k)")
            x.requiresGrad = true; w.requiresGrad = true
            let y = x.conv2d(w, padding: p)
            let g = r(y.shape, UInt64(600 + k))
            (y * g).sum().backward()
            var lhs = 0.0, dxs = 0.0, dws = 0.0
            for i in 0..<y.count { lhs += Double(y.data[i]) * Double(g.data[i]) }
            for i in 0..<x.count { dxs += Double(x.data[i]) * Double(x.grad!.data[i]) }
            for i in 0..<w.count { dws += Double(w.data[i]) * Double(w.grad!.data[i]) }
            XCTAssertEqual(dxs, lhs, accuracy: 1e-4 * Swift.abs(lhs) + 1e-3, "case \(k) dx")
            XCTAssertEqual(dws, lhs, accuracy: 1e-4 * Swift.abs(lhs) + 1e-3, "case \(k) dw")
            // The weight gradient (Winograd F(3×3, 2×2)) element by element.
            assertClose(w.grad!, naiveConv2dWeightGrad(x, g, kernel: 3, pad: p), atol: 2e-3, rtol: 1e-4, "case \(k) dw")
        }
    }

    /// dW[co, ci, i, j] = Σ g[n, co, oy, ox] · x[n, ci, oy − p + i, ox − p + j] (stride 1, one group).
    func naiveConv2dWeightGrad(_ x: Tensor, _ g: Tensor, kernel k: Int, pad p: Int) -> Tensor {
        let (n, cin, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (cout, ho, wo) = (g.shape[1], g.shape[2], g.shape[3])
        var dw = [Float](repeating: 0, count: cout * cin * k * k)
        for co in 0..<cout { for ci in 0..<cin { for i in 0..<k { for j in 0..<k {
            var acc = 0.0
            for b in 0..<n { for oy in 0..<ho { for ox in 0..<wo {
                let iy = oy - p + i, ix = ox - p + j
                if iy < 0 || iy >= h || ix < 0 || ix >= wd { continue }
                acc += Double(g.data[((b * cout + co) * ho + oy) * wo + ox]) * Double(x.data[((b * cin + ci) * h + iy) * wd + ix])
            } } }
            dw[((co * cin + ci) * k + i) * k + j] = Float(acc)
        } } } }
        return Tensor(shape: [cout, cin, k, k], scalars: dw)
    }

    func testSmallImagesShareItemsAndMatchNaive() {
        // Many small images: several whole images per work item (unfolded side by side, the
        // product into a scratch output); 3×3 with few channels, and a pointwise convolution.
        let cases: [([Int], [Int], Int)] = [
            ([40, 5, 6, 6], [7, 5, 3, 3], 1),
            ([40, 8, 5, 5], [6, 8, 1, 1], 0),
        ]
        for (k, c) in cases.enumerated() {
            let g = ConvGeometry(x: c.0, weight: c.1, Conv2dParams(padding: (c.2, c.2)))
            XCTAssertGreaterThan(g.tiling(threads: 2).images, 1, "case \(k) shares items")
            let x = r(c.0, UInt64(700 + k * 3)), w = r(c.1, UInt64(701 + k * 3)), b = r([c.1[0]], UInt64(702 + k * 3))
            assertClose(x.conv2d(w, bias: b, padding: c.2),
                        naiveConv2d(x, w, b, stride: (1, 1), pad: (c.2, c.2), dil: (1, 1), groups: 1),
                        atol: 1e-4, rtol: 1e-4, "case \(k)")
            x.requiresGrad = true; w.requiresGrad = true
            let y = x.conv2d(w, padding: c.2)
            let gy = r(y.shape, UInt64(800 + k))
            (y * gy).sum().backward()
            var lhs = 0.0, dws = 0.0
            for i in 0..<y.count { lhs += Double(y.data[i]) * Double(gy.data[i]) }
            for i in 0..<w.count { dws += Double(w.data[i]) * Double(w.grad!.data[i]) }
            XCTAssertEqual(dws, lhs, accuracy: 1e-4 * Swift.abs(lhs) + 1e-3, "case \(k) dw")
        }
    }

    func testWideConv2dLongTilesAndChannelSplitsMatchNaive() {
        // coutG · kG ≥ 2^18 takes the long-tile path; one small image leaves threads without a
        // tile, so output channels are split (odd Cout, groups, stride and a non-square image).
        let cases: [([Int], [Int], (Int, Int), Int)] = [
            ([1, 160, 5, 7], [193, 160, 3, 3], (1, 1), 1),   // one tile: channel split
            ([2, 400, 23, 9], [300, 200, 3, 3], (2, 1), 2),  // groups, stride, several tiles per image
            ([3, 300, 3, 3], [130, 300, 3, 3], (1, 1), 1),  // images of 9 positions
        ]
        for (k, c) in cases.enumerated() {
            let x = r(c.0, UInt64(300 + k * 3)), w = r(c.1, UInt64(301 + k * 3)), b = r([c.1[0]], UInt64(302 + k * 3))
            let got = x.conv2d(w, bias: b, stride: c.2, padding: (1, 1), dilation: (1, 1), groups: c.3)
            let want = naiveConv2d(x, w, b, stride: c.2, pad: (1, 1), dil: (1, 1), groups: c.3)
            assertClose(got, want, atol: 1e-3, rtol: 1e-4, "case \(k)")
        }
    }

    func testLongConv1dUsesColumnTilesCorrectly() {
        // 70 channels × k 5 × 3001 columns is beyond one cache tile per row: column tiles.
        let x = r([2, 70, 3001], 40), w = r([9, 70, 5], 41), b = r([9], 42)
        let got = x.conv1d(w, bias: b, padding: 2)
        let want = naiveConv2d(x.reshaped([2, 70, 1, 3001]), w.reshaped([9, 70, 1, 5]), b, stride: (1, 1), pad: (0, 2),
                               dil: (1, 1), groups: 1)
        assertClose(got, want.reshaped([2, 9, 3001]), atol: 1e-4, rtol: 1e-4)
        // Gradients: the adjoint identity <conv(x), g> = <x, dx> = <w, dw> (no bias).
        x.requiresGrad = true; w.requiresGrad = true
        let y = x.conv1d(w, padding: 2)
        let g = r(y.shape, 43)
        (y * g).sum().backward()
        var lhs = 0.0, dxs = 0.0, dws = 0.0
        for i in 0..<y.count { lhs += Double(y.data[i]) * Double(g.data[i]) }
        for i in 0..<x.count { dxs += Double(x.data[i]) * Double(x.grad!.data[i]) }
        for i in 0..<w.count { dws += Double(w.data[i]) * Double(w.grad!.data[i]) }
        XCTAssertEqual(dxs, lhs, accuracy: 1e-3 * Swift.abs(lhs))
        XCTAssertEqual(dws, lhs, accuracy: 1e-3 * Swift.abs(lhs))
    }

    func testConvTransposeMatchesDirectLoops() {
        // (x, weight [Cin, Cout/G, kh, kw], stride, padding, output padding, dilation, groups)
        let cases: [([Int], [Int], (Int, Int), (Int, Int), (Int, Int), (Int, Int), Int)] = [
            ([1, 1, 1, 1], [1, 1, 1, 1], (1, 1), (0, 0), (0, 0), (1, 1), 1),
            ([2, 3, 1, 17], [3, 4, 1, 4], (1, 2), (0, 1), (0, 0), (1, 1), 1),   // Upsample1D's ConvTranspose1d(4, 2, 1)
            ([2, 4, 5, 7], [4, 3, 3, 2], (2, 3), (1, 0), (1, 2), (1, 1), 2),
            ([1, 6, 1, 13], [6, 1, 1, 8], (1, 2), (0, 7), (0, 0), (1, 1), 6),   // Dance Upsample1d: depthwise, pad 2·3+1
            ([3, 2, 4, 4], [2, 5, 3, 3], (1, 1), (1, 1), (0, 0), (2, 1), 1),    // stride 1: the flipped-kernel path
        ]
        for (k, c) in cases.enumerated() {
            let x = r(c.0, UInt64(200 + k * 3)), w = r(c.1, UInt64(201 + k * 3)), b = r([c.1[1] * c.6], UInt64(202 + k * 3))
            let p = Conv2dParams(stride: c.2, padding: c.3, dilation: c.5, groups: c.6)
            let got = x.convTranspose2d(w, bias: b, stride: c.2, padding: c.3, outputPadding: c.4, dilation: c.5, groups: c.6)
            let want = convTranspose2dReference(x, w, b, p, outputPadding: c.4)
            assertClose(got, want, atol: 1e-5, rtol: 1e-5, "case \(k)")
        }
        // The 1D form is the 2D one on [N, C, 1, L]: L_out = (L − 1)·2 − 2 + 4 = 2L.
        let x = r([2, 3, 9], 230), w = r([3, 5, 4], 231)
        XCTAssertEqual(x.convTranspose1d(w, stride: 2, padding: 1).shape, [2, 5, 18])
    }

    func testReflectPadMatchesTorchIndexing() {
        // F.pad([0, 1, 2, 3, 4], (3, 2), mode="reflect") = [3, 2, 1, 0, 1, 2, 3, 4, 3, 2]
        let x = Tensor(shape: [1, 1, 5], scalars: [0, 1, 2, 3, 4])
        XCTAssertEqual(x.reflectPadded(left: 3, right: 2).scalars, [3, 2, 1, 0, 1, 2, 3, 4, 3, 2])
        let y = r([3, 2, 17], 240).reflectPadded(left: 5, right: 16)
        XCTAssertEqual(y.shape, [3, 2, 38])
    }

    func testConv2dBackwardMatchesNaiveAdjoint() {
        // <conv(x), g> = <x, conv^T(g)>: the input gradient is the adjoint of the forward map.
        for (k, (groups, stride)) in [(1, 2), (2, 2), (1, 1), (2, 1)].enumerated() {
            let x = r([3, 4, 9, 8], UInt64(50 + k)), w = r([6, 4 / groups, 3, 3], UInt64(60 + k))
            x.requiresGrad = true; w.requiresGrad = true
            let y = x.conv2d(w, stride: (stride, 1), padding: (1, 1), groups: groups)
            let g = r(y.shape, UInt64(70 + k))
            (y * g).sum().backward()
            var lhs = 0.0, rhs = 0.0
            for i in 0..<y.count { lhs += Double(y.data[i]) * Double(g.data[i]) }
            for i in 0..<x.count { rhs += Double(x.data[i]) * Double(x.grad!.data[i]) }
            XCTAssertEqual(lhs, rhs, accuracy: 1e-3 * Swift.max(1, Swift.abs(lhs)))
            var rhsW = 0.0
            for i in 0..<w.count { rhsW += Double(w.data[i]) * Double(w.grad!.data[i]) }
            XCTAssertEqual(lhs, rhsW, accuracy: 1e-3 * Swift.max(1, Swift.abs(lhs)))
        }
    }

    func testMatmulMatchesNaive() {
        for (m, k, n) in [(1, 1, 1), (3, 17, 5), (17, 3, 1), (33, 65, 17)] {
            let a = r([m, k], UInt64(m)), b = r([k, n], UInt64(n + 100))
            let want = naiveMatmul(a.scalars, b.scalars, m: m, k: k, n: n)
            assertClose(a.matmul(b), want.map(Double.init), atol: 1e-4, rtol: 1e-4)
            // transposed storage gives the same product
            assertClose(a.transposed().matmul(b.transposed(), transposeSelf: true, transposeOther: true),
                        want.map(Double.init), atol: 1e-4, rtol: 1e-4)
        }
        // Large enough to be split into panels across threads, both ways, all transpositions.
        for (m, k, n) in [(100, 300, 257), (257, 300, 100), (33, 1000, 129)] {
            let a = r([m, k], UInt64(m + 7)), b = r([k, n], UInt64(n + 8))
            let want = naiveMatmul(a.scalars, b.scalars, m: m, k: k, n: n).map(Double.init)
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let got = (ta ? a.transposed() : a).matmul(tb ? b.transposed() : b, transposeSelf: ta, transposeOther: tb)
                assertClose(got, want, atol: 1e-3, rtol: 1e-4, "\(m)x\(k)x\(n) \(ta) \(tb)")
            }
        }
        // batched, and a shared right-hand matrix
        let a = r([3, 5, 7], 1), b = r([3, 7, 2], 2), s = r([7, 2], 3)
        let ab = a.matmul(b), asb = a.matmul(s)
        for i in 0..<3 {
            let ai = Array(a.scalars[(i * 35)..<((i + 1) * 35)])
            let bi = Array(b.scalars[(i * 14)..<((i + 1) * 14)])
            XCTAssertEqual(Array(ab.scalars[(i * 10)..<((i + 1) * 10)]), naiveMatmul(ai, bi, m: 5, k: 7, n: 2), accuracy: 1e-4)
            XCTAssertEqual(Array(asb.scalars[(i * 10)..<((i + 1) * 10)]), naiveMatmul(ai, s.scalars, m: 5, k: 7, n: 2), accuracy: 1e-4)
        }
    }

    func testBroadcastAndReductionsMatchNaive() {
        let a = r([3, 1, 5], 10), b = r([4, 1], 11)
        let c = a * b + a - b / (b.abs() + 1)
        XCTAssertEqual(c.shape, [3, 4, 5])
        for i in 0..<3 { for j in 0..<4 { for k in 0..<5 {
            let av = a.data[i * 5 + k], bv = b.data[j]
            XCTAssertEqual(c.data[(i * 4 + j) * 5 + k], av * bv + av - bv / (Swift.abs(bv) + 1), accuracy: 1e-6)
        } } }
        let x = r([3, 17, 5], 12)
        let s1 = x.sum(axes: [1]), s02 = x.sum(axes: [0, 2], keepDims: true)
        XCTAssertEqual(s02.shape, [1, 17, 1])
        for i in 0..<3 { for k in 0..<5 {
            var acc = 0.0
            for j in 0..<17 { acc += Double(x.data[(i * 17 + j) * 5 + k]) }
            XCTAssertEqual(Double(s1.data[i * 5 + k]), acc, accuracy: 1e-5)
        } }
        for j in 0..<17 {
            var acc = 0.0
            for i in 0..<3 { for k in 0..<5 { acc += Double(x.data[(i * 17 + j) * 5 + k]) } }
            XCTAssertEqual(Double(s02.data[j]), acc, accuracy: 1e-5)
        }
        let big = r([1_000_003], 13)
        var acc = 0.0
        for i in 0..<big.count { acc += Double(big.data[i]) }
        XCTAssertEqual(Double(big.sum().item()), acc, accuracy: 1e-2)
        let v = x.variance(axes: [2], correction: 1)
        for i in 0..<3 { for j in 0..<17 {
            let row = (0..<5).map { Double(x.data[(i * 17 + j) * 5 + $0]) }
            let m = row.reduce(0, +) / 5
            XCTAssertEqual(Double(v.data[i * 17 + j]), row.map { ($0 - m) * ($0 - m) }.reduce(0, +) / 4, accuracy: 1e-5)
        } }
    }

    func testPointwiseFunctionsMatchLibm() {
        let x = Tensor(shape: [2001], scalars: (0..<2001).map { Float($0 - 1000) / 100 })
        func check(_ y: Tensor, _ f: (Double) -> Double, rtol: Double, atol: Double, _ name: String) {
            for i in 0..<x.count {
                let want = f(Double(x.data[i]))
                XCTAssertEqual(Double(y.data[i]), want, accuracy: atol + rtol * Swift.abs(want), "\(name)(\(x.data[i]))")
            }
        }
        check(x.exp(), Foundation.exp, rtol: 1e-6, atol: 0, "exp")
        check(x.tanh(), Foundation.tanh, rtol: 1e-6, atol: 2e-7, "tanh")
        check(x.sigmoid(), { 1 / (1 + Foundation.exp(-$0)) }, rtol: 1e-6, atol: 1e-7, "sigmoid")
        check(x.silu(), { $0 / (1 + Foundation.exp(-$0)) }, rtol: 1e-6, atol: 1e-6, "silu")
        check(x.gelu(), { 0.5 * $0 * (1 + Foundation.erf($0 / 2.0.squareRoot())) }, rtol: 1e-6, atol: 2e-6, "gelu")
        check(x.gelu(approximateTanh: true),
              { 0.5 * $0 * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * ($0 + 0.044715 * $0 * $0 * $0))) },
              rtol: 1e-6, atol: 2e-6, "gelu_tanh")
        check(x.relu(), { Swift.max($0, 0) }, rtol: 0, atol: 0, "relu")
        check(x.mish(), { $0 * Foundation.tanh(Foundation.log1p(Foundation.exp($0))) }, rtol: 1e-6, atol: 1e-6, "mish")
        let e = Tensor(shape: [4], scalars: [-200, -88, 88, 200]).exp()
        XCTAssertEqual(e.data[0], 0, accuracy: 1e-37)
        XCTAssert(e.data[2].isFinite && e.data[2] > 1e38)
        XCTAssert(Tensor(shape: [2], scalars: [-100, 100]).sigmoid().scalars == [0, 1] ||
                  Swift.abs(Tensor(shape: [1], scalars: [-100]).sigmoid().item()) < 1e-30)
    }

    func testCKernelsMatchTheSwiftReference() {
        // Odd lengths so every vector tail is exercised.
        for n in [1, 3, 17, 1000, 4099] {
            let x = Tensor(shape: [n], scalars: (0..<n).map { Float($0 % 97) * 0.21 - 10 })
            for op in [UnaryOp.exp, .sigmoid, .silu, .tanh, .gelu, .geluTanh] {
                assertClose(unaryForward(op, x), unaryForwardReference(op, x), atol: 1e-6, rtol: 2e-6, "\(op) n=\(n)")
            }
            let row = x.copy()
            let (m, sum) = expRow(row.data, n)
            XCTAssertEqual(m, x.scalars.max()!)
            var want = 0.0
            for v in x.scalars { want += Foundation.exp(Double(v - m)) }
            XCTAssertEqual(Double(sum), want, accuracy: 1e-5 * want)
        }
    }

    func testNormsMatchNaive() {
        let x = r([3, 6, 17], 20), w = r([6], 21), b = r([6], 22)
        let y = x.groupNorm(groups: 3, weight: w, bias: b, eps: 1e-6)
        let ys = x.groupNorm(groups: 3, weight: w, bias: b, eps: 1e-6, silu: true)
        for n in 0..<3 { for g in 0..<3 {
            var vals: [Double] = []
            for c in (g * 2)..<(g * 2 + 2) { for s in 0..<17 { vals.append(Double(x.data[(n * 6 + c) * 17 + s])) } }
            let m = vals.reduce(0, +) / Double(vals.count)
            let v = vals.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(vals.count)
            for c in (g * 2)..<(g * 2 + 2) { for s in 0..<17 {
                let i = (n * 6 + c) * 17 + s
                let want = (Double(x.data[i]) - m) / (v + 1e-6).squareRoot() * Double(w.data[c]) + Double(b.data[c])
                XCTAssertEqual(Double(y.data[i]), want, accuracy: 1e-5)
                // fused with SiLU: h·σ(h) of the same h
                XCTAssertEqual(Double(ys.data[i]), want / (1 + Foundation.exp(-want)), accuracy: 1e-5)
            } }
        } }
        let z = r([5, 33], 23), lw = r([33], 24), lb = r([33], 25)
        let ly = z.layerNorm(weight: lw, bias: lb)
        for row in 0..<5 {
            let vals = (0..<33).map { Double(z.data[row * 33 + $0]) }
            let m = vals.reduce(0, +) / 33
            let v = vals.map { ($0 - m) * ($0 - m) }.reduce(0, +) / 33
            for k in 0..<33 {
                let want = (vals[k] - m) / (v + 1e-5).squareRoot() * Double(lw.data[k]) + Double(lb.data[k])
                XCTAssertEqual(Double(ly.data[row * 33 + k]), want, accuracy: 1e-5)
            }
        }
    }

    func testAttentionMatchesNaiveAcrossChunks() {
        // Lq = 300 > one chunk of 128 rows; Lk = 17.
        let (B, H, Lq, Lk, D, Dv) = (2, 3, 300, 17, 5, 3)
        let q = r([B, H, Lq, D], 30), k = r([B, H, Lk, D], 31), v = r([B, H, Lk, Dv], 32)
        let o = Tensor.scaledDotProductAttention(q, k, v)
        let scale = 1 / Double(D).squareRoot()
        for bh in 0..<(B * H) { for i in stride(from: 0, to: Lq, by: 7) {
            var s = [Double](repeating: 0, count: Lk)
            for j in 0..<Lk {
                for d in 0..<D { s[j] += Double(q.data[(bh * Lq + i) * D + d]) * Double(k.data[(bh * Lk + j) * D + d]) }
                s[j] *= scale
            }
            let m = s.max()!
            let e = s.map { Foundation.exp($0 - m) }
            let z = e.reduce(0, +)
            for dv in 0..<Dv {
                var acc = 0.0
                for j in 0..<Lk { acc += e[j] / z * Double(v.data[(bh * Lk + j) * Dv + dv]) }
                XCTAssertEqual(Double(o.data[(bh * Lq + i) * Dv + dv]), acc, accuracy: 1e-5)
            }
        } }
    }

    /// The narrow-head kernel (CKernels) against the BLAS path, forward and backward, for heads-first
    /// [B, H, L, D] and interleaved [B, L, H·D] tensors (the same numbers permuted), with and
    /// without the causal mask, row counts past a 16-row block and a 128-row chunk, widths off 8.
    func testNarrowAttentionMatchesTheBLASPathInBothLayouts() {
        defer { AttentionDims.narrowEnabled = true }
        for (B, H, Lq, Lk, D, Dv) in [(2, 3, 37, 21, 5, 7), (1, 2, 150, 150, 9, 8), (3, 1, 1, 4, 16, 1)] {
            for causal in [false, true] where !causal || Lq <= Lk {
                let q = r([B, H, Lq, D], 40), k = r([B, H, Lk, D], 41), v = r([B, H, Lk, Dv], 42)
                let g = r([B, H, Lq, Dv], 43)
                func run(_ narrow: Bool, interleaved: Bool) -> [Tensor] {
                    AttentionDims.narrowEnabled = narrow
                    func inter(_ x: Tensor) -> Tensor {
                        x.permuted(0, 2, 1, 3).reshaped([x.shape[0], x.shape[2], x.shape[1] * x.shape[3]]).detached()
                    }
                    func headsFirst(_ x: Tensor, _ w: Int) -> Tensor {
                        x.reshaped([x.shape[0], x.shape[1], H, w]).permuted(0, 2, 1, 3).detached()
                    }
                    let (qi, ki, vi) = interleaved ? (inter(q), inter(k), inter(v)) : (q.detached(), k.detached(), v.detached())
                    for t in [qi, ki, vi] { t.requiresGrad = true }
                    let o = interleaved
                        ? Tensor.multiHeadAttention(query: qi, key: ki, value: vi, heads: H, scale: 0.6, causal: causal)
                        : Tensor.scaledDotProductAttention(qi, ki, vi, scale: 0.6, causal: causal)
                    (o * (interleaved ? inter(g) : g)).sum().backward()
                    let grads = [qi.grad!, ki.grad!, vi.grad!]
                    if !interleaved { return [o.detached()] + grads }
                    return [headsFirst(o, Dv)] + zip(grads, [D, D, Dv]).map { headsFirst($0, $1) }
                }
                let want = run(false, interleaved: false)
                for (narrow, interleaved) in [(true, false), (true, true), (false, true)] {
                    let got = run(narrow, interleaved: interleaved)
                    for (name, (a, b)) in zip(["o", "dq", "dk", "dv"], zip(got, want)) {
                        XCTAssertEqual(a.shape, b.shape)
                        let err = zip(a.scalars, b.scalars).map { abs($0 - $1) }.max() ?? 0
                        XCTAssertLessThan(err, 2e-5, "\(name) narrow \(narrow) interleaved \(interleaved) causal \(causal) \([B, H, Lq, Lk, D, Dv])")
                    }
                }
            }
        }
    }

    func testCausalAttentionMatchesNaive() {
        // Lq = Lk = 150 > one chunk of 128 rows: row i sees keys 0...i.
        let (B, H, L, D, Dv) = (1, 2, 150, 5, 3)
        let q = r([B, H, L, D], 33), k = r([B, H, L, D], 34), v = r([B, H, L, Dv], 35)
        let o = Tensor.scaledDotProductAttention(q, k, v, causal: true)
        let scale = 1 / Double(D).squareRoot()
        for bh in 0..<(B * H) { for i in [0, 1, 2, 63, 127, 128, 129, 149] {
            var s = [Double](repeating: 0, count: i + 1)
            for j in 0...i {
                for d in 0..<D { s[j] += Double(q.data[(bh * L + i) * D + d]) * Double(k.data[(bh * L + j) * D + d]) }
                s[j] *= scale
            }
            let m = s.max()!
            let e = s.map { Foundation.exp($0 - m) }
            let z = e.reduce(0, +)
            for dv in 0..<Dv {
                var acc = 0.0
                for j in 0...i { acc += e[j] / z * Double(v.data[(bh * L + j) * Dv + dv]) }
                XCTAssertEqual(Double(o.data[(bh * L + i) * Dv + dv]), acc, accuracy: 1e-5)
            }
        } }
    }

    func testSoftmaxIsStable() {
        let x = Tensor(shape: [2, 3], scalars: [1000, 1001, 1002, -1000, -1000, -1000])
        let y = x.softmax()
        XCTAssert(y.scalars.allSatisfy { $0.isFinite })
        XCTAssertEqual(y.data[2], Float(1 / (1 + Foundation.exp(-1.0) + Foundation.exp(-2.0))), accuracy: 1e-6)
        XCTAssertEqual(y.data[3], 1.0 / 3, accuracy: 1e-6)
    }

    func testUpsamplePoolEmbeddingAndShapeOps() {
        let x = Tensor(shape: [1, 1, 2, 2], scalars: [1, 2, 3, 4])
        XCTAssertEqual(x.upsampleNearest(scale: 2).scalars, [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4])
        XCTAssertEqual(Tensor(shape: [1, 1, 3], scalars: [1, 2, 3]).upsampleNearest(size: [5]).scalars, [1, 1, 2, 2, 3])
        XCTAssertEqual(x.upsampleNearest(scale: 2).avgPool(kernel: [2, 2]).scalars, [1, 2, 3, 4])
        XCTAssertEqual(Tensor(shape: [1, 1, 5], scalars: [1, 2, 3, 4, 5]).avgPool(kernel: [2]).scalars, [1.5, 3.5])
        let table = Tensor(shape: [3, 2], scalars: [0, 1, 10, 11, 20, 21])
        XCTAssertEqual(table.embedding([2, 0, 2]).scalars, [20, 21, 0, 1, 20, 21])
        let t = Tensor.arange(24).reshaped([2, 3, 4])
        let p = t.permuted(2, 0, 1)
        for i in 0..<2 { for j in 0..<3 { for k in 0..<4 {
            XCTAssertEqual(p.data[(k * 2 + i) * 3 + j], Float((i * 3 + j) * 4 + k))
        } } }
        XCTAssertEqual(t.slice(axis: 2, 1..<3).slice(axis: 0, 1..<2).scalars, [13, 14, 17, 18, 21, 22])
        XCTAssertEqual(Tensor.arange(3).reshaped([1, 3]).padded([(1, 0), (2, 1)], value: 9).scalars,
                       [9, 9, 9, 9, 9, 9, 9, 9, 0, 1, 2, 9])
        let parts = t.split(sizes: [1, 3], axis: 2)
        assertClose(Tensor.concat(parts, axis: 2), t)
        XCTAssert(t.reshaped([6, 4]).sharesStorage(with: t), "reshape is a view")
        XCTAssertFalse(t.transposed().sharesStorage(with: t), "permute copies")
    }
}

private func XCTAssertEqual(_ a: [Float], _ b: [Float], accuracy: Float, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, file: file, line: line)
    for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: accuracy, file: file, line: line) }
}
