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
/// work that must not hold up the server's event loops). A job whose task is cancelled while it
/// waits leaves the line at once (its caller gets `CancellationError`, its work never runs); one
/// cancelled while running stops at its next step.
public final class JobQueue: @unchecked Sendable {
    public let limit: Int
    private let lock = NSLock()
    private var lanes: [String: Lane] = [:]
    private var nextID = 1
    /// Jobs in order of starting, the running ones and those waiting.
    private var live: [Job] = []
    /// What `drop` does to a waiting job's caller: resumes it with the error. Set once the caller
    /// waits; `dropped` holds the jobs dropped before that.
    private var abandon: [ObjectIdentifier: (Error) -> Void] = [:]
    private var dropped: Set<ObjectIdentifier> = []
    /// Set by `shutDown`: no new jobs.
    private var closed = false
    private var _counts = Counts()
    /// The newest job that finished (progress reports it after the fact).
    private var lastFinished: Job?
    /// Seconds the last job of each model took (for Retry-After).
    private var lastSeconds: [String: Double] = [:]

    /// Jobs since the start: started (their work ran), dropped from the line before starting
    /// (client gone, interrupt, shutdown), stopped while running by a cancel.
    public struct Counts: Equatable, Sendable {
        public var started = 0, dropped = 0, stopped = 0
    }

    final class Lane {
        let queue: DispatchQueue
        var waiting = 0
        init(_ model: String) { queue = DispatchQueue(label: "diffuse.serve.\(model)") }
    }

    public init(limit: Int) { self.limit = limit }

    /// Runs `work` on `model`'s thread once the jobs before it are done, and returns its result;
    /// throws `QueueFull` at once when `limit` jobs already wait, and a 503 once shut down.
    public func run<T>(model: String, _ work: @escaping (Job) throws -> T) async throws -> T {
        let (job, lane): (Job, Lane) = try lock.withLock {
            if closed { throw ServeError(503, "the server is shutting down") }
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
            return (j, lane)
        }
        let key = ObjectIdentifier(job)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, Error>) in
                let droppedAlready = lock.withLock {
                    if dropped.remove(key) != nil { return true }
                    abandon[key] = { cont.resume(throwing: $0) }
                    return false
                }
                if droppedAlready { return cont.resume(throwing: CancellationError()) }
                lane.queue.async { [self] in
                    // Exactly one of this block and `drop` takes the job: whoever removes `abandon[key]`.
                    let mine = lock.withLock {
                        guard abandon.removeValue(forKey: key) != nil else { return false }
                        lane.waiting -= 1
                        _counts.started += 1
                        job.start()
                        return true
                    }
                    guard mine else { return }
                    let clock = Date()
                    let result = Result { try work(job) }
                    // The job leaves the queue before its caller hears of the result: a client
                    // that got its answer never sees its own job still live.
                    lock.withLock {
                        if case .failure = result, job.cancelled { _counts.stopped += 1 }
                        live.removeAll { $0 === job }
                        lastFinished = job
                        lastSeconds[model] = Date().timeIntervalSince(clock)
                    }
                    cont.resume(with: result)
                }
            }
        } onCancel: {
            job.cancel()
            drop(job)
        }
    }

    /// Takes `job` out of the line if it has not started; its caller gets `CancellationError` now.
    private func drop(_ job: Job) {
        let key = ObjectIdentifier(job)
        let resume: ((Error) -> Void)? = lock.withLock {
            guard job.state.started == nil, live.contains(where: { $0 === job }) else { return nil }
            live.removeAll { $0 === job }
            lanes[job.model]?.waiting -= 1
            _counts.dropped += 1
            guard let r = abandon.removeValue(forKey: key) else {
                dropped.insert(key)  // the caller is not waiting yet: it sees this when it does
                return nil
            }
            return r
        }
        resume?(CancellationError())
    }

    /// Cancels every running and waiting job (A1111's interrupt); returns how many.
    @discardableResult
    public func interruptAll() -> Int {
        let jobs = lock.withLock { live }
        for job in jobs {
            job.cancel()
            drop(job)
        }
        return jobs.count
    }

    /// Shutdown: takes no new jobs (503) and drops the waiting ones (their callers get
    /// `CancellationError`); the running ones finish.
    public func shutDown() {
        let jobs = lock.withLock { closed = true; return live }
        for job in jobs where job.state.started == nil {
            job.cancel()
            drop(job)
        }
    }

    /// The job progress reports: the first running one, else the newest finished; and how many are live.
    public func current() -> (job: Job?, live: Int) {
        lock.withLock {
            (live.first { $0.state.started != nil } ?? lastFinished, live.count)
        }
    }

    /// How many jobs are running or waiting, over all models.
    public var liveCount: Int { lock.withLock { live.count } }

    public var counts: Counts { lock.withLock { _counts } }
}
