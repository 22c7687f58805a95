import Foundation
import NN

/// transformers' `CLIPTextConfig` (a pipeline's text_encoder/config.json). Keys are transformers'
/// names with its defaults; a key present in the file always wins. Every structural key is
/// read; the generic `PretrainedConfig` keys transformers writes (generation settings, labels,
/// versions...) are kept and written back; any other key is an error naming it, so a config of
/// another model never loads as a wrong CLIP.
public struct CLIPTextConfig: Codable, Equatable, Sendable {
    /// `hidden_act`: transformers' `ACT2FN` names that CLIP checkpoints use.
    public enum HiddenAct: String, Codable, Sendable, CaseIterable {
        /// x · σ(1.702 x), OpenAI CLIP's (SD 1.x).
        case quickGelu = "quick_gelu"
        /// Exact (erf) GELU (SD 2.x's OpenCLIP ViT-H).
        case gelu
        /// GELU with the tanh approximation, under its three transformers names.
        case geluNew = "gelu_new", geluPytorchTanh = "gelu_pytorch_tanh", geluFast = "gelu_fast"
        case relu, silu, swish
    }

    public var vocabSize = 49408
    public var hiddenSize = 512
    public var intermediateSize = 2048
    public var projectionDim: Int? = 512
    public var numHiddenLayers = 12
    public var numAttentionHeads = 8
    public var maxPositionEmbeddings = 77
    public var hiddenAct = HiddenAct.quickGelu
    public var layerNormEps: Float = 1e-5
    public var attentionDropout: Float = 0
    public var initializerRange: Float = 0.02
    public var initializerFactor: Float = 1
    public var padTokenId: Int? = 1
    public var bosTokenId: Int? = 49406
    /// 2 in configs written before transformers PR #24773 (SD 1.x and 2.x folders): the pooled
    /// output is then taken at the largest id of each row (the EOS of CLIP's vocabulary).
    public var eosTokenId: Int? = 49407
    /// `architectures`: `CLIPTextModelWithProjection` adds `text_projection` (SDXL's second encoder).
    public var architectures: [String]? = nil
    /// Generic keys, written back unchanged.
    public var extra: [String: JSONValue] = [:]

    public static let modelType = "clip_text_model"
    public static let architecturesKnown = ["CLIPTextModel", "CLIPTextModelWithProjection"]

    /// `PretrainedConfig` keys that do not change the network (transformers 4 and 5 write them).
    public static let genericKeys: Set<String> = [
        "_name_or_path", "_commit_hash", "_attn_implementation", "_attn_implementation_autoset",
        "transformers_version", "torch_dtype", "dtype", "model_type", "dropout", "use_bfloat16", "torchscript",
        "return_dict", "output_hidden_states", "output_attentions", "pruned_heads", "tie_word_embeddings",
        "chunk_size_feed_forward", "is_encoder_decoder", "is_decoder", "cross_attention_hidden_size",
        "add_cross_attention", "tie_encoder_decoder", "max_length", "min_length", "do_sample", "early_stopping",
        "num_beams", "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p", "typical_p",
        "repetition_penalty", "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size",
        "bad_words_ids", "num_return_sequences", "output_scores", "return_dict_in_generate",
        "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values",
        "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens", "finetuning_task",
        "id2label", "label2id", "num_labels", "tokenizer_class", "prefix", "sep_token_id",
        "decoder_start_token_id", "task_specific_params", "problem_type", "tf_legacy_loss",
        "gradient_checkpointing", "use_cache",
    ]

    /// Largest sizes accepted (far above any CLIP; they bound what a hostile file can allocate).
    static let maxWidth = 1 << 16, maxVocabulary = 10_000_000, maxLayers = 1024, maxPositions = 1 << 20
    /// Largest parameter count accepted: 4 G scalars (16 GB in F32).
    static let maxParameters = 4.0e9

    public init() {}

    public init(from decoder: Decoder) throws {
        let r = try ConfigReader(decoder)
        let d = CLIPTextConfig()
        vocabSize = try r.get("vocab_size", d.vocabSize)
        hiddenSize = try r.get("hidden_size", d.hiddenSize)
        intermediateSize = try r.get("intermediate_size", d.intermediateSize)
        projectionDim = try r.optional("projection_dim", d.projectionDim)
        numHiddenLayers = try r.get("num_hidden_layers", d.numHiddenLayers)
        numAttentionHeads = try r.get("num_attention_heads", d.numAttentionHeads)
        maxPositionEmbeddings = try r.get("max_position_embeddings", d.maxPositionEmbeddings)
        let act: String = try r.get("hidden_act", d.hiddenAct.rawValue)
        guard let a = HiddenAct(rawValue: act) else {
            throw ConfigError(key: "hidden_act", reason: "\"\(act)\" is not supported (one of \(HiddenAct.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        hiddenAct = a
        layerNormEps = try r.get("layer_norm_eps", d.layerNormEps)
        attentionDropout = try r.get("attention_dropout", d.attentionDropout)
        initializerRange = try r.get("initializer_range", d.initializerRange)
        initializerFactor = try r.get("initializer_factor", d.initializerFactor)
        padTokenId = try r.optional("pad_token_id", d.padTokenId)
        bosTokenId = try r.optional("bos_token_id", d.bosTokenId)
        do { eosTokenId = try r.optional("eos_token_id", d.eosTokenId) } catch {
            throw ConfigError(key: "eos_token_id", reason: "must be one integer (a list of EOS ids is not supported)")
        }
        architectures = try r.optional("architectures", d.architectures)
        extra = try r.remaining()
        if let modelType = extra["model_type"]?.string, modelType != Self.modelType {
            throw ConfigError(key: "model_type", reason: "\"\(modelType)\" is not a CLIP text model (\"\(Self.modelType)\")")
        }
        // diffusers passes the tokenizer's padding mask when this is set; we never do.
        if extra["use_attention_mask"]?.bool == true {
            throw ConfigError(key: "use_attention_mask", reason: "a padding attention mask is not supported")
        }
        if let unknown = extra.keys.sorted().first(where: { !Self.genericKeys.contains($0) && $0 != "use_attention_mask" }) {
            throw ConfigError(key: unknown, reason: "not a CLIPTextConfig key: this loader does not know what it changes")
        }
        try validate()
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: ConfigKey.self)
        for (k, v) in extra { try c.encode(v, forKey: ConfigKey(k)) }
        if extra["model_type"] == nil { try c.encode(Self.modelType, forKey: ConfigKey("model_type")) }
        try c.encode(vocabSize, forKey: ConfigKey("vocab_size"))
        try c.encode(hiddenSize, forKey: ConfigKey("hidden_size"))
        try c.encode(intermediateSize, forKey: ConfigKey("intermediate_size"))
        try c.encode(projectionDim, forKey: ConfigKey("projection_dim"))
        try c.encode(numHiddenLayers, forKey: ConfigKey("num_hidden_layers"))
        try c.encode(numAttentionHeads, forKey: ConfigKey("num_attention_heads"))
        try c.encode(maxPositionEmbeddings, forKey: ConfigKey("max_position_embeddings"))
        try c.encode(hiddenAct, forKey: ConfigKey("hidden_act"))
        try c.encode(layerNormEps, forKey: ConfigKey("layer_norm_eps"))
        try c.encode(attentionDropout, forKey: ConfigKey("attention_dropout"))
        try c.encode(initializerRange, forKey: ConfigKey("initializer_range"))
        try c.encode(initializerFactor, forKey: ConfigKey("initializer_factor"))
        try c.encode(padTokenId, forKey: ConfigKey("pad_token_id"))
        try c.encode(bosTokenId, forKey: ConfigKey("bos_token_id"))
        try c.encode(eosTokenId, forKey: ConfigKey("eos_token_id"))
        if let architectures { try c.encode(architectures, forKey: ConfigKey("architectures")) }
    }

    /// Impossible or oversized values, as a `ConfigError` naming the key, before anything is allocated.
    public func validate() throws {
        func positive(_ key: String, _ v: Int, max: Int) throws {
            guard v >= 1, v <= max else { throw ConfigError(key: key, reason: "must be in 1...\(max), got \(v)") }
        }
        try positive("vocab_size", vocabSize, max: Self.maxVocabulary)
        try positive("hidden_size", hiddenSize, max: Self.maxWidth)
        try positive("intermediate_size", intermediateSize, max: 8 * Self.maxWidth)
        try positive("num_hidden_layers", numHiddenLayers, max: Self.maxLayers)
        try positive("num_attention_heads", numAttentionHeads, max: hiddenSize)
        try positive("max_position_embeddings", maxPositionEmbeddings, max: Self.maxPositions)
        guard hiddenSize % numAttentionHeads == 0 else {
            throw ConfigError(key: "num_attention_heads", reason: "\(numAttentionHeads) heads do not divide hidden_size \(hiddenSize)")
        }
        guard layerNormEps > 0, layerNormEps.isFinite else { throw ConfigError(key: "layer_norm_eps", reason: "must be positive") }
        if let unknown = architectures?.first(where: { !Self.architecturesKnown.contains($0) }) {
            throw ConfigError(key: "architectures", reason: "\"\(unknown)\" is not one of \(Self.architecturesKnown.joined(separator: ", "))")
        }
        if hasProjection {
            guard let p = projectionDim else { throw ConfigError(key: "projection_dim", reason: "required by CLIPTextModelWithProjection") }
            try positive("projection_dim", p, max: Self.maxWidth)
        }
        for (key, id) in [("eos_token_id", eosTokenId), ("bos_token_id", bosTokenId), ("pad_token_id", padTokenId)] {
            if let id, id < 0 { throw ConfigError(key: key, reason: "must be >= 0, got \(id)") }
        }
        let h = Double(hiddenSize)
        let perLayer = 4 * (h * h + h) + 2 * h * Double(intermediateSize) + Double(intermediateSize) + 5 * h
        let total = Double(vocabSize + maxPositionEmbeddings) * h + Double(numHiddenLayers) * perLayer
            + Double(hasProjection ? projectionDim ?? 0 : 0) * h
        guard total <= Self.maxParameters else {
            throw ConfigError(key: "hidden_size", reason: "the model would have \(Int(total)) parameters, more than the \(Int(Self.maxParameters)) accepted")
        }
    }

    public var hasProjection: Bool { architectures?.contains("CLIPTextModelWithProjection") ?? false }
}

extension CLIPTextConfig: FloatTypedConfig {
    /// transformers 5's `@strict` CLIPTextConfig refuses `1` where it types a float (`layer_norm_eps`,
    /// `initializer_range`, `initializer_factor`); `attention_dropout` is `int | float` and
    /// `dropout` and the generation floats are transformers 4's, written as floats as it wrote them.
    public static let floatKeys: Set<String> = [
        "layer_norm_eps", "attention_dropout", "initializer_range", "initializer_factor", "dropout",
        "temperature", "top_p", "typical_p", "repetition_penalty", "length_penalty", "diversity_penalty",
    ]
}
