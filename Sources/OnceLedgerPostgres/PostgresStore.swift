import Logging
import OnceLedger
import OnceLedgerFormat
import PostgresNIO
import Synchronization

/// A `LedgerStore` on PostgreSQL, shared by any number of processes on any number of
/// machines: claims are decided by the database in one statement, the owner of a claim
/// holds a lease (on the database's clock) that this store renews while the effect runs,
/// and a completion is accepted only from the claim's current lease (fencing).
/// `Spec/POSTGRES.md` is the full contract: schema, statements, leases, group commit, errors.
///
/// ```swift
/// let store = try await PostgresStore.connect(url: "postgres://app@db.internal/orders")
/// let ledger = Ledger(store: store)
/// ```
///
/// What differs from a file ledger: a pending entry whose lease is live answers `.running`
/// to every other claimer (they wait in `waitForChange`), and becomes pending-unknown to
/// all when its lease expires (its owner crashed or lost the database); `compact()` deletes
/// the entries that block nothing (as a file ledger drops them) and raises the generation
/// floor past them, in one transaction (`Spec/POSTGRES.md` §3.6).
public final class PostgresStore: LedgerStore, Sendable {
    /// How a store connects and behaves.
    public struct Configuration: Sendable {
        public var url: PostgresURL
        /// The schema holding the store's tables and functions: a plain identifier
        /// (lowercase letters, digits, `_`; at most 40 bytes). Stores on different schemas
        /// of one database are different ledgers.
        public var schema: String
        /// How long a claim's lease lasts without renewal; the store renews its live
        /// claims every third of it. A crashed owner's keys turn pending-unknown after it.
        public var lease: Duration
        /// Connections the store opens at most (each batch of group commit uses one).
        public var connections: Int
        /// Requests sent in one statement at most.
        public var batchMax: Int
        /// Batches of claims, and separately of completions, on the wire at once (at most
        /// `connections − 1`). With one, the default, the callers that arrive while a batch
        /// is on the wire wait for it and then go together in the next one: the fewest
        /// statements and commits per call. More send sooner, in smaller batches, each with
        /// its own statement and commit; on one server, 8 to 64 callers completed 1.1–2.3×
        /// more calls per second with one than with seven (`Spec/POSTGRES.md` §4). Raise it
        /// for a server whose round trip is much longer than a commit. A batch unanswered for
        /// a second does not hold the callers queued behind it: they go on another connection.
        public var batchesInFlight = 1
        /// How long a claim or a completion waits for the server's answer before it fails
        /// with `connection-lost` (its outcome unknown, as after a crash) instead of waiting
        /// on: a hung connection never hangs a caller.
        public var answerDeadline: Duration = .seconds(60)
        /// Who holds this store's leases: stored with each lease (`entries.lease_owner`) for
        /// operators asking the database who runs a key.
        public var owner: String
        /// Whether claim and settle batches use statements prepared once per connection
        /// (about a fifth less server work per call). Their connections then start with
        /// `search_path` set to `schema`. Turn it off behind a pooler that keeps neither
        /// across transactions — PgBouncer in transaction mode before 1.21 (or without
        /// `max_prepared_statements`), or one that refuses the `search_path` startup
        /// parameter: the batches are then sent as text naming the schema.
        public var preparedStatements = true

        /// The flushers of each group commit: `batchesInFlight`, at least one, and fewer than
        /// the connections where it can (one is left for reads, waits and the memo).
        var lanes: Int { max(1, min(batchesInFlight, connections - 1)) }

        /// "host pid N": who holds a lease, for operators reading the entries table.
        static func defaultOwner() -> String {
            var name = [CChar](repeating: 0, count: 256)
            let host = gethostname(&name, name.count) == 0
                ? String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "unknown-host"
            return "\(host) pid \(getpid())"
        }

        public init(url: PostgresURL, schema: String = "onceledger", lease: Duration = .seconds(30),
                    connections: Int = 4, batchMax: Int = 256, owner: String? = nil) {
            self.url = url
            self.schema = schema
            self.lease = lease
            self.connections = connections
            self.batchMax = batchMax
            self.owner = owner ?? Self.defaultOwner()
        }
    }

    public let tokenScope: TokenScope
    public let configuration: Configuration
    let pool: ConnectionPool
    let logger: Logger
    let schema: String
    let leaseMilliseconds: Int64
    private let claims: GroupCommit<ClaimCall, ClaimRow>
    let settles: GroupCommit<SettleCall, SettleRow>
    let memoPuts: GroupCommit<MemoPutCall, Bool>
    private let live = Mutex(LiveClaims())
    private let waiters: Waiters
    /// Notifications the listener received (`notificationCount`).
    private let notificationsReceived = Atomic<Int>(0)
    private let tasks = Mutex<[Task<Void, Never>]>([])
    /// The lease renewer's thread (`start()`); shut down by `close()`.
    private let renewalExecutor = SpinningExecutor(name: "onceledger-postgres-renewal", spinMicroseconds: 0)
    /// The listener's connection while it listens (`close()` closes it to end the listener).
    private let listener = Mutex<PostgresConnection?>(nil)

    struct LiveClaims {
        /// Claims granted by this store and not yet settled: fence → key bytes.
        var fences: [Int64: [UInt8]] = [:]
        var renewalPaused = false
        var closed = false
    }

    // MARK: Opening

    /// Connects to the server `url` names, creates or migrates the schema, and returns the store.
    /// Throws `.invalidArgument` for a bad URL or schema name, `.databaseUnreachable`,
    /// `.databaseAuthentication`, `.databasePermission`, or `.unsupportedVersion` for a schema
    /// written by a newer OnceLedger.
    public static func connect(url: String, schema: String = "onceledger", lease: Duration = .seconds(30),
                               connections: Int = 4) async throws -> PostgresStore {
        try await connect(configuration: Configuration(url: try PostgresURL(url), schema: schema, lease: lease,
                                                       connections: connections))
    }

    public static func connect(configuration: Configuration) async throws -> PostgresStore {
        guard Self.isPlainIdentifier(configuration.schema) else {
            throw LedgerError(.invalidArgument,
                              "the schema name \"\(configuration.schema)\" is not a plain identifier: use lowercase letters, digits (not first) and _, at most 40 bytes")
        }
        // PostgreSQL's own schemas: it refuses to create `pg_…` (SQLSTATE 42939), and the
        // store's tables have no place among the system views of `information_schema`.
        if configuration.schema.hasPrefix("pg_") || configuration.schema == "information_schema" {
            throw LedgerError(.invalidArgument,
                              "the schema name \"\(configuration.schema)\" is reserved by PostgreSQL (pg_… and information_schema are system schemas): choose another")
        }
        let leaseMilliseconds = Int64(clamping: MemoRetention(configuration.lease).windowMilliseconds(for: .succeeded) ?? 0)
        guard leaseMilliseconds >= 10 else {
            throw LedgerError(.invalidArgument, "the lease is \(configuration.lease); it must be at least 10 ms")
        }
        // The database adds the lease to its clock: past its timestamps' range (year 294276)
        // every claim would fail with a database error. A century is far past any use.
        guard leaseMilliseconds <= Self.leaseMillisecondsMax else {
            throw LedgerError(.invalidArgument,
                              "the lease is \(configuration.lease); it must be at most 100 years (a crashed owner's keys stay blocked for a whole lease)")
        }
        var logger = Logger(label: "onceledger.postgres")
        logger.logLevel = .critical
        let pool = ConnectionPool(url: configuration.url, maximum: configuration.connections, logger: logger,
                                  schema: configuration.preparedStatements ? configuration.schema : nil)
        let ledgerID: LedgerID
        do {
            ledgerID = try await PostgresMigration.migrate(pool: pool, schema: configuration.schema)
        } catch {
            pool.close()
            throw error
        }
        let store = PostgresStore(configuration: configuration, pool: pool, logger: logger, ledgerID: ledgerID,
                                  leaseMilliseconds: leaseMilliseconds)
        await store.start()
        return store
    }

    private init(configuration: Configuration, pool: ConnectionPool, logger: Logger, ledgerID: LedgerID,
                 leaseMilliseconds: Int64) {
        self.configuration = configuration
        self.pool = pool
        self.logger = logger
        self.schema = configuration.schema
        self.tokenScope = .ledger(ledgerID)
        self.leaseMilliseconds = leaseMilliseconds
        self.waiters = Waiters()
        let schema = configuration.schema
        let owner = Self.storable(configuration.owner)
        let prepared = configuration.preparedStatements
        // Every group commit of the store: the same lanes, stall rule and answer deadline,
        // each batch on a pooled connection.
        func group<Call: Sendable, Row: Sendable>(
            _ what: String, weightMax: Int = .max, weight: (@Sendable (Call) -> Int)? = nil,
            _ run: @escaping @Sendable ([Call], PostgresConnection) async throws -> [Row]
        ) -> GroupCommit<Call, Row> {
            GroupCommit(lanes: configuration.lanes, maxLanes: max(configuration.lanes, configuration.connections - 1),
                        batchMax: configuration.batchMax, weightMax: weightMax, weight: weight,
                        answerDeadline: configuration.answerDeadline,
                        refusedWhole: PostgresErrors.refusedByServer) { calls in
                try await pool.withConnection(.writing(what)) { connection in
                    // Past the answer deadline the statement is abandoned: its connection is
                    // closed, so it fails and the pool opens another in its place.
                    guard let abort = BatchAbort.current else { return try await run(calls, connection) }
                    // An abandoned batch's connection is closed before it goes back to the pool,
                    // which then drops it (its answer, if any, is nobody's now).
                    let rows: [Row]
                    do {
                        rows = try await abort.whileRunning(onAbort: { ConnectionPool.closeSoon(connection) }) {
                            try await run(calls, connection)
                        }
                    } catch {
                        if abort.fired { try? await connection.close() }
                        throw error
                    }
                    if abort.fired { try? await connection.close() }
                    return rows
                }
            }
        }
        claims = group("a claim") { calls, connection in
            try await Self.runClaims(calls, connection: connection, schema: schema, prepared: prepared, owner: owner,
                                     leaseMilliseconds: leaseMilliseconds, logger: logger)
        }
        settles = group("a completion") { calls, connection in
            try await Self.runSettles(calls, connection: connection, schema: schema, prepared: prepared, logger: logger)
        }
        // A batch of memo puts carries their values: at most `memoBatchBytes` of them (a
        // larger value goes alone).
        memoPuts = group("a memo put", weightMax: Self.memoBatchBytes, weight: { $0.value.readableBytes }) { calls, connection in
            try await Self.runMemoPuts(calls, connection: connection, schema: schema, prepared: prepared, logger: logger)
        }
    }

    /// The longest lease: 100 years (36,525 days).
    static let leaseMillisecondsMax: Int64 = 36_525 * 86_400_000

    static func isPlainIdentifier(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard let first = bytes.first, bytes.count <= 40, (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first) || first == UInt8(ascii: "_")
        else { return false }
        return bytes.allSatisfy {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
                || $0 == UInt8(ascii: "_")
        }
    }

    /// Starts the listener (and waits until it listens, or failed once) and the lease renewer.
    private func start() async {
        let listening = Gate()
        let listener = Task { [self] in await self.listen(ready: listening) }
        // On a thread of its own: renewal must not wait for a busy cooperative pool (an app's
        // blocking work there, or a test process's suites on two cores, delayed renewals by
        // seconds and let a live owner's lease lapse).
        let renewer = Task(executorPreference: renewalExecutor) { [self] in await self.renewLeases() }
        tasks.withLock { $0 = [listener, renewer] }
        await listening.wait()
    }

    // MARK: Claims

    struct ClaimCall: Sendable {
        var key: [UInt8]
        var fingerprint: [UInt8]
        var scope: Int16
        var window: Int64
        var retry: Bool
        var time: Int64
    }

    struct ClaimRow: Sendable {
        var outcome: Int16
        var row: EntryRow
        var fence: Int64?
    }

    /// An entry as a function returns it (key given by the caller).
    struct EntryRow: Sendable {
        var status: Int16
        var attempt: Int64
        var generation: Int64
        var fingerprint: [UInt8]
        var time: Int64
        var receipt: [UInt8]
    }

    static func runClaims(_ calls: [ClaimCall], connection: PostgresConnection, schema: String, prepared: Bool, owner: String,
                          leaseMilliseconds: Int64, logger: Logger) async throws -> [ClaimRow] {
        let keys = calls.map { ByteBuffer(bytes: $0.key) }
        let fingerprints = calls.map { ByteBuffer(bytes: $0.fingerprint) }
        let scopes = calls.map(\.scope)
        let windows = calls.map(\.window)
        let retries = calls.map(\.retry)
        let times = calls.map(\.time)
        // One round trip: the procedure commits before it answers (`Spec/POSTGRES.md` §3);
        // a statement prepared once per connection.
        let statement = ClaimCommitStatement(
            keys: keys, fingerprints: fingerprints, scopes: scopes, windows: windows, retries: retries, times: times,
            owner: owner, leaseMilliseconds: leaseMilliseconds)
        let rows = try await statement.rows(on: connection, prepared: prepared, schema: schema, logger: logger)
        var answers = [ClaimRow?](repeating: nil, count: calls.count)
        for (indices, outcomes, statuses, attempts, generations, fingerprints, times, receipts, fences) in rows {
            let count = indices.count
            guard [outcomes.count, statuses.count, attempts.count, generations.count, fingerprints.count, times.count,
                   receipts.count, fences.count].allSatisfy({ $0 == count }) else {
                throw LedgerError(.databaseError, "the claim procedure answered columns of different lengths; the outcome of the batch is unknown")
            }
            for item in 0..<count {
                let position = Int(indices[item]) - 1
                guard answers.indices.contains(position) else { continue }
                answers[position] = ClaimRow(
                    outcome: outcomes[item],
                    row: EntryRow(status: statuses[item], attempt: attempts[item], generation: generations[item],
                                  fingerprint: Array(buffer: fingerprints[item]), time: times[item],
                                  receipt: Array(buffer: receipts[item])),
                    fence: fences[item] == 0 ? nil : fences[item])
            }
        }
        return try answers.map {
            guard let answer = $0 else {
                throw LedgerError(.databaseError, "the claim procedure returned no answer for a request; its outcome is unknown")
            }
            return answer
        }
    }

    public func claim(_ request: ClaimRequest) async throws -> ClaimResult {
        try checkOpen()
        let key = request.key
        try key.validate()
        let time = try Self.int64(request.timeMilliseconds, "the claim's time")
        let (scope, window): (Int16, Int64) = switch request.scope {
        case .forever: (0, 0)
        case .whileInFlight: (1, 0)
        case .window(let milliseconds): (2, Int64(clamping: milliseconds))
        }
        let answer = try await claims.submit(ClaimCall(
            key: Array(key.rawValue.utf8), fingerprint: key.fingerprint, scope: scope, window: window,
            retry: request.whenPending == .retry, time: time))
        // Refusals of version 4's claim function (`Spec/POSTGRES.md` §3.1), nothing written.
        switch answer.outcome {
        case 5:
            throw unreadableRow(key.rawValue, answer.row, answer.row.status == -1
                                ? "the generation floor in \(schema).meta is \(answer.row.generation), which OnceLedger never writes; the key has no entry, none was made"
                                : nil)
        case 6, 7:
            let counter = answer.outcome == 6 ? "attempt" : "generation"
            let current = answer.row.status == -1 ? nil : try? entryInfo(key.rawValue, answer.row)
            let why = answer.row.status == -1
                ? "the generation floor in \(schema).meta is \(answer.row.generation), past the last generation a 32-bit counter holds: a key without an entry cannot start at it"
                : "key \"\(key.rawValue)\" has used every \(counter) a 32-bit counter holds"
            throw LedgerError(.limitExceeded, "\(why); it cannot be claimed again (nothing was written). Use another key",
                              limit: counter, key: key.rawValue, entry: current)
        default: break
        }
        let entry = try entryInfo(key.rawValue, answer.row)
        switch answer.outcome {
        case 0:
            guard let fence = answer.fence else {
                throw LedgerError(.databaseError, "the claim function granted a claim without a lease; its outcome is unknown",
                                  key: key.rawValue)
            }
            let registered = live.withLock { live -> Bool in
                if live.closed { return false }
                live.fences[fence] = Array(key.rawValue.utf8)
                return true
            }
            if !registered { throw Self.closedError }
            return .claimed(Claim(key: key, attempt: entry.attempt, generation: entry.generation,
                                  timeMilliseconds: entry.timeMilliseconds, fence: UInt64(bitPattern: fence)))
        case 1: return .done(entry)
        case 2: return .pendingUnknown(entry)
        case 3: return .fingerprintMismatch(entry)
        case 4: return .running(entry)
        default:
            throw LedgerError(.databaseError, "the claim function answered outcome \(answer.outcome), which this build does not know",
                              key: key.rawValue)
        }
    }

    // MARK: Settling claims

    struct SettleCall: Sendable {
        /// 1 complete, 2 release, 3 abandon.
        var act: Int16
        var key: [UInt8]
        var attempt: Int64
        var fence: Int64
        var receipt: [UInt8]
        var time: Int64
        var reason: String
    }

    struct SettleRow: Sendable {
        var ok: Bool
        var row: EntryRow?
    }

    static func runSettles(_ calls: [SettleCall], connection: PostgresConnection, schema: String, prepared: Bool,
                           logger: Logger) async throws -> [SettleRow] {
        let acts = calls.map(\.act)
        let keys = calls.map { ByteBuffer(bytes: $0.key) }
        let attempts = calls.map(\.attempt)
        let fences = calls.map(\.fence)
        let receipts = calls.map { ByteBuffer(bytes: $0.receipt) }
        let times = calls.map(\.time)
        let reasons = calls.map(\.reason)
        // One round trip: the procedure commits before it answers (`Spec/POSTGRES.md` §3);
        // a statement prepared once per connection.
        let statement = SettleCommitStatement(
            acts: acts, keys: keys, attempts: attempts, fences: fences, receipts: receipts, times: times, reasons: reasons)
        let rows = try await statement.rows(on: connection, prepared: prepared, schema: schema, logger: logger)
        var answers = [SettleRow?](repeating: nil, count: calls.count)
        for (indices, oks, statuses, attemptNumbers, generations, fingerprints, timeValues, receiptValues) in rows {
            let count = indices.count
            guard [oks.count, statuses.count, attemptNumbers.count, generations.count, fingerprints.count, timeValues.count,
                   receiptValues.count].allSatisfy({ $0 == count }) else {
                throw LedgerError(.databaseError, "the settle procedure answered columns of different lengths; the outcome of the batch is unknown")
            }
            for item in 0..<count {
                let position = Int(indices[item]) - 1
                guard answers.indices.contains(position) else { continue }
                // Status −1: the key has no row (the procedure's stand-in for NULL).
                let row: EntryRow? = statuses[item] == -1 ? nil : EntryRow(
                    status: statuses[item], attempt: attemptNumbers[item], generation: generations[item],
                    fingerprint: Array(buffer: fingerprints[item]), time: timeValues[item],
                    receipt: Array(buffer: receiptValues[item]))
                answers[position] = SettleRow(ok: oks[item], row: row)
            }
        }
        return try answers.map {
            guard let answer = $0 else {
                throw LedgerError(.databaseError, "the settle procedure returned no answer for a request; its outcome is unknown")
            }
            return answer
        }
    }

    /// Settles `claim` (complete, release or abandon) through group commit. The claim is no
    /// longer renewed from here on, whatever the outcome: a failure leaves its lease to expire.
    private func settle(_ claim: Claim, act: Int16, receipt: [UInt8], time: UInt64, reason: String,
                        verb: String) async throws -> SettleRow {
        try checkOpen()
        let fence = Int64(bitPattern: claim.fence)
        let keyBytes = Array(claim.key.rawValue.utf8)
        live.withLock { live in
            if live.fences[fence] == keyBytes { live.fences[fence] = nil }
        }
        let answer = try await settles.submit(SettleCall(
            act: act, key: keyBytes, attempt: Int64(claim.attempt), fence: fence, receipt: receipt,
            time: try Self.int64(time, "the time"), reason: reason))
        if answer.ok || act == 3 { return answer }
        // A row the function would not act on because OnceLedger never writes what it holds
        // (version 4) is `.corruptRecord`, as every read of it.
        let current = try answer.row.map { row in
            do { return try entryInfo(claim.key.rawValue, row) } catch { throw unreadableRow(claim.key.rawValue, row) }
        }
        let now: String = if let current {
            "the key is now \(current.status.rawValue) at attempt \(current.attempt)"
        } else {
            "the key has no entry"
        }
        throw LedgerError(
            .wrongState,
            "cannot \(verb) the claim on key \"\(claim.key.rawValue)\" (attempt \(claim.attempt)): its lease is not the key's current one any more (\(now): another owner took the key over after the lease expired, or it was completed, released, resolved or abandoned); nothing was written. This process's result is not recorded: read the key's entry and reconcile with it",
            key: claim.key.rawValue, entry: current)
    }

    public func complete(_ claim: Claim, receipt: [UInt8], timeMilliseconds: UInt64) async throws -> EntryInfo {
        if receipt.count > FormatLimits.receiptBytesMax {
            throw LedgerError(.limitExceeded,
                              "the receipt is \(receipt.count) bytes; the limit is \(FormatLimits.receiptBytesMax). Store a reference (an id, a URL) instead of the payload",
                              limit: "receiptBytesMax", key: claim.key.rawValue)
        }
        let answer = try await settle(claim, act: 1, receipt: receipt, time: timeMilliseconds, reason: "", verb: "complete")
        guard let row = answer.row else {
            throw LedgerError(.databaseError, "the completion was accepted but no entry was returned", key: claim.key.rawValue)
        }
        return try entryInfo(claim.key.rawValue, row)
    }

    public func release(_ claim: Claim, reason: String, timeMilliseconds: UInt64) async throws {
        // The file store's limit, checked before anything is sent: the claim stays live.
        try Self.checkText(reason, "reason", key: claim.key.rawValue)
        _ = try await settle(claim, act: 2, receipt: [], time: timeMilliseconds, reason: Self.storable(reason),
                             verb: "release")
    }

    public func abandon(_ claim: Claim) async throws {
        _ = try await settle(claim, act: 3, receipt: [], time: claim.timeMilliseconds, reason: "", verb: "abandon")
    }

    // MARK: Operator acts

    @discardableResult
    public func resolve(_ request: ResolveRequest) async throws -> EntryInfo {
        guard !request.reason.isEmpty else {
            throw LedgerError(.invalidArgument, "resolving an entry needs a reason; it is recorded in the audit table",
                              key: request.key)
        }
        var receipt: [UInt8] = []
        if case .done(let stored) = request.outcome {
            if stored.count > FormatLimits.receiptBytesMax {
                throw LedgerError(.limitExceeded,
                                  "the receipt is \(stored.count) bytes; the limit is \(FormatLimits.receiptBytesMax). Store a reference (an id, a URL) instead of the payload",
                                  limit: "receiptBytesMax", key: request.key)
            }
            receipt = stored
        }
        let notInState = switch request.expected {
        case .pendingUnknown: "is not pending-unknown"
        case .done: "is not done; only a done entry's receipt can be corrected (resolve a pending-unknown one)"
        case .absent: "is not absent"
        }
        var done = false
        if case .done = request.outcome { done = true }
        return try await operate(key: request.key, forget: false, expected: request.expected,
                                 expectedAttempt: request.expectedAttempt, expectedGeneration: request.expectedGeneration,
                                 done: done, receipt: receipt,
                                 time: request.timeMilliseconds, actor: request.actor, reason: request.reason,
                                 notInState: notInState)
    }

    public func forget(_ request: ForgetRequest) async throws {
        guard !request.reason.isEmpty else {
            throw LedgerError(.invalidArgument, "forgetting an entry needs a reason; it is recorded in the audit table",
                              key: request.key)
        }
        _ = try await operate(key: request.key, forget: true, expected: .done, expectedAttempt: nil, done: false,
                              receipt: [], time: request.timeMilliseconds, actor: request.actor, reason: request.reason,
                              notInState: "is not done; only done entries can be forgotten")
    }

    private func operate(key: String, forget: Bool, expected: EntryInfo.Status, expectedAttempt: UInt32?,
                         expectedGeneration: UInt32? = nil, done: Bool,
                         receipt: [UInt8], time: UInt64, actor: String, reason: String,
                         notInState: String) async throws -> EntryInfo {
        try checkOpen()
        try Self.checkText(actor, "actor", key: key)
        try Self.checkText(reason, "reason", key: key)
        let actor = Self.storable(actor), reason = Self.storable(reason)
        let time = try Self.int64(time, "the time")
        let keyBuffer = ByteBuffer(bytes: Array(key.utf8))
        let receiptBuffer = ByteBuffer(bytes: receipt)
        let expectedStatus = Self.statusCode(expected)
        let attempt = expectedAttempt.map(Int64.init)
        let (code, row) = try await pool.withTransaction(.writing(forget ? "a forget" : "a resolve")) { connection in
            // The generation the caller read, checked on the locked row in this transaction
            // before `operate` (whose SQL checks the attempt only; a forget or a drop and a new
            // claim start the attempts again): code 6, nothing written.
            if let expectedGeneration {
                let current = try await connection.query("""
                    SELECT status, attempt, generation, fingerprint, time_ms, receipt
                      FROM \(unescaped: quotedSchema).entries WHERE key = \(keyBuffer) FOR UPDATE
                    """, logger: logger)
                var changed: EntryRow?
                for try await (status, attempt, generation, fingerprint, time, receipt) in current.decode(
                    (Int16, Int64, Int64, ByteBuffer, Int64, ByteBuffer).self) where generation != Int64(expectedGeneration) {
                    changed = EntryRow(status: status, attempt: attempt, generation: generation,
                                       fingerprint: Array(buffer: fingerprint), time: time, receipt: Array(buffer: receipt))
                }
                if let changed {
                    let refused: (Int16, EntryRow?) = (6, changed)
                    return refused
                }
            }
            let rows = try await connection.query("""
                SELECT code, status, attempt, generation, fingerprint, time_ms, receipt
                  FROM \(unescaped: quotedSchema).operate(\(keyBuffer), \(forget), \(expectedStatus), \(attempt), \(done), \(receiptBuffer), \(time), \(actor), \(reason))
                """, logger: logger)
            var result: (Int16, EntryRow?) = (1, nil)
            for try await (code, status, attempt, generation, fingerprint, time, receipt) in rows.decode(
                (Int16, Int16?, Int64?, Int64?, ByteBuffer?, Int64?, ByteBuffer?).self) {
                var row: EntryRow?
                if let status, let attempt, let generation, let fingerprint, let time, let receipt {
                    row = EntryRow(status: status, attempt: attempt, generation: generation,
                                   fingerprint: Array(buffer: fingerprint), time: time, receipt: Array(buffer: receipt))
                }
                result = (code, row)
            }
            return result
        }
        if code == 4, let row { throw unreadableRow(key, row) }
        let entry = try row.map { try entryInfo(key, $0) }
        switch code {
        case 0:
            guard let entry else { throw LedgerError(.databaseError, "the operator act returned no entry", key: key) }
            return entry
        case 2:
            throw LedgerError(.wrongState,
                              "key \"\(key)\" is running now (a live lease holds it); nothing was written. Try again once its call has finished, or after its lease expires",
                              key: key, entry: entry)
        case 3:
            throw LedgerError(.wrongState,
                              "key \"\(key)\" is at attempt \(entry?.attempt ?? 0), not \(expectedAttempt ?? 0): it changed since it was read; nothing was written. Read it again",
                              key: key, entry: entry)
        case 6:
            throw LedgerError(.wrongState,
                              "key \"\(key)\" is at generation \(entry?.generation ?? 0), not \(expectedGeneration ?? 0): it was forgotten or dropped and claimed again since it was read; nothing was written. Read it again",
                              key: key, entry: entry)
        case 5:
            // A forget moves the key to the next generation (`Spec/FORMAT.md` §9.1); there is
            // none past 2^32 - 1.
            throw LedgerError(.limitExceeded,
                              "key \"\(key)\" is at generation \(entry?.generation ?? UInt32.max), the last a 32-bit counter holds: forgetting it would need another. Nothing was written",
                              limit: "generation", key: key, entry: entry)
        default:
            throw LedgerError(.wrongState, "key \"\(key)\" \(notInState)", key: key, entry: entry)
        }
    }

    // MARK: Reads

    public func entry(_ key: String) async throws -> EntryInfo? {
        try checkOpen()
        let keyBuffer = ByteBuffer(bytes: Array(key.utf8))
        let row = try await pool.withConnection(.reading("reading an entry")) { connection in
            let rows = try await connection.query("""
                SELECT status, attempt, generation, fingerprint, time_ms, receipt FROM \(unescaped: quotedSchema).entries
                 WHERE key = \(keyBuffer)
                """, logger: logger)
            var found: EntryRow?
            for try await (status, attempt, generation, fingerprint, time, receipt) in rows.decode(
                (Int16, Int64, Int64, ByteBuffer, Int64, ByteBuffer).self) {
                found = EntryRow(status: status, attempt: attempt, generation: generation,
                                 fingerprint: Array(buffer: fingerprint), time: time, receipt: Array(buffer: receipt))
            }
            return found
        }
        return try row.map { try entryInfo(key, $0) }
    }

    public func entries(_ query: EntryQuery) async throws -> [EntryInfo] {
        try checkOpen()
        guard query.limit > 0 else { return [] }
        let status = query.status.map(Self.statusCode)
        let after = query.afterKey.map { ByteBuffer(bytes: Array($0.utf8)) }
        let limit = Int64(clamping: query.limit)
        let rows = try await pool.withConnection(.reading("listing entries")) { connection in
            let rows = try await connection.query("""
                SELECT key, status, attempt, generation, fingerprint, time_ms, receipt FROM \(unescaped: quotedSchema).entries
                 WHERE (\(status)::smallint IS NULL OR status = \(status)::smallint)
                   AND (\(after)::bytea IS NULL OR key > \(after)::bytea)
                 ORDER BY key LIMIT \(limit)
                """, logger: logger)
            var found: [([UInt8], EntryRow)] = []
            for try await (key, status, attempt, generation, fingerprint, time, receipt) in rows.decode(
                (ByteBuffer, Int16, Int64, Int64, ByteBuffer, Int64, ByteBuffer).self) {
                found.append((Array(buffer: key), EntryRow(status: status, attempt: attempt, generation: generation,
                                                           fingerprint: Array(buffer: fingerprint), time: time,
                                                           receipt: Array(buffer: receipt))))
            }
            return found
        }
        return try rows.map { key, row in
            guard let text = String(validating: key, as: UTF8.self) else {
                throw LedgerError(.corruptRecord, "a key in \(schema).entries is not UTF-8; it was not written by OnceLedger")
            }
            return try entryInfo(text, row)
        }
    }

    public func entryCount() async throws -> Int {
        try checkOpen()
        return try await pool.withConnection(.reading("counting entries")) { connection in
            let rows = try await connection.query("SELECT count(*) FROM \(unescaped: quotedSchema).entries", logger: logger)
            var count: Int64 = 0
            for try await (value) in rows.decode(Int64.self) { count = value }
            return Int(count)
        }
    }

    /// Retention (`ARCHITECTURE.md` §2, `Spec/POSTGRES.md` §3.6): deletes the entries that
    /// block nothing at `nowMilliseconds` — absent ones, done ones claimed while-in-flight,
    /// done ones whose window has passed — never a pending or live one, and raises the
    /// generation floor past them in the same transaction, so a dropped key runs again
    /// under a new token. Returns when that transaction committed.
    public func compact(nowMilliseconds: UInt64) async throws {
        try checkOpen()
        let now = try Self.int64(nowMilliseconds, "the compaction's time")
        _ = try await pool.withTransaction(.writing("a compaction")) { connection in
            var dropped: Int64 = 0
            for try await (value) in try await connection.query(
                "SELECT \(unescaped: quotedSchema).compact(\(now))", logger: logger).decode(Int64.self) {
                dropped = value
            }
            return dropped
        }
    }

    // MARK: Waiting for another owner

    /// Waits until the key's live claim (another owner's lease) ends: a notification that the
    /// key was settled, or the lease's expiry (polled on the database's clock, with backoff
    /// up to a second, so a lost notification only delays). Returns at once if the key is
    /// not held by a live lease at `entry`'s attempt. Throws `CancellationError` if cancelled.
    public func waitForChange(of entry: EntryInfo) async throws {
        try Task.checkCancellation()
        try checkOpen()
        let keyBytes = Array(entry.key.utf8)
        let hex = Self.hex(keyBytes)
        let keyBuffer = ByteBuffer(bytes: keyBytes)
        // Listed in `waits` while waiting, so settling the key signals it (`Spec/POSTGRES.md`
        // §3.4). Committed before the first check of the key (a transaction, answered after
        // its COMMIT), so a settle after that check sees the row; without the row (a failed
        // insert) the wait still ends, by polling.
        let waiter = Int64.random(in: 1...Int64.max)
        let listed = (try? await pool.withTransaction(.writing("listing a wait")) { [self] connection in
            try await connection.query("""
                INSERT INTO \(unescaped: quotedSchema).waits (key, waiter) VALUES (\(keyBuffer), \(waiter))
                """, logger: logger)
            return true
        }) ?? false
        defer {
            if listed {
                Task { [pool, logger, quotedSchema] in
                    _ = try? await pool.withConnection(.writing("ending a wait")) { connection in
                        try await connection.query("""
                            DELETE FROM \(unescaped: quotedSchema).waits WHERE key = \(keyBuffer) AND waiter = \(waiter)
                            """, logger: logger)
                        return true
                    }
                }
            }
        }
        var backoff: Int64 = 10
        while true {
            let signal = waiters.register(hex)
            defer { waiters.unregister(hex, signal) }
            // Checked after registering, so a settlement between the check and the wait is seen.
            let remaining: Int64? = try await pool.withConnection(.reading("waiting for a key")) { connection in
                let rows = try await connection.query("""
                    SELECT attempt, (extract(epoch FROM (lease_expires - clock_timestamp())) * 1000)::bigint
                      FROM \(unescaped: quotedSchema).entries
                     WHERE key = \(keyBuffer) AND status = 1 AND lease_id IS NOT NULL AND lease_expires > clock_timestamp()
                    """, logger: logger)
                var remaining: Int64?
                for try await (attempt, milliseconds) in rows.decode((Int64, Int64).self) where attempt == Int64(entry.attempt) {
                    remaining = max(1, milliseconds)
                }
                return remaining
            }
            guard let remaining else { return }
            try checkOpen()
            let timeout = min(remaining + 2, backoff)
            backoff = min(backoff * 2, 1_000)
            let woke = try await signal.wait(timeoutMilliseconds: timeout)
            if woke { return }
        }
    }

    /// Notifications the listener received (tests: a settle nobody waits for sends none).
    package var notificationCount: Int { notificationsReceived.load(ordering: .relaxed) }

    /// Callers suspended in `waitForChange` on `key` (tests order races with it).
    package func waiterCount(_ key: String) -> Int {
        waiters.count(Self.hex(Array(key.utf8)))
    }

    /// Listens on the schema's channel on a connection of its own; every notification wakes
    /// the waiters of its key. Reconnects after a failure (waiters poll meanwhile).
    private func listen(ready: Gate) async {
        let channel = PostgresSchema.channel(schema)
        var delay: Int64 = 50
        while !Task.isCancelled, !isClosed {
            do {
                let connection = try await ConnectionPool.connect(url: configuration.url, id: 0, logger: logger)
                let open = listener.withLock { listener -> Bool in
                    if isClosed { return false }
                    listener = connection
                    return true
                }
                if open {
                    do {
                        try await connection.listen(on: channel) { notifications in
                            ready.open()
                            delay = 50
                            for try await notification in notifications {
                                notificationsReceived.add(1, ordering: .relaxed)
                                waiters.wake(notification.payload)
                            }
                        }
                    } catch {}
                }
                listener.withLock { $0 = nil }
                try? await connection.close()
            } catch {}
            // Not listening (now): waiters poll, and check again.
            ready.open()
            waiters.wakeAll()
            if Task.isCancelled || isClosed { break }
            try? await Task.sleep(for: .milliseconds(delay))
            delay = min(delay * 2, 2_000)
        }
        ready.open()
    }

    // MARK: Leases

    /// Renews the leases of this store's live claims every third of the lease.
    private func renewLeases() async {
        let interval = max(5, leaseMilliseconds / 3)
        while !Task.isCancelled {
            do { try await Task.sleep(for: .milliseconds(interval)) } catch { return }
            let held = live.withLock { live -> [(Int64, [UInt8])] in
                live.renewalPaused || live.closed ? [] : live.fences.map { ($0.key, $0.value) }
            }
            if held.isEmpty { continue }
            let keys = held.map { ByteBuffer(bytes: $0.1) }
            let fences = held.map(\.0)
            // A failed renewal is not an error of any call: the lease may expire, and then the
            // claim's completion is refused only if another owner took the key over.
            _ = try? await pool.withTransaction(.writing("renewing leases")) { [self] connection in
                try await connection.query("""
                    SELECT \(unescaped: quotedSchema).renew(\(keys), \(fences), \(leaseMilliseconds))
                    """, logger: logger)
                return 0
            }
        }
    }

    /// Stops (or resumes) renewing this store's leases: a test's model of a process paused
    /// past its lease.
    package func pauseLeaseRenewal(_ paused: Bool) {
        live.withLock { $0.renewalPaused = paused }
    }

    /// Live claims this store renews (tests).
    package var liveClaimCount: Int { live.withLock { $0.fences.count } }

    // MARK: Closing

    private var isClosed: Bool { live.withLock { $0.closed } }

    private static var closedError: LedgerError { LedgerError(.closed, "the ledger is closed") }

    func checkOpen() throws {
        if isClosed { throw Self.closedError }
    }

    /// Closes the store: its connections close, renewal stops (the leases of claims still
    /// running expire, their keys turn pending-unknown), waiters return.
    public func close() throws {
        let alreadyClosed = live.withLock { live -> Bool in
            defer { live.closed = true }
            return live.closed
        }
        if alreadyClosed { return }
        for task in tasks.withLock({ $0 }) { task.cancel() }
        renewalExecutor.shutdown()
        if let connection = listener.withLock({ $0 }) { ConnectionPool.closeSoon(connection) }
        waiters.wakeAll()
        pool.close()
    }

    // MARK: Conversions

    var quotedSchema: String { "\"\(schema)\"" }

    static func statusCode(_ status: EntryInfo.Status) -> Int16 {
        switch status {
        case .absent: 0
        case .pendingUnknown: 1
        case .done: 2
        }
    }

    static func int64(_ value: UInt64, _ what: String) throws -> Int64 {
        guard let converted = Int64(exactly: value) else {
            throw LedgerError(.invalidArgument, "\(what) is \(value) ms; this store keeps times up to \(Int64.max) ms")
        }
        return converted
    }

    /// The error for a row the server's functions refused to act on (version 4, `PostgresSchema.unreadable`):
    /// it holds values OnceLedger never writes.
    func unreadableRow(_ key: String, _ row: EntryRow, _ why: String? = nil) -> LedgerError {
        LedgerError(.corruptRecord,
                    "\(why ?? "key \"\(key)\" has status \(row.status), attempt \(row.attempt), generation \(row.generation), time \(row.time) in \(schema).entries, which OnceLedger never writes (edited by hand, or damaged)"). Nothing was written and nothing was run: correct the row from a backup or the effect's own records",
                    key: key)
    }

    /// An entry row as `EntryInfo`; throws `.corruptRecord` for values OnceLedger never writes
    /// (the rule `PostgresSchema.unreadable` applies on the server).
    func entryInfo(_ key: String, _ row: EntryRow) throws -> EntryInfo {
        let status: EntryInfo.Status
        switch row.status {
        case 0: status = .absent
        case 1: status = .pendingUnknown
        case 2: status = .done
        default:
            throw LedgerError(.corruptRecord, "key \"\(key)\" has status \(row.status) in \(schema).entries, which OnceLedger never writes",
                              key: key)
        }
        guard let attempt = UInt32(exactly: row.attempt), let generation = UInt32(exactly: row.generation),
              let time = UInt64(exactly: row.time)
        else {
            throw LedgerError(.corruptRecord,
                              "key \"\(key)\" has attempt \(row.attempt), generation \(row.generation), time \(row.time) in \(schema).entries, out of range",
                              key: key)
        }
        return EntryInfo(key: key, status: status, attempt: attempt, generation: generation,
                         fingerprint: row.fingerprint.isEmpty ? IdempotencyKey.noFingerprint : row.fingerprint,
                         timeMilliseconds: time, receipt: status == .done ? row.receipt : [], tokenScope: tokenScope)
    }

    /// `text` as a PostgreSQL `text` value takes it: the server refuses the character U+0000
    /// in text (SQLSTATE 22021), so each one becomes U+FFFD. Reasons, actors and owners are
    /// kept for people reading the audit and entries tables; a release whose reason held a NUL
    /// is written, as on the file store, never refused (nor its batch with it).
    static func storable(_ text: String) -> String {
        guard text.utf8.contains(0) else { return text }
        var scalars = String.UnicodeScalarView()
        for scalar in text.unicodeScalars { scalars.append(scalar == "\u{0}" ? "\u{FFFD}" : scalar) }
        return String(scalars)
    }

    /// The file store's limit of a reason or an actor (`FormatLimits.reasonBytesMax`).
    static func checkText(_ text: String, _ name: String, key: String) throws {
        let count = text.utf8.count
        if count > FormatLimits.reasonBytesMax {
            throw LedgerError(.limitExceeded, "\(name) is \(count) bytes; the limit is \(FormatLimits.reasonBytesMax); nothing was written",
                              limit: name + "BytesMax", key: key)
        }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}

extension Array where Element == UInt8 {
    init(buffer: ByteBuffer) {
        self = Array(buffer.readableBytesView)
    }
}

/// A one-shot gate: `wait()` returns once `open()` was called.
final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func open() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            if state.open { return [] }
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func wait() async {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Bool in
                if state.open { return true }
                state.waiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }
}

/// The callers waiting in `waitForChange`, by key (hex, as notifications carry it).
final class Waiters: Sendable {
    final class Signal: Sendable {
        let id: UInt64
        private let state = Mutex<(fired: Bool, continuation: CheckedContinuation<Bool, any Error>?)>((false, nil))

        init(id: UInt64) { self.id = id }

        func fire() {
            let continuation = state.withLock { state -> CheckedContinuation<Bool, any Error>? in
                state.fired = true
                defer { state.continuation = nil }
                return state.continuation
            }
            continuation?.resume(returning: true)
        }

        /// True if fired, false after `timeoutMilliseconds`; throws `CancellationError`.
        func wait(timeoutMilliseconds: Int64) async throws -> Bool {
            try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask { try await self.waitForFire() }
                group.addTask {
                    try await Task.sleep(for: .milliseconds(timeoutMilliseconds))
                    return false
                }
                defer { group.cancelAll() }
                let first = try await group.next() ?? false
                try Task.checkCancellation()
                return first
            }
        }

        private func waitForFire() async throws -> Bool {
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Bool, any Error>) in
                    let ready: Result<Bool, any Error>? = state.withLock { state in
                        if state.fired { return .success(true) }
                        if Task.isCancelled { return .failure(CancellationError()) }
                        state.continuation = continuation
                        return nil
                    }
                    if let ready { continuation.resume(with: ready) }
                }
            } onCancel: {
                let continuation = state.withLock { state -> CheckedContinuation<Bool, any Error>? in
                    defer { state.continuation = nil }
                    return state.continuation
                }
                continuation?.resume(throwing: CancellationError())
            }
        }
    }

    private let state = Mutex<(next: UInt64, byKey: [String: [UInt64: Signal]])>((0, [:]))

    func register(_ key: String) -> Signal {
        state.withLock { state in
            state.next += 1
            let signal = Signal(id: state.next)
            state.byKey[key, default: [:]][signal.id] = signal
            return signal
        }
    }

    func unregister(_ key: String, _ signal: Signal) {
        state.withLock { state in
            state.byKey[key]?[signal.id] = nil
            if state.byKey[key]?.isEmpty == true { state.byKey[key] = nil }
        }
    }

    func wake(_ key: String) {
        let signals = state.withLock { $0.byKey[key].map { Array($0.values) } ?? [] }
        for signal in signals { signal.fire() }
    }

    func wakeAll() {
        let signals = state.withLock { $0.byKey.values.flatMap(\.values) }
        for signal in signals { signal.fire() }
    }

    func count(_ key: String) -> Int {
        state.withLock { $0.byKey[key]?.count ?? 0 }
    }
}
