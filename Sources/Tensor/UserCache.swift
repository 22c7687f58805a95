import Foundation

/// The user's cache folder for diffuse: `$XDG_CACHE_HOME/diffuse`, else `~/.cache/diffuse`.
/// Things that are slow to make and cheap to make again live there (trained probes, data sets
/// built on first use, the BLAS core self-check).
public enum UserCache {
    public static var directory: URL {
        let env = ProcessInfo.processInfo.environment
        let base = env["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: NSHomeDirectory()).appendingPathComponent(".cache")
        return base.appendingPathComponent("diffuse")
    }

    /// `directory`/`name`: one kind of cached thing.
    public static func folder(_ name: String) -> URL { directory.appendingPathComponent(name) }
}
