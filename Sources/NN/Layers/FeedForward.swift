import Tensor

/// diffusers' `GEGLU` (Shazeer 2020, "GLU Variants Improve Transformer"): one projection to
/// twice the width, split into a value and a gate, value · gelu(gate) with the exact (erf) GELU.
/// x [..., dimIn] -> [..., dimOut]; `proj` weight [2·dimOut, dimIn], value rows first.
public final class GEGLU: Module {
    public let proj: Linear

    public init(_ dimIn: Int, _ dimOut: Int, bias: Bool = true) { proj = Linear(dimIn, 2 * dimOut, bias: bias) }

    public func visit(_ v: inout ModuleVisitor) { v("proj", proj) }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        // [..., 2·out] -> value, gate: [..., out] each
        let parts = proj(x).chunked(2, axis: -1)
        return parts[0] * parts[1].gelu()
    }
}

/// diffusers' `FeedForward` with `activation_fn="geglu"` (BasicTransformerBlock's default):
/// `net = [GEGLU(dim, inner), Dropout, Linear(inner, dimOut)]`, inner = mult · dim.
/// x [..., dim] -> [..., dimOut].
public final class FeedForward: Module {
    public let geglu: GEGLU
    public let dropout: Dropout
    public let out: Linear

    public init(_ dim: Int, dimOut: Int? = nil, mult: Int = 4, innerDim: Int? = nil, dropout: Float = 0, bias: Bool = true) {
        let inner = innerDim ?? dim * mult
        geglu = GEGLU(dim, inner, bias: bias)
        self.dropout = Dropout(dropout)
        out = Linear(inner, dimOut ?? dim, bias: bias)
    }

    public func visit(_ v: inout ModuleVisitor) { v("net", [geglu, dropout, out]) }

    public func callAsFunction(_ x: Tensor) -> Tensor { out(dropout(geglu(x))) }
}
