import Foundation
import Tensor
import NN

/// The Stable Diffusion families a single file can hold that we load.
public enum StableDiffusionFamily: String, Sendable, Equatable {
    /// SD 1.x: CLIP ViT-L/14 text encoder under `cond_stage_model.transformer.*`, context 768.
    case sd1 = "SD 1.x"
    /// SD 2.x: OpenCLIP ViT-H/14 under `cond_stage_model.model.*`, context 1024, linear projections
    /// in the unet's transformer blocks.
    case sd2 = "SD 2.x"
}

/// What the unet predicts. Not recorded in the tensors: SD 2.x comes as 768-v (v) and 512-base (eps).
public enum StableDiffusionPrediction: String, Sendable, Equatable {
    case epsilon
    case vPrediction = "v_prediction"
}

/// The tokenizer a single file needs; both read the CLIP BPE vocabulary (openai/clip-vit-large-patch14's
/// vocab.json/merges.txt) and pad to 77 tokens.
public enum StableDiffusionTokenizer: String, Sendable, Equatable {
    /// SD 1.x: openai/clip-vit-large-patch14, padded with `<|endoftext|>`.
    case clipViTL14
    /// SD 2.x: the same BPE as OpenCLIP uses it, padded with `!` (stabilityai/stable-diffusion-2-1's tokenizer).
    case openCLIPViTH14

    public var padToken: String { self == .clipViTL14 ? "<|endoftext|>" : "!" }
    public var modelMaxLength: Int { 77 }
}

/// How one diffusers tensor is read from one tensor of the file.
public struct SingleFileRecipe: Sendable, Equatable {
    public enum Transform: Sendable, Equatable {
        case copy
        /// Rows `range` of the first axis: OpenCLIP's fused `in_proj_weight` [3D, D] → q, k, v [D, D].
        case rows(Range<Int>)
        /// Drop trailing 1-dims: the VAE attention's 1×1 convs [C, C, 1, 1] → linear [C, C].
        case squeeze
    }
    /// The tensor's name in the file.
    public let source: String
    public let transform: Transform
    /// The diffusers shape.
    public let shape: [Int]
}

/// Where each tensor of an original-layout Stable Diffusion file goes, worked out from names and
/// shapes alone (no tensor data is read), as diffusers 0.42's single-file loader maps them:
/// `convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint`, `convert_ldm_clip_checkpoint` (SD 1.x),
/// `convert_open_clip_checkpoint` (SD 2.x).
///
/// Configs are diffusers `config.json` dictionaries. diffusers takes them from the hub repo of the
/// detected model type (stable-diffusion-v1-5, stable-diffusion-2-1, and the two inpainting repos);
/// here what the shapes determine (channels, layers, context and text widths, input channels, linear
/// projections) is read from the shapes, the rest is those repos' values, so the real SD 1.5 / 2.1
/// files give exactly the hub configs and fine-tunes of other widths still load. Not in the shapes,
/// taken from the original LDM configs' rules: 8 heads (SD 1.x) or 64-channel heads (SD 2.x) in the
/// unet, 64-channel heads in the text encoder, 32 norm groups. A file whose widths break those rules
/// (the tiny test models) needs its configs from elsewhere, as diffusers needs `config=folder` for it.
public struct StableDiffusionLayout: Sendable {
    public let file: String
    public let family: StableDiffusionFamily
    /// A 9-channel unet (latents + mask + masked-image latents).
    public let inpainting: Bool
    public let prediction: StableDiffusionPrediction
    /// diffusers name → recipe, per component. Text-encoder names are transformers 5's
    /// `CLIPTextModel` names (no `text_model.` prefix; our loader also takes the prefixed ones).
    public let unet: [String: SingleFileRecipe]
    public let vae: [String: SingleFileRecipe]
    public let textEncoder: [String: SingleFileRecipe]
    public let unetConfig: [String: JSONValue]
    public let vaeConfig: [String: JSONValue]
    public let textEncoderConfig: [String: JSONValue]
    public let schedulerConfig: [String: JSONValue]
    public let tokenizer: StableDiffusionTokenizer
    /// Tensors diffusers ignores too, by design: EMA copies and counters, the DDPM schedule buffers,
    /// CLIP's position_ids, OpenCLIP's last resblock (SD 2.x uses the penultimate layer), its
    /// text_projection, logit_scale and image tower.
    public let ignored: [String]
    /// Tensors neither mapped nor known to be ignorable: the caller should warn about them.
    public let unexpected: [String]

    /// - Parameters:
    ///   - shapes: every tensor of the file, by name.
    ///   - prediction: overrides the rule below.
    ///   - globalStep: the file's `global_step`, when it has one.
    ///
    /// Prediction type: SD 1.x and inpainting files are epsilon. For SD 2.x diffusers loads the
    /// stable-diffusion-2-1 config (768-v, v-prediction); its legacy loader chose epsilon only when
    /// `global_step` was 875000 (the 512-base checkpoint). We do both: v unless the step says 512-base.
    public init(shapes: [String: [Int]], file: String, prediction: StableDiffusionPrediction? = nil,
                globalStep: Int? = nil) throws {
        self.file = file
        func invalid(_ reason: String) -> MediaError { .invalidData(file: file, reason: reason) }
        func unsupported(_ what: String) -> MediaError {
            .unsupported(file: file, reason: "\(what) is not supported yet (Stable Diffusion 1.x and 2.x single files are)")
        }
        let names = shapes.keys.sorted()
        func has(_ prefix: String) -> Bool { names.contains { $0.hasPrefix(prefix) } }

        // Families we recognise but do not load (diffusers' CHECKPOINT_KEY_NAMES).
        if has("conditioner.embedders.") { throw unsupported("SDXL") }
        if has("model.diffusion_model.joint_blocks.") || has("joint_blocks.") { throw unsupported("SD3") }
        if has("model.diffusion_model.double_blocks.") || has("double_blocks.") { throw unsupported("Flux") }
        if has("control_model.") { throw unsupported("a ControlNet") }
        if shapes["model.diffusion_model.input_blocks.10.0.skip_connection.bias"] != nil {
            throw unsupported("the x4 upscaler")
        }
        let unetPrefix = "model.diffusion_model."
        guard shapes[unetPrefix + "input_blocks.0.0.weight"] != nil else {
            let sample = names.filter { !ignorableTopLevel($0) }.prefix(5)
            if has("down_blocks.") || has("conv_in.") {
                throw invalid("not an original-layout single file: it holds diffusers-named tensors (\(sample.joined(separator: ", ")), …); "
                              + "give the diffusers folder instead")
            }
            throw invalid("not a Stable Diffusion single file: no \(unetPrefix)* unet; unexpected keys: "
                          + sample.joined(separator: ", ") + (names.count > 5 ? ", …" : ""))
        }

        // Text encoder decides the family; the unet's context width must agree with it.
        let clipPrefix = "cond_stage_model.transformer."
        let openCLIPPrefix = "cond_stage_model.model."
        let family: StableDiffusionFamily
        if has(openCLIPPrefix + "transformer.resblocks.") || shapes[openCLIPPrefix + "token_embedding.weight"] != nil {
            family = .sd2
        } else if has(clipPrefix) {
            family = .sd1
        } else {
            throw invalid("no text encoder: neither cond_stage_model.transformer.* (SD 1.x CLIP) nor cond_stage_model.model.* (SD 2.x OpenCLIP)")
        }
        guard has("first_stage_model.") else { throw invalid("no VAE: no first_stage_model.* tensors") }
        self.family = family

        var consumed = Set<String>()
        var ignored: [String] = []
        var unexpected: [String] = []

        // MARK: unet
        let u = try UNetPlan(shapes: shapes, prefix: unetPrefix, invalid: invalid)
        guard u.inChannels == 4 || u.inChannels == 9 else {
            throw unsupported("a unet with \(u.inChannels) input channels (instruct-pix2pix has 8, depth models 5)")
        }
        inpainting = u.inChannels == 9
        var unet: [String: SingleFileRecipe] = [:]
        for name in names where name.hasPrefix(unetPrefix) {
            let rest = String(name.dropFirst(unetPrefix.count))
            if let target = u.diffusersName(rest) {
                unet[target] = SingleFileRecipe(source: name, transform: .copy, shape: shapes[name]!)
                consumed.insert(name)
            }
        }

        // MARK: VAE
        let vaePrefix = "first_stage_model."
        let v = VAEPlan(shapes: shapes, prefix: vaePrefix)
        var vae: [String: SingleFileRecipe] = [:]
        for name in names where name.hasPrefix(vaePrefix) {
            let rest = String(name.dropFirst(vaePrefix.count))
            if let (target, squeeze) = v.diffusersName(rest) {
                let s = shapes[name]!
                if squeeze && s.count > 2 {
                    guard s.dropFirst(2).allSatisfy({ $0 == 1 }) else {
                        throw invalid("\(name) has shape \(s); a 1×1 attention projection was expected")
                    }
                    vae[target] = SingleFileRecipe(source: name, transform: .squeeze, shape: Array(s.prefix(2)))
                } else {
                    vae[target] = SingleFileRecipe(source: name, transform: .copy, shape: s)
                }
                consumed.insert(name)
            }
        }
        guard let vaeLevels = v.levels, vaeLevels > 0 else {
            throw invalid("the VAE's encoder.down.* blocks are missing or not numbered 0, 1, 2, …")
        }

        // MARK: text encoder
        var text: [String: SingleFileRecipe] = [:]
        let textWidth: Int, textLayers: Int, textIntermediate: Int, vocab: Int, positions: Int
        switch family {
        case .sd1:
            for name in names where name.hasPrefix(clipPrefix) {
                var rest = String(name.dropFirst(clipPrefix.count))
                if rest.hasPrefix("text_model.") { rest.removeFirst("text_model.".count) }
                if rest == "embeddings.position_ids" { ignored.append(name); consumed.insert(name); continue }
                text[rest] = SingleFileRecipe(source: name, transform: .copy, shape: shapes[name]!)
                consumed.insert(name)
            }
            guard let emb = text["embeddings.token_embedding.weight"]?.shape, emb.count == 2,
                  let pos = text["embeddings.position_embedding.weight"]?.shape, pos.count == 2,
                  let fc1 = text["encoder.layers.0.mlp.fc1.weight"]?.shape, fc1.count == 2 else {
                throw invalid("the CLIP text encoder (cond_stage_model.transformer.*) lacks its embeddings or first layer")
            }
            (vocab, textWidth, positions, textIntermediate) = (emb[0], emb[1], pos[0], fc1[0])
            textLayers = countIndices(text.keys, prefix: "encoder.layers.")
        case .sd2:
            for name in names where name.hasPrefix(openCLIPPrefix) {
                let rest = String(name.dropFirst(openCLIPPrefix.count))
                switch openCLIPName(rest, shape: shapes[name]!) {
                case .mapped(let list):
                    for (target, recipe) in list { text[target] = SingleFileRecipe(source: name, transform: recipe.0, shape: recipe.1) }
                    consumed.insert(name)
                case .ignored:
                    ignored.append(name); consumed.insert(name)
                case .unknown:
                    break
                }
            }
            guard let emb = text["embeddings.token_embedding.weight"]?.shape, emb.count == 2,
                  let pos = text["embeddings.position_embedding.weight"]?.shape, pos.count == 2,
                  let fc1 = text["encoder.layers.0.mlp.fc1.weight"]?.shape, fc1.count == 2 else {
                throw invalid("the OpenCLIP text encoder (cond_stage_model.model.*) lacks its embeddings or first resblock")
            }
            (vocab, textWidth, positions, textIntermediate) = (emb[0], emb[1], pos[0], fc1[0])
            textLayers = countIndices(text.keys, prefix: "encoder.layers.")
        }
        guard u.contextDim == nil || u.contextDim == textWidth else {
            throw invalid("the unet attends to \(u.contextDim!)-wide text states but the \(family.rawValue) text encoder is \(textWidth) wide")
        }

        // The engine holds rank <= 5; no SD weight has more than 4 dims.
        for (component, recipes) in [("unet", unet), ("vae", vae), ("text encoder", text)] {
            if let bad = recipes.values.first(where: { $0.shape.count > 4 }) {
                throw invalid("\(component) tensor \(bad.source) has shape \(shapes[bad.source]!); at most 4 dims were expected")
            }
        }
        for name in names where !consumed.contains(name) {
            if ignorableTopLevel(name) { ignored.append(name) } else { unexpected.append(name) }
        }
        self.unet = unet
        self.vae = vae
        self.textEncoder = text
        self.ignored = ignored.sorted()
        self.unexpected = unexpected

        // MARK: configs
        let isV2 = family == .sd2
        let resolved: StableDiffusionPrediction
        if let prediction { resolved = prediction }
        else if isV2 && !inpainting { resolved = globalStep == 875_000 ? .epsilon : .vPrediction }
        else { resolved = .epsilon }
        self.prediction = resolved
        // The 768-v model (stable-diffusion-2-1) runs at 768² with upcast attention; base and
        // inpainting models at 512².
        let is768 = isV2 && resolved == .vPrediction && !inpainting
        let headDims: JSONValue = isV2
            ? .array(u.blockOutChannels.map { .number(Double($0 / 64)) })  // SD 2: 64-channel heads
            : .number(8)                                                    // SD 1: 8 heads
        unetConfig = [
            "_class_name": .string("UNet2DConditionModel"),
            "act_fn": .string("silu"),
            "attention_head_dim": headDims,
            "block_out_channels": ints(u.blockOutChannels),
            "center_input_sample": .bool(false),
            "cross_attention_dim": u.contextDim.map { .number(Double($0)) } ?? .null,
            "down_block_types": .array(u.downAttention.map { .string($0 ? "CrossAttnDownBlock2D" : "DownBlock2D") }),
            "downsample_padding": .number(1),
            "dual_cross_attention": .bool(false),
            "flip_sin_to_cos": .bool(true),
            "freq_shift": .number(0),
            "in_channels": .number(Double(u.inChannels)),
            "layers_per_block": .number(Double(u.layersPerBlock)),
            "mid_block_scale_factor": .number(1),
            "norm_eps": .number(1e-5),
            "norm_num_groups": .number(32),
            "num_class_embeds": .null,
            "only_cross_attention": .bool(false),
            "out_channels": .number(Double(u.outChannels)),
            "sample_size": .number(is768 ? 96 : 64),
            "transformer_layers_per_block": .number(Double(u.transformerDepth)),
            "up_block_types": .array(u.upAttention.map { .string($0 ? "CrossAttnUpBlock2D" : "UpBlock2D") }),
            "upcast_attention": .bool(is768),
            "use_linear_projection": .bool(u.linearProjection),
        ]
        vaeConfig = [
            "_class_name": .string("AutoencoderKL"),
            "act_fn": .string("silu"),
            "block_out_channels": ints(v.blockOutChannels),
            "down_block_types": .array(Array(repeating: .string("DownEncoderBlock2D"), count: vaeLevels)),
            "in_channels": .number(Double(v.inChannels)),
            "latent_channels": .number(Double(v.latentChannels)),
            "layers_per_block": .number(Double(v.layersPerBlock)),
            "norm_num_groups": .number(32),
            "out_channels": .number(Double(v.outChannels)),
            "sample_size": .number(is768 ? 768 : 512),
            "scaling_factor": .number(0.18215),
            "up_block_types": .array(Array(repeating: .string("UpDecoderBlock2D"), count: vaeLevels)),
        ]
        textEncoderConfig = [
            "architectures": .array([.string("CLIPTextModel")]),
            "attention_dropout": .number(0),
            "bos_token_id": .number(0),
            "dropout": .number(0),
            "eos_token_id": .number(2),
            "hidden_act": .string(isV2 ? "gelu" : "quick_gelu"),
            "hidden_size": .number(Double(textWidth)),
            "initializer_factor": .number(1),
            "initializer_range": .number(0.02),
            "intermediate_size": .number(Double(textIntermediate)),
            "layer_norm_eps": .number(1e-5),
            "max_position_embeddings": .number(Double(positions)),
            "model_type": .string("clip_text_model"),
            "num_attention_heads": .number(Double(textWidth / 64)),  // 64-channel heads in both CLIPs
            "num_hidden_layers": .number(Double(textLayers)),
            "pad_token_id": .number(1),
            "projection_dim": .number(isV2 ? 512 : 768),
            "vocab_size": .number(Double(vocab)),
        ]
        // The hub repos' schedulers: PNDM for SD 1.5 and SD 2 inpainting, DDIM for SD 1.5 inpainting
        // and SD 2.1. A 512-base SD 2 file keeps 2.1's DDIM with epsilon, as both of diffusers'
        // paths give it (the 2.1 config, or the legacy loader's DDIM default with the step rule).
        let ddim = isV2 ? !inpainting : inpainting
        schedulerConfig = [
            "_class_name": .string(ddim ? "DDIMScheduler" : "PNDMScheduler"),
            "beta_end": .number(0.012),
            "beta_schedule": .string("scaled_linear"),
            "beta_start": .number(0.00085),
            "clip_sample": .bool(false),
            "num_train_timesteps": .number(1000),
            "prediction_type": .string(resolved.rawValue),
            "set_alpha_to_one": .bool(false),
            "skip_prk_steps": .bool(true),
            "steps_offset": .number(1),
            "timestep_spacing": .string("leading"),
            "trained_betas": .null,
        ]
        tokenizer = isV2 ? .openCLIPViTH14 : .clipViTL14
    }
}

/// A memory-mapped original-layout Stable Diffusion file, seen as three diffusers-named components.
///
///     let sd = try StableDiffusionCheckpoint.open(url)
///     try unet.load(from: sd.unet)          // one tensor at a time, straight from the mapped file
///     for name in sd.layout.unexpected { warn(name) }
public final class StableDiffusionCheckpoint {
    public let url: URL
    public let file: SafeTensorsFile
    public let layout: StableDiffusionLayout

    /// Opens a `.safetensors` single file: reads and checks its header (the data stays mapped, not read),
    /// detects the family and maps every name. Pickled `.ckpt` files are refused.
    public static func open(_ url: URL, prediction: StableDiffusionPrediction? = nil) throws -> StableDiffusionCheckpoint {
        if url.pathExtension.lowercased() == "ckpt" || url.pathExtension.lowercased() == "pt" {
            throw MediaError.unsupported(file: url.path, reason: "pickled checkpoints are not read (they can run code); "
                                         + "convert it to .safetensors first")
        }
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(url: url) } catch let e as SafeTensorsError {
            throw MediaError.invalidData(file: url.path, reason: e.reason)
        }
        var shapes: [String: [Int]] = [:]
        for e in file.entries { shapes[e.name] = e.shape }
        let step = try? file.integers("global_step").first
        return StableDiffusionCheckpoint(url: url, file: file,
                                         layout: try StableDiffusionLayout(shapes: shapes, file: url.path, prediction: prediction,
                                                                           globalStep: step))
    }

    init(url: URL, file: SafeTensorsFile, layout: StableDiffusionLayout) {
        self.url = url; self.file = file; self.layout = layout
    }

    public var unet: SingleFileComponent { SingleFileComponent(file: file, component: "unet", recipes: layout.unet) }
    public var vae: SingleFileComponent { SingleFileComponent(file: file, component: "vae", recipes: layout.vae) }
    public var textEncoder: SingleFileComponent {
        SingleFileComponent(file: file, component: "text_encoder", recipes: layout.textEncoder)
    }

    /// Every mapped tensor as Float32, by diffusers name (the whole model in memory: for tests and
    /// conversions; models load lazily through `unet`, `vae`, `textEncoder`).
    public func stateDicts() throws -> (unet: [String: Tensor], vae: [String: Tensor], textEncoder: [String: Tensor]) {
        (try unet.all(), try vae.all(), try textEncoder.all())
    }
}

/// One component of a single file, as a `TensorSource` with diffusers names: tensors are read from
/// the mapped file on request.
public struct SingleFileComponent: TensorSource {
    public let file: SafeTensorsFile
    public let component: String
    public let recipes: [String: SingleFileRecipe]

    public var sourceName: String { "\(file.url.path) (\(component))" }
    public var tensorNames: [String] { recipes.keys.sorted() }
    public func shape(of name: String) -> [Int]? { recipes[name]?.shape }

    public func tensor(named name: String) throws -> Tensor {
        guard let r = recipes[name] else {
            throw MediaError.invalidData(file: file.url.path, reason: "no \(component) tensor named '\(name)'")
        }
        let t = try file.weight(r.source)
        switch r.transform {
        case .copy: return t
        case .squeeze: return t.reshaped(r.shape)
        case .rows(let range): return t.slice(axis: 0, range)
        }
    }

    public func loadHalf(named name: String, into target: Tensor) throws -> Bool {
        guard let r = recipes[name] else {
            throw MediaError.invalidData(file: file.url.path, reason: "no \(component) tensor named '\(name)'")
        }
        switch r.transform {
        case .copy, .squeeze: return try file.loadHalf(r.source, elementOffset: 0, into: target)
        case .rows(let range):
            let rowLength = target.count / Swift.max(range.count, 1)
            return try file.loadHalf(r.source, elementOffset: range.lowerBound * rowLength, into: target)
        }
    }

    public func all() throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for name in recipes.keys { out[name] = try tensor(named: name) }
        return out
    }
}

// MARK: - The unet (convert_ldm_unet_checkpoint)

/// The original unet's block structure, from its names and shapes:
///
///     input_blocks.0            conv_in
///     input_blocks.1 …          per level: L × (resnet [+ transformer]), then a downsampler (not after the last)
///     middle_block.0/1/2        resnet, transformer, resnet
///     output_blocks.0 …         per level: (L+1) × (resnet [+ transformer]) [+ upsampler on the last]
private struct UNetPlan {
    let layersPerBlock: Int
    let blockOutChannels: [Int]
    let downAttention: [Bool]
    let upAttention: [Bool]
    let inChannels: Int
    let outChannels: Int
    let contextDim: Int?
    let linearProjection: Bool
    let transformerDepth: Int

    init(shapes: [String: [Int]], prefix: String, invalid: (String) -> MediaError) throws {
        func shape(_ rest: String) -> [Int]? { shapes[prefix + rest] }
        let inputIndices = Set(shapes.keys.compactMap { blockIndex($0, prefix + "input_blocks.") })
        let outputIndices = Set(shapes.keys.compactMap { blockIndex($0, prefix + "output_blocks.") })
        let downsamplers = inputIndices.filter { shape("input_blocks.\($0).0.op.weight") != nil }.count
        let levels = downsamplers + 1
        let inputCount = (inputIndices.max() ?? 0) + 1
        // 1 + levels·L + (levels − 1) input blocks.
        let l = (inputCount - 1 - downsamplers) / levels
        guard l >= 1, 1 + levels * l + downsamplers == inputCount, inputIndices.count == inputCount,
              outputIndices.count == levels * (l + 1) else {
            throw invalid("unet blocks do not form a Stable Diffusion unet: \(inputCount) input blocks with \(downsamplers) downsamplers, "
                          + "\(outputIndices.count) output blocks")
        }
        layersPerBlock = l
        var channels: [Int] = [], down: [Bool] = [], up: [Bool] = []
        for b in 0..<levels {
            let first = 1 + b * (l + 1)
            guard let w = shape("input_blocks.\(first).0.out_layers.3.weight"), w.count == 4 else {
                throw invalid("no \(prefix)input_blocks.\(first).0.out_layers.3.weight (the first resnet of level \(b))")
            }
            channels.append(w[0])
            down.append(shape("input_blocks.\(first).1.proj_in.weight") != nil)
            up.append(shape("output_blocks.\(b * (l + 1)).1.proj_in.weight") != nil)
        }
        blockOutChannels = channels
        downAttention = down
        upAttention = up
        guard let cin = shape("input_blocks.0.0.weight"), cin.count == 4,
              let cout = shape("out.2.weight"), cout.count == 4 else {
            throw invalid("the unet's conv_in (input_blocks.0.0) or conv_out (out.2) is missing or not a conv")
        }
        inChannels = cin[1]
        outChannels = cout[0]
        let attn2 = shapes.keys.filter { $0.hasPrefix(prefix) && $0.hasSuffix(".attn2.to_k.weight") }.sorted()
        contextDim = attn2.first.flatMap { shapes[$0]?.last }
        let projIn = shapes.keys.filter { $0.hasPrefix(prefix) && $0.hasSuffix(".proj_in.weight") }.sorted()
        linearProjection = projIn.first.map { shapes[$0]!.count == 2 } ?? false
        if let firstAttention = projIn.first.map({ String($0.dropLast("proj_in.weight".count)) }) {
            transformerDepth = countIndices(shapes.keys.filter { $0.hasPrefix(firstAttention) }.map { String($0.dropFirst(firstAttention.count)) },
                                            prefix: "transformer_blocks.")
        } else {
            transformerDepth = 1
        }
    }

    /// The diffusers name of `rest` (a name without `model.diffusion_model.`), or nil.
    func diffusersName(_ rest: String) -> String? {
        let p = rest.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard p.count >= 2 else { return nil }
        let tail2 = p.dropFirst(2).joined(separator: ".")
        switch p[0] {
        case "time_embed":
            guard p.count == 3, p[1] == "0" || p[1] == "2" else { return nil }
            return "time_embedding.linear_\(p[1] == "0" ? 1 : 2).\(p[2])"
        case "out":
            guard p.count == 3, p[1] == "0" || p[1] == "2" else { return nil }
            return (p[1] == "0" ? "conv_norm_out." : "conv_out.") + p[2]
        case "input_blocks":
            guard p.count >= 4, let i = Int(p[1]) else { return nil }
            let sub = p.dropFirst(3).joined(separator: ".")
            if i == 0 { return p[2] == "0" && p.count == 4 ? "conv_in.\(p[3])" : nil }
            let b = (i - 1) / (layersPerBlock + 1), l = (i - 1) % (layersPerBlock + 1)
            switch p[2] {
            case "0" where l == layersPerBlock:
                guard p.count == 5, p[3] == "op" else { return nil }
                return "down_blocks.\(b).downsamplers.0.conv.\(p[4])"
            case "0":
                return resnetName(sub).map { "down_blocks.\(b).resnets.\(l).\($0)" }
            case "1" where l < layersPerBlock:
                return "down_blocks.\(b).attentions.\(l).\(sub)"
            default: return nil
            }
        case "middle_block":
            guard p.count >= 3 else { return nil }
            switch p[1] {
            case "0": return resnetName(tail2).map { "mid_block.resnets.0.\($0)" }
            case "1": return "mid_block.attentions.0.\(tail2)"
            case "2": return resnetName(tail2).map { "mid_block.resnets.1.\($0)" }
            default: return nil
            }
        case "output_blocks":
            guard p.count >= 4, let i = Int(p[1]) else { return nil }
            let b = i / (layersPerBlock + 1), l = i % (layersPerBlock + 1)
            let sub = p.dropFirst(3).joined(separator: ".")
            let isUpsampler = p[3] == "conv" && p.count == 5
            switch p[2] {
            case "0": return resnetName(sub).map { "up_blocks.\(b).resnets.\(l).\($0)" }
            case "1" where isUpsampler, "2" where isUpsampler:
                return l == layersPerBlock ? "up_blocks.\(b).upsamplers.0.conv.\(p[4])" : nil
            case "1": return "up_blocks.\(b).attentions.\(l).\(sub)"
            default: return nil
            }
        default:
            return nil
        }
    }
}

/// LDM ResBlock parameter → diffusers ResnetBlock2D parameter (nil for anything else).
private func resnetName(_ sub: String) -> String? {
    let map = ["in_layers.0.": "norm1.", "in_layers.2.": "conv1.", "out_layers.0.": "norm2.", "out_layers.3.": "conv2.",
               "emb_layers.1.": "time_emb_proj.", "skip_connection.": "conv_shortcut."]
    for (old, new) in map where sub.hasPrefix(old) {
        let leaf = sub.dropFirst(old.count)
        return leaf == "weight" || leaf == "bias" ? new + leaf : nil
    }
    return nil
}

// MARK: - The VAE (convert_ldm_vae_checkpoint)

private struct VAEPlan {
    let levels: Int?
    let blockOutChannels: [Int]
    let layersPerBlock: Int
    let inChannels: Int
    let outChannels: Int
    let latentChannels: Int

    init(shapes: [String: [Int]], prefix: String) {
        // Levels 0..<n, all present (a hostile index must not size an allocation).
        let down = Set(shapes.keys.compactMap { blockIndex($0, prefix + "encoder.down.") })
        levels = !down.isEmpty && down == Set(0..<down.count) ? down.count : nil
        blockOutChannels = (0..<(levels ?? 0)).map { shapes[prefix + "encoder.down.\($0).block.0.conv2.weight"]?.first ?? 0 }
        layersPerBlock = Set(shapes.keys.compactMap { blockIndex($0, prefix + "encoder.down.0.block.") }).count
        inChannels = shapes[prefix + "encoder.conv_in.weight"]?[safe: 1] ?? 0
        outChannels = shapes[prefix + "decoder.conv_out.weight"]?.first ?? 0
        latentChannels = shapes[prefix + "decoder.conv_in.weight"]?[safe: 1] ?? 0
    }

    /// (diffusers name, whether a 1×1 conv becomes a linear weight), or nil.
    func diffusersName(_ rest: String) -> (String, Bool)? {
        let direct = ["encoder.conv_in.", "encoder.conv_out.", "decoder.conv_in.", "decoder.conv_out.", "quant_conv.", "post_quant_conv."]
        for d in direct where rest.hasPrefix(d) && isLeaf(rest.dropFirst(d.count)) { return (rest, false) }
        for side in ["encoder.", "decoder."] where rest.hasPrefix(side + "norm_out.") {
            let leaf = rest.dropFirst((side + "norm_out.").count)
            return isLeaf(leaf) ? (side + "conv_norm_out." + leaf, false) : nil
        }
        let p = rest.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard p.count >= 4, p[0] == "encoder" || p[0] == "decoder", let n = levels else { return nil }
        let side = p[0]
        if p[1] == "mid" {
            switch p[2] {
            case "block_1", "block_2":
                let sub = p.dropFirst(3).joined(separator: ".")
                return vaeResnetName(sub).map { ("\(side).mid_block.resnets.\(p[2] == "block_1" ? 0 : 1).\($0)", false) }
            case "attn_1":
                guard p.count == 5, isLeaf(Substring(p[4])) else { return nil }
                let names = ["norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"]
                guard let m = names[p[3]] else { return nil }
                return ("\(side).mid_block.attentions.0.\(m).\(p[4])", p[3] != "norm" && p[4] == "weight")
            default: return nil
            }
        }
        guard let i = Int(p[2]), i >= 0, i < n else { return nil }
        let blocks = side == "encoder" ? "down" : "up"
        guard p[1] == blocks else { return nil }
        // The decoder's up.i is diffusers' up_blocks.(n−1−i): LDM numbers them from the lowest resolution.
        let target = side == "encoder" ? i : n - 1 - i
        let diffusersBlocks = "\(side).\(blocks)_blocks.\(target)"
        switch p[3] {
        case "block":
            guard p.count >= 6 else { return nil }
            return vaeResnetName(p.dropFirst(5).joined(separator: ".")).map { ("\(diffusersBlocks).resnets.\(p[4]).\($0)", false) }
        case "downsample" where side == "encoder", "upsample" where side == "decoder":
            guard p.count == 6, p[4] == "conv", isLeaf(Substring(p[5])) else { return nil }
            return ("\(diffusersBlocks).\(side == "encoder" ? "downsamplers" : "upsamplers").0.conv.\(p[5])", false)
        default: return nil
        }
    }
}

private func vaeResnetName(_ sub: String) -> String? {
    let p = sub.split(separator: ".").map(String.init)
    guard p.count == 2, isLeaf(Substring(p[1])) else { return nil }
    switch p[0] {
    case "norm1", "conv1", "norm2", "conv2": return sub
    case "nin_shortcut": return "conv_shortcut.\(p[1])"
    default: return nil
    }
}

// MARK: - OpenCLIP text encoder (convert_open_clip_checkpoint)

private enum OpenCLIPMapping {
    case mapped([(String, (SingleFileRecipe.Transform, [Int]))])
    case ignored
    case unknown
}

/// `rest` is a name without `cond_stage_model.model.`.
private func openCLIPName(_ rest: String, shape: [Int]) -> OpenCLIPMapping {
    switch rest {
    case "token_embedding.weight": return .mapped([("embeddings.token_embedding.weight", (.copy, shape))])
    case "positional_embedding": return .mapped([("embeddings.position_embedding.weight", (.copy, shape))])
    case "ln_final.weight", "ln_final.bias": return .mapped([("final_layer_norm." + rest.dropFirst("ln_final.".count), (.copy, shape))])
    // diffusers' SD_2_TEXT_ENCODER_KEYS_TO_IGNORE: the projection; logit_scale and the attention mask
    // belong to CLIP's contrastive head.
    case "text_projection", "logit_scale", "attn_mask": return .ignored
    default: break
    }
    if rest.hasPrefix("visual.") { return .ignored }
    let head = "transformer.resblocks."
    guard rest.hasPrefix(head) else { return .unknown }
    let p = rest.dropFirst(head.count).split(separator: ".", maxSplits: 1).map(String.init)
    guard p.count == 2, let n = Int(p[0]) else { return .unknown }
    // SD 2.x conditions on the penultimate layer: diffusers drops resblock 23 (of 24) and its
    // text encoder config has 23 layers.
    if n == 23 { return .ignored }
    let layer = "encoder.layers.\(n)."
    switch p[1] {
    case "ln_1.weight", "ln_1.bias": return .mapped([(layer + "layer_norm1." + p[1].dropFirst(5), (.copy, shape))])
    case "ln_2.weight", "ln_2.bias": return .mapped([(layer + "layer_norm2." + p[1].dropFirst(5), (.copy, shape))])
    case "mlp.c_fc.weight", "mlp.c_fc.bias": return .mapped([(layer + "mlp.fc1." + p[1].dropFirst(9), (.copy, shape))])
    case "mlp.c_proj.weight", "mlp.c_proj.bias": return .mapped([(layer + "mlp.fc2." + p[1].dropFirst(11), (.copy, shape))])
    case "attn.out_proj.weight", "attn.out_proj.bias":
        return .mapped([(layer + "self_attn.out_proj." + p[1].dropFirst(14), (.copy, shape))])
    case "attn.in_proj_weight", "attn.in_proj_bias":
        // [3D, D] (or [3D]) stacked q, k, v.
        guard let rows = shape.first, rows % 3 == 0, shape.count == (p[1].hasSuffix("weight") ? 2 : 1) else { return .unknown }
        let d = rows / 3
        let leaf = p[1].hasSuffix("weight") ? "weight" : "bias"
        return .mapped(["q", "k", "v"].enumerated().map { k, x in
            (layer + "self_attn.\(x)_proj.\(leaf)", (.rows(k * d..<(k + 1) * d), [d] + shape.dropFirst()))
        })
    default: return .unknown
    }
}

// MARK: - Helpers

/// Top-level tensors of LDM checkpoints that no diffusers component uses.
private func ignorableTopLevel(_ name: String) -> Bool {
    let buffers: Set<String> = ["betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                                "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
                                "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                                "posterior_mean_coef1", "posterior_mean_coef2", "logvar", "lvlb_weights", "global_step", "epoch"]
    return buffers.contains(name) || name.hasPrefix("model_ema.")
}

/// The integer after `prefix` in `name` (`input_blocks.7.1.proj_in.weight` → 7), or nil.
private func blockIndex(_ name: String, _ prefix: String) -> Int? {
    guard name.hasPrefix(prefix) else { return nil }
    return Int(name.dropFirst(prefix.count).prefix { $0 != "." })
}

/// How many distinct indices follow `prefix` among `names`.
private func countIndices<S: Sequence>(_ names: S, prefix: String) -> Int where S.Element == String {
    Set(names.compactMap { blockIndex($0, prefix) }).count
}

private func isLeaf(_ s: Substring) -> Bool { s == "weight" || s == "bias" }

private func ints(_ a: [Int]) -> JSONValue { .array(a.map { .number(Double($0)) }) }

private extension Array {
    subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}
