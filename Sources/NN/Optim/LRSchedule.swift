import Foundation

/// Learning-rate multipliers by step, as diffusers' `get_scheduler` names them.
public enum LRSchedule: Codable, Equatable, Sendable {
    case constant
    case constantWithWarmup(warmup: Int)
    case linear(warmup: Int, total: Int)
    case cosine(warmup: Int, total: Int, cycles: Double = 0.5)

    /// Multiplier of the base learning rate at `step` (0-based, before the step's update).
    public func factor(at step: Int) -> Double {
        switch self {
        case .constant:
            return 1
        case .constantWithWarmup(let w):
            return step < w ? Double(step) / Double(max(1, w)) : 1
        case .linear(let w, let total):
            if step < w { return Double(step) / Double(max(1, w)) }
            return max(0, Double(total - step) / Double(max(1, total - w)))
        case .cosine(let w, let total, let cycles):
            if step < w { return Double(step) / Double(max(1, w)) }
            let progress = Double(step - w) / Double(max(1, total - w))
            return max(0, 0.5 * (1 + cos(Double.pi * cycles * 2 * progress)))
        }
    }
}
