import Tensor

/// How the time embedding enters a ResNet block (diffusers' `time_embedding_norm`).
public enum TimeEmbeddingNorm: String, Codable, Sendable {
    /// h = norm2(h + proj(temb))
    case `default`
    /// scale, shift = proj(temb); h = norm2(h) · (1 + scale) + shift
    case scaleShift = "scale_shift"
}

/// diffusers' `ResnetBlock2D`, and its 1D twin with the same names (dims = 1).
///
///     h = conv1(up/down(act(norm1(x))))              x: [N, Cin, *S]
///     h = h + proj(act(temb))  or  norm2 scale-shift  temb: [N, T]
///     h = conv2(dropout(act(norm2(h))))
///     out = (shortcut(up/down(x)) + h) / output_scale_factor
public final class ResnetBlock: Module {
    public let dims: Int
    public let norm1: GroupNorm, norm2: GroupNorm
    public let conv1: any ConvolutionLayer, conv2: any ConvolutionLayer
    public let timeEmbProj: Linear?
    public let convShortcut: (any ConvolutionLayer)?
    public let dropout: Dropout
    public let act: Activation
    public let timeEmbeddingNorm: TimeEmbeddingNorm
    public let outputScaleFactor: Float
    public let skipTimeAct: Bool
    public let up: Bool, down: Bool

    public init(dims: Int = 2, inChannels: Int, outChannels: Int? = nil, tembChannels: Int? = 512,
                groups: Int = 32, groupsOut: Int? = nil, eps: Float = 1e-6, dropout: Float = 0,
                act: Activation = .silu, timeEmbeddingNorm: TimeEmbeddingNorm = .default,
                outputScaleFactor: Float = 1, useInShortcut: Bool? = nil, convShortcut: Bool = false,
                up: Bool = false, down: Bool = false, skipTimeAct: Bool = false, convShortcutBias: Bool = true) {
        let out = outChannels ?? inChannels
        self.dims = dims
        norm1 = GroupNorm(groups: groups, channels: inChannels, eps: eps)
        conv1 = makeConv(dims: dims, inChannels, out, kernelSize: 3, padding: 1)
        timeEmbProj = tembChannels.map { Linear($0, timeEmbeddingNorm == .scaleShift ? 2 * out : out) }
        norm2 = GroupNorm(groups: groupsOut ?? groups, channels: out, eps: eps)
        self.dropout = Dropout(dropout)
        conv2 = makeConv(dims: dims, out, out, kernelSize: 3, padding: 1)
        self.act = act
        self.timeEmbeddingNorm = timeEmbeddingNorm
        self.outputScaleFactor = outputScaleFactor
        self.skipTimeAct = skipTimeAct
        self.up = up
        self.down = down
        if useInShortcut ?? (inChannels != out) {
            self.convShortcut = convShortcut
                ? makeConv(dims: dims, inChannels, out, kernelSize: 3, padding: 1)
                : makeConv(dims: dims, inChannels, out, kernelSize: 1, bias: convShortcutBias)
        } else {
            self.convShortcut = nil
        }
    }

    public func visit(_ v: inout ModuleVisitor) {
        v("norm1", norm1)
        v("conv1", conv1)
        v("time_emb_proj", timeEmbProj)
        v("norm2", norm2)
        v("dropout", dropout)
        v("conv2", conv2)
        v("conv_shortcut", convShortcut)
    }

    private func resample(_ x: Tensor) -> Tensor {
        if up { return x.upsampleNearest(scale: 2) }
        if down { return x.avgPool(kernel: [Int](repeating: 2, count: dims)) }
        return x
    }

    /// x: [N, Cin, *S], temb: [N, T] -> [N, Cout, *S'] (S' = 2S up, S/2 down).
    public func callAsFunction(_ x: Tensor, temb: Tensor?) -> Tensor {
        var h = norm1(x, then: act)
        let input = resample(x)
        h = conv1(resample(h))
        // temb [N, T] -> [N, C', 1, ...] to broadcast over the spatial dims
        let t = temb.flatMap { temb in
            timeEmbProj.map { proj in
                let e = proj(skipTimeAct ? temb : act(temb))
                return e.reshaped(e.shape + [Int](repeating: 1, count: dims))
            }
        }
        switch timeEmbeddingNorm {
        case .default:
            if let t { h = h + t }
            h = norm2(h, then: act)
        case .scaleShift:
            h = norm2(h)
            if let t {
                let parts = t.chunked(2, axis: 1)
                h = h * (parts[0] + 1) + parts[1]
            }
            h = act(h)
        }
        h = conv2(dropout(h))
        let skip = convShortcut.map { $0(input) } ?? input
        let out = skip + h
        return outputScaleFactor == 1 ? out : out / outputScaleFactor
    }
}
