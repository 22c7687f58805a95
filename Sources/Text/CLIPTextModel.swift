import Foundation
import Tensor
import NN

/// CLIP's multi-head self-attention (transformers' `CLIPAttention`): q/k/v/out projections with
/// biases, heads of hidden/heads, causal in the text model. Not NN's `Attention`, whose
/// checkpoint names are diffusers' (`to_q`...); the attention itself is the shared kernel.
///
///     x: [B, L, C] -> q, k, v: [B, L, C] -> softmax(q kᵀ / √d, causal) v per head -> out_proj
public final class CLIPAttention: Module {
    public let qProj: Linear, kProj: Linear, vProj: Linear, outProj: Linear
    public let heads: Int
    public let causal: Bool

    public init(dim: Int, heads: Int, causal: Bool) {
        precondition(dim % heads == 0, "CLIPAttention: \(heads) heads do not divide \(dim)")
        qProj = Linear(dim, dim); kProj = Linear(dim, dim); vProj = Linear(dim, dim); outProj = Linear(dim, dim)
        self.heads = heads
        self.causal = causal
    }

    public func visit(_ v: inout ModuleVisitor) {
        v("k_proj", kProj)
        v("v_proj", vProj)
        v("q_proj", qProj)
        v("out_proj", outProj)
    }

    /// x: [B, L, C] -> [B, L, C]
    public func callAsFunction(_ x: Tensor) -> Tensor {
        outProj(Tensor.multiHeadAttention(query: qProj(x), key: kProj(x), value: vProj(x), heads: heads, causal: causal))
    }
}

/// transformers' `CLIPMLP`: fc1, `hidden_act`, fc2.
public final class CLIPMLP: Module {
    public let fc1: Linear, fc2: Linear
    public let act: CLIPTextConfig.HiddenAct

    public init(dim: Int, hidden: Int, act: CLIPTextConfig.HiddenAct) {
        fc1 = Linear(dim, hidden); fc2 = Linear(hidden, dim)
        self.act = act
    }

    public func visit(_ v: inout ModuleVisitor) {
        v("fc1", fc1)
        v("fc2", fc2)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { fc2(act(fc1(x))) }
}

extension CLIPTextConfig.HiddenAct {
    public func callAsFunction(_ x: Tensor) -> Tensor {
        switch self {
        case .quickGelu: return x * x.affine(scale: 1.702, shift: 0).sigmoid()
        case .gelu: return x.gelu()
        case .geluNew, .geluPytorchTanh, .geluFast: return x.gelu(approximateTanh: true)
        case .relu: return x.relu()
        case .silu, .swish: return x.silu()
        }
    }
}

/// transformers' `CLIPEncoderLayer`: pre-LayerNorm residual blocks.
///
///     x = x + self_attn(layer_norm1(x))
///     x = x + mlp(layer_norm2(x))
public final class CLIPEncoderLayer: Module {
    public let selfAttn: CLIPAttention, layerNorm1: LayerNorm, mlp: CLIPMLP, layerNorm2: LayerNorm

    public init(_ c: CLIPTextConfig) {
        selfAttn = CLIPAttention(dim: c.hiddenSize, heads: c.numAttentionHeads, causal: true)
        layerNorm1 = LayerNorm(c.hiddenSize, eps: c.layerNormEps)
        mlp = CLIPMLP(dim: c.hiddenSize, hidden: c.intermediateSize, act: c.hiddenAct)
        layerNorm2 = LayerNorm(c.hiddenSize, eps: c.layerNormEps)
    }

    public func visit(_ v: inout ModuleVisitor) {
        v("self_attn", selfAttn)
        v("layer_norm1", layerNorm1)
        v("mlp", mlp)
        v("layer_norm2", layerNorm2)
    }

    /// x: [B, L, C] -> [B, L, C]
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let h = x + selfAttn(layerNorm1(x))
        return h + mlp(layerNorm2(h))
    }
}

/// What the text encoder returns for a batch of id rows.
public struct CLIPTextOutput {
    /// [B, L, C]: the last layer's output through `final_layer_norm` (transformers' `last_hidden_state`).
    public let lastHiddenState: Tensor
    /// num_hidden_layers + 1 tensors [B, L, C]: the embeddings, then each layer's output (before
    /// the final norm), as transformers' `hidden_states` with `output_hidden_states=True`.
    public let hiddenStates: [Tensor]
    /// [B, C]: `lastHiddenState` at each row's EOS (transformers' `pooler_output`).
    public let pooled: Tensor
    /// [B, projection_dim]: `text_projection(pooled)`, for `CLIPTextModelWithProjection` only.
    public let textEmbeds: Tensor?
}

/// transformers' `CLIPTextModel` (and `CLIPTextModelWithProjection`), the text encoder of
/// Stable Diffusion 1.x/2.x (Radford et al. 2021, "Learning Transferable Visual Models From
/// Natural Language Supervision").
///
///     ids: [B, L] -> token_embedding(ids) + position_embedding(0..<L)   [B, L, C]
///         -> num_hidden_layers × CLIPEncoderLayer (causal self-attention)  -> hidden_states
///         -> final_layer_norm                                              -> last_hidden_state
///     pooled[b] = last_hidden_state[b, eos position of row b]
///
/// Checkpoint names are transformers 5's (`embeddings.token_embedding.weight`, `encoder.layers.N...`,
/// `final_layer_norm.*`); files written by transformers 4 (`text_model.` prefix, and sometimes
/// the `embeddings.position_ids` buffer) load too, see `load(safetensors:)`.
public final class CLIPTextModel: Module {
    public let config: CLIPTextConfig
    public let tokenEmbedding: Embedding, positionEmbedding: Embedding
    public let layers: [CLIPEncoderLayer]
    public let finalLayerNorm: LayerNorm
    public let textProjection: Linear?

    /// A model with random weights (validated config: nothing oversized is allocated).
    public init(config: CLIPTextConfig) throws {
        try config.validate()
        self.config = config
        tokenEmbedding = Embedding(config.vocabSize, config.hiddenSize)
        positionEmbedding = Embedding(config.maxPositionEmbeddings, config.hiddenSize)
        layers = (0..<config.numHiddenLayers).map { _ in CLIPEncoderLayer(config) }
        finalLayerNorm = LayerNorm(config.hiddenSize, eps: config.layerNormEps)
        textProjection = config.hasProjection ? Linear(config.hiddenSize, config.projectionDim!, bias: false) : nil
    }

    public func visit(_ v: inout ModuleVisitor) {
        v("embeddings.token_embedding", tokenEmbedding)
        v("embeddings.position_embedding", positionEmbedding)
        v("encoder.layers", layers)
        v("final_layer_norm", finalLayerNorm)
        v("text_projection", textProjection)
    }

    /// Why `ids` cannot be encoded (ragged rows, too long, ids outside the vocabulary), or nil.
    public func problem(with ids: [[Int]]) -> String? {
        guard let l = ids.first?.count, l >= 1 else { return "no ids" }
        if ids.contains(where: { $0.count != l }) { return "rows of different lengths" }
        if l > config.maxPositionEmbeddings {
            return "\(l) ids per row, more than max_position_embeddings \(config.maxPositionEmbeddings)"
        }
        if let bad = ids.lazy.flatMap({ $0 }).first(where: { $0 < 0 || $0 >= self.config.vocabSize }) {
            return "id \(bad) outside the vocabulary of \(config.vocabSize)"
        }
        return nil
    }

    /// Encodes rows of ids (equal lengths ≤ max_position_embeddings; see `problem(with:)`).
    public func callAsFunction(_ ids: [[Int]]) -> CLIPTextOutput {
        if let p = problem(with: ids) { preconditionFailure("CLIPTextModel: \(p)") }
        let b = ids.count, l = ids[0].count, c = config.hiddenSize
        // [(B L), C] + [L, C] broadcast over B -> [B, L, C]
        let tokens = tokenEmbedding(ids.flatMap { $0 }).reshaped([b, l, c])
        var h = tokens + positionEmbedding(Array(0..<l)).reshaped([1, l, c])
        var hidden = [h]
        for layer in layers {
            h = layer(h)
            hidden.append(h)
        }
        let last = finalLayerNorm(h)
        // EOS positions: the largest id of each row for the legacy eos_token_id 2 (or none),
        // else the first position holding eos_token_id (0 when absent, as torch's argmax of zeros).
        let eos = config.eosTokenId
        let positions = ids.map { row -> Int in
            if eos == nil || eos == 2 {
                var best = 0
                for i in row.indices where row[i] > row[best] { best = i }  // the first maximum, as torch.argmax
                return best
            }
            return row.firstIndex(of: eos!) ?? 0
        }
        // [B, L, C] -> [(B L), C] -> rows b·L + position -> [B, C]
        let pooled = last.reshaped([b * l, c]).embedding(positions.enumerated().map { $0 * l + $1 })
        return CLIPTextOutput(lastHiddenState: last, hiddenStates: hidden, pooled: pooled,
                              textEmbeds: textProjection.map { $0(pooled) })
    }

    /// The prompt embeddings a Stable Diffusion pipeline conditions on, as diffusers'
    /// `encode_prompt`: `last_hidden_state` without clip skip, else
    /// `final_layer_norm(hidden_states[-(clipSkip + 1)])` (clip skip 1 = the penultimate layer).
    /// clipSkip must be in 0...num_hidden_layers.
    public func promptEmbeddings(_ ids: [[Int]], clipSkip: Int? = nil) -> Tensor {
        let out = self(ids)
        guard let s = clipSkip, s > 0 else { return out.lastHiddenState }
        precondition(s <= config.numHiddenLayers, "clip skip \(s) outside 0...\(config.numHiddenLayers)")
        return finalLayerNorm(out.hiddenStates[out.hiddenStates.count - 1 - s])
    }
}

// MARK: Folders and checkpoints

/// A text encoder folder that could not be read, with the path and the reason.
public struct TextEncoderError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let reason: String
    public init(path: String, reason: String) { self.path = path; self.reason = reason }
    public var description: String { "\(path): \(reason)" }
}

/// A transformers 4 or 5 CLIP text checkpoint seen under this model's names: only names under
/// `prefix` (e.g. an original SD 1.x file's `cond_stage_model.transformer.`), that prefix and
/// then `text_model.` removed, the non-persistent `embeddings.position_ids` buffer (saved by
/// transformers before 4.31) dropped.
struct CLIPCheckpointNames<Source: TensorSource>: TensorSource {
    let base: Source
    let fileName: [String: String]  // model name -> name in the file

    init(_ base: Source, prefix: String = "") {
        self.base = base
        var map: [String: String] = [:]
        for name in base.tensorNames where name.hasPrefix(prefix) {
            var short = String(name.dropFirst(prefix.count))
            if short.hasPrefix("text_model.") { short.removeFirst("text_model.".count) }
            if short == "embeddings.position_ids" { continue }
            map[short] = name
        }
        fileName = map
    }

    var sourceName: String { base.sourceName }
    var tensorNames: [String] { Array(fileName.keys) }
    func shape(of name: String) -> [Int]? { fileName[name].flatMap { base.shape(of: $0) } }
    func tensor(named name: String) throws -> Tensor { try base.tensor(named: fileName[name]!) }
    func loadHalf(named name: String, into target: Tensor) throws -> Bool { try base.loadHalf(named: fileName[name]!, into: target) }
}

extension CLIPTextModel {
    public static let weightsName = "model.safetensors"

    /// Loads weights (F32/F16/BF16) named by transformers 4 (`text_model.*`) or 5; every missing,
    /// unexpected or mis-shaped tensor is reported at once (`CheckpointMismatch`).
    /// `keepHalf`: F16/BF16 layer weights stay 16-bit in memory (inference; see `Module.load`).
    public func load(safetensors url: URL, keepHalf: Bool = false) throws {
        try load(checkpoint: try SafeTensorsFile(url: url), keepHalf: keepHalf)
    }

    /// Loads the tensors under `prefix` of any source, named as in `load(safetensors:)` after
    /// the prefix (an original-layout SD 1.x file: `cond_stage_model.transformer.`); tensors
    /// outside the prefix are ignored, every one inside must fit.
    public func load(checkpoint source: some TensorSource, prefix: String = "", keepHalf: Bool = false) throws {
        try load(from: CLIPCheckpointNames(source, prefix: prefix), keepHalf: keepHalf)
    }

    /// Loads a text encoder folder (config.json + model.safetensors), a pipeline folder
    /// (model_index.json + text_encoder/), or a bare config.json (random weights).
    public static func load(_ url: URL, keepHalf: Bool = false) throws -> CLIPTextModel {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
            throw TextEncoderError(path: url.path, reason: "no such file or folder")
        }
        var configURL = url, weightsURL: URL? = nil
        if isDir.boolValue {
            var folder = url
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("model_index.json").path) {
                folder = url.appendingPathComponent("text_encoder")
            }
            configURL = folder.appendingPathComponent("config.json")
            guard FileManager.default.fileExists(atPath: configURL.path) else {
                throw TextEncoderError(path: folder.path, reason: "no config.json (expected a transformers CLIPTextModel folder)")
            }
            weightsURL = folder.appendingPathComponent(weightsName)
            guard FileManager.default.fileExists(atPath: weightsURL!.path) else {
                throw TextEncoderError(path: folder.path, reason: "no \(weightsName)")
            }
        }
        let config: CLIPTextConfig
        do { config = try ConfigFile.read(CLIPTextConfig.self, from: configURL) } catch let e as ConfigError {
            throw TextEncoderError(path: configURL.path, reason: e.description)
        }
        // Every parameter comes from the file (a strict load): no random draws first.
        let model: CLIPTextModel
        do {
            model = try NNInit.budgeted("CLIPTextModel", bytesPerParameter: keepHalf ? 2 : 4) {
                try weightsURL == nil ? CLIPTextModel(config: config) : NNInit.skippingRandomInit { try CLIPTextModel(config: config) }
            }
        } catch let e as MemoryBudgetError {
            throw TextEncoderError(path: configURL.path, reason: e.description)
        }
        if let weightsURL { try model.load(safetensors: weightsURL, keepHalf: keepHalf) }
        return model
    }

    /// Writes config.json and model.safetensors (transformers 5's names) into `folder`.
    public func save(to folder: URL, dtype: SafeTensorsDType = .F32) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try save(safetensors: folder.appendingPathComponent(Self.weightsName), dtype: dtype, metadata: ["format": "pt"])
        try ConfigFile.write(config, to: folder.appendingPathComponent("config.json"))
    }
}

// MARK: OpenCLIP checkpoints (Stable Diffusion 2.x single files)

/// An OpenCLIP text tower (`cond_stage_model.model.*` in an original-layout SD 2.x file) seen
/// under this model's names, as diffusers' `convert_open_clip_checkpoint` maps it:
///
///     token_embedding.weight, positional_embedding     -> embeddings.{token,position}_embedding.weight
///     transformer.resblocks.N.ln_1 / ln_2              -> encoder.layers.N.layer_norm1 / layer_norm2
///     transformer.resblocks.N.attn.in_proj_{weight,bias} [3C, (C)] -> self_attn.{q,k,v}_proj, rows split in thirds
///     transformer.resblocks.N.attn.out_proj            -> self_attn.out_proj
///     transformer.resblocks.N.mlp.c_fc / c_proj        -> mlp.fc1 / fc2
///     ln_final                                         -> final_layer_norm
///     text_projection [C, P]                           -> text_projection.weight [P, C] (projection models only)
///
/// Ignored, as diffusers does: resblocks from num_hidden_layers on (SD 2.x conditions on the
/// penultimate layer: its config has 23 of OpenCLIP's 24), `text_projection` for a model without
/// one, `logit_scale` and `attn_mask`. Any other tensor under the prefix stays unexpected.
struct OpenCLIPTextNames<Source: TensorSource>: TensorSource {
    enum Part { case whole, rows(Range<Int>), transposed }
    let base: Source
    let entries: [String: (file: String, part: Part)]

    init(_ base: Source, prefix: String, layers: Int, hidden c: Int, hasProjection: Bool) {
        self.base = base
        var map: [String: (String, Part)] = [:]
        for name in base.tensorNames where name.hasPrefix(prefix) {
            let key = String(name.dropFirst(prefix.count))
            switch key {
            case "token_embedding.weight": map["embeddings.token_embedding.weight"] = (name, .whole); continue
            case "positional_embedding": map["embeddings.position_embedding.weight"] = (name, .whole); continue
            case "ln_final.weight", "ln_final.bias":
                map["final_layer_norm." + key.dropFirst("ln_final.".count)] = (name, .whole); continue
            case "text_projection":
                if hasProjection { map["text_projection.weight"] = (name, .transposed) }
                continue
            case "logit_scale", "attn_mask": continue
            default: break
            }
            let parts = key.split(separator: ".", maxSplits: 3).map(String.init)
            guard parts.count == 4, parts[0] == "transformer", parts[1] == "resblocks", let n = Int(parts[2]) else {
                map["(openclip) " + key] = (name, .whole)  // unexpected
                continue
            }
            if n >= layers { continue }
            let layer = "encoder.layers.\(n)."
            switch parts[3] {
            case "attn.in_proj_weight", "attn.in_proj_bias":
                let suffix = parts[3].hasSuffix("weight") ? "weight" : "bias"
                for (i, p) in ["q_proj", "k_proj", "v_proj"].enumerated() {
                    map[layer + "self_attn.\(p).\(suffix)"] = (name, .rows((i * c)..<((i + 1) * c)))
                }
            default:
                let renamed = parts[3].replacingOccurrences(of: "ln_1.", with: "layer_norm1.")
                    .replacingOccurrences(of: "ln_2.", with: "layer_norm2.")
                    .replacingOccurrences(of: "attn.out_proj.", with: "self_attn.out_proj.")
                    .replacingOccurrences(of: "mlp.c_fc.", with: "mlp.fc1.")
                    .replacingOccurrences(of: "mlp.c_proj.", with: "mlp.fc2.")
                map[renamed == parts[3] ? "(openclip) " + key : layer + renamed] = (name, .whole)
            }
        }
        entries = map
    }

    var sourceName: String { base.sourceName }
    var tensorNames: [String] { Array(entries.keys) }
    func shape(of name: String) -> [Int]? {
        guard let e = entries[name], let s = base.shape(of: e.file) else { return nil }
        switch e.part {
        case .whole: return s
        case .rows(let r): return s.first == 3 * r.count ? [r.count] + s.dropFirst() : s  // else a mismatch
        case .transposed: return s.count == 2 ? [s[1], s[0]] : s
        }
    }
    func tensor(named name: String) throws -> Tensor {
        let e = entries[name]!
        let t = try base.tensor(named: e.file)
        switch e.part {
        case .whole: return t
        case .rows(let r): return t.slice(axis: 0, r).copy()
        case .transposed: return t.transposed(0, 1).copy()
        }
    }
}

extension CLIPTextModel {
    /// Loads an OpenCLIP text tower (SD 2.x single files: prefix `cond_stage_model.model.`),
    /// mapped as diffusers' `convert_open_clip_checkpoint`; see `OpenCLIPTextNames`.
    public func load(openCLIP source: some TensorSource, prefix: String = "cond_stage_model.model.") throws {
        try load(from: OpenCLIPTextNames(source, prefix: prefix, layers: config.numHiddenLayers,
                                         hidden: config.hiddenSize, hasProjection: textProjection != nil))
    }
}
