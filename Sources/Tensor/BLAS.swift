import CBLAS

/// The engine's only door to OpenBLAS.
///
/// OpenBLAS always runs on one thread; a large product is split into column (or row) panels
/// that our own thread pool runs side by side. One pool for everything: OpenBLAS' idle
/// workers would otherwise spin (sched_yield) on the cores our loops need.
public enum BLAS {
    /// Called once when the thread setting is first read.
    static func pinSingleThreaded() { openblas_set_num_threads(1) }

    /// The kernel family OpenBLAS picked for this CPU (e.g. "Haswell", "Cooperlake").
    public static var coreName: String { String(cString: openblas_get_corename()) }

    /// C[M, N] = alpha · op(A) op(B) + beta · C, all row-major, split across `Threads.count`
    /// threads when large. op(A) is [M, K] (A stored [K, M] when transA); op(B) is [K, N]
    /// (B stored [N, K] when transB). Inside a parallel loop, call `sgemmSerial` instead.
    static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                      alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                      b: UnsafePointer<Float>, ldb: Int,
                      beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        let threads = Threads.count
        let flops = 2.0 * Double(m) * Double(n) * Double(k)
        guard threads > 1, flops >= 4e6 else {
            sgemmSerial(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                        b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            return
        }
        let pa = SendablePointer(UnsafeMutablePointer(mutating: a)), pb = SendablePointer(UnsafeMutablePointer(mutating: b))
        let pc = SendablePointer(c)
        if n >= m {
            // Column panels of C (and of op(B)), each a multiple of 16 wide.
            let panels = Swift.min(threads, Swift.max(1, n / 16))
            Parallel.forEach(panels) { i in
                let n0 = (n / 16 * i / panels) * 16, n1 = i == panels - 1 ? n : (n / 16 * (i + 1) / panels) * 16
                if n1 <= n0 { return }
                sgemmSerial(transA: transA, transB: transB, m: m, n: n1 - n0, k: k, alpha: alpha, a: pa.p, lda: lda,
                            b: pb.p + (transB ? n0 * ldb : n0), ldb: ldb, beta: beta, c: pc.p + n0, ldc: ldc)
            }
        } else {
            // Row panels of C (and of op(A)).
            let panels = Swift.min(threads, Swift.max(1, m / 16))
            Parallel.forEach(panels) { i in
                let m0 = (m / 16 * i / panels) * 16, m1 = i == panels - 1 ? m : (m / 16 * (i + 1) / panels) * 16
                if m1 <= m0 { return }
                sgemmSerial(transA: transA, transB: transB, m: m1 - m0, n: n, k: k, alpha: alpha,
                            a: pa.p + (transA ? m0 : m0 * lda), lda: lda, b: pb.p, ldb: ldb,
                            beta: beta, c: pc.p + m0 * ldc, ldc: ldc)
            }
        }
    }

    /// One OpenBLAS call on the calling thread.
    @inline(__always)
    static func sgemmSerial(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                            alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int,
                            beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        _ = Threads.count  // the first read pins OpenBLAS to one thread
        if m == 0 || n == 0 { return }
        if k == 0 {
            // A product over an empty dimension only scales C.
            for i in 0..<m {
                let row = c + i * ldc
                for j in 0..<n { row[j] = beta == 0 ? 0 : row[j] * beta }
            }
            return
        }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}
