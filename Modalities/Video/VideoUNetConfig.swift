import Foundation
import NN
import Image

/// The config of `VideoUNetModel` (config.json, `_class_name` "VideoUNetModel"): every
/// UNet2DModel key of the spatial U-Net at the top level, as diffusers spells them, plus the
/// temporal keys below. An image model's config.json with `_class_name` changed is therefore a
/// valid video config (with the temporal defaults). Unknown keys are kept and written back.
public struct VideoUNetConfig: Codable, Equatable, Sendable {
    /// How a temporal attention layer knows where a frame sits in the clip.
    public enum FramePosition: String, Codable, Sendable, CaseIterable {
        /// A fixed sinusoidal embedding of the frame index (Vaswani et al. 2017), added to the
        /// normalised states before q, k and v: works for any number of frames.
        case sinusoidal
        /// None: attention over frames is then blind to their order (for ablations).
        case none
    }

    /// The per-frame image U-Net (its keys: `block_out_channels`, `num_class_embeds`, ...).
    public var spatial: UNet2DConfig
    /// Frames of the clips the model is trained on (`num_frames`); it runs on other counts too.
    public var numFrames = 16
    /// Frame rate of those clips (`frame_rate`, ours): what the data is resampled to and
    /// what generated clips play at.
    public var frameRate: Double = 8
    /// Channels per head of temporal attention (`temporal_attention_head_dim`); nil: one head.
    public var temporalAttentionHeadDim: Int? = nil
    /// A temporal convolution (kernel 3 over frames, zero-initialised) before each temporal
    /// attention (`temporal_conv`).
    public var temporalConv = false
    public var framePosition = FramePosition.sinusoidal

    public static let className = "VideoUNetModel"
    public static let temporalKeys = ["num_frames", "frame_rate", "temporal_attention_head_dim", "temporal_conv", "frame_position"]

    public init(spatial: UNet2DConfig = UNet2DConfig()) { self.spatial = spatial }

    public init(from decoder: Decoder) throws {
        let r = try ConfigReader(decoder)
        let d = VideoUNetConfig()
        numFrames = try r.get("num_frames", d.numFrames)
        frameRate = try r.get("frame_rate", d.frameRate)
        temporalAttentionHeadDim = try r.optional("temporal_attention_head_dim", d.temporalAttentionHeadDim)
        temporalConv = try r.get("temporal_conv", d.temporalConv)
        framePosition = try r.get("frame_position", d.framePosition)
        // The spatial reader comes last: it keeps whatever no one asked for as its `extra`.
        spatial = try UNet2DConfig(reading: r)
        try validate()
    }

    public func encode(to encoder: Encoder) throws {
        var w = try ConfigWriter(encoder, className: Self.className, extra: spatial.extra)
        try spatial.write(to: &w)
        try w.set("num_frames", numFrames)
        try w.set("frame_rate", frameRate)
        try w.setOptional("temporal_attention_head_dim", temporalAttentionHeadDim)
        try w.set("temporal_conv", temporalConv)
        try w.set("frame_position", framePosition)
    }

    /// Impossible values, as a `ConfigError` naming the key.
    public func validate() throws {
        try spatial.validate()
        guard numFrames >= 1 && numFrames <= 1024 else { throw ConfigError(key: "num_frames", reason: "must be in 1...1024, got \(numFrames)") }
        guard frameRate > 0 && frameRate <= 1000 else { throw ConfigError(key: "frame_rate", reason: "must be in (0, 1000], got \(frameRate)") }
        if let h = temporalAttentionHeadDim {
            guard h > 0 else { throw ConfigError(key: "temporal_attention_head_dim", reason: "must be positive") }
            for c in spatial.blockOutChannels where c % h != 0 {
                throw ConfigError(key: "temporal_attention_head_dim", reason: "\(h) does not divide block width \(c)")
            }
        }
    }

    public var isClassConditional: Bool { spatial.isClassConditional }
    /// Frame height and width (the spatial `sample_size`, 32×32 when unset).
    public var frameSize: [Int] { spatial.sampleSize ?? [32, 32] }
}

extension VideoUNetConfig: FloatTypedConfig {
    /// The spatial UNet2DModel's float keys, and the frame rate.
    public static let floatKeys: Set<String> = UNet2DConfig.floatKeys.union(["frame_rate"])
}
