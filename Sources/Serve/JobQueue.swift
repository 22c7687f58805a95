import Foundation
import Diffusion

/// One generation: its progress (what `/sdapi/v1/progress` reports) and whether it was cancelled
/// (an interrupt, or its client went away). The work polls `cancelled` through the sampler's
/// progress callback, so a cancelled job stops within one model call.
public final class Job: @unchecked Sendable {
    public let id: Int
    public let model: String
    private let lock = NSLock()
    private var _cancelled = false
    private var _step = 0, _total = 0
    private var _started: Date?
    private var _preview: [UInt8]?

    init(id: Int, model: String) { self.id = id; self.model = model }

    public var cancelled: Bool { lock.withLock { _cancelled } }
    public func cancel() { lock.withLock { _cancelled = true } }

    /// The sampler's progress callback: records the step, and says whether to go on.
    public func progress(_ step: Int, _ total: Int) -> Bool {
        lock.withLock {
            _step = step; _total = total
            return !_cancelled
        }
    }

    func start() { lock.withLock { _started = Date() } }

    /// Step, total and when the job started running (nil while it waits).
    public var state: (step: Int, total: Int, started: Date?) { lock.withLock { (_step, _total, _started) } }

    /// The newest finished image of this job, PNG (the progress endpoint's `current_image`).
    public var preview: [UInt8]? {
        get { lock.withLock { _preview } }
        set { lock.withLock { _preview = newValue } }
    }
}

/// The queue is full: try again after `retryAfter` seconds.
public struct QueueFull: Error, CustomStringConvertible {
    public var model: String
    public var retryAfter: Int
    public var description: String { "the queue of \(model) is full: try again in \(retryAfter) s" }
}

/// One generation at a time per model, each model with at most `limit` jobs waiting behind the
/// running one. Work runs on a thread of its own per model (generation is long, blocking CPU
/// work that must not hold up the server's event loops). A job whose task is cancelled before
/// it starts is dropped from the line; one cancelled while running stops at its next step.
public final class JobQueue: @unchecked Sendable {
    public let limit: Int
    private let lock = NSLock()
    private var lanes: [String: Lane] = [:]
    private var nextID = 1
    /// Jobs in order of starting, the running ones and those waiting.
    private var live: [Job] = []
    /// The newest job that finished (progress reports it after the fact).
    private var lastFinished: Job?
    /// Seconds the last job of each model took (for Retry-After).
    private var lastSeconds: [String: Double] = [:]

    final class Lane {
        let queue: DispatchQueue
        var waiting = 0
        var running = false
        init(_ model: String) { queue = DispatchQueue(label: "diffuse.serve.\(model)") }
    }

    public init(limit: Int) { self.limit = limit }

    /// Runs `work` on `model`'s thread once the jobs before it are done, and returns its result;
    /// throws `QueueFull` at once when `limit` jobs already wait.
    public func run<T>(model: String, _ work: @escaping (Job) throws -> T) async throws -> T {
        let job: Job = try lock.withLock {
            let lane = lanes[model] ?? Lane(model)
            lanes[model] = lane
            if lane.waiting >= limit {
                let seconds = lastSeconds[model] ?? 5
                throw QueueFull(model: model, retryAfter: max(1, Int((seconds * Double(lane.waiting + 1)).rounded(.up))))
            }
            lane.waiting += 1
            let j = Job(id: nextID, model: model)
            nextID += 1
            live.append(j)
            return j
        }
        let lane = lock.withLock { lanes[model]! }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, Error>) in
                lane.queue.async { [self] in
                    lock.withLock { lane.waiting -= 1; lane.running = true }
                    let clock = Date()
                    let result: Result<T, Error>
                    if job.cancelled { result = .failure(CancellationError()) } else {
                        job.start()
                        result = Result { try work(job) }
                    }
                    // The job leaves the queue before its caller hears of the result: a client
                    // that got its answer never sees its own job still live.
                    lock.withLock {
                        lane.running = false
                        live.removeAll { $0 === job }
                        lastFinished = job
                        lastSeconds[model] = Date().timeIntervalSince(clock)
                    }
                    cont.resume(with: result)
                }
            }
        } onCancel: {
            job.cancel()
        }
    }

    /// Cancels every running and waiting job (A1111's interrupt); returns how many.
    @discardableResult
    public func interruptAll() -> Int {
        let jobs = lock.withLock { live }
        jobs.forEach { $0.cancel() }
        return jobs.count
    }

    /// Cancels the jobs that have not started (shutdown: the running ones finish).
    public func cancelWaiting() {
        lock.withLock { live.filter { $0.state.started == nil } }.forEach { $0.cancel() }
    }

    /// The job progress reports: the first running one, else the newest finished; and how many are live.
    public func current() -> (job: Job?, live: Int) {
        lock.withLock {
            (live.first { $0.state.started != nil } ?? lastFinished, live.count)
        }
    }

    /// How many jobs are running or waiting, over all models.
    public var liveCount: Int { lock.withLock { live.count } }
}
