import Foundation
import OnceLedgerFormat
import OnceLedgerLog
import Synchronization

/// A durable ledger of effects keyed by idempotency key: each effect runs exactly
/// once across crashes, retries and duplicate callers (`ARCHITECTURE.md` §3).
///
/// ```swift
/// let ledger = try Ledger.open(directory: "/var/lib/myapp/ledger")
/// let outcome = try await ledger.once("order-42-receipt") { effect in
///     try await mailer.send(receiptFor: order, idempotencyKey: effect.token)
/// }
/// ```
public final class Ledger: Sendable {
    let backend: any LedgerBackend
    /// How this ledger derives effect tokens (`Spec/FORMAT.md` §9.3), from its backend.
    public let tokenScope: TokenScope
    let clock: @Sendable () -> UInt64
    let state: Mutex<LedgerState>
    /// The calls running in this process, by key bytes (keys compare byte for byte,
    /// as in the state and the log; `String` equality would merge canonically
    /// equivalent keys).
    let inFlight = Mutex<[KeyBytes: InFlightCall]>([:])
    /// Set by `close()`: a closed ledger writes nothing more, even if its backend is
    /// opened again by another `Ledger` (an in-memory backend is shared that way).
    let closed = Mutex(false)
    /// Created by the first use of `executor`; shut down by `close()`.
    private let spinningExecutor = Mutex<SpinningExecutor?>(nil)

    /// An executor to run the task that calls `once` on, for the lowest latency per
    /// call with one caller (or a few):
    ///
    /// ```swift
    /// try await withTaskExecutorPreference(ledger.executor) {
    ///     for order in orders { _ = try await ledger.once(order.key) { … } }
    /// }
    /// ```
    ///
    /// Each `once` waits for two commits. On the default executor the task is resumed
    /// after each of them by a pool thread that has to be woken first; this executor's
    /// one thread polls while a commit is in flight, so it is already running. It runs
    /// every job of the tasks that prefer it, effects included, one at a time, and
    /// spends CPU polling: see `SpinningExecutor`. Created on first use; `close()`
    /// stops its thread, after which tasks that still prefer it run on the global
    /// concurrent executor.
    public var executor: SpinningExecutor {
        spinningExecutor.withLock { current in
            if let current { return current }
            let created = SpinningExecutor(name: "onceledger-ledger-executor")
            current = created
            return created
        }
    }

    /// `executor` if it was created, without creating it.
    var createdExecutor: SpinningExecutor? { spinningExecutor.withLock { $0 } }

    /// Opens (or creates) a ledger in `directory`, on the segmented file log.
    public static func open(
        directory: String, configuration: LogConfiguration = LogConfiguration(), createIfMissing: Bool = true,
        storage: any Storage = PosixStorage(), clock: @escaping @Sendable () -> UInt64 = LogEngine.systemMilliseconds
    ) throws -> Ledger {
        let backend = FileBackend(directory: directory, storage: storage, configuration: configuration,
                                  createIfMissing: createIfMissing, clock: clock)
        return try Ledger(backend: backend, clock: clock)
    }

    /// A ledger whose records live in memory (tests; nothing survives the process).
    public static func inMemory(clock: @escaping @Sendable () -> UInt64 = LogEngine.systemMilliseconds) -> Ledger {
        // An in-memory backend's load cannot fail on a fresh instance.
        try! Ledger(backend: InMemoryBackend(), clock: clock)
    }

    /// Opens a ledger on any backend: replays its durable state, classifying every key
    /// as done, pending-unknown or absent.
    public init(backend: any LedgerBackend, clock: @escaping @Sendable () -> UInt64 = LogEngine.systemMilliseconds) throws {
        self.backend = backend
        self.clock = clock
        var loaded = LedgerState()
        try backend.loadLocated(
            itemCount: { count in loaded.reserve(entries: count) },
            item: { kind, body, location in try loaded.replay(kind: kind, body: body, location: location) },
            record: { kind, body, location in try loaded.replay(kind: kind, body: body, location: location) })
        loaded.finishReplay()
        loaded.reader = backend.recordReader
        let tokenScope = backend.tokenScope
        loaded.tokenScope = tokenScope
        self.tokenScope = tokenScope
        self.state = Mutex(loaded)
    }

    /// A ledger dropped without `close()` still stops its executor's thread (tasks that
    /// still prefer the executor then run on the global one).
    deinit {
        spinningExecutor.withLock { $0 }?.shutdown()
    }

    /// Closes the backend (the file log writes a checkpoint and releases its lock).
    public func close() throws {
        closed.withLock { $0 = true }
        spinningExecutor.withLock { $0 }?.shutdown()
        try backend.close()
    }

    // MARK: Inspection

    /// The stored record of `key`, or nil if the ledger never saw it. A receipt that
    /// stays on disk is read here, outside the state's lock; throws `.corruptRecord` if
    /// its bytes were damaged since the ledger opened.
    public func entry(_ key: String) throws -> EntryInfo? {
        try state.withLock { try $0.lookup(key) }?.finish()
    }

    /// The stored record of `key` (looked up by its text), or nil if the ledger never saw it.
    public func entry(_ key: IdempotencyKey) throws -> EntryInfo? {
        try entry(key.rawValue)
    }

    /// Every pending-unknown entry: an intent without a completion.
    public func pendingEntries() throws -> [EntryInfo] {
        try entries(status: .pendingUnknown)
    }

    /// Every key's current entry, sorted by the key's UTF-8 bytes; optionally only one status.
    public func entries(status: EntryInfo.Status? = nil) throws -> [EntryInfo] {
        try state.withLock { try $0.infos(status: status) }
    }

    public var entryCount: Int { state.withLock { $0.count } }

    // MARK: Writing

    /// Appends records durably and, once durable, applies the very bytes written to the
    /// state (the path a replay takes, so the state is always "the log replayed").
    func commit(_ bodies: [RecordBody]) async throws {
        for body in bodies { try body.validate() }
        if closed.withLock({ $0 }) { throw LedgerError(.closed, "the ledger is closed") }
        let records = bodies.map(LogRecord.init)
        _ = try await backend.appendLocated(records, onDurable: { [self] _, locations in
            self.state.withLock { state in
                for (index, record) in records.enumerated() {
                    do {
                        let location = locations.map { $0[$0.startIndex + index] }
                        try state.apply(kind: record.kind, body: record.body, location: location)
                    } catch {
                        // Validated bodies encoded by RecordBody always decode; anything else
                        // is a bug in this module, not bad input.
                        preconditionFailure("a validated \(record.kind) body did not apply: \(error)")
                    }
                }
            }
        })
    }

    /// Writes a snapshot of the live state and lets the backend drop what it covers.
    /// Receipts that stay on disk are read into the snapshot, and the entries then point
    /// at the snapshot's values.
    public func compact() async throws {
        let order = Mutex<[Int]>([])
        try await backend.compactLocated({ [self] _ in
            try self.state.withLock { state in
                let (items, written) = try state.snapshotItemsInOrder()
                order.withLock { $0 = written }
                return items
            }
        }, onCompacted: { [self] locations in
            let written = order.withLock { $0 }
            self.state.withLock { $0.relocate(order: written, locations: locations) }
        })
    }

    func now() -> UInt64 { clock() }
}

/// One running effect in this process; duplicates wait on it.
final class InFlightCall: Sendable {
    let fingerprint: [UInt8]
    private let state = Mutex<(result: Result<EntryInfo, LedgerErrorOrOther>?, waiters: [CheckedContinuation<Result<EntryInfo, LedgerErrorOrOther>, Never>])>((nil, []))

    init(fingerprint: [UInt8]) { self.fingerprint = fingerprint }

    /// A `resolvePending` or `forgetDoneEntryAllowingRerun` in progress (they register
    /// with an empty fingerprint); callers wait for it and then decide afresh.
    var isOperator: Bool { fingerprint.isEmpty }

    /// Callers suspended in `wait()` (tests use it to order races deterministically).
    var waiterCount: Int { state.withLock { $0.waiters.count } }

    func wait() async -> Result<EntryInfo, LedgerErrorOrOther> {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Result<EntryInfo, LedgerErrorOrOther>? in
                if let result = state.result { return result }
                state.waiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    func finish(_ result: Result<EntryInfo, LedgerErrorOrOther>) {
        let waiters = state.withLock { state in
            state.result = result
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: result) }
    }
}

/// Any error, boxed so `Result` can carry it across tasks.
struct LedgerErrorOrOther: Error, Sendable {
    let error: any Error & Sendable
}
