import CBLAS
import Foundation

/// The engine's only door to OpenBLAS.
///
/// OpenBLAS always runs on one thread; a large product is split into column (or row) panels
/// that our own thread pool runs side by side. One pool for everything: OpenBLAS' idle
/// workers would otherwise spin (sched_yield) on the cores our loops need.
public enum BLAS {
    /// Called once, before the first product (see `BLASCore.active`).
    static func pinSingleThreaded() { openblas_set_num_threads(1) }

    /// The kernel family OpenBLAS runs (e.g. "Haswell", "Cooperlake") once `BLASCore` has
    /// chosen it; `BLASCore.active` says why.
    public static var coreName: String {
        _ = BLASCore.active
        return loadedCore
    }

    /// The kernel family loaded now (while `BLASCore` chooses, too).
    static var loadedCore: String { String(cString: openblas_get_corename()) }

    /// The library's build line, e.g. "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Prescott MAX_THREADS=64"
    /// (it names the running core).
    static var config: String { String(cString: openblas_get_config()) }

    /// What this CPU offers (cpuid; wide registers only when the OS saves them).
    static func readCPU() -> CPUInfo {
        var info = diffuse_cpu_read()
        func string<T>(_ field: inout T) -> String {
            withUnsafeBytes(of: &field) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        let f = info.features
        func has(_ bit: Int) -> Bool { Int(f) & bit != 0 }
        let vendor = string(&info.vendor)
        return CPUInfo(
            vendor: vendor == "GenuineIntel" ? .intel : vendor == "AuthenticAMD" || vendor == "HygonGenuine" ? .amd : .other,
            name: string(&info.brand).trimmingCharacters(in: .whitespaces),
            family: Int(info.family), model: Int(info.model), stepping: Int(info.stepping),
            avx: has(DIFFUSE_CPU_AVX), avx2FMA: has(DIFFUSE_CPU_AVX2) && has(DIFFUSE_CPU_FMA),
            avx512: has(DIFFUSE_CPU_AVX512F) && has(DIFFUSE_CPU_AVX512BW) && has(DIFFUSE_CPU_AVX512DQ) && has(DIFFUSE_CPU_AVX512VL),
            avx512BF16: has(DIFFUSE_CPU_AVX512BF16))
    }

    /// Whether the loaded library can switch kernel sets in the running process and holds
    /// `core` (OpenBLAS' spelling, e.g. "SkylakeX"); false for any other BLAS.
    static func canLoad(core: String) -> Bool {
        diffuse_openblas_has("gotoblas_dynamic_init") != 0 && diffuse_openblas_has("gotoblas_dynamic_quit") != 0
            && diffuse_openblas_has("gotoblas_" + core.uppercased()) != 0
    }

    /// Makes OpenBLAS choose its kernel set again, as at load time, with OPENBLAS_CORETYPE =
    /// `core` (nil: by its own cpuid detection). No product may run meanwhile (see `BLASCore`).
    /// False when the library cannot switch.
    static func load(core: String?) -> Bool {
        (core.map { diffuse_openblas_load_core($0) } ?? diffuse_openblas_load_core(nil)) == 0
    }

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
        _ = Threads.count  // the first read picks OpenBLAS' core and pins it to one thread
        sgemmUnprepared(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                        b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    }

    /// `sgemmSerial` without first making sure the core is chosen: for `BLASCore`'s self-check,
    /// which runs while it is being chosen.
    static func sgemmUnprepared(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                                alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                                b: UnsafePointer<Float>, ldb: Int,
                                beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
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
