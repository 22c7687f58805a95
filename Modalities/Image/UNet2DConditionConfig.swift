import Foundation
import NN

/// A config value diffusers takes either once for every block or as a list with one entry per
/// down block (`attention_head_dim: 8` or `[5, 10, 20, 20]`); written back in the form it was read.
public enum PerBlock<T: Codable & Equatable & Sendable>: Codable, Equatable, Sendable {
    case all(T)
    case each([T])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let v = try? c.decode(T.self) { self = .all(v) } else { self = .each(try c.decode([T].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .all(let v): try c.encode(v)
        case .each(let a): try c.encode(a)
        }
    }

    /// One value per block, for `count` blocks (a list is returned as it is).
    public func values(_ count: Int) -> [T] {
        switch self {
        case .all(let v): return [T](repeating: v, count: count)
        case .each(let a): return a
        }
    }

    var listCount: Int? { if case .each(let a) = self { return a.count }; return nil }
}

/// diffusers' `UNet2DConditionModel` config (config.json), for the Stable Diffusion 1.x/2.x
/// family. Keys are diffusers' names; a key present in the file wins over these defaults (which
/// are diffusers' own); unknown keys are kept and written back. Every key diffusers 0.42.1
/// knows is read: values our blocks cannot run (SDXL's `addition_embed_type: "text_time"`, other
/// block types, GLIGEN, Kandinsky projections) are a `ConfigError` naming the key.
///
/// Naming quirk kept from diffusers: `attention_head_dim` is the NUMBER of heads of each
/// block's transformer (head width = channels / heads); `num_attention_heads` must be null.
public struct UNet2DConditionConfig: Codable, Equatable, Sendable {
    public enum DownBlockType: String, Codable, Sendable, CaseIterable {
        case crossAttnDownBlock2D = "CrossAttnDownBlock2D"
        case downBlock2D = "DownBlock2D"
    }
    public enum UpBlockType: String, Codable, Sendable, CaseIterable {
        case crossAttnUpBlock2D = "CrossAttnUpBlock2D"
        case upBlock2D = "UpBlock2D"
    }
    public enum MidBlockType: String, Codable, Sendable, CaseIterable {
        case unetMidBlock2DCrossAttn = "UNetMidBlock2DCrossAttn"
    }
    public enum ClassEmbedType: String, Codable, Sendable, CaseIterable { case timestep }

    public var sampleSize: [Int]? = nil
    public var inChannels = 4
    public var outChannels = 4
    public var centerInputSample = false
    public var flipSinToCos = true
    public var freqShift: Float = 0
    public var downBlockTypes: [DownBlockType] = [.crossAttnDownBlock2D, .crossAttnDownBlock2D, .crossAttnDownBlock2D, .downBlock2D]
    public var midBlockType: MidBlockType? = .unetMidBlock2DCrossAttn
    public var upBlockTypes: [UpBlockType] = [.upBlock2D, .crossAttnUpBlock2D, .crossAttnUpBlock2D, .crossAttnUpBlock2D]
    public var onlyCrossAttention = PerBlock<Bool>.all(false)
    public var blockOutChannels = [320, 640, 1280, 1280]
    public var layersPerBlock = PerBlock<Int>.all(2)
    public var downsamplePadding = 1
    public var midBlockScaleFactor: Float = 1
    public var dropout: Float = 0
    public var actFn = Activation.silu
    public var normNumGroups: Int? = 32
    public var normEps: Float = 1e-5
    public var crossAttentionDim = PerBlock<Int>.all(1280)
    public var transformerLayersPerBlock = PerBlock<Int>.all(1)
    /// Number of heads per block (diffusers' misnomer, see above).
    public var attentionHeadDim = PerBlock<Int>.all(8)
    public var useLinearProjection = false
    public var classEmbedType: ClassEmbedType? = nil
    public var numClassEmbeds: Int? = nil
    public var classEmbeddingsConcat = false
    /// Attention in float32 (SD 2.x sets it for its fp16 runs); we always compute in float32.
    public var upcastAttention = false
    public var resnetTimeScaleShift = TimeEmbeddingNorm.default
    public var timeEmbeddingDim: Int? = nil
    public var timeEmbeddingActFn: Activation? = nil
    public var timestepPostAct: Activation? = nil
    /// LCM: the width of the guidance embedding added to the sinusoidal timestep embedding.
    public var timeCondProjDim: Int? = nil
    public var convInKernel = 3
    public var convOutKernel = 3
    // Read, checked and written back; they change nothing for the blocks above (diffusers passes
    // them only to SimpleCrossAttn / ResnetDownsample blocks and the UNetMidBlock2DSimpleCrossAttn).
    public var resnetSkipTimeAct = false
    public var resnetOutScaleFactor: Float = 1
    public var midBlockOnlyCrossAttention: Bool? = nil
    public var crossAttentionNorm: String? = nil
    public var additionEmbedTypeNumHeads = 64
    public var additionTimeEmbedDim: Int? = nil
    public var projectionClassEmbeddingsInputDim: Int? = nil
    /// Keys this version does not know, written back unchanged.
    public var extra: [String: JSONValue] = [:]

    public static let className = "UNet2DConditionModel"

    public init() {}

    public init(from decoder: Decoder) throws { try self.init(reading: ConfigReader(decoder)) }

    public init(reading r: ConfigReader) throws {
        let d = UNet2DConditionConfig()
        if let s: Int = try? r.optional("sample_size") { sampleSize = [s, s] }
        else { sampleSize = try r.optional("sample_size", d.sampleSize) }
        inChannels = try r.get("in_channels", d.inChannels)
        outChannels = try r.get("out_channels", d.outChannels)
        centerInputSample = try r.get("center_input_sample", d.centerInputSample)
        flipSinToCos = try r.get("flip_sin_to_cos", d.flipSinToCos)
        freqShift = try r.get("freq_shift", d.freqShift)
        downBlockTypes = try Self.blockTypes(r, "down_block_types", d.downBlockTypes)
        if let m: String = try r.optional("mid_block_type", d.midBlockType?.rawValue) {
            guard let t = MidBlockType(rawValue: m) else {
                throw ConfigError(key: "mid_block_type", reason: "\"\(m)\" is not supported (UNetMidBlock2DCrossAttn or null)")
            }
            midBlockType = t
        } else {
            midBlockType = nil
        }
        upBlockTypes = try Self.blockTypes(r, "up_block_types", d.upBlockTypes)
        onlyCrossAttention = try r.get("only_cross_attention", d.onlyCrossAttention)
        blockOutChannels = try r.get("block_out_channels", d.blockOutChannels)
        layersPerBlock = try r.get("layers_per_block", d.layersPerBlock)
        downsamplePadding = try r.get("downsample_padding", d.downsamplePadding)
        midBlockScaleFactor = try r.get("mid_block_scale_factor", d.midBlockScaleFactor)
        dropout = try r.get("dropout", d.dropout)
        actFn = try r.get("act_fn", d.actFn)
        normNumGroups = try r.optional("norm_num_groups", d.normNumGroups)
        normEps = try r.get("norm_eps", d.normEps)
        crossAttentionDim = try r.get("cross_attention_dim", d.crossAttentionDim)
        do { transformerLayersPerBlock = try r.get("transformer_layers_per_block", d.transformerLayersPerBlock) } catch {
            throw ConfigError(key: "transformer_layers_per_block",
                              reason: "expected an int or one int per block (per-layer lists, as SDXL refiners use, are not supported)")
        }
        attentionHeadDim = try r.get("attention_head_dim", d.attentionHeadDim)
        useLinearProjection = try r.get("use_linear_projection", d.useLinearProjection)
        if let c: String = try r.optional("class_embed_type") {
            guard let t = ClassEmbedType(rawValue: c) else {
                throw ConfigError(key: "class_embed_type", reason: "\"\(c)\" is not supported (null or \"timestep\")")
            }
            classEmbedType = t
        }
        numClassEmbeds = try r.optional("num_class_embeds", d.numClassEmbeds)
        classEmbeddingsConcat = try r.get("class_embeddings_concat", d.classEmbeddingsConcat)
        upcastAttention = try r.get("upcast_attention", d.upcastAttention)
        resnetTimeScaleShift = try r.get("resnet_time_scale_shift", d.resnetTimeScaleShift)
        timeEmbeddingDim = try r.optional("time_embedding_dim", d.timeEmbeddingDim)
        timeEmbeddingActFn = try r.optional("time_embedding_act_fn", d.timeEmbeddingActFn)
        timestepPostAct = try r.optional("timestep_post_act", d.timestepPostAct)
        timeCondProjDim = try r.optional("time_cond_proj_dim", d.timeCondProjDim)
        convInKernel = try r.get("conv_in_kernel", d.convInKernel)
        convOutKernel = try r.get("conv_out_kernel", d.convOutKernel)
        resnetSkipTimeAct = try r.get("resnet_skip_time_act", d.resnetSkipTimeAct)
        resnetOutScaleFactor = try r.get("resnet_out_scale_factor", d.resnetOutScaleFactor)
        midBlockOnlyCrossAttention = try r.optional("mid_block_only_cross_attention", d.midBlockOnlyCrossAttention)
        crossAttentionNorm = try r.optional("cross_attention_norm", d.crossAttentionNorm)
        additionEmbedTypeNumHeads = try r.get("addition_embed_type_num_heads", d.additionEmbedTypeNumHeads)
        additionTimeEmbedDim = try r.optional("addition_time_embed_dim", d.additionTimeEmbedDim)
        projectionClassEmbeddingsInputDim = try r.optional("projection_class_embeddings_input_dim", d.projectionClassEmbeddingsInputDim)

        // Keys whose only supported value is diffusers' default.
        if let h: JSONValue = try r.optional("num_attention_heads") {
            throw ConfigError(key: "num_attention_heads",
                              reason: "must be null (diffusers 0.42 refuses it too; attention_head_dim gives the number of heads), got \(h)")
        }
        if let t: String = try r.optional("addition_embed_type") {
            throw ConfigError(key: "addition_embed_type", reason: t == "text_time"
                ? "\"text_time\" is Stable Diffusion XL, which is not supported yet"
                : "\"\(t)\" is not supported (only null: Stable Diffusion 1.x/2.x)")
        }
        for key in ["encoder_hid_dim", "encoder_hid_dim_type", "reverse_transformer_layers_per_block"] {
            if let v: JSONValue = try r.optional(key) {
                throw ConfigError(key: key, reason: "only null is supported, got \(v)")
            }
        }
        if try r.get("dual_cross_attention", false) {
            throw ConfigError(key: "dual_cross_attention", reason: "true is not supported")
        }
        let attentionType: String = try r.get("attention_type", "default")
        guard attentionType == "default" else {
            throw ConfigError(key: "attention_type", reason: "\"\(attentionType)\" (GLIGEN) is not supported, only \"default\"")
        }
        let timeType: String = try r.get("time_embedding_type", "positional")
        guard timeType == "positional" else {
            throw ConfigError(key: "time_embedding_type", reason: "\"\(timeType)\" is not supported, only \"positional\"")
        }
        extra = try r.remaining()
        try validate()
    }

    /// A list of block type names, each one of `T`'s cases (else an error naming the key and the
    /// supported names).
    private static func blockTypes<T: RawRepresentable & CaseIterable>(_ r: ConfigReader, _ key: String, _ d: [T]) throws -> [T]
        where T.RawValue == String {
        let names: [String] = try r.get(key, d.map(\.rawValue))
        return try names.map { n in
            guard let t = T(rawValue: n) else {
                throw ConfigError(key: key, reason: "block type \"\(n)\" is not supported (supported: "
                                  + T.allCases.map(\.rawValue).joined(separator: ", ") + ")")
            }
            return t
        }
    }

    public func encode(to encoder: Encoder) throws {
        var w = try ConfigWriter(encoder, className: Self.className, extra: extra)
        if let s = sampleSize, s.count == 2, s[0] == s[1] { try w.set("sample_size", s[0]) } else { try w.setOptional("sample_size", sampleSize) }
        try w.set("in_channels", inChannels)
        try w.set("out_channels", outChannels)
        try w.set("center_input_sample", centerInputSample)
        try w.set("flip_sin_to_cos", flipSinToCos)
        try w.set("freq_shift", freqShift)
        try w.set("down_block_types", downBlockTypes)
        try w.setOptional("mid_block_type", midBlockType)
        try w.set("up_block_types", upBlockTypes)
        try w.set("only_cross_attention", onlyCrossAttention)
        try w.set("block_out_channels", blockOutChannels)
        try w.set("layers_per_block", layersPerBlock)
        try w.set("downsample_padding", downsamplePadding)
        try w.set("mid_block_scale_factor", midBlockScaleFactor)
        try w.set("dropout", dropout)
        try w.set("act_fn", actFn)
        try w.setOptional("norm_num_groups", normNumGroups)
        try w.set("norm_eps", normEps)
        try w.set("cross_attention_dim", crossAttentionDim)
        try w.set("transformer_layers_per_block", transformerLayersPerBlock)
        try w.setOptional("reverse_transformer_layers_per_block", Int?.none)
        try w.setOptional("encoder_hid_dim", Int?.none)
        try w.setOptional("encoder_hid_dim_type", String?.none)
        try w.set("attention_head_dim", attentionHeadDim)
        try w.setOptional("num_attention_heads", Int?.none)
        try w.set("dual_cross_attention", false)
        try w.set("use_linear_projection", useLinearProjection)
        try w.setOptional("class_embed_type", classEmbedType)
        try w.setOptional("addition_embed_type", String?.none)
        try w.setOptional("addition_time_embed_dim", additionTimeEmbedDim)
        try w.setOptional("num_class_embeds", numClassEmbeds)
        try w.set("upcast_attention", upcastAttention)
        try w.set("resnet_time_scale_shift", resnetTimeScaleShift)
        try w.set("resnet_skip_time_act", resnetSkipTimeAct)
        try w.set("resnet_out_scale_factor", resnetOutScaleFactor)
        try w.set("time_embedding_type", "positional")
        try w.setOptional("time_embedding_dim", timeEmbeddingDim)
        try w.setOptional("time_embedding_act_fn", timeEmbeddingActFn)
        try w.setOptional("timestep_post_act", timestepPostAct)
        try w.setOptional("time_cond_proj_dim", timeCondProjDim)
        try w.set("conv_in_kernel", convInKernel)
        try w.set("conv_out_kernel", convOutKernel)
        try w.setOptional("projection_class_embeddings_input_dim", projectionClassEmbeddingsInputDim)
        try w.set("attention_type", "default")
        try w.set("class_embeddings_concat", classEmbeddingsConcat)
        try w.setOptional("mid_block_only_cross_attention", midBlockOnlyCrossAttention)
        try w.setOptional("cross_attention_norm", crossAttentionNorm)
        try w.set("addition_embed_type_num_heads", additionEmbedTypeNumHeads)
    }

    /// Limits that keep a hostile config from allocating without bound; far above every
    /// published SD 1.x/2.x unet (widest block 1280, 4 levels, 2 layers, 24-head transformers).
    static let maxWidth = 16_384, maxBlocks = 8, maxLayers = 64, maxParameters = 8_000_000_000

    /// Impossible combinations, as a `ConfigError` naming the key. Runs before any allocation.
    public func validate() throws {
        let n = blockOutChannels.count
        guard (1...Self.maxBlocks).contains(n), blockOutChannels.allSatisfy({ (1...Self.maxWidth).contains($0) }) else {
            throw ConfigError(key: "block_out_channels",
                              reason: "needs 1 to \(Self.maxBlocks) widths in 1...\(Self.maxWidth), got \(blockOutChannels)")
        }
        guard downBlockTypes.count == n else {
            throw ConfigError(key: "down_block_types", reason: "\(downBlockTypes.count) blocks for \(n) block_out_channels")
        }
        guard upBlockTypes.count == n else {
            throw ConfigError(key: "up_block_types", reason: "\(upBlockTypes.count) blocks for \(n) block_out_channels")
        }
        guard (1...Self.maxWidth).contains(inChannels) else {
            throw ConfigError(key: "in_channels", reason: "must be in 1...\(Self.maxWidth), got \(inChannels)")
        }
        guard (1...Self.maxWidth).contains(outChannels) else {
            throw ConfigError(key: "out_channels", reason: "must be in 1...\(Self.maxWidth), got \(outChannels)")
        }
        func perBlock<T>(_ key: String, _ p: PerBlock<T>, _ ok: (T) -> Bool, _ what: String) throws {
            if let c = p.listCount, c != n { throw ConfigError(key: key, reason: "\(c) values for \(n) blocks") }
            for v in p.values(n) where !ok(v) { throw ConfigError(key: key, reason: "\(v): \(what)") }
        }
        try perBlock("only_cross_attention", onlyCrossAttention, { _ in true }, "")
        try perBlock("layers_per_block", layersPerBlock, { (1...Self.maxLayers).contains($0) }, "must be in 1...\(Self.maxLayers)")
        try perBlock("transformer_layers_per_block", transformerLayersPerBlock, { (1...Self.maxLayers).contains($0) },
                     "must be in 1...\(Self.maxLayers)")
        try perBlock("cross_attention_dim", crossAttentionDim, { (1...Self.maxWidth).contains($0) },
                     "must be in 1...\(Self.maxWidth)")
        try perBlock("attention_head_dim", attentionHeadDim, { $0 >= 1 }, "the number of heads must be positive")
        // attention_head_dim[i] heads over block_out_channels[i] channels (up blocks: reversed, the same pairs).
        for (heads, c) in zip(attentionHeadDim.values(n), blockOutChannels) where heads > c {
            throw ConfigError(key: "attention_head_dim", reason: "\(heads) heads for a block of \(c) channels (head width 0)")
        }
        guard let groups = normNumGroups else {
            throw ConfigError(key: "norm_num_groups", reason: "null is not supported (the ResNet blocks need group norms)")
        }
        for c in blockOutChannels where groups < 1 || c % groups != 0 {
            throw ConfigError(key: "norm_num_groups", reason: "\(groups) groups do not divide block width \(c)")
        }
        guard normEps > 0, normEps.isFinite else { throw ConfigError(key: "norm_eps", reason: "must be positive, got \(normEps)") }
        guard (0..<1).contains(dropout) else { throw ConfigError(key: "dropout", reason: "must be in [0, 1), got \(dropout)") }
        guard (0...2).contains(downsamplePadding) else {
            throw ConfigError(key: "downsample_padding", reason: "must be 0, 1 or 2, got \(downsamplePadding)")
        }
        guard midBlockScaleFactor.isFinite, midBlockScaleFactor != 0 else {
            throw ConfigError(key: "mid_block_scale_factor", reason: "must be finite and non-zero")
        }
        for (key, k) in [("conv_in_kernel", convInKernel), ("conv_out_kernel", convOutKernel)] where k < 1 || k > 15 || k % 2 == 0 {
            throw ConfigError(key: key, reason: "must be an odd size in 1...15 (the output keeps the input size), got \(k)")
        }
        if let t = timeEmbeddingDim, !(1...Self.maxWidth).contains(t) {
            throw ConfigError(key: "time_embedding_dim", reason: "must be in 1...\(Self.maxWidth), got \(t)")
        }
        if let t = timeCondProjDim, !(1...Self.maxWidth).contains(t) || t == 2 || t == 3 {
            // 2 and 3: the guidance embedding's frequencies divide by ⌊dim / 2⌋ − 1 = 0 (NaN in diffusers).
            throw ConfigError(key: "time_cond_proj_dim", reason: "must be 1 or in 4...\(Self.maxWidth), got \(t)")
        }
        if let k = numClassEmbeds, !(1...1_000_000).contains(k) {
            throw ConfigError(key: "num_class_embeds", reason: "must be in 1...1000000, got \(k)")
        }
        if classEmbeddingsConcat && !hasClassEmbedding {
            throw ConfigError(key: "class_embeddings_concat", reason: "true needs a class embedding (num_class_embeds or class_embed_type)")
        }
        if let s = sampleSize, s.count != 2 || s.contains(where: { $0 < 1 }) {
            throw ConfigError(key: "sample_size", reason: "must be a positive int or [height, width], got \(s)")
        }
        // The up blocks take the down path's skip states from the end; with per-block
        // layers_per_block lists their widths must still meet the resnets' inputs.
        let layers = layersPerBlock.values(n)
        var skips = [blockOutChannels[0]]
        for (i, c) in blockOutChannels.enumerated() {
            skips += [Int](repeating: c, count: layers[i] + (i < n - 1 ? 1 : 0))
        }
        let rev = Array(blockOutChannels.reversed())
        for (i, out) in rev.enumerated() {
            let input = rev[Swift.min(i + 1, n - 1)], count = layers[n - 1 - i] + 1
            for j in 0..<count {
                let want = j == count - 1 ? input : out
                guard let got = skips.popLast(), got == want else {
                    throw ConfigError(key: "layers_per_block", reason: "up block \(i) cannot take the skip states of the down blocks")
                }
            }
        }
        let estimate = estimatedParameterCount
        guard estimate <= Double(Self.maxParameters) else {
            throw ConfigError(key: "block_out_channels", reason: "about \(Int(estimate / 1e6)) M parameters, more than this tool loads")
        }
    }

    /// Width of the time embedding (diffusers' `time_embed_dim`).
    public var timeEmbedDim: Int { timeEmbeddingDim ?? blockOutChannels[0] * 4 }
    /// Width of the embedding the ResNet blocks receive (doubled by `class_embeddings_concat`).
    public var blocksTimeEmbedDim: Int { classEmbeddingsConcat ? 2 * timeEmbedDim : timeEmbedDim }
    public var hasClassEmbedding: Bool { classEmbedType == .timestep || numClassEmbeds != nil }

    /// A rough upper estimate of the parameter count (resnets, transformers), in Double so that no
    /// product overflows.
    var estimatedParameterCount: Double {
        let n = blockOutChannels.count
        let layers = layersPerBlock.values(n).map(Double.init), tl = transformerLayersPerBlock.values(n).map(Double.init)
        let ctx = crossAttentionDim.values(n).map(Double.init)
        var total = Double(timeEmbedDim) * Double(timeEmbedDim + blockOutChannels[0])
        for (i, c) in blockOutChannels.map(Double.init).enumerated() {
            let resnet = 2 * 9 * 4 * c * c + 4 * c * Double(timeEmbedDim)  // in+skip widths up to ~2c
            let transformer = tl[i] * (12 * c * c + 2 * c * ctx[i]) + 2 * c * c
            total += (2 * layers[i] + 2) * (resnet + transformer)
        }
        return total
    }
}

extension UNet2DConditionConfig: FloatTypedConfig {
    /// The keys `UNet2DConditionModel.__init__` types as float (diffusers 0.42.1).
    public static let floatKeys: Set<String> = ["mid_block_scale_factor", "dropout", "norm_eps", "resnet_out_scale_factor"]
}
