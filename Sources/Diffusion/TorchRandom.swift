import Foundation
import Tensor

/// Noise that is bit-for-bit what PyTorch's CPU generator gives: after
/// `torch.manual_seed(s)` (or `g = torch.Generator().manual_seed(s)`), successive
/// `torch.randn(shape)` calls on float32 CPU tensors return exactly the tensors that
/// successive `randn(shape)` calls on `TorchGenerator(seed: s)` return. Checked against
/// torch 2.15.0 (Tests/References/make_torch_randn_goldens.py).
///
/// The algorithm, as read from PyTorch's source (aten/src/ATen/…):
///
/// * Engine (`core/MT19937RNGEngine.h`, `CPUGeneratorImpl.cpp`): the 32-bit Mersenne twister
///   mt19937, seeded with the **low 32 bits** of the 64-bit seed (`init_with_uint32`:
///   `state[0] = seed & 0xffffffff`, `state[j] = 1812433253 * (state[j-1] ^ (state[j-1] >> 30)) + j`),
///   so seeds `s` and `s + 2³²` give the same noise. `random()` is one draw;
///   `random64()` is `(draw₁ << 32) | draw₂`.
/// * Uniforms (`core/DistributionsHelper.h`, `core/TransformationHelper.h`): a float is
///   `(random() & (2²⁴ − 1)) · 2⁻²⁴`, a double is `(random64() & (2⁵³ − 1)) · 2⁻⁵³`, both in [0, 1).
/// * `randn` = `normal_(0, 1)` (`native/cpu/DistributionTemplates.h`, `normal_kernel`):
///   - numel ≥ 16 (a contiguous float tensor): fill every element with a float uniform, then
///     for each block of 16 pair element j with j + 8 (j < 8) in Box–Muller:
///     u₁ = 1 − data[j], u₂ = data[j + 8], r = √(−2 ln u₁), θ = 2π·u₂,
///     data[j] = r cos θ, data[j + 8] = r sin θ. When numel % 16 ≠ 0, 16 **fresh** uniforms are
///     drawn into the last 16 slots (overwriting the tail of the previous blocks) and that
///     block is transformed again. On x86 with AVX2 (torch picks the AVX2 kernel on AVX-512
///     machines too) ln, sin and cos are the cephes-style polynomials of
///     `native/cpu/avx_mathfun.h` (`log256_ps`, `sincos256_ps`) in float32, and GCC fused some of
///     their multiply–adds into FMAs; `avxLog` and `avxSinCos` below repeat the same operations
///     in the same order with the same fusions, read from the disassembly of
///     `libtorch_cpu.so` (torch 2.15.0, x86-64), so the results are identical, not merely close.
///   - numel < 16: one `at::normal_distribution<double>` per element, in double:
///     u₁, u₂ double uniforms, r = √(−2·log1p(−u₂)), θ = 2π·u₁; the element is `Float(r cos θ)` and
///     `r sin θ` is **cached in the generator** (`next_double_normal_sample`) and returned (as
///     a Float) by the next small-tensor element, even in a later call. The ≥ 16 path neither
///     reads nor clears that cache. Both use the C library's log1p, sin and cos (glibc here, as
///     torch does on Linux).
///
/// Not covered: torch builds without AVX2 (`ATEN_CPU_CAPABILITY=default`, non-x86 CPUs), where
/// torch itself uses libm's logf/sinf/cosf for the ≥ 16 path and differs from the AVX2 result
/// in the last bit or two of some elements; and `mean`/`std` other than 0 and 1.
public struct TorchGenerator: NoiseSource {
    private var engine: MT19937
    /// torch's `next_double_normal_sample`: the sine half of the last double Box–Muller pair.
    private var cachedNormal: Double?

    public init(seed: UInt64) {
        engine = MT19937(seed: UInt32(truncatingIfNeeded: seed))
        cachedNormal = nil
    }

    public mutating func nextNormal(_ shape: [Int]) -> Tensor { randn(shape) }

    /// `torch.randn(shape, generator: self)` on the CPU, float32.
    public mutating func randn(_ shape: [Int]) -> Tensor {
        let t = Tensor.zeros(shape)
        let n = shape.reduce(1, *)
        let data = t.data
        if n >= 16 {
            for i in 0..<n { data[i] = floatUniform() }
            var i = 0
            while i + 16 <= n {
                Self.boxMuller16(data + i)
                i += 16
            }
            if n % 16 != 0 {
                let tail = data + (n - 16)
                for k in 0..<16 { tail[k] = floatUniform() }
                Self.boxMuller16(tail)
            }
        } else {
            for i in 0..<n { data[i] = Float(doubleNormal()) }
        }
        return t
    }

    // MARK: Uniforms

    private mutating func floatUniform() -> Float {
        Float(engine.next() & 0xff_ffff) * (1.0 / 16_777_216.0)
    }

    private mutating func doubleUniform() -> Double {
        let hi = UInt64(engine.next()), lo = UInt64(engine.next())
        return Double(((hi << 32) | lo) & ((1 << 53) - 1)) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `at::normal_distribution<double>(0, 1)` with the generator's cached second value.
    private mutating func doubleNormal() -> Double {
        if let cached = cachedNormal {
            cachedNormal = nil
            return cached
        }
        let u1 = doubleUniform()
        let u2 = doubleUniform()
        let r = (-2.0 * Foundation.log1p(-u2)).squareRoot()
        let theta = 2.0 * Double.pi * u1
        cachedNormal = r * Foundation.sin(theta)
        return r * Foundation.cos(theta)
    }

    // MARK: The AVX2 Box–Muller block (normal_fill_16_AVX2), lane by lane

    /// Turns 16 uniforms into 16 normals: lanes j and j + 8 form one pair.
    private static func boxMuller16(_ p: UnsafeMutablePointer<Float>) {
        let twoPi = Float(2.0 * Double.pi)
        for j in 0..<8 {
            let u1 = 1 - p[j]
            let u2 = p[j + 8]
            let radius = (-2 * avxLog(u1)).squareRoot()
            let (s, c) = avxSinCos(twoPi * u2)
            // _mm256_fmadd_ps(n, std, mean) with std = 1, mean = 0.
            p[j] = Float(0).addingProduct(radius * c, 1)
            p[j + 8] = Float(0).addingProduct(radius * s, 1)
        }
    }

    /// `log256_ps` (avx_mathfun.h, cephes logf) for one lane, with torch's FMA contractions.
    /// `x` is in (0, 1] here; the x ≤ 0 → NaN branch is kept for completeness.
    static func avxLog(_ input: Float) -> Float {
        if input <= 0 { return .nan }
        let x0 = Swift.max(input, Float(bitPattern: 0x0080_0000))
        let bits = x0.bitPattern
        var e = Float(Int32(bitPattern: bits >> 23) - 0x7f) + 1
        var x = Float(bitPattern: (bits & ~UInt32(0x7f80_0000)) | Float(0.5).bitPattern)
        let below = x < Float(0.707106781186547524)
        let tmp: Float = below ? x : 0
        x = x - 1
        e = e - (below ? 1 : 0)
        x = tmp + x
        let z = x * x
        var y: Float = 7.0376836292E-2
        y = Float(-1.1514610310E-1).addingProduct(y, x)
        y = Float(1.1676998740E-1).addingProduct(y, x)
        y = Float(-1.2420140846E-1).addingProduct(y, x)
        y = Float(1.4249322787E-1).addingProduct(y, x)
        y = Float(-1.6668057665E-1).addingProduct(y, x)
        y = Float(2.0000714765E-1).addingProduct(y, x)
        y = Float(-2.4999993993E-1).addingProduct(y, x)
        y = Float(3.3333331174E-1).addingProduct(y, x)
        y = x * y
        y = (e * Float(-2.12194440e-4)).addingProduct(y, z)   // fma(y, z, e·q1)
        y = y.addingProduct(-z, 0.5)                          // fnmadd: y − z·0.5
        x = x + y
        x = x.addingProduct(e, Float(0.693359375))            // fma(e, q2, x)
        return x
    }

    /// `sincos256_ps` (avx_mathfun.h, cephes sinf/cosf) for one lane, with torch's FMA contractions.
    static func avxSinCos(_ input: Float) -> (sin: Float, cos: Float) {
        let signSin = input.bitPattern & 0x8000_0000
        var x = Float(bitPattern: input.bitPattern & 0x7fff_ffff)
        var j = Int32(truncatingIfNeeded: Int(x * Float(1.27323954473516)))   // cvttps2dq
        j = (j &+ 1) & ~1
        let y = Float(j)
        let swapSignSin = UInt32(bitPattern: (j & 4) << 29)
        let polyMask = (j & 2) == 0
        x = x.addingProduct(y, Float(-0.78515625))
        x = x.addingProduct(Float(-2.4187564849853515625e-4), y)
        x = x.addingProduct(y, Float(-3.77489497744594108e-8))
        let signCos = UInt32(bitPattern: (~(j &- 2) & 4) << 29)
        let sinSign = signSin ^ swapSignSin

        let z = x * x
        var yc: Float = 2.443315711809948E-005
        yc = Float(-1.388731625493765E-003).addingProduct(yc, z)
        yc = Float(4.166664568298827E-002).addingProduct(yc, z)
        yc = z * yc
        yc = (-(z * 0.5)).addingProduct(yc, z)               // fmsub(y, z, z·0.5)
        yc = yc + 1

        var ys: Float = -1.9515295891E-4
        ys = Float(8.3321608736E-3).addingProduct(ys, z)
        ys = Float(-1.6666654611E-1).addingProduct(ys, z)
        ys = z * ys
        ys = x.addingProduct(x, ys)                           // fma(x, y2, x)

        // The selection of sincos256_ps: with the mask m, sin = (yc & ~m) + (ys & m) and
        // cos = (yc − (yc & ~m)) + (ys − (ys & m)); one of each pair of terms is +0.
        let ysin2: Float = polyMask ? ys : 0
        let ysin1: Float = polyMask ? 0 : yc
        let c = (yc - ysin1) + (ys - ysin2)
        let s = ysin1 + ysin2
        return (Float(bitPattern: s.bitPattern ^ sinSign), Float(bitPattern: c.bitPattern ^ signCos))
    }
}

/// The 32-bit Mersenne twister as PyTorch's `at::mt19937` (identical to std::mt19937 for a
/// 32-bit seed).
struct MT19937 {
    private static let n = 624, m = 397
    private var state: [UInt32]
    private var index: Int

    init(seed: UInt32) {
        state = [UInt32](repeating: 0, count: Self.n)
        state[0] = seed
        for j in 1..<Self.n {
            state[j] = 1_812_433_253 &* (state[j - 1] ^ (state[j - 1] >> 30)) &+ UInt32(j)
        }
        index = Self.n
    }

    mutating func next() -> UInt32 {
        if index >= Self.n { twist() }
        var y = state[index]
        index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9d2c_5680
        y ^= (y << 15) & 0xefc6_0000
        y ^= y >> 18
        return y
    }

    private mutating func twist() {
        let n = Self.n, m = Self.m
        state.withUnsafeMutableBufferPointer { s in
            for i in 0..<n {
                let y = (s[i] & 0x8000_0000) | (s[(i + 1) % n] & 0x7fff_ffff)
                s[i] = s[(i + m) % n] ^ (y >> 1) ^ ((y & 1) != 0 ? 0x9908_b0df : 0)
            }
        }
        index = 0
    }
}
