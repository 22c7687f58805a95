import Foundation
import Dispatch

/// One recorded op: what it was (with whatever its gradient needs) and what it read.
/// The output holds its node; nodes hold inputs, never outputs, so a graph frees itself
/// when its tensors go out of scope.
final class Node {
    let op: Op
    let inputs: [Tensor]
    /// Recording order: backward visits nodes from the newest to the oldest (the tape).
    let id: Int

    nonisolated(unsafe) private static var nextID = 0

    init(op: Op, inputs: [Tensor]) {
        self.op = op
        self.inputs = inputs
        Node.nextID += 1
        self.id = Node.nextID
    }
}

/// Whether ops are recorded. Inference runs with recording off: no graph is kept, and the
/// buffers of intermediate tensors go straight back to the pool for the next step.
public enum GradMode {
    nonisolated(unsafe) public private(set) static var isEnabled = true

    /// Runs `body` with recording off (inference mode).
    public static func withoutGrad<R>(_ body: () throws -> R) rethrows -> R {
        let saved = isEnabled
        isEnabled = false
        defer { isEnabled = saved }
        return try body()
    }

    /// Runs `body` with recording on.
    public static func withGrad<R>(_ body: () throws -> R) rethrows -> R {
        let saved = isEnabled
        isEnabled = true
        defer { isEnabled = saved }
        return try body()
    }
}

extension Tensor {
    /// Attaches `op` to this freshly made tensor when recording is on and an input needs a gradient.
    @inline(__always)
    func recorded(_ op: @autoclosure () -> Op, _ inputs: [Tensor]) -> Tensor {
        if GradMode.isEnabled && inputs.contains(where: { $0.requiresGrad }) {
            requiresGrad = true
            node = Node(op: op(), inputs: inputs)
        }
        return self
    }

    /// True for tensors made by the user rather than by a recorded op.
    public var isLeaf: Bool { node == nil }

    /// Back-propagates from this one-element tensor. Gradients accumulate into `grad` of every
    /// leaf that requires one (call `zeroGrad`/set `grad = nil` between steps). Gradients are
    /// never modified in place, so tensors may share a gradient safely.
    public func backward() {
        precondition(count == 1, "backward() needs a one-element loss, shape is \(shape)")
        precondition(requiresGrad, "backward(): the loss does not depend on any tensor that requires a gradient")
        GradMode.withoutGrad {
            // Gather the recorded graph reachable from the loss, then replay it newest first.
            var order: [Tensor] = []
            var seen = Set<ObjectIdentifier>()
            var stack: [Tensor] = [self]
            while let t = stack.popLast() {
                guard let node = t.node, seen.insert(ObjectIdentifier(t)).inserted else { continue }
                order.append(t)
                for i in node.inputs where i.requiresGrad { stack.append(i) }
            }
            order.sort { $0.node!.id > $1.node!.id }

            let seed = Tensor.ones(shape)
            self.grad = self.grad.map { $0 + seed } ?? seed
            for t in order {
                guard let g = t.grad, let node = t.node else { continue }
                if t !== self { t.grad = nil }  // keep gradients of leaves and the loss only
                let t0 = OpProfile.isEnabled ? DispatchTime.now().uptimeNanoseconds : 0
                let grads = gradients(of: node, outputGrad: g, output: t)
                if OpProfile.isEnabled { OpProfile.add(node.op.name, DispatchTime.now().uptimeNanoseconds - t0) }
                for (input, gi) in zip(node.inputs, grads) {
                    guard input.requiresGrad, let gi else { continue }
                    precondition(gi.shape == input.shape,
                                 "gradient shape \(gi.shape) != input shape \(input.shape) for \(node.op)")
                    input.grad = input.grad.map { $0 + gi } ?? gi
                }
            }
        }
    }
}

/// Time spent in each op's gradient, when `DIFFUSE_PROFILE` is set (printed by `report()`).
public enum OpProfile {
    public static let isEnabled = ProcessInfo.processInfo.environment["DIFFUSE_PROFILE"] != nil
    nonisolated(unsafe) private static var totals: [String: (UInt64, Int)] = [:]

    static func add(_ name: String, _ ns: UInt64) {
        let (t, c) = totals[name] ?? (0, 0)
        totals[name] = (t + ns, c + 1)
    }

    /// Lines "op  calls  ms", largest first.
    public static func report() -> String {
        totals.sorted { $0.value.0 > $1.value.0 }
            .map { $0.key.padding(toLength: 18, withPad: " ", startingAt: 0) + String(format: "%7d calls %9.1f ms", $0.value.1, Double($0.value.0) / 1e6) }
            .joined(separator: "\n")
    }
}
