import Foundation

/// How much memory one run may plan to use: checked against a model's parameters and its
/// activations before they are allocated, so that a hostile or mistaken config ends in a
/// message ("model would need 4.1 TB; the budget is 19 GB") rather than in the kernel's OOM
/// killer. Default: 80 % of physical memory; `DIFFUSE_MAX_MEMORY` (bytes, or with a K/M/G/T
/// suffix) or a command's `--max-memory` sets it.
public enum MemoryBudget {
    nonisolated(unsafe) private static var override: Int? = nil

    /// The budget in bytes.
    public static var bytes: Int {
        if let override { return override }
        if let s = ProcessInfo.processInfo.environment["DIFFUSE_MAX_MEMORY"], let b = parse(s) { return b }
        return Int(Double(ProcessInfo.processInfo.physicalMemory) * 0.8)
    }

    /// Sets the budget for this process (a command's `--max-memory`).
    public static func set(_ bytes: Int) {
        override = bytes
        BufferPool.shared.setLimit(BufferPool.limit(budget: bytes))
    }

    /// "24G", "512M", "1.5T", "1000000" → bytes; nil for anything else (or ≤ 0).
    public static func parse(_ s: String) -> Int? {
        let t = s.trimmingCharacters(in: .whitespaces).uppercased()
        guard let last = t.last else { return nil }
        let scale: Double
        var digits = t
        switch last {
        case "K": scale = 1024
        case "M": scale = 1_048_576
        case "G": scale = 1_073_741_824
        case "T": scale = 1_099_511_627_776
        default: scale = 1
        }
        if scale != 1 { digits.removeLast() }
        if digits.hasSuffix("I") || digits.hasSuffix("B") { return nil }
        guard let v = Double(digits), v.isFinite, v > 0, v * scale < 9e18 else { return nil }
        return Int(v * scale)
    }

    /// Bytes as people read them: "4.1 TB", "24 GB", "512 MB".
    public static func describe(_ bytes: Double) -> String {
        let units = ["bytes", "KB", "MB", "GB", "TB", "PB", "EB"]
        var v = bytes, i = 0
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(Int(v)) bytes" : String(format: v < 10 ? "%.1f %@" : "%.0f %@", v, units[i])
    }

    /// Throws when `bytes` (a Double: estimates may exceed Int) is over the budget; `what`
    /// says what needs it ("model", "generating 16 frames").
    public static func check(_ bytes: Double, _ what: String) throws {
        let budget = Self.bytes
        guard bytes <= Double(budget) else {
            throw MemoryBudgetError(what: what, needed: bytes, budget: budget)
        }
    }
}

/// A plan that needs more memory than `MemoryBudget` allows.
public struct MemoryBudgetError: Error, CustomStringConvertible {
    public var what: String
    public var needed: Double
    public var budget: Int
    public var description: String {
        "\(what) would need \(MemoryBudget.describe(needed)); the memory budget is \(MemoryBudget.describe(Double(budget))) "
            + "(80% of this machine's memory unless --max-memory or DIFFUSE_MAX_MEMORY says otherwise)"
    }
}
