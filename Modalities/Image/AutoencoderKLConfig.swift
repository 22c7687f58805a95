import Foundation
import NN

/// diffusers' `AutoencoderKL` config (a vae folder's config.json), as Stable Diffusion 1.x/2.x
/// use it. Keys are diffusers' names and defaults are diffusers' own (a key present in the file
/// always wins); unknown keys are kept and written back, as diffusers ignores them too.
/// Values this version cannot run (per-channel `latents_mean`/`latents_std`, other block
/// types) are a `ConfigError` naming the key.
public struct AutoencoderKLConfig: Codable, Equatable, Sendable {
    public enum DownBlockType: String, Codable, Sendable, CaseIterable { case downEncoderBlock2D = "DownEncoderBlock2D" }
    public enum UpBlockType: String, Codable, Sendable, CaseIterable { case upDecoderBlock2D = "UpDecoderBlock2D" }

    public var inChannels = 3
    public var outChannels = 3
    public var downBlockTypes: [DownBlockType] = [.downEncoderBlock2D]
    public var upBlockTypes: [UpBlockType] = [.upDecoderBlock2D]
    public var blockOutChannels = [64]
    public var layersPerBlock = 1
    public var actFn = Activation.silu
    public var latentChannels = 4
    public var normNumGroups = 32
    /// [h, w]; an int in diffusers' own configs (written back as one when h == w). Tiling uses h,
    /// as diffusers does.
    public var sampleSize = [32, 32]
    /// z = scaling_factor · latent before the denoiser; decode takes latent = z / scaling_factor.
    public var scalingFactor: Float = 0.18215
    /// Used by SD3/Flux pipelines ((z / scale) + shift); SD 1.x/2.x have none. Kept, not applied here.
    public var shiftFactor: Float? = nil
    /// Whether diffusers runs this VAE in float32 under a half-precision pipeline. We always run
    /// float32; kept and written back.
    public var forceUpcast = true
    public var useQuantConv = true
    public var usePostQuantConv = true
    public var midBlockAddAttention = true
    /// Keys this version does not know, written back unchanged.
    public var extra: [String: JSONValue] = [:]

    public static let className = "AutoencoderKL"

    /// diffusers' `enable_tiling` overlap between neighbouring tiles.
    public static let tileOverlapFactor = 0.25

    public init() {}

    public init(from decoder: Decoder) throws { try self.init(reading: ConfigReader(decoder)) }

    public init(reading r: ConfigReader) throws {
        let d = AutoencoderKLConfig()
        inChannels = try r.get("in_channels", d.inChannels)
        outChannels = try r.get("out_channels", d.outChannels)
        downBlockTypes = try r.get("down_block_types", d.downBlockTypes)
        upBlockTypes = try r.get("up_block_types", d.upBlockTypes)
        blockOutChannels = try r.get("block_out_channels", d.blockOutChannels)
        layersPerBlock = try r.get("layers_per_block", d.layersPerBlock)
        actFn = try r.get("act_fn", d.actFn)
        latentChannels = try r.get("latent_channels", d.latentChannels)
        normNumGroups = try r.get("norm_num_groups", d.normNumGroups)
        if let s: Int = try? r.optional("sample_size") { sampleSize = [s, s] }
        else { sampleSize = try r.get("sample_size", d.sampleSize) }
        scalingFactor = try r.get("scaling_factor", d.scalingFactor)
        shiftFactor = try r.optional("shift_factor", d.shiftFactor)
        for key in ["latents_mean", "latents_std"] {
            // SDXL-family and later VAEs normalise latents per channel; SD 1.x/2.x have null here.
            if let v: JSONValue = try r.optional(key), v != .null {
                throw ConfigError(key: key, reason: "per-channel latent statistics are not supported (only null)")
            }
        }
        forceUpcast = try r.get("force_upcast", d.forceUpcast)
        useQuantConv = try r.get("use_quant_conv", d.useQuantConv)
        usePostQuantConv = try r.get("use_post_quant_conv", d.usePostQuantConv)
        midBlockAddAttention = try r.get("mid_block_add_attention", d.midBlockAddAttention)
        extra = try r.remaining()
        try validate()
    }

    public func encode(to encoder: Encoder) throws {
        var w = try ConfigWriter(encoder, className: Self.className, extra: extra)
        try w.set("in_channels", inChannels)
        try w.set("out_channels", outChannels)
        try w.set("down_block_types", downBlockTypes)
        try w.set("up_block_types", upBlockTypes)
        try w.set("block_out_channels", blockOutChannels)
        try w.set("layers_per_block", layersPerBlock)
        try w.set("act_fn", actFn)
        try w.set("latent_channels", latentChannels)
        try w.set("norm_num_groups", normNumGroups)
        if sampleSize.count == 2, sampleSize[0] == sampleSize[1] { try w.set("sample_size", sampleSize[0]) } else { try w.set("sample_size", sampleSize) }
        try w.set("scaling_factor", scalingFactor)
        try w.setOptional("shift_factor", shiftFactor)
        try w.setOptional("latents_mean", [Float]?.none)
        try w.setOptional("latents_std", [Float]?.none)
        try w.set("force_upcast", forceUpcast)
        try w.set("use_quant_conv", useQuantConv)
        try w.set("use_post_quant_conv", usePostQuantConv)
        try w.set("mid_block_add_attention", midBlockAddAttention)
    }

    /// Largest parameter count a config may ask for (4 G scalars, 16 GB in float32; SD's VAE
    /// has 84 M): a hostile config is refused before anything is allocated.
    static let maxParameters = 1 << 32

    /// Impossible or unsupported values, as a `ConfigError` naming the key.
    public func validate() throws {
        let n = blockOutChannels.count
        guard (1...16).contains(n), blockOutChannels.allSatisfy({ (1...(1 << 16)).contains($0) }) else {
            throw ConfigError(key: "block_out_channels", reason: "needs 1 to 16 widths in 1...65536, got \(blockOutChannels)")
        }
        guard downBlockTypes.count == n else {
            throw ConfigError(key: "down_block_types", reason: "\(downBlockTypes.count) blocks for \(n) block_out_channels")
        }
        guard upBlockTypes.count == n else {
            throw ConfigError(key: "up_block_types", reason: "\(upBlockTypes.count) blocks for \(n) block_out_channels")
        }
        guard (1...(1 << 16)).contains(inChannels) else { throw ConfigError(key: "in_channels", reason: "must be in 1...65536, got \(inChannels)") }
        guard (1...(1 << 16)).contains(outChannels) else { throw ConfigError(key: "out_channels", reason: "must be in 1...65536, got \(outChannels)") }
        guard (1...(1 << 16)).contains(latentChannels) else {
            throw ConfigError(key: "latent_channels", reason: "must be in 1...65536, got \(latentChannels)")
        }
        guard (1...256).contains(layersPerBlock) else {
            throw ConfigError(key: "layers_per_block", reason: "must be in 1...256, got \(layersPerBlock)")
        }
        for c in blockOutChannels where normNumGroups < 1 || c % normNumGroups != 0 {
            throw ConfigError(key: "norm_num_groups", reason: "\(normNumGroups) groups do not divide block width \(c)")
        }
        if actFn == .geluTanh { throw ConfigError(key: "act_fn", reason: "diffusers' VAE resnets take swish, silu, mish, gelu or relu") }
        guard scalingFactor.isFinite, scalingFactor != 0 else {
            throw ConfigError(key: "scaling_factor", reason: "must be finite and non-zero, got \(scalingFactor)")
        }
        if let s = shiftFactor, !s.isFinite { throw ConfigError(key: "shift_factor", reason: "must be finite or null") }
        // Tiling cuts the latent into tiles of sample_size / 2^(levels − 1) and steps by 3/4 of
        // that: fewer than 2 latent pixels per tile would step by 0.
        guard sampleSize.count == 2, sampleSize.allSatisfy({ $0 >= 1 && $0 <= 1 << 24 }),
              sampleSize[0] >> (n - 1) >= 2 else {
            throw ConfigError(key: "sample_size", reason: "must be an int (or [h, w]) of at least \(2 << (n - 1)) for \(n) levels, got \(sampleSize)")
        }
        guard parameterCount <= Self.maxParameters else {
            throw ConfigError(key: "block_out_channels", reason: "\(parameterCount) parameters (more than \(Self.maxParameters))")
        }
    }

    /// The number of parameters the model will have (counted from the widths, before allocating).
    /// Only called on validated sizes: every product here stays far below Int.max.
    public var parameterCount: Int {
        let ch = blockOutChannels, g = latentChannels
        func conv(_ i: Int, _ o: Int, _ k: Int) -> Int { i * o * k * k + o }
        func resnet(_ i: Int, _ o: Int) -> Int { 2 * i + conv(i, o, 3) + 2 * o + conv(o, o, 3) + (i != o ? conv(i, o, 1) : 0) }
        func mid(_ c: Int) -> Int { 2 * resnet(c, c) + (midBlockAddAttention ? 2 * c + 4 * (c * c + c) : 0) }
        var total = conv(inChannels, ch[0], 3) + mid(ch[n - 1]) + 2 * ch[n - 1] + conv(ch[n - 1], 2 * g, 3)
        var prev = ch[0]
        for (i, c) in ch.enumerated() {
            total += resnet(prev, c) + (layersPerBlock - 1) * resnet(c, c) + (i < n - 1 ? conv(c, c, 3) : 0)
            prev = c
        }
        total += conv(g, ch[n - 1], 3) + mid(ch[n - 1]) + 2 * ch[0] + conv(ch[0], outChannels, 3)
        prev = ch[n - 1]
        for (i, c) in ch.reversed().enumerated() {
            total += resnet(prev, c) + layersPerBlock * resnet(c, c) + (i < n - 1 ? conv(c, c, 3) : 0)
            prev = c
        }
        return total + (useQuantConv ? conv(2 * g, 2 * g, 1) : 0) + (usePostQuantConv ? conv(g, g, 1) : 0)
    }

    private var n: Int { blockOutChannels.count }

    /// Image pixels per latent pixel along each side: 2^(levels − 1) (8 for SD).
    public var downFactor: Int { 1 << (blockOutChannels.count - 1) }

    /// diffusers' `tile_sample_min_size`: image tiles of sample_size² (512 for SD 1.5).
    public var tileSampleMinSize: Int { sampleSize[0] }

    /// diffusers' `tile_latent_min_size`: int(sample_size / 2^(levels − 1)) (64 for SD 1.5).
    public var tileLatentMinSize: Int { Int(Double(sampleSize[0]) / Double(downFactor)) }
}

extension AutoencoderKLConfig: FloatTypedConfig {
    /// The keys `AutoencoderKL.__init__` types as float (diffusers 0.42.1).
    public static let floatKeys: Set<String> = ["scaling_factor", "shift_factor"]
}
