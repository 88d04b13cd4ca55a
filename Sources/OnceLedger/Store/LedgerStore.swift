import OnceLedgerFormat

/// Where a `Ledger`'s entries live, at the level of the ledger's decisions — claim a key,
/// complete or release the claim, resolve, forget, look up, list — not of log records.
///
/// A store decides claims itself, atomically: `FileStore` over its in-memory index and the
/// write-ahead log (one process owns the directory), `InMemoryStore` for tests, and a store
/// shared by many processes (a database) in one statement. `Ledger` adds what is cheaper to
/// do in one process than in any store: duplicate callers of a key *in this process* wait on
/// the first caller's outcome instead of asking the store again (`ARCHITECTURE.md` §2).
///
/// Every mutating operation returns only after its change is durable (for `FileStore`: the
/// record is fsync'd), and is fenced by the `Claim` it acts on: a store refuses, with
/// `.wrongState`, a completion or release whose claim is no longer the key's current one.
public protocol LedgerStore: AnyObject, Sendable {
    /// How this store derives effect tokens (`Spec/FORMAT.md` §9.3): a durable property,
    /// the same on every open.
    var tokenScope: TokenScope { get }

    /// Decides whether the caller may run the effect of `request.key` now. When it may, the
    /// intent is durable before this returns (`.claimed`); otherwise nothing is written and
    /// the answer says why (done, pending-unknown, another fingerprint, running elsewhere).
    func claim(_ request: ClaimRequest) async throws -> ClaimResult

    /// The entry `claim(request)` would answer `.done` with, if the store can tell that
    /// cheaply, else nil (then `claim` decides). Claims nothing and writes nothing.
    /// `Ledger` asks it first when no call of the key runs in its process, so the common
    /// duplicate skips the bookkeeping of running calls. A store that cannot answer more
    /// cheaply than `claim` keeps the default, which returns nil.
    func doneEntry(_ request: ClaimRequest) async throws -> EntryInfo?

    /// Records that `claim`'s effect happened, with its receipt: durable before returning;
    /// returns the done entry.
    func complete(_ claim: Claim, receipt: [UInt8], timeMilliseconds: UInt64) async throws -> EntryInfo

    /// Records that `claim`'s effect did not happen: the key is absent again, its attempt
    /// count kept. Durable before returning.
    func release(_ claim: Claim, reason: String, timeMilliseconds: UInt64) async throws

    /// Ends `claim` without recording an outcome: its effect threw, so it may or may not
    /// have happened and the key stays pending-unknown (its intent is durable). Writes
    /// nothing; other owners waiting in `waitForChange` go on. A claim that is no longer
    /// the key's current one is ignored.
    func abandon(_ claim: Claim) async throws

    /// Resolves a pending-unknown entry (done with a receipt, or absent), or corrects a done
    /// entry's receipt — an audited act recorded with who and why. Checked atomically against
    /// `request.expected`: throws `.wrongState` if the key is not in that state (or its
    /// attempt moved on). Returns the entry as it now is.
    @discardableResult
    func resolve(_ request: ResolveRequest) async throws -> EntryInfo

    /// Forgets a done entry so its effect may run again (with a new token) — an audited act.
    /// Throws `.wrongState` unless the key is done and not claimed.
    func forget(_ request: ForgetRequest) async throws

    /// The stored entry of `key`, or nil if the store never saw it.
    func entry(_ key: String) async throws -> EntryInfo?

    /// Entries sorted by the key's UTF-8 bytes, optionally of one status, starting after
    /// `query.afterKey`, at most `query.limit`.
    func entries(_ query: EntryQuery) async throws -> [EntryInfo]

    /// How many keys the store holds (absent ones included).
    func entryCount() async throws -> Int

    /// Drops what no entry needs any more (for `FileStore`: writes a snapshot and removes
    /// the segments it covers). A store with nothing to drop does nothing.
    ///
    /// **Retention** (`ARCHITECTURE.md` §2, `Spec/FORMAT.md` §9.5): an entry that no longer
    /// blocks anything at `nowMilliseconds` (the ledger's clock) may be dropped — absent
    /// (released, resolved absent, forgotten), or done whose intent's scope was
    /// while-in-flight, or window with `completion time + window ≤ now` — unless a claim or
    /// an operator act on its key is in flight, or its generation is `UInt32.max`. Never a
    /// pending-unknown entry, never a done entry of scope forever. A store that drops
    /// entries keeps, durably and in the same atomic step, a **generation floor** ≥ every
    /// dropped entry's generation + 1, which only grows; `claim` of a key without an entry
    /// grants the floor as its generation. So a dropped key never runs again under a
    /// generation — a token — it was given before. A store may drop less (or nothing).
    func compact(nowMilliseconds: UInt64) async throws

    /// Waits until `entry`, which `claim` reported as `.running` in another owner, may have
    /// changed (its claim completed, was released, or expired), then returns; the caller
    /// claims again. Throws `CancellationError` if the task is cancelled.
    func waitForChange(of entry: EntryInfo) async throws

    /// Closes the store: nothing more is written through it.
    func close() throws

    // MARK: The memo (`Ledger.memo`, `ARCHITECTURE.md` §2)
    //
    // A cache beside the entries of `once`: values per (namespace, run, generation, step,
    // name) with the digest of their input; a run generation ends durably; the memo of an
    // ended generation is swept after its retention window. Losing a value costs a
    // recomputation, never correctness.

    /// The generation a memo of `run` reads and writes now: the run's latest, unless it
    /// ended, else a new one (a generation number is never used twice in a store). Throws
    /// for an empty run id or one over its limit.
    func memoGeneration(of run: MemoRun) async throws -> UInt64

    /// The value stored at `key`, or nil. An ended generation's values are returned until
    /// it is swept.
    func memoGet(_ key: MemoKey) async throws -> MemoValue?

    /// The values stored at `keys`, in order (nil where there is none): what `memoGet`
    /// answers for each. The replay journal reads a run's positions so. A default
    /// implementation calls `memoGet` once per key (`LedgerStore+Journal.swift`); a store
    /// may answer in one go.
    func memoGetMany(_ keys: [MemoKey]) async throws -> [MemoValue?]

    /// Stores a value (replacing one of the same key), durable before returning. Throws
    /// `.runEnded` if the key's generation is not its run's latest or has ended, and
    /// `.limitExceeded` (nothing written) for a field over its limit.
    func memoPut(_ request: MemoPutRequest) async throws

    /// Ends `run`'s latest generation with `status` and `timeMilliseconds`, durable before
    /// returning; puts to it are refused from then on. If that generation already ended,
    /// writes nothing and returns it as it ended.
    func finishRun(_ run: MemoRun, status: RunStatus, timeMilliseconds: UInt64) async throws -> RunInfo

    /// Sweeps the memo of every ended generation whose end lies at least its status's
    /// window before `request.nowMilliseconds` (one idempotent sweep record each). Never a
    /// generation that has not ended, never one that ended after `now`, never an entry of
    /// `once`.
    func sweepMemo(_ request: MemoSweepRequest) async throws -> MemoSweepResult

    /// The run generations the memo holds (running, or ended and not swept), sorted by
    /// namespace, run id (their bytes) and generation.
    func runs(_ query: RunQuery) async throws -> [RunInfo]
}

extension LedgerStore {
    public func doneEntry(_ request: ClaimRequest) async throws -> EntryInfo? { nil }
}

/// What `claim` is asked.
public struct ClaimRequest: Sendable, Hashable {
    public var key: IdempotencyKey
    public var scope: DeduplicationScope
    /// What to do when the key is pending-unknown.
    public var whenPending: PendingTakeover
    /// Now, on the ledger's clock: the intent's time, and what `.window` scopes expire against.
    public var timeMilliseconds: UInt64

    public init(key: IdempotencyKey, scope: DeduplicationScope, whenPending: PendingTakeover,
                timeMilliseconds: UInt64) {
        self.key = key
        self.scope = scope
        self.whenPending = whenPending
        self.timeMilliseconds = timeMilliseconds
    }
}

/// How `claim` treats a pending-unknown key.
public enum PendingTakeover: Sendable, Hashable {
    /// Answer `.pendingUnknown` and write nothing (fail closed, or reconcile first).
    case report
    /// Claim it again: attempt + 1, the same generation and so the same token.
    case retry
}

/// A claim the store granted: the key's intent is durable and the caller runs the effect.
public struct Claim: Sendable, Hashable {
    public var key: IdempotencyKey
    public var attempt: UInt32
    public var generation: UInt32
    /// When the intent was written (the ledger's clock).
    public var timeMilliseconds: UInt64
    /// Identifies this claim to its store (a lease, a row version), so a completion from a
    /// claim that is no longer current is refused. Opaque to `Ledger`.
    public var fence: UInt64

    public init(key: IdempotencyKey, attempt: UInt32, generation: UInt32, timeMilliseconds: UInt64, fence: UInt64) {
        self.key = key
        self.attempt = attempt
        self.generation = generation
        self.timeMilliseconds = timeMilliseconds
        self.fence = fence
    }
}

/// `claim`'s answer.
public enum ClaimResult: Sendable {
    /// Run the effect now; the intent is durable.
    case claimed(Claim)
    /// It ran before and its scope still blocks a new run: the stored entry and receipt.
    case done(EntryInfo)
    /// An intent without a completion, and the request said `.report`.
    case pendingUnknown(EntryInfo)
    /// The key is stored (or running) with another params fingerprint.
    case fingerprintMismatch(EntryInfo)
    /// Another owner holds a live claim on the key (another `Ledger` on this store, another
    /// process of a shared store): call `waitForChange(of:)`, then claim again.
    case running(EntryInfo)
}

/// What `resolve` is asked.
public struct ResolveRequest: Sendable, Hashable {
    public enum Outcome: Sendable, Hashable {
        /// It happened, with this receipt (stored as given).
        case done(receipt: [UInt8])
        /// It did not happen: the key becomes absent (same generation, same token next time — unless
        /// a compaction drops the absent entry first: then the generation floor's, `Spec/FORMAT.md` §9.5).
        case absent
    }

    public var key: String
    public var outcome: Outcome
    /// The state the key must be in: `.pendingUnknown` (resolve) or `.done` (correct a receipt).
    public var expected: EntryInfo.Status
    /// The attempt the caller saw; the store refuses if the key's attempt differs. Nil: any.
    public var expectedAttempt: UInt32?
    /// The generation the caller saw; the store refuses if the key's generation differs. Nil:
    /// any. Attempts start again at 1 in a new generation (after a forget, or a drop at
    /// compaction and a new claim), so an answer about the entry a caller read must carry both.
    public var expectedGeneration: UInt32?
    public var actor: String
    public var reason: String
    public var timeMilliseconds: UInt64

    public init(key: String, outcome: Outcome, expected: EntryInfo.Status, expectedAttempt: UInt32? = nil,
                expectedGeneration: UInt32? = nil, actor: String, reason: String, timeMilliseconds: UInt64) {
        self.key = key
        self.outcome = outcome
        self.expected = expected
        self.expectedAttempt = expectedAttempt
        self.expectedGeneration = expectedGeneration
        self.actor = actor
        self.reason = reason
        self.timeMilliseconds = timeMilliseconds
    }
}

/// What `forget` is asked.
public struct ForgetRequest: Sendable, Hashable {
    public var key: String
    public var actor: String
    public var reason: String
    public var timeMilliseconds: UInt64

    public init(key: String, actor: String, reason: String, timeMilliseconds: UInt64) {
        self.key = key
        self.actor = actor
        self.reason = reason
        self.timeMilliseconds = timeMilliseconds
    }
}

/// Which entries `entries(_:)` lists.
public struct EntryQuery: Sendable, Hashable {
    public var status: EntryInfo.Status?
    /// List keys whose UTF-8 bytes sort after this key's (a page's last key); nil: from the first.
    public var afterKey: String?
    public var limit: Int

    public init(status: EntryInfo.Status? = nil, afterKey: String? = nil, limit: Int = .max) {
        self.status = status
        self.afterKey = afterKey
        self.limit = limit
    }
}
