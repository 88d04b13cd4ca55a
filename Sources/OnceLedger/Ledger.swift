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
    /// The store this ledger's entries live in, which decides every claim (`LedgerStore`).
    public let store: any LedgerStore
    /// How this ledger derives effect tokens (`Spec/FORMAT.md` §9.3), from its store.
    public let tokenScope: TokenScope
    let clock: @Sendable () -> UInt64
    /// The calls running in this process, by key bytes (keys compare byte for byte,
    /// as in the store; `String` equality would merge canonically equivalent keys).
    /// Duplicate callers of a key wait on the first one here instead of asking the store.
    let inFlight = Mutex<[KeyBytes: InFlightCall]>([:])
    /// Set by `close()`: a closed ledger starts no more calls.
    let closed = Mutex(false)
    /// Created by the first use of `executor`; shut down by `close()`.
    private let spinningExecutor = Mutex<SpinningExecutor?>(nil)
    /// How long the memo of an ended run is kept; nil: forever (`Ledger+Memo.swift`).
    public let memoRetention: MemoRetention?
    /// The background memo sweeper (with `memoRetention`), cancelled by `close()`.
    let memoSweeper = Mutex<MemoSweeper?>(nil)
    /// Decoded memo values its memos share (`MemoDecodedCache`, 16 MiB of stored bytes).
    public let memoDecodedCache = MemoDecodedCache()

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

    /// Opens (or creates) a ledger in `directory`, on the segmented file log (`FileStore`).
    public static func open(
        directory: String, configuration: LogConfiguration = LogConfiguration(), createIfMissing: Bool = true,
        storage: any Storage = PosixStorage(), clock: @escaping @Sendable () -> UInt64 = LogEngine.systemMilliseconds,
        memoRetention: MemoRetention? = nil
    ) throws -> Ledger {
        let store = try FileStore(directory: directory, storage: storage, configuration: configuration,
                                  createIfMissing: createIfMissing, clock: clock)
        return Ledger(store: store, clock: clock, memoRetention: memoRetention)
    }

    /// A ledger whose entries live in memory (`InMemoryStore`; tests: nothing survives the process).
    public static func inMemory(clock: @escaping @Sendable () -> UInt64 = LogEngine.systemMilliseconds,
                                memoRetention: MemoRetention? = nil) -> Ledger {
        Ledger(store: InMemoryStore(), clock: clock, memoRetention: memoRetention)
    }

    /// A ledger on any store. `clock` gives the times claims, completions and operator acts
    /// are recorded with, and what `.window` scopes expire against. With `memoRetention`, a
    /// background sweeper removes the memo of ended runs once their window has passed: first
    /// now, then every `memoRetention.sweepInterval`, until `close()`.
    public init(store: any LedgerStore, clock: @escaping @Sendable () -> UInt64 = LogEngine.systemMilliseconds,
                memoRetention: MemoRetention? = nil) {
        self.store = store
        self.clock = clock
        self.tokenScope = store.tokenScope
        self.memoRetention = memoRetention
        // Automatic compactions judge retention on this clock too (`FileStore.useClock`).
        (store as? FileStore)?.useClock(clock)
        if let memoRetention {
            memoSweeper.withLock { $0 = MemoSweeper(store: store, clock: clock, retention: memoRetention) }
        }
    }

    /// A ledger dropped without `close()` still stops its executor's thread (tasks that
    /// still prefer the executor then run on the global one).
    deinit {
        spinningExecutor.withLock { $0 }?.shutdown()
        memoSweeper.withLock { $0 }?.stop()
    }

    /// Closes the store (the file store writes a checkpoint and releases its lock). Another
    /// `Ledger` on the same store is closed with it.
    public func close() throws {
        closed.withLock { $0 = true }
        spinningExecutor.withLock { $0 }?.shutdown()
        memoSweeper.withLock { $0 }?.stop()
        try store.close()
    }

    // MARK: Inspection
    //
    // Asynchronous because a store may have to ask elsewhere (a database) to answer.

    /// The stored entry of `key`, or nil if the ledger never saw it.
    public func entry(_ key: String) async throws -> EntryInfo? {
        try await store.entry(key)
    }

    /// The stored entry of `key` (looked up by its text), or nil if the ledger never saw it.
    public func entry(_ key: IdempotencyKey) async throws -> EntryInfo? {
        try await entry(key.rawValue)
    }

    /// Every pending-unknown entry: an intent without a completion.
    public func pendingEntries() async throws -> [EntryInfo] {
        try await entries(status: .pendingUnknown)
    }

    /// Every key's current entry, sorted by the key's UTF-8 bytes; optionally only one status.
    public func entries(status: EntryInfo.Status? = nil) async throws -> [EntryInfo] {
        try await store.entries(EntryQuery(status: status))
    }

    /// How many keys the ledger holds (absent ones included).
    public func entryCount() async throws -> Int {
        try await store.entryCount()
    }

    /// Drops what no entry needs any more (the file store writes a snapshot of the live
    /// state and removes the segments it covers). Entries that block nothing any more at
    /// the ledger's clock's now — released, resolved absent or forgotten keys, done keys
    /// whose `.whileInFlight` or `.window` scope has let go of them — are dropped; a key
    /// dropped and run again gets a token never issued before (`Spec/FORMAT.md` §9.5).
    public func compact() async throws {
        try await store.compact(nowMilliseconds: clock())
    }

    func now() -> UInt64 { clock() }
}

/// One running effect in this process; duplicates wait on it.
final class InFlightCall: Sendable {
    let fingerprint: [UInt8]
    private let state = Mutex<(result: Result<EntryInfo, LedgerErrorOrOther>?, waiters: [CheckedContinuation<Result<EntryInfo, LedgerErrorOrOther>, Never>])>((nil, []))

    init(fingerprint: [UInt8]) { self.fingerprint = fingerprint }

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

    /// Hands `result` to the waiters; the first result is the call's (later ones are ignored).
    func finish(_ result: Result<EntryInfo, LedgerErrorOrOther>) {
        let waiters = state.withLock { state -> [CheckedContinuation<Result<EntryInfo, LedgerErrorOrOther>, Never>] in
            guard state.result == nil else { return [] }
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
