import Tensor

/// A layer or model. Parameters and submodules are named once, next to their properties,
/// through `visit` — the names are diffusers' checkpoint names (`down_blocks.0.resnets.1.conv1.weight`).
public protocol Module: AnyObject {
    func visit(_ v: inout ModuleVisitor)
}

/// Layers whose forward differs between training and evaluation (dropout).
public protocol TrainingModeAware: AnyObject {
    var isTraining: Bool { get set }
}

/// Walks a module tree, handing out each parameter and module with its dotted name.
public struct ModuleVisitor {
    public enum Item {
        case parameter(Tensor)
        case module(any Module)
    }

    private var prefix: String
    private let body: (String, Item) -> Void

    init(prefix: String = "", _ body: @escaping (String, Item) -> Void) {
        self.prefix = prefix
        self.body = body
    }

    private func full(_ name: String) -> String { prefix.isEmpty ? name : prefix + "." + name }

    /// A parameter (nil: absent in this configuration, e.g. a bias turned off).
    public mutating func callAsFunction(_ name: String, _ t: Tensor?) {
        if let t { body(full(name), .parameter(t)) }
    }

    /// A submodule (nil: absent in this configuration).
    public mutating func callAsFunction(_ name: String, _ m: (any Module)?) {
        guard let m else { return }
        body(full(name), .module(m))
        var child = ModuleVisitor(prefix: full(name), body)
        m.visit(&child)
    }

    /// A list of submodules, named `name.0`, `name.1`, ... as `nn.ModuleList` does.
    public mutating func callAsFunction(_ name: String, _ ms: [any Module]) {
        for (i, m) in ms.enumerated() { self("\(name).\(i)", m) }
    }

    /// A list where some entries have no parameters (e.g. `to_out = [Linear, Dropout]`).
    public mutating func callAsFunction(_ name: String, _ ms: [(any Module)?]) {
        for (i, m) in ms.enumerated() { self("\(name).\(i)", m) }
    }
}

extension Module {
    /// Every parameter with its checkpoint name, in declaration order.
    public func namedParameters() -> [(name: String, tensor: Tensor)] {
        var out: [(String, Tensor)] = []
        var v = ModuleVisitor { name, item in
            if case .parameter(let t) = item { out.append((name, t)) }
        }
        visit(&v)
        return out
    }

    /// Parameters that training updates (those with `requiresGrad`).
    public func trainableParameters() -> [Tensor] { namedParameters().map(\.tensor).filter(\.requiresGrad) }

    /// Number of scalars in all parameters.
    public var parameterCount: Int { namedParameters().reduce(0) { $0 + $1.tensor.count } }

    /// Every submodule (not including self).
    public func submodules() -> [any Module] {
        var out: [any Module] = []
        var v = ModuleVisitor { _, item in
            if case .module(let m) = item { out.append(m) }
        }
        visit(&v)
        return out
    }

    /// Switches dropout and other train-only behaviour on or off, everywhere below.
    public func setTraining(_ on: Bool) {
        if let s = self as? TrainingModeAware { s.isTraining = on }
        for m in submodules() { (m as? TrainingModeAware)?.isTraining = on }
    }

    /// Name → tensor, sharing storage with the parameters.
    public func stateDict() -> [String: Tensor] {
        Dictionary(namedParameters().map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
    }

    /// Clears every parameter's gradient.
    public func zeroGrad() { for (_, t) in namedParameters() { t.grad = nil } }
}
