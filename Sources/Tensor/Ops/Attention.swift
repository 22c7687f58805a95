import Foundation

// Scaled dot-product attention, fused and chunked over queries (FlashAttention's recurrence
// without the tiling of keys): memory is O(chunk × Lk) per worker, never O(Lq × Lk).
// Backward recomputes each chunk's probabilities from the saved logsumexp.
//
//   q [B, H, Lq, D], k [B, H, Lk, D], v [B, H, Lk, Dv]  ->  o [B, H, Lq, Dv]
//   o = softmax(scale · q kᵀ) v
// Causal: query i attends to keys 0...i only (torch's `is_causal`, top-left aligned; CLIP's
// text encoder). Each row's softmax then runs over its first i + 1 keys and the rest are exact zeros.

/// Query rows per chunk.
let attentionChunk = 128

struct AttentionDims {
    let bh, lq, lk, d, dv: Int
    init(_ q: [Int], _ k: [Int], _ v: [Int]) {
        precondition(q.count == 4 && k.count == 4 && v.count == 4, "attention: q \(q), k \(k), v \(v) must be [B, H, L, D]")
        precondition(q[0] == k[0] && q[1] == k[1] && k[0] == v[0] && k[1] == v[1] && k[2] == v[2] && q[3] == k[3],
                     "attention: q \(q), k \(k), v \(v) do not agree")
        bh = q[0] * q[1]; lq = q[2]; lk = k[2]; d = q[3]; dv = v[3]
    }
}

/// Keys query row `i` sees: all, or 0...i when causal.
@inline(__always) func attendedKeys(row i: Int, keys: Int, causal: Bool) -> Int {
    causal ? Swift.min(keys, i + 1) : keys
}

func attentionForward(_ q: Tensor, _ k: Tensor, _ v: Tensor, scale: Float, causal: Bool = false) -> (out: Tensor, lse: Tensor) {
    let a = AttentionDims(q.shape, k.shape, v.shape)
    let out = Tensor(uninitialized: [q.shape[0], q.shape[1], a.lq, a.dv])
    let lse = Tensor(uninitialized: [a.bh, a.lq])
    FlopCounter.add(2 * Double(a.bh) * Double(a.lq) * Double(a.lk) * Double(a.d + a.dv))
    let cq = Swift.min(attentionChunk, Swift.max(a.lq, 1))
    let nChunks = (a.lq + cq - 1) / cq
    let items = a.bh * nChunks
    let T = Parallel.chunkCount(items)
    let scratch = Tensor(uninitialized: [T, cq * a.lk + cq])
    let pq = SendablePointer(q.data), pk = SendablePointer(k.data), pv = SendablePointer(v.data)
    let po = SendablePointer(out.data), pl = SendablePointer(lse.data), ps = SendablePointer(scratch.data)
        Parallel.indexedChunks(items) { t, s0, e0 in
            let S = ps.p + t * (cq * a.lk + cq), Sum = S + cq * a.lk
            for item in s0..<e0 {
                let b = item / nChunks, c0 = (item % nChunks) * cq
                let rows = Swift.min(cq, a.lq - c0)
                let qc = pq.p + (b * a.lq + c0) * a.d
                // S [rows, Lk] = scale · q_c kᵀ
                BLAS.sgemmSerial(transA: false, transB: true, m: rows, n: a.lk, k: a.d, alpha: scale,
                           a: qc, lda: a.d, b: pk.p + b * a.lk * a.d, ldb: a.d, beta: 0, c: S, ldc: a.lk)
                // Unnormalised probabilities; the 1/sum goes on the (narrower) output rows.
                for r in 0..<rows {
                    let n = attendedKeys(row: c0 + r, keys: a.lk, causal: causal)
                    let (m, s) = expRow(S + r * a.lk, n)
                    if n < a.lk { (S + r * a.lk + n).update(repeating: 0, count: a.lk - n) }
                    pl.p[b * a.lq + c0 + r] = m + Foundation.log(s)
                    Sum[r] = 1 / s
                }
                // o_c [rows, Dv] = P v
                let oc = po.p + (b * a.lq + c0) * a.dv
                BLAS.sgemmSerial(transA: false, transB: false, m: rows, n: a.dv, k: a.lk,
                           a: S, lda: a.lk, b: pv.p + b * a.lk * a.dv, ldb: a.dv,
                           beta: 0, c: oc, ldc: a.dv)
                for r in 0..<rows {
                    let f = Sum[r], row = oc + r * a.dv
                    for j in 0..<a.dv { row[j] *= f }
                }
            }
        }
    return (out, lse)
}

func attentionBackward(_ q: Tensor, _ k: Tensor, _ v: Tensor, out: Tensor, lse: Tensor, scale: Float, causal: Bool = false,
                       g: Tensor) -> (Tensor, Tensor, Tensor) {
    let a = AttentionDims(q.shape, k.shape, v.shape)
    let dq = Tensor(uninitialized: q.shape), dk = Tensor.zeros(k.shape), dv = Tensor.zeros(v.shape)
    let cq = Swift.min(attentionChunk, Swift.max(a.lq, 1))
    let T = Parallel.chunkCount(a.bh)
    let scratch = Tensor(uninitialized: [T, 2 * cq * a.lk + cq])
    let pq = SendablePointer(q.data), pk = SendablePointer(k.data), pv = SendablePointer(v.data)
    let po = SendablePointer(out.data), pl = SendablePointer(lse.data), pg = SendablePointer(g.data)
    let pdq = SendablePointer(dq.data), pdk = SendablePointer(dk.data), pdv = SendablePointer(dv.data)
    let ps = SendablePointer(scratch.data)
        Parallel.indexedChunks(a.bh) { t, s0, e0 in
            let P = ps.p + t * (2 * cq * a.lk + cq), dP = P + cq * a.lk, Di = dP + cq * a.lk
            for b in s0..<e0 {
                let K = pk.p + b * a.lk * a.d, V = pv.p + b * a.lk * a.dv
                let dK = pdk.p + b * a.lk * a.d, dV = pdv.p + b * a.lk * a.dv
                var c0 = 0
                while c0 < a.lq {
                    let rows = Swift.min(cq, a.lq - c0)
                    let Q = pq.p + (b * a.lq + c0) * a.d, O = po.p + (b * a.lq + c0) * a.dv
                    let G = pg.p + (b * a.lq + c0) * a.dv, dQ = pdq.p + (b * a.lq + c0) * a.d
                    BLAS.sgemmSerial(transA: false, transB: true, m: rows, n: a.lk, k: a.d, alpha: scale,
                               a: Q, lda: a.d, b: K, ldb: a.d, beta: 0, c: P, ldc: a.lk)
                    for r in 0..<rows {
                        let l = pl.p[b * a.lq + c0 + r]
                        let n = attendedKeys(row: c0 + r, keys: a.lk, causal: causal)
                        map8(n, P + r * a.lk, P + r * a.lk) { vexp($0 - l) }
                        if n < a.lk { (P + r * a.lk + n).update(repeating: 0, count: a.lk - n) }
                        var dot: Float = 0
                        for j in 0..<a.dv { dot += G[r * a.dv + j] * O[r * a.dv + j] }
                        Di[r] = dot
                    }
                    // dV += Pᵀ G
                    BLAS.sgemmSerial(transA: true, transB: false, m: a.lk, n: a.dv, k: rows,
                               a: P, lda: a.lk, b: G, ldb: a.dv, beta: 1, c: dV, ldc: a.dv)
                    // dP = G Vᵀ ; dS = P ∘ (dP − D)
                    BLAS.sgemmSerial(transA: false, transB: true, m: rows, n: a.lk, k: a.dv,
                               a: G, lda: a.dv, b: V, ldb: a.dv, beta: 0, c: dP, ldc: a.lk)
                    for r in 0..<rows {
                        let d = Di[r]
                        zip8(a.lk, P + r * a.lk, dP + r * a.lk, dP + r * a.lk) { p, dp in p * (dp - d) }
                    }
                    // dQ = scale · dS K ; dK += scale · dSᵀ Q
                    BLAS.sgemmSerial(transA: false, transB: false, m: rows, n: a.d, k: a.lk, alpha: scale,
                               a: dP, lda: a.lk, b: K, ldb: a.d, beta: 0, c: dQ, ldc: a.d)
                    BLAS.sgemmSerial(transA: true, transB: false, m: a.lk, n: a.d, k: rows, alpha: scale,
                               a: dP, lda: a.lk, b: Q, ldb: a.d, beta: 1, c: dK, ldc: a.d)
                    c0 += rows
                }
            }
        }
    return (dq, dk, dv)
}

// MARK: Public API

extension Tensor {
    /// softmax(scale · q kᵀ) v for q [B, H, Lq, D], k [B, H, Lk, D], v [B, H, Lk, Dv];
    /// scale defaults to 1/sqrt(D). Causal: query i attends to keys 0...i only.
    public static func scaledDotProductAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, scale: Float? = nil,
                                                 causal: Bool = false) -> Tensor {
        let s = scale ?? 1 / Foundation.sqrt(Float(q.shape[3]))
        let (o, lse) = attentionForward(q, k, v, scale: s, causal: causal)
        return o.recorded(.attention(scale: s, causal: causal, output: o.detached(), lse: lse), [q, k, v])
    }

    /// Multi-head attention on projected inputs: q [B, Lq, H·D], k [B, Lk, H·D],
    /// v [B, Lk, H·Dv] -> [B, Lq, H·Dv]. Causal: query i attends to keys 0...i only.
    public static func multiHeadAttention(query q: Tensor, key k: Tensor, value v: Tensor, heads: Int,
                                          scale: Float? = nil, causal: Bool = false) -> Tensor {
        precondition(q.rank == 3 && k.rank == 3 && v.rank == 3 && q.shape[2] % heads == 0 && v.shape[2] % heads == 0,
                     "multiHeadAttention: q \(q.shape), k \(k.shape), v \(v.shape) with \(heads) heads")
        // x: [B, L, (H D)] -> [B, H, L, D]
        func split(_ x: Tensor) -> Tensor {
            x.reshaped([x.shape[0], x.shape[1], heads, x.shape[2] / heads]).permuted(0, 2, 1, 3)
        }
        let o = scaledDotProductAttention(split(q), split(k), split(v), scale: scale, causal: causal)
        // o: [B, H, Lq, Dv] -> [B, Lq, (H Dv)]
        return o.permuted(0, 2, 1, 3).reshaped([q.shape[0], q.shape[1], v.shape[2]])
    }
}
