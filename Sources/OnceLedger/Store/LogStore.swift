import OnceLedgerFormat
import OnceLedgerLog
import Synchronization

/// The claim rules, in one place: a `LedgerStore` over the in-memory index (`LedgerState`)
/// and a record-level log (`RecordLog`). `FileStore` runs it on the segmented file log,
/// `InMemoryStore` on an in-memory record list; both therefore decide exactly alike.
///
/// The state is always "the log replayed": a record is applied to it once it is durable,
/// with the very bytes written. Besides the state, the store tracks its *live claims* —
/// intents it granted since it opened whose effect has neither completed nor been
/// released or abandoned, and operator resolves and forgets being written. A claim on a
/// live key answers `.running`; resolve and forget of a live key throw `.wrongState`;
/// `waitForChange` waits (on a continuation) until the key's live claim ends. Intents found
/// when the store opens are pending-unknown, never live: whoever wrote them is gone.
///
/// A claim's fence is its attempt: attempts of a key only grow while its entry exists (a key
/// whose entry retention dropped starts again at attempt 1, at a generation past every one it
/// had, so `settle` checks the generation too), and a claim granted in
/// this open is the only live one of its key, so a completion or release from any other
/// claim (an earlier attempt, a claim of an earlier open) is refused with `.wrongState`.
@_spi(Benchmarks)
public final class LogStore: LedgerStore, Sendable {
    /// A live claim: a granted intent, or an operator's record being written.
    struct Live {
        /// Tells this registration from a later one of the same key.
        var id: UInt64
        var attempt: UInt32
        var generation: UInt32
        var fingerprint: [UInt8]
        var timeMilliseconds: UInt64
        /// An operator resolve or forget: claims wait for it, whatever their fingerprint.
        var isOperator: Bool
        /// A completion or release of it is being written: a second one is refused.
        var settling = false
        var waiters: [UInt64: CheckedContinuation<Void, any Error>] = [:]
    }

    struct Core: ~Copyable {
        var state: LedgerState
        var live: [KeyBytes: Live] = [:]
        var nextID: UInt64 = 0
        var closed = false

        mutating func makeID() -> UInt64 {
            nextID &+= 1
            return nextID
        }
    }

    let log: any RecordLog
    public let tokenScope: TokenScope
    private let core: Mutex<Core>
    /// The memo (`LogStore+Memo.swift`): a table of its own, beside the entries of `once`.
    let memo: Mutex<MemoTable>
    /// How many memo records (sweeps) one append carries: within the log's `appendRecordsMax`.
    let memoAppendRecordsMax: Int

    /// Replays `log` (once) into the index: every key done, pending-unknown or absent, and
    /// the memo (kinds 13–15) into its own table. A second thread applies the log's records
    /// to both, from batches of `loadBatchRecords` records (default
    /// `LoadPipeline.defaultBatchRecords`), while this one reads and decodes the log
    /// (`LoadPipeline`).
    public init(log: any RecordLog, memoAppendRecordsMax: Int = 64, loadBatchRecords: Int? = nil) throws {
        let load = LoadPipeline(batchRecords: loadBatchRecords ?? LoadPipeline.defaultBatchRecords)
        // A log that says where each record is (the file log) lets the state keep receipts
        // and memo values there and read them on demand (`LedgerState`, `MemoTable`);
        // otherwise they stay in memory.
        // A snapshot announces how many items it holds; they come entries first, then the
        // memo's, so the count sizes the table of the first item (`LedgerState`, or
        // `MemoTable` when the snapshot holds only memo items).
        var itemCount: Int?
        do {
            try log.loadLocated(
                itemCount: { count in itemCount = count },
                item: { kind, body, location in
                    if let count = itemCount {
                        // (A journal-positions hint holds many positions, which are no generic entries.)
                        if kind.isMemo { load.withTable { $0.reserve(entries: count) } }
                        else if kind != .journalPositions { load.withState { $0.reserve(entries: count) } }
                        itemCount = nil
                    }
                    // A version 4 snapshot's journal-positions hint (kind 18) is the memo's too.
                    if kind.isMemo || kind == .journalPositions {
                        try load.applyMemoItem(kind: kind, body: body, location: location)
                    } else {
                        try load.replayItem(kind: kind, body: body, location: location)
                    }
                },
                record: { kind, body, location in
                    // Decoded here, applied on the pipeline's thread: the memo's records to
                    // the memo table, the others to the entries, each table in log order.
                    try load.add(kind: kind, body: body, location: location)
                })
        } catch {
            load.finish()
            throw error
        }
        load.finish()
        var loaded = load.takeState()
        var memo = load.takeTable()
        loaded.finishReplay()
        loaded.reader = log.recordReader
        memo.reader = log.recordReader
        let tokenScope = log.tokenScope
        loaded.tokenScope = tokenScope
        self.log = log
        self.tokenScope = tokenScope
        self.core = Mutex(Core(state: loaded))
        self.memo = Mutex(memo)
        self.memoAppendRecordsMax = max(1, memoAppendRecordsMax)
    }

    /// Whether `close()` was called.
    var isClosed: Bool { core.withLock { $0.closed } }

    private static var closedError: LedgerError { LedgerError(.closed, "the ledger is closed") }

    // MARK: Claims

    private enum ClaimDecision {
        case answer(ClaimResult)
        /// Done: the entry, whose receipt is read outside the lock.
        case done(LedgerState.Lookup)
        case write(attempt: UInt32, generation: UInt32, id: UInt64)
    }

    /// Whether a done `entry` may run again under `scope` at `time`.
    static func expired(_ entry: EntryInfo, scope: DeduplicationScope, at time: UInt64) -> Bool {
        switch scope {
        case .forever: false
        case .whileInFlight: true
        case .window(let milliseconds):
            // A window reaching past UInt64.max never expires (no wrap-around).
            entry.timeMilliseconds.addingReportingOverflow(milliseconds).overflow == false
                && time >= entry.timeMilliseconds + milliseconds
        }
    }

    /// `claim`'s `.done` answer, decided by the same rules under the same lock, or nil
    /// for every other answer (nothing is claimed).
    public func doneEntry(_ request: ClaimRequest) async throws -> EntryInfo? {
        let key = request.key
        let found: LedgerState.Lookup? = try core.withLock { core in
            if core.closed { throw Self.closedError }
            guard core.live[key.keyBytes] == nil, let lookup = try core.state.lookup(key.rawValue),
                  lookup.info.status == .done, lookup.info.fingerprint == key.fingerprint,
                  !Self.expired(lookup.info, scope: request.scope, at: request.timeMilliseconds)
            else { return nil }
            return lookup
        }
        return try found?.finish()
    }

    public func claim(_ request: ClaimRequest) async throws -> ClaimResult {
        let key = request.key
        let time = request.timeMilliseconds
        let decision: ClaimDecision = try core.withLock { core in
            if core.closed { throw Self.closedError }
            if let live = core.live[key.keyBytes] {
                let running = liveEntry(key.rawValue, live, core.state)
                if !live.isOperator && live.fingerprint != key.fingerprint {
                    return .answer(.fingerprintMismatch(running))
                }
                return .answer(.running(running))
            }
            // The counters are 32-bit (`Spec/FORMAT.md` §9.1): a claim that would need attempt
            // or generation 2^32 is refused, never wrapped (a wrapped generation would hand out
            // a token again). Only 4 G calls, or a ledger written by hand, get there.
            func exhausted(_ what: String) -> LedgerError {
                LedgerError(.limitExceeded,
                            "key \"\(key.rawValue)\" has used every \(what) a 32-bit counter holds; it cannot be claimed again (nothing was written). Use another key",
                            limit: what, key: key.rawValue)
            }
            func next(_ attempt: UInt32) throws -> UInt32 {
                guard attempt < UInt32.max else { throw exhausted("attempt") }
                return attempt + 1
            }
            func grant(attempt: UInt32, generation: UInt32) -> ClaimDecision {
                let id = core.makeID()
                core.live[key.keyBytes] = Live(id: id, attempt: attempt, generation: generation,
                                               fingerprint: key.fingerprint, timeMilliseconds: time, isOperator: false)
                return .write(attempt: attempt, generation: generation, id: id)
            }
            // One look in the table: the claim decides on the entry's metadata, and a done
            // entry's lookup already says where its receipt is (read outside the lock).
            let stored = try core.state.lookup(key.rawValue)
            guard let lookup = stored, lookup.info.status != .absent else {
                // A key without an entry starts at the generation floor: past every
                // generation of an entry compaction dropped (`Spec/FORMAT.md` §9.5).
                if let stored, stored.info.generation == UInt32.max {
                    // Absent at the last generation: after a release its token may be used
                    // again, but after a forget (which cannot move past it) it must not, and
                    // the entry does not say which.
                    throw exhausted("generation")
                }
                return grant(attempt: try next(stored?.info.attempt ?? 0),
                             generation: stored?.info.generation ?? core.state.generationFloor)
            }
            let entry = lookup.info
            if entry.fingerprint != key.fingerprint {
                return .answer(.fingerprintMismatch(try lookup.finish()))
            }
            switch entry.status {
            case .done:
                if !Self.expired(entry, scope: request.scope, at: time) { return .done(lookup) }
                guard entry.generation < UInt32.max else { throw exhausted("generation") }
                return grant(attempt: try next(entry.attempt), generation: entry.generation + 1)
            case .pendingUnknown:
                switch request.whenPending {
                case .report: return .answer(.pendingUnknown(entry))
                case .retry: return grant(attempt: try next(entry.attempt), generation: entry.generation)
                }
            case .absent:
                preconditionFailure("absent handled above")
            }
        }
        switch decision {
        case .answer(let result):
            return result
        case .done(let lookup):
            return .done(try lookup.finish())
        case .write(let attempt, let generation, let id):
            let windowMilliseconds: UInt64
            let recordScope: RecordBody.Scope
            switch request.scope {
            case .forever: (recordScope, windowMilliseconds) = (.forever, 0)
            case .whileInFlight: (recordScope, windowMilliseconds) = (.whileInFlight, 0)
            case .window(let milliseconds): (recordScope, windowMilliseconds) = (.window, milliseconds)
            }
            do {
                try await commit([.intent(.init(
                    key: key.rawValue, fingerprint: key.fingerprint, attempt: attempt, generation: generation,
                    scope: recordScope, windowMilliseconds: windowMilliseconds, timeMilliseconds: time))])
            } catch {
                endLive(key.keyBytes, id: id)
                throw error
            }
            return .claimed(Claim(key: key, attempt: attempt, generation: generation, timeMilliseconds: time,
                                  fence: UInt64(attempt)))
        }
    }

    /// What `.running` reports for a live key: an operator's target as stored, or the
    /// granted intent (pending-unknown until its outcome is recorded).
    private func liveEntry(_ key: String, _ live: Live, _ state: borrowing LedgerState) -> EntryInfo {
        if live.isOperator, let stored = state.metadata(key) { return stored }
        return EntryInfo(key: key, status: .pendingUnknown, attempt: live.attempt, generation: live.generation,
                         fingerprint: live.fingerprint, timeMilliseconds: live.timeMilliseconds, receipt: [],
                         tokenScope: tokenScope)
    }

    /// Marks `claim` as being settled (completed or released), or throws `.wrongState` if it
    /// is not its key's live claim; returns the registration to end afterwards.
    private func settle(_ claim: Claim, verb: String) throws -> Live {
        try core.withLock { core in
            if core.closed { throw Self.closedError }
            guard var live = core.live[claim.key.keyBytes], !live.isOperator, !live.settling,
                  UInt64(live.attempt) == claim.fence, live.attempt == claim.attempt,
                  live.generation == claim.generation
            else {
                throw LedgerError(
                    .wrongState,
                    "cannot \(verb) the claim on key \"\(claim.key.rawValue)\" (attempt \(claim.attempt)): it is not the key's live claim any more (it was completed, released or abandoned, or the ledger was reopened); nothing was written",
                    key: claim.key.rawValue, entry: core.state.metadata(claim.key.rawValue))
            }
            live.settling = true
            core.live[claim.key.keyBytes] = live
            return live
        }
    }

    public func complete(_ claim: Claim, receipt: [UInt8], timeMilliseconds: UInt64) async throws -> EntryInfo {
        let live = try settle(claim, verb: "complete")
        defer { endLive(claim.key.keyBytes, id: live.id) }
        try await commit([.completion(.init(key: claim.key.rawValue, attempt: claim.attempt,
                                            timeMilliseconds: timeMilliseconds, receipt: receipt))])
        // What the state now holds for the key, built here rather than looked up: while the
        // claim is live nothing else writes the key, so the completion just applied the
        // intent's fingerprint and generation, this attempt, receipt and time.
        return EntryInfo(key: claim.key.rawValue, status: .done, attempt: claim.attempt, generation: claim.generation,
                         fingerprint: live.fingerprint, timeMilliseconds: timeMilliseconds, receipt: receipt,
                         tokenScope: tokenScope)
    }

    public func release(_ claim: Claim, reason: String, timeMilliseconds: UInt64) async throws {
        let live = try settle(claim, verb: "release")
        defer { endLive(claim.key.keyBytes, id: live.id) }
        try await commit([.release(.init(key: claim.key.rawValue, attempt: claim.attempt,
                                          timeMilliseconds: timeMilliseconds, reason: reason))])
    }

    public func abandon(_ claim: Claim) async throws {
        let id: UInt64? = core.withLock { core in
            guard let live = core.live[claim.key.keyBytes], !live.isOperator, !live.settling,
                  UInt64(live.attempt) == claim.fence, live.attempt == claim.attempt
            else { return nil }
            return live.id
        }
        if let id { endLive(claim.key.keyBytes, id: id) }
    }

    /// Ends the live registration `id` of `key` (if it still is) and wakes its waiters.
    private func endLive(_ key: KeyBytes, id: UInt64) {
        let waiters = core.withLock { core -> [CheckedContinuation<Void, any Error>] in
            guard let live = core.live[key], live.id == id else { return [] }
            core.live[key] = nil
            return Array(live.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    public func waitForChange(of entry: EntryInfo) async throws {
        let key = KeyBytes(entry.key)
        let waiterID = core.withLock { $0.makeID() }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Registration { case waiting, changed, cancelled }
                let registration = core.withLock { core -> Registration in
                    // Checked under the lock the cancellation handler takes: a cancellation
                    // either is seen here or finds the waiter registered.
                    if Task.isCancelled { return .cancelled }
                    guard !core.closed, core.live[key] != nil else { return .changed }
                    core.live[key]?.waiters[waiterID] = continuation
                    return .waiting
                }
                switch registration {
                case .waiting: break
                case .changed: continuation.resume()
                case .cancelled: continuation.resume(throwing: CancellationError())
                }
            }
        } onCancel: {
            let waiter = core.withLock { core in core.live[key]?.waiters.removeValue(forKey: waiterID) }
            waiter?.resume(throwing: CancellationError())
        }
    }

    /// Runs `body` on the state under its lock (tests inspect the index through it).
    func withState<T: Sendable>(_ body: (borrowing LedgerState) throws -> T) throws -> T {
        try core.withLock { core throws -> T in try body(core.state) }
    }

    /// Callers suspended in `waitForChange` on `key` (tests use it to order races).
    func waiterCount(_ key: String) -> Int {
        core.withLock { $0.live[KeyBytes(key)]?.waiters.count ?? 0 }
    }

    // MARK: Operator acts

    /// Checks `key` is in `expected` state (and attempt and generation), not live, then
    /// registers an operator's live claim on it so claims wait while its record is written.
    private func beginOperator(_ key: String, expected: EntryInfo.Status, expectedAttempt: UInt32?,
                               expectedGeneration: UInt32? = nil, notInState: String) throws -> (EntryInfo, UInt64) {
        try core.withLock { core in
            if core.closed { throw Self.closedError }
            let keyBytes = KeyBytes(key)
            if core.live[keyBytes] != nil {
                throw LedgerError(.wrongState,
                                  "key \"\(key)\" is running now; nothing was written. Try again once its call has finished",
                                  key: key, entry: core.state.metadata(key))
            }
            guard let entry = core.state.metadata(key), entry.status == expected else {
                throw LedgerError(.wrongState, "key \"\(key)\" \(notInState)", key: key, entry: core.state.metadata(key))
            }
            if let expectedAttempt, expectedAttempt != entry.attempt {
                throw LedgerError(.wrongState,
                                  "key \"\(key)\" is at attempt \(entry.attempt), not \(expectedAttempt): it changed since it was read; nothing was written. Read it again",
                                  key: key, entry: entry)
            }
            if let expectedGeneration, expectedGeneration != entry.generation {
                throw LedgerError(.wrongState,
                                  "key \"\(key)\" is at generation \(entry.generation), not \(expectedGeneration): it was forgotten or dropped and claimed again since it was read; nothing was written. Read it again",
                                  key: key, entry: entry)
            }
            let id = core.makeID()
            core.live[keyBytes] = Live(id: id, attempt: entry.attempt, generation: entry.generation,
                                       fingerprint: entry.fingerprint, timeMilliseconds: entry.timeMilliseconds,
                                       isOperator: true)
            return (entry, id)
        }
    }

    @discardableResult
    public func resolve(_ request: ResolveRequest) async throws -> EntryInfo {
        let notInState = switch request.expected {
        case .pendingUnknown: "is not pending-unknown"
        case .done: "is not done; only a done entry's receipt can be corrected (resolve a pending-unknown one)"
        case .absent: "is not absent"
        }
        guard !request.reason.isEmpty else {
            throw LedgerError(.invalidArgument, "resolving an entry needs a reason; it is recorded in the log",
                              key: request.key)
        }
        let (entry, id) = try beginOperator(request.key, expected: request.expected,
                                            expectedAttempt: request.expectedAttempt,
                                            expectedGeneration: request.expectedGeneration, notInState: notInState)
        defer { endLive(KeyBytes(request.key), id: id) }
        let receipt: [UInt8]
        let outcome: RecordBody.Outcome
        switch request.outcome {
        case .done(let stored):
            if stored.count > FormatLimits.receiptBytesMax {
                throw LedgerError(.limitExceeded,
                                  "the receipt is \(stored.count) bytes; the limit is \(FormatLimits.receiptBytesMax). Store a reference (an id, a URL) instead of the payload",
                                  limit: "receiptBytesMax", key: request.key)
            }
            (receipt, outcome) = (stored, .done)
        case .absent:
            (receipt, outcome) = ([], .absent)
        }
        try await commit([.resolve(.init(key: request.key, outcome: outcome, attempt: entry.attempt,
                                         timeMilliseconds: request.timeMilliseconds, receipt: receipt,
                                         actor: request.actor, reason: request.reason))])
        // Built from the metadata and the receipt just written, not read back from disk: a
        // failed read must not make a durable resolve look as if it had not happened.
        guard var resolved = core.withLock({ $0.state.metadata(request.key) }) else { return entry }
        if resolved.status == .done { resolved.receipt = receipt }
        return resolved
    }

    public func forget(_ request: ForgetRequest) async throws {
        guard !request.reason.isEmpty else {
            throw LedgerError(.invalidArgument, "forgetting an entry needs a reason; it is recorded in the log",
                              key: request.key)
        }
        let (entry, id) = try beginOperator(request.key, expected: .done, expectedAttempt: nil,
                                            notInState: "is not done; only done entries can be forgotten")
        defer { endLive(KeyBytes(request.key), id: id) }
        // A forget moves the key to the next generation (`Spec/FORMAT.md` §9.1); there is none
        // past 2^32 - 1.
        guard entry.generation < UInt32.max else {
            throw LedgerError(.limitExceeded,
                              "key \"\(request.key)\" is at generation \(entry.generation), the last a 32-bit counter holds: forgetting it would need another. Nothing was written",
                              limit: "generation", key: request.key, entry: entry)
        }
        try await commit([.forget(.init(key: request.key, timeMilliseconds: request.timeMilliseconds,
                                        actor: request.actor, reason: request.reason))])
    }

    // MARK: Reads

    /// A receipt that stays on disk is read outside the state's lock; throws
    /// `.corruptRecord` if its bytes were damaged since they were written.
    public func entry(_ key: String) async throws -> EntryInfo? {
        try currentEntry(key)
    }

    public func entries(_ query: EntryQuery) async throws -> [EntryInfo] {
        guard query.limit > 0 else { return [] }
        // Listed without receipts, so a page reads from disk only the receipts it returns. The
        // page's done entries are looked up in the same hold of the lock as the listing: a
        // compaction that drops one (retention) or a record that changes one in between would
        // otherwise leave a listed done entry without its receipt. The receipts are read after.
        let page: [LedgerState.Lookup] = try core.withLock { core in
            let all = core.state.metadataList(status: query.status)
            var start = all.startIndex
            if let afterKey = query.afterKey {
                let after = Array(afterKey.utf8)
                // `all` is sorted by key bytes: skip to the first key after `after`.
                var low = all.startIndex, high = all.endIndex
                while low < high {
                    let middle = (low + high) / 2
                    let bytes = Array(all[middle].key.utf8)
                    if bytes.lexicographicallyPrecedes(after) || bytes == after { low = middle + 1 } else { high = middle }
                }
                start = low
            }
            return try all[start..<min(all.endIndex, start + min(query.limit, all.endIndex - start))].map { listed in
                guard listed.status == .done else { return LedgerState.Lookup(info: listed) }
                return try core.state.lookup(listed.key) ?? LedgerState.Lookup(info: listed)
            }
        }
        afterListingEntries.withLock { $0 }?()
        return try page.map { try $0.finish() }
    }

    /// The entries as they are now, sorted by key bytes, answered synchronously: for tools
    /// that replay a ledger in this process and list it (`onceledger entries`, `verify`).
    package func currentEntries(status: EntryInfo.Status? = nil) throws -> [EntryInfo] {
        try core.withLock { try $0.state.infos(status: status) }
    }

    /// `currentEntries` without receipts: reads nothing from disk, cannot fail.
    package func currentMetadata(status: EntryInfo.Status? = nil) -> [EntryInfo] {
        core.withLock { $0.state.metadataList(status: status) }
    }

    /// Tests: called by `entries(_:)` once it has listed the entries and before it reads their
    /// receipts (a compaction run here drops entries from the state meanwhile).
    package let afterListingEntries = Mutex<(@Sendable () -> Void)?>(nil)

    /// `currentEntries`'s one-key read (the receipt read outside the lock).
    package func currentEntry(_ key: String) throws -> EntryInfo? {
        try core.withLock { try $0.state.lookup(key) }?.finish()
    }

    public func entryCount() async throws -> Int {
        core.withLock { $0.state.count }
    }

    /// The generation a key without an entry starts at (`Spec/FORMAT.md` §9.5): 0 until a
    /// compaction dropped an entry.
    package var generationFloor: UInt32 { core.withLock { $0.state.generationFloor } }

    // MARK: Log

    /// Appends records durably and, once durable, applies the very bytes written to the
    /// state (the path a replay takes, so the state is always "the log replayed").
    private func commit(_ bodies: [RecordBody]) async throws {
        for body in bodies { try body.validate() }
        if core.withLock({ $0.closed }) { throw Self.closedError }
        let records = bodies.map(LogRecord.init)
        _ = try await log.appendLocated(records, onDurable: { [self] _, locations in
            self.core.withLock { core in
                for (index, record) in records.enumerated() {
                    do {
                        let location = locations.map { $0[$0.startIndex + index] }
                        try core.state.apply(kind: record.kind, body: record.body, location: location)
                    } catch {
                        // Validated bodies encoded by RecordBody always decode; anything else
                        // is a bug in this module, not bad input.
                        preconditionFailure("a validated \(record.kind) body did not apply: \(error)")
                    }
                }
            }
        })
    }

    /// Writes a snapshot of the live state and lets the log drop what it covers; entries
    /// that no longer block anything at `nowMilliseconds` are left out of it, the
    /// generation floor raised past them (`Spec/FORMAT.md` §9.5).
    public func compact(nowMilliseconds: UInt64) async throws {
        try await compact(nowMilliseconds: nowMilliseconds, beforeReadingReceipt: nil)
    }

    /// `compact`, calling `beforeReadingReceipt` (a test's gate) before each receipt or
    /// memo value that stays on disk is read into the snapshot.
    ///
    /// Under the locks only metadata is taken: the entries retention lets go of are dropped
    /// (with the floor past them, which the snapshot records), the state's tables copied
    /// (`LedgerState.frozenCopy`) and the memo's items taken (`MemoTable.snapshotSource`).
    /// The entries' items are made from the copy (`LedgerState.compactionSource`: each
    /// entry's body without its receipt, and where the receipt is, the file's handle
    /// pinned), and the receipts and values read one at a time while the snapshot is
    /// streamed to disk through a fixed-size buffer — on the compaction's own thread, while
    /// later appends commit and are applied (`LogConfiguration.compactsInBackground`). Once
    /// it is durable, the entries that still stand for what was written point at the
    /// snapshot's values (`LedgerState.relocate`, `MemoTable.relocate`). `nowMilliseconds`
    /// nil: every entry is kept.
    /// `relocationChunk`: items moved per hold of a lock (tests make it small, so later
    /// records are applied between many ranges).
    package func compact(nowMilliseconds: UInt64?, relocationChunk chunk: Int = LogStore.relocationChunk,
                         beforeReadingReceipt: (@Sendable (Int) -> Void)?) async throws {
        if core.withLock({ $0.closed }) { throw Self.closedError }
        let tracking = Mutex<UInt64?>(nil)
        let order = Mutex<[Int]?>(nil)
        let memoOrigin = Mutex<MemoTable.SnapshotOrigin?>(nil)
        do {
            try await log.compactStreaming({ [self] _ in
                // Under the locks: the retention drop, a copy of each table (a `memcpy` per
                // flat table, the rest shared copy-on-write), and the start of the record of
                // what later records change. The items are made from the copies on the
                // snapshot's thread: the memo's first, then the entries'.
                // A done journal effect's entry goes once the memo no longer holds its run
                // generation (swept). Read under the memo's lock alone, before the entries' (the
                // memo's writers take the entries' lock inside the memo's: never the reverse).
                // An effect's key exists only once its generation was written (FORMAT §10.3),
                // and a generation handed out but not written yet is held (`generationNumbers`):
                // so a generation that is at most the highest read and not held was swept
                // before this read, whatever the entries hold by the time their lock is taken.
                let held = nowMilliseconds == nil ? nil : self.memo.withLock {
                    (numbers: $0.generationNumbers(), highest: $0.highestGeneration)
                }
                let (frozen, trackingID) = self.core.withLock { core in
                    // Keys with a claim or an operator act in flight are never dropped.
                    let plan = core.state.retiredPlan(nowMilliseconds.map {
                        LedgerState.Retention(nowMilliseconds: $0, live: Set(core.live.keys), journalGenerationSwept: held.map { held in
                            { generation in generation <= held.highest && !held.numbers.contains(generation) }
                        })
                    })
                    core.state.dropRetired(plan)
                    return (Frozen(core.state.frozenCopy()), core.state.beginTracking())
                }
                tracking.withLock { $0 = trackingID }
                let frozenMemo = Frozen(self.memo.withLock { $0.frozenCopy() })
                let (entryBytes, entryItems) = frozen.read { $0.snapshotByteBound() } ?? (0, 0)
                let memoBytes = frozenMemo.read { $0.snapshotByteBound() } ?? 0
                let later = LogWriter.LaterItems(byteBound: entryBytes + memoBytes, make: {
                    // The memo's items, with room kept for the entries', appended in place.
                    var items: [SnapshotFile.StreamItem] = []
                    let (origin, memoValue) = try frozenMemo.take { table in
                        items.reserveCapacity(table.snapshotItemCountBound + entryItems)
                        return try table.snapshotSource(into: &items)
                    }
                    memoOrigin.withLock { $0 = origin }
                    let memoItems = items.count
                    let (source, written) = try frozen.take { try $0.compactionSource() }
                    order.withLock { $0 = written }
                    items.append(contentsOf: source.items)
                    let entryReceipt = source.receipt
                    let made = items
                    return LogWriter.CompactionSource(items: made, receipt: { index in
                        beforeReadingReceipt?(index)
                        if index < memoItems { return try memoValue(index, made[index]) }
                        return try entryReceipt(index - memoItems)
                    })
                })
                return LogWriter.CompactionSource(items: [], receipt: { index in
                    throw LedgerError(.invalidArgument, "snapshot item \(index) is not the memo's or an entry's")
                }, later: later)
            }, onCompacted: { [self] locations in
                // On the compaction's thread while later records are applied
                // (`LogEngine.compactStreaming`): a lock taken per range of items, so
                // moving millions of values never holds up a batch's `onDurable` for long.
                let origin = memoOrigin.withLock { $0.take() }
                let memoItems = min(origin?.keys.count ?? 0, locations.count)
                if let origin {
                    for start in stride(from: 0, to: memoItems, by: chunk) {
                        self.memo.withLock { $0.relocate(origin, locations: locations[..<memoItems], range: start..<start + chunk) }
                    }
                }
                let written = order.withLock { $0.take() } ?? []
                let trackingID = tracking.withLock { $0 }
                let entryLocations = locations[memoItems...]
                for start in stride(from: 0, to: written.count, by: chunk) {
                    self.core.withLock { core in
                        core.state.relocate(order: written, locations: entryLocations, range: start..<start + chunk,
                                            tracking: trackingID)
                    }
                }
                self.core.withLock { core in
                    core.state.compactBlobsIfWasteful()
                    if let trackingID { core.state.endTracking(trackingID) }
                }
            })
        } catch {
            if let trackingID = tracking.withLock({ $0 }) {
                core.withLock { $0.state.endTracking(trackingID) }
            }
            throw error
        }
    }

    /// Items a compaction moves per hold of a lock (`compact`'s `onCompacted`): well under a
    /// millisecond of work.
    static let relocationChunk = 16_384

    /// A copy of a table a compaction's items are made from (`LedgerState.frozenCopy`,
    /// `MemoTable.frozenCopy`), handed from the I/O thread to the snapshot's thread, which
    /// makes the items from it and frees it (`take`).
    final class Frozen<Table: ~Copyable>: @unchecked Sendable {
        private let lock = Mutex(())
        private var table: Table?

        init(_ table: consuming Table) { self.table = Optional(consume table) }

        /// `body` of the copy (nil once taken).
        func read<Result>(_ body: (borrowing Table) -> Result) -> Result? {
            lock.withLock { _ in
                switch table {
                case .some(let frozen): body(frozen)
                case .none: nil
                }
            }
        }

        /// `body` of the copy, which is freed afterwards; throws if it was taken already.
        func take<Result>(_ body: (consuming Table) throws -> Result) throws -> Result {
            try lock.withLock { _ in
                guard let frozen = table.take() else {
                    throw LedgerError(.invalidArgument, "a compaction's copy of a table was taken twice")
                }
                return try body(frozen)
            }
        }
    }

    /// Whether the state's lock is free right now (for tests: a compaction reads its
    /// receipts without holding it).
    package var stateLockIsFree: Bool { core.withLockIfAvailable { _ in true } ?? false }

    /// Whether the memo's lock is free right now (for tests: a compaction reads memo values
    /// without holding it).
    package var memoLockIsFree: Bool { memo.withLockIfAvailable { _ in true } ?? false }

    /// Closes the log; nothing more is written through this store (even if its log is
    /// opened again by another store, as an in-memory one is to model a restart). Callers
    /// waiting for a change wake (and their next claim throws `.closed`).
    public func close() throws {
        let waiters = core.withLock { core -> [CheckedContinuation<Void, any Error>] in
            core.closed = true
            var waiters: [CheckedContinuation<Void, any Error>] = []
            for key in core.live.keys {
                waiters += Array(core.live[key]?.waiters.values ?? [:].values)
                core.live[key]?.waiters = [:]
            }
            return waiters
        }
        for waiter in waiters { waiter.resume() }
        try log.close()
    }
}
