import Foundation
import Tensor
import NN

/// A LoRA file (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"): for named
/// weights W of the unet and the text encoder, low-rank factors `down` [r, in(, kh, kw)] and
/// `up` [out, r(, 1, 1)] and an optional `alpha`, merged as
///
///     W += scale · (alpha / r) · up @ down        (conv kernels flattened to [out, in·kh·kw]; alpha defaults to r)
///
/// Formats read (each tensor of the file is used or reported, never dropped silently):
/// - kohya / A1111: `lora_unet_<module, dots as _>.lora_down.weight`, `.lora_up.weight`, `.alpha`;
///   `lora_te_…` (and `lora_te1_…`) for the text encoder. Underscored names are resolved against the
///   model's own parameter names, as kohya's loader does, since `_` is also part of names.
/// - diffusers / PEFT: `unet.<module>.lora_A.weight` / `lora_B.weight` (alpha, `use_rslora` and
///   `alpha_pattern` from the `lora_adapter_metadata` header entry diffusers writes), `text_encoder.…`;
///   also `<module>.lora.down.weight` / `lora.up.weight` (+ `.alpha`), `lora_linear_layer.down/up`, and
///   the attention-processor form `….processor.to_q_lora.down.weight`.
public struct LoRA {
    public enum Component: String, Sendable { case unet, textEncoder = "text_encoder" }

    /// One low-rank update as read from the file.
    public struct Update {
        public let component: Component
        /// The module as the file names it: dotted (`down_blocks.0.attentions.0.proj_in`) or kohya's
        /// underscored form (`down_blocks_0_attentions_0_proj_in`, `underscored` true).
        public let module: String
        public let underscored: Bool
        public let down: Tensor
        public let up: Tensor
        public let alpha: Float?
        /// The file's tensors that make this update (down, up, alpha).
        public let tensors: [String]
        public var rank: Int { down.shape[0] }
    }

    public let url: URL
    public let updates: [Update]
    /// Tensors of the file that form no update we can apply (other adapters such as LoHa/LoKr/DoRA
    /// parts, SDXL's second text encoder, stray keys): the caller should warn about them.
    public let unrecognized: [String]

    public static func load(_ url: URL) throws -> LoRA {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(url: url) } catch let e as SafeTensorsError {
            throw MediaError.invalidData(file: url.path, reason: e.reason)
        }
        func invalid(_ reason: String) -> MediaError { .invalidData(file: url.path, reason: reason) }
        let metadata = try PEFTMetadata(file.metadata["lora_adapter_metadata"], invalid: invalid)

        // Group the file's tensors by (component, module, format) into down/up/alpha.
        var groups: [String: (Component, String, Bool, LoRAParts)] = [:]
        var order: [String] = []
        var unrecognized: [String] = []
        let names = file.names.sorted()
        func add(_ c: Component, _ module: String, _ underscored: Bool, _ role: WritableKeyPath<LoRAParts, String?>, _ name: String) {
            let key = "\(c.rawValue)|\(underscored)|\(module)"
            if groups[key] == nil { groups[key] = (c, module, underscored, LoRAParts()); order.append(key) }
            groups[key]!.3[keyPath: role] = name
        }
        for name in names {
            if let (c, module, role) = kohyaKey(name) {
                add(c, module, true, role, name)
            } else if let (c, module, role) = dottedKey(name) {
                add(c, module, false, role, name)
            } else {
                unrecognized.append(name)
            }
        }
        var updates: [Update] = []
        for key in order {
            let (c, module, underscored, p) = groups[key]!
            guard let dn = p.down, let un = p.up else {
                unrecognized.append(contentsOf: [p.down, p.up, p.alpha].compactMap { $0 })
                continue
            }
            // Check ranks before reading: the engine holds rank <= 5 and LoRA factors have 2 or 4 dims.
            for n in [dn, un] where ![2, 4].contains(file.entry(n)!.shape.count) {
                throw invalid("LoRA factor \(n) has shape \(file.entry(n)!.shape); 2 or 4 dims were expected")
            }
            let down = try file.weight(dn), up = try file.weight(un)
            guard down.rank == 2 || down.rank == 4, up.rank == 2 || up.rank == 4, up.shape[1] == down.shape[0],
                  up.shape.dropFirst(2).allSatisfy({ $0 == 1 }) else {
                throw invalid("LoRA factors \(dn) \(down.shape) and \(un) \(up.shape) do not form a rank-r product")
            }
            var alpha: Float?
            if let an = p.alpha {
                guard file.entry(an)!.shape.count <= 1 else { throw invalid("\(an) has shape \(file.entry(an)!.shape); a scalar alpha was expected") }
                let a = try file.tensor(an)
                guard a.count == 1 else { throw invalid("\(an) has shape \(a.shape); a scalar alpha was expected") }
                alpha = a.data[0]
            } else if !underscored {
                alpha = metadata.alpha(component: c, module: module, rank: down.shape[0])
            }
            if !underscored, metadata.usesDoRA(c) {
                throw MediaError.unsupported(file: url.path, reason: "DoRA adapters (use_dora) are not supported")
            }
            updates.append(Update(component: c, module: module, underscored: underscored, down: down, up: up, alpha: alpha,
                                  tensors: [dn, un] + (p.alpha.map { [$0] } ?? [])))
        }
        guard !updates.isEmpty else {
            throw invalid("no LoRA tensors (lora_down/lora_up, lora_A/lora_B): "
                          + unrecognized.prefix(5).joined(separator: ", ") + (unrecognized.count > 5 ? ", …" : ""))
        }
        return LoRA(url: url, updates: updates, unrecognized: unrecognized.sorted())
    }

    /// Adds the updates of `component` to `weights` in place (the tensors are the model's, so the
    /// model changes). `scale` 0 leaves every weight bit-identical (nothing is added); the file is
    /// still checked against the model.
    ///
    /// Throws when the file's updates for this component match none of the weights, or a factor's
    /// shape disagrees with its weight: a LoRA for another model. Updates naming no weight (while
    /// others do) are returned in `unused`.
    @discardableResult
    public func merge(into weights: [String: Tensor], component: Component, scale: Float) throws -> LoRAMergeReport {
        let mine = updates.filter { $0.component == component }
        var report = LoRAMergeReport()
        guard !mine.isEmpty else { return report }
        let resolver = ModuleResolver(weights.keys.filter { $0.hasSuffix(".weight") }.map { String($0.dropLast(7)) },
                                      originalUNetNames: component == .unet)
        var resolved: [(Update, String)] = []
        for u in mine {
            if let m = resolver.resolve(u.module, underscored: u.underscored) { resolved.append((u, m + ".weight")) }
            else { report.unused.append(contentsOf: u.tensors) }
        }
        guard !resolved.isEmpty else {
            throw MediaError.invalidData(file: url.path, reason: "none of its \(mine.count) \(component.rawValue) updates names a weight of "
                                         + "the model (e.g. \(mine[0].module)): a LoRA for another model?")
        }
        for (u, name) in resolved {
            let w = weights[name]!
            let out = w.shape[0], r = u.rank
            let inner = w.count / Swift.max(out, 1)
            guard u.up.shape[0] == out, u.up.count == out * r, u.down.count == r * inner,
                  u.down.rank == 2 ? u.down.shape[1] == inner : Array(u.down.shape.dropFirst()) == Array(w.shape.dropFirst()) else {
                throw MediaError.invalidData(file: url.path, reason: "\(u.tensors[0]) \(u.down.shape) × \(u.tensors[1]) \(u.up.shape) "
                                             + "does not fit \(component.rawValue) weight \(name) \(w.shape): a LoRA for another model?")
            }
            report.applied.append(name)
            guard scale != 0 else { continue }
            // delta = up [out, r] @ down [r, in·kh·kw], then W += scale·(alpha/r)·delta (peft's order).
            let delta = GradMode.withoutGrad { u.up.reshaped([out, r]).matmul(u.down.reshaped([r, inner])) }
            let c = scale * (u.alpha ?? Float(r)) / Float(r)
            // A 16-bit weight is widened, updated and rounded back (as diffusers fuses in fp16).
            let full = w.materialized()
            let wd = full.data, dd = delta.data
            for i in 0..<w.count { wd[i] += c * dd[i] }
            if w.halfFormat != nil { w.copyFrom(full) }
        }
        return report
    }

    /// Both components at once; `unused` also lists the file's unrecognized tensors.
    public func merge(unet: [String: Tensor], textEncoder: [String: Tensor]?, scale: Float) throws -> LoRAMergeReport {
        var report = try merge(into: unet, component: .unet, scale: scale)
        if let textEncoder {
            let t = try merge(into: textEncoder, component: .textEncoder, scale: scale)
            report.applied += t.applied
            report.unused += t.unused
        } else {
            report.unused += updates.filter { $0.component == .textEncoder }.flatMap(\.tensors)
        }
        report.unused += unrecognized
        return report
    }

    /// `FILE[:SCALE]` as the command line takes it (scale 1 when absent).
    public static func parseArgument(_ s: String) -> (path: String, scale: Float)? {
        if let i = s.lastIndex(of: ":"), let v = Float(s[s.index(after: i)...]), v.isFinite {
            return s[..<i].isEmpty ? nil : (String(s[..<i]), v)
        }
        return s.isEmpty ? nil : (s, 1)
    }
}

/// What a merge did: weights changed (by name) and file tensors that found no weight.
public struct LoRAMergeReport: Sendable {
    public var applied: [String] = []
    public var unused: [String] = []
}

// MARK: - Key formats

/// `lora_unet_<m>.lora_down.weight` → (.unet, m, \.down), likewise `lora_up`, `alpha`, `lora_te_`.
private func kohyaKey(_ name: String) -> (LoRA.Component, String, WritableKeyPath<LoRAParts, String?>)? {
    let prefixes: [(String, LoRA.Component)] = [("lora_unet_", .unet), ("lora_te_", .textEncoder), ("lora_te1_", .textEncoder)]
    for (prefix, c) in prefixes where name.hasPrefix(prefix) {
        let rest = name.dropFirst(prefix.count)
        guard let dot = rest.firstIndex(of: ".") else { return nil }
        let module = String(rest[..<dot])
        switch rest[rest.index(after: dot)...] {
        case "lora_down.weight": return (c, module, \.down)
        case "lora_up.weight": return (c, module, \.up)
        case "alpha": return (c, module, \.alpha)
        default: return nil
        }
    }
    return nil
}

/// diffusers / PEFT dotted names, with or without the `unet.` / `text_encoder.` prefix.
private func dottedKey(_ name: String) -> (LoRA.Component, String, WritableKeyPath<LoRAParts, String?>)? {
    var rest = Substring(name)
    var component: LoRA.Component = .unet
    if rest.hasPrefix("unet.") { rest = rest.dropFirst(5) }
    else if rest.hasPrefix("text_encoder.") { rest = rest.dropFirst(13); component = .textEncoder }
    else if rest.hasPrefix("text_model.") { component = .textEncoder }
    else if rest.hasPrefix("lora_") || rest.hasPrefix("text_encoder_2.") { return nil }
    let suffixes: [(String, WritableKeyPath<LoRAParts, String?>)] = [
        (".lora_A.weight", \.down), (".lora_B.weight", \.up),
        (".lora.down.weight", \.down), (".lora.up.weight", \.up),
        (".lora_linear_layer.down.weight", \.down), (".lora_linear_layer.up.weight", \.up),
        ("_lora.down.weight", \.down), ("_lora.up.weight", \.up),
        (".alpha", \.alpha),
    ]
    for (suffix, role) in suffixes where rest.hasSuffix(suffix) {
        var module = String(rest.dropLast(suffix.count))
        if suffix.hasPrefix("_lora") {
            // The attention-processor form: `attn1.processor.to_q_lora.down.weight` → `attn1.to_q`.
            guard module.contains(".processor.") else { return nil }
            module = module.replacingOccurrences(of: ".processor.", with: ".")
            if module.hasSuffix(".to_out") { module += ".0" }
        }
        return module.isEmpty ? nil : (component, module, role)
    }
    return nil
}

/// The roles of a LoRA group's tensors (a key-path target for `kohyaKey` / `dottedKey`).
private struct LoRAParts { var down: String?; var up: String?; var alpha: String? }

// MARK: - Resolution against the model's names

/// Module names of a model (parameter names without `.weight`), looked up by dotted name or by
/// kohya's underscored form. Text-encoder names match with or without transformers 4's `text_model.`.
private struct ModuleResolver {
    private var dotted: [String: String] = [:]
    private var underscored: [String: [String]] = [:]

    /// `originalUNetNames`: also accept the original (LDM/sgm) unet names kohya writes for some
    /// models (`lora_unet_input_blocks_4_1_proj_in`), as diffusers' `_maybe_map_sgm_blocks_to_diffusers`.
    init(_ modules: [String], originalUNetNames: Bool = false) {
        for m in modules {
            let canonical = m.hasPrefix("text_model.") ? String(m.dropFirst(11)) : m
            dotted[canonical] = m
            underscored[canonical.replacingOccurrences(of: ".", with: "_"), default: []].append(m)
        }
        guard originalUNetNames else { return }
        let plan = OriginalUNetNames(modules)
        for m in modules {
            if let ldm = plan.name(of: m) { underscored[ldm.replacingOccurrences(of: ".", with: "_"), default: []].append(m) }
        }
    }

    func resolve(_ module: String, underscored isUnderscored: Bool) -> String? {
        if isUnderscored {
            let key = module.hasPrefix("text_model_") ? String(module.dropFirst(11)) : module
            guard let list = underscored[key], list.count == 1 else { return nil }  // absent or ambiguous
            return list[0]
        }
        let key = module.hasPrefix("text_model.") ? String(module.dropFirst(11)) : module
        return dotted[key]
    }
}

/// diffusers unet module → original LDM name (the inverse of the single-file mapping,
/// `StableDiffusionLayout`): `down_blocks.1.attentions.0.proj_in` → `input_blocks.4.1.proj_in`.
private struct OriginalUNetNames {
    let layersPerBlock: Int
    let upWithAttention: Set<Int>

    init(_ modules: [String]) {
        layersPerBlock = Set(modules.compactMap { indexAfter($0, "down_blocks.0.resnets.") }).count
        upWithAttention = Set(modules.filter { $0.contains(".attentions.") }.compactMap { indexAfter($0, "up_blocks.") })
    }

    func name(of module: String) -> String? {
        let l1 = layersPerBlock + 1
        let p = module.split(separator: ".").map(String.init)
        func resnet(_ rest: ArraySlice<String>) -> String? {
            let map = ["norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
                       "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"]
            guard rest.count == 1, let m = map[rest.first!] else { return nil }
            return m
        }
        switch module {
        case "conv_in": return "input_blocks.0.0"
        case "conv_norm_out": return "out.0"
        case "conv_out": return "out.2"
        case "time_embedding.linear_1": return "time_embed.0"
        case "time_embedding.linear_2": return "time_embed.2"
        default: break
        }
        guard layersPerBlock > 0, p.count >= 4 else { return nil }
        if p[0] == "mid_block" {
            switch (p[1], p[2]) {
            case ("resnets", "0"): return resnet(p[3...]).map { "middle_block.0.\($0)" }
            case ("attentions", "0"): return "middle_block.1." + p[3...].joined(separator: ".")
            case ("resnets", "1"): return resnet(p[3...]).map { "middle_block.2.\($0)" }
            default: return nil
            }
        }
        guard p.count >= 5, let b = Int(p[1]), let l = Int(p[3]) else { return nil }
        let rest = p[4...]
        switch (p[0], p[2]) {
        case ("down_blocks", "resnets"): return resnet(rest).map { "input_blocks.\(1 + b * l1 + l).0.\($0)" }
        case ("down_blocks", "attentions"): return "input_blocks.\(1 + b * l1 + l).1." + rest.joined(separator: ".")
        case ("down_blocks", "downsamplers") where rest == ["conv"]: return "input_blocks.\((b + 1) * l1).0.op"
        case ("up_blocks", "resnets"): return resnet(rest).map { "output_blocks.\(b * l1 + l).0.\($0)" }
        case ("up_blocks", "attentions"): return "output_blocks.\(b * l1 + l).1." + rest.joined(separator: ".")
        case ("up_blocks", "upsamplers") where rest == ["conv"]:
            return "output_blocks.\(b * l1 + layersPerBlock).\(upWithAttention.contains(b) ? 2 : 1).conv"
        default: return nil
        }
    }
}

private func indexAfter(_ s: String, _ prefix: String) -> Int? {
    guard s.hasPrefix(prefix) else { return nil }
    return Int(s.dropFirst(prefix.count).prefix { $0 != "." })
}

// MARK: - PEFT metadata

/// The `lora_adapter_metadata` header entry diffusers writes: `{"unet.lora_alpha": 8, "unet.r": 4,
/// "unet.alpha_pattern": {...}, "unet.use_rslora": false, "unet.use_dora": false, ...}`.
private struct PEFTMetadata {
    private var values: [String: JSONValue] = [:]

    init(_ text: String?, invalid: (String) -> MediaError) throws {
        guard let text else { return }
        do { values = try JSONDecoder().decode([String: JSONValue].self, from: Data(text.utf8)) } catch {
            throw invalid("its lora_adapter_metadata is not a JSON object")
        }
    }

    func usesDoRA(_ c: LoRA.Component) -> Bool { values["\(c.rawValue).use_dora"]?.bool == true }

    /// PEFT's scaling numerator: alpha_pattern (a key equal to the module or a dotted suffix of it),
    /// else lora_alpha; nil when neither is given (alpha = rank). rsLoRA scales by alpha/√r, so it is
    /// returned as alpha·√r for the merge's alpha/r.
    func alpha(component c: LoRA.Component, module: String, rank: Int) -> Float? {
        var alpha: Double?
        if case .object(let patterns)? = values["\(c.rawValue).alpha_pattern"] {
            for (k, v) in patterns.sorted(by: { $0.key < $1.key }) where module == k || module.hasSuffix("." + k) { alpha = v.double }
        }
        if alpha == nil { alpha = values["\(c.rawValue).lora_alpha"]?.double }
        guard var a = alpha else { return nil }
        if values["\(c.rawValue).use_rslora"]?.bool == true { a *= Double(rank).squareRoot() }
        return Float(a)
    }
}
