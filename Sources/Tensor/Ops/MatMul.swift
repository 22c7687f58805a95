// Matrix products through cblas_sgemm: plain, batched, and with a shared right-hand matrix.

struct MatMulDims {
    let batch: [Int], m: Int, k: Int, n: Int
    let sharedB: Bool  // b is one [K, N] matrix used by every batch entry

    init(_ a: [Int], _ b: [Int], transA: Bool, transB: Bool) {
        precondition(a.count >= 2 && b.count >= 2, "matmul needs rank >= 2: \(a) x \(b)")
        let am = transA ? a[a.count - 1] : a[a.count - 2]
        let ak = transA ? a[a.count - 2] : a[a.count - 1]
        let bk = transB ? b[b.count - 1] : b[b.count - 2]
        let bn = transB ? b[b.count - 2] : b[b.count - 1]
        precondition(ak == bk, "matmul: inner dims differ: \(a)\(transA ? "ᵀ" : "") x \(b)\(transB ? "ᵀ" : "")")
        batch = Array(a.dropLast(2))
        sharedB = b.count == 2 && a.count > 2
        if !sharedB {
            precondition(Array(b.dropLast(2)) == batch, "matmul: batch dims differ: \(a) x \(b)")
        }
        m = am; k = ak; n = bn
    }
}

func matmulForward(_ a: Tensor, _ b: Tensor, transA: Bool, transB: Bool) -> Tensor {
    let d = MatMulDims(a.shape, b.shape, transA: transA, transB: transB)
    let out = Tensor(uninitialized: d.batch + [d.m, d.n])
    let nb = d.batch.reduce(1, *)
    FlopCounter.add(2 * Double(nb) * Double(d.m) * Double(d.n) * Double(d.k))
    let lda = transA ? d.m : d.k, ldb = transB ? d.k : d.n
    if d.sharedB && !transA {
        // [(batch M), K] x [K, N] as one product.
        BLAS.sgemm(transA: false, transB: transB, m: nb * d.m, n: d.n, k: d.k, a: a.data, lda: lda,
                   b: b.data, ldb: ldb, beta: 0, c: out.data, ldc: d.n)
        return out
    }
    batchedGemm(count: nb, m: d.m, n: d.n, k: d.k, transA: transA, transB: transB,
                a: a.data, strideA: d.m * d.k, lda: lda,
                b: b.data, strideB: d.sharedB ? 0 : d.k * d.n, ldb: ldb,
                c: out.data, strideC: d.m * d.n, beta: 0)
    return out
}

/// count independent products C_i = op(A_i) op(B_i) (+ beta C_i). Small products run in
/// parallel, one per thread; large ones one after another, each split across the threads.
func batchedGemm(count: Int, m: Int, n: Int, k: Int, transA: Bool, transB: Bool,
                 a: UnsafePointer<Float>, strideA: Int, lda: Int,
                 b: UnsafePointer<Float>, strideB: Int, ldb: Int,
                 c: UnsafeMutablePointer<Float>, strideC: Int, beta: Float) {
    let pa = SendablePointer(UnsafeMutablePointer(mutating: a))
    let pb = SendablePointer(UnsafeMutablePointer(mutating: b)), pc = SendablePointer(c)
    let parallelBatches = count >= 2 && m * n * k < (1 << 22) && Threads.count > 1
    let one = { (i: Int) in
        BLAS.sgemmSerial(transA: transA, transB: transB, m: m, n: n, k: k, a: pa.p + i * strideA, lda: lda,
                         b: pb.p + i * strideB, ldb: ldb, beta: beta, c: pc.p + i * strideC, ldc: n)
    }
    if parallelBatches {
        Parallel.forEach(count) { one($0) }
    } else {
        for i in 0..<count {
            BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: pa.p + i * strideA, lda: lda,
                       b: pb.p + i * strideB, ldb: ldb, beta: beta, c: pc.p + i * strideC, ldc: n)
        }
    }
}

/// Gradients of C = op(A) op(B) with respect to A and B.
func matmulBackward(_ a: Tensor, _ b: Tensor, transA: Bool, transB: Bool, g: Tensor) -> (Tensor, Tensor) {
    let d = MatMulDims(a.shape, b.shape, transA: transA, transB: transB)
    // dA: G op(B)^T, or its transpose when A was transposed.
    let da = transA ? matmulForward(b, g, transA: transB, transB: true)
                    : matmulForward(g, b, transA: false, transB: !transB)
    let db: Tensor
    if d.sharedB {
        // Shared B: flatten the batch into rows and let one product sum over it.
        let nb = d.batch.reduce(1, *)
        let a2 = a.reshapedRaw([nb * d.m, d.k]), g2 = g.reshapedRaw([nb * d.m, d.n])
        db = transB ? matmulForward(g2, a2, transA: true, transB: false)
                    : matmulForward(a2, g2, transA: true, transB: false)
    } else {
        db = transB ? matmulForward(g, a, transA: true, transB: transA)
                    : matmulForward(a, g, transA: !transA, transB: false)
    }
    return (da.reshapedRaw(a.shape), db.reshapedRaw(b.shape))
}

extension Tensor {
    /// Same storage, another shape, no autograd record (for kernels).
    func reshapedRaw(_ s: [Int]) -> Tensor {
        precondition(s.reduce(1, *) == count, "reshape \(shape) to \(s)")
        return s == shape ? self : Tensor(shape: s, storage: storage)
    }

    /// op(self) x op(other), batched over leading dims. `other` may be a single [K, N] matrix.
    public func matmul(_ other: Tensor, transposeSelf: Bool = false, transposeOther: Bool = false) -> Tensor {
        let d = MatMulDims(shape, other.shape, transA: transposeSelf, transB: transposeOther)
        precondition(!(d.sharedB && transposeSelf), "matmul: a shared right matrix needs an untransposed left side")
        return matmulForward(self, other, transA: transposeSelf, transB: transposeOther)
            .recorded(.matmul(transA: transposeSelf, transB: transposeOther), [self, other])
    }
}
