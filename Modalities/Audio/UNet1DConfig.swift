import Foundation
import NN

/// diffusers' `UNet1DModel` config (config.json). Keys are diffusers' names; a key present in
/// the file always wins over these defaults (which are diffusers' own: the Dance Diffusion
/// layout); unknown keys are kept and written back.
///
/// Two families of blocks share the class:
/// - Dance Diffusion (`DownBlock1DNoSkip`, `DownBlock1D`, `AttnDownBlock1D`, `UNetMidBlock1D`,
///   the matching up blocks): ResConv blocks with a fixed-kernel resampler; the time embedding
///   enters only as `extra_in_channels` concatenated to the input (`use_timestep_embedding` false).
/// - The RL/Diffuser U-Net (`DownResnetBlock1D`, `UpResnetBlock1D`, `MidResTemporalBlock1D`,
///   `ValueFunctionMidBlock1D`, out blocks): residual temporal blocks fed by the time MLP
///   (`use_timestep_embedding` true).
/// `validate()` follows channels, lengths and the time embedding through the blocks and rejects,
/// naming the key, every combination diffusers would only fail on at run time.
///
/// Our extension: `num_class_embeds` adds a learned class embedding to the time embedding (see
/// `UNet1DModel`); without it the model is exactly diffusers'.
///
/// diffusers' defaults (kept here, since they fill in keys a file leaves out) describe a net that
/// fails at run time: DownBlock1DNoSkip adds the 64 Fourier channels but `extra_in_channels` is 0.
/// `UNet1DConfig()` therefore does not validate; start from `lean()` or a config file.
public struct UNet1DConfig: Codable, Equatable, Sendable {
    public enum DownBlockType: String, Codable, Sendable, CaseIterable {
        case downResnetBlock1D = "DownResnetBlock1D"
        case downBlock1D = "DownBlock1D"
        case attnDownBlock1D = "AttnDownBlock1D"
        case downBlock1DNoSkip = "DownBlock1DNoSkip"
    }
    public enum UpBlockType: String, Codable, Sendable, CaseIterable {
        case upResnetBlock1D = "UpResnetBlock1D"
        case upBlock1D = "UpBlock1D"
        case attnUpBlock1D = "AttnUpBlock1D"
        case upBlock1DNoSkip = "UpBlock1DNoSkip"
    }
    public enum MidBlockType: String, Codable, Sendable, CaseIterable {
        case midResTemporalBlock1D = "MidResTemporalBlock1D"
        case valueFunctionMidBlock1D = "ValueFunctionMidBlock1D"
        case unetMidBlock1D = "UNetMidBlock1D"
    }
    public enum OutBlockType: String, Codable, Sendable, CaseIterable {
        case outConv1DBlock = "OutConv1DBlock"
        /// `OutValueFunctionBlock`: the model returns one value per sample, [N, 1].
        case valueFunction = "ValueFunction"
    }
    public enum TimeEmbeddingType: String, Codable, Sendable { case fourier, positional }

    public var sampleSize: Int? = 65536
    public var sampleRate: Int? = nil
    public var inChannels = 2
    public var outChannels = 2
    public var extraInChannels = 0
    public var timeEmbeddingType = TimeEmbeddingType.fourier
    public var timeEmbeddingDim: Int? = nil
    public var flipSinToCos = true
    public var useTimestepEmbedding = false
    public var freqShift: Float = 0
    public var downBlockTypes: [DownBlockType] = [.downBlock1DNoSkip, .downBlock1D, .attnDownBlock1D]
    public var upBlockTypes: [UpBlockType] = [.attnUpBlock1D, .upBlock1D, .upBlock1DNoSkip]
    public var midBlockType = MidBlockType.unetMidBlock1D
    public var outBlockType: OutBlockType? = nil
    public var blockOutChannels = [32, 32, 64]
    public var actFn: Activation? = nil
    public var normNumGroups: Int? = 8
    public var layersPerBlock = 1
    public var downsampleEachBlock = false
    /// Ours (not a diffusers key): number of class labels, embedded and added to the time
    /// embedding. Written only when set, so an unconditional config stays diffusers' own.
    public var numClassEmbeds: Int? = nil
    /// Keys this version does not know, written back unchanged.
    public var extra: [String: JSONValue] = [:]

    public static let className = "UNet1DModel"

    public init() {}

    public init(from decoder: Decoder) throws {
        let r = try ConfigReader(decoder)
        let d = UNet1DConfig()
        sampleSize = try r.optional("sample_size", d.sampleSize)
        sampleRate = try r.optional("sample_rate", d.sampleRate)
        inChannels = try r.get("in_channels", d.inChannels)
        outChannels = try r.get("out_channels", d.outChannels)
        extraInChannels = try r.get("extra_in_channels", d.extraInChannels)
        timeEmbeddingType = try r.get("time_embedding_type", d.timeEmbeddingType)
        timeEmbeddingDim = try r.optional("time_embedding_dim", d.timeEmbeddingDim)
        flipSinToCos = try r.get("flip_sin_to_cos", d.flipSinToCos)
        useTimestepEmbedding = try r.get("use_timestep_embedding", d.useTimestepEmbedding)
        freqShift = try r.get("freq_shift", d.freqShift)
        downBlockTypes = try r.get("down_block_types", d.downBlockTypes)
        upBlockTypes = try r.get("up_block_types", d.upBlockTypes)
        // diffusers always builds a mid block (get_mid_block(None) raises): null is an error.
        guard let mid = try r.optional("mid_block_type", d.midBlockType) else {
            throw ConfigError(key: "mid_block_type", reason: "UNet1DModel needs a mid block, got null")
        }
        midBlockType = mid
        outBlockType = try r.optional("out_block_type", d.outBlockType)
        blockOutChannels = try r.get("block_out_channels", d.blockOutChannels)
        actFn = try r.optional("act_fn", d.actFn)
        normNumGroups = try r.optional("norm_num_groups", d.normNumGroups)
        layersPerBlock = try r.get("layers_per_block", d.layersPerBlock)
        downsampleEachBlock = try r.get("downsample_each_block", d.downsampleEachBlock)
        numClassEmbeds = try r.optional("num_class_embeds", d.numClassEmbeds)
        extra = try r.remaining()
        try validate()
    }

    public func encode(to encoder: Encoder) throws {
        var w = try ConfigWriter(encoder, className: Self.className, extra: extra)
        try w.setOptional("sample_size", sampleSize)
        try w.setOptional("sample_rate", sampleRate)
        try w.set("in_channels", inChannels)
        try w.set("out_channels", outChannels)
        try w.set("extra_in_channels", extraInChannels)
        try w.set("time_embedding_type", timeEmbeddingType)
        try w.setOptional("time_embedding_dim", timeEmbeddingDim)
        try w.set("flip_sin_to_cos", flipSinToCos)
        try w.set("use_timestep_embedding", useTimestepEmbedding)
        try w.set("freq_shift", freqShift)
        try w.set("down_block_types", downBlockTypes)
        try w.set("up_block_types", upBlockTypes)
        try w.set("mid_block_type", midBlockType)
        try w.setOptional("out_block_type", outBlockType)
        try w.set("block_out_channels", blockOutChannels)
        try w.setOptional("act_fn", actFn)
        try w.setOptional("norm_num_groups", normNumGroups)
        try w.set("layers_per_block", layersPerBlock)
        try w.set("downsample_each_block", downsampleEachBlock)
        // Absent rather than null: diffusers' UNet1DModel has no such argument.
        if let k = numClassEmbeds { try w.set("num_class_embeds", k) }
    }

    // MARK: Derived sizes

    /// Width of the time projection: the Fourier features (`time_embedding_dim`, default
    /// 2 × block_out_channels[0]) or the sinusoidal ones (block_out_channels[0]; diffusers
    /// ignores `time_embedding_dim` there).
    public var timeProjectionDim: Int {
        switch timeEmbeddingType {
        case .fourier: return timeEmbeddingDim ?? 2 * blockOutChannels[0]
        case .positional: return blockOutChannels[0]
        }
    }

    /// Width of the time embedding the blocks receive: block_out_channels[0] after the time MLP,
    /// else the projection itself (broadcast over the length where a block concatenates it).
    /// The class embedding has this width.
    public var timeEmbedDim: Int { useTimestepEmbedding ? blockOutChannels[0] : timeProjectionDim }

    /// Groups of the out block's norm (diffusers' `num_groups_out`).
    public var numGroupsOut: Int { normNumGroups ?? Swift.min(blockOutChannels[0] / 4, 32) }

    /// Input lengths must be a multiple of this: 2^level of the deepest point where two paths
    /// meet again (a skip connection, or the Dance mid block's down-and-up), so that halving
    /// and doubling give back the same lengths.
    public var lengthMultiple: Int { (try? plan().lengthMultiple) ?? 1 }

    /// The shortest input: Dance Diffusion's reflection-padded resamplers need 4 samples (down)
    /// or 3 (up) wherever they run.
    public var minimumLength: Int { (try? plan().minimumLength) ?? 1 }

    public var isClassConditional: Bool { numClassEmbeds != nil }

    /// Whether the model returns one value per sample ([N, 1]) rather than a sample.
    public var isValueFunction: Bool { outBlockType == .valueFunction }

    // MARK: Validation

    struct Plan { var lengthMultiple: Int, minimumLength: Int }

    /// Impossible combinations, as a `ConfigError` naming the key.
    public func validate() throws { _ = try plan() }

    /// Follows channels and length (as a level: the input halved `level` times) through the
    /// blocks exactly as diffusers wires them, checking each block's expectations.
    func plan() throws -> Plan {
        typealias C = ConfigCheck
        let ch = blockOutChannels, n = ch.count
        try C.ints("block_out_channels", ch, 1...C.maxWidth, maxCount: 2 * C.maxBlocks)
        try C.int("in_channels", inChannels, 1...C.maxWidth)
        try C.int("out_channels", outChannels, 1...C.maxWidth)
        try C.int("extra_in_channels", extraInChannels, 0...C.maxWidth)
        try C.int("layers_per_block", layersPerBlock, 0...C.maxLayers)
        try C.int("time_embedding_dim", timeEmbeddingDim, 1...C.maxWidth)
        try C.int("num_class_embeds", numClassEmbeds, 1...C.maxEmbeddings)
        try C.int("sample_size", sampleSize, 1...C.maxLength)
        try C.int("sample_rate", sampleRate, 1...768_000)
        try C.int("norm_num_groups", normNumGroups, 1...C.maxWidth)
        try C.finite("freq_shift", freqShift)
        guard downBlockTypes.count == n else {
            throw ConfigError(key: "down_block_types", reason: "\(downBlockTypes.count) blocks for \(n) block_out_channels")
        }
        guard upBlockTypes.count <= n else {
            throw ConfigError(key: "up_block_types", reason: "\(upBlockTypes.count) up blocks but only \(n) skip connections")
        }
        guard inChannels > 0, outChannels > 0, extraInChannels >= 0 else {
            throw ConfigError(key: "in_channels", reason: "channels must be positive (extra_in_channels >= 0)")
        }
        guard layersPerBlock >= 0 else { throw ConfigError(key: "layers_per_block", reason: "must be >= 0") }
        if timeEmbeddingType == .fourier {
            guard timeProjectionDim > 0, timeProjectionDim % 2 == 0 else {
                throw ConfigError(key: "time_embedding_dim", reason: "the Fourier embedding needs an even positive width, got \(timeProjectionDim)")
            }
        }
        if useTimestepEmbedding && actFn == nil {
            throw ConfigError(key: "act_fn", reason: "the time MLP (use_timestep_embedding) needs an activation")
        }
        if let k = numClassEmbeds, k < 1 { throw ConfigError(key: "num_class_embeds", reason: "must be >= 1") }
        if let s = sampleSize, s < 1 { throw ConfigError(key: "sample_size", reason: "must be positive, got \(s)") }

        func needMLP(_ block: String, _ key: String) throws {
            guard useTimestepEmbedding else {
                throw ConfigError(key: key, reason: "\(block) takes the time MLP's [N, C] embedding: it needs use_timestep_embedding true")
            }
        }
        /// ResidualTemporalBlock1D's group norms have 8 groups.
        func temporalWidth(_ c: Int, _ key: String) throws {
            guard c % 8 == 0 else { throw ConfigError(key: key, reason: "residual temporal blocks norm in 8 groups: width \(c) is not a multiple of 8") }
        }
        /// SelfAttention1d has width / 32 heads, each of width 32 or more.
        func attentionWidth(_ c: Int, _ key: String) throws {
            guard c >= 32, c % (c / 32) == 0 else {
                throw ConfigError(key: key, reason: "attention blocks have width/32 heads: width \(c) must be >= 32 and divisible by \(Swift.max(1, c / 32))")
            }
        }

        var c = inChannels, level = 0, deepest = 0, shortest = 1
        /// A fixed-kernel resampler at `level` needs `samples` there.
        func resampler(at level: Int, needs samples: Int) { shortest = Swift.max(shortest, samples << level) }
        var skips: [(channels: Int, level: Int)] = []
        for (i, type) in downBlockTypes.enumerated() {
            let expected = i == 0 ? inChannels + extraInChannels : ch[i - 1]
            let out = ch[i]
            switch type {
            case .downResnetBlock1D:
                try needMLP(type.rawValue, "down_block_types")
                try temporalWidth(out, "block_out_channels")
                guard c == expected else {
                    throw ConfigError(key: "extra_in_channels", reason: "down block \(i) expects \(expected) input channels, gets \(c)")
                }
                skips.append((out, level))
                if i < n - 1 || downsampleEachBlock { level += 1 }
            case .downBlock1D, .attnDownBlock1D:
                if type == .attnDownBlock1D { try attentionWidth(out, "block_out_channels") }
                guard c == expected else {
                    throw ConfigError(key: "extra_in_channels", reason: "down block \(i) expects \(expected) input channels, gets \(c)")
                }
                resampler(at: level, needs: 4)
                level += 1
                skips.append((out, level))
            case .downBlock1DNoSkip:
                guard !useTimestepEmbedding else {
                    throw ConfigError(key: "use_timestep_embedding", reason: "DownBlock1DNoSkip concatenates the time features over the length: it needs use_timestep_embedding false")
                }
                guard i == 0 else {
                    throw ConfigError(key: "down_block_types", reason: "DownBlock1DNoSkip concatenates the time features to the input: only the first block can")
                }
                guard c + timeProjectionDim == expected else {
                    throw ConfigError(key: "extra_in_channels", reason: "DownBlock1DNoSkip adds the \(timeProjectionDim) time channels to the input: extra_in_channels must be \(timeProjectionDim), got \(extraInChannels)")
                }
                skips.append((out, level))
            }
            if i == 0 && type != .downBlock1DNoSkip && extraInChannels != 0 {
                throw ConfigError(key: "extra_in_channels", reason: "only a first DownBlock1DNoSkip takes extra input channels")
            }
            c = out
        }
        let last = ch[n - 1]
        switch midBlockType {
        case .unetMidBlock1D:
            try attentionWidth(last, "block_out_channels")
            // Down and up again: the length must halve exactly.
            deepest = Swift.max(deepest, level + 1)
            resampler(at: level, needs: 4)
            resampler(at: level + 1, needs: 3)
        case .midResTemporalBlock1D:
            try needMLP(midBlockType.rawValue, "mid_block_type")
            try temporalWidth(last, "block_out_channels")
            if downsampleEachBlock { level += 1 }
        case .valueFunctionMidBlock1D:
            try needMLP(midBlockType.rawValue, "mid_block_type")
            guard last % 32 == 0 else {
                throw ConfigError(key: "block_out_channels", reason: "ValueFunctionMidBlock1D narrows \(last) to /2 and /4 with 8-group norms: needs a multiple of 32")
            }
            c = last / 4
            level += 2
        }
        let rev = Array(ch.reversed())
        let final = outBlockType == nil ? outChannels : ch[0]
        var prev = rev[0]
        for (i, type) in upBlockTypes.enumerated() {
            let out = i < upBlockTypes.count - 1 ? rev[i + 1] : final
            let skip = skips.removeLast()
            guard c == prev else {
                throw ConfigError(key: "up_block_types", reason: "up block \(i) expects \(prev) channels, the \(i == 0 ? "mid block gives" : "previous block gives") \(c)")
            }
            guard skip.level == level, skip.channels == prev else {
                throw ConfigError(key: "up_block_types", reason: "up block \(i) meets a skip connection of another length or width (\(type.rawValue) after \(downBlockTypes[n - 1 - i].rawValue))")
            }
            deepest = Swift.max(deepest, level)
            switch type {
            case .upResnetBlock1D:
                try needMLP(type.rawValue, "up_block_types")
                try temporalWidth(out, "block_out_channels")
                if i != n - 1 { level -= 1 }
            case .upBlock1D:
                resampler(at: level, needs: 3)
                level -= 1
            case .attnUpBlock1D:
                try attentionWidth(out, "block_out_channels")
                resampler(at: level, needs: 3)
                level -= 1
            case .upBlock1DNoSkip:
                break
            }
            c = out
            prev = out
        }
        switch outBlockType {
        case .outConv1DBlock:
            guard actFn != nil else { throw ConfigError(key: "act_fn", reason: "OutConv1DBlock needs an activation") }
            guard c == ch[0] else {
                throw ConfigError(key: "out_block_type", reason: "OutConv1DBlock takes block_out_channels[0] = \(ch[0]) channels, gets \(c)")
            }
            guard numGroupsOut >= 1, ch[0] % numGroupsOut == 0 else {
                throw ConfigError(key: "norm_num_groups", reason: "\(numGroupsOut) groups do not divide width \(ch[0])")
            }
            c = outChannels
        case .valueFunction:
            guard actFn != nil else { throw ConfigError(key: "act_fn", reason: "the ValueFunction out block needs an activation") }
            try needMLP("the ValueFunction out block", "out_block_type")
            guard last / 4 >= 2 else { throw ConfigError(key: "block_out_channels", reason: "the ValueFunction out block needs block_out_channels[-1] >= 8") }
        case nil:
            break
        }
        if outBlockType != .valueFunction {
            guard c == outChannels else {
                throw ConfigError(key: "out_channels", reason: "the last block gives \(c) channels, out_channels is \(outChannels)")
            }
            guard level == 0 else {
                throw ConfigError(key: "up_block_types", reason: "the up path ends at 1/\(1 << Swift.max(0, level)) of the input length (level \(level)); it must return to it")
            }
        }
        let multiple = 1 << deepest
        return Plan(lengthMultiple: multiple, minimumLength: (shortest + multiple - 1) / multiple * multiple)
    }
}

extension UNet1DConfig {
    /// The lean default for training on a CPU: ~1 s mono clips at 16 kHz (16384 samples).
    ///
    /// diffusers' RL/Diffuser block family, as `Diffuser`'s U-Net but eight levels deep:
    /// one `DownResnetBlock1D` per level (`layers_per_block` 0) at widths
    /// 16, 16, 32, 32, 64, 64, 128, 128, a `MidResTemporalBlock1D`, seven `UpResnetBlock1D`s
    /// (diffusers' n − 1: the full-length skip is never read) and an `OutConv1DBlock`;
    /// sinusoidal time features through the time MLP (SiLU). 1,297,473 parameters
    /// (+ 16·k with `numClassEmbeds` k).
    ///
    /// Why this shape:
    /// - Every residual block sees the time embedding (and our class embedding, added to it), so
    ///   a pitch label conditions the whole network; Dance Diffusion's blocks see the time only as
    ///   input channels and never a label.
    /// - Seven halvings take 16384 samples to 128 steps of 128 samples each, so the deepest
    ///   convolutions span ~0.1 s, beyond the period of any audible pitch, while the width
    ///   doubles only every second level: the cost stays spread over the levels instead of
    ///   piling up at full length, where only one block and the out block run (at width 16).
    /// - Measured with `diffuse bench model CONFIG --mode train --batch 16` (2 threads, on a
    ///   2-core machine shared with another training run): ~1.3 s per step of 16 × 16384
    ///   samples, forward ~1.9 GFLOP per clip, peak RSS ~1 GB — 5000 steps in under two hours.
    ///   Twice the widths ([32, 32, 32, 64, ...]) took 2.4 s; seven levels [16, 32, 32, 64, 64,
    ///   128, 128] took 1.9 s.
    /// Lengths must be multiples of 128 (`lengthMultiple`).
    public static func lean(sampleSize: Int = 16384, sampleRate: Int = 16000, channels: Int = 1,
                            numClassEmbeds: Int? = nil) -> UNet1DConfig {
        var c = UNet1DConfig()
        c.sampleSize = sampleSize
        c.sampleRate = sampleRate
        c.inChannels = channels
        c.outChannels = channels
        c.extraInChannels = 0
        c.timeEmbeddingType = .positional
        c.timeEmbeddingDim = nil
        c.flipSinToCos = true
        c.freqShift = 0
        c.useTimestepEmbedding = true
        c.actFn = .silu
        c.blockOutChannels = [16, 16, 32, 32, 64, 64, 128, 128]
        c.downBlockTypes = Array(repeating: .downResnetBlock1D, count: c.blockOutChannels.count)
        c.upBlockTypes = Array(repeating: .upResnetBlock1D, count: c.blockOutChannels.count - 1)
        c.midBlockType = .midResTemporalBlock1D
        c.outBlockType = .outConv1DBlock
        c.layersPerBlock = 0
        c.normNumGroups = 8
        c.downsampleEachBlock = false
        c.numClassEmbeds = numClassEmbeds
        return c
    }
}

extension UNet1DConfig: FloatTypedConfig {
    /// The keys `UNet1DModel.__init__` types as float (diffusers 0.42.1).
    public static let floatKeys: Set<String> = ["freq_shift"]
}
