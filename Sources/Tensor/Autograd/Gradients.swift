// Every gradient rule of the engine, in one switch. Each case returns one gradient per input
// (nil where an input needs none); `backward()` accumulates them.

/// A recorded op with what its gradient needs. Inputs are kept by the node; outputs saved here
/// are detached views (no autograd history), so no reference cycle forms.
enum Op {
    case reshape(inputShape: [Int])
    case binary(BinaryOp)
    case unary(UnaryOp, output: Tensor)
    case affine(scale: Float)
    case pow(Float)
    case clamp(Float, Float)
    case sum(inputShape: [Int])
    case expand(inputShape: [Int])
    case permute([Int])
    case crop(offset: [Int])
    case pad(offset: [Int])
    case reflectPad(left: Int, right: Int)
    case concat(axis: Int)
    case upsampleNearest(inputShape: [Int])
    case avgPool(kernel: [Int], stride: [Int])
    case embedding([Int])
    case matmul(transA: Bool, transB: Bool)
    case conv2d(Conv2dParams)
    case convTranspose2d(Conv2dParams)
    case groupNorm(groups: Int, hasWeight: Bool, hasBias: Bool, silu: Bool, mean: Tensor, rstd: Tensor)
    case layerNorm(hasWeight: Bool, hasBias: Bool, mean: Tensor, rstd: Tensor)
    case softmax(output: Tensor)
    /// heads: nil for [B, H, L, D] inputs, else the head count of [B, L, H·D] ones.
    case attention(scale: Float, causal: Bool, heads: Int?, output: Tensor, lse: Tensor)
}

extension Op {
    /// The op's name in profiles (the case name, with the unary function).
    var name: String {
        switch self {
        case .binary(let b): return "\(b)"
        case .unary(let u, _): return "\(u)"
        default:
            let d = "\(self)"
            return String(d.prefix { $0 != "(" })
        }
    }
}

func gradients(of node: Node, outputGrad g: Tensor, output: Tensor) -> [Tensor?] {
    let x = node.inputs
    switch node.op {
    case .reshape(let s):
        return [g.reshapedRaw(s)]

    case .binary(let op):
        let a = x[0], b = x[1]
        switch op {
        case .add: return [reduceToShape(g, a.shape), reduceToShape(g, b.shape)]
        case .sub: return [reduceToShape(g, a.shape), reduceToShape(affineForward(g, scale: -1, shift: 0), b.shape)]
        case .mul:
            return [a.requiresGrad ? reduceToShape(binaryForward(.mul, g, b), a.shape) : nil,
                    b.requiresGrad ? reduceToShape(binaryForward(.mul, g, a), b.shape) : nil]
        case .div:
            // d(a/b)/da = 1/b ; d(a/b)/db = -a/b² = -(a/b)/b
            let da = a.requiresGrad ? reduceToShape(binaryForward(.div, g, b), a.shape) : nil
            var db: Tensor? = nil
            if b.requiresGrad {
                let q = binaryForward(.div, output.detached(), b)
                db = reduceToShape(affineForward(binaryForward(.mul, g, q), scale: -1, shift: 0), b.shape)
            }
            return [da, db]
        }

    case .unary(let op, let y):
        return [unaryBackward(op, x: x[0], y: y, g: g)]

    case .affine(let s):
        return [affineForward(g, scale: s, shift: 0)]

    case .pow(let p):
        return [powBackward(x[0], p, g: g)]

    case .clamp(let lo, let hi):
        return [clampBackward(x[0], lo, hi, g: g)]

    case .sum(let s):
        return [expandForward(g, to: s)]

    case .expand(let s):
        return [reduceToShape(g, s)]

    case .permute(let perm):
        var inv = [Int](repeating: 0, count: perm.count)
        for (i, p) in perm.enumerated() { inv[p] = i }
        return [permuteForward(g, inv)]

    case .crop(let off):
        return [padForward(g, offset: off, shape: x[0].shape, value: 0)]

    case .pad(let off):
        return [cropForward(g, offset: off, shape: x[0].shape)]

    case .reflectPad(let left, let right):
        return [reflectPadBackward(g, inputShape: x[0].shape, left: left, right: right)]

    case .concat(let axis):
        var off = [Int](repeating: 0, count: g.rank)
        return x.map { xi in
            defer { off[axis] += xi.shape[axis] }
            return xi.requiresGrad ? cropForward(g, offset: off, shape: xi.shape) : nil
        }

    case .upsampleNearest(let s):
        return [upsampleNearestBackward(g, inputShape: s)]

    case .avgPool(let k, let s):
        return [avgPoolBackward(g, inputShape: x[0].shape, kernel: k, stride: s)]

    case .embedding(let idx):
        return [embeddingBackward(g, idx, vocab: x[0].shape[0])]

    case .matmul(let ta, let tb):
        let (da, db) = matmulBackward(x[0], x[1], transA: ta, transB: tb, g: g)
        return [da, db]

    case .conv2d(let p):
        let (dx, dw, db) = conv2dBackward(x[0], x[1], hasBias: x.count == 3, p, g: g,
                                          needX: x[0].requiresGrad, needW: x[1].requiresGrad)
        return [dx, dw, db]

    case .convTranspose2d(let p):
        let (dx, dw, db) = convTranspose2dBackward(x[0], x[1], hasBias: x.count == 3, p, g: g,
                                                   needX: x[0].requiresGrad, needW: x[1].requiresGrad)
        return [dx, dw, db]

    case .groupNorm(let groups, let hasW, let hasB, let silu, let mean, let rstd):
        let w = hasW ? x[1] : nil, b = hasB ? x[hasW ? 2 : 1] : nil
        let (dx, dw, db) = groupNormBackward(x[0], groups: groups, weight: w, bias: b, silu: silu, mean: mean,
                                             rstd: rstd, g: g, needX: x[0].requiresGrad, needAffine: hasW || hasB)
        return [dx] + (hasW ? [dw] : []) + (hasB ? [db] : [])

    case .layerNorm(let hasW, let hasB, let mean, let rstd):
        let w = hasW ? x[1] : nil
        let (dx, dw, db) = layerNormBackward(x[0], weight: w, mean: mean, rstd: rstd, g: g,
                                             needX: x[0].requiresGrad, needAffine: hasW || hasB)
        return [dx] + (hasW ? [dw] : []) + (hasB ? [db] : [])

    case .softmax(let y):
        return [softmaxBackward(y: y, g: g)]

    case .attention(let scale, let causal, let heads, let o, let lse):
        let a = heads.map { AttentionDims(interleaved: x[0].shape, x[1].shape, x[2].shape, heads: $0) }
            ?? AttentionDims(x[0].shape, x[1].shape, x[2].shape)
        let (dq, dk, dv) = attentionBackward(x[0], x[1], x[2], a, out: o, lse: lse, scale: scale, causal: causal, g: g)
        return [dq, dk, dv]
    }
}
