import Foundation
import Tensor

/// Why a checkpoint did not fit a model: every missing, unexpected and mis-shaped key at once.
public struct CheckpointMismatch: Error, CustomStringConvertible {
    public let source: String
    public let missing: [String]
    public let unexpected: [String]
    public let mismatched: [(name: String, model: [Int], checkpoint: [Int])]

    public var description: String {
        var lines = ["\(source): checkpoint does not match the model"]
        if !missing.isEmpty { lines.append("  missing (\(missing.count)): " + missing.joined(separator: ", ")) }
        if !unexpected.isEmpty { lines.append("  unexpected (\(unexpected.count)): " + unexpected.joined(separator: ", ")) }
        for m in mismatched { lines.append("  \(m.name): model \(m.model), checkpoint \(m.checkpoint)") }
        return lines.joined(separator: "\n")
    }
}

/// What a non-strict load skipped.
public struct LoadReport: Sendable {
    public var loaded: [String] = []
    public var missing: [String] = []
    public var unexpected: [String] = []
    public var mismatched: [String] = []
}

/// Where named tensors come from: an in-memory dictionary or a safetensors file.
public protocol TensorSource {
    var sourceName: String { get }
    var tensorNames: [String] { get }
    func shape(of name: String) -> [Int]?
    func tensor(named name: String) throws -> Tensor
    /// Loads `name` into `target` in its 16-bit form when the source holds it as F16/BF16
    /// (`target.halfFormat` is then set); false when it does not (the caller copies Float32).
    func loadHalf(named name: String, into target: Tensor) throws -> Bool
}

extension TensorSource {
    public func loadHalf(named name: String, into target: Tensor) throws -> Bool { false }
}

extension Dictionary: TensorSource where Key == String, Value == Tensor {
    public var sourceName: String { "<memory>" }
    public var tensorNames: [String] { Array(keys) }
    public func shape(of name: String) -> [Int]? { self[name]?.shape }
    public func tensor(named name: String) throws -> Tensor { self[name]! }
}

extension SafeTensorsFile: TensorSource {
    public var sourceName: String { url.path }
    public var tensorNames: [String] { names }
    public func shape(of name: String) -> [Int]? { entry(name)?.shape }
    public func tensor(named name: String) throws -> Tensor { try weight(name) }
    public func loadHalf(named name: String, into target: Tensor) throws -> Bool {
        try loadHalf(name, elementOffset: 0, into: target)
    }
}

/// diffusers' legacy names → current ones: attention's `query`, `key`, `value`,
/// `proj_attn` (→ `to_q`, `to_k`, `to_v`, `to_out.0`) and Downsample2D's `Conv2d_0` (→ `conv`,
/// which diffusers registers under both names).
public func currentName(_ legacy: String) -> String? {
    var parts = legacy.split(separator: ".").map(String.init)
    guard parts.count >= 2 else { return nil }
    let i = parts.count - 2
    switch parts[i] {
    case "query": parts[i] = "to_q"
    case "key": parts[i] = "to_k"
    case "value": parts[i] = "to_v"
    case "proj_attn": parts[i] = "to_out.0"
    case "Conv2d_0": parts[i] = "conv"
    default: return nil
    }
    return parts.joined(separator: ".")
}

extension Module {
    /// Copies tensors into the parameters by name. Strict (the default): any missing,
    /// unexpected or mis-shaped key throws one `CheckpointMismatch` listing all of them, and
    /// nothing is modified. Non-strict: loads what fits and reports the rest.
    ///
    /// `keepHalf`: the weights of `Linear` and `Conv2d` layers that the source holds as F16/BF16
    /// stay 16-bit in memory (half the bytes; for inference: they take no gradients), as SD's
    /// F16 checkpoints are run.
    @discardableResult
    public func load(from source: some TensorSource, strict: Bool = true, keepHalf: Bool = false) throws -> LoadReport {
        let params = namedParameters()
        var expected: [String: Tensor] = [:]
        for (n, t) in params { expected[n] = t }
        // Map each checkpoint key to a model key (directly, or through the legacy names).
        var mapping: [(model: String, file: String)] = []
        var unexpected: [String] = []
        var claimed = Set<String>()
        let present = Set(source.tensorNames)
        for name in source.tensorNames.sorted() {
            if expected[name] != nil {
                mapping.append((name, name)); claimed.insert(name)
            } else if let alt = currentName(name), expected[alt] != nil {
                // The same tensor under its current name too: a duplicate, not a conflict.
                if !present.contains(alt) { mapping.append((alt, name)); claimed.insert(alt) }
            } else {
                unexpected.append(name)
            }
        }
        let missing = params.map(\.name).filter { !claimed.contains($0) }
        var mismatched: [(String, [Int], [Int])] = []
        for (m, f) in mapping {
            let s = source.shape(of: f) ?? []
            if s != expected[m]!.shape { mismatched.append((m, expected[m]!.shape, s)) }
        }
        if strict && (!missing.isEmpty || !unexpected.isEmpty || !mismatched.isEmpty) {
            throw CheckpointMismatch(source: source.sourceName, missing: missing, unexpected: unexpected,
                                     mismatched: mismatched.map { (name: $0.0, model: $0.1, checkpoint: $0.2) })
        }
        let bad = Set(mismatched.map(\.0))
        var report = LoadReport(missing: missing, unexpected: unexpected, mismatched: mismatched.map(\.0))
        let halfable = keepHalf ? halfEligibleWeights() : []
        for (m, f) in mapping where !bad.contains(m) {
            let t = expected[m]!
            let asHalf = halfable.contains(ObjectIdentifier(t)) ? try source.loadHalf(named: f, into: t) : false
            if !asHalf { t.copyFrom(try source.tensor(named: f)) }
            report.loaded.append(m)
        }
        // The per-tensor reading buffers have the parameters' sizes, which nothing reuses.
        BufferPool.drain()
        return report
    }

    /// Loads a safetensors file (F32, F16 or BF16) by name; see `load(from:strict:keepHalf:)`.
    @discardableResult
    public func load(safetensors url: URL, strict: Bool = true, keepHalf: Bool = false) throws -> LoadReport {
        try load(from: SafeTensorsFile(url: url), strict: strict, keepHalf: keepHalf)
    }

    /// The weights that may be held as 16-bit floats: those of `Linear` and `Conv2d` layers,
    /// which widen them for their kernel (`Tensor.materialized()`).
    func halfEligibleWeights() -> Set<ObjectIdentifier> {
        var out = Set<ObjectIdentifier>()
        for m in [self as any Module] + submodules() {
            if let l = m as? Linear { out.insert(ObjectIdentifier(l.weight)) }
            if let c = m as? Conv2d { out.insert(ObjectIdentifier(c.weight)) }
        }
        return out
    }

    /// Holds the weights of the `Linear` and `Conv2d` layers as 16-bit floats from now on
    /// (rounded to nearest): half their memory, for inference; they take no gradients after.
    public func storeWeightsAsHalf(_ format: HalfFormat) {
        let eligible = halfEligibleWeights()
        for (_, t) in namedParameters() where eligible.contains(ObjectIdentifier(t)) { t.storeAsHalf(format) }
        BufferPool.drain()
    }

    /// Bytes the parameters occupy (16-bit ones at 2 bytes each).
    public var parameterBytes: Int { namedParameters().reduce(0) { $0 + $1.tensor.elementBytes } }

    /// Writes every parameter under its checkpoint name (atomically).
    public func save(safetensors url: URL, dtype: SafeTensorsDType = .F32, metadata: [String: String] = [:]) throws {
        try SafeTensors.write(stateDict(), to: url, dtype: dtype, metadata: metadata)
    }
}
