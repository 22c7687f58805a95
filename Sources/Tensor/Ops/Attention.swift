import Foundation
import CKernels

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

/// One attention problem and where its heads are: `batch · heads` heads of q [lq, d], k [lk, d],
/// v [lk, dv], o [lq, dv]; head (b, h) of a tensor starts at b·stride.b + h·stride.h, its rows
/// stride.r apart. Heads-first tensors are [B, H, L, D]; interleaved ones [B, L, H·D] (what the
/// projections make: no permute in or out).
struct AttentionDims {
    typealias Strides = (b: Int, h: Int, r: Int)
    let batch, heads, lq, lk, d, dv: Int
    let q, k, v, o: Strides
    /// Whether the tensors are [B, L, H·D].
    let interleaved: Bool
    var bh: Int { batch * heads }

    /// q [B, H, Lq, D], k [B, H, Lk, D], v [B, H, Lk, Dv].
    init(_ q: [Int], _ k: [Int], _ v: [Int]) {
        precondition(q.count == 4 && k.count == 4 && v.count == 4, "attention: q \(q), k \(k), v \(v) must be [B, H, L, D]")
        precondition(q[0] == k[0] && q[1] == k[1] && k[0] == v[0] && k[1] == v[1] && k[2] == v[2] && q[3] == k[3],
                     "attention: q \(q), k \(k), v \(v) do not agree")
        (batch, heads, lq, lk, d, dv) = (q[0], q[1], q[2], k[2], q[3], v[3])
        func strides(_ l: Int, _ w: Int) -> Strides { (q[1] * l * w, l * w, w) }
        (self.q, self.k, self.v, self.o) = (strides(lq, d), strides(lk, d), strides(lk, dv), strides(lq, dv))
        interleaved = false
    }

    /// q [B, Lq, H·D], k [B, Lk, H·D], v [B, Lk, H·Dv].
    init(interleaved q: [Int], _ k: [Int], _ v: [Int], heads: Int) {
        precondition(q.count == 3 && k.count == 3 && v.count == 3 && heads > 0 && q[2] % heads == 0 && v[2] % heads == 0,
                     "multiHeadAttention: q \(q), k \(k), v \(v) with \(heads) heads")
        precondition(q[0] == k[0] && k[0] == v[0] && k[1] == v[1] && q[2] == k[2],
                     "multiHeadAttention: q \(q), k \(k), v \(v) do not agree")
        (batch, self.heads, lq, lk, d, dv) = (q[0], heads, q[1], k[1], q[2] / heads, v[2] / heads)
        func strides(_ l: Int, _ w: Int) -> Strides { (l * heads * w, w, heads * w) }
        (self.q, self.k, self.v, self.o) = (strides(lq, d), strides(lk, d), strides(lk, dv), strides(lq, dv))
        interleaved = true
    }

    var outputShape: [Int] { interleaved ? [batch, lq, heads * dv] : [batch, heads, lq, dv] }

    /// Offset of head bh's first row in a tensor of strides s.
    @inline(__always) func head(_ bh: Int, _ s: Strides) -> Int { (bh / heads) * s.b + (bh % heads) * s.h }

    /// `DIFFUSE_NARROW_ATTENTION=0` keeps narrow heads on the BLAS path (to compare; tests set it).
    nonisolated(unsafe) static var narrowEnabled = ProcessInfo.processInfo.environment["DIFFUSE_NARROW_ATTENTION"] != "0"

    /// Heads of at most 32 floats run in CKernels' attention, whose products run along the keys:
    /// a BLAS product with an inner size of 8 or 16 mostly packs.
    var narrow: Bool { AttentionDims.narrowEnabled && d <= 32 && dv <= 32 }

    func kernel(scale: Float, causal: Bool) -> ck_attention {
        ck_attention(heads: Int32(heads), lq: Int32(lq), lk: Int32(lk), d: Int32(d), dv: Int32(dv),
                     causal: causal ? 1 : 0, scale: scale,
                     q_b: q.b, q_h: q.h, q_r: q.r, k_b: k.b, k_h: k.h, k_r: k.r,
                     v_b: v.b, v_h: v.h, v_r: v.r, o_b: o.b, o_h: o.h, o_r: o.r)
    }
}

/// Keys query row `i` sees: all, or 0...i when causal.
@inline(__always) func attendedKeys(row i: Int, keys: Int, causal: Bool) -> Int {
    causal ? Swift.min(keys, i + 1) : keys
}

func attentionForward(_ q: Tensor, _ k: Tensor, _ v: Tensor, _ a: AttentionDims, scale: Float,
                      causal: Bool = false) -> (out: Tensor, lse: Tensor) {
    let out = Tensor(uninitialized: a.outputShape)
    let lse = Tensor(uninitialized: [a.bh, a.lq])
    FlopCounter.add(2 * Double(a.bh) * Double(a.lq) * Double(a.lk) * Double(a.d + a.dv))
    let cq = Swift.min(attentionChunk, Swift.max(a.lq, 1))
    let nChunks = (a.lq + cq - 1) / cq
    let items = a.bh * nChunks
    let T = Parallel.chunkCount(items)
    let pq = SendablePointer(q.data), pk = SendablePointer(k.data), pv = SendablePointer(v.data)
    let po = SendablePointer(out.data), pl = SendablePointer(lse.data)
    if a.narrow {
        let c = a.kernel(scale: scale, causal: causal)
        let per = withUnsafePointer(to: c) { ck_attention_scratch($0, 0) }
        let scratch = Tensor(uninitialized: [T, per])
        let ps = SendablePointer(scratch.data)
        Parallel.indexedChunks(items) { t, s0, e0 in
            withUnsafePointer(to: c) { cp in
                for item in s0..<e0 {
                    let c0 = (item % nChunks) * cq
                    ck_attention_forward(cp, pq.p, pk.p, pv.p, po.p, pl.p, Int32(item / nChunks), Int32(c0),
                                         Int32(Swift.min(a.lq, c0 + cq)), ps.p + t * per)
                }
            }
        }
        return (out, lse)
    }
    let scratch = Tensor(uninitialized: [T, cq * a.lk + cq])
    let ps = SendablePointer(scratch.data)
    Parallel.indexedChunks(items) { t, s0, e0 in
        let S = ps.p + t * (cq * a.lk + cq), Sum = S + cq * a.lk
        for item in s0..<e0 {
            let bh = item / nChunks, c0 = (item % nChunks) * cq
            let rows = Swift.min(cq, a.lq - c0)
            let qc = pq.p + a.head(bh, a.q) + c0 * a.q.r
            // S [rows, Lk] = scale · q_c kᵀ
            BLAS.sgemmSerial(transA: false, transB: true, m: rows, n: a.lk, k: a.d, alpha: scale,
                             a: qc, lda: a.q.r, b: pk.p + a.head(bh, a.k), ldb: a.k.r, beta: 0, c: S, ldc: a.lk)
            // Unnormalised probabilities; the 1/sum goes on the (narrower) output rows.
            for r in 0..<rows {
                let n = attendedKeys(row: c0 + r, keys: a.lk, causal: causal)
                let (m, s) = expRow(S + r * a.lk, n)
                if n < a.lk { (S + r * a.lk + n).update(repeating: 0, count: a.lk - n) }
                pl.p[bh * a.lq + c0 + r] = m + Foundation.log(s)
                Sum[r] = 1 / s
            }
            // o_c [rows, Dv] = P v
            let oc = po.p + a.head(bh, a.o) + c0 * a.o.r
            BLAS.sgemmSerial(transA: false, transB: false, m: rows, n: a.dv, k: a.lk,
                             a: S, lda: a.lk, b: pv.p + a.head(bh, a.v), ldb: a.v.r,
                             beta: 0, c: oc, ldc: a.o.r)
            for r in 0..<rows {
                let f = Sum[r], row = oc + r * a.o.r
                for j in 0..<a.dv { row[j] *= f }
            }
        }
    }
    return (out, lse)
}

func attentionBackward(_ q: Tensor, _ k: Tensor, _ v: Tensor, _ a: AttentionDims, out: Tensor, lse: Tensor,
                       scale: Float, causal: Bool = false, g: Tensor) -> (Tensor, Tensor, Tensor) {
    let T = Parallel.chunkCount(a.bh)
    let pq = SendablePointer(q.data), pk = SendablePointer(k.data), pv = SendablePointer(v.data)
    let po = SendablePointer(out.data), pl = SendablePointer(lse.data), pg = SendablePointer(g.data)
    if a.narrow {
        // Every head's dq, dk and dv are written whole.
        let dq = Tensor(uninitialized: q.shape), dk = Tensor(uninitialized: k.shape), dv = Tensor(uninitialized: v.shape)
        let pdq = SendablePointer(dq.data), pdk = SendablePointer(dk.data), pdv = SendablePointer(dv.data)
        let c = a.kernel(scale: scale, causal: causal)
        let per = withUnsafePointer(to: c) { ck_attention_scratch($0, 1) }
        let scratch = Tensor(uninitialized: [T, per])
        let ps = SendablePointer(scratch.data)
        Parallel.indexedChunks(a.bh) { t, s0, e0 in
            withUnsafePointer(to: c) { cp in
                for bh in s0..<e0 {
                    ck_attention_backward(cp, pq.p, pk.p, pv.p, po.p, pl.p, pg.p, pdq.p, pdk.p, pdv.p, Int32(bh),
                                          ps.p + t * per)
                }
            }
        }
        return (dq, dk, dv)
    }
    let dq = Tensor(uninitialized: q.shape), dk = Tensor.zeros(k.shape), dv = Tensor.zeros(v.shape)
    let cq = Swift.min(attentionChunk, Swift.max(a.lq, 1))
    let scratch = Tensor(uninitialized: [T, 2 * cq * a.lk + cq])
    let pdq = SendablePointer(dq.data), pdk = SendablePointer(dk.data), pdv = SendablePointer(dv.data)
    let ps = SendablePointer(scratch.data)
    Parallel.indexedChunks(a.bh) { t, s0, e0 in
        let P = ps.p + t * (2 * cq * a.lk + cq), dP = P + cq * a.lk, Di = dP + cq * a.lk
        for b in s0..<e0 {
            let K = pk.p + a.head(b, a.k), V = pv.p + a.head(b, a.v)
            let dK = pdk.p + a.head(b, a.k), dV = pdv.p + a.head(b, a.v)
            var c0 = 0
            while c0 < a.lq {
                let rows = Swift.min(cq, a.lq - c0)
                let Q = pq.p + a.head(b, a.q) + c0 * a.q.r, O = po.p + a.head(b, a.o) + c0 * a.o.r
                let G = pg.p + a.head(b, a.o) + c0 * a.o.r, dQ = pdq.p + a.head(b, a.q) + c0 * a.q.r
                BLAS.sgemmSerial(transA: false, transB: true, m: rows, n: a.lk, k: a.d, alpha: scale,
                                 a: Q, lda: a.q.r, b: K, ldb: a.k.r, beta: 0, c: P, ldc: a.lk)
                for r in 0..<rows {
                    let l = pl.p[b * a.lq + c0 + r]
                    let n = attendedKeys(row: c0 + r, keys: a.lk, causal: causal)
                    map8(n, P + r * a.lk, P + r * a.lk) { vexp($0 - l) }
                    if n < a.lk { (P + r * a.lk + n).update(repeating: 0, count: a.lk - n) }
                    var dot: Float = 0
                    for j in 0..<a.dv { dot += G[r * a.o.r + j] * O[r * a.o.r + j] }
                    Di[r] = dot
                }
                // dV += Pᵀ G
                BLAS.sgemmSerial(transA: true, transB: false, m: a.lk, n: a.dv, k: rows,
                                 a: P, lda: a.lk, b: G, ldb: a.o.r, beta: 1, c: dV, ldc: a.v.r)
                // dP = G Vᵀ ; dS = P ∘ (dP − D)
                BLAS.sgemmSerial(transA: false, transB: true, m: rows, n: a.lk, k: a.dv,
                                 a: G, lda: a.o.r, b: V, ldb: a.v.r, beta: 0, c: dP, ldc: a.lk)
                for r in 0..<rows {
                    let d = Di[r]
                    zip8(a.lk, P + r * a.lk, dP + r * a.lk, dP + r * a.lk) { p, dp in p * (dp - d) }
                }
                // dQ = scale · dS K ; dK += scale · dSᵀ Q
                BLAS.sgemmSerial(transA: false, transB: false, m: rows, n: a.d, k: a.lk, alpha: scale,
                                 a: dP, lda: a.lk, b: K, ldb: a.k.r, beta: 0, c: dQ, ldc: a.q.r)
                BLAS.sgemmSerial(transA: true, transB: false, m: a.lk, n: a.d, k: rows, alpha: scale,
                                 a: dP, lda: a.lk, b: Q, ldb: a.q.r, beta: 1, c: dK, ldc: a.k.r)
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
        let a = AttentionDims(q.shape, k.shape, v.shape)
        let (o, lse) = attentionForward(q, k, v, a, scale: s, causal: causal)
        return o.recorded(.attention(scale: s, causal: causal, heads: nil, output: o.detached(), lse: lse), [q, k, v])
    }

    /// Multi-head attention on projected inputs: q [B, Lq, H·D], k [B, Lk, H·D],
    /// v [B, Lk, H·Dv] -> [B, Lq, H·Dv]. Causal: query i attends to keys 0...i only. The heads are
    /// read and written in place (no permute to [B, H, L, D] and back).
    public static func multiHeadAttention(query q: Tensor, key k: Tensor, value v: Tensor, heads: Int,
                                          scale: Float? = nil, causal: Bool = false) -> Tensor {
        let a = AttentionDims(interleaved: q.shape, k.shape, v.shape, heads: heads)
        let s = scale ?? 1 / Foundation.sqrt(Float(a.d))
        let (o, lse) = attentionForward(q, k, v, a, scale: s, causal: causal)
        return o.recorded(.attention(scale: s, causal: causal, heads: heads, output: o.detached(), lse: lse), [q, k, v])
    }
}
