import Foundation

/// The small pretrained models shipped in `samples/` (one pipeline folder per modality, and
/// `text-to-image` when it is there): found through $DIFFUSE_SAMPLES, else `samples/` beside
/// the executable (up to five folders up, as in a build folder of the package) or the current folder.
public enum BundledModels {
    /// The folders that may hold the bundled models, in the order they are tried.
    public static var roots: [URL] {
        var candidates: [URL] = []
        if let env = ProcessInfo.processInfo.environment["DIFFUSE_SAMPLES"] { candidates.append(URL(fileURLWithPath: env)) }
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        // `make install`: PREFIX/bin/diffuse with the models in PREFIX/share/diffuse/<modality>.
        candidates.append(exe.deletingLastPathComponent().appendingPathComponent("share/diffuse"))
        var dir = exe
        for _ in 0..<5 { candidates.append(dir.appendingPathComponent("samples")); dir = dir.deletingLastPathComponent() }
        candidates.append(URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("samples"))
        return candidates
    }

    /// The bundled pipeline folder `name` (a modality's name, or `text-to-image`), if any.
    public static func folder(_ name: String) -> URL? {
        roots.map { $0.appendingPathComponent(name) }
            .first { FileManager.default.fileExists(atPath: $0.appendingPathComponent("model_index.json").path) }
    }

    /// The few-step student of pipeline folder DIR (`--fast`): the folder DIR-fast beside it
    /// (samples/image-fast for samples/image), made by `diffuse distill`; nil when there is none.
    public static func student(of dir: URL) -> URL? {
        let d = dir.standardizedFileURL
        let u = d.deletingLastPathComponent().appendingPathComponent(d.lastPathComponent + "-fast")
        let fm = FileManager.default
        return fm.fileExists(atPath: u.appendingPathComponent("model_index.json").path)
            && fm.fileExists(atPath: u.appendingPathComponent("distillation.json").path) ? u : nil
    }
}
