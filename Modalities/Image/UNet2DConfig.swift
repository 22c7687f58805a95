import Foundation
import NN

/// diffusers' `UNet2DModel` config (config.json). Keys are diffusers' names; a key present in
/// the file always wins over these defaults (which are diffusers' own); unknown keys are kept
/// and written back.
public struct UNet2DConfig: Codable, Equatable, Sendable {
    public enum DownBlockType: String, Codable, Sendable, CaseIterable {
        case downBlock2D = "DownBlock2D"
        case attnDownBlock2D = "AttnDownBlock2D"
        case resnetDownsampleBlock2D = "ResnetDownsampleBlock2D"
    }
    public enum UpBlockType: String, Codable, Sendable, CaseIterable {
        case upBlock2D = "UpBlock2D"
        case attnUpBlock2D = "AttnUpBlock2D"
        case resnetUpsampleBlock2D = "ResnetUpsampleBlock2D"
    }
    public enum MidBlockType: String, Codable, Sendable { case unetMidBlock2D = "UNetMidBlock2D" }
    public enum TimeEmbeddingType: String, Codable, Sendable { case positional, fourier, learned }
    public enum ResamplerType: String, Codable, Sendable { case conv, resnet }
    public enum ClassEmbedType: String, Codable, Sendable { case timestep, identity }

    public var sampleSize: [Int]? = nil
    public var inChannels = 3
    public var outChannels = 3
    public var centerInputSample = false
    public var timeEmbeddingType = TimeEmbeddingType.positional
    public var timeEmbeddingDim: Int? = nil
    public var freqShift: Float = 0
    public var flipSinToCos = true
    public var downBlockTypes: [DownBlockType] = [.downBlock2D, .attnDownBlock2D, .attnDownBlock2D, .attnDownBlock2D]
    public var midBlockType: MidBlockType? = .unetMidBlock2D
    public var upBlockTypes: [UpBlockType] = [.attnUpBlock2D, .attnUpBlock2D, .attnUpBlock2D, .upBlock2D]
    public var blockOutChannels = [224, 448, 672, 896]
    public var layersPerBlock = 2
    public var midBlockScaleFactor: Float = 1
    public var downsamplePadding = 1
    public var downsampleType = ResamplerType.conv
    public var upsampleType = ResamplerType.conv
    public var dropout: Float = 0
    public var actFn = Activation.silu
    public var attentionHeadDim: Int? = 8
    public var normNumGroups: Int? = 32
    public var attnNormNumGroups: Int? = nil
    public var normEps: Float = 1e-5
    public var resnetTimeScaleShift = TimeEmbeddingNorm.default
    public var addAttention = true
    public var classEmbedType: ClassEmbedType? = nil
    public var numClassEmbeds: Int? = nil
    public var numTrainTimesteps: Int? = nil
    /// Keys this version does not know, written back unchanged.
    public var extra: [String: JSONValue] = [:]

    public static let className = "UNet2DModel"

    public init() {}

    public init(from decoder: Decoder) throws { try self.init(reading: ConfigReader(decoder)) }

    /// Reads every UNet2DModel key from `r`; keys `r` was not asked about (before or here) go
    /// to `extra`. A config that wraps this one (the video U-Net's) reads its own keys first.
    public init(reading r: ConfigReader) throws {
        let d = UNet2DConfig()
        // sample_size is an int or [h, w]
        if let s: Int = try? r.optional("sample_size") { sampleSize = [s, s] }
        else { sampleSize = try r.optional("sample_size", d.sampleSize) }
        inChannels = try r.get("in_channels", d.inChannels)
        outChannels = try r.get("out_channels", d.outChannels)
        centerInputSample = try r.get("center_input_sample", d.centerInputSample)
        timeEmbeddingType = try r.get("time_embedding_type", d.timeEmbeddingType)
        timeEmbeddingDim = try r.optional("time_embedding_dim", d.timeEmbeddingDim)
        freqShift = try r.get("freq_shift", d.freqShift)
        flipSinToCos = try r.get("flip_sin_to_cos", d.flipSinToCos)
        downBlockTypes = try r.get("down_block_types", d.downBlockTypes)
        midBlockType = try r.optional("mid_block_type", d.midBlockType)
        upBlockTypes = try r.get("up_block_types", d.upBlockTypes)
        blockOutChannels = try r.get("block_out_channels", d.blockOutChannels)
        layersPerBlock = try r.get("layers_per_block", d.layersPerBlock)
        midBlockScaleFactor = try r.get("mid_block_scale_factor", d.midBlockScaleFactor)
        downsamplePadding = try r.get("downsample_padding", d.downsamplePadding)
        downsampleType = try r.get("downsample_type", d.downsampleType)
        upsampleType = try r.get("upsample_type", d.upsampleType)
        dropout = try r.get("dropout", d.dropout)
        actFn = try r.get("act_fn", d.actFn)
        attentionHeadDim = try r.optional("attention_head_dim", d.attentionHeadDim)
        normNumGroups = try r.optional("norm_num_groups", d.normNumGroups)
        attnNormNumGroups = try r.optional("attn_norm_num_groups", d.attnNormNumGroups)
        normEps = try r.get("norm_eps", d.normEps)
        resnetTimeScaleShift = try r.get("resnet_time_scale_shift", d.resnetTimeScaleShift)
        addAttention = try r.get("add_attention", d.addAttention)
        classEmbedType = try r.optional("class_embed_type", d.classEmbedType)
        numClassEmbeds = try r.optional("num_class_embeds", d.numClassEmbeds)
        numTrainTimesteps = try r.optional("num_train_timesteps", d.numTrainTimesteps)
        extra = try r.remaining()
        try validate()
    }

    public func encode(to encoder: Encoder) throws {
        var w = try ConfigWriter(encoder, className: Self.className, extra: extra)
        try write(to: &w)
    }

    /// Writes every UNet2DModel key (not `_class_name`, not `extra`) into `w`.
    public func write(to w: inout ConfigWriter) throws {
        if let s = sampleSize, s.count == 2, s[0] == s[1] { try w.set("sample_size", s[0]) } else { try w.setOptional("sample_size", sampleSize) }
        try w.set("in_channels", inChannels)
        try w.set("out_channels", outChannels)
        try w.set("center_input_sample", centerInputSample)
        try w.set("time_embedding_type", timeEmbeddingType)
        try w.setOptional("time_embedding_dim", timeEmbeddingDim)
        try w.set("freq_shift", freqShift)
        try w.set("flip_sin_to_cos", flipSinToCos)
        try w.set("down_block_types", downBlockTypes)
        try w.setOptional("mid_block_type", midBlockType)
        try w.set("up_block_types", upBlockTypes)
        try w.set("block_out_channels", blockOutChannels)
        try w.set("layers_per_block", layersPerBlock)
        try w.set("mid_block_scale_factor", midBlockScaleFactor)
        try w.set("downsample_padding", downsamplePadding)
        try w.set("downsample_type", downsampleType)
        try w.set("upsample_type", upsampleType)
        try w.set("dropout", dropout)
        try w.set("act_fn", actFn)
        try w.setOptional("attention_head_dim", attentionHeadDim)
        try w.setOptional("norm_num_groups", normNumGroups)
        try w.setOptional("attn_norm_num_groups", attnNormNumGroups)
        try w.set("norm_eps", normEps)
        try w.set("resnet_time_scale_shift", resnetTimeScaleShift)
        try w.set("add_attention", addAttention)
        try w.setOptional("class_embed_type", classEmbedType)
        try w.setOptional("num_class_embeds", numClassEmbeds)
        try w.setOptional("num_train_timesteps", numTrainTimesteps)
    }

    /// Impossible combinations and out-of-range numbers, as a `ConfigError` naming the key,
    /// before anything is allocated (whether the model fits in memory is `MemoryBudget`'s call).
    public func validate() throws {
        typealias C = ConfigCheck
        try C.ints("block_out_channels", blockOutChannels, 1...C.maxWidth)
        let n = blockOutChannels.count
        guard downBlockTypes.count == n else {
            throw ConfigError(key: "down_block_types", reason: "\(downBlockTypes.count) blocks for \(n) block_out_channels")
        }
        guard upBlockTypes.count == n else {
            throw ConfigError(key: "up_block_types", reason: "\(upBlockTypes.count) blocks for \(n) block_out_channels")
        }
        try C.int("in_channels", inChannels, 1...C.maxWidth)
        try C.int("out_channels", outChannels, 1...C.maxWidth)
        try C.int("layers_per_block", layersPerBlock, 1...C.maxLayers)
        try C.int("time_embedding_dim", timeEmbeddingDim, 1...C.maxWidth)
        try C.int("downsample_padding", downsamplePadding, 0...2)
        try C.float("dropout", dropout, 0...0.999)
        try C.positive("norm_eps", normEps)
        try C.finite("freq_shift", freqShift)
        try C.finite("mid_block_scale_factor", midBlockScaleFactor)
        guard midBlockScaleFactor != 0 else { throw ConfigError(key: "mid_block_scale_factor", reason: "must not be 0 (the attention output is divided by it)") }
        let groups = normNumGroups ?? Swift.min(blockOutChannels[0] / 4, 32)
        try C.groups("norm_num_groups", groups, divide: blockOutChannels)
        // Attention widths: the Attn blocks' channels, and the mid block's (the last width).
        var attended = zip(downBlockTypes, blockOutChannels).filter { $0.0 == .attnDownBlock2D }.map(\.1)
            + zip(upBlockTypes, blockOutChannels.reversed()).filter { $0.0 == .attnUpBlock2D }.map(\.1)
        let midAttends = midBlockType != nil && addAttention
        if midAttends { attended.append(blockOutChannels[n - 1]) }
        if let h = attentionHeadDim {
            for c in attended where h < 1 || c % h != 0 {
                throw ConfigError(key: "attention_head_dim", reason: "\(h) does not divide attention width \(c) (heads = width / head_dim)")
            }
        }
        if midAttends, let g = attnNormNumGroups ?? (resnetTimeScaleShift == .default ? groups : nil) {
            try C.groups(attnNormNumGroups == nil ? "norm_num_groups" : "attn_norm_num_groups", g, divide: [blockOutChannels[n - 1]])
        }
        if timeEmbeddingType == .learned && (numTrainTimesteps ?? 0) < 1 {
            throw ConfigError(key: "num_train_timesteps", reason: "required for time_embedding_type \"learned\"")
        }
        try C.int("num_train_timesteps", numTrainTimesteps, 1...C.maxEmbeddings)
        if classEmbedType == .identity {
            throw ConfigError(key: "class_embed_type", reason: "\"identity\" (raw embeddings as labels) is not supported")
        }
        try C.int("num_class_embeds", numClassEmbeds, 1...C.maxEmbeddings)
        if let s = sampleSize {
            guard s.count == 2, s.allSatisfy({ (1...C.maxSide).contains($0) }) else {
                throw ConfigError(key: "sample_size", reason: "must be an int or [height, width] in 1...\(C.maxSide), got \(s)")
            }
            let f = 1 << (n - 1)
            guard s.allSatisfy({ $0 % f == 0 }) else {
                throw ConfigError(key: "sample_size", reason: "\(s) is not a multiple of \(f), what \(n - 1) downsamplings need")
            }
        }
    }

    /// Roughly the bytes a forward pass over `batch` images of height × width holds: per level
    /// the skip states (layers + 1) and a resnet's intermediates (~5) at that level's width and
    /// size. Attention is chunked (never quadratic in the pixels).
    public func activationBytes(batch: Double, height: Int, width: Int) -> Double {
        Self.activationBytes(widths: blockOutChannels, layersPerBlock: layersPerBlock, batch: batch, height: height, width: width)
    }

    /// The estimate for any U-Net of these level widths (the conditional one's too: cross-attention
    /// over a caption's tokens is small beside the resnets).
    public static func activationBytes(widths: [Int], layersPerBlock: Int, batch: Double, height: Int, width: Int) -> Double {
        var total = 0.0, pixels = Double(height) * Double(width)
        for c in widths {
            total += 4 * batch * Double(c) * pixels * Double(layersPerBlock + 6)
            pixels /= 4
        }
        return total
    }

    public var timeEmbedDim: Int { timeEmbeddingDim ?? blockOutChannels[0] * 4 }
    public var isClassConditional: Bool { numClassEmbeds != nil || classEmbedType == .timestep }
}

extension UNet2DConfig: FloatTypedConfig {
    /// The keys `UNet2DModel.__init__` types as float (diffusers 0.42.1).
    public static let floatKeys: Set<String> = ["mid_block_scale_factor", "dropout", "norm_eps"]
}
