import Foundation

/// Where diffuse keeps what it can make again (rendered data sets, trained probes):
/// $XDG_CACHE_HOME/diffuse/<name>, else ~/.cache/diffuse/<name>.
public enum UserCache {
    public static func folder(_ name: String) -> URL {
        let env = ProcessInfo.processInfo.environment
        let cache = env["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: NSHomeDirectory()).appendingPathComponent(".cache")
        return cache.appendingPathComponent("diffuse").appendingPathComponent(name)
    }
}
