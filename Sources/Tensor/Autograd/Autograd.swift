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
        if OpProfile.isEnabled { OpProfile.forwardDone(op()) }
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
        OpProfile.inBackward = true
        defer { OpProfile.inBackward = false; OpProfile.mark() }
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
                if OpProfile.isEnabled { OpProfile.add("backward " + node.op.name, DispatchTime.now().uptimeNanoseconds - t0) }
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

/// Where the time goes, when `DIFFUSE_PROFILE` is set (printed by `report()`): each op's
/// gradient ("backward" lines), and each forward op ("forward" lines) as the time since the
/// previous op ended on the calling thread — which also counts the glue between ops (the
/// modules' own code) against the op that follows it. `mark()` starts the clock (before a run).
public enum OpProfile {
    public static let isEnabled = ProcessInfo.processInfo.environment["DIFFUSE_PROFILE"] != nil
    nonisolated(unsafe) private static var totals: [String: (UInt64, Int)] = [:]
    nonisolated(unsafe) private static var flops: [String: Double] = [:]
    nonisolated(unsafe) private static var last: UInt64 = 0
    nonisolated(unsafe) static var inBackward = false

    static func add(_ name: String, _ ns: UInt64, flops f: Double = 0) {
        let (t, c) = totals[name] ?? (0, 0)
        totals[name] = (t + ns, c + 1)
        if f > 0 { flops[name, default: 0] += f }
    }

    /// Times `body` under `name` (with its FLOPs, for a rate) when profiling.
    @inline(__always)
    static func timed<R>(_ name: @autoclosure () -> String, flops f: @autoclosure () -> Double = 0, _ body: () -> R) -> R {
        guard isEnabled, !inBackward, Thread.isMainThread else { return body() }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let r = body()
        add(name(), DispatchTime.now().uptimeNanoseconds - t0, flops: f())
        return r
    }

    /// Starts the forward clock now.
    public static func mark() { last = DispatchTime.now().uptimeNanoseconds }

    static func forwardDone(_ op: Op) {
        guard !inBackward, Thread.isMainThread else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        if last > 0 { add("forward " + op.name, now - last) }
        last = now
    }

    /// Forgets what was measured.
    public static func reset() { totals = [:]; flops = [:]; last = 0 }

    /// Lines "op  calls  ms", largest first.
    public static func report() -> String {
        totals.sorted { $0.value.0 > $1.value.0 }
            .map { e in
                let rate = flops[e.key].map { String(format: " %7.1f GFLOP/s", $0 / Double(e.value.0)) } ?? ""
                return e.key.padding(toLength: 40, withPad: " ", startingAt: 0) +
                    String(format: "%7d calls %9.1f ms", e.value.1, Double(e.value.0) / 1e6) + rate
            }
            .joined(separator: "\n")
    }
}
