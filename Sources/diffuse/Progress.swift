import Foundation
import Workflow

/// Progress on standard error: a bar redrawn in place on a terminal, a plain line every few
/// seconds otherwise (logs, CI). Shows step, rate, ETA and an optional status such as the loss.
final class Progress {
    let total: Int
    let label: String
    private(set) var start = Date()
    private var lastPrint = Date.distantPast
    /// Work already done before this process (a resumed run): not counted in the rate.
    private var base: Int? = nil
    private let tty = isatty(2) == 1

    init(total: Int, label: String) { self.total = total; self.label = label }

    func update(_ done: Int, status: String = "") {
        guard MPIRanks.isWriter else { return }  // under mpirun, one bar: rank 0's
        let now = Date()
        // The first tick starts the clock: the work before it (a resumed run's steps, or the
        // step just finished as the bar opens) is not counted, so no rate is shown yet.
        let first = base == nil
        if first { base = done; start = now }
        let final = done >= total
        if !final && now.timeIntervalSince(lastPrint) < (tty ? 0.2 : 5) { return }
        lastPrint = now
        let elapsed = now.timeIntervalSince(start)
        let rate = elapsed > 0 ? Double(done - (base ?? 0)) / elapsed : 0
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let speed = first || rate <= 0 ? "-- it/s  ETA --" : String(format: "%.2f it/s  ETA %@", rate, Self.clock(eta))
        let line = String(format: "%@ %d/%d  %@%@", label, done, total, speed, status.isEmpty ? "" : "  " + status)
        if tty {
            let width = 24, filled = total > 0 ? width * done / total : width
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            FileHandle.standardError.write(Data("\r\(bar) \(line)\u{1B}[K\(final ? "\n" : "")".utf8))
        } else {
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }

    static func clock(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60) : String(format: "%d:%02d", t / 60, t % 60)
    }
}

extension Progress {
    /// A step callback (as sampling takes it) that opens a bar on its first call, when the total
    /// is known, and never cancels.
    static func steps(label: String) -> (Int, Int) -> Bool {
        var bar: Progress? = nil
        return { step, total in
            if bar == nil { bar = Progress(total: total, label: label) }
            bar?.update(step)
            return true
        }
    }

    /// A callback for work in named stages: one bar per stage name, opened at its first step.
    static func stages() -> (String, Int, Int) -> Void {
        var bars: [String: Progress] = [:]
        return { what, step, total in
            let bar = bars[what] ?? Progress(total: total, label: what)
            bars[what] = bar
            bar.update(step)
        }
    }
}
