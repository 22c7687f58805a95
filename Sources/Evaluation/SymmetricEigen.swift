import Foundation

/// Eigenvalues and eigenvectors of a real symmetric matrix by the cyclic Jacobi method
/// (Golub & Van Loan, "Matrix Computations", 4th ed., §8.5; the rotation as in Numerical Recipes
/// §11.1), in Double. Each rotation zeroes one off-diagonal pair; sweeps repeat until the
/// off-diagonal mass is negligible. O(n³) per sweep, about ten sweeps: fine for n ≤ 256, which is
/// what the evaluation's feature covariances are.
///
/// Matrices are row-major `[n·n]` arrays. `vectors` holds the eigenvectors as columns:
/// A = V diag(values) Vᵀ, with V orthogonal.
public struct SymmetricEigen {
    public let n: Int
    /// Eigenvalues, ascending.
    public let values: [Double]
    /// Column k (`vectors[i * n + k]`) is the unit eigenvector of `values[k]`.
    public let vectors: [Double]

    /// - Precondition: `a.count == n * n`. Only the symmetric part (A + Aᵀ)/2 is used.
    public init(_ a: [Double], n: Int, maxSweeps: Int = 64) {
        precondition(n >= 0 && a.count == n * n, "SymmetricEigen: \(a.count) entries for n = \(n)")
        var m = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { m[i * n + j] = 0.5 * (a[i * n + j] + a[j * n + i]) } }
        var v = [Double](repeating: 0, count: n * n)
        for i in 0..<n { v[i * n + i] = 1 }
        var total = 0.0
        for x in m { total += x * x }
        m.withUnsafeMutableBufferPointer { mp in
            v.withUnsafeMutableBufferPointer { vp in
                let A = mp.baseAddress!, V = vp.baseAddress!
                for _ in 0..<maxSweeps {
                    var off = 0.0
                    for p in 0..<n { for q in (p + 1)..<Swift.max(p + 1, n) { off += A[p * n + q] * A[p * n + q] } }
                    // Converged when the off-diagonal norm is ~1e-13 of the whole matrix's (near rounding).
                    if off <= 1e-26 * total || off == 0 { break }
                    for p in 0..<Swift.max(0, n - 1) {
                        for q in (p + 1)..<n {
                            let apq = A[p * n + q]
                            if apq == 0 { continue }
                            let app = A[p * n + p], aqq = A[q * n + q]
                            // Skip pairs already small against both diagonal entries.
                            if Swift.abs(apq) < 1e-300 || (Swift.abs(apq) * 1e18 < Swift.abs(app) && Swift.abs(apq) * 1e18 < Swift.abs(aqq)) {
                                A[p * n + q] = 0; A[q * n + p] = 0
                                continue
                            }
                            // Rotation J (J_pp = J_qq = c, J_pq = s, J_qp = -s) with (JᵀAJ)_pq = 0.
                            let theta = (aqq - app) / (2 * apq)
                            let t = (theta >= 0 ? 1.0 : -1.0) / (Swift.abs(theta) + (theta * theta + 1).squareRoot())
                            let c = 1 / (t * t + 1).squareRoot(), s = t * c
                            for k in 0..<n {  // A ← A J (columns p, q)
                                let akp = A[k * n + p], akq = A[k * n + q]
                                A[k * n + p] = c * akp - s * akq
                                A[k * n + q] = s * akp + c * akq
                            }
                            for k in 0..<n {  // A ← Jᵀ A (rows p, q)
                                let apk = A[p * n + k], aqk = A[q * n + k]
                                A[p * n + k] = c * apk - s * aqk
                                A[q * n + k] = s * apk + c * aqk
                            }
                            A[p * n + q] = 0; A[q * n + p] = 0
                            for k in 0..<n {  // V ← V J
                                let vkp = V[k * n + p], vkq = V[k * n + q]
                                V[k * n + p] = c * vkp - s * vkq
                                V[k * n + q] = s * vkp + c * vkq
                            }
                        }
                    }
                }
            }
        }
        let order = (0..<n).sorted { m[$0 * n + $0] < m[$1 * n + $1] }
        self.n = n
        values = order.map { m[$0 * n + $0] }
        var sorted = [Double](repeating: 0, count: n * n)
        for (k, src) in order.enumerated() { for i in 0..<n { sorted[i * n + k] = v[i * n + src] } }
        vectors = sorted
    }

    /// V f(Λ) Vᵀ: the matrix function `f` applied through the eigenvalues (e.g. the square root).
    public func map(_ f: (Double) -> Double) -> [Double] {
        let fv = values.map(f)
        var out = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in i..<n {
                var s = 0.0
                for k in 0..<n { s += vectors[i * n + k] * fv[k] * vectors[j * n + k] }
                out[i * n + j] = s
                out[j * n + i] = s
            }
        }
        return out
    }
}

/// C = A B for row-major n×n Double matrices (i-k-j order: the inner loop is contiguous).
func matmul(_ a: [Double], _ b: [Double], n: Int) -> [Double] {
    var c = [Double](repeating: 0, count: n * n)
    c.withUnsafeMutableBufferPointer { cp in
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                for i in 0..<n {
                    let ci = cp.baseAddress! + i * n
                    for k in 0..<n {
                        let aik = ap[i * n + k]
                        if aik == 0 { continue }
                        let bk = bp.baseAddress! + k * n
                        for j in 0..<n { ci[j] += aik * bk[j] }
                    }
                }
            }
        }
    }
    return c
}
