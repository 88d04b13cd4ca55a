import OnceLedgerFormat
import Synchronization

/// Group commit (`Spec/POSTGRES.md` §4): concurrent callers' requests are queued, and up to
/// `lanes` flushers each take everything queued (at most `batchMax`, and at most `weightMax`
/// by `weight`) and send it as one statement — one round trip and one commit for the whole
/// batch. A lone caller's request is sent at once (no timer); callers that arrive while a
/// batch is on the wire form the next one.
///
/// **No caller waits for ever.** A batch whose answer never comes (a connection cut while the
/// server restarts can leave a query that neither completes nor fails) fails its callers with
/// `connection-lost` once `answerDeadline` passed — the outcome is unknown to them, as after a
/// crash: a claim made then is never renewed, so its lease expires and it turns
/// pending-unknown. One watchdog task per group checks the batches on the wire (none runs while
/// nothing is in flight), so a batch costs no timer of its own; the watchdog also frees the
/// stuck batch's lane, so the next requests are sent on a fresh flusher. Before that, once every
/// batch on the wire has gone unanswered for `stallAfter` while requests wait, it starts one
/// more flusher (up to `maxLanes`), so a slow or hung statement holds only its own callers.
///
/// **One refused request fails only its own caller.** A batch is one statement: when the
/// server refuses it (`refusedWhole` says so of the error: it wrote nothing of the batch),
/// each request is sent again alone, so a request the server cannot take (a text it refuses,
/// a value too large for an index) fails its own caller and the others of its batch are
/// answered as if they had gone alone.
final class GroupCommit<Request: Sendable, Response: Sendable>: Sendable {
    typealias Flush = @Sendable ([Request]) async throws -> [Response]
    private typealias Caller = CheckedContinuation<Response, any Error>

    private struct InFlight {
        var started: ContinuousClock.Instant
        var callers: [Caller]
        /// What the flush registered to abandon its statement (`BatchAbort`).
        var abort: BatchAbort
    }

    private struct State {
        var queue: [(Request, Caller)] = []
        var flushing = 0
        /// Flushers running, including ones whose batch the watchdog gave up (for tests).
        var draining = 0
        /// Batches on the wire, by number: whoever removes a batch answers its callers (its
        /// flusher with the result, or the watchdog with `connection-lost`).
        var inFlight: [UInt64: InFlight] = [:]
        var nextBatch: UInt64 = 0
        var watching = false
    }

    let lanes: Int
    /// Flushers at most, counting those started because every batch on the wire stalled.
    private let maxLanes: Int
    /// How long the batches on the wire may all go unanswered before the watchdog sends the
    /// queued requests on one more flusher (up to `maxLanes`): one slow or hung statement does
    /// not hold every caller until `answerDeadline`.
    private let stallAfter: Duration
    private let batchMax: Int
    /// A batch's requests weigh at most this together (`weight`), unless its first alone
    /// weighs more: it then goes alone.
    private let weightMax: Int
    private let weight: (@Sendable (Request) -> Int)?
    private let answerDeadline: Duration
    private let flush: Flush
    /// Whether a batch's error means the server refused the whole statement and wrote nothing
    /// of it: its requests are then sent again one by one.
    private let refusedWhole: @Sendable (any Error) -> Bool
    private let state = Mutex(State())
    /// Added to the watchdog's clock (`advanceWatchdogClock`, tests only): a test passes a
    /// batch's deadline when it chooses, not when a loaded machine happens to.
    private let watchdogAdvance = Mutex<Duration>(.zero)

    /// `answerDeadline`: how long a batch waits for the server's answer before its callers
    /// get `connection-lost` (outcome unknown) instead of waiting on (`Spec/POSTGRES.md` §3).
    init(lanes: Int, maxLanes: Int? = nil, stallAfter: Duration = .seconds(1), batchMax: Int, weightMax: Int = .max,
         weight: (@Sendable (Request) -> Int)? = nil, answerDeadline: Duration = .seconds(60),
         refusedWhole: @escaping @Sendable (any Error) -> Bool = { _ in false }, flush: @escaping Flush) {
        self.lanes = max(1, lanes)
        self.maxLanes = max(self.lanes, maxLanes ?? lanes)
        self.stallAfter = stallAfter
        self.batchMax = max(1, batchMax)
        self.weightMax = weightMax
        self.weight = weight
        self.answerDeadline = answerDeadline
        self.flush = flush
        self.refusedWhole = refusedWhole
    }

    /// Sends `request` with whatever else is queued; returns its own response, or throws
    /// what the batch's statement threw.
    func submit(_ request: Request) async throws -> Response {
        try await withCheckedThrowingContinuation { continuation in
            let start = state.withLock { state -> Bool in
                state.queue.append((request, continuation))
                guard state.flushing < lanes else { return false }
                state.flushing += 1
                return true
            }
            if start { Task { await self.drain() } }
        }
    }

    /// Requests waiting for a batch (tests order races with it).
    var queuedCount: Int { state.withLock { $0.queue.count } }

    /// Flushers still running, including ones whose batch was given up (for tests).
    var drainingCount: Int { state.withLock { $0.draining } }

    /// One flusher: sends batches until the queue is empty, or until the watchdog gave its
    /// batch up (the lane then belongs to a new flusher; this one just ends when — if ever —
    /// its statement returns).
    private func drain() async {
        state.withLock { $0.draining += 1 }
        defer { state.withLock { $0.draining -= 1 } }
        while true {
            let taken = state.withLock { state -> (UInt64, [Request], Bool, BatchAbort)? in
                if state.queue.isEmpty {
                    state.flushing -= 1
                    return nil
                }
                var count = min(batchMax, state.queue.count)
                if let weight {
                    var total = 0
                    for index in 0..<count {
                        total += weight(state.queue[index].0)
                        if total > weightMax, index > 0 {
                            count = index
                            break
                        }
                    }
                }
                let batch = state.queue.prefix(count)
                state.queue.removeFirst(batch.count)
                let number = state.nextBatch
                state.nextBatch += 1
                let abort = BatchAbort()
                state.inFlight[number] = InFlight(started: .now, callers: batch.map(\.1), abort: abort)
                let startWatchdog = !state.watching
                state.watching = true
                return (number, batch.map(\.0), startWatchdog, abort)
            }
            guard let (number, requests, startWatchdog, abort) = taken else { return }
            if startWatchdog { Task { await self.watch() } }
            let answers = await BatchAbort.$current.withValue(abort) { await answer(requests, abort: abort) }
            guard let batch = state.withLock({ $0.inFlight.removeValue(forKey: number) }) else { return }
            for (index, caller) in batch.callers.enumerated() {
                if index < answers.count {
                    caller.resume(with: answers[index])
                } else {
                    caller.resume(throwing: LedgerError(
                        .databaseError, "the server answered \(answers.count) rows for a batch of \(batch.callers.count) requests; the outcome of this one is unknown"))
                }
            }
        }
    }

    /// Each request's answer: the batch's, or, when the server refused the batch as a whole
    /// (nothing of it written), each request's alone, so one bad request fails only its caller.
    private func answer(_ requests: [Request], abort: BatchAbort) async -> [Result<Response, any Error>] {
        do {
            return try await flush(requests).map { .success($0) }
        } catch where requests.count > 1 && refusedWhole(error) {
            var answers: [Result<Response, any Error>] = []
            answers.reserveCapacity(requests.count)
            for request in requests {
                // Once the watchdog gave the batch up its callers were answered (outcome
                // unknown): a request sent now would be committed for nobody — a claim left
                // pending until its lease expires, then pending-unknown for the caller's retry.
                if abort.fired {
                    answers.append(.failure(LedgerError(
                        .connectionLost, "the batch was given up at its answer deadline; this request was not sent again")))
                    continue
                }
                do {
                    guard let response = try await flush([request]).first else {
                        throw LedgerError(.databaseError, "the server answered no row for a request; its outcome is unknown")
                    }
                    answers.append(.success(response))
                } catch {
                    answers.append(.failure(error))
                }
            }
            return answers
        } catch {
            return requests.map { _ in .failure(error) }
        }
    }

    /// Moves the watchdog's clock on by `duration` (tests): its next look, within a period,
    /// sees every batch on the wire that much older.
    func advanceWatchdogClock(by duration: Duration) {
        watchdogAdvance.withLock { $0 += duration }
    }

    /// The watchdog: while batches are on the wire, fails those older than `answerDeadline`
    /// and gives their lanes to new flushers. Ends when nothing is in flight.
    private func watch() async {
        let deadline = answerDeadline
        var period = min(max(deadline / 4, .milliseconds(1)), .seconds(1))
        if maxLanes > lanes { period = min(period, max(stallAfter / 2, .milliseconds(1))) }
        while true {
            try? await Task.sleep(for: period)
            let now = ContinuousClock.now + watchdogAdvance.withLock { $0 }
            let (expired, newFlushers, stop) = state.withLock { state -> ([InFlight], Int, Bool) in
                let late = state.inFlight.filter { now - $0.value.started >= deadline }
                for number in late.keys { state.inFlight[number] = nil }
                state.flushing -= late.count
                var starts = 0
                while !state.queue.isEmpty, state.flushing < lanes, starts < state.queue.count {
                    state.flushing += 1
                    starts += 1
                }
                // Every batch on the wire unanswered for `stallAfter` while requests wait: one
                // more flusher, so the queue does not wait for a stalled statement.
                if starts == 0, !state.queue.isEmpty, state.flushing < maxLanes, !state.inFlight.isEmpty,
                   state.inFlight.values.allSatisfy({ now - $0.started >= self.stallAfter }) {
                    state.flushing += 1
                    starts += 1
                }
                let stop = state.inFlight.isEmpty
                if stop { state.watching = false }
                return (Array(late.values), starts, stop)
            }
            for batch in expired {
                // Its statement is abandoned: the connection it holds is closed, so a statement
                // that never answers does not keep a connection of the pool for ever.
                batch.abort.fire()
                let error = LedgerError(
                    .connectionLost,
                    "the PostgreSQL server did not answer a batch of \(batch.callers.count) requests within \(deadline); their outcome is unknown to this client (treat it like a crash: a claim turns pending-unknown when its lease expires). Check that the server is up")
                for caller in batch.callers { caller.resume(throwing: error) }
            }
            for _ in 0..<newFlushers { Task { await self.drain() } }
            if stop { return }
        }
    }
}

/// How a batch's statement is abandoned once `GroupCommit`'s watchdog gave it up: the flush
/// registers an action (`BatchAbort.current?.onAbort`, closing the connection its statement
/// runs on), run at most once when the batch's answer deadline passed — at once if it had
/// already passed when the action is registered.
final class BatchAbort: Sendable {
    /// The batch the current flush sends (set by `GroupCommit` around each flush).
    @TaskLocal static var current: BatchAbort?

    private let state = Mutex<(fired: Bool, action: (@Sendable () -> Void)?)>((false, nil))

    /// Registers `action` (replacing an earlier one) while `body` runs. A batch already given
    /// up (its deadline passed while it waited for a connection, say) runs `action` and throws
    /// `connection-lost` without running `body`: its callers were answered, so a statement
    /// sent now would be committed for nobody (a claim pending under a lease nobody renews).
    func whileRunning<T>(onAbort action: @escaping @Sendable () -> Void, _ body: () async throws -> T) async throws -> T {
        let fired = state.withLock { state -> Bool in
            if !state.fired { state.action = action }
            return state.fired
        }
        if fired {
            action()
            throw LedgerError(.connectionLost, "the batch was given up at its answer deadline before it was sent; nothing was sent")
        }
        defer { state.withLock { $0.action = nil } }
        return try await body()
    }

    /// Whether the batch was abandoned.
    var fired: Bool { state.withLock { $0.fired } }

    /// Runs the action under the lock (it only starts closing a connection): once
    /// `whileRunning` has cleared it, the connection is back with its owner and is never
    /// closed from here.
    func fire() {
        state.withLock { state in
            state.fired = true
            state.action?()
            state.action = nil
        }
    }
}
