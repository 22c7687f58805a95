import Foundation
import Hummingbird
import NIOCore
import ServiceLifecycle
import Tensor
import Diffusion
import Media
import Workflow
import Image
import Audio
import Video

/// What `diffuse serve` is started with.
public struct ServeOptions: Sendable {
    public var host = "127.0.0.1"
    public var port = 7860
    /// Folders of model folders (each pipeline folder or SD .safetensors file inside is one model).
    public var modelFolders: [URL] = []
    /// Serve the bundled models of samples/ too.
    public var bundled = true
    /// When set, every route needs `Authorization: Bearer KEY` (or HTTP Basic with KEY as the password).
    public var apiKey: String?
    /// Jobs that may wait behind the running one, per model; more get 429.
    public var queueLimit = 8
    /// Largest request body accepted (413 beyond).
    public var maxBodyBytes = 32 << 20
    /// Most samples one request may ask for.
    public var maxCount = 16
    /// Largest side of a text-to-image output, in pixels.
    public var maxSide = 2048
    public init() {}
}

/// The request context: Hummingbird's, plus the connection, so that a job whose client hangs up
/// is cancelled.
struct ServeContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// `diffuse serve`: the HTTP API and the web page over the model catalog, one job at a time per model.
public final class DiffuseServer: @unchecked Sendable {
    public let options: ServeOptions
    public let catalog: ModelCatalog
    let generator: Generator
    public let queue: JobQueue
    let results = ResultStore(capacity: 64)
    private let lock = NSLock()
    private var checkpoint: String?

    public init(options: ServeOptions) throws {
        self.options = options
        catalog = try ModelCatalog(folders: options.modelFolders, bundled: options.bundled)
        generator = Generator(catalog: catalog)
        queue = JobQueue(limit: options.queueLimit)
        checkpoint = catalog.first(.textToImage)?.name
    }

    /// The text-to-image model txt2img uses when a request names none (A1111's `sd_model_checkpoint`).
    var currentCheckpoint: String? {
        get { lock.withLock { checkpoint } }
        set { lock.withLock { checkpoint = newValue } }
    }

    /// The application: routes, the API key check, errors as JSON. `onRunning` gets the bound port.
    public func application(onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        let router = Router(context: ServeContext.self)
        router.add(middleware: ErrorMiddleware())
        if let key = options.apiKey { router.add(middleware: APIKeyMiddleware(key: key)) }
        addRoutes(router)
        return Application(router: router, server: .http1(configuration: .init(additionalChannelHandlers: [HangUpHandler()])),
                           configuration: .init(address: .hostname(options.host, port: options.port), serverName: "diffuse"),
                           onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? 0) })
    }

    /// Runs until SIGTERM or SIGINT: then drops the jobs still waiting (their clients get 409) and
    /// takes no new ones, stops taking connections, lets the running jobs finish and answer, and
    /// returns. A service group shuts its services down one at a time in reverse order, so the
    /// queue, listed last, is shut before the server, which waits for every open request.
    public func run(onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let app = application(onRunning: onRunning)
        try await ServiceGroup(configuration: .init(services: [app, DrainOnShutdown(queue: queue)],
                                                    gracefulShutdownSignals: [.sigterm, .sigint], logger: app.logger)).run()
    }

    // MARK: Routes

    func addRoutes(_ router: Router<ServeContext>) {
        router.get("/") { _, _ in try Self.page("index.html") }
        router.get("/index.html") { _, _ in try Self.page("index.html") }

        // A1111
        router.get("/sdapi/v1/samplers") { _, _ in
            json(SamplerNames.a1111.map { ["name": $0.0, "aliases": [$0.1.rawValue] + $0.2, "options": [String: String]()] as [String: Any] })
        }
        router.get("/sdapi/v1/sd-models") { [self] _, _ in
            json(catalog.entries.filter { $0.kind == .textToImage }.map { e -> [String: Any] in
                let h = generator.hash(e)
                return ["title": "\(e.name) [\(h.prefix(10))]", "model_name": e.name, "hash": String(h.prefix(10)), "sha256": h,
                        "filename": e.url.lastPathComponent, "config": NSNull()]
            })
        }
        router.get("/sdapi/v1/options") { [self] _, _ in
            json(["sd_model_checkpoint": currentCheckpoint.map { $0 as Any } ?? NSNull(), "CLIP_stop_at_last_layers": 1, "samples_format": "png"])
        }
        router.post("/sdapi/v1/options") { [self] request, context in
            var request = request
            let o = try await decode(OptionsRequest.self, &request)
            if let name = o.sd_model_checkpoint {
                let e = try textToImageModel(name, param: "sd_model_checkpoint")
                currentCheckpoint = e.name
            }
            return json([String: Any]())
        }
        router.post("/sdapi/v1/txt2img") { [self] request, context in
            var request = request
            return try await a1111(try await decode(A1111Request.self, &request), img2img: false, context)
        }
        router.post("/sdapi/v1/img2img") { [self] request, context in
            var request = request
            return try await a1111(try await decode(A1111Request.self, &request), img2img: true, context)
        }
        router.get("/sdapi/v1/progress") { [self] request, _ in progress(skipImage: request.uri.queryParameters["skip_current_image"] == "true") }
        router.post("/sdapi/v1/interrupt") { [self] _, _ in json(["interrupted": queue.interruptAll()]) }

        // OpenAI
        router.post("/v1/images/generations") { [self] request, context in
            var request = request
            return try await openAI(try await decode(OpenAIImageRequest.self, &request), request, context)
        }
        router.get("/v1/images/:file") { [self] _, context in
            guard let file = context.parameters.get("file"), let bytes = results.get(file) else {
                throw ServeError(404, "no such image (results are kept for the last \(results.capacity) images)")
            }
            return Response(status: .ok, headers: [.contentType: "image/png"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        router.get("/v1/models") { [self] _, _ in
            json(["object": "list", "data": catalog.entries.map { ["id": $0.name, "object": "model", "owned_by": "diffuse"] }])
        }

        // Ours
        router.get("/api/v1/models") { [self] _, _ in
            json(catalog.entries.map { e -> [String: Any] in
                var m: [String: Any] = ["name": e.name, "kind": e.kind.rawValue]
                if let names = generator.classNames(e) { m["classes"] = names }
                if let d = generator.defaults(e) {
                    m["guidance"] = Double(d.guidance); m["steps"] = d.steps
                    if let i = d.interval { m["guidance_interval"] = [Double(i.lowerBound), Double(i.upperBound)] }
                }
                return m
            })
        }
        router.post("/api/v1/generate") { [self] request, context in
            var request = request
            return try await generate(try await decode(GenerateRequest.self, &request), context)
        }
        router.post("/api/v1/augment") { [self] request, context in
            var request = request
            return try await augment(try await decode(AugmentRequest.self, &request), context)
        }
    }

    /// The web page and its files, from the resources.
    static func page(_ name: String) throws -> Response {
        guard let url = Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "web"),
              let data = FileManager.default.contents(atPath: url.path) else { throw ServeError(404, "\(name) is missing from the resources") }
        return Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    // MARK: Request bodies and checks

    /// The body as JSON `T`, at most `maxBodyBytes` (413 beyond); a key of the wrong type is a 400 naming it.
    func decode<T: Decodable>(_ type: T.Type, _ request: inout Request) async throws -> T {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > options.maxBodyBytes {
            throw ServeError(413, "the body is \(length) bytes; at most \(options.maxBodyBytes) are accepted")
        }
        let buffer: ByteBuffer
        do { buffer = try await request.collectBody(upTo: options.maxBodyBytes) } catch is NIOTooManyBytesError {
            throw ServeError(413, "the body is larger than \(options.maxBodyBytes) bytes")
        }
        let data = Data(buffer.readableBytesView)
        do { return try JSONDecoder().decode(T.self, from: data.isEmpty ? Data("{}".utf8) : data) } catch let e as DecodingError {
            switch e {
            case .typeMismatch(let t, let c): throw BadParameter(Self.path(c), "expected \(Self.typeName(t))")
            case .valueNotFound(let t, let c): throw BadParameter(Self.path(c), "expected \(Self.typeName(t)), got null")
            case .keyNotFound(let k, let c): throw BadParameter(Self.path(c, k), "missing")
            case .dataCorrupted(let c): throw BadParameter(c.codingPath.isEmpty ? "body" : Self.path(c), c.codingPath.isEmpty ? "not JSON" : c.debugDescription)
            @unknown default: throw BadParameter("body", "\(e)")
            }
        }
    }

    static func path(_ c: DecodingError.Context, _ key: CodingKey? = nil) -> String {
        let keys = c.codingPath + (key.map { [$0] } ?? [])
        return keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
    }

    static func typeName(_ t: Any.Type) -> String {
        switch t {
        case is String.Type: return "a string"
        case is Int.Type, is Int64.Type: return "an integer"
        case is Float.Type, is Double.Type: return "a number"
        default: return "\(t)"
        }
    }

    func check<T: Comparable>(_ param: String, _ value: T?, _ range: ClosedRange<T>, default d: T) throws -> T {
        try check(param, value ?? d, range)
    }

    func check<T: Comparable>(_ param: String, _ v: T, _ range: ClosedRange<T>) throws -> T {
        guard range.contains(v) else { throw BadParameter(param, "must be within \(range.lowerBound)-\(range.upperBound), got \(v)") }
        return v
    }

    /// A request's guidance interval ([low, high] timesteps), checked.
    func guidanceInterval(_ v: [Float]?) throws -> ClosedRange<Float>? {
        guard let v else { return nil }
        if let p = SamplingRequest.guidanceIntervalProblem(v) { throw BadParameter("guidance_interval", p) }
        return v[0]...v[1]
    }

    /// -1 (or nothing): a random seed, as A1111 draws it.
    func seed(_ param: String, _ s: Int64?) throws -> UInt64 {
        guard let s, s != -1 else { return UInt64.random(in: 0..<(1 << 32)) }
        guard s >= 0 else { throw BadParameter(param, "must be -1 (random) or at least 0, got \(s)") }
        return UInt64(s)
    }

    func textToImageModel(_ name: String?, param: String) throws -> ModelCatalog.Entry {
        guard let name = name ?? currentCheckpoint else {
            throw ServeError(404, "no text-to-image model is served: start with --models DIR holding a Stable Diffusion folder", param: param)
        }
        // A1111's titles carry the hash: "name [0123456789]".
        var bare = name
        if let r = name.range(of: #" \[[0-9a-f]*\]$"#, options: .regularExpression) { bare = String(name[..<r.lowerBound]) }
        guard let e = catalog.entry(bare) else { throw ServeError(404, "no model named \(name)", param: param) }
        guard e.kind == .textToImage else { throw BadParameter(param, "\(name) is a \(e.kind.rawValue) model, not a text-to-image one") }
        return e
    }

    /// A base64 PNG (a `data:` URL prefix allowed) as a tensor [C, H, W] in [-1, 1].
    func image(_ param: String, _ b64: String, mode: PNGCodec.Mode) throws -> Tensor {
        let payload = b64.range(of: "base64,").map { String(b64[$0.upperBound...]) } ?? b64
        guard let data = Data(base64Encoded: payload, options: .ignoreUnknownCharacters) else { throw BadParameter(param, "not base64") }
        do {
            return try data.withUnsafeBytes {
                try PNGCodec.decodePixels($0, name: param, mode: mode, limits: .init(maxDimension: 8192, maxPixels: 8192 * 8192)).tensor()
            }
        } catch let e as MediaError { throw BadParameter(param, "not a PNG we can read: \(e)") }
    }

    /// Runs `work` in `model`'s line; a client that hangs up cancels it (waiting: dropped from the
    /// line; running: stopped at its next step).
    func runJob<T>(_ context: ServeContext, model: String, _ work: @escaping (Job) throws -> T) async throws -> T {
        let task = Task { try await queue.run(model: model, work) }
        let unwatch = HangUpHandler.watch(context.channel) { task.cancel() }
        defer { unwatch() }
        return try await withTaskCancellationHandler { try await task.value } onCancel: { task.cancel() }
    }

    // MARK: Handlers

    func a1111(_ r: A1111Request, img2img: Bool, _ context: ServeContext) async throws -> Response {
        let entry = try textToImageModel(r.override_settings?.sd_model_checkpoint, param: "override_settings.sd_model_checkpoint")
        let batch = try check("batch_size", r.batch_size, 1...options.maxCount, default: 1)
        let iterations = try check("n_iter", r.n_iter, 1...options.maxCount, default: 1)
        guard batch * iterations <= options.maxCount else {
            throw BadParameter("batch_size", "batch_size × n_iter must be at most \(options.maxCount), got \(batch * iterations)")
        }
        var t2i = try promptJob(prompt: r.prompt, negative: r.negative_prompt, width: r.width, height: r.height)
        if let skip = r.override_settings?.CLIP_stop_at_last_layers ?? r.clip_skip {
            t2i.clipSkip = try check("clip_skip", skip, 1...12, default: 1) - 1
            if t2i.clipSkip == 0 { t2i.clipSkip = nil }
        }
        if img2img {
            guard let first = r.init_images?.first else { throw BadParameter("init_images", "img2img needs one base64 PNG") }
            t2i.initImage = try image("init_images[0]", first, mode: .rgb)
            if let m = r.mask, !m.isEmpty {
                var mask = try image("mask", m, mode: .gray)
                if r.inpainting_mask_invert == 1 { mask = Tensor(shape: mask.shape, scalars: mask.scalars.map { -$0 }) }
                t2i.mask = mask
            }
            let s = r.denoising_strength ?? TextToImageJob.defaultStrength
            if let p = SamplingRequest.strengthProblem(s) { throw BadParameter("denoising_strength", p) }
            t2i.strength = s
        }
        let sampling = SamplingSettings(sampler: try SamplerNames.parse(r.sampler_name ?? r.sampler_index, scheduler: r.scheduler, param: "sampler_name"),
                                        steps: try r.steps.map { try check("steps", $0, SamplingRequest.stepsRange, default: 20) },
                                        seed: try seed("seed", r.seed),
                                        guidance: try check("cfg_scale", r.cfg_scale, SamplingRequest.guidanceRange, default: 7),
                                        eta: try r.eta.map { try check("eta", $0, SamplingRequest.etaRange, default: 0) })
        let out = try await textToImage(entry, t2i, sampling, count: batch * iterations, context)
        let info: [String: Any] = [
            "prompt": t2i.prompt, "all_prompts": [String](repeating: t2i.prompt, count: out.pngs.count),
            "negative_prompt": t2i.negativePrompt ?? "", "seed": sampling.seed, "all_seeds": out.seeds,
            "width": out.width, "height": out.height, "sampler_name": SamplerNames.a1111Name(sampling.sampler),
            "cfg_scale": out.guidance, "steps": out.steps, "batch_size": batch,
            "sd_model_name": entry.name, "sd_model_hash": String(generator.hash(entry).prefix(10)),
            "denoising_strength": img2img ? (t2i.strength ?? 0) : 0, "infotexts": out.infotexts,
        ]
        let infoText = String(decoding: try JSONSerialization.data(withJSONObject: info, options: [.sortedKeys]), as: UTF8.self)
        var parameters: [String: Any] = ["prompt": t2i.prompt, "negative_prompt": t2i.negativePrompt ?? "", "steps": out.steps,
                                         "seed": sampling.seed, "width": out.width, "height": out.height, "batch_size": batch, "n_iter": iterations,
                                         "cfg_scale": out.guidance, "sampler_name": SamplerNames.a1111Name(sampling.sampler)]
        if img2img { parameters["denoising_strength"] = t2i.strength ?? 0 }
        return json(["images": out.pngs.map { Data($0).base64EncodedString() }, "parameters": parameters, "info": infoText])
    }

    func promptJob(prompt: String?, negative: String?, width: Int?, height: Int?) throws -> TextToImageJob {
        let prompt = prompt ?? ""
        guard prompt.count <= 10_000 else { throw BadParameter("prompt", "at most 10000 characters") }
        guard (negative ?? "").count <= 10_000 else { throw BadParameter("negative_prompt", "at most 10000 characters") }
        for (name, v) in [("width", width), ("height", height)] {
            if let v, v < 8 || v > options.maxSide || v % 8 != 0 {
                throw BadParameter(name, "must be a multiple of 8 within 8-\(options.maxSide), got \(v)")
            }
        }
        return TextToImageJob(prompt: prompt, negativePrompt: (negative ?? "").isEmpty ? nil : negative, width: width, height: height)
    }

    func textToImage(_ entry: ModelCatalog.Entry, _ t2i: TextToImageJob, _ sampling: SamplingSettings, count: Int,
                     _ context: ServeContext) async throws -> Generator.TextToImageOutput {
        try await runJob(context, model: entry.name) { [generator] job in
            let pipe = try generator.textToImagePipeline(entry)
            let (w, h) = t2i.size(on: pipe)
            if let p = pipe.sizeProblem(height: h, width: w) { throw BadParameter(t2i.width == nil ? "height" : "width", p) }
            let request = sampling.request(count: count, conditioning: .unconditional, scheduler: pipe.scheduler,
                                           defaultGuidance: pipe.defaultGuidance, defaultGuidanceInterval: pipe.defaultGuidanceInterval,
                                           defaultSteps: pipe.defaultSteps)
            return try generator.textToImage(entry, t2i, request, job: job)
        }
    }

    func openAI(_ r: OpenAIImageRequest, _ http: Request, _ context: ServeContext) async throws -> Response {
        guard let prompt = r.prompt, !prompt.isEmpty else { throw BadParameter("prompt", "missing") }
        let entry = try textToImageModel(r.model, param: "model")
        let n = try check("n", r.n, 1...options.maxCount, default: 1)
        var width: Int? = nil, height: Int? = nil
        if let size = r.size, size != "auto" {
            let parts = size.lowercased().split(separator: "x").map { Int($0) }
            guard parts.count == 2, let w = parts[0], let h = parts[1] else { throw BadParameter("size", "WIDTHxHEIGHT, e.g. 512x512; got \(size)") }
            width = w; height = h
        }
        let format = r.response_format ?? "b64_json"
        guard ["b64_json", "url"].contains(format) else { throw BadParameter("response_format", "b64_json or url, got \(format)") }
        let t2i = try promptJob(prompt: prompt, negative: r.negative_prompt, width: width, height: height)
        if width != nil { _ = try check("size", width, 8...options.maxSide, default: 8) }
        let sampling = SamplingSettings(sampler: try SamplerNames.parse(r.sampler, param: "sampler"),
                                        steps: try r.steps.map { try check("steps", $0, SamplingRequest.stepsRange, default: 20) },
                                        seed: try seed("seed", r.seed),
                                        guidance: try r.guidance.map { try check("guidance", $0, SamplingRequest.guidanceRange, default: 7.5) }, eta: nil)
        let out = try await textToImage(entry, t2i, sampling, count: n, context)
        let host = http.head.authority ?? "\(options.host):\(options.port)"
        let data: [[String: Any]] = out.pngs.map { png in
            if format == "url" { return ["url": "http://\(host)/v1/images/\(results.put(png))", "revised_prompt": prompt] }
            return ["b64_json": Data(png).base64EncodedString(), "revised_prompt": prompt]
        }
        return json(["created": Int(Date().timeIntervalSince1970), "data": data])
    }

    func classModel(_ name: String?, param: String) throws -> ModelCatalog.Entry {
        guard let name else {
            guard let e = catalog.first(.image) ?? catalog.entries.first else { throw ServeError(404, "no models are served", param: param) }
            return e
        }
        guard let e = catalog.entry(name) else { throw ServeError(404, "no model named \(name)", param: param) }
        return e
    }

    func generate(_ r: GenerateRequest, _ context: ServeContext) async throws -> Response {
        let entry = try classModel(r.model, param: "model")
        let count = try check("count", r.count, 1...options.maxCount, default: 1)
        let sampling = SamplingSettings(sampler: try SamplerNames.parse(r.sampler, param: "sampler"),
                                        steps: try r.steps.map { try check("steps", $0, SamplingRequest.stepsRange, default: 20) },
                                        seed: try seed("seed", r.seed),
                                        guidance: try r.guidance.map { try check("guidance", $0, SamplingRequest.guidanceRange, default: 2) },
                                        eta: try r.eta.map { try check("eta", $0, SamplingRequest.etaRange) },
                                        guidanceRescale: try r.guidance_rescale.map { try check("guidance_rescale", $0, SamplingRequest.guidanceRescaleRange) } ?? 0,
                                        guidanceInterval: try guidanceInterval(r.guidance_interval))
        if entry.kind == .textToImage {
            let t2i = try promptJob(prompt: r.prompt, negative: r.negative_prompt, width: r.width, height: r.height)
            let out = try await textToImage(entry, t2i, sampling, count: count, context)
            let files = out.pngs.enumerated().map { i, png in
                GeneratedFile(name: String(format: "%04d.png", i), mime: "image/png", data: Data(png).base64EncodedString(), class: nil,
                              seed: sampling.seed, index: i)
            }
            return try json(encodable: GenerateAnswer(model: entry.name, kind: entry.kind.rawValue, files: files, parameters: out.infotexts))
        }
        if r.prompt != nil { throw BadParameter("prompt", "\(entry.name) is a \(entry.kind.rawValue) class model: give class, not prompt") }
        if let s = r.seconds, entry.kind != .audio || !(s > 0 && s <= 30) { throw BadParameter("seconds", "audio models only, within (0, 30], got \(s)") }
        if let f = r.frames, entry.kind != .video || !(1...64).contains(f) { throw BadParameter("frames", "video models only, within 1-64, got \(f)") }
        if let c = r.class, c.count > 10_000 { throw BadParameter("class", "too long") }
        let files: [GeneratedFile] = try await runJob(context, model: entry.name) { [generator] job in
            switch entry.kind {
            case .image: return try generator.classSamples(ImageModality.self, entry, classes: r.class, count: count, sampling: sampling, job: job)
            case .audio:
                return try generator.classSamples(AudioModality.self, entry, classes: r.class, count: count, sampling: sampling, job: job) { p in
                    r.seconds.map { [p.channels, p.length(seconds: $0)] }
                }
            case .video:
                return try generator.classSamples(VideoModality.self, entry, classes: r.class, count: count, sampling: sampling, job: job) { p in
                    r.frames.map { [p.channels, $0, p.size, p.size] }
                }
            case .textToImage: fatalError("handled above")
            }
        }
        return try json(encodable: GenerateAnswer(model: entry.name, kind: entry.kind.rawValue, files: files, parameters: nil))
    }

    func augment(_ r: AugmentRequest, _ context: ServeContext) async throws -> Response {
        let entry = try classModel(r.model, param: "model")
        guard entry.kind != .textToImage else { throw BadParameter("model", "augmentation takes a class model (image, audio or video)") }
        var o = DatasetAugment.Options()
        guard let mode = DatasetAugment.Mode(rawValue: r.mode ?? "generate") else { throw BadParameter("mode", "generate or vary, got \(r.mode!)") }
        o.mode = mode
        if mode == .generate { o.perClass = try check("per_class", r.per_class, 1...options.maxCount, default: 1) }
        o.perSource = try check("per_source", r.per_source, 1...options.maxCount, default: 1)
        if let s = r.strength { if let p = SamplingRequest.strengthProblem(s) { throw BadParameter("strength", p) }; o.strength = s }
        // Left out: the model folder's own (its sampling.json, a student's record), as `generate` does.
        o.steps = try check("steps", r.steps, SamplingRequest.stepsRange, default: generator.defaults(entry)?.steps ?? 20)
        if let g = r.guidance { o.guidance = try check("guidance", g, SamplingRequest.guidanceRange) }
        if let g = r.guidance_rescale { o.guidanceRescale = try check("guidance_rescale", g, SamplingRequest.guidanceRescaleRange) }
        o.guidanceInterval = try guidanceInterval(r.guidance_interval)
        o.eta = try r.eta.map { try check("eta", $0, SamplingRequest.etaRange) }
        o.seed = try seed("seed", r.seed)
        let sampler = try SamplerNames.parse(r.sampler, param: "sampler")
        guard let given = r.data, !given.isEmpty else { throw BadParameter("data", "an object of class name → list of base64 files") }
        var data: [String: [Data]] = [:]
        var total = 0
        for (name, files) in given {
            guard !name.isEmpty, name.count <= 100, !name.hasPrefix("."), !name.contains("/"), !name.contains("\\"), !name.contains("\0") else {
                throw BadParameter("data", "class name \(name) is not a plain folder name")
            }
            data[name] = try files.enumerated().map { i, b64 in
                guard let d = Data(base64Encoded: b64, options: .ignoreUnknownCharacters) else { throw BadParameter("data.\(name)[\(i)]", "not base64") }
                return d
            }
            total += files.count
        }
        let planned = mode == .generate ? data.count * (o.perClass ?? 1) : total * o.perSource
        guard planned <= options.maxCount * 4 else { throw BadParameter(mode == .generate ? "per_class" : "per_source", "\(planned) new files; at most \(options.maxCount * 4) per request") }
        let out: Generator.AugmentOutput = try await runJob(context, model: entry.name) { [generator] job in
            var o = o
            o.sampler = try sampler ?? .default(for: PipelineFolder.scheduler(in: entry.url))
            switch entry.kind {
            case .image: return try generator.augment(ImageModality.self, entry, data: data, options: o, job: job)
            case .audio: return try generator.augment(AudioModality.self, entry, data: data, options: o, job: job)
            case .video: return try generator.augment(VideoModality.self, entry, data: data, options: o, job: job)
            case .textToImage: fatalError("checked above")
            }
        }
        return try json(encodable: out)
    }

    struct GenerateAnswer: Encodable {
        var model: String
        var kind: String
        var files: [GeneratedFile]
        var parameters: [String]?
    }

    func progress(skipImage: Bool) -> Response {
        let (job, live) = queue.current()
        var state: [String: Any] = ["skipped": false, "interrupted": job?.cancelled ?? false, "job_count": live,
                                    "job": job.map { "job \($0.id)" } ?? "", "job_no": 0, "sampling_step": 0, "sampling_steps": 0]
        // Ours, beside A1111's keys: jobs since the start that ran, left the line unstarted, were stopped.
        let counts = queue.counts
        state["jobs_started"] = counts.started
        state["jobs_dropped"] = counts.dropped
        state["jobs_stopped"] = counts.stopped
        var fraction = 0.0, eta = 0.0
        var image: Any = NSNull()
        if let job {
            let s = job.state
            state["sampling_step"] = s.step
            state["sampling_steps"] = s.total
            if live > 0, s.total > 0, let started = s.started {
                fraction = Double(s.step) / Double(s.total)
                let elapsed = Date().timeIntervalSince(started)
                eta = fraction > 0 ? elapsed / fraction - elapsed : 0
            }
            if !skipImage, let p = job.preview { image = Data(p).base64EncodedString() }
        }
        return json(["progress": fraction, "eta_relative": eta, "state": state, "current_image": image, "textinfo": NSNull()])
    }
}

// MARK: Responses, errors, keys

func json(_ object: Any, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
    var h = headers
    h[.contentType] = "application/json"
    return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

func json<T: Encodable>(encodable value: T) throws -> Response {
    let data = try JSONEncoder().encode(value)
    return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

/// Every error as JSON in both shapes clients read: FastAPI's `detail` (A1111) and OpenAI's `error`.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = ServeContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do { return try await next(request, context) } catch {
            var status = 500, param: String? = nil, message = "\(error)"
            var headers: HTTPFields = [:]
            switch error {
            case let e as BadParameter: status = 400; param = e.param; message = e.description
            case let e as ServeError: status = e.status; param = e.param
            case let e as QueueFull: status = 429; headers[.retryAfter] = String(e.retryAfter)
            case let e as SamplingRequestError: status = 400; param = e.setting
            case is GenerationCancelled: status = 409; message = "interrupted"
            case is CancellationError: status = 409; message = "cancelled"
            case let e as HTTPError: status = Int(e.status.code); message = e.body ?? e.status.reasonPhrase
            case is NIOTooManyBytesError: status = 413; message = "the body is too large"
            default: break
            }
            let type = status == 400 ? "invalid_request_error" : status == 401 ? "authentication_error" : "server_error"
            return json(["detail": message, "error": ["message": message, "type": type, "param": param.map { $0 as Any } ?? NSNull(), "code": status] as [String: Any]],
                        status: HTTPResponse.Status(code: status), headers: headers)
        }
    }
}

/// `--api-key`: every route needs `Authorization: Bearer KEY`, or HTTP Basic with KEY as the
/// password (any user; what a browser asks for after the 401's `WWW-Authenticate`).
struct APIKeyMiddleware: RouterMiddleware {
    typealias Context = ServeContext
    let key: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let given = Self.key(in: request.headers[.authorization]), Self.same(given, key) else {
            return json(["detail": "an API key is needed: Authorization: Bearer KEY",
                         "error": ["message": "an API key is needed: Authorization: Bearer KEY", "type": "authentication_error", "code": 401] as [String: Any]],
                        status: .unauthorized, headers: [.wwwAuthenticate: "Basic realm=\"diffuse\", charset=\"UTF-8\""])
        }
        return try await next(request, context)
    }

    static func key(in header: String?) -> String? {
        guard let header else { return nil }
        if header.hasPrefix("Bearer ") { return String(header.dropFirst(7)) }
        if header.hasPrefix("Basic "), let d = Data(base64Encoded: String(header.dropFirst(6))), let s = String(data: d, encoding: .utf8),
           let colon = s.firstIndex(of: ":") {
            return String(s[s.index(after: colon)...])
        }
        return nil
    }

    /// Compares in time independent of where the strings differ.
    static func same(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var diff = x.count ^ y.count
        for i in 0..<max(x.count, y.count) { diff |= Int((i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)) }
        return diff == 0
    }
}

/// On SIGTERM the waiting jobs are dropped (their clients get 409) and no new ones are taken; the
/// running ones finish.
struct DrainOnShutdown: Service {
    let queue: JobQueue
    func run() async throws {
        try? await gracefulShutdown()
        queue.shutDown()
    }
}

/// The last `capacity` images made for the OpenAI endpoint's `url` answers, by name.
final class ResultStore: @unchecked Sendable {
    let capacity: Int
    private let lock = NSLock()
    private var items: [String: [UInt8]] = [:]
    private var order: [String] = []

    init(capacity: Int) { self.capacity = capacity }

    func put(_ bytes: [UInt8]) -> String {
        let name = UUID().uuidString.lowercased() + ".png"
        lock.withLock {
            items[name] = bytes
            order.append(name)
            if order.count > capacity { items[order.removeFirst()] = nil }
        }
        return name
    }

    func get(_ name: String) -> [UInt8]? { lock.withLock { items[name] } }
}
