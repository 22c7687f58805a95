import CBLAS

/// The engine's only door to OpenBLAS.
public enum BLAS {
    static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }

    /// The kernel family OpenBLAS picked for this CPU (e.g. "Haswell", "Cooperlake").
    public static var coreName: String { String(cString: openblas_get_corename()) }

    /// Runs `body` with BLAS on one thread: for sgemm calls made from inside our own parallel
    /// loops, where each worker already owns a core.
    static func singleThreaded<R>(_ body: () -> R) -> R {
        let n = Threads.count
        if n == 1 { return body() }
        openblas_set_num_threads(1)
        defer { openblas_set_num_threads(Int32(n)) }
        return body()
    }

    /// C[M, N] = alpha * op(A) op(B) + beta * C, all row-major.
    /// op(A) is [M, K] (A stored [K, M] when transA); op(B) is [K, N] (B stored [N, K] when transB).
    @inline(__always)
    static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                      alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                      b: UnsafePointer<Float>, ldb: Int,
                      beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        _ = Threads.count  // first use applies DIFFUSE_THREADS to OpenBLAS too
        if m == 0 || n == 0 { return }
        if k == 0 {
            // sgemm with K = 0 only scales C.
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
