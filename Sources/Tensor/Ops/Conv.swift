import Foundation
import CKernels

// Convolution as im2col + sgemm. conv1d is conv2d on [N, C, 1, L].
//
// Layouts: x [N, Cin, H, W], weight [Cout, Cin/G, kh, kw], out [N, Cout, Ho, Wo].
// A block of nb images is unfolded into col [(Cin kh kw), (nb Ho Wo)], so one product per
// group covers the block: out_g [Cout/G, (nb P)] = W_g [Cout/G, K_g] x col_g [K_g, (nb P)].

public struct Conv2dParams: Hashable, Sendable {
    public var stride: (Int, Int)
    public var padding: (Int, Int)
    public var dilation: (Int, Int)
    public var groups: Int

    public init(stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1), groups: Int = 1) {
        self.stride = stride; self.padding = padding; self.dilation = dilation; self.groups = groups
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.stride == b.stride && a.padding == b.padding && a.dilation == b.dilation && a.groups == b.groups
    }

    public func hash(into h: inout Hasher) {
        h.combine(stride.0); h.combine(stride.1); h.combine(padding.0); h.combine(padding.1)
        h.combine(dilation.0); h.combine(dilation.1); h.combine(groups)
    }
}

/// How output positions are cut into work items: `rows` output rows × `cols` columns of one
/// image (`cols` < wo only with single-row tiles, so a tile is always contiguous in the output),
/// or — for small images — `images` whole images side by side, so that one product covers
/// enough columns to pay for repacking the weights.
struct ConvTiling {
    let rows: Int, cols: Int, ho: Int, wo: Int
    var images = 1
    var tilesY: Int { (ho + rows - 1) / rows }
    var tilesX: Int { (wo + cols - 1) / cols }
    var perImage: Int { tilesY * tilesX }
    /// Largest tile, in output positions (all of its images).
    var size: Int { rows * cols * images }

    /// Work items for `n` images.
    func count(_ n: Int) -> Int { images > 1 ? (n + images - 1) / images : n * perImage }

    /// Item k: images n0..<n0+nb, and (oy0, oy1, ox0, ox1) of each.
    func item(_ k: Int, n: Int) -> (n0: Int, nb: Int, oy0: Int, oy1: Int, ox0: Int, ox1: Int) {
        if images > 1 {
            let n0 = k * images
            return (n0, Swift.min(images, n - n0), 0, ho, 0, wo)
        }
        let t = k % perImage, ty = t / tilesX, tx = t % tilesX
        return (k / perImage, 1, ty * rows, Swift.min(ho, ty * rows + rows), tx * cols, Swift.min(wo, tx * cols + cols))
    }
}

extension ConvTiling {
    /// Columns an item of whole small images aims at (`DIFFUSE_CONV_COLUMNS` overrides, for tuning).
    static let imageColumns: Int = ProcessInfo.processInfo.environment["DIFFUSE_CONV_COLUMNS"].flatMap { Int($0) } ?? 256
}

struct ConvGeometry {
    let n, cin, h, w, cout, kh, kw, ho, wo, groups: Int
    let p: Conv2dParams
    var P: Int { ho * wo }
    var cinG: Int { cin / groups }
    var coutG: Int { cout / groups }
    var kG: Int { cinG * kh * kw }
    var rows: Int { cin * kh * kw }
    /// 1x1, stride 1, no padding: the input already is the column matrix.
    var pointwise: Bool {
        kh == 1 && kw == 1 && p.stride == (1, 1) && p.padding == (0, 0)
    }

    init(x: [Int], weight: [Int], _ p: Conv2dParams) {
        precondition(x.count == 4 && weight.count == 4, "conv2d: x \(x) and weight \(weight) must be rank 4")
        precondition(p.groups >= 1 && x[1] % p.groups == 0 && weight[0] % p.groups == 0,
                     "conv2d: groups \(p.groups) must divide Cin \(x[1]) and Cout \(weight[0])")
        precondition(weight[1] * p.groups == x[1], "conv2d: weight \(weight) expects \(weight[1] * p.groups) input channels, x is \(x)")
        precondition(p.stride.0 >= 1 && p.stride.1 >= 1 && p.dilation.0 >= 1 && p.dilation.1 >= 1 &&
                     p.padding.0 >= 0 && p.padding.1 >= 0, "conv2d: bad params \(p)")
        n = x[0]; cin = x[1]; h = x[2]; w = x[3]
        cout = weight[0]; kh = weight[2]; kw = weight[3]; groups = p.groups
        self.p = p
        ho = (h + 2 * p.padding.0 - p.dilation.0 * (kh - 1) - 1) / p.stride.0 + 1
        wo = (w + 2 * p.padding.1 - p.dilation.1 * (kw - 1) - 1) / p.stride.1 + 1
        precondition(ho > 0 && wo > 0, "conv2d: kernel \(weight) larger than padded input \(x)")
    }

    /// Work tiles for the tiled kernels: whole output rows when a row's unfolded columns fit
    /// the cache budget (~512 KB), else column ranges of single rows (1D signals). Enough tiles
    /// to keep every thread busy. `minColumns` above 64 keeps the tiles of wide convolutions
    /// long (the budget grows to fit them, up to 16 MB): each tile's product repacks the whole
    /// weight matrix, which costs about 1/cols of the product.
    func tiling(threads T: Int, minColumns: Int = 64) -> ConvTiling {
        let budget = Swift.min(Swift.max(1 << 17, rows * minColumns), 1 << 22)
        // Small images: several whole images per item, up to `ConvTiling.imageColumns` columns
        // (a scratch of up to 2 MB), while every thread still gets a few items.
        if P < ConvTiling.imageColumns {
            let nb = Swift.min(ConvTiling.imageColumns / P, (1 << 19) / Swift.max(1, rows * P), n / (3 * T))
            if nb >= 2 { return ConvTiling(rows: ho, cols: wo, ho: ho, wo: wo, images: nb) }
        }
        if rows * wo <= budget || wo <= 64 {
            var r = Swift.max(1, Swift.min(ho, Swift.max(minColumns, budget / rows) / wo))
            let fewest = minColumns > 64 ? Swift.max(1, minColumns / wo) : 1
            r = Swift.min(r, Swift.max(fewest, ho * n / (4 * T)))
            // Even tiles: 14 + 14 + 4 rows become 11 + 11 + 10.
            let tiles = (ho + r - 1) / r
            r = (ho + tiles - 1) / tiles
            return ConvTiling(rows: r, cols: wo, ho: ho, wo: wo)
        }
        var c = Swift.min(wo, Swift.max(minColumns, budget / rows))
        c = Swift.min(c, Swift.max(minColumns, wo * ho * n / (4 * T)))
        return ConvTiling(rows: 1, cols: c, ho: ho, wo: wo)
    }

    /// Images per block: enough columns for an efficient product, col at most ~64 MB.
    var block: Int {
        var nb = Swift.max(1, Swift.min(n, (2048 + P - 1) / P))
        while nb > 1 && rows * nb * P > (16 << 20) { nb -= 1 }
        return nb
    }
}

/// Unfolds output rows oy0..<oy1, columns ox0..<ox1 of image `n`: dst[(ci kh kw), (oy ox)] with
/// row stride `ld`. Serial; callers parallelise over images or tiles.
@inline(__always)
func unfoldTile(_ x: UnsafePointer<Float>, _ g: ConvGeometry, n: Int, oy0: Int, oy1: Int, ox0: Int = 0, ox1 w1: Int? = nil,
                dst: UnsafeMutablePointer<Float>, ld: Int) {
    let ox1 = w1 ?? g.wo, width = ox1 - ox0
    let (sh, sw) = g.p.stride, (ph, pw) = g.p.padding, (dh, dw) = g.p.dilation
    for row in 0..<g.rows {
        let j = row % g.kw, i = (row / g.kw) % g.kh, ci = row / (g.kw * g.kh)
        // Valid output columns: 0 <= ox*sw - pw + j*dw < W, within ox0..<ox1.
        let off = j * dw - pw
        let lo = Swift.max(ox0, Swift.min(ox1, off >= 0 ? 0 : (-off + sw - 1) / sw))
        let hi = Swift.max(lo, Swift.min(ox1, g.w - off <= 0 ? 0 : (g.w - off - 1) / sw + 1))
        let plane = x + (n * g.cin + ci) * g.h * g.w
        var d = dst + row * ld
        for oy in oy0..<oy1 {
            let iy = oy * sh - ph + i * dh
            if iy < 0 || iy >= g.h || lo >= hi {
                d.initialize(repeating: 0, count: width)
            } else {
                let src = plane + iy * g.w + off
                if lo > ox0 { d.initialize(repeating: 0, count: lo - ox0) }
                if sw == 1 {
                    (d + lo - ox0).update(from: src + lo, count: hi - lo)
                } else {
                    for ox in lo..<hi { d[ox - ox0] = src[ox * sw] }
                }
                if hi < ox1 { (d + hi - ox0).initialize(repeating: 0, count: ox1 - hi) }
            }
            d += width
        }
    }
}

/// One work item's columns: the tile of each of images n0..<n0+nb unfolded side by side
/// (`dst` columns b·cols…, row stride `ld`); a pointwise convolution's input rows are copied.
@inline(__always)
func unfoldItem(_ x: UnsafePointer<Float>, _ g: ConvGeometry, n0: Int, nb: Int, oy0: Int, oy1: Int, ox0: Int, ox1: Int,
                dst: UnsafeMutablePointer<Float>, ld: Int) {
    let cols = (oy1 - oy0 - 1) * g.wo + ox1 - ox0
    for b in 0..<nb {
        if g.pointwise {
            let first = oy0 * g.wo + ox0
            for ci in 0..<g.cin {
                (dst + ci * ld + b * cols).update(from: x + ((n0 + b) * g.cin + ci) * g.P + first, count: cols)
            }
        } else {
            unfoldTile(x, g, n: n0 + b, oy0: oy0, oy1: oy1, ox0: ox0, ox1: ox1, dst: dst + b * cols, ld: ld)
        }
    }
}

/// col[(ci kh kw), (b P)] for images n0..<n0+nb, parallel over images and row ranges.
func im2col(_ x: UnsafePointer<Float>, _ g: ConvGeometry, n0: Int, nb: Int, col: UnsafeMutablePointer<Float>) {
    let px = SendablePointer(UnsafeMutablePointer(mutating: x)), pc = SendablePointer(col)
    let parts = Swift.max(1, Swift.min(g.ho, (Threads.count + nb - 1) / nb))
    Parallel.forEach(nb * parts) { item in
        let b = item / parts, part = item % parts
        let oy0 = g.ho * part / parts, oy1 = g.ho * (part + 1) / parts
        unfoldTile(px.p, g, n: n0 + b, oy0: oy0, oy1: oy1, dst: pc.p + b * g.P + oy0 * g.wo, ld: nb * g.P)
    }
}

/// dx[n, ci] += fold of the kh·kw rows of channel ci in dcol (columns `base`..<`base`+P, row stride `ld`).
@inline(__always)
func foldChannel(_ dcol: UnsafePointer<Float>, _ g: ConvGeometry, ci: Int, n: Int, base: Int, ld: Int,
                 dx: UnsafeMutablePointer<Float>) {
    let (sh, sw) = g.p.stride, (ph, pw) = g.p.padding, (dh, dw) = g.p.dilation
    let plane = dx + (n * g.cin + ci) * g.h * g.w
    for i in 0..<g.kh {
        for j in 0..<g.kw {
            let row = (ci * g.kh + i) * g.kw + j
            let off = j * dw - pw
            let lo = off >= 0 ? 0 : (-off + sw - 1) / sw
            let hi = Swift.min(g.wo, g.w - off <= 0 ? 0 : (g.w - off - 1) / sw + 1)
            if lo >= hi { continue }
            var src = dcol + row * ld + base
            for oy in 0..<g.ho {
                let iy = oy * sh - ph + i * dh
                if iy >= 0 && iy < g.h {
                    let dst = plane + iy * g.w + off
                    if sw == 1 {
                        for ox in lo..<hi { dst[ox] += src[ox] }
                    } else {
                        for ox in lo..<hi { dst[ox * sw] += src[ox] }
                    }
                }
                src += g.wo
            }
        }
    }
}

/// dx[images n0..<n0+nb] += fold(dcol). Input channels in parallel (each owns its planes).
func col2im(_ dcol: UnsafePointer<Float>, _ g: ConvGeometry, n0: Int, nb: Int, dx: UnsafeMutablePointer<Float>) {
    let pc = SendablePointer(UnsafeMutablePointer(mutating: dcol)), pd = SendablePointer(dx)
    Parallel.forEach(g.cin) { ci in
        for b in 0..<nb { foldChannel(pc.p, g, ci: ci, n: n0 + b, base: b * g.P, ld: nb * g.P, dx: pd.p) }
    }
}

func conv2dForward(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, _ p: Conv2dParams) -> Tensor {
    let g = ConvGeometry(x: x.shape, weight: weight.shape, p)
    if let bias { precondition(bias.shape == [g.cout], "conv2d: bias \(bias.shape) for \(g.cout) output channels") }
    let out = Tensor(uninitialized: [g.n, g.cout, g.ho, g.wo])
    let P = g.P
    FlopCounter.add(2 * Double(g.n) * Double(g.cout) * Double(P) * Double(g.kG))
    if g.winograd {
        conv2dWinograd(x, weight, bias, g, into: out)
        return out
    }
    // Work items are tiles of output rows of one image: each worker unfolds its tile into its
    // own scratch (sized to stay in cache) and multiplies straight into the output. Wide
    // convolutions (Stable Diffusion's 1280-channel 3×3: 14.7 M weights) take long tiles, as
    // every tile's product repacks W; when that leaves threads without a tile (small images),
    // the output channels are split between them.
    let T = Threads.count
    let tiling = g.tiling(threads: T, minColumns: g.coutG * g.kG >= 1 << 18 ? 512 : 64)
    let tiles = tiling.count(g.n)
    let splits = tiles >= T ? 1 : Swift.min((T + tiles - 1) / tiles, Swift.max(1, g.coutG / 64))
    let items = tiles * splits
    let workers = Parallel.chunkCount(items)
    // Items of several images unfold side by side and multiply into a scratch output, which is
    // then copied to each image with the bias added.
    let multi = tiling.images > 1
    let scratchSize = g.pointwise && !multi ? 0 : g.rows * tiling.size
    let outSize = multi ? g.cout * tiling.size : 0
    let scratch = scratchSize + outSize > 0 ? Tensor(uninitialized: [workers, scratchSize + outSize]) : nil
    let px = SendablePointer(x.data), pw = SendablePointer(weight.data), po = SendablePointer(out.data)
    let ps = scratch.map { SendablePointer($0.data) }
    let pb = bias.map { SendablePointer($0.data) }
    Parallel.indexedChunks(items) { t, s0, e0 in
        for item in s0..<e0 {
            let tile = item / splits, split = item % splits
            let (n0, nb, oy0, oy1, ox0, ox1) = tiling.item(tile, n: g.n)
            let first = oy0 * g.wo + ox0, cols = (oy1 - oy0 - 1) * g.wo + ox1 - ox0
            let width = nb * cols
            // Output channels co0..<co1 of each group.
            let co0 = g.coutG * split / splits, co1 = g.coutG * (split + 1) / splits
            let bPtr: UnsafeMutablePointer<Float>, ldb: Int
            if scratchSize > 0 {
                bPtr = ps!.p + t * (scratchSize + outSize)
                ldb = width
                unfoldItem(px.p, g, n0: n0, nb: nb, oy0: oy0, oy1: oy1, ox0: ox0, ox1: ox1, dst: bPtr, ld: ldb)
            } else {
                // 1×1, stride 1, no padding: output column p reads input column p.
                bPtr = px.p + n0 * g.cin * P + first
                ldb = P
            }
            let c: UnsafeMutablePointer<Float>, ldc: Int
            if multi { c = ps!.p + t * (scratchSize + outSize) + scratchSize; ldc = width }
            else { c = po.p + n0 * g.cout * P + first; ldc = P }
            for gi in 0..<g.groups {
                let row0 = gi * g.coutG + co0
                BLAS.sgemmSerial(transA: false, transB: false, m: co1 - co0, n: width, k: g.kG,
                                 a: pw.p + row0 * g.kG, lda: g.kG,
                                 b: bPtr + gi * g.kG * ldb, ldb: ldb,
                                 beta: 0, c: c + row0 * ldc, ldc: ldc)
                for co in row0..<(row0 + co1 - co0) {
                    let v = pb?.p[co] ?? 0
                    if multi {
                        for b in 0..<nb {
                            let src = c + co * ldc + b * cols, dst = po.p + ((n0 + b) * g.cout + co) * P
                            for k in 0..<cols { dst[k] = src[k] + v }
                        }
                    } else if pb != nil {
                        let row = c + co * P
                        for k in 0..<cols { row[k] += v }
                    }
                }
            }
        }
    }
    return out
}

extension ConvGeometry {
    /// `DIFFUSE_WINOGRAD=0` turns the Winograd path off (to compare).
    static let winogradEnabled = ProcessInfo.processInfo.environment["DIFFUSE_WINOGRAD"] != "0"
    /// `DIFFUSE_WINOGRAD_DW=0` keeps the weight gradients of Winograd convolutions on im2col (to compare).
    static let winogradWeightGradEnabled = ProcessInfo.processInfo.environment["DIFFUSE_WINOGRAD_DW"] != "0"

    /// 3×3, stride 1, no dilation, one group, equal padding ≤ 2, enough channels for the 16
    /// products to pay for the transforms, and enough 2×2 tiles (≥ 512) for those products to
    /// be wide: runs as Winograd F(2×2, 3×3), 2.25× fewer products. (A batch of one small image
    /// stays on im2col: 16 tiles of an 8×8 image make products too thin to be fast; so do wide
    /// convolutions — Stable Diffusion's 1280 channels — whose 16 transformed weight matrices
    /// would be repacked for every run of a few tiles: they keep im2col's long tiles.)
    var winograd: Bool {
        ConvGeometry.winogradEnabled && kh == 3 && kw == 3 && p.stride == (1, 1) && p.dilation == (1, 1) &&
            groups == 1 && p.padding.0 == p.padding.1 && p.padding.0 <= 2 && cin >= 16 && cout >= 16 &&
            ho >= 2 && wo >= 2 && w <= 4096 && n * ((ho + 1) / 2) * ((wo + 1) / 2) >= 512 &&
            cin * cout <= 1 << 16
    }
}

/// Floats of transformed input and products (V and M) one Winograd work item holds: 1 MB, so that
/// both stay in a core's L2 beside the product's packed panels (`DIFFUSE_WINOGRAD_ITEM` overrides,
/// for tuning). On an Intel Xeon model 207 (2 MB L2), `DIFFUSE_PROFILE=1 bench model --batch 64`
/// of the Fashion-MNIST U-Net, per shape, against 2 MB items: 32→32 at 32×32 127 → 167–173
/// GFLOP/s, 64→64 at 16×16 151 → 206–212, 128→128 at 8×8 185 → 212 (2 runs each).
let winogradItemFloats = Int(ProcessInfo.processInfo.environment["DIFFUSE_WINOGRAD_ITEM"] ?? "") ?? (1 << 18)

/// How a Winograd convolution splits into work: tile rows (2 output rows of one image each), th
/// per image and tw tiles a row, in items of `rowsPer` consecutive tile rows. A worker's scratch
/// holds the item's transformed input [16, Cin, ld] and the other side's [16, C', ld] (C' = Cout:
/// products or transformed output gradients); each element's block is padded by 16 floats so that
/// the 16 blocks do not all start on the same cache sets (their strides are often powers of two).
struct WinogradPlan {
    let th, tw, rowsTotal, rowsPer, items, ld: Int
    /// Floats between elements e and e + 1 of the input side and of the other side.
    let vStride, mStride: Int
    /// Floats of one worker's scratch, and where its transform scratch starts.
    let scratch, transformOffset: Int

    init(_ g: ConvGeometry) {
        th = (g.ho + 1) / 2
        tw = (g.wo + 1) / 2
        rowsTotal = g.n * th
        var r = Swift.max(1, winogradItemFloats / (16 * (g.cin + g.cout) * tw))
        r = Swift.min(r, Swift.max(1, rowsTotal / (3 * Threads.count)))
        rowsPer = r
        items = (rowsTotal + r - 1) / r
        ld = r * tw
        vStride = g.cin * ld + 16
        mStride = g.cout * ld + 16
        transformOffset = 16 * (vStride + mStride)
        scratch = transformOffset + 10 * (tw + 1)  // ck_winograd_{input,grad,output}_rows
    }

    /// Tile rows r0..<r1 of item `item`, as runs within one image: (image, first tile row in it,
    /// rows, column of the run's first tile in the item's blocks).
    func forEachRun(_ item: Int, _ body: (_ n: Int, _ ty: Int, _ run: Int, _ col: Int) -> Void) {
        let r0 = item * rowsPer, r1 = Swift.min(rowsTotal, r0 + rowsPer)
        var r = r0
        while r < r1 {
            let run = Swift.min(r1 - r, th - r % th)
            body(r / th, r % th, run, (r - r0) * tw)
            r += run
        }
    }

    func columns(_ item: Int) -> Int { (Swift.min(rowsTotal, (item + 1) * rowsPer) - item * rowsPer) * tw }

    /// The input side of a run (every channel's tile rows) into v [16, Cin, ld] at column `col`.
    func transformInput(_ x: UnsafePointer<Float>, _ g: ConvGeometry, n: Int, ty: Int, run: Int, col: Int,
                        into v: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let plane = g.h * g.w
        for ci in 0..<g.cin {
            ck_winograd_input_rows(x + (n * g.cin + ci) * plane, Int32(g.h), Int32(g.w), Int32(g.p.padding.0),
                                   Int32(ty), Int32(run), Int32(tw), v + ci * ld + col, vStride, scratch)
        }
    }
}

/// Winograd F(2×2, 3×3) (transforms in CKernels/winograd.c): a worker transforms its item's
/// input into V [16, Cin, cols], multiplies M_e = U_e V_e for the 16 elements e (U [16, Cout,
/// Cin], the transformed weights), and transforms M back into the output rows, bias added.
private func conv2dWinograd(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, _ g: ConvGeometry, into out: Tensor) {
    let plan = WinogradPlan(g)
    let u = Tensor(uninitialized: [16, g.cout, g.cin])
    ck_winograd_weights(weight.data, Int32(g.cout), Int32(g.cin), u.data)
    let ld = plan.ld, vs = plan.vStride, ms = plan.mStride
    let scratch = Tensor(uninitialized: [Parallel.chunkCount(plan.items), plan.scratch])
    let px = SendablePointer(x.data), pu = SendablePointer(u.data), po = SendablePointer(out.data)
    let ps = SendablePointer(scratch.data)
    let pb = bias.map { SendablePointer($0.data) }
    let outPlane = g.ho * g.wo
    Parallel.indexedChunks(plan.items) { t, s0, e0 in
        let v = ps.p + t * plan.scratch, m = v + 16 * vs, sc = v + plan.transformOffset
        for item in s0..<e0 {
            plan.forEachRun(item) { n, ty, run, col in
                plan.transformInput(px.p, g, n: n, ty: ty, run: run, col: col, into: v, scratch: sc)
            }
            let cols = plan.columns(item)
            for e in 0..<16 {
                BLAS.sgemmSerial(transA: false, transB: false, m: g.cout, n: cols, k: g.cin,
                                 a: pu.p + e * g.cout * g.cin, lda: g.cin,
                                 b: v + e * vs, ldb: ld,
                                 beta: 0, c: m + e * ms, ldc: ld)
            }
            plan.forEachRun(item) { n, ty, run, col in
                for co in 0..<g.cout {
                    ck_winograd_output_rows(m + co * ld + col, ms, Int32(plan.tw), Int32(ty), Int32(run),
                                            po.p + (n * g.cout + co) * outPlane, Int32(g.ho), Int32(g.wo),
                                            pb?.p[co] ?? 0, sc)
                }
            }
        }
    }
}

/// The weight gradient of a convolution that runs forward as Winograd F(2×2, 3×3), by Winograd
/// F(3×3, 2×2) (CKernels/winograd.c): work items as in the forward pass; a worker transforms its
/// item's input (V [16, Cin, cols], the forward's transform) and output gradient (Y [16, Cout,
/// cols]) and adds M_e += Y_e V_eᵀ into its own partial M [16, Cout, Cin]; the partials are added
/// in worker order (deterministic for a thread count) and transformed into dW. 2.25× fewer
/// products than im2col's, and no unfold.
private func conv2dWeightGradWinograd(_ x: Tensor, _ g: ConvGeometry, gy: Tensor, into dw: Tensor) {
    let plan = WinogradPlan(g)
    let ld = plan.ld, ys = plan.mStride
    let mSize = 16 * g.cout * g.cin
    let workers = Parallel.chunkCount(plan.items)
    let scratch = Tensor(uninitialized: [workers, plan.scratch])
    let partial = Tensor.zeros([workers, mSize])
    let px = SendablePointer(x.data), pg = SendablePointer(gy.data)
    let ps = SendablePointer(scratch.data), pm = SendablePointer(partial.data)
    let outPlane = g.ho * g.wo
    Parallel.indexedChunks(plan.items) { t, s0, e0 in
        let v = ps.p + t * plan.scratch, y = v + 16 * plan.vStride, sc = v + plan.transformOffset
        for item in s0..<e0 {
            plan.forEachRun(item) { n, ty, run, col in
                plan.transformInput(px.p, g, n: n, ty: ty, run: run, col: col, into: v, scratch: sc)
                for co in 0..<g.cout {
                    ck_winograd_grad_rows(pg.p + (n * g.cout + co) * outPlane, Int32(g.ho), Int32(g.wo),
                                          Int32(ty), Int32(run), Int32(plan.tw), y + co * ld + col, ys, sc)
                }
            }
            let cols = plan.columns(item)
            for e in 0..<16 {
                BLAS.sgemmSerial(transA: false, transB: true, m: g.cout, n: g.cin, k: cols,
                                 a: y + e * ys, lda: ld, b: v + e * plan.vStride, ldb: ld,
                                 beta: 1, c: pm.p + t * mSize + e * g.cout * g.cin, ldc: g.cin)
            }
        }
    }
    let m = workers > 1 ? sumForward(partial, axes: [0]) : partial
    ck_winograd_weights_grad(m.data, Int32(g.cout), Int32(g.cin), dw.data)
}

/// dW = Σ over images and tiles of g_tile [Cout/G, cols] × col_tileᵀ, the tiles unfolded in
/// cache as in the forward pass; each worker sums into its own partial dW, and the partials are
/// added in worker order (deterministic for a thread count).
private func conv2dWeightGrad(_ x: Tensor, _ g: ConvGeometry, gy: Tensor, into dw: Tensor) {
    let P = g.P
    let tiling = g.tiling(threads: Threads.count)
    let items = tiling.count(g.n)
    let T = Parallel.chunkCount(items)
    // Items of several small images gather their output gradients side by side too.
    let multi = tiling.images > 1
    let scratchSize = g.pointwise && !multi ? 0 : g.rows * tiling.size
    let gySize = multi ? g.cout * tiling.size : 0
    let scratch = Tensor(uninitialized: [T, Swift.max(scratchSize + gySize, 1)])
    let partial = Tensor.zeros([T, dw.count])
    let px = SendablePointer(x.data), pg = SendablePointer(gy.data)
    let ps = SendablePointer(scratch.data), pp = SendablePointer(partial.data)
    let wsize = dw.count
    Parallel.indexedChunks(items) { t, s0, e0 in
        for item in s0..<e0 {
            let (n0, nb, oy0, oy1, ox0, ox1) = tiling.item(item, n: g.n)
            let first = oy0 * g.wo + ox0, cols = (oy1 - oy0 - 1) * g.wo + ox1 - ox0
            let width = nb * cols
            let bPtr: UnsafeMutablePointer<Float>, ldb: Int
            if scratchSize == 0 {
                bPtr = px.p + n0 * g.cin * P + first
                ldb = P
            } else {
                bPtr = ps.p + t * (scratchSize + gySize)
                ldb = width
                unfoldItem(px.p, g, n0: n0, nb: nb, oy0: oy0, oy1: oy1, ox0: ox0, ox1: ox1, dst: bPtr, ld: ldb)
            }
            let gTile: UnsafeMutablePointer<Float>, lda: Int
            if multi {
                gTile = ps.p + t * (scratchSize + gySize) + scratchSize
                lda = width
                for co in 0..<g.cout {
                    for b in 0..<nb {
                        (gTile + co * lda + b * cols).update(from: pg.p + ((n0 + b) * g.cout + co) * P, count: P)
                    }
                }
            } else {
                gTile = pg.p + n0 * g.cout * P + first
                lda = P
            }
            for gi in 0..<g.groups {
                BLAS.sgemmSerial(transA: false, transB: true, m: g.coutG, n: g.kG, k: width,
                                 a: gTile + gi * g.coutG * lda, lda: lda, b: bPtr + gi * g.kG * ldb, ldb: ldb,
                                 beta: 1, c: pp.p + t * wsize + gi * g.coutG * g.kG, ldc: g.kG)
            }
        }
    }
    dw.copyFrom(sumForward(partial, axes: [0]))
}

/// For stride 1 and no dilation, dx is a plain convolution of the output gradient with the
/// kernel flipped in space and transposed in channels, padded by k − 1 − p: it then runs on
/// the fast forward path instead of unfold-and-scatter.
///     W'[ci, co_g, i, j] = W[g·Cout/G + co_g, ci mod Cin/G, kh−1−i, kw−1−j],  ci in group g
private func conv2dInputGradByFlippedKernel(_ weight: Tensor, _ g: ConvGeometry, gy: Tensor) -> Tensor {
    let flipped = Tensor(uninitialized: [g.cin, g.coutG, g.kh, g.kw])
    let w = weight.data, f = flipped.data
    for ci in 0..<g.cin {
        let gi = ci / g.cinG, cl = ci % g.cinG
        for co in 0..<g.coutG {
            for i in 0..<g.kh {
                for j in 0..<g.kw {
                    f[((ci * g.coutG + co) * g.kh + i) * g.kw + j] =
                        w[(((gi * g.coutG + co) * g.cinG + cl) * g.kh + (g.kh - 1 - i)) * g.kw + (g.kw - 1 - j)]
                }
            }
        }
    }
    let p = Conv2dParams(stride: (1, 1), padding: (g.kh - 1 - g.p.padding.0, g.kw - 1 - g.p.padding.1), groups: g.groups)
    return conv2dForward(gy, flipped, nil, p)
}

/// Gradients of conv2d for the inputs that need them: (dx, dweight, dbias).
func conv2dBackward(_ x: Tensor, _ weight: Tensor, hasBias: Bool, _ p: Conv2dParams, g gy: Tensor,
                    needX: Bool, needW: Bool) -> (Tensor?, Tensor?, Tensor?) {
    conv2dBackward(xShape: x.shape, x: needW ? x : nil, weight, hasBias: hasBias, p, g: gy, needX: needX, needW: needW)
}

/// The same, reading the input `x` only for the weight gradient: dx alone needs just its shape
/// (dx is the transposed convolution of gy, which is how `convTranspose2d` runs forward).
private func conv2dBackward(xShape: [Int], x: Tensor?, _ weight: Tensor, hasBias: Bool, _ p: Conv2dParams,
                            g gy: Tensor, needX: Bool, needW: Bool) -> (Tensor?, Tensor?, Tensor?) {
    precondition(!needW || x != nil, "conv2dBackward: the weight gradient needs the input")
    let g = ConvGeometry(x: xShape, weight: weight.shape, p)
    let P = g.P
    let flippable = g.p.stride == (1, 1) && g.p.dilation == (1, 1) &&
        g.p.padding.0 <= g.kh - 1 && g.p.padding.1 <= g.kw - 1
    let dw = needW ? Tensor.zeros(weight.shape) : nil
    if flippable && (needX || needW) {
        let db = hasBias ? sumForward(gy, axes: [0, 2, 3]).reshapedRaw([g.cout]) : nil
        if let dw {
            if g.winograd && ConvGeometry.winogradWeightGradEnabled {
                conv2dWeightGradWinograd(x!, g, gy: gy, into: dw)
            } else {
                conv2dWeightGrad(x!, g, gy: gy, into: dw)
            }
        }
        let dx = needX ? conv2dInputGradByFlippedKernel(weight, g, gy: gy) : nil
        return (dx, dw, db)
    }
    let dx = needX ? Tensor.zeros(xShape) : nil
    let db = hasBias ? sumForward(gy, axes: [0, 2, 3]).reshapedRaw([g.cout]) : nil
    if !needX && !needW { return (dx, dw, db) }

    let direct = g.pointwise && P >= 1024
    let nb = direct ? 1 : g.block
    let col = direct ? nil : Tensor(uninitialized: [g.rows, nb * P])
    let gT = nb > 1 ? Tensor(uninitialized: [g.cout, nb * P]) : nil
    var n0 = 0
    while n0 < g.n {
        let b = Swift.min(nb, g.n - n0)
        // gy [b, Cout, P] -> [Cout, (b P)]
        let gPtr: UnsafePointer<Float>
        let gLd = gT != nil ? b * P : P
        if let gT {
            let ps = SendablePointer(gy.data), pd = SendablePointer(gT.data)
            Parallel.forEach(b * g.cout, grain: 4) { idx in
                let bi = idx / g.cout, co = idx % g.cout
                (pd.p + co * gLd + bi * P).update(from: ps.p + ((n0 + bi) * g.cout + co) * P, count: P)
            }
            gPtr = UnsafePointer(gT.data)
        } else {
            gPtr = UnsafePointer(gy.data + n0 * g.cout * P)
        }
        let colLd = col != nil ? b * P : P
        if let dw {
            let colPtr: UnsafePointer<Float>
            if let col { im2col(x!.data, g, n0: n0, nb: b, col: col.data); colPtr = UnsafePointer(col.data) }
            else { colPtr = UnsafePointer(x!.data + n0 * g.cin * P) }
            for gi in 0..<g.groups {
                // dW_g [Cout/G, K_g] += g_g [Cout/G, (b P)] x col_g^T
                BLAS.sgemm(transA: false, transB: true, m: g.coutG, n: g.kG, k: b * P,
                           a: gPtr + gi * g.coutG * gLd, lda: gLd,
                           b: colPtr + gi * g.kG * colLd, ldb: colLd,
                           beta: 1, c: dw.data + gi * g.coutG * g.kG, ldc: g.kG)
            }
        }
        if let dx {
            if let col {
                for gi in 0..<g.groups {
                    // dcol_g [K_g, (b P)] = W_g^T x g_g
                    BLAS.sgemm(transA: true, transB: false, m: g.kG, n: b * P, k: g.coutG,
                               a: weight.data + gi * g.coutG * g.kG, lda: g.kG,
                               b: gPtr + gi * g.coutG * gLd, ldb: gLd,
                               beta: 0, c: col.data + gi * g.kG * colLd, ldc: colLd)
                }
                col2im(col.data, g, n0: n0, nb: b, dx: dx.data)
            } else {
                for gi in 0..<g.groups {
                    BLAS.sgemm(transA: true, transB: false, m: g.kG, n: P, k: g.coutG,
                               a: weight.data + gi * g.coutG * g.kG, lda: g.kG,
                               b: gPtr + gi * g.coutG * gLd, ldb: gLd,
                               beta: 0, c: dx.data + n0 * g.cin * P + gi * g.kG * P, ldc: P)
                }
            }
        }
        n0 += b
    }
    return (dx, dw, db)
}

// MARK: Transposed convolution
//
// PyTorch's conv_transpose2d is the input gradient of a convolution:
//     x [N, Cin, H, W], weight [Cin, Cout/G, kh, kw] -> y [N, Cout, Ho, Wo]
//     Ho = (H − 1)·s − 2p + d·(kh − 1) + 1 + output_padding
// y is conv2d's dx for "output gradient" x, so the forward runs conv2d's input-gradient kernels,
// and the backward is the forward convolution: dx = conv2d(gy, weight); dweight is conv2d's
// weight gradient with the roles swapped (convolution input gy, its output gradient x).

/// Output shape of a transposed convolution.
func convTranspose2dShape(_ x: [Int], _ weight: [Int], _ p: Conv2dParams, outputPadding op: (Int, Int)) -> [Int] {
    precondition(x.count == 4 && weight.count == 4, "convTranspose2d: x \(x) and weight \(weight) must be rank 4")
    precondition(p.groups >= 1 && x[1] == weight[0] && x[1] % p.groups == 0,
                 "convTranspose2d: weight \(weight) expects \(weight[0]) input channels in \(p.groups) groups, x is \(x)")
    precondition(op.0 >= 0 && op.1 >= 0 && op.0 < p.stride.0 && op.1 < p.stride.1,
                 "convTranspose2d: output padding \(op) must be smaller than the stride \(p.stride)")
    let ho = (x[2] - 1) * p.stride.0 - 2 * p.padding.0 + p.dilation.0 * (weight[2] - 1) + 1 + op.0
    let wo = (x[3] - 1) * p.stride.1 - 2 * p.padding.1 + p.dilation.1 * (weight[3] - 1) + 1 + op.1
    precondition(ho > 0 && wo > 0, "convTranspose2d: padding \(p.padding) leaves no output for x \(x), weight \(weight)")
    return [x[0], weight[1] * p.groups, ho, wo]
}

func convTranspose2dForward(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, _ p: Conv2dParams,
                            outputPadding: (Int, Int)) -> Tensor {
    let outShape = convTranspose2dShape(x.shape, weight.shape, p, outputPadding: outputPadding)
    let cout = outShape[1]
    if let bias { precondition(bias.shape == [cout], "convTranspose2d: bias \(bias.shape) for \(cout) output channels") }
    // The stride-1 path of the input gradient runs a forward convolution, which counts its own
    // FLOPs; count this op's exactly once.
    let flops = FlopCounter.forwardFlops + 2 * Double(x.count) * Double(cout / p.groups) * Double(weight.shape[2] * weight.shape[3])
    let (y, _, _) = conv2dBackward(xShape: outShape, x: nil, weight, hasBias: false, p, g: x, needX: true, needW: false)
    FlopCounter.forwardFlops = flops
    let out = y!
    if let bias {
        let plane = outShape[2] * outShape[3]
        let po = SendablePointer(out.data), pb = SendablePointer(bias.data)
        Parallel.forEach(outShape[0] * cout, grain: 4) { i in
            let v = pb.p[i % cout], row = po.p + i * plane
            for k in 0..<plane { row[k] += v }
        }
    }
    return out
}

/// Gradients of convTranspose2d for the inputs that need them: (dx, dweight, dbias).
func convTranspose2dBackward(_ x: Tensor, _ weight: Tensor, hasBias: Bool, _ p: Conv2dParams, g gy: Tensor,
                             needX: Bool, needW: Bool) -> (Tensor?, Tensor?, Tensor?) {
    // The convolution whose input gradient this op is: input gy [N, Cout, Ho, Wo], output x.
    let conv = ConvGeometry(x: gy.shape, weight: weight.shape, p)
    precondition(conv.ho == x.shape[2] && conv.wo == x.shape[3], "convTranspose2d backward: \(gy.shape) does not map back to \(x.shape)")
    let dx = needX ? conv2dForward(gy, weight, nil, p) : nil
    var dw: Tensor? = nil
    if needW {
        dw = Tensor.zeros(weight.shape)
        conv2dWeightGrad(gy, conv, gy: x, into: dw!)
    }
    let db = hasBias ? sumForward(gy, axes: [0, 2, 3]).reshapedRaw([gy.shape[1]]) : nil
    return (dx, dw, db)
}

/// Direct loops of a transposed convolution: the reference the fast path is tested against.
func convTranspose2dReference(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, _ p: Conv2dParams,
                              outputPadding: (Int, Int)) -> Tensor {
    let s = convTranspose2dShape(x.shape, weight.shape, p, outputPadding: outputPadding)
    let out = Tensor.zeros(s)
    let n = x.shape[0], cin = x.shape[1], h = x.shape[2], w = x.shape[3]
    let coutG = weight.shape[1], kh = weight.shape[2], kw = weight.shape[3], cinG = cin / p.groups
    for b in 0..<n {
        for ci in 0..<cin {
            let gi = ci / cinG
            for iy in 0..<h {
                for ix in 0..<w {
                    let v = x.data[((b * cin + ci) * h + iy) * w + ix]
                    for co in 0..<coutG {
                        for i in 0..<kh {
                            for j in 0..<kw {
                                let oy = iy * p.stride.0 - p.padding.0 + i * p.dilation.0
                                let ox = ix * p.stride.1 - p.padding.1 + j * p.dilation.1
                                guard oy >= 0 && oy < s[2] && ox >= 0 && ox < s[3] else { continue }
                                let c = gi * coutG + co
                                out.data[((b * s[1] + c) * s[2] + oy) * s[3] + ox] +=
                                    v * weight.data[((ci * coutG + co) * kh + i) * kw + j]
                            }
                        }
                    }
                }
            }
        }
    }
    if let bias {
        for b in 0..<n { for c in 0..<s[1] { for k in 0..<(s[2] * s[3]) { out.data[(b * s[1] + c) * s[2] * s[3] + k] += bias.data[c] } } }
    }
    return out
}

// MARK: Public API

extension Tensor {
    /// 2D convolution (cross-correlation, as PyTorch): self [N, Cin, H, W], weight
    /// [Cout, Cin/groups, kh, kw], bias [Cout] -> [N, Cout, Ho, Wo].
    public func conv2d(_ weight: Tensor, bias: Tensor? = nil, stride: (Int, Int), padding: (Int, Int),
                       dilation: (Int, Int) = (1, 1), groups: Int = 1) -> Tensor {
        let p = Conv2dParams(stride: stride, padding: padding, dilation: dilation, groups: groups)
        let inputs = bias.map { [self, weight, $0] } ?? [self, weight]
        let y = OpProfile.timed("  conv2d \(shape[1])->\(weight.shape[0]) k\(weight.shape[2]) s\(p.stride.0) \(shape[2])x\(shape[3])",
                                flops: 2 * Double(shape[0] * weight.count) * Double(shape[2] * shape[3]) / Double(p.stride.0 * p.stride.1)) {
            conv2dForward(self, weight, bias, p)
        }
        return y.recorded(.conv2d(p), inputs)
    }

    public func conv2d(_ weight: Tensor, bias: Tensor? = nil, stride: Int = 1, padding: Int = 0,
                       dilation: Int = 1, groups: Int = 1) -> Tensor {
        conv2d(weight, bias: bias, stride: (stride, stride), padding: (padding, padding),
               dilation: (dilation, dilation), groups: groups)
    }

    /// 1D convolution: self [N, Cin, L], weight [Cout, Cin/groups, k], bias [Cout] -> [N, Cout, Lo].
    public func conv1d(_ weight: Tensor, bias: Tensor? = nil, stride: Int = 1, padding: Int = 0,
                       dilation: Int = 1, groups: Int = 1) -> Tensor {
        precondition(rank == 3 && weight.rank == 3, "conv1d: x \(shape) and weight \(weight.shape) must be rank 3")
        let x4 = reshaped([shape[0], shape[1], 1, shape[2]])
        let w4 = weight.reshaped([weight.shape[0], weight.shape[1], 1, weight.shape[2]])
        let y = x4.conv2d(w4, bias: bias, stride: (1, stride), padding: (0, padding), dilation: (1, dilation), groups: groups)
        return y.reshaped([y.shape[0], y.shape[1], y.shape[3]])
    }

    /// Transposed 2D convolution (PyTorch's conv_transpose2d): self [N, Cin, H, W], weight
    /// [Cin, Cout/groups, kh, kw], bias [Cout] -> [N, Cout, (H−1)s − 2p + d(kh−1) + 1 + output_padding, ...].
    public func convTranspose2d(_ weight: Tensor, bias: Tensor? = nil, stride: (Int, Int), padding: (Int, Int),
                                outputPadding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1), groups: Int = 1) -> Tensor {
        let p = Conv2dParams(stride: stride, padding: padding, dilation: dilation, groups: groups)
        let inputs = bias.map { [self, weight, $0] } ?? [self, weight]
        return convTranspose2dForward(self, weight, bias, p, outputPadding: outputPadding)
            .recorded(.convTranspose2d(p), inputs)
    }

    /// Transposed 1D convolution (PyTorch's conv_transpose1d): self [N, Cin, L], weight
    /// [Cin, Cout/groups, k], bias [Cout] -> [N, Cout, (L−1)·stride − 2·padding + dilation·(k−1) + 1 + outputPadding].
    public func convTranspose1d(_ weight: Tensor, bias: Tensor? = nil, stride: Int = 1, padding: Int = 0,
                                outputPadding: Int = 0, dilation: Int = 1, groups: Int = 1) -> Tensor {
        precondition(rank == 3 && weight.rank == 3, "convTranspose1d: x \(shape) and weight \(weight.shape) must be rank 3")
        let x4 = reshaped([shape[0], shape[1], 1, shape[2]])
        let w4 = weight.reshaped([weight.shape[0], weight.shape[1], 1, weight.shape[2]])
        let y = x4.convTranspose2d(w4, bias: bias, stride: (1, stride), padding: (0, padding),
                                   outputPadding: (0, outputPadding), dilation: (1, dilation), groups: groups)
        return y.reshaped([y.shape[0], y.shape[1], y.shape[3]])
    }
}
