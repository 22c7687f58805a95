import Tensor

/// diffusers' `Conv1dBlock` (resnet.py): Conv1d (padding k/2) → GroupNorm → activation (Mish
/// by default). x [N, Cin, L] -> [N, Cout, L].
public final class Conv1dBlock: Module {
    public let conv1d: Conv1d
    public let groupNorm: GroupNorm
    public let act: Activation

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, groups: Int = 8, act: Activation = .mish) {
        conv1d = Conv1d(inChannels, outChannels, kernelSize: kernelSize, padding: kernelSize / 2)
        groupNorm = GroupNorm(groups: groups, channels: outChannels)
        self.act = act
    }

    public func visit(_ v: inout ModuleVisitor) {
        v("conv1d", conv1d)
        v("group_norm", groupNorm)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { groupNorm(conv1d(x), then: act) }
}

/// diffusers' `ResidualTemporalBlock1D` (the RL/Diffuser U-Net's ResNet block):
///
///     h = conv_in(x) + time_emb(mish(t))[:, :, None]      x: [N, Cin, L], t: [N, T] (or [1, T])
///     out = conv_out(h) + residual_conv(x)                 (identity when Cin == Cout)
///
/// The time activation is Mish whatever the model's `act_fn` (diffusers never passes it down).
public final class ResidualTemporalBlock1D: Module {
    public let convIn: Conv1dBlock, convOut: Conv1dBlock
    public let timeEmbAct: Activation
    public let timeEmb: Linear
    public let residualConv: Conv1d?

    public init(_ inChannels: Int, _ outChannels: Int, embedDim: Int, kernelSize: Int = 5, act: Activation = .mish) {
        convIn = Conv1dBlock(inChannels, outChannels, kernelSize: kernelSize)
        convOut = Conv1dBlock(outChannels, outChannels, kernelSize: kernelSize)
        timeEmbAct = act
        timeEmb = Linear(embedDim, outChannels)
        residualConv = inChannels != outChannels ? Conv1d(inChannels, outChannels, kernelSize: 1) : nil
    }

    public func visit(_ v: inout ModuleVisitor) {
        v("conv_in", convIn)
        v("conv_out", convOut)
        v("time_emb", timeEmb)
        v("residual_conv", residualConv)
    }

    public func callAsFunction(_ x: Tensor, temb: Tensor) -> Tensor {
        precondition(temb.rank == 2, "ResidualTemporalBlock1D takes a time embedding [N, T], got \(temb.shape)")
        // t: [N, T] -> [N, Cout, 1], broadcast over L
        let t = timeEmb(timeEmbAct(temb)).unsqueezed(2)
        let h = convOut(convIn(x) + t)
        return h + (residualConv.map { $0(x) } ?? x)
    }
}
