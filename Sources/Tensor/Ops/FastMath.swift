import CKernels

// The engine's only door to the C kernels (Sources/CKernels): pointwise math compiled for
// AVX-512, AVX2+FMA and the baseline, the best picked on first use.

/// The C kernel for a unary op's forward pass, when there is one.
func fastUnaryCode(_ op: UnaryOp) -> Int32? {
    switch op {
    case .exp: return Int32(CK_EXP.rawValue)
    case .sigmoid: return Int32(CK_SIGMOID.rawValue)
    case .silu: return Int32(CK_SILU.rawValue)
    case .tanh: return Int32(CK_TANH.rawValue)
    case .gelu: return Int32(CK_GELU.rawValue)
    case .geluTanh: return Int32(CK_GELU_TANH.rawValue)
    default: return nil
    }
}

@inline(__always) func fastUnary(_ code: Int32, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    ck_unary(code, x, y, n)
}

/// p[i] = exp(p[i] − m) in place; the sum of the results.
@inline(__always) func fastExpShiftSum(_ p: UnsafeMutablePointer<Float>, _ n: Int, _ m: Float) -> Float {
    ck_exp_shift_sum(p, n, m)
}

@inline(__always) func fastMax(_ p: UnsafePointer<Float>, _ n: Int) -> Float { ck_max(p, n) }
