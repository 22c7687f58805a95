// Nearest upsampling and average pooling over the 1–3 trailing spatial dims of [N, C, *S],
// and embedding gathers.

/// [N, C, *S] viewed as planes [(N C), D, H, W], missing spatial dims as 1.
private func dhw(_ s: [Int]) -> (Int, Int, Int) {
    let sp = Array(s.dropFirst(2))
    let p = [Int](repeating: 1, count: 3 - sp.count) + sp
    return (p[0], p[1], p[2])
}

/// PyTorch's "nearest": src = min(floor(dst * in / out), in - 1), computed in Float as it does.
private func nearestIndex(_ out: Int, _ inp: Int) -> [Int] {
    let scale = Float(inp) / Float(out)
    return (0..<out).map { Swift.min(Int((Float($0) * scale).rounded(.down)), inp - 1) }
}

func upsampleNearestForward(_ x: Tensor, size: [Int]) -> Tensor {
    let outShape = Array(x.shape.prefix(2)) + size
    let out = Tensor(uninitialized: outShape)
    let (id, ih, iw) = dhw(x.shape), (od, oh, ow) = dhw(outShape)
    let zi = nearestIndex(od, id), yi = nearestIndex(oh, ih), xi = nearestIndex(ow, iw)
    let planes = x.shape[0] * x.shape[1]
    let px = SendablePointer(x.data), py = SendablePointer(out.data)
    Parallel.forEach(planes, grain: 4) { p in
        let src = px.p + p * id * ih * iw
        var dst = py.p + p * od * oh * ow
        for z in 0..<od {
            for y in 0..<oh {
                let row = src + (zi[z] * ih + yi[y]) * iw
                for xx in 0..<ow { dst[xx] = row[xi[xx]] }
                dst += ow
            }
        }
    }
    return out
}

func upsampleNearestBackward(_ g: Tensor, inputShape: [Int]) -> Tensor {
    let dx = Tensor.zeros(inputShape)
    let (id, ih, iw) = dhw(inputShape), (od, oh, ow) = dhw(g.shape)
    let zi = nearestIndex(od, id), yi = nearestIndex(oh, ih), xi = nearestIndex(ow, iw)
    let planes = inputShape[0] * inputShape[1]
    let pg = SendablePointer(g.data), pd = SendablePointer(dx.data)
    Parallel.forEach(planes, grain: 4) { p in
        let dst = pd.p + p * id * ih * iw
        var src = pg.p + p * od * oh * ow
        for z in 0..<od {
            for y in 0..<oh {
                let row = dst + (zi[z] * ih + yi[y]) * iw
                for xx in 0..<ow { row[xi[xx]] += src[xx] }
                src += ow
            }
        }
    }
    return dx
}

/// Average over windows `kernel` moved by `stride`, no padding, floor mode.
func avgPoolForward(_ x: Tensor, kernel: [Int], stride: [Int]) -> Tensor {
    let sp = x.shape.count - 2
    var outSpatial: [Int] = []
    for i in 0..<sp { outSpatial.append((x.shape[2 + i] - kernel[i]) / stride[i] + 1) }
    let outShape = Array(x.shape.prefix(2)) + outSpatial
    let out = Tensor(uninitialized: outShape)
    let (id, ih, iw) = dhw(x.shape), (od, oh, ow) = dhw(outShape)
    let k = [Int](repeating: 1, count: 3 - sp) + kernel, s = [Int](repeating: 1, count: 3 - sp) + stride
    let inv = 1 / Float(kernel.reduce(1, *))
    let planes = x.shape[0] * x.shape[1]
    let px = SendablePointer(x.data), py = SendablePointer(out.data)
    let k0 = k[0], k1 = k[1], k2 = k[2], s0 = s[0], s1 = s[1], s2 = s[2]
    Parallel.forEach(planes, grain: 4) { (p: Int) in
        let src = px.p + p * id * ih * iw, dst = py.p + p * od * oh * ow
        for z in 0..<od {
            for y in 0..<oh {
                for xx in 0..<ow {
                    var acc: Float = 0
                    for a in 0..<k0 {
                        for b in 0..<k1 {
                            let row: UnsafeMutablePointer<Float> = src + ((z * s0 + a) * ih + y * s1 + b) * iw + xx * s2
                            for c in 0..<k2 { acc += row[c] }
                        }
                    }
                    dst[(z * oh + y) * ow + xx] = acc * inv
                }
            }
        }
    }
    return out
}

func avgPoolBackward(_ g: Tensor, inputShape: [Int], kernel: [Int], stride: [Int]) -> Tensor {
    let dx = Tensor.zeros(inputShape)
    let sp = inputShape.count - 2
    let (id, ih, iw) = dhw(inputShape), (od, oh, ow) = dhw(g.shape)
    let k = [Int](repeating: 1, count: 3 - sp) + kernel, s = [Int](repeating: 1, count: 3 - sp) + stride
    let inv = 1 / Float(kernel.reduce(1, *))
    let planes = inputShape[0] * inputShape[1]
    let pg = SendablePointer(g.data), pd = SendablePointer(dx.data)
    let k0 = k[0], k1 = k[1], k2 = k[2], s0 = s[0], s1 = s[1], s2 = s[2]
    Parallel.forEach(planes, grain: 4) { (p: Int) in
        let dst = pd.p + p * id * ih * iw, src = pg.p + p * od * oh * ow
        for z in 0..<od {
            for y in 0..<oh {
                for xx in 0..<ow {
                    let v = src[(z * oh + y) * ow + xx] * inv
                    for a in 0..<k0 {
                        for b in 0..<k1 {
                            let row: UnsafeMutablePointer<Float> = dst + ((z * s0 + a) * ih + y * s1 + b) * iw + xx * s2
                            for c in 0..<k2 { row[c] += v }
                        }
                    }
                }
            }
        }
    }
    return dx
}

func embeddingForward(_ weight: Tensor, _ indices: [Int]) -> Tensor {
    let d = weight.shape[1]
    let out = Tensor(uninitialized: [indices.count, d])
    for (i, idx) in indices.enumerated() {
        precondition(idx >= 0 && idx < weight.shape[0], "embedding index \(idx) outside 0..<\(weight.shape[0])")
        (out.data + i * d).update(from: weight.data + idx * d, count: d)
    }
    return out
}

func embeddingBackward(_ g: Tensor, _ indices: [Int], vocab: Int) -> Tensor {
    let d = g.shape[1]
    let dw = Tensor.zeros([vocab, d])
    for (i, idx) in indices.enumerated() {
        let dst = dw.data + idx * d, src = g.data + i * d
        for j in 0..<d { dst[j] += src[j] }
    }
    return dw
}

// MARK: Public API

extension Tensor {
    /// Nearest-neighbour resize of the spatial dims of [N, C, *S] (1–3 of them) to `size`,
    /// with PyTorch's `mode="nearest"` index rule.
    public func upsampleNearest(size: [Int]) -> Tensor {
        precondition(rank >= 3 && size.count == rank - 2 && size.allSatisfy { $0 > 0 },
                     "upsampleNearest: size \(size) for shape \(shape) (needs [N, C, *S])")
        return upsampleNearestForward(self, size: size).recorded(.upsampleNearest(inputShape: shape), [self])
    }

    /// Nearest-neighbour upsampling of every spatial dim by an integer factor.
    public func upsampleNearest(scale: Int) -> Tensor {
        upsampleNearest(size: shape.dropFirst(2).map { $0 * scale })
    }

    /// Average pooling of [N, C, *S] (1–3 spatial dims) with the given window and stride.
    public func avgPool(kernel: [Int], stride: [Int]? = nil) -> Tensor {
        let st = stride ?? kernel
        precondition(rank >= 3 && kernel.count == rank - 2 && st.count == rank - 2,
                     "avgPool: kernel \(kernel) stride \(st) for shape \(shape)")
        for i in 0..<kernel.count {
            precondition(kernel[i] >= 1 && st[i] >= 1 && shape[2 + i] >= kernel[i],
                         "avgPool: kernel \(kernel) stride \(st) for shape \(shape)")
        }
        return avgPoolForward(self, kernel: kernel, stride: st)
            .recorded(.avgPool(kernel: kernel, stride: st), [self])
    }

    /// Rows of this [V, D] table: [indices.count, D].
    public func embedding(_ indices: [Int]) -> Tensor {
        precondition(rank == 2, "embedding table must be [V, D], got \(shape)")
        return embeddingForward(self, indices).recorded(.embedding(indices), [self])
    }
}
