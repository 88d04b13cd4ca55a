import OnceLedgerFormat
import OnceLedgerLog

/// A store whose records live in memory, for tests: the same claim rules as `FileStore`
/// (both run `LogStore`), nothing survives the process.
public final class InMemoryStore: LedgerStore, Sendable {
    let store: LogStore

    /// An empty store, ledger-scoped with a random id like a new file ledger (or `tokenScope`).
    public convenience init(configuration: LogConfiguration = LogConfiguration(),
                            tokenScope: TokenScope = .ledger(.random())) {
        // Replaying a fresh in-memory log cannot fail.
        try! self.init(log: InMemoryRecordLog(configuration: configuration, tokenScope: tokenScope))
    }

    /// A store replaying `log` — a record list kept across "restarts" (close this store and
    /// open another on the same log), or a wrapper around one that tests audit.
    package init(log: any RecordLog) throws {
        store = try LogStore(log: log, memoAppendRecordsMax: (log as? InMemoryRecordLog)?.configuration.appendRecordsMax ?? 64)
    }

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
    public func close() throws { try store.close() }
}
