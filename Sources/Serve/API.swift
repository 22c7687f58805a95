import Foundation
import Diffusion

// The request and response bodies, by the names the clients send. Unknown keys are ignored (the
// A1111 clients send many settings we have no use for); a key of the wrong type is a 400 naming it.

/// A parameter a request cannot have: a 400 naming it.
public struct BadParameter: Error, CustomStringConvertible {
    public var param: String
    public var reason: String
    public init(_ param: String, _ reason: String) { self.param = param; self.reason = reason }
    public var description: String { "\(param): \(reason)" }
}

/// An HTTP error other than 400 (401, 404, 413, 429, 503), with its message.
public struct ServeError: Error, CustomStringConvertible {
    public var status: Int
    public var message: String
    public var param: String?
    public var headers: [(String, String)] = []
    public init(_ status: Int, _ message: String, param: String? = nil) { self.status = status; self.message = message; self.param = param }
    public var description: String { message }
}

/// `POST /sdapi/v1/txt2img` and `/sdapi/v1/img2img`, the keys `webuiapi` sends that we use.
struct A1111Request: Decodable {
    var prompt: String?
    var negative_prompt: String?
    var steps: Int?
    var cfg_scale: Float?
    var sampler_name: String?
    var sampler_index: String?
    var scheduler: String?
    var seed: Int64?
    var width: Int?
    var height: Int?
    var batch_size: Int?
    var n_iter: Int?
    var eta: Float?
    var denoising_strength: Float?
    var clip_skip: Int?
    var override_settings: OverrideSettings?
    // img2img
    var init_images: [String]?
    var mask: String?
    var inpainting_mask_invert: Int?

    struct OverrideSettings: Decodable {
        var sd_model_checkpoint: String?
        var CLIP_stop_at_last_layers: Int?
    }
}

/// `POST /v1/images/generations` (OpenAI's images API).
struct OpenAIImageRequest: Decodable {
    var prompt: String?
    var model: String?
    var n: Int?
    var size: String?
    var response_format: String?
    // Ours, beyond OpenAI's: what other servers of this kind accept too.
    var negative_prompt: String?
    var steps: Int?
    var seed: Int64?
    var guidance: Float?
    var sampler: String?
}

/// `POST /api/v1/generate`: a class model (image, audio or video), or a text-to-image one with `prompt`.
struct GenerateRequest: Decodable {
    var model: String?
    var prompt: String?
    var negative_prompt: String?
    /// A class name or index, or a comma-separated list given to the samples in turn.
    var `class`: String?
    var count: Int?
    var steps: Int?
    var sampler: String?
    var guidance: Float?
    /// diffusers' guidance_rescale (0–1), the timesteps [low, high] guidance applies at, DDIM's / TCD's η.
    var guidance_rescale: Float?
    var guidance_interval: [Float]?
    var eta: Float?
    var seed: Int64?
    var width: Int?
    var height: Int?
    /// Audio: seconds per clip. Video: frames per clip.
    var seconds: Double?
    var frames: Int?
}

/// `POST /api/v1/augment`: a labelled set sent in the body, made bigger by a class model; the
/// answer holds the new files and their manifest lines.
struct AugmentRequest: Decodable {
    var model: String?
    var mode: String?
    var per_class: Int?
    var per_source: Int?
    var strength: Float?
    var steps: Int?
    var sampler: String?
    var guidance: Float?
    var guidance_rescale: Float?
    var guidance_interval: [Float]?
    var eta: Float?
    var seed: Int64?
    /// Class name → files (base64); a class may have none (mode generate needs only its name).
    var data: [String: [String]]?
}

/// `POST /sdapi/v1/options`.
struct OptionsRequest: Decodable {
    var sd_model_checkpoint: String?
}

/// One generated file in our own endpoints' answers.
struct GeneratedFile: Encodable {
    var name: String
    var mime: String
    var data: String
    var `class`: String?
    var seed: UInt64
    var index: Int
}

/// A1111's sampler names and aliases (what `GET /sdapi/v1/samplers` lists and txt2img accepts)
/// for ours; our own names are accepted too.
enum SamplerNames {
    static let a1111: [(String, SamplerName, [String])] = [
        ("DPM++ 2M", .dpmpp2m, ["k_dpmpp_2m"]),
        ("DPM++ 2M Karras", .dpmpp2mKarras, ["k_dpmpp_2m_ka"]),
        ("DPM++ 2M SDE", .dpmpp2mSDE, ["k_dpmpp_2m_sde"]),
        ("DPM++ 2M SDE Karras", .dpmpp2mSDEKarras, ["k_dpmpp_2m_sde_ka"]),
        ("Euler", .euler, ["k_euler"]),
        ("Euler a", .eulerAncestral, ["k_euler_a"]),
        ("Heun", .heun, ["k_heun"]),
        ("LMS", .lms, ["k_lms"]),
        ("DDIM", .ddim, ["ddim"]),
        ("DDPM", .ddpm, ["ddpm"]),
        ("PLMS", .pndm, ["plms", "pndm"]),
        ("UniPC", .unipc, ["unipc"]),
        ("LCM", .lcm, ["lcm"]),
        ("TCD", .tcd, ["tcd"]),
    ]

    /// The sampler a request names (A1111's name, an alias or ours; any case), with A1111's
    /// separate `scheduler` ("Karras") folded in; nil name: nil (the model's default).
    static func parse(_ name: String?, scheduler: String? = nil, param: String) throws -> SamplerName? {
        guard var name, !name.isEmpty else { return nil }
        if let s = scheduler?.lowercased(), s == "karras", !name.lowercased().hasSuffix("karras") { name += " Karras" }
        let lower = name.lowercased()
        if let ours = SamplerName(rawValue: lower) { return ours }
        if let hit = a1111.first(where: { $0.0.lowercased() == lower || $0.2.contains(lower) }) { return hit.1 }
        throw BadParameter(param, "unknown sampler \(name) (\(a1111.map { $0.0 }.joined(separator: ", ")))")
    }

    /// A1111's name for ours.
    static func a1111Name(_ s: SamplerName?) -> String {
        guard let s else { return "default" }
        return a1111.first { $0.1 == s }?.0 ?? s.rawValue
    }
}
