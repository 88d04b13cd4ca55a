import Foundation
import Synchronization

/// A task executor with one thread that polls for its next job for a while before it
/// sleeps, so a task waiting for a commit is resumed without a thread wake-up.
///
/// Why: when the I/O thread resumes a caller after a commit, the caller's task goes
/// back to the executor it runs on. On Swift's global concurrent executor that is a
/// pool thread parked in the kernel, and waking it costs several µs per commit on a
/// virtual machine (the thread has to be scheduled again, often on a halted vCPU) —
/// about as much as the engine's whole overhead over a raw `write`+`fdatasync` loop.
/// A task that runs on this executor is resumed by a thread that is already running.
///
/// Use it by running the task that calls `append` or `once` on it:
///
/// ```swift
/// try await withTaskExecutorPreference(ledger.executor) {
///     for order in orders { _ = try await ledger.once(order.key) { … } }
/// }
/// ```
///
/// What it costs and what to know:
/// - One thread runs every job of every task that prefers this executor, one at a
///   time, the effects of `once` included. Suited to one caller or a few; many
///   concurrent callers gain nothing from it (their commits are batched anyway) and
///   would share one thread.
/// - Between jobs the thread polls (yielding the CPU at each poll, so other threads
///   run first) for about twice the recent gap between jobs, at most
///   `spinMicroseconds`, and not at all when jobs come further apart than that: a
///   caller that waits ~100 µs for each `fdatasync` keeps it polling, an idle one lets
///   it sleep. That polling is CPU time the default executor does not spend.
/// - Actor-isolated code still runs on its actor; only the task's nonisolated code
///   runs here.
/// - `shutdown()` (called by `Ledger.close()`) stops the thread once its queue is
///   empty; jobs enqueued after that go to the global concurrent executor, so a task
///   that still prefers this executor keeps running.
public final class SpinningExecutor: TaskExecutor, @unchecked Sendable {
    public let name: String
    public let spinMicroseconds: Int

    private let condition = NSCondition()
    // Guarded by `condition`:
    private var queue: [UnownedJob] = []
    private var stopping = false
    private var threadRunning = false
    /// Waiting in `stopped()` for the thread to end.
    private var stopWaiters: [CheckedContinuation<Void, Never>] = []
    /// `queue.count`, readable without the lock while the thread polls.
    private let queued = Atomic<Int>(0)
    /// The executor thread's `pthread_self`, for tests (0 until it starts).
    let threadID = Atomic<UInt>(0)
    // Executor thread only:
    private var batch: [UnownedJob] = []
    /// From the gaps between jobs; a gap counts up to four times the bound, so a few
    /// quick jobs after a long idle stretch bring the polling back.
    private var polling: AdaptivePolling

    /// Starts the executor's thread. `spinMicroseconds` bounds the polling between
    /// jobs (0: sleep as soon as the queue is empty).
    public init(name: String = "onceledger-executor", spinMicroseconds: Int = 300) {
        self.name = name
        self.spinMicroseconds = max(0, spinMicroseconds)
        let spinMax = UInt64(self.spinMicroseconds) * 1000
        polling = AdaptivePolling(maxNanoseconds: spinMax, gapCapNanoseconds: 4 * max(spinMax, 1))
        threadRunning = true
        let thread = Thread { [self] in self.run() }
        thread.name = name
        thread.start()
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        condition.lock()
        if stopping && !threadRunning {
            condition.unlock()
            globalConcurrentExecutor.enqueue(job)
            return
        }
        queue.append(UnownedJob(job))
        queued.store(queue.count, ordering: .releasing)
        condition.signal()
        condition.unlock()
    }

    /// Stops the thread after it has run every job queued so far. Later jobs run on
    /// the global concurrent executor. Idempotent; does not wait.
    public func shutdown() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    /// Whether the thread has ended (after `shutdown()` and an empty queue).
    var hasStopped: Bool { condition.withLock { !threadRunning } }

    /// Returns once the thread has ended (for tests; without `shutdown()` it never does).
    func stopped() async {
        await withCheckedContinuation { continuation in
            condition.lock()
            if threadRunning {
                stopWaiters.append(continuation)
                condition.unlock()
            } else {
                condition.unlock()
                continuation.resume()
            }
        }
    }

    private func run() {
        threadID.store(UInt(pthread_self()), ordering: .relaxed)
        var idleSince = AdaptivePolling.nanoseconds()
        while true {
            // Poll first: about twice the recent gap between jobs, none when jobs come
            // further apart than `spinMicroseconds`.
            AdaptivePolling.poll(until: idleSince + polling.budgetNanoseconds) {
                queued.load(ordering: .acquiring) != 0
            }
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if queue.isEmpty {
                // Stopping, and nothing left: from now on `enqueue` forwards.
                threadRunning = false
                let waiters = stopWaiters
                stopWaiters = []
                condition.unlock()
                for waiter in waiters { waiter.resume() }
                return
            }
            swap(&queue, &batch)
            queued.store(0, ordering: .releasing)
            condition.unlock()
            polling.note(gapNanoseconds: AdaptivePolling.nanoseconds() &- idleSince)
            for job in batch { job.runSynchronously(on: asUnownedTaskExecutor()) }
            batch.removeAll(keepingCapacity: true)
            idleSince = AdaptivePolling.nanoseconds()
        }
    }
}
