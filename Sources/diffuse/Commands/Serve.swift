import ArgumentParser
import Foundation
import Serve

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the models over HTTP: an A1111-compatible API, OpenAI's images endpoint, our own endpoints and a web page.",
        discussion: """
        Open http://127.0.0.1:7860/ for the web page. Models: the bundled ones in samples/ and every \
        pipeline folder (or Stable Diffusion .safetensors file) inside each --models folder, by folder \
        name. Endpoints: POST /sdapi/v1/txt2img, /sdapi/v1/img2img, /sdapi/v1/options, /sdapi/v1/interrupt; \
        GET /sdapi/v1/samplers, /sdapi/v1/sd-models, /sdapi/v1/options, /sdapi/v1/progress; \
        POST /v1/images/generations; GET /api/v1/models; POST /api/v1/generate (class images, audio, \
        video, or a prompt), /api/v1/augment. One job runs at a time per model; --queue more wait \
        (429 with Retry-After beyond); a client that hangs up cancels its job. SIGTERM or Ctrl-C \
        answers the waiting jobs 409, closes the port, lets the running jobs finish, then exits 0.
        """
    )

    @Option(help: "Address to listen on (loopback by default; 0.0.0.0 for every interface).") var host = "127.0.0.1"
    @Option(help: "Port (0: any free one, printed at start).") var port = 7860
    @Option(name: .customLong("models"), help: "A folder of model folders to serve (repeatable).") var models: [String] = []
    @Flag(help: "Serve only --models, not the bundled models.") var noBundled = false
    @Option(help: "Require this key on every route: Authorization: Bearer KEY (or HTTP Basic with it as the password).")
    var apiKey: String?
    @Option(help: "Jobs that may wait per model behind the running one (1-1000).") var queue = 8
    @Option(help: "Largest request body in MB (1-1024).") var maxBodyMb = 32
    @Option(help: "Most samples one request may ask for (1-256).") var maxCount = 16
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if !(0...65535).contains(port) { throw ValidationError("--port must be within 0-65535") }
        if !(1...1000).contains(queue) { throw ValidationError("--queue must be within 1-1000") }
        if !(1...1024).contains(maxBodyMb) { throw ValidationError("--max-body-mb must be within 1-1024") }
        if !(1...256).contains(maxCount) { throw ValidationError("--max-count must be within 1-256") }
        if let apiKey, apiKey.isEmpty { throw ValidationError("--api-key must not be empty") }
    }

    func run() throws {
        runtime.apply()
        var o = ServeOptions()
        o.host = host; o.port = port; o.apiKey = apiKey; o.bundled = !noBundled
        o.modelFolders = models.map { URL(fileURLWithPath: $0) }
        o.queueLimit = queue; o.maxBodyBytes = maxBodyMb << 20; o.maxCount = maxCount
        let server = try DiffuseServer(options: o)
        for (path, reason) in server.catalog.skipped { note("skipped \(path): \(reason)") }
        if server.catalog.entries.isEmpty { note("warning: no models to serve (give --models DIR)") }
        for e in server.catalog.entries { note("model \(e.name) (\(e.kind.rawValue)): \(e.url.path)") }
        let host = self.host
        let done = DispatchSemaphore(value: 0)
        final class Outcome: @unchecked Sendable { var error: Error? }
        let outcome = Outcome()
        Task {
            do {
                try await server.run { port in
                    print("serving on http://\(host):\(port)/")
                    fflush(stdout)
                }
            } catch { outcome.error = error }
            done.signal()
        }
        done.wait()
        if let e = outcome.error { throw e }
        print("stopped")
    }
}
