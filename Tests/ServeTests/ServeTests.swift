import XCTest
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif
import Media
import Workflow
import TestSupport
@testable import Serve

/// `diffuse serve` driven over HTTP on a loopback port, in process: every endpoint, the request
/// shapes `webuiapi` sends, and misuse (400 naming the parameter, 401, 404, 413, 429 with
/// Retry-After, path traversal, interrupt, a client hanging up). Models: the tiny Stable
/// Diffusion folder of the pipeline tests and the bundled class models, 2 steps.
final class ServeTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let tiny = root.appendingPathComponent("Tests/ImageModelTests/Goldens/sd-pipeline/tiny")

    /// A server on a free port for the duration of `body`.
    func withServer(_ configure: (inout ServeOptions) -> Void = { _ in },
                    _ body: (DiffuseServer, URL) async throws -> Void) async throws {
        var o = ServeOptions()
        o.port = 0
        o.modelFolders = [Self.tiny]
        setenv("DIFFUSE_SAMPLES", Self.root.appendingPathComponent("samples").path, 1)
        configure(&o)
        let server = try DiffuseServer(options: o)
        let port = PortBox()
        let task = Task { try await server.application { p in port.set(p) }.run() }
        defer { task.cancel() }
        for _ in 0..<500 where port.get() == 0 { try await Task.sleep(nanoseconds: 10_000_000) }
        XCTAssertNotEqual(port.get(), 0, "server started")
        try await body(server, URL(string: "http://127.0.0.1:\(port.get())")!)
    }

    final class PortBox: @unchecked Sendable {
        private let lock = NSLock(); private var p = 0
        func set(_ v: Int) { lock.withLock { p = v } }
        func get() -> Int { lock.withLock { p } }
    }

    struct Answer {
        var status: Int
        var headers: [AnyHashable: Any]
        var data: Data
        var json: Any? { try? JSONSerialization.jsonObject(with: data) }
        var object: [String: Any] { json as? [String: Any] ?? [:] }
        /// The parameter a 400 names (OpenAI's error.param).
        var param: String? { (object["error"] as? [String: Any])?["param"] as? String }
    }

    /// One request through curl (FoundationNetworking's URLSession never completed a request
    /// inside this test process); cancelling the task kills curl, which hangs up.
    func call(_ base: URL, _ path: String, _ body: Any? = nil, raw: Data? = nil, headers: [String: String] = [:]) async throws -> Answer {
        var args = ["-s", "-D", "-", "-o", "-", "-H", "Expect:", "--max-time", "300"]
        var input: Data? = nil
        if let body { input = try JSONSerialization.data(withJSONObject: body) }
        if let raw { input = raw }
        if input != nil { args += ["-X", "POST", "-H", "Content-Type: application/json", "--data-binary", "@-"] }
        for (k, v) in headers { args += ["-H", "\(k): \(v)"] }
        args.append(URL(string: path, relativeTo: base)!.absoluteString)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        process.arguments = args
        let out = Pipe(), inp = Pipe()
        process.standardOutput = out
        process.standardInput = inp
        let body = input
        let data: Data = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Data, Error>) in
                DispatchQueue.global().async {
                    do {
                        try process.run()
                        if let body { try? inp.fileHandleForWriting.write(contentsOf: body) }
                        try? inp.fileHandleForWriting.close()
                        let d = out.fileHandleForReading.readDataToEndOfFile()
                        process.waitUntilExit()
                        cont.resume(returning: d)
                    } catch { cont.resume(throwing: error) }
                }
            }
        } onCancel: { if process.isRunning { process.terminate() } }
        try Task.checkCancellation()
        guard let split = data.range(of: Data("\r\n\r\n".utf8)) else { throw URLError(.badServerResponse) }
        let head = String(decoding: data[..<split.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        let status = Int(head.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
        var fields: [AnyHashable: Any] = [:]
        for line in head.dropFirst() {
            if let c = line.firstIndex(of: ":") { fields[String(line[..<c])] = line[line.index(after: c)...].trimmingCharacters(in: .whitespaces) }
        }
        return Answer(status: status, headers: fields, data: Data(data[split.upperBound...]))
    }

    func png(_ b64: Any?, file: StaticString = #filePath, line: UInt = #line) throws -> Pixels {
        let data = try XCTUnwrap(Data(base64Encoded: try XCTUnwrap(b64 as? String, file: file, line: line)), file: file, line: line)
        return try data.withUnsafeBytes { try PNGCodec.decodePixels($0, name: "answer", mode: .rgb) }
    }

    /// What `webuiapi.WebUIApi().txt2img(prompt=..., steps=2, width=64, height=64, seed=3)` (webuiapi
    /// 0.9.x) posts, recorded: every key it sends, most of which we ignore.
    static let webuiapiTxt2img: [String: Any] = [
        "enable_hr": false, "denoising_strength": 0.7, "firstphase_width": 0, "firstphase_height": 0, "hr_scale": 2,
        "hr_upscaler": "Latent", "hr_second_pass_steps": 0, "hr_resize_x": 0, "hr_resize_y": 0, "hr_sampler_name": "",
        "hr_prompt": "", "hr_negative_prompt": "", "prompt": "a red apple", "styles": [], "seed": 3, "subseed": -1,
        "subseed_strength": 0.0, "seed_resize_from_h": 0, "seed_resize_from_w": 0, "sampler_name": "Euler a",
        "batch_size": 1, "n_iter": 1, "steps": 2, "cfg_scale": 7.0, "width": 64, "height": 64, "restore_faces": false,
        "tiling": false, "do_not_save_samples": false, "do_not_save_grid": false, "negative_prompt": "", "eta": 1.0,
        "s_min_uncond": 0, "s_churn": 0, "s_tmax": 0, "s_tmin": 0, "s_noise": 1, "override_settings": [String: Any](),
        "override_settings_restore_afterwards": true, "script_args": [], "sampler_index": "Euler a", "script_name": NSNull(),
        "send_images": true, "save_images": false, "alwayson_scripts": [String: Any](),
    ]

    func testA1111Endpoints() async throws {
        try await withServer { server, base in
            let samplers = try await call(base, "/sdapi/v1/samplers")
            XCTAssertEqual(samplers.status, 200)
            XCTAssertTrue((samplers.json as? [[String: Any]] ?? []).contains { $0["name"] as? String == "Euler a" })
            let models = try await call(base, "/sdapi/v1/sd-models").json as? [[String: Any]] ?? []
            // The bundled text-to-image model (samples/text-to-image) when the checkout has it, then --models.
            let bundled = BundledModels.folder("text-to-image") != nil
            let student = BundledModels.folder("text-to-image").flatMap { BundledModels.student(of: $0) } != nil
            XCTAssertEqual(models.map { $0["model_name"] as? String }, (bundled ? ["text-to-image"] : []) + (student ? ["text-to-image-fast"] : []) + ["tiny"])
            let title = try XCTUnwrap(models.first { $0["model_name"] as? String == "tiny" }?["title"] as? String)
            let v1 = try await call(base, "/sdapi/v1/options", ["sd_model_checkpoint": title]).status
            XCTAssertEqual(v1, 200)
            let v2 = try await call(base, "/sdapi/v1/options").object["sd_model_checkpoint"] as? String
            XCTAssertEqual(v2, "tiny")
            let v3 = try await call(base, "/sdapi/v1/options", ["sd_model_checkpoint": "nope"]).status
            XCTAssertEqual(v3, 404)

            var body = Self.webuiapiTxt2img
            body["eta"] = NSNull()  // euler-a has no eta in our samplers' sense; null is "not given"
            let t = try await call(base, "/sdapi/v1/txt2img", body)
            XCTAssertEqual(t.status, 200, String(decoding: t.data, as: UTF8.self))
            let images = t.object["images"] as? [String] ?? []
            XCTAssertEqual(images.count, 1)
            let p = try png(images.first)
            XCTAssertEqual([p.width, p.height], [64, 64])
            let info = try JSONSerialization.jsonObject(with: Data((t.object["info"] as? String ?? "").utf8)) as? [String: Any]
            XCTAssertEqual(info?["seed"] as? Int, 3)
            XCTAssertEqual(info?["sampler_name"] as? String, "Euler a")
            XCTAssertEqual(info?["steps"] as? Int, 2)
            XCTAssertEqual((t.object["parameters"] as? [String: Any])?["steps"] as? Int, 2)
            XCTAssertEqual(info?["cfg_scale"] as? Double, 7)
            // The same request again gives the same bits (the seed fixes the noise).
            let again = try await call(base, "/sdapi/v1/txt2img", body)
            XCTAssertEqual(again.object["images"] as? [String], images)

            let mask = try PNGCodec.encode(Pixels(width: 64, height: 64, channels: 1, bytes: (0..<4096).map { $0 % 64 < 32 ? 0 : 255 }), name: "mask")
            let i2i = try await call(base, "/sdapi/v1/img2img", ["init_images": ["data:image/png;base64," + images[0]], "prompt": "a pear",
                                                                 "steps": 2, "denoising_strength": 0.5, "width": 64, "height": 64, "seed": 1])
            XCTAssertEqual(i2i.status, 200, String(decoding: i2i.data, as: UTF8.self))
            let inpaint = try await call(base, "/sdapi/v1/img2img", ["init_images": [images[0]], "mask": Data(mask).base64EncodedString(),
                                                                     "prompt": "a pear", "steps": 2, "width": 64, "height": 64])
            XCTAssertEqual(inpaint.status, 200, String(decoding: inpaint.data, as: UTF8.self))
            XCTAssertEqual(try png((inpaint.object["images"] as? [String])?.first).width, 64)

            let progress = try await call(base, "/sdapi/v1/progress")
            XCTAssertEqual(progress.status, 200)
            XCTAssertNotNil(progress.object["progress"] as? Double)
            XCTAssertNotNil(progress.object["current_image"] as? String, "the newest image is the preview")
            let v4 = try await call(base, "/sdapi/v1/interrupt", [String: Any]()).status
            XCTAssertEqual(v4, 200)
        }
    }

    /// A copy of the tiny pipeline named "tuned" with `sampling` as its sampling.json, in a fresh
    /// temporary folder `name`-PID (the caller removes it).
    func tinyCopy(_ name: String, sampling: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        let tuned = dir.appendingPathComponent("tuned")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: Self.tiny, to: tuned)
        try Data(sampling.utf8).write(to: tuned.appendingPathComponent("sampling.json"))
        return tuned
    }

    /// An inpainting request on a plain (4-channel) unet uses the folder's reconstruction
    /// guidance (sampling.json), as `generate --mask` does; without a mask it changes nothing.
    func testInpaintingUsesTheFoldersReconstructionGuidance() async throws {
        let tuned = try tinyCopy("serve-rg", sampling: #"{"reconstruction_guidance": 50}"#)
        defer { try? FileManager.default.removeItem(at: tuned.deletingLastPathComponent()) }
        try await withServer({ $0.modelFolders = [Self.tiny, tuned] }) { _, base in
            let start = try PNGCodec.encode(Pixels(width: 64, height: 64, channels: 3, bytes: (0..<12288).map { UInt8($0 * 7 % 256) }), name: "start")
            let mask = try PNGCodec.encode(Pixels(width: 64, height: 64, channels: 1, bytes: (0..<4096).map { $0 % 64 < 32 ? 0 : 255 }), name: "mask")
            func image(_ model: String, masked: Bool) async throws -> [UInt8] {
                var body: [String: Any] = ["init_images": [Data(start).base64EncodedString()], "prompt": "a pear", "steps": 2, "seed": 3,
                                           "width": 64, "height": 64, "override_settings": ["sd_model_checkpoint": model]]
                if masked { body["mask"] = Data(mask).base64EncodedString() }
                let r = try await call(base, "/sdapi/v1/img2img", body)
                XCTAssertEqual(r.status, 200, String(decoding: r.data, as: UTF8.self))
                return try png((r.object["images"] as? [String])?.first).bytes  // pixels: the PNG's text names the model
            }
            let plain = try await image("tiny", masked: true), guided = try await image("tuned", masked: true)
            XCTAssertTrue(plain != guided, "the tuned folder's weight steers the masked part")
            let a = try await image("tiny", masked: false), b = try await image("tuned", masked: false)
            XCTAssertTrue(a == b, "nothing kept: no reconstruction guidance")
        }
    }

    /// A folder's sampling.json guidance interval is listed by /api/v1/models and used when a
    /// request names none; a request's own wins.
    func testAFoldersGuidanceIntervalIsListedAndUsed() async throws {
        let tuned = try tinyCopy("serve-gi", sampling: #"{"guidance_interval": [0, 400]}"#)
        defer { try? FileManager.default.removeItem(at: tuned.deletingLastPathComponent()) }
        try await withServer({ $0.modelFolders = [Self.tiny, tuned] }) { _, base in
            let models = try await call(base, "/api/v1/models").json as? [[String: Any]] ?? []
            let listed = Dictionary(models.map { ($0["name"] as! String, $0["guidance_interval"] as? [Double]) }, uniquingKeysWith: { a, _ in a })
            XCTAssertEqual(listed["tuned"] ?? nil, [0, 400])
            XCTAssertEqual(listed["tiny"] ?? nil, nil)
            func image(_ model: String, _ interval: [Int]?) async throws -> [UInt8] {
                var body: [String: Any] = ["model": model, "prompt": "a pear", "steps": 2, "seed": 3, "width": 32, "height": 32]
                if let interval { body["guidance_interval"] = interval }
                let r = try await call(base, "/api/v1/generate", body)
                XCTAssertEqual(r.status, 200, String(decoding: r.data, as: UTF8.self))
                return try png((r.object["files"] as? [[String: Any]])?.first?["data"]).bytes
            }
            let byDefault = try await image("tuned", nil), asked = try await image("tiny", [0, 400])
            let everywhere = try await image("tiny", nil), overridden = try await image("tuned", [0, 1000])
            XCTAssertTrue(byDefault == asked, "the folder's interval")
            XCTAssertTrue(byDefault != everywhere, "guided at both steps without it")
            XCTAssertTrue(overridden == everywhere, "the request's interval wins")
        }
    }

    func testOpenAIAndOwnEndpoints() async throws {
        try await withServer { server, base in
            let b64 = try await call(base, "/v1/images/generations", ["prompt": "an apple", "model": "tiny", "n": 2, "size": "64x32",
                                                                      "response_format": "b64_json", "steps": 2])
            XCTAssertEqual(b64.status, 200, String(decoding: b64.data, as: UTF8.self))
            let data = b64.object["data"] as? [[String: Any]] ?? []
            XCTAssertEqual(data.count, 2)
            let p = try png(data.first?["b64_json"])
            XCTAssertEqual([p.width, p.height], [64, 32])
            let url = try await call(base, "/v1/images/generations", ["prompt": "an apple", "size": "64x64", "response_format": "url", "steps": 1])
            let link = try XCTUnwrap(((url.object["data"] as? [[String: Any]])?.first?["url"] as? String).flatMap(URL.init(string:)))
            let fetched = try await call(base, link.path)
            XCTAssertEqual(fetched.status, 200)
            XCTAssertEqual(Array(fetched.data.prefix(4)), [0x89, 0x50, 0x4E, 0x47])

            let models = try await call(base, "/api/v1/models").json as? [[String: Any]] ?? []
            let kinds = Dictionary(models.map { ($0["name"] as! String, $0["kind"] as! String) }, uniquingKeysWith: { a, _ in a })
            XCTAssertEqual(kinds["tiny"], "text-to-image")
            // Each model's own defaults, for the page's fields: the bundled notes model's sampling.json.
            let defaults = Dictionary(models.map { ($0["name"] as! String, ($0["guidance"] as? Double, $0["steps"] as? Int)) },
                                      uniquingKeysWith: { a, _ in a })
            if kinds["audio"] != nil { XCTAssertEqual(defaults["audio"]?.0, 3); XCTAssertEqual(defaults["audio"]?.1, 20) }
            if kinds["image"] != nil { XCTAssertEqual(defaults["image"]?.0, 2) }
            if kinds["video"] != nil { XCTAssertEqual(defaults["video"]?.1, 30, "samples/video/sampling.json") }
            XCTAssertEqual(defaults["tiny"]?.0, 7.5)
            for (model, body, mime, magic) in [
                ("image", ["class": "sneaker,bag", "count": 2], "image/png", [UInt8]([0x89, 0x50, 0x4E, 0x47])),
                ("audio", ["class": "60", "seconds": 0.25], "audio/wav", Array("RIFF".utf8)),
                ("video", ["class": "bag", "frames": 4], "video/mp4", []),
            ] as [(String, [String: Any], String, [UInt8])] where kinds[model] != nil {
                var b = body
                b["model"] = model; b["steps"] = 2; b["seed"] = 5
                let r = try await call(base, "/api/v1/generate", b)
                XCTAssertEqual(r.status, 200, "\(model): " + String(decoding: r.data, as: UTF8.self))
                let files = r.object["files"] as? [[String: Any]] ?? []
                XCTAssertEqual(files.count, (body["count"] as? Int) ?? 1, model)
                XCTAssertEqual(files.first?["mime"] as? String, mime)
                let bytes = Data(base64Encoded: files.first?["data"] as? String ?? "") ?? Data()
                XCTAssertEqual(Array(bytes.prefix(magic.count)), magic, model)
                if model == "video" { XCTAssertEqual(String(decoding: bytes.dropFirst(4).prefix(4), as: UTF8.self), "ftyp") }
            }
            if kinds["image-fast"] != nil {  // a bundled student, with its own steps (none given)
                let r = try await call(base, "/api/v1/generate", ["model": "image-fast", "class": "bag", "seed": 5])
                XCTAssertEqual(r.status, 200, String(decoding: r.data, as: UTF8.self))
                XCTAssertEqual((r.object["files"] as? [[String: Any]])?.count, 1)
            }
            if kinds["image"] != nil {
                let bad = try await call(base, "/api/v1/generate", ["model": "image", "class": "giraffe", "steps": 2])
                XCTAssertEqual(bad.status, 400)
                XCTAssertEqual(bad.param, "class")
                // guidance_interval and guidance_rescale act, and are checked
                func first(_ extra: [String: Any]) async throws -> String? {
                    let r = try await call(base, "/api/v1/generate", ["model": "image", "class": "bag", "steps": 3, "seed": 5].merging(extra) { $1 })
                    XCTAssertEqual(r.status, 200, String(decoding: r.data, as: UTF8.self))
                    return (r.object["files"] as? [[String: Any]])?.first?["data"] as? String
                }
                let plain = try await first([:])
                let limited = try await first(["guidance_interval": [0, 500]])
                let rescaled = try await first(["guidance_rescale": 0.7])
                let whole = try await first(["guidance_interval": [0, 1000]])
                XCTAssertNotEqual(limited, plain)
                XCTAssertNotEqual(rescaled, plain)
                XCTAssertEqual(whole, plain, "an interval over every timestep is full guidance")
                for (key, value) in [("guidance_interval", [600, 100] as Any), ("guidance_interval", [0, 2000]), ("guidance_rescale", 2)] {
                    let b = try await call(base, "/api/v1/generate", ["model": "image", "class": "bag", "steps": 2, key: value])
                    XCTAssertEqual(b.status, 400, key)
                    XCTAssertEqual(b.param, key)
                }
                // Augmentation: two classes sent (one real file in each), 1 new sample per class, with the manifest.
                let real = try PNGCodec.encode(Pixels(width: 28, height: 28, channels: 1, bytes: [UInt8](repeating: 128, count: 784)), name: "x")
                let a = try await call(base, "/api/v1/augment", ["model": "image", "mode": "generate", "per_class": 1, "steps": 2, "seed": 1,
                                                                 "data": ["bag": [Data(real).base64EncodedString()], "sneaker": [Data(real).base64EncodedString()]]])
                XCTAssertEqual(a.status, 200, String(decoding: a.data, as: UTF8.self))
                let manifest = a.object["manifest"] as? [[String: Any]] ?? []
                XCTAssertEqual(Set(manifest.compactMap { $0["class"] as? String }), ["bag", "sneaker"])
                XCTAssertEqual((a.object["files"] as? [Any])?.count, 2)
                let vary = try await call(base, "/api/v1/augment", ["model": "image", "mode": "vary", "steps": 2,
                                                                    "data": ["bag": [Data(real).base64EncodedString()]]])
                XCTAssertEqual(vary.status, 200, String(decoding: vary.data, as: UTF8.self))
                let traversal = try await call(base, "/api/v1/augment", ["model": "image", "data": ["../x": [String]()]])
                XCTAssertEqual(traversal.status, 400)
            }
            let page = try await call(base, "/")
            XCTAssertEqual(page.status, 200)
            XCTAssertTrue(String(decoding: page.data, as: UTF8.self).contains("<form id=\"form\">"))
        }
    }

    func testMisuseIsRefusedWithTheParameterNamed() async throws {
        try await withServer({ $0.maxBodyBytes = 1 << 20 }) { server, base in
            for (body, param) in [
                (["prompt": "x", "steps": "many"], "steps"), (["prompt": "x", "steps": 0], "steps"),
                (["prompt": "x", "cfg_scale": 99], "cfg_scale"), (["prompt": "x", "width": 63], "width"),
                (["prompt": "x", "sampler_name": "Magic"], "sampler_name"), (["prompt": "x", "seed": -7], "seed"),
                (["prompt": "x", "batch_size": 1000], "batch_size"), (["prompt": 5], "prompt"),
            ] as [([String: Any], String)] {
                let r = try await call(base, "/sdapi/v1/txt2img", body)
                XCTAssertEqual(r.status, 400, "\(body)")
                XCTAssertEqual(r.param, param, "\(body)")
                XCTAssertTrue((r.object["detail"] as? String ?? "").hasPrefix(param), "\(body)")
            }
            let i2i = try await call(base, "/sdapi/v1/img2img", ["prompt": "x"])
            XCTAssertEqual(i2i.param, "init_images")
            let notPNG = try await call(base, "/sdapi/v1/img2img", ["prompt": "x", "init_images": [Data("hello".utf8).base64EncodedString()]])
            XCTAssertEqual(notPNG.param, "init_images[0]")
            let v5 = try await call(base, "/sdapi/v1/txt2img", raw: Data("{not json".utf8)).status
            XCTAssertEqual(v5, 400)
            let v6 = try await call(base, "/v1/images/generations", ["prompt": "x", "size": "big"]).param
            XCTAssertEqual(v6, "size")
            // Model names resolve only within the catalog: a path is not a name.
            for name in ["../samples/image", "/etc/passwd", "tiny/../tiny", Self.tiny.path] {
                let r = try await call(base, "/api/v1/generate", ["model": name, "steps": 1])
                XCTAssertEqual(r.status, 404, name)
                let t = try await call(base, "/sdapi/v1/txt2img", ["prompt": "x", "override_settings": ["sd_model_checkpoint": name]])
                XCTAssertEqual(t.status, 404, name)
            }
            let big = try await call(base, "/sdapi/v1/txt2img", raw: Data(repeating: 0x20, count: 2 << 20))
            XCTAssertEqual(big.status, 413)
            let v7 = try await call(base, "/no/such/route").status
            XCTAssertEqual(v7, 404)
        }
    }

    func testAPIKeyIsCheckedOnEveryRoute() async throws {
        try await withServer({ $0.apiKey = "s3cret" }) { server, base in
            for path in ["/", "/sdapi/v1/samplers", "/api/v1/models", "/sdapi/v1/progress"] {
                let r = try await call(base, path)
                XCTAssertEqual(r.status, 401, path)
                XCTAssertNotNil(r.headers["WWW-Authenticate"], path)
                let v8 = try await call(base, path, headers: ["Authorization": "Bearer wrong"]).status
                XCTAssertEqual(v8, 401, path)
                let v9 = try await call(base, path, headers: ["Authorization": "Bearer s3cret"]).status
                XCTAssertEqual(v9, 200, path)
            }
            let basic = "Basic " + Data("user:s3cret".utf8).base64EncodedString()
            let v10 = try await call(base, "/sdapi/v1/samplers", headers: ["Authorization": basic]).status
            XCTAssertEqual(v10, 200)
            let v11 = try await call(base, "/sdapi/v1/txt2img", ["prompt": "x", "steps": 1]).status
            XCTAssertEqual(v11, 401)
        }
    }

    /// 20 clients at once: with room in the queue every one gets its own images (nothing lost or
    /// duplicated: each seed comes back once); with a queue of 1, the rest get 429 + Retry-After.
    func testQueueUnderTwentyConcurrentClients() async throws {
        try await withServer({ $0.queueLimit = 32 }) { server, base in
            let answers = try await withThrowingTaskGroup(of: (Int, Answer).self) { group in
                for seed in 0..<20 {
                    group.addTask { (seed, try await self.call(base, "/sdapi/v1/txt2img", ["prompt": "x", "steps": 1, "width": 16, "height": 16, "seed": seed])) }
                }
                return try await group.reduce(into: [(Int, Answer)]()) { $0.append($1) }
            }
            XCTAssertEqual(answers.count, 20)
            XCTAssertTrue(answers.allSatisfy { $0.1.status == 200 })
            let seeds = answers.map { a -> Int in
                let info = try? JSONSerialization.jsonObject(with: Data((a.1.object["info"] as? String ?? "").utf8)) as? [String: Any]
                XCTAssertEqual(info?["seed"] as? Int, a.0)
                return info?["seed"] as? Int ?? -1
            }
            XCTAssertEqual(Set(seeds), Set(0..<20))
            XCTAssertEqual(server.queue.liveCount, 0)
        }
        try await withServer({ $0.queueLimit = 1 }) { server, base in
            let statuses = try await withThrowingTaskGroup(of: Answer.self) { group in
                for seed in 0..<20 {
                    group.addTask { try await self.call(base, "/sdapi/v1/txt2img", ["prompt": "x", "steps": 300, "width": 32, "height": 32, "seed": seed]) }
                }
                return try await group.reduce(into: [Answer]()) { $0.append($1) }
            }
            let ok = statuses.filter { $0.status == 200 }.count, busy = statuses.filter { $0.status == 429 }
            XCTAssertEqual(ok + busy.count, 20)
            XCTAssertGreaterThanOrEqual(ok, 1)
            XCTAssertGreaterThanOrEqual(busy.count, 1)
            XCTAssertTrue(busy.allSatisfy { Int(($0.headers["Retry-After"] as? String) ?? "") ?? 0 >= 1 })
        }
    }

    /// An interrupt stops the running job (its client gets 409).
    func testInterruptCancels() async throws {
        try await withServer { server, base in
            let long = Task { try await self.call(base, "/sdapi/v1/txt2img", ["prompt": "x", "steps": 1000, "width": 16, "height": 16]) }
            var step = 0
            for _ in 0..<600 where step == 0 {
                try await Task.sleep(nanoseconds: 20_000_000)
                step = (try await call(base, "/sdapi/v1/progress").object["state"] as? [String: Any])?["sampling_step"] as? Int ?? 0
            }
            XCTAssertGreaterThan(step, 0, "the job runs")
            let v12 = try await call(base, "/sdapi/v1/interrupt", [String: Any]()).status
            XCTAssertEqual(v12, 200)
            let r = try await long.value
            XCTAssertEqual(r.status, 409)
        }
    }

    /// `cond` within `seconds` (polled every 10 ms).
    func eventually(_ seconds: Double, _ cond: () async throws -> Bool) async rethrows -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if try await cond() { return true }
            try? await Task.sleep(nanoseconds: 10_000_000)
        }
        return try await cond()
    }

    func progressState(_ base: URL) async throws -> [String: Any] {
        try await call(base, "/sdapi/v1/progress", headers: [:]).object["state"] as? [String: Any] ?? [:]
    }

    /// A client that hangs up (closes its socket after sending the request: the server reads
    /// end-of-file) while its job waits: the job leaves the line at once, while the job before it
    /// still runs, and never runs. One that hangs up while its job runs: the job stops at its next step.
    func testHangingUpCancelsTheJob() async throws {
        try await withServer { server, base in
            let port = try XCTUnwrap(base.port)
            // Long (8 images of 64×64, 1000 steps: minutes here), but it is stopped early.
            let steps = 1000
            let running = try Self.send(port: port, "/sdapi/v1/txt2img", ["prompt": "x", "steps": steps, "width": 64, "height": 64, "batch_size": 8])
            let started = try await eventually(30) { (try await self.progressState(base)["sampling_step"] as? Int ?? 0) > 0 }
            XCTAssertTrue(started, "the first job runs")
            let waiting = try Self.send(port: port, "/sdapi/v1/txt2img", ["prompt": "y", "steps": 2, "width": 16, "height": 16])
            let queued = await eventually(10) { server.queue.liveCount == 2 }
            XCTAssertTrue(queued, "the second job waits")
            close(waiting)
            let left = await eventually(10) { server.queue.liveCount == 1 }
            XCTAssertTrue(left, "the waiting job left the line")
            XCTAssertEqual(server.queue.counts, .init(started: 1, dropped: 1, stopped: 0))

            let before = try await progressState(base)
            XCTAssertLessThan(before["sampling_step"] as? Int ?? steps, steps, "the first job still runs")
            let hangUp = Date()
            close(running)
            let stopped = await eventually(30) { server.queue.liveCount == 0 }
            let after = Date().timeIntervalSince(hangUp)
            XCTAssertTrue(stopped, "the running job stopped")
            let state = try await progressState(base)
            XCTAssertLessThan(state["sampling_step"] as? Int ?? steps, steps, "stopped early")
            XCTAssertEqual(state["sampling_steps"] as? Int, steps)
            XCTAssertEqual(state["interrupted"] as? Bool, true)
            XCTAssertEqual([state["jobs_started"], state["jobs_dropped"], state["jobs_stopped"]].map { $0 as? Int }, [1, 1, 1],
                           "the waiting job never ran")
            XCTAssertEqual(state["job_count"] as? Int, 0)
            print("running job stopped \(String(format: "%.3f", after)) s after its client hung up, at step \(state["sampling_step"] ?? "?") of \(steps)")
        }
    }

    /// Connects to 127.0.0.1:`port` and sends one JSON POST; returns the socket (close it to hang up).
    static func send(port: Int, _ path: String, _ body: [String: Any]) throws -> Int32 {
        let json = try JSONSerialization.data(withJSONObject: body)
        let request = Data("POST \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nContent-Type: application/json\r\nContent-Length: \(json.count)\r\n\r\n".utf8) + json
        let fd = connectTo(port: port)
        guard fd >= 0 else { throw URLError(.cannotConnectToHost) }
        let sent = request.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
        guard sent == request.count else { close(fd); throw URLError(.networkConnectionLost) }
        return fd
    }

    /// A TCP socket connected to 127.0.0.1:`port`, or -1.
    static func connectTo(port: Int) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return -1 }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = in_port_t(UInt16(port).bigEndian)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        if !ok { close(fd); return -1 }
        return fd
    }
}

/// `diffuse serve` as a user runs it, stopped by SIGTERM while one job runs and one waits: the
/// waiting one's client gets 409 at once, the port stops taking connections, the running job
/// finishes and answers 200 with its image, and the process exits 0.
extension ServeTests {
    func testSIGTERMDrainsAndExits() async throws {
        let p = Process()
        p.executableURL = diffuseExecutable
        p.arguments = ["serve", "--port", "0", "--no-bundled", "--models", Self.tiny.path]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        let output = OutputBox()
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        DispatchQueue.global().async { output.read(out.fileHandleForReading) }
        let marker = "serving on http://127.0.0.1:"
        let up = await eventually(60) { output.text.contains(marker) }
        XCTAssertTrue(up, "the server starts: \(output.text)")
        let text = output.text
        let port = try XCTUnwrap(text.range(of: marker).flatMap { Int(text[$0.upperBound...].prefix { $0.isNumber }) })
        let base = URL(string: "http://127.0.0.1:\(port)")!

        // The running job: long enough to outlast the checks below (3.4 s here), short enough to keep the test quick.
        let steps = 1000
        let running = Task { try await self.call(base, "/sdapi/v1/txt2img", ["prompt": "x", "steps": steps, "width": 64, "height": 64, "seed": 1]) }
        let started = try await eventually(30) { (try await self.progressState(base)["sampling_step"] as? Int ?? 0) > 0 }
        XCTAssertTrue(started, "the first job runs")
        let waiting = Task { try await self.call(base, "/sdapi/v1/txt2img", ["prompt": "y", "steps": 1000, "width": 16, "height": 16]) }
        let queued = try await eventually(10) { (try await self.progressState(base)["job_count"] as? Int) == 2 }
        XCTAssertTrue(queued, "the second job waits")

        let term = Date()
        XCTAssertEqual(kill(p.processIdentifier, SIGTERM), 0)
        let dropped = try await waiting.value
        XCTAssertEqual(dropped.status, 409, String(decoding: dropped.data, as: UTF8.self))
        let refused = await eventually(5) { !Self.accepts(port: port) }
        XCTAssertTrue(refused, "the port stops taking connections")
        XCTAssertTrue(p.isRunning && running.isCancelled == false, "while the running job goes on")
        let answer = try await running.value
        XCTAssertEqual(answer.status, 200, String(decoding: answer.data, as: UTF8.self))
        let image = try png((answer.object["images"] as? [String])?.first)
        XCTAssertEqual([image.width, image.height], [64, 64])
        let exited = await eventually(30) { !p.isRunning }
        let drain = Date().timeIntervalSince(term)
        XCTAssertTrue(exited, "the process exits")
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .exit)
        XCTAssertEqual(p.terminationStatus, 0)
        XCTAssertFalse(Self.accepts(port: port))
        let closing = await eventually(5) { output.text.contains("stopped") }
        XCTAssertTrue(closing, output.text)
        print("SIGTERM to exit: \(String(format: "%.3f", drain)) s (the running job of \(steps) steps finished first)")
    }

    /// Whether a TCP connection to 127.0.0.1:`port` is accepted.
    static func accepts(port: Int) -> Bool {
        let fd = connectTo(port: port)
        if fd >= 0 { close(fd) }
        return fd >= 0
    }

    /// A child's output as it arrives.
    final class OutputBox: @unchecked Sendable {
        private let lock = NSLock()
        private var data = Data()
        var text: String { lock.withLock { String(decoding: data, as: UTF8.self) } }
        func read(_ handle: FileHandle) {
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { return }
                lock.withLock { data.append(chunk) }
            }
        }
    }
}

/// The web page in a real browser: headless Chromium (Debian's `chromium`) loads it with the
/// settings in its link, the page fills the form and presses Generate, and the DOM it ends with
/// holds the result image, a PNG of the asked size; a screenshot is taken. Skipped without chromium.
extension ServeTests {
    func testPageGeneratesAnImageInChromium() async throws {
        let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let chromium else { throw XCTSkip("chromium is not installed (apt-get install chromium); scripts/browser-test runs this check by hand") }
        try await withServer { _, base in
            let link = base.absoluteString + "/?model=tiny&prompt=a%20red%20apple&steps=2&width=48&height=32&seed=1&generate=1"
            let shot = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-serve-\(UUID().uuidString).png")
            defer { try? FileManager.default.removeItem(at: shot) }
            let flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1000,640", "--virtual-time-budget=30000"]
            let dom = try Self.run(chromium, flags + ["--dump-dom", link])
            _ = try Self.run(chromium, flags + ["--screenshot=\(shot.path)", link])
            let marker = "<img class=\"result\" src=\"data:image/png;base64,"
            let start = try XCTUnwrap(dom.range(of: marker), "the page shows a result image")
            let b64 = dom[start.upperBound...].prefix { $0 != "\"" }
            let png = try XCTUnwrap(Data(base64Encoded: String(b64)))
            let pixels = try png.withUnsafeBytes { try PNGCodec.decodePixels($0, name: "result", mode: .rgb) }
            XCTAssertEqual([pixels.width, pixels.height], [48, 32])
            let screenshot = try Data(contentsOf: shot)
            let page = try screenshot.withUnsafeBytes { try PNGCodec.decodePixels($0, name: "screenshot", mode: .rgb) }
            XCTAssertEqual([page.width, page.height], [1000, 640])
        }
    }

    static func run(_ exe: String, _ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let d = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: d, as: UTF8.self)
    }
}
