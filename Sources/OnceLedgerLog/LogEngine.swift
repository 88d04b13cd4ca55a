import Foundation
import OnceLedgerFormat
import Synchronization

/// The storage engine: a segmented write-ahead log with group commit.
///
/// Callers `append` from any task; they suspend on a continuation. One dedicated
/// I/O thread (not Swift concurrency's cooperative pool, so a blocking `fdatasync`
/// never occupies a pool thread) drains everything queued since its last sync into
/// one `pwrite` and one `fdatasync`, then resumes every caller of that batch
/// (`Spec/FORMAT.md` §7, `ARCHITECTURE.md` §4).
///
/// Between batches the I/O thread may poll before it sleeps on its condition, because
/// a thread wake-up is slow on a virtual machine: after a batch of several callers it
/// waits for them to append again so they share the next sync
/// (`LogConfiguration.batchGatherMicroseconds`), and it may poll for a quick re-append
/// (`LogConfiguration.idleSpinMicroseconds`, opt-in: by default it sleeps as soon as its
/// queue is empty, so an idle log uses no CPU). Both polls are bounded, read a lock-free
/// mirror of the queue length and yield the CPU between reads. Neither changes what is
/// durable when: a caller resumes only after its batch's `fdatasync` and every
/// `onDurable` of that batch.
public final class LogEngine: @unchecked Sendable {
    public let directory: String
    public let configuration: LogConfiguration
    public let ledgerID: LedgerID
    /// How this ledger derives effect tokens (`Spec/FORMAT.md` §9.3): ledger-scoped
    /// (token v2) for a ledger created by format version 2, unscoped (token v1) for an
    /// older ledger, for ever; a durable property of the ledger (header flag bit 0).
    public let tokenScope: TokenScope
    /// What recovery found when this instance was opened.
    public let recovery: RecoveryReport
    /// Reads records back where `append` reported them (`onDurable`) and where the
    /// recovery scan found them (`ScannedRecord.segment`/`offset`, snapshot hints).
    public let reader: RecordReader

    private let writer: LogWriter
    private let lock: any StorageLock
    private let clock: @Sendable () -> UInt64
    private let condition = NSCondition()
    // Guarded by `condition`:
    private var queue: [Job] = []
    private var queuedRecords = 0
    private var stopping = false
    private var stopped = false
    private var poisoned: LedgerError?
    private var published = Published()
    private var thread: Thread?
    /// Whether the I/O thread is asleep on `condition` with nothing queued; and how
    /// many threads wait in `waitUntilParked` for that (when any do, parking and
    /// submitting broadcast, so the I/O thread's wake-up is never taken by them).
    private var parked = false
    private var parkWaiters = 0
    private var idle = IdleStatistics()
    /// `queue.count`, readable without the lock: the I/O thread polls it while it
    /// spins between batches. Written only with `condition` held.
    private let queuedJobs = Atomic<Int>(0)
    /// Whether a compaction's thread is out: writing its snapshot, or moving the state to
    /// it (it then queues one `.snapshotWritten` or `.compactionDone`, even after `close`
    /// began: the I/O thread waits for it).
    private var compactionThreadRunning = false
    /// Set by `close`: the compaction thread stops writing its snapshot at the next buffer.
    private let stopSnapshot = StopFlag()
    // I/O thread only:
    private var running: RunningCompaction?
    /// Whether the last compaction's `onCompacted` runs on its thread (`finishCompaction`).
    private var movingState = false
    /// Compactions asked for while one runs: they start, in order, once it has finished.
    private var waitingCompactions: [Job] = []
    private var batch: [Job] = []
    private var batchRecords: [LogRecord] = []
    private let gatherNanoseconds: UInt64
    /// Polling between batches, from the gaps between the end of a batch and the start
    /// of the next one; and when the last batch ended.
    private var idlePolling: AdaptivePolling
    private var lastBatchEnd: UInt64 = 0
    /// Summed on the I/O thread; copied to `published` each time it looks for work.
    private var timings = BatchTimings()
    /// Polls made by `pollForWork` since open; copied to `idle` each time it looks for work.
    private var idlePolls: UInt64 = 0
    /// Frame bytes committed since the last snapshot (at open: the records the segments
    /// hold), the last snapshot's size, whether the compaction trigger has fired and its
    /// compaction not finished yet, and where a failed one left the count (the next try
    /// waits for as many bytes again). See `setCompactionTrigger`.
    private var logBytesSinceSnapshot: UInt64 = 0
    private var lastSnapshotBytes: UInt64 = 0
    private var compactionRequested = false
    private var compactionRetryBase: UInt64 = 0
    /// Set by `setCompactionTrigger`; read by the I/O thread after each commit.
    private let compactionTrigger = Mutex<CompactionTrigger?>(nil)

    private struct CompactionTrigger {
        var logBytes: UInt64
        var handler: @Sendable () -> Void
    }

    private struct Published {
        var lastSequence: UInt64 = 0
        var durableSequence: UInt64 = 0
        var batches: UInt64 = 0
        var syncedRecords: UInt64 = 0
        var segmentNumber: UInt64 = 0
        var timings = BatchTimings()
    }

    /// Where the I/O thread's time goes, summed over the batches of appends since
    /// open: what a single caller waits for besides the disk. A diagnostic
    /// (`onceledger-bench` prints the means), not API: only a client that writes
    /// `@_spi(Benchmarks) import OnceLedgerLog` sees it. Published when the I/O thread looks for
    /// its next batch, so it can trail the newest batch briefly; after `close` it is
    /// complete. Timing costs four `clock_gettime` calls (vDSO, no system call) per
    /// batch.
    @_spi(Benchmarks) public struct BatchTimings: Sendable, Equatable, Codable {
        /// Batches of appends that completed (failed ones are not timed).
        public var batches: UInt64 = 0
        /// `LogWriter.commit`: framing, `pwrite` and `fdatasync` (and a rollover when
        /// one falls in the batch).
        public var commitNanoseconds: UInt64 = 0
        /// The batch's `onDurable` callbacks (the ledger applies its records there).
        public var onDurableNanoseconds: UInt64 = 0
        /// Resuming the batch's callers. For a suspended task this hands it to its
        /// executor, which may have to wake a parked pool thread.
        public var resumeNanoseconds: UInt64 = 0
        /// Idle gaps timed: from the end of a batch that resumed callers to the I/O
        /// thread taking the next batch (polling, or asleep if the poll ran out).
        /// Only gaps under 1 ms count: they measure how fast a caller comes back; a
        /// longer one is the log sitting idle (or an effect taking its time).
        public var gaps: UInt64 = 0
        public var gapNanoseconds: UInt64 = 0

        public init() {}

        /// The change from `earlier` to `self`.
        public func since(_ earlier: BatchTimings) -> BatchTimings {
            combined(with: earlier, by: &-)
        }

        /// Both together (e.g. several measurement windows).
        public static func + (left: BatchTimings, right: BatchTimings) -> BatchTimings {
            left.combined(with: right, by: &+)
        }

        private func combined(with other: BatchTimings, by operation: (UInt64, UInt64) -> UInt64) -> BatchTimings {
            var result = BatchTimings()
            result.batches = operation(batches, other.batches)
            result.commitNanoseconds = operation(commitNanoseconds, other.commitNanoseconds)
            result.onDurableNanoseconds = operation(onDurableNanoseconds, other.onDurableNanoseconds)
            result.resumeNanoseconds = operation(resumeNanoseconds, other.resumeNanoseconds)
            result.gaps = operation(gaps, other.gaps)
            result.gapNanoseconds = operation(gapNanoseconds, other.gapNanoseconds)
            return result
        }
    }

    /// What the I/O thread did while it had no work, since open: the cost of an idle
    /// log, counted rather than timed (`waitUntilParked`).
    struct IdleStatistics: Sendable, Equatable {
        /// Times it went to sleep on its condition (once per idle stretch, plus once
        /// per spurious wake-up).
        var sleeps: UInt64 = 0
        /// Polls of the queue before sleeping (`idleSpinMicroseconds`; 0 when off).
        var polls: UInt64 = 0
    }

    /// Who is waiting for an append: a suspended task or a blocked thread.
    fileprivate enum Waiter {
        #if DEBUG
        case task(CheckedContinuation<UInt64, any Error>)
        #else
        case task(UnsafeContinuation<UInt64, any Error>)
        #endif
        case thread(ResultBox<UInt64>)

        func resume(_ result: Result<UInt64, LedgerError>) {
            switch self {
            case .task(let continuation): continuation.resume(with: result)
            case .thread(let box): box.set(result)
            }
        }
    }

    /// Called once an append is durable, with its first sequence number and where each of
    /// its records landed (in order).
    public typealias OnDurable = @Sendable (_ firstSequence: UInt64, _ locations: ArraySlice<ValueLocation>) -> Void

    fileprivate enum Job {
        /// records, their frame bytes, onDurable, waiter
        case append([LogRecord], Int, OnDurable?, Waiter)
        case compact(@Sendable (UInt64) throws -> LogWriter.CompactionSource,
                     (@Sendable (LogWriter.CompactionResult) -> Void)?,
                     @Sendable (Result<LogWriter.CompactionResult, LedgerError>) -> Void)
        /// The compaction thread's snapshot is written (or refused, or failed): the I/O
        /// thread finishes that compaction (`LogWriter.finishCompaction`).
        case snapshotWritten(LogWriter.WrittenSnapshot)
        /// The running compaction's `onCompacted` has run and its caller was told: the
        /// compactions that waited for it may start.
        case compactionDone

        /// Queued by a compaction's thread, never dropped (see `poisonAll`).
        var isCompactionThreads: Bool {
            switch self {
            case .snapshotWritten, .compactionDone: true
            case .append, .compact: false
            }
        }
    }

    /// The compaction whose snapshot is being written on its own thread (I/O thread only).
    private struct RunningCompaction {
        var prepared: LogWriter.PreparedCompaction
        var onCompacted: (@Sendable (LogWriter.CompactionResult) -> Void)?
        var completion: @Sendable (Result<LogWriter.CompactionResult, LedgerError>) -> Void
        /// `logBytesSinceSnapshot` when it was prepared: what is committed after that is
        /// not covered by its snapshot and counts toward the next one.
        var logBytesAtPrepare: UInt64
    }

    /// Opens (or creates) the ledger directory: lock, delete leftover temporary
    /// files, scan, decide per `Spec/RECOVERY.md`, quarantine a torn tail, and
    /// start the I/O thread. Throws a `LedgerError` for a refused row.
    ///
    /// `onSnapshot`/`onRecord` receive the recovered state in order (see
    /// `RecoveryScanner.scan`) before `open` returns.
    public static func open(
        directory: String, storage: any Storage = PosixStorage(), configuration: LogConfiguration = LogConfiguration(),
        createIfMissing: Bool = true,
        clock: @escaping @Sendable () -> UInt64 = LogEngine.systemMilliseconds,
        readSnapshotValues: Bool = true,
        onSnapshot: (SnapshotFile) throws -> Void = { _ in },
        onRecord: (ScannedRecord) throws -> Void = { _ in }
    ) throws -> LogEngine {
        let (writer, lock, report) = try LogWriter.recover(
            directory: directory, storage: storage, configuration: configuration, createIfMissing: createIfMissing,
            readSnapshotValues: readSnapshotValues, onSnapshot: onSnapshot, onRecord: onRecord)
        return LogEngine(writer: writer, lock: lock, report: report, clock: clock)
    }

    /// `open`, handing each record over in place (`RecordInPlace`: its body points into the
    /// segment's bytes, valid during the call; no reference count per record).
    public static func open(
        directory: String, storage: any Storage = PosixStorage(), configuration: LogConfiguration = LogConfiguration(),
        createIfMissing: Bool = true,
        clock: @escaping @Sendable () -> UInt64 = LogEngine.systemMilliseconds,
        readSnapshotValues: Bool = true,
        onSnapshot: (SnapshotFile) throws -> Void = { _ in },
        onRecordInPlace: (RecordInPlace) throws -> Void
    ) throws -> LogEngine {
        let (writer, lock, report) = try LogWriter.recover(
            directory: directory, storage: storage, configuration: configuration, createIfMissing: createIfMissing,
            readSnapshotValues: readSnapshotValues, onSnapshot: onSnapshot, onRecordInPlace: onRecordInPlace)
        return LogEngine(writer: writer, lock: lock, report: report, clock: clock)
    }

    public static let systemMilliseconds: @Sendable () -> UInt64 = {
        UInt64(max(0, Date().timeIntervalSince1970 * 1000))
    }

    private init(writer: LogWriter, lock: any StorageLock, report: RecoveryReport, clock: @escaping @Sendable () -> UInt64) {
        self.writer = writer
        self.lock = lock
        self.recovery = report
        self.clock = clock
        self.directory = writer.directory
        self.configuration = writer.configuration
        self.ledgerID = writer.ledgerID
        self.tokenScope = writer.tokenScope
        let reader = RecordReader(storage: writer.storage, directory: writer.directory, ledgerID: writer.ledgerID)
        self.reader = reader
        writer.willRemoveFile = { try reader.pin($0) }
        writer.clock = clock
        published.lastSequence = writer.lastSequence
        published.durableSequence = writer.durableSequence
        published.segmentNumber = writer.segmentNumber
        idlePolling = AdaptivePolling(
            maxNanoseconds: UInt64(max(0, writer.configuration.idleSpinMicroseconds)) * 1000,
            gapCapNanoseconds: 1_000_000_000)
        gatherNanoseconds = UInt64(max(0, writer.configuration.batchGatherMicroseconds)) * 1000
        let headerBytes = UInt64(FormatLimits.segmentHeaderBytes)
        logBytesSinceSnapshot = report.segments.reduce(0) { $0 + ($1.endOffset > headerBytes ? $1.endOffset - headerBytes : 0) }
        lastSnapshotBytes = report.snapshot?.fileBytes ?? 0
        let thread = Thread { [self] in self.ioLoop() }
        thread.name = "onceledger-io"
        self.thread = thread
        thread.start()
    }

    deinit {
        condition.lock()
        let running = !stopped
        condition.unlock()
        if running { try? close() }
    }

    // MARK: Public API

    /// Appends `records` as one group (one commit batch; consecutive sequence numbers,
    /// except that a rollover's seal record may take one between two of them) and returns
    /// the first sequence number once they are all durable. The group is acknowledged as a
    /// whole but is **not atomic after a crash**: a batch torn by a power loss before this
    /// returned recovers as its intact prefix (`Spec/RECOVERY.md` §7), so order the records
    /// so that every prefix is a valid state.
    public func append(_ records: [LogRecord]) async throws -> UInt64 {
        try await append(records, onDurable: nil)
    }

    /// Like `append`, and calls `onDurable(firstSequence)` on the I/O thread as soon
    /// as the batch is durable, before any caller of that batch resumes and before
    /// any later batch or compaction runs. State derived from the log and updated in
    /// `onDurable` is therefore exactly "every record through the last durable one"
    /// whenever a compaction's `makeItems` runs.
    public func append(_ records: [LogRecord], onDurable: (@Sendable (UInt64) -> Void)?) async throws -> UInt64 {
        var located: OnDurable? = nil
        if let onDurable { located = { first, _ in onDurable(first) } }
        return try await append(records, onDurableAt: located)
    }

    /// `append(_:onDurable:)`, whose `onDurable` also learns where each record landed.
    public func append(_ records: [LogRecord], onDurableAt onDurable: OnDurable?) async throws -> UInt64 {
        try writer.validate(records)
        let bytes = LogEngine.frameBytes(records)
        #if DEBUG
        return try await withCheckedThrowingContinuation { continuation in
            submit(.append(records, bytes, onDurable, .task(continuation)))
        }
        #else
        // Every queued job is resumed exactly once (by its batch, by poisoning, or by
        // the refusal in `submit`), so the checked continuation's bookkeeping (an
        // allocation per append) is left to debug builds.
        return try await withUnsafeThrowingContinuation { continuation in
            submit(.append(records, bytes, onDurable, .task(continuation)))
        }
        #endif
    }

    public func append(kind: RecordKind, body: [UInt8]) async throws -> UInt64 {
        try await append([LogRecord(kind: kind, body: body)])
    }

    public func append(_ body: RecordBody) async throws -> UInt64 {
        try body.validate()
        return try await append([LogRecord(body)])
    }

    /// Blocking variant of `append` for non-async callers (tools). Do not call it
    /// from Swift concurrency's cooperative pool.
    public func appendAndWait(_ records: [LogRecord]) throws -> UInt64 {
        try writer.validate(records)
        let box = ResultBox<UInt64>()
        submit(.append(records, LogEngine.frameBytes(records), nil, .thread(box)))
        return try box.wait().get()
    }

    /// Writes a snapshot: `makeItems` runs on the I/O thread between batches with the
    /// covered sequence number (every record through it is durable and has been returned
    /// to its appender) and returns the live state as items. The snapshot is then written
    /// on a thread of its own while later batches commit
    /// (`LogConfiguration.compactsInBackground`; off: on the I/O thread, appends waiting).
    ///
    /// `onCompacted`, if given, runs once the snapshot is durable, the files it covers are
    /// removed and its marker is committed — on a thread of its own while later batches
    /// commit (with `compactsInBackground` off: on the I/O thread, before any later batch) —
    /// and the caller resumes after it returned: state that points into the log moves to
    /// the snapshot there (`CompactionResult.valueLocations`, one per item), only where it
    /// still stands for what was written, since batches committed meanwhile have been
    /// applied (and are applied while it runs); readers that still hold a location in a
    /// removed file keep reading it until `reader.retire` is called for it. A compaction
    /// asked for while one runs, `onCompacted` included, starts after it; `close` waits
    /// for it.
    public func compact(
        _ makeItems: @escaping @Sendable (UInt64) throws -> [SnapshotFile.Item],
        onCompacted: (@Sendable (LogWriter.CompactionResult) -> Void)? = nil
    ) async throws -> LogWriter.CompactionResult {
        try await compactStreaming({ LogWriter.CompactionSource(items: try makeItems($0)) }, onCompacted: onCompacted)
    }

    /// `compact`, for a state whose receipts stay on disk: `makeSource` (on the I/O
    /// thread, with the covered sequence number) returns the items' metadata and how to
    /// read each receipt (or, in `CompactionSource.later`, how to make items from a copy of
    /// the state on the snapshot's thread); the receipts are read after it returns, while
    /// the snapshot is streamed to disk (`LogWriter.writeSnapshot`), so a lock taken in
    /// `makeSource` is not held while they are read.
    public func compactStreaming(
        _ makeSource: @escaping @Sendable (UInt64) throws -> LogWriter.CompactionSource,
        onCompacted: (@Sendable (LogWriter.CompactionResult) -> Void)? = nil
    ) async throws -> LogWriter.CompactionResult {
        try await withCheckedThrowingContinuation { continuation in
            submit(.compact(makeSource, onCompacted, { continuation.resume(with: $0) }))
        }
    }

    /// Asks the engine to call `handler` (on its I/O thread: it must only start work
    /// elsewhere, e.g. a task that compacts) once the records committed since the last
    /// snapshot hold `logBytes` bytes, and at least as many as that snapshot (so the work
    /// of compacting stays proportional to what was written). Called once; again only
    /// after a compaction has run (`compact`, `compactStreaming`), and after a failed one
    /// only when as many bytes again have been committed. Replaces an earlier trigger;
    /// nil removes it. `LogConfiguration.compactAfterLogBytes` sets this up in `FileStore`.
    public func setCompactionTrigger(logBytes: UInt64, handler: (@Sendable () -> Void)?) {
        compactionTrigger.withLock { trigger in
            trigger = handler.map { CompactionTrigger(logBytes: max(1, logBytes), handler: $0) }
        }
    }

    public var lastSequence: UInt64 { condition.withLock { published.lastSequence } }
    public var durableSequence: UInt64 { condition.withLock { published.durableSequence } }
    public var activeSegment: UInt64 { condition.withLock { published.segmentNumber } }
    /// (commit batches, records synced) since open.
    public var commitStatistics: (batches: UInt64, records: UInt64) {
        condition.withLock { (published.batches, published.syncedRecords) }
    }
    public var poisonError: LedgerError? { condition.withLock { poisoned } }
    /// Whether `close` has begun (for tests: a snapshot being written stops at its next buffer).
    package var isClosing: Bool { condition.withLock { stopping } }
    /// Jobs queued for the I/O thread and not yet taken (for tests).
    package var queuedJobCount: Int { queuedJobs.load(ordering: .acquiring) }
    /// See `BatchTimings`.
    @_spi(Benchmarks) public var batchTimings: BatchTimings { condition.withLock { published.timings } }

    /// Blocks until the I/O thread sleeps on its condition with nothing queued (or has
    /// stopped), and returns its idle statistics at that moment. For tests: that an
    /// idle log is parked, and stays parked, is then a fact to compare, not a timing.
    func waitUntilParked() -> IdleStatistics {
        condition.lock()
        defer { condition.unlock() }
        parkWaiters += 1
        while !(parked && queue.isEmpty) && !stopped { condition.wait() }
        parkWaiters -= 1
        return idle
    }

    /// Drains queued work, writes a checkpoint, stops the I/O thread, closes the
    /// segment and releases the lock. Idempotent.
    public func close() throws {
        condition.lock()
        if stopped {
            condition.unlock()
            return
        }
        stopping = true
        stopSnapshot.set()
        condition.broadcast()
        while !stopped { condition.wait() }
        condition.unlock()
        writer.close(timeMilliseconds: clock())
        reader.retireAll()
        lock.unlock()
    }

    // MARK: I/O thread

    private static func frameBytes(_ records: [LogRecord]) -> Int {
        var bytes = 0
        for record in records { bytes += RecordFrame.frameBytes(bodyBytes: record.body.count) }
        return bytes
    }

    private func submit(_ job: Job) {
        condition.lock()
        let refusal: LedgerError?
        var wake = Wake.none
        if let poisoned {
            refusal = poisoned
        } else if stopping || stopped {
            refusal = LedgerError(.closed, "the ledger is closed", path: directory)
        } else if case .append(let records, _, _, _) = job, queuedRecords + records.count > configuration.queuedRecordsMax {
            refusal = LedgerError(.limitExceeded, "more than \(configuration.queuedRecordsMax) records are waiting for the disk",
                                  path: directory, limit: "queuedRecordsMax")
        } else {
            refusal = nil
            if case .append(let records, _, _, _) = job { queuedRecords += records.count }
            queue.append(job)
            queuedJobs.store(queue.count, ordering: .releasing)
            // Only a parked I/O thread needs waking: awake, it looks at the queue (under the
            // lock) before it parks again.
            wake = parkWaiters > 0 ? .all : parked ? .one : .none
        }
        condition.unlock()
        // Woken after the unlock: woken under the lock, the I/O thread would block at once
        // on the mutex this thread still holds and need a second wake-up (two futex calls
        // and two switches on the path of a lone caller's every commit, in a profile).
        switch wake {
        case .none: break
        case .one: condition.signal()
        case .all: condition.broadcast()
        }
        if let refusal { job.fail(refusal) }
    }

    private enum Wake { case none, one, all }

    private static func monotonicNanoseconds() -> UInt64 { AdaptivePolling.nanoseconds() }

    /// Folds the gap since the last batch ended into the polling average.
    private func noteArrival() {
        let gap = LogEngine.monotonicNanoseconds() &- lastBatchEnd
        idlePolling.note(gapNanoseconds: gap)
        if gap < 1_000_000 {
            timings.gaps += 1
            timings.gapNanoseconds += gap
        }
    }

    /// Spin-then-park: polls the queue length (without the lock) for the polling
    /// budget after a batch, before the I/O thread sleeps on its condition.
    private func pollForWork() {
        let budget = idlePolling.budgetNanoseconds
        guard budget > 0 else { return }
        let deadline = LogEngine.monotonicNanoseconds() + budget
        AdaptivePolling.poll(until: deadline) {
            idlePolls += 1
            return queuedJobs.load(ordering: .acquiring) != 0
        }
    }

    /// Batch formation after a batch of `resumed` callers: waits (polling, bounded by
    /// `gatherNanoseconds`) while the callers just resumed re-append, so they join the
    /// next batch instead of forming a separate one. Stops early once `resumed` more
    /// jobs than were queued at the start are queued, or the queue stopped growing.
    ///
    /// No wait when at least half as many jobs as were resumed are queued already: the
    /// callers then take turns in two halves, one half appending while the other's batch
    /// syncs, and the queued half goes at once. Waiting for the resumed half too would
    /// hold the queued one back, and the poll would take a core from the callers it waits
    /// for — on two cores, callers that spend microseconds per append (a memo put, a
    /// journal step) lost ~15 % of their rate to it (`Benchmarks/BENCH_RESULTS.md`).
    /// Callers that append at once (the engine's own appenders) come back within the
    /// wait, find an empty queue behind their batch, and are gathered as before.
    private func gather(resumed: Int) {
        guard gatherNanoseconds > 0, resumed > 1 else { return }
        let initial = queuedJobs.load(ordering: .acquiring)
        if initial * 2 >= resumed { return }
        let start = LogEngine.monotonicNanoseconds()
        let deadline = start + gatherNanoseconds
        let stall = max(gatherNanoseconds / 4, 1)
        let target = initial + resumed
        var seen = initial
        var lastGrowth = start
        while true {
            sched_yield()
            let now = LogEngine.monotonicNanoseconds()
            let queued = queuedJobs.load(ordering: .acquiring)
            if queued >= target || now >= deadline { return }
            if queued != seen {
                seen = queued
                lastGrowth = now
            } else if now - lastGrowth >= stall {
                return
            }
        }
    }

    private func ioLoop() {
        var resumed = 0
        while true {
            if resumed > 0 {
                gather(resumed: resumed)
                pollForWork()
            }
            condition.lock()
            published.timings = timings
            idle.polls = idlePolls
            // Closing waits for a compaction thread's result, so it is finished (or its
            // refusal reported) before the writer closes.
            while queue.isEmpty && (!stopping || compactionThreadRunning) {
                parked = true
                idle.sleeps += 1
                if parkWaiters > 0 { condition.broadcast() }
                condition.wait()
                parked = false
            }
            if queue.isEmpty {
                stopped = true
                condition.broadcast()
                condition.unlock()
                return
            }
            if resumed > 0 { noteArrival() }
            // Take one compaction (or a written snapshot) alone, or as many appends as fit
            // one batch.
            if case .append = queue[0] {
                var records = 0
                var bytes = 0
                var taken = 0
                for job in queue {
                    guard case .append(let group, let groupBytes, _, _) = job else { break }
                    if taken > 0 && (records + group.count > configuration.batchRecordsMax
                        || bytes + groupBytes > configuration.batchBytesMax) { break }
                    records += group.count
                    bytes += groupBytes
                    taken += 1
                }
                if taken == queue.count {
                    swap(&queue, &batch)
                } else {
                    batch.append(contentsOf: queue[..<taken])
                    queue.removeFirst(taken)
                }
                queuedRecords -= records
            } else {
                batch.append(queue.removeFirst())
            }
            queuedJobs.store(queue.count, ordering: .releasing)
            condition.unlock()
            resumed = execute()
            batch.removeAll(keepingCapacity: true)
            lastBatchEnd = LogEngine.monotonicNanoseconds()
        }
    }

    /// Runs `batch`; returns how many appenders it resumed.
    private func execute() -> Int {
        if case .compact(let makeSource, let onCompacted, let completion) = batch.first {
            startCompaction(batch[0], makeSource, onCompacted, completion)
            return 0
        }
        if case .snapshotWritten(let written) = batch.first {
            condition.withLock { compactionThreadRunning = false }
            finishCompaction(written)
            return 0
        }
        if case .compactionDone = batch.first {
            condition.withLock { compactionThreadRunning = false }
            movingState = false
            startWaitingCompactions()
            return 0
        }
        // One appender: commit its array as is; more: gather their records into a
        // buffer kept (with its capacity) across batches.
        var single: [LogRecord]? = nil
        if batch.count == 1, case .append(let group, _, _, _) = batch[0] {
            single = group
        } else {
            for job in batch {
                if case .append(let group, _, _, _) = job { batchRecords.append(contentsOf: group) }
            }
        }
        defer { batchRecords.removeAll(keepingCapacity: true) }
        do {
            let count = single?.count ?? batchRecords.count
            let started = LogEngine.monotonicNanoseconds()
            try writer.commit(single ?? batchRecords)
            let committed = LogEngine.monotonicNanoseconds()
            publish(records: count)
            // Each group's first sequence number (a rollover's seal may sit inside the batch).
            var index = 0
            var committedBytes = 0
            for job in batch {
                if case .append(let group, let groupBytes, let onDurable, _) = job {
                    onDurable?(writer.committedSequence(ofRecord: index),
                               writer.locationsInLastCommit[index..<(index + group.count)])
                    index += group.count
                    committedBytes += groupBytes
                }
            }
            // Before the callers resume: one that then waits for the automatic compaction
            // finds it started.
            logBytesSinceSnapshot += UInt64(committedBytes)
            if !compactionRequested { checkCompactionTrigger() }
            let applied = LogEngine.monotonicNanoseconds()
            index = 0
            for job in batch {
                if case .append(let group, _, _, let waiter) = job {
                    waiter.resume(.success(writer.committedSequence(ofRecord: index)))
                    index += group.count
                }
            }
            timings.batches += 1
            timings.commitNanoseconds += committed &- started
            timings.onDurableNanoseconds += applied &- committed
            timings.resumeNanoseconds += LogEngine.monotonicNanoseconds() &- applied
        } catch {
            let typed = (error as? LedgerError) ?? LedgerError(.io, "\(error)", path: directory)
            // Poison before resuming anyone, so a caller that saw the failure never sees
            // the engine still accepting work.
            poisonAll(writer.poisoned ?? typed)
            for job in batch {
                if case .append(_, _, _, let waiter) = job { waiter.resume(.failure(typed)) }
            }
        }
        return batch.count
    }

    /// Steps 0–1 of a compaction (`Spec/FORMAT.md` §8) on the I/O thread: the state's
    /// items through the last sequence number, the rollover, `covered`. The snapshot is
    /// then written on a thread of its own (`LogWriter.writeSnapshot`) while later batches
    /// commit, and `finishCompaction` runs when it queues its result; with
    /// `LogConfiguration.compactsInBackground` off, it is written here, and appends wait.
    /// A compaction asked for while one runs waits for it.
    private func startCompaction(
        _ job: Job, _ makeSource: @Sendable (UInt64) throws -> LogWriter.CompactionSource,
        _ onCompacted: (@Sendable (LogWriter.CompactionResult) -> Void)?,
        _ completion: @escaping @Sendable (Result<LogWriter.CompactionResult, LedgerError>) -> Void
    ) {
        if running != nil || movingState {
            waitingCompactions.append(job)
            return
        }
        let prepared: LogWriter.PreparedCompaction
        do {
            let source = try makeSource(writer.lastSequence)
            let stop = stopSnapshot
            prepared = try writer.prepareCompaction(source: source, timeMilliseconds: clock(), stop: { stop.isSet })
        } catch {
            compactionFailed(error, completion)
            return
        }
        // A rollover's seal is a record: its sequence number and segment are visible now
        // (not counted as a batch).
        publish(records: nil)
        running = RunningCompaction(prepared: prepared, onCompacted: onCompacted, completion: completion,
                                    logBytesAtPrepare: logBytesSinceSnapshot)
        guard configuration.compactsInBackground else {
            finishCompaction(LogWriter.writeSnapshot(prepared))
            return
        }
        onCompactionThread("onceledger-snap") { .snapshotWritten(LogWriter.writeSnapshot(prepared)) }
    }

    /// Runs `work` on a thread of its own (`name`: at most 15 characters, all Linux keeps),
    /// which then queues the job `work` returns —
    /// even when the log is poisoned or closing: the I/O thread waits for it
    /// (`compactionThreadRunning`).
    private func onCompactionThread(_ name: String, _ work: @escaping @Sendable () -> Job) {
        condition.withLock { compactionThreadRunning = true }
        let thread = Thread { [self] in
            let job = work()
            condition.lock()
            queue.append(job)
            queuedJobs.store(queue.count, ordering: .releasing)
            condition.broadcast()
            condition.unlock()
        }
        thread.name = name
        thread.start()
    }

    /// Step 6 of the running compaction (`LogWriter.finishCompaction`: the marker), on the
    /// I/O thread once its snapshot is durable and what it covers removed. Then its
    /// `onCompacted` moves the state to the snapshot — on a thread of its own while later
    /// batches commit (`LogConfiguration.compactsInBackground`; with millions of values
    /// that takes a good part of a second) — and its caller is told; the compactions that
    /// waited for it start after that (they take their items from the moved state).
    private func finishCompaction(_ written: LogWriter.WrittenSnapshot) {
        guard let compaction = running else { return }
        running = nil
        let result: LogWriter.CompactionResult
        do {
            result = try writer.finishCompaction(compaction.prepared, written: written, timeMilliseconds: clock())
        } catch {
            compactionFailed(error, compaction.completion)
            startWaitingCompactions()
            return
        }
        publish(records: 1)
        logBytesSinceSnapshot -= min(logBytesSinceSnapshot, compaction.logBytesAtPrepare)
        lastSnapshotBytes = result.snapshotBytes
        compactionRetryBase = 0
        compactionRequested = false
        let finish: @Sendable () -> Void = { [onCompacted = compaction.onCompacted, completion = compaction.completion] in
            onCompacted?(result)
            completion(.success(result))
        }
        guard configuration.compactsInBackground, compaction.onCompacted != nil else {
            finish()
            startWaitingCompactions()
            return
        }
        movingState = true
        onCompactionThread("onceledger-move") {
            finish()
            return .compactionDone
        }
    }

    /// Starts the compactions asked for while one ran (or fails them if the log is poisoned).
    private func startWaitingCompactions() {
        guard !waitingCompactions.isEmpty else { return }
        let waiting = waitingCompactions
        waitingCompactions = []
        let refusal = condition.withLock { () -> LedgerError? in
            if let poisoned { return poisoned }
            queue.insert(contentsOf: waiting, at: 0)
            queuedJobs.store(queue.count, ordering: .releasing)
            return nil
        }
        if let refusal { for job in waiting { job.fail(refusal) } }
    }

    private func compactionFailed(_ error: Error,
                                  _ completion: @Sendable (Result<LogWriter.CompactionResult, LedgerError>) -> Void) {
        let typed = (error as? LedgerError) ?? LedgerError(.invalidArgument, "snapshot items failed: \(error)")
        if let poisoned = writer.poisoned { poisonAll(poisoned) }
        compactionRetryBase = logBytesSinceSnapshot
        compactionRequested = false
        completion(.failure(typed))
    }

    /// Fires the compaction trigger when its bytes have been committed (I/O thread).
    private func checkCompactionTrigger() {
        guard let trigger = compactionTrigger.withLock({ $0 }),
              logBytesSinceSnapshot >= compactionRetryBase + max(trigger.logBytes, lastSnapshotBytes)
        else { return }
        compactionRequested = true
        trigger.handler()
    }

    /// The writer's position, and a batch of `records` (nil: no batch).
    private func publish(records: Int?) {
        condition.withLock {
            published.lastSequence = writer.lastSequence
            published.durableSequence = writer.durableSequence
            published.segmentNumber = writer.segmentNumber
            if let records {
                published.batches += 1
                published.syncedRecords += UInt64(records)
            }
        }
    }

    /// After a failed write or sync: fail everything queued and refuse all later work.
    private func poisonAll(_ error: LedgerError) {
        condition.lock()
        poisoned = poisoned ?? error
        // A compaction thread's result stays queued: the I/O thread must still take it
        // (and fail that compaction's caller), and closing waits for it.
        let failed = queue.filter { !$0.isCompactionThreads }
        queue.removeAll { !$0.isCompactionThreads }
        queuedRecords = 0
        queuedJobs.store(queue.count, ordering: .releasing)
        let stored = poisoned!
        condition.unlock()
        for job in failed { job.fail(stored) }
        let waiting = waitingCompactions
        waitingCompactions = []
        for job in waiting { job.fail(stored) }
    }
}

extension LogEngine.Job {
    fileprivate func fail(_ error: LedgerError) {
        switch self {
        case .append(_, _, _, let waiter): waiter.resume(.failure(error))
        case .compact(_, _, let completion): completion(.failure(error))
        case .snapshotWritten, .compactionDone: break
        }
    }
}

/// A flag one thread sets and another polls (`LogEngine.close` stopping a snapshot's write).
final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

/// A one-shot result slot a blocking caller waits on.
final class ResultBox<Value: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var result: Result<Value, LedgerError>?

    func set(_ value: Result<Value, LedgerError>) {
        condition.withLock {
            result = value
            condition.broadcast()
        }
    }

    func wait() -> Result<Value, LedgerError> {
        condition.lock()
        defer { condition.unlock() }
        while result == nil { condition.wait() }
        return result!
    }
}
