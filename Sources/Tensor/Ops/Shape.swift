// Ops that move elements: reshape (a view), permute, crop/pad (slice), reflection padding, concat, split.

/// Copies the box `box` at `srcOffset` in src into dst at `dstOffset` (all same rank).
func copyBox(src: UnsafePointer<Float>, srcShape: [Int], srcOffset: [Int],
             dst: UnsafeMutablePointer<Float>, dstShape: [Int], dstOffset: [Int], box: [Int]) {
    let r = box.count
    if box.contains(0) { return }
    if r == 0 { dst[0] = src[0]; return }
    let ss = Tensor.strides(srcShape), ds = Tensor.strides(dstShape)
    let inner = box[r - 1]
    let rows = box.dropLast().reduce(1, *)
    var srcBase = 0, dstBase = 0
    for i in 0..<r { srcBase += srcOffset[i] * ss[i]; dstBase += dstOffset[i] * ds[i] }
    let ps = SendablePointer(UnsafeMutablePointer(mutating: src)), pd = SendablePointer(dst)
    Parallel.chunks(rows, grain: Swift.max(1, 8192 / inner)) { s, e in
        for row in s..<e {
            var rem = row, so = srcBase, dO = dstBase
            var i = r - 2
            while i >= 0 {
                let q = rem / box[i]
                let idx = rem - q * box[i]
                so += idx * ss[i]
                dO += idx * ds[i]
                rem = q
                i -= 1
            }
            (pd.p + dO).update(from: ps.p + so, count: inner)
        }
    }
}

func cropForward(_ x: Tensor, offset: [Int], shape: [Int]) -> Tensor {
    let out = Tensor(uninitialized: shape)
    copyBox(src: x.data, srcShape: x.shape, srcOffset: offset, dst: out.data, dstShape: shape,
            dstOffset: [Int](repeating: 0, count: shape.count), box: shape)
    return out
}

/// x placed at `offset` inside a tensor of `shape` filled with `value` (the adjoint of crop).
func padForward(_ x: Tensor, offset: [Int], shape: [Int], value: Float) -> Tensor {
    let out = Tensor.full(shape, value)
    copyBox(src: x.data, srcShape: x.shape, srcOffset: [Int](repeating: 0, count: x.rank),
            dst: out.data, dstShape: shape, dstOffset: offset, box: x.shape)
    return out
}

func permuteForward(_ x: Tensor, _ perm: [Int]) -> Tensor {
    let outShape = perm.map { x.shape[$0] }
    let out = Tensor(uninitialized: outShape)
    let n = out.count
    if n == 0 { return out }
    let inStrides = Tensor.strides(x.shape)
    let st = perm.map { inStrides[$0] }  // input stride of each output dim
    let r = outShape.count
    let inner = outShape[r - 1], sInner = st[r - 1]
    let rows = n / inner
    let px = SendablePointer(x.data), py = SendablePointer(out.data)
    Parallel.chunks(rows, grain: Swift.max(1, 8192 / inner)) { s, e in
        for row in s..<e {
            var rem = row, off = 0
            var i = r - 2
            while i >= 0 {
                let q = rem / outShape[i]
                off += (rem - q * outShape[i]) * st[i]
                rem = q
                i -= 1
            }
            let src = px.p + off, dst = py.p + row * inner
            if sInner == 1 { dst.update(from: src, count: inner) }
            else { for j in 0..<inner { dst[j] = src[j * sInner] } }
        }
    }
    return out
}

/// Source index of output position j of a reflection-padded row of length l ("reflect": the
/// edge sample is not repeated, so −1 reads 1 and l reads l − 2).
@inline(__always)
func reflectIndex(_ j: Int, left: Int, _ l: Int) -> Int {
    let i = j - left
    return i < 0 ? -i : (i >= l ? 2 * (l - 1) - i : i)
}

/// x [..., L] -> [..., left + L + right], each row reflected about its end samples.
func reflectPadForward(_ x: Tensor, left: Int, right: Int) -> Tensor {
    let l = x.shape[x.rank - 1], lo = l + left + right
    let out = Tensor(uninitialized: Array(x.shape.dropLast()) + [lo])
    let rows = l == 0 ? 0 : x.count / l
    let px = SendablePointer(x.data), py = SendablePointer(out.data)
    Parallel.chunks(rows, grain: Swift.max(1, 8192 / lo)) { s, e in
        for r in s..<e {
            let src = px.p + r * l, dst = py.p + r * lo
            for j in 0..<left { dst[j] = src[left - j] }
            (dst + left).update(from: src, count: l)
            for j in (left + l)..<lo { dst[j] = src[reflectIndex(j, left: left, l)] }
        }
    }
    return out
}

/// The adjoint: each padded position's gradient goes back to the sample it copied.
func reflectPadBackward(_ g: Tensor, inputShape: [Int], left: Int, right: Int) -> Tensor {
    let l = inputShape[inputShape.count - 1], lo = l + left + right
    let dx = Tensor(uninitialized: inputShape)
    let rows = l == 0 ? 0 : dx.count / l
    let pg = SendablePointer(g.data), pd = SendablePointer(dx.data)
    Parallel.chunks(rows, grain: Swift.max(1, 8192 / lo)) { s, e in
        for r in s..<e {
            let src = pg.p + r * lo, dst = pd.p + r * l
            dst.update(from: src + left, count: l)
            for j in 0..<left { dst[left - j] += src[j] }
            for j in (left + l)..<lo { dst[reflectIndex(j, left: left, l)] += src[j] }
        }
    }
    return dx
}

// MARK: Public API

extension Tensor {
    /// A view with a new shape and the same elements (one dim may be -1).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var s = newShape
        if let i = s.firstIndex(of: -1) {
            let rest = s.enumerated().filter { $0.offset != i }.reduce(1) { $0 * $1.element }
            precondition(rest > 0 && count % rest == 0, "cannot reshape \(shape) to \(newShape)")
            s[i] = count / rest
        }
        precondition(s.reduce(1, *) == count, "cannot reshape \(shape) (\(count) elements) to \(newShape)")
        if s == shape { return self }
        return Tensor(shape: s, storage: storage).recorded(.reshape(inputShape: shape), [self])
    }

    public func reshaped(_ dims: Int...) -> Tensor { reshaped(dims) }

    /// Entry `i` of the first axis (one image, clip or frame of a batch) as a tensor of the
    /// remaining dims, copied out (no autograd).
    public func item(_ i: Int) -> Tensor {
        precondition(rank >= 1 && i >= 0 && i < shape[0], "item \(i) of \(shape)")
        let per = count / shape[0]
        let t = Tensor.zeros(Array(shape.dropFirst()))
        t.data.update(from: data + i * per, count: per)
        return t
    }

    /// Dims `from...to` merged into one.
    public func flattened(from: Int = 0, to: Int = -1) -> Tensor {
        let a = normalizeAxis(from), b = normalizeAxis(to)
        let merged = shape[a...b].reduce(1, *)
        return reshaped(Array(shape[..<a]) + [merged] + Array(shape[(b + 1)...]))
    }

    /// Inserts a size-1 dim at `axis`.
    public func unsqueezed(_ axis: Int) -> Tensor {
        var s = shape
        s.insert(1, at: axis < 0 ? axis + rank + 1 : axis)
        return reshaped(s)
    }

    /// Dims reordered: output dim i is input dim perm[i] (a copy).
    public func permuted(_ perm: [Int]) -> Tensor {
        precondition(perm.count == rank && Set(perm) == Set(0..<rank), "permutation \(perm) invalid for shape \(shape)")
        if perm == Array(0..<rank) { return self }
        return permuteForward(self, perm).recorded(.permute(perm), [self])
    }

    public func permuted(_ perm: Int...) -> Tensor { permuted(perm) }

    /// Dims a and b swapped (a copy).
    public func transposed(_ a: Int = -2, _ b: Int = -1) -> Tensor {
        var p = Array(0..<rank)
        p.swapAt(normalizeAxis(a), normalizeAxis(b))
        return permuted(p)
    }

    /// The box of `size` starting at `offset` (a copy).
    public func cropped(offset: [Int], size: [Int]) -> Tensor {
        precondition(offset.count == rank && size.count == rank, "crop offset \(offset) / size \(size) for shape \(shape)")
        for i in 0..<rank {
            precondition(offset[i] >= 0 && size[i] >= 0 && offset[i] + size[i] <= shape[i],
                         "crop offset \(offset) size \(size) outside shape \(shape)")
        }
        if size == shape { return self }
        return cropForward(self, offset: offset, shape: size).recorded(.crop(offset: offset), [self])
    }

    /// Elements start..<end along `axis` (a copy).
    public func slice(axis: Int, _ range: Range<Int>) -> Tensor {
        let a = normalizeAxis(axis)
        var off = [Int](repeating: 0, count: rank), size = shape
        off[a] = range.lowerBound
        size[a] = range.count
        return cropped(offset: off, size: size)
    }

    /// Padding (before, after) for each of the trailing `pads.count` dims, filled with `value`.
    public func padded(_ pads: [(Int, Int)], value: Float = 0) -> Tensor {
        precondition(pads.count <= rank, "pad: \(pads.count) pairs for shape \(shape)")
        var off = [Int](repeating: 0, count: rank), size = shape
        for (k, p) in pads.enumerated() {
            let d = rank - pads.count + k
            precondition(p.0 >= 0 && p.1 >= 0, "pad: negative padding \(p) (use cropped)")
            off[d] = p.0
            size[d] += p.0 + p.1
        }
        if size == shape { return self }
        return padForward(self, offset: off, shape: size, value: value).recorded(.pad(offset: off), [self])
    }

    /// The last axis padded by reflection, as PyTorch's `F.pad(x, (left, right), mode="reflect")`:
    /// [..., L] -> [..., left + L + right]; the edge sample is not repeated, so each pad must be < L.
    public func reflectPadded(left: Int, right: Int) -> Tensor {
        let l = shape.last ?? 0
        precondition(rank >= 1 && left >= 0 && right >= 0 && left < l && right < l,
                     "reflectPadded: padding (\(left), \(right)) must be less than the last dim of \(shape)")
        if left == 0 && right == 0 { return self }
        return reflectPadForward(self, left: left, right: right).recorded(.reflectPad(left: left, right: right), [self])
    }

    /// Tensors joined along `axis`; all other dims must match.
    public static func concat(_ xs: [Tensor], axis: Int) -> Tensor {
        precondition(!xs.isEmpty, "concat of no tensors")
        let a = xs[0].normalizeAxis(axis)
        var outShape = xs[0].shape
        outShape[a] = 0
        for x in xs {
            var s = x.shape
            s[a] = xs[0].shape[a]
            var ref = xs[0].shape
            ref[a] = xs[0].shape[a]
            precondition(s == ref, "concat along \(axis): shapes \(xs.map(\.shape)) differ off that axis")
            outShape[a] += x.shape[a]
        }
        let out = Tensor(uninitialized: outShape)
        var off = [Int](repeating: 0, count: outShape.count)
        for x in xs {
            copyBox(src: x.data, srcShape: x.shape, srcOffset: [Int](repeating: 0, count: x.rank),
                    dst: out.data, dstShape: outShape, dstOffset: off, box: x.shape)
            off[a] += x.shape[a]
        }
        return out.recorded(.concat(axis: a), xs)
    }

    /// Pieces of the given sizes along `axis`.
    public func split(sizes: [Int], axis: Int) -> [Tensor] {
        let a = normalizeAxis(axis)
        precondition(sizes.reduce(0, +) == shape[a], "split sizes \(sizes) do not add up to \(shape[a]) in \(shape)")
        var start = 0
        return sizes.map { n in
            defer { start += n }
            return slice(axis: a, start..<(start + n))
        }
    }

    /// `n` equal pieces along `axis`.
    public func chunked(_ n: Int, axis: Int) -> [Tensor] {
        let a = normalizeAxis(axis)
        precondition(n > 0 && shape[a] % n == 0, "cannot chunk \(shape) into \(n) along \(axis)")
        return split(sizes: [Int](repeating: shape[a] / n, count: n), axis: a)
    }
}
