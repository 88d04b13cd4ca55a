import Foundation
import OnceLedgerFormat

/// The storage engine: a segmented write-ahead log with group commit.
///
/// Callers `append` from any task; they suspend on a continuation. One dedicated
/// I/O thread (not Swift concurrency's cooperative pool, so a blocking `fdatasync`
/// never occupies a pool thread) drains everything queued since its last sync into
/// one `pwrite` and one `fdatasync`, then resumes every caller of that batch
/// (`Spec/FORMAT.md` §7, DESIGN §6).
public final class LogEngine: @unchecked Sendable {
    public let directory: String
    public let configuration: LogConfiguration
    public let ledgerID: LedgerID
    /// What recovery found when this instance was opened.
    public let recovery: RecoveryReport

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

    private struct Published {
        var lastSequence: UInt64 = 0
        var durableSequence: UInt64 = 0
        var batches: UInt64 = 0
        var syncedRecords: UInt64 = 0
        var segmentNumber: UInt64 = 0
    }

    fileprivate enum Job {
        case append([LogRecord], (@Sendable (UInt64) -> Void)?, @Sendable (Result<UInt64, LedgerError>) -> Void)
        case compact(@Sendable (UInt64) throws -> [SnapshotFile.Item],
                     @Sendable (Result<LogWriter.CompactionResult, LedgerError>) -> Void)
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
        onSnapshot: (SnapshotFile) throws -> Void = { _ in },
        onRecord: (ScannedRecord) throws -> Void = { _ in }
    ) throws -> LogEngine {
        let (writer, lock, report) = try LogWriter.recover(
            directory: directory, storage: storage, configuration: configuration, createIfMissing: createIfMissing,
            onSnapshot: onSnapshot, onRecord: onRecord)
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
        published.lastSequence = writer.lastSequence
        published.durableSequence = writer.durableSequence
        published.segmentNumber = writer.segmentNumber
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

    /// Appends `records` as one atomic group (consecutive sequence numbers, one
    /// commit batch) and returns the first sequence number once they are durable.
    public func append(_ records: [LogRecord]) async throws -> UInt64 {
        try await append(records, onDurable: nil)
    }

    /// Like `append`, and calls `onDurable(firstSequence)` on the I/O thread as soon
    /// as the batch is durable, before any caller of that batch resumes and before
    /// any later batch or compaction runs. State derived from the log and updated in
    /// `onDurable` is therefore exactly "every record through the last durable one"
    /// whenever a compaction's `makeItems` runs.
    public func append(_ records: [LogRecord], onDurable: (@Sendable (UInt64) -> Void)?) async throws -> UInt64 {
        try writer.validate(records)
        return try await withCheckedThrowingContinuation { continuation in
            submit(.append(records, onDurable, { continuation.resume(with: $0) }))
        }
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
        submit(.append(records, nil, { box.set($0) }))
        return try box.wait().get()
    }

    /// Writes a snapshot between batches: `makeItems` runs on the I/O thread with
    /// the covered sequence number (every record through it is durable and has
    /// been returned to its appender) and returns the live state as items.
    public func compact(
        _ makeItems: @escaping @Sendable (UInt64) throws -> [SnapshotFile.Item]
    ) async throws -> LogWriter.CompactionResult {
        try await withCheckedThrowingContinuation { continuation in
            submit(.compact(makeItems, { continuation.resume(with: $0) }))
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

    /// Drains queued work, writes a checkpoint, stops the I/O thread, closes the
    /// segment and releases the lock. Idempotent.
    public func close() throws {
        condition.lock()
        if stopped {
            condition.unlock()
            return
        }
        stopping = true
        condition.broadcast()
        while !stopped { condition.wait() }
        condition.unlock()
        writer.close(timeMilliseconds: clock())
        lock.unlock()
    }

    // MARK: I/O thread

    private func submit(_ job: Job) {
        condition.lock()
        let refusal: LedgerError?
        if let poisoned {
            refusal = poisoned
        } else if stopping || stopped {
            refusal = LedgerError(.closed, "the ledger is closed", path: directory)
        } else if case .append(let records, _, _) = job, queuedRecords + records.count > configuration.queuedRecordsMax {
            refusal = LedgerError(.limitExceeded, "more than \(configuration.queuedRecordsMax) records are waiting for the disk",
                                  path: directory, limit: "queuedRecordsMax")
        } else {
            refusal = nil
            if case .append(let records, _, _) = job { queuedRecords += records.count }
            queue.append(job)
            condition.signal()
        }
        condition.unlock()
        if let refusal { job.fail(refusal) }
    }

    private func ioLoop() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if queue.isEmpty {
                stopped = true
                condition.broadcast()
                condition.unlock()
                return
            }
            // Take one compaction alone, or as many appends as fit one batch.
            var batch: [Job] = []
            if case .compact = queue[0] {
                batch.append(queue.removeFirst())
            } else {
                var records = 0
                var bytes = 0
                while let next = queue.first, case .append(let group, _, _) = next {
                    let groupBytes = group.reduce(0) { $0 + RecordFrame.frameBytes(bodyBytes: $1.body.count) }
                    if !batch.isEmpty && (records + group.count > configuration.batchRecordsMax
                        || bytes + groupBytes > configuration.batchBytesMax) { break }
                    records += group.count
                    bytes += groupBytes
                    batch.append(queue.removeFirst())
                }
                queuedRecords -= records
            }
            condition.unlock()
            execute(batch)
        }
    }

    private func execute(_ batch: [Job]) {
        if case .compact(let makeItems, let completion) = batch.first {
            do {
                let items = try makeItems(writer.lastSequence)
                let result = try writer.compact(items: items, timeMilliseconds: clock())
                publish(records: 1)
                completion(.success(result))
            } catch {
                let typed = (error as? LedgerError) ?? LedgerError(.invalidArgument, "snapshot items failed: \(error)")
                if let poisoned = writer.poisoned { poisonAll(poisoned) }
                completion(.failure(typed))
            }
            return
        }
        var records: [LogRecord] = []
        var groups: [(count: Int, onDurable: (@Sendable (UInt64) -> Void)?,
                      completion: @Sendable (Result<UInt64, LedgerError>) -> Void)] = []
        for job in batch {
            if case .append(let group, let onDurable, let completion) = job {
                records.append(contentsOf: group)
                groups.append((group.count, onDurable, completion))
            }
        }
        do {
            let first = try writer.commit(records)
            publish(records: records.count)
            var sequence = first
            for group in groups {
                group.onDurable?(sequence)
                sequence += UInt64(group.count)
            }
            sequence = first
            for group in groups {
                group.completion(.success(sequence))
                sequence += UInt64(group.count)
            }
        } catch {
            let typed = (error as? LedgerError) ?? LedgerError(.io, "\(error)", path: directory)
            // Poison before resuming anyone, so a caller that saw the failure never sees
            // the engine still accepting work.
            poisonAll(writer.poisoned ?? typed)
            for group in groups { group.completion(.failure(typed)) }
        }
    }

    private func publish(records: Int) {
        condition.withLock {
            published.lastSequence = writer.lastSequence
            published.durableSequence = writer.durableSequence
            published.segmentNumber = writer.segmentNumber
            published.batches += 1
            published.syncedRecords += UInt64(records)
        }
    }

    /// After a failed write or sync: fail everything queued and refuse all later work.
    private func poisonAll(_ error: LedgerError) {
        condition.lock()
        poisoned = poisoned ?? error
        let failed = queue
        queue.removeAll()
        queuedRecords = 0
        let stored = poisoned!
        condition.unlock()
        for job in failed { job.fail(stored) }
    }
}

extension LogEngine.Job {
    fileprivate func fail(_ error: LedgerError) {
        switch self {
        case .append(_, _, let completion): completion(.failure(error))
        case .compact(_, let completion): completion(.failure(error))
        }
    }
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
