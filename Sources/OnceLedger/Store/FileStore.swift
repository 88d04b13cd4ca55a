import OnceLedgerFormat
import OnceLedgerLog
import Synchronization

/// The default store: the segmented write-ahead log in a directory, with the in-memory
/// index it replays on open. One process owns the directory (the open takes its lock), so
/// this store decides claims in process (`LogStore`); every record it writes is fsync'd
/// before the call that wrote it returns.
public final class FileStore: LedgerStore, Sendable {
    public let directory: String
    let recordLog: FileRecordLog
    let store: LogStore

    /// Opens (or creates) the ledger in `directory` and replays it: takes the lock, deletes
    /// leftover temporary files, cuts a torn tail (`Spec/RECOVERY.md`).
    public init(directory: String, storage: any Storage = PosixStorage(),
                configuration: LogConfiguration = LogConfiguration(), createIfMissing: Bool = true,
                clock: @escaping @Sendable () -> UInt64 = LogEngine.systemMilliseconds) throws {
        self.directory = directory
        recordLog = FileRecordLog(directory: directory, storage: storage, configuration: configuration,
                                  createIfMissing: createIfMissing, clock: clock)
        store = try LogStore(log: recordLog, memoAppendRecordsMax: configuration.appendRecordsMax)
        let retentionClock = RetentionClock(clock)
        self.retentionClock = retentionClock
        if let logBytes = configuration.compactAfterLogBytes, let engine = recordLog.engine {
            let store = store
            engine.setCompactionTrigger(logBytes: logBytes) { [weak self] in
                // On the log's I/O thread: only start the compaction elsewhere. Its failure is
                // kept for `automaticCompactionError` (a poisoned store's is also thrown to
                // every later caller; a closed store's is not kept).
                let task = Task.detached { [weak self] in
                    var failure: LedgerError?
                    do {
                        // The ledger's clock (`useClock`), as `Ledger.compact()` uses.
                        try await store.compact(nowMilliseconds: retentionClock.now())
                    } catch let error as LedgerError {
                        if error.code == .closed { return }
                        failure = error
                    } catch {
                        failure = LedgerError(.io, "automatic compaction failed: \(error)")
                    }
                    self?.automaticCompaction.withLock { $0.error = failure }
                }
                self?.automaticCompaction.withLock { state in
                    state.count += 1
                    state.last = task
                }
            }
        }
    }

    /// The clock automatic compactions judge retention on (`Spec/FORMAT.md` §9.5): the one
    /// given to `init`, until a `Ledger` built on this store makes it its own (`useClock`).
    private let retentionClock: RetentionClock

    /// A clock that can be replaced while automatic compactions read it.
    final class RetentionClock: Sendable {
        private let clock: Mutex<@Sendable () -> UInt64>
        init(_ clock: @escaping @Sendable () -> UInt64) { self.clock = Mutex(clock) }
        func now() -> UInt64 { clock.withLock { $0 }() }
        func set(_ replacement: @escaping @Sendable () -> UInt64) { clock.withLock { $0 = replacement } }
    }

    /// Makes `clock` the one automatic compactions judge `.window` entries on: `Ledger.init`
    /// calls it with the ledger's clock, so a ledger built as `Ledger(store: FileStore(…),
    /// clock: …)` lets go of a `.window` entry on the clock its claims expire against, as
    /// `Ledger.compact()` does — never earlier because the store was opened with another clock
    /// (the wall clock by default).
    func useClock(_ clock: @escaping @Sendable () -> UInt64) { retentionClock.set(clock) }

    /// Automatic compactions (`LogConfiguration.compactAfterLogBytes`) started since open,
    /// the last one's task, and the last finished one's error.
    private let automaticCompaction = Mutex<(count: Int, last: Task<Void, Never>?, error: LedgerError?)>((0, nil, nil))

    /// Why the last automatic compaction that finished failed, or nil if it succeeded (or
    /// none has finished). A compaction that cannot read a value it must carry (damaged on
    /// disk since it was written: `.corruptRecord`) refuses and writes nothing; the next
    /// is tried after as many bytes again. (The entries retention lets go of are already
    /// gone from memory then, and come back at the next open, until a compaction succeeds:
    /// `Spec/FORMAT.md` §8, step 2.) For a health check, with `LedgerVerifier`.
    public var automaticCompactionError: LedgerError? { automaticCompaction.withLock { $0.error } }

    /// How many automatic compactions (`LogConfiguration.compactAfterLogBytes`) this store
    /// has started since it opened.
    public var automaticCompactions: Int { automaticCompaction.withLock { $0.count } }

    /// Waits for the last automatic compaction started, if any, to finish (tests, tools).
    public func waitForAutomaticCompaction() async {
        await automaticCompaction.withLock { $0.last }?.value
    }

    /// The open log engine (nil once closed): its recovery report, sequence numbers and
    /// commit statistics, for tools and tests.
    public var engine: LogEngine? { recordLog.engine }

    /// The entries as they are now, sorted by key bytes, answered synchronously: for tools
    /// and tests in this package that open a ledger directory and read it in code that is
    /// not async.
    package func currentEntries(status: EntryInfo.Status? = nil) throws -> [EntryInfo] {
        try store.currentEntries(status: status)
    }

    /// `currentEntries`'s one-key read.
    package func currentEntry(_ key: String) throws -> EntryInfo? { try store.currentEntry(key) }

    public var tokenScope: TokenScope { store.tokenScope }
    public func claim(_ request: ClaimRequest) async throws -> ClaimResult { try await store.claim(request) }
    public func doneEntry(_ request: ClaimRequest) async throws -> EntryInfo? { try await store.doneEntry(request) }
    public func complete(_ claim: Claim, receipt: [UInt8], timeMilliseconds: UInt64) async throws -> EntryInfo {
        try await store.complete(claim, receipt: receipt, timeMilliseconds: timeMilliseconds)
    }
    public func release(_ claim: Claim, reason: String, timeMilliseconds: UInt64) async throws {
        try await store.release(claim, reason: reason, timeMilliseconds: timeMilliseconds)
    }
    public func abandon(_ claim: Claim) async throws { try await store.abandon(claim) }
    @discardableResult
    public func resolve(_ request: ResolveRequest) async throws -> EntryInfo { try await store.resolve(request) }
    public func forget(_ request: ForgetRequest) async throws { try await store.forget(request) }
    public func entry(_ key: String) async throws -> EntryInfo? { try await store.entry(key) }
    public func entries(_ query: EntryQuery) async throws -> [EntryInfo] { try await store.entries(query) }
    public func entryCount() async throws -> Int { try await store.entryCount() }
    public func compact(nowMilliseconds: UInt64) async throws { try await store.compact(nowMilliseconds: nowMilliseconds) }
    public func waitForChange(of entry: EntryInfo) async throws { try await store.waitForChange(of: entry) }

    public func memoGeneration(of run: MemoRun) async throws -> UInt64 { try await store.memoGeneration(of: run) }
    public func memoGet(_ key: MemoKey) async throws -> MemoValue? { try await store.memoGet(key) }
    public func memoGetMany(_ keys: [MemoKey]) async throws -> [MemoValue?] { try await store.memoGetMany(keys) }
    public func memoPut(_ request: MemoPutRequest) async throws { try await store.memoPut(request) }
    public func finishRun(_ run: MemoRun, status: RunStatus, timeMilliseconds: UInt64) async throws -> RunInfo {
        try await store.finishRun(run, status: status, timeMilliseconds: timeMilliseconds)
    }
    public func sweepMemo(_ request: MemoSweepRequest) async throws -> MemoSweepResult {
        try await store.sweepMemo(request)
    }
    public func runs(_ query: RunQuery) async throws -> [RunInfo] { try await store.runs(query) }
    /// Closes the log (it writes a checkpoint and releases the lock).
    public func close() throws { try store.close() }
}
