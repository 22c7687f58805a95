import XCTest
@testable import Tensor
import TestSupport

/// Finite-difference checks, one per differentiable op, each with its own tolerance.
final class GradientTests: XCTestCase {
    func r(_ s: [Int], _ seed: UInt64, low: Float = -1, high: Float = 1) -> Tensor {
        randomTensor(s, seed: seed, low: low, high: high)
    }

    func testBroadcastBinaryOps() {
        gradientCheck([r([2, 3, 4], 1), r([3, 1], 2)]) { $0[0] + $0[1] }
        gradientCheck([r([2, 3, 4], 3), r([4], 4)]) { $0[0] - $0[1] }
        gradientCheck([r([1, 3, 1], 5), r([2, 1, 5], 6)]) { $0[0] * $0[1] }
        gradientCheck([r([2, 3], 7), r([2, 3], 8, low: 0.5, high: 2)]) { $0[0] / $0[1] }
        gradientCheck([r([3], 9), r([2, 3], 10, low: 0.5, high: 2)]) { $0[0] / $0[1] }
        // fan-out: the same tensor used twice accumulates both paths
        gradientCheck([r([5], 11)]) { $0[0] * $0[0] + $0[0] }
    }

    func testScalarForms() {
        gradientCheck([r([7], 12)]) { ($0[0] * 3 + 1) - 2 }
        gradientCheck([r([7], 13, low: 0.5, high: 2)]) { 2 / $0[0] - $0[0] / 4 }
        gradientCheck([r([7], 14)]) { 1 - (-$0[0]) }
        gradientCheck([r([7], 15, low: 0.5, high: 2)]) { $0[0].pow(1.5) }
        gradientCheck([r([9], 16, low: -2, high: 2)]) { $0[0].clamped(min: -1, max: 1) }
    }

    func testUnaryOps() {
        let pos = { (s: UInt64) in self.r([3, 5], s, low: 0.3, high: 3) }
        gradientCheck([r([3, 5], 20)], h: 1e-3) { $0[0].exp() }
        gradientCheck([pos(21)], h: 1e-3) { $0[0].log() }
        gradientCheck([pos(22)], h: 1e-3) { $0[0].sqrt() }
        gradientCheck([pos(23)], h: 1e-3) { $0[0].rsqrt() }
        gradientCheck([r([3, 5], 24, low: -3, high: 3)], h: 1e-3) { $0[0].tanh() }
        gradientCheck([r([3, 5], 25, low: -4, high: 4)], h: 1e-3) { $0[0].sigmoid() }
        gradientCheck([r([3, 5], 26, low: -4, high: 4)], h: 1e-3) { $0[0].silu() }
        gradientCheck([r([3, 5], 27, low: -3, high: 3)], h: 1e-3) { $0[0].gelu() }
        gradientCheck([r([3, 5], 28, low: -3, high: 3)], h: 1e-3) { $0[0].gelu(approximateTanh: true) }
        gradientCheck([pos(29)], h: 1e-3) { $0[0].reciprocal() }
        gradientCheck([r([3, 5], 30)], h: 1e-3) { $0[0].square() }
        gradientCheck([pos(31)], h: 1e-3) { $0[0].abs() }  // away from the kink at 0
        gradientCheck([pos(32)], h: 1e-3) { $0[0].relu() }
        gradientCheck([pos(33).affine(scale: -1, shift: 0)], h: 1e-3) { $0[0].relu() }
        gradientCheck([r([3, 5], 34, low: -4, high: 4)], h: 1e-3) { $0[0].mish() }
    }

    func testReductions() {
        gradientCheck([r([2, 3, 4], 40)]) { $0[0].sum(axes: [1]) }
        gradientCheck([r([2, 3, 4], 41)]) { $0[0].sum(axes: [0, 2], keepDims: true) }
        gradientCheck([r([2, 3, 4], 42)]) { $0[0].mean(axes: [2]) }
        gradientCheck([r([2, 3, 4], 43)]) { $0[0].mean() }
        gradientCheck([r([2, 3, 4], 44)]) { $0[0].variance(axes: [1, 2]) }
        gradientCheck([r([2, 3, 4], 45)]) { $0[0].variance(axes: [0], correction: 1) }
        gradientCheck([r([3, 1], 46)]) { $0[0].broadcast(to: [2, 3, 4]) }
    }

    func testShapeOps() {
        gradientCheck([r([2, 3, 4], 50)]) { $0[0].reshaped([4, 6]).permuted(1, 0) }
        gradientCheck([r([2, 3, 4, 5], 51)]) { $0[0].permuted(0, 2, 3, 1) }
        gradientCheck([r([2, 3, 4], 52)]) { $0[0].transposed(0, 2) }
        gradientCheck([r([3, 5, 4], 53)]) { $0[0].slice(axis: 1, 1..<4) }
        gradientCheck([r([2, 3, 4], 54)]) { $0[0].padded([(1, 2), (0, 3)], value: 0.5) }
        gradientCheck([r([2, 3], 55), r([2, 2], 56), r([2, 1], 57)]) { Tensor.concat($0, axis: 1) }
        gradientCheck([r([4, 6], 58)]) { x in
            let p = x[0].split(sizes: [1, 2, 3], axis: 1)
            return p[0] * 2 + p[1].sum(axis: 1, keepDims: true) - p[2].mean(axis: 1, keepDims: true)
        }
        gradientCheck([r([6, 2], 59)]) { x in
            let c = x[0].chunked(3, axis: 0)
            return c[0] * c[1] + c[2]
        }
    }

    func testUpsampleAndPool() {
        gradientCheck([r([2, 2, 5], 60)]) { $0[0].upsampleNearest(scale: 2) }
        gradientCheck([r([1, 2, 3, 4], 61)]) { $0[0].upsampleNearest(size: [5, 7]) }
        gradientCheck([r([1, 2, 2, 3, 3], 62)]) { $0[0].upsampleNearest(scale: 2) }
        gradientCheck([r([2, 2, 9], 63)]) { $0[0].avgPool(kernel: [2]) }
        gradientCheck([r([1, 3, 6, 7], 64)]) { $0[0].avgPool(kernel: [2, 2]) }
        gradientCheck([r([1, 2, 7, 7], 65)]) { $0[0].avgPool(kernel: [3, 3], stride: [2, 2]) }
        gradientCheck([r([1, 2, 4, 4, 4], 66)]) { $0[0].avgPool(kernel: [2, 2, 2]) }
    }

    func testEmbeddingAndMatmul() {
        gradientCheck([r([5, 3], 70)]) { $0[0].embedding([4, 0, 4, 2]) }
        gradientCheck([r([3, 4], 71), r([4, 5], 72)]) { $0[0].matmul($0[1]) }
        gradientCheck([r([4, 3], 73), r([5, 4], 74)]) { $0[0].matmul($0[1], transposeSelf: true, transposeOther: true) }
        gradientCheck([r([2, 3, 4], 75), r([2, 5, 4], 76)]) { $0[0].matmul($0[1], transposeOther: true) }
        gradientCheck([r([2, 4, 3], 77), r([2, 4, 5], 78)]) { $0[0].matmul($0[1], transposeSelf: true) }
        gradientCheck([r([2, 3, 4], 79), r([4, 5], 80)]) { $0[0].matmul($0[1]) }
        gradientCheck([r([2, 3, 4], 81), r([5, 4], 82)]) { $0[0].matmul($0[1], transposeOther: true) }
    }

    func testConvolutions() {
        gradientCheck([r([2, 3, 5, 6], 90), r([4, 3, 3, 3], 91), r([4], 92)]) {
            $0[0].conv2d($0[1], bias: $0[2], padding: 1)
        }
        gradientCheck([r([1, 4, 7, 6], 93), r([6, 2, 3, 2], 94)]) {
            $0[0].conv2d($0[1], stride: (2, 1), padding: (1, 2), dilation: (2, 1), groups: 2)
        }
        gradientCheck([r([3, 4, 4, 4], 95), r([5, 4, 1, 1], 96), r([5], 97)]) { $0[0].conv2d($0[1], bias: $0[2]) }
        // Stride 1 (the flipped-kernel input gradient): groups, non-square kernels, asymmetric padding.
        gradientCheck([r([2, 4, 6, 5], 103), r([6, 2, 3, 2], 104), r([6], 105)]) {
            $0[0].conv2d($0[1], bias: $0[2], stride: (1, 1), padding: (1, 0), groups: 2)
        }
        gradientCheck([r([2, 3, 5, 5], 106), r([2, 3, 3, 3], 107)]) { $0[0].conv2d($0[1], padding: 0) }
        gradientCheck([r([1, 2, 13], 108), r([3, 2, 5], 109)]) { $0[0].conv1d($0[1], padding: 2) }
        gradientCheck([r([2, 3, 11], 98), r([4, 3, 5], 99), r([4], 100)]) {
            $0[0].conv1d($0[1], bias: $0[2], stride: 2, padding: 2)
        }
        gradientCheck([r([1, 4, 9], 101), r([4, 1, 3], 102)]) { $0[0].conv1d($0[1], padding: 2, dilation: 2, groups: 4) }
    }

    func testTransposedConvolutions() {
        // Upsample1D's ConvTranspose1d(C, C, 4, stride 2, padding 1), with bias.
        gradientCheck([r([2, 3, 7], 160), r([3, 4, 4], 161), r([4], 162)]) {
            $0[0].convTranspose1d($0[1], bias: $0[2], stride: 2, padding: 1)
        }
        // Groups, output padding, dilation, non-square kernels (2D).
        gradientCheck([r([1, 4, 3, 5], 163), r([4, 3, 2, 3], 164)]) {
            $0[0].convTranspose2d($0[1], stride: (2, 3), padding: (1, 0), outputPadding: (1, 2), dilation: (1, 1), groups: 2)
        }
        // Stride 1 (the forward runs the flipped-kernel path), dilation 2.
        gradientCheck([r([2, 2, 4, 4], 165), r([2, 3, 3, 3], 166), r([3], 167)]) {
            $0[0].convTranspose2d($0[1], bias: $0[2], stride: (1, 1), padding: (1, 1), dilation: (2, 1))
        }
        // Depthwise as Dance Diffusion's Upsample1d: padding 2·3 + 1 = 7 with an 8-tap kernel.
        gradientCheck([r([1, 3, 6], 168), r([3, 1, 8], 169)]) {
            $0[0].convTranspose1d($0[1], stride: 2, padding: 7, groups: 3)
        }
    }

    func testReflectPad() {
        gradientCheck([r([2, 3, 6], 170)]) { $0[0].reflectPadded(left: 3, right: 5) }
        gradientCheck([r([4, 2], 171)]) { $0[0].reflectPadded(left: 1, right: 0) }
    }

    func testNormalisations() {
        gradientCheck([r([2, 6, 3, 4], 110), r([6], 111), r([6], 112)], atol: 2e-3) {
            $0[0].groupNorm(groups: 3, weight: $0[1], bias: $0[2])
        }
        gradientCheck([r([2, 4, 5], 113)], atol: 2e-3) { $0[0].groupNorm(groups: 2) }
        // Fused with SiLU (CKernels/norm.c): planes longer than the 16-lane blocks, and shorter.
        gradientCheck([r([2, 6, 5, 7], 118), r([6], 119), r([6], 127)], atol: 2e-3) {
            $0[0].groupNorm(groups: 3, weight: $0[1], bias: $0[2], silu: true)
        }
        gradientCheck([r([2, 4, 3], 128)], atol: 2e-3) { $0[0].groupNorm(groups: 2, silu: true) }
        gradientCheck([r([3, 2, 7], 114), r([7], 115), r([7], 116)], atol: 2e-3) {
            $0[0].layerNorm(weight: $0[1], bias: $0[2])
        }
        gradientCheck([r([4, 9], 117)], atol: 2e-3) { $0[0].layerNorm() }
    }

    func testSoftmaxAndAttention() {
        gradientCheck([r([3, 7], 120, low: -3, high: 3)], h: 1e-3) { $0[0].softmax() }
        gradientCheck([r([3, 4, 2], 121, low: -3, high: 3)], h: 1e-3) { $0[0].softmax(axis: 1) }
        // Both kernels: narrow heads (CKernels) and the BLAS path every head could take.
        defer { AttentionDims.narrowEnabled = true }
        for narrow in [true, false] {
            AttentionDims.narrowEnabled = narrow
            gradientCheck([r([2, 2, 5, 4], 122), r([2, 2, 6, 4], 123), r([2, 2, 6, 3], 124)], h: 1e-3) {
                Tensor.scaledDotProductAttention($0[0], $0[1], $0[2])
            }
            // More query rows than one chunk (128) so the chunked recurrence is exercised.
            gradientCheck([r([1, 1, 130, 4], 125), r([1, 1, 9, 4], 126), r([1, 1, 9, 2], 127)], h: 1e-3, maxElements: 24) {
                Tensor.scaledDotProductAttention($0[0], $0[1], $0[2], scale: 0.7)
            }
            gradientCheck([r([2, 5, 6], 128), r([2, 3, 6], 129), r([2, 3, 4], 130)], h: 1e-3) {
                Tensor.multiHeadAttention(query: $0[0], key: $0[1], value: $0[2], heads: 2)
            }
            // Causal (CLIP's text encoder): query i sees keys 0...i; Lq < Lk, Lq = Lk, and past one chunk.
            gradientCheck([r([2, 2, 5, 4], 131), r([2, 2, 6, 4], 132), r([2, 2, 6, 3], 133)], h: 1e-3) {
                Tensor.scaledDotProductAttention($0[0], $0[1], $0[2], causal: true)
            }
            gradientCheck([r([1, 1, 130, 4], 134), r([1, 1, 130, 4], 135), r([1, 1, 130, 2], 136)], h: 1e-3, maxElements: 24) {
                Tensor.scaledDotProductAttention($0[0], $0[1], $0[2], scale: 0.7, causal: true)
            }
            gradientCheck([r([2, 5, 6], 137), r([2, 5, 6], 138), r([2, 5, 4], 139)], h: 1e-3) {
                Tensor.multiHeadAttention(query: $0[0], key: $0[1], value: $0[2], heads: 2, causal: true)
            }
        }
    }

    func testDropoutGradientIsTheMask() {
        let x = r([64], 140)
        x.requiresGrad = true
        var rng = RandomGenerator(seed: 3)
        let y = x.dropout(0.25, rng: &rng)
        y.sum().backward()
        for i in 0..<64 {
            let g = x.grad!.data[i]
            XCTAssert(g == 0 || Swift.abs(g - 1 / 0.75) < 1e-6)
            XCTAssertEqual(y.data[i], x.data[i] * g, accuracy: 1e-6)
        }
    }
}
