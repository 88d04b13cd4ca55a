// Proves that hostile input reaching the PostgreSQL store fails, at most, its own caller with a
// typed error, never the other callers whose requests share its batch, and is never misread:
// a release reason holding a NUL character (PostgreSQL's `text` refuses U+0000) is written, and
// the completion of another caller in the same settle batch is recorded; a memo put whose names
// were too long for PostgreSQL's index before schema version 4 is stored, and the other put of
// its batch too; a batch the server refuses as a whole is sent again request by request
// (group commit, no server); reasons and actors over the file store's limit are refused before
// anything is sent, the claim staying live; a memo value or a run end with a time OnceLedger never
// writes is `.corruptRecord` from every read, never "not found"; a `meta` table emptied by hand
// is refused, nothing changed; a lease past the database's time and a system schema name are
// refused when connecting; and a URL hiding a NUL character is refused.
//
// Also that a batch given up at its answer deadline gives its pooled connection back (closed),
// so statements that never answer cannot leave the store's reads waiting for ever; that the
// abandon action never runs once the statement is over; and that `close()` with calls of every
// kind in flight ends each of them with a result or a typed error.
//
// Batches are formed without clocks: another session holds a row lock the first batch needs,
// the requests of the test queue behind it (the group's queue count says when), and then the
// lock is released.
import Logging
import OnceLedger
import OnceLedgerFormat
@testable import OnceLedgerPostgres
import OnceLedgerPostgresTestSupport
import OnceLedgerStoreContract
import PostgresNIO
import Synchronization
import Testing

/// A session of its own (not the store's pool) holding row locks in an open transaction.
private struct LockHolder {
    let connection: PostgresConnection
    let logger: Logger

    static func locking(_ sql: String, url: String) async throws -> LockHolder {
        var logger = Logger(label: "test.lock-holder")
        logger.logLevel = .critical
        let connection = try await ConnectionPool.connect(url: try PostgresURL(url), id: 99, logger: logger)
        try await connection.query("BEGIN", logger: logger)
        try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
        return LockHolder(connection: connection, logger: logger)
    }

    /// Sessions waiting for a lock this one holds.
    func blockedCount() async throws -> Int64 {
        var count: Int64 = -1
        for try await (value) in try await connection.query(
            "SELECT count(*) FROM pg_stat_activity WHERE pg_backend_pid() = ANY (pg_blocking_pids(pid))",
            logger: logger).decode(Int64.self) {
            count = value
        }
        return count
    }

    func release() async throws {
        try await connection.query("ROLLBACK", logger: logger)
        try await connection.close()
    }
}

@Suite(.enabled(if: PostgresTestServer.shouldRun, Comment(rawValue: PostgresTestServer.skipReason)))
struct PostgresHostileInputTests {
    private func strings(_ store: PostgresStore, _ sql: String) async throws -> [String] {
        try await store.pool.withConnection(.reading("test")) { connection in
            var found: [String] = []
            for try await (value) in try await connection.query(PostgresQuery(unsafeSQL: sql), logger: store.logger)
                .decode(String.self) {
                found.append(value)
            }
            return found
        }
    }

    private func execute(_ store: PostgresStore, _ sql: String) async throws {
        try await store.pool.withConnection(.writing("test")) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: sql), logger: store.logger)
            return 0
        }
    }

    /// The file store writes any reason; PostgreSQL's `text` refuses U+0000 (SQLSTATE 22021), and
    /// the settle batch is one statement: the NUL of one caller's release failed every
    /// completion of its batch — effects that ran, reported unrecorded, to run again under
    /// `.retry`. The release is written (the NUL kept as U+FFFD) and the batch with it.
    @Test func aReleaseReasonWithANulFailsNoCompletionOfItsBatch() async throws {
        let harness = try PostgresHarness()
        // Two connections: one batch of each kind on the wire, and no second flusher for a stall.
        // A lease of an hour: a renewal (every third of the lease) of the held row would wait
        // behind the lock too, and the count of blocked sessions would never be 1.
        let store = try await harness.open(lease: .seconds(3_600), connections: 2)
        defer { try? store.close() }
        let blocker = try granted(try await store.claim(claimRequest("blocker")))
        let good = try granted(try await store.claim(claimRequest("good")))
        let bad = try granted(try await store.claim(claimRequest("bad")))
        let holder = try await LockHolder.locking(
            "SELECT 1 FROM \(store.quotedSchema).entries WHERE key = convert_to('blocker', 'UTF8') FOR UPDATE",
            url: harness.server.url)
        let first = Task { try await store.complete(blocker, receipt: [1], timeMilliseconds: 2_000) }
        try await waitUntil("the first settle batch waits for the held row") { try await holder.blockedCount() == 1 }
        let completed = Task { try await store.complete(good, receipt: [2], timeMilliseconds: 2_000) }
        let released = Task { try await store.release(bad, reason: "nothing \u{0} happened", timeMilliseconds: 2_000) }
        try await waitUntil("both are queued behind it, to go as one batch") { store.settles.queuedCount == 2 }
        try await holder.release()

        #expect(try await first.value.status == .done)
        let done = try await completed.value
        #expect(done.status == .done && done.receipt == [2], "another caller's reason does not fail this completion")
        try await released.value
        #expect(try await store.entry("bad")?.status == .absent)
        #expect(try await strings(store, "SELECT reason FROM \(store.quotedSchema).audit WHERE act = 'release'")
                == ["nothing \u{FFFD} happened"])
        #expect(store.liveClaimCount == 0)
    }

    /// An operator's actor and reason with a NUL are written too (as on the file store).
    @Test func aResolveWithANulInItsActorAndReasonIsWritten() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        let claim = try granted(try await store.claim(claimRequest("k")))
        try await store.abandon(claim)
        let resolved = try await store.resolve(ResolveRequest(
            key: "k", outcome: .done(receipt: [7]), expected: .pendingUnknown, expectedAttempt: 1,
            actor: "ops\u{0}bot", reason: "checked\u{0}by hand", timeMilliseconds: 3_000))
        #expect(resolved.status == .done && resolved.receipt == [7])
        #expect(try await strings(store, "SELECT actor || '|' || reason FROM \(store.quotedSchema).audit")
                == ["ops\u{FFFD}bot|checked\u{FFFD}by hand"])
    }

    /// The file store's limits of a reason and an actor: refused before anything is sent, and
    /// the claim is still live (renewed, and settled by a later call).
    @Test func reasonsAndActorsOverTheLimitAreRefusedAndTheClaimStaysLive() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        let claim = try granted(try await store.claim(claimRequest("k")))
        let long = String(repeating: "r", count: FormatLimits.reasonBytesMax + 1)
        let error = await ledgerError { try await store.release(claim, reason: long, timeMilliseconds: 2_000) }
        #expect(error?.code == .limitExceeded && error?.limit == "reasonBytesMax")
        #expect(store.liveClaimCount == 1, "the refused release left the claim live")
        try await store.release(claim, reason: "short", timeMilliseconds: 2_000)
        let resolve = await ledgerError {
            try await store.resolve(ResolveRequest(key: "k", outcome: .absent, expected: .absent, expectedAttempt: nil,
                                                   actor: long, reason: "r", timeMilliseconds: 3_000))
        }
        #expect(resolve?.code == .limitExceeded && resolve?.limit == "actorBytesMax")
    }

    /// Until schema version 4, `memo_values` kept a value's namespace, run, step and name in one
    /// btree entry, at most about 2,700 bytes: names within the file store's limits but longer
    /// together (and not compressible) were refused by the server (SQLSTATE 54000), and before
    /// that failed every put of their batch. Now such a put is stored, and the put sharing its
    /// batch too.
    @Test func aMemoPutWithLongNamesIsStoredWithItsBatch() async throws {
        let harness = try PostgresHarness()
        let store = try await harness.open(connections: 2)
        defer { try? store.close() }
        var random = SystemRandomNumberGenerator()
        func noise(_ count: Int) -> String {
            String((0..<count).map { _ in "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".randomElement(using: &random)! })
        }
        let blocked = MemoRun(run: "blocked")
        let run = MemoRun(run: noise(1_000))
        let blockedGeneration = try await store.memoGeneration(of: blocked)
        let generation = try await store.memoGeneration(of: run)
        let long = MemoKey(run: run, generation: generation, step: noise(1_000), name: noise(1_000))
        let short = MemoKey(run: run, generation: generation, step: "s", name: "n")
        let holder = try await LockHolder.locking(
            "SELECT 1 FROM \(store.quotedSchema).memo_runs WHERE run = convert_to('blocked', 'UTF8') FOR UPDATE",
            url: harness.server.url)
        let first = Task {
            try await store.memoPut(MemoPutRequest(key: MemoKey(run: blocked, generation: blockedGeneration, step: "s", name: "n"),
                                                   value: [1], inputDigest: nil, timeMilliseconds: 1_000))
        }
        try await waitUntil("the first put batch waits for the held row") { try await holder.blockedCount() == 1 }
        let longPut = Task { try await store.memoPut(MemoPutRequest(key: long, value: [2], inputDigest: nil, timeMilliseconds: 1_000)) }
        let fine = Task { try await store.memoPut(MemoPutRequest(key: short, value: [3], inputDigest: nil, timeMilliseconds: 1_000)) }
        try await waitUntil("both are queued behind it, to go as one batch") { store.memoPuts.queuedCount == 2 }
        try await holder.release()

        try await first.value
        try await fine.value
        try await longPut.value
        #expect(try await store.memoGet(short)?.bytes == [3], "the other put of the batch is stored")
        #expect(try await store.memoGet(long)?.bytes == [2])
    }

    /// A memo value whose time OnceLedger never writes: `memoGet` said `.corruptRecord` and
    /// `memoGetMany` (what the journal reads a run with) said "not found", so a journal would
    /// have run again a step whose result it holds. Both say `.corruptRecord`; so does `runs`
    /// for an end time OnceLedger never writes (it answered "not ended at any time").
    @Test func aValueOrRunEndOnceLedgerNeverWritesIsCorruptFromEveryRead() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        let run = MemoRun(run: "r")
        let key = MemoKey(run: run, generation: try await store.memoGeneration(of: run), step: "s", name: "n")
        try await store.memoPut(MemoPutRequest(key: key, value: [1], inputDigest: nil, timeMilliseconds: 1_000))
        _ = try await store.finishRun(run, status: .succeeded, timeMilliseconds: 2_000)
        try await execute(store, "UPDATE \(store.quotedSchema).memo_values SET time_ms = -1")
        try await execute(store, "UPDATE \(store.quotedSchema).memo_generations SET end_ms = -5")
        #expect(await ledgerError { try await store.memoGet(key) }?.code == .corruptRecord)
        #expect(await ledgerError { try await store.memoGetMany([key]) }?.code == .corruptRecord)
        #expect(await ledgerError { try await store.runs(RunQuery()) }?.code == .corruptRecord)
    }

    /// A lease the database cannot add to its clock (past year 294276) connected, and then
    /// every claim failed with a database error; it is refused when connecting.
    @Test func aLeaseBeyondTheDatabasesTimeIsRefusedWhenConnecting() async throws {
        let harness = try PostgresHarness()
        let refused = await ledgerError { try await harness.open(lease: .seconds(Int64.max)) }
        #expect(refused?.code == .invalidArgument && refused?.message.contains("lease") == true)
        let century = try await harness.open(lease: .seconds(36_525 * 86_400))
        defer { try? century.close() }
        _ = try granted(try await century.claim(claimRequest("k")))
    }

    /// A schema name PostgreSQL keeps for itself: `pg_…` was refused by the server with
    /// SQLSTATE 42939 (`database-error`), and `information_schema` would get the store's
    /// tables among the system views. Both are a bad schema name: `.invalidArgument`.
    @Test func aSystemSchemaNameIsRefusedAsABadName() async throws {
        let server = try PostgresTestServer.shared()
        for name in ["pg_ledger", "information_schema"] {
            let refused = await ledgerError { try await PostgresStore.connect(url: server.url, schema: name) }
            #expect(refused?.code == .invalidArgument && refused?.message.contains(name) == true,
                    "\(String(describing: refused))")
        }
    }

    /// A `meta` table whose row was deleted by hand: the migration took it for version 0 and
    /// ran the version steps over the existing tables ("relation already exists", a
    /// `database-error`). It is refused as corrupt, and nothing is changed.
    @Test func aMetaTableWithoutItsRowIsRefusedAndNothingChanged() async throws {
        let harness = try PostgresHarness()
        let store = try await harness.open()
        _ = try granted(try await store.claim(claimRequest("kept")))
        try await execute(store, "DELETE FROM \(store.quotedSchema).meta")
        try store.close()
        let refused = await ledgerError { try await harness.open() }
        #expect(refused?.code == .corruptRecord && refused?.message.contains("meta") == true, "\(String(describing: refused))")
        let again = await ledgerError { try await harness.open() }
        #expect(again?.code == .corruptRecord, "nothing was changed by the refused open")
    }
}

@Suite(.enabled(if: PostgresTestServer.shouldRun, Comment(rawValue: PostgresTestServer.skipReason)))
struct PostgresAbandonedBatchTests {
    /// A batch past its answer deadline fails its callers (`connection-lost`), and its
    /// statement is abandoned: it held its pooled connection until the server answered —
    /// for ever, for a statement that never answers — so after as many such batches as
    /// the pool has connections every read, renewal and memo call of the store waited for
    /// ever. Here two statements wait for rows another session holds, past the deadline;
    /// a read is then answered while the rows are still held.
    @Test func aBatchPastItsDeadlineGivesItsConnectionBack() async throws {
        let harness = try PostgresHarness()
        // A lease of an hour: no renewal of the held rows waits behind the lock with a pooled connection.
        var configuration = PostgresStore.Configuration(url: try PostgresURL(harness.server.url), schema: harness.schema,
                                                        lease: .seconds(3_600), connections: 2)
        // Long enough for the two claims on a loaded machine; the completes below wait past it.
        configuration.answerDeadline = .seconds(2)
        let store = try await PostgresStore.connect(configuration: configuration)
        defer { try? store.close() }
        let one = try granted(try await store.claim(claimRequest("one")))
        let two = try granted(try await store.claim(claimRequest("two")))
        let holder = try await LockHolder.locking(
            "SELECT 1 FROM \(store.quotedSchema).entries WHERE key IN (convert_to('one', 'UTF8'), convert_to('two', 'UTF8')) FOR UPDATE",
            url: harness.server.url)
        do {
            for claim in [one, two] {
                let error = await ledgerError { try await store.complete(claim, receipt: [1], timeMilliseconds: 2_000) }
                #expect(error?.code == .connectionLost && error?.message.contains("did not answer") == true, "\(String(describing: error))")
            }
            let answered = Counter()
            let read = Task {
                defer { answered.increment() }
                return try await store.entry("other")
            }
            try await waitUntil("a read is answered while the rows are still held") { answered.count == 1 }
            #expect(try await read.value == nil)
        } catch {
            try await holder.release()
            throw error
        }
        try await holder.release()
    }
}

/// How the calls of a test ended: "ok", a `LedgerError`'s code, or "untyped: …".
private final class Tally: Sendable {
    let ended = Counter()
    let outcomes = Mutex<[String: String]>([:])

    func record(_ name: String, _ body: @escaping @Sendable () async throws -> Void) -> Task<Void, Never> {
        Task {
            defer { ended.increment() }
            do {
                try await body()
                outcomes.withLock { $0[name] = "ok" }
            } catch let error as LedgerError {
                outcomes.withLock { $0[name] = error.code.rawValue }
            } catch {
                outcomes.withLock { $0[name] = "untyped: \(type(of: error)) \(error)" }
            }
        }
    }
}

@Suite(.enabled(if: PostgresTestServer.shouldRun, Comment(rawValue: PostgresTestServer.skipReason)))
struct PostgresCloseInFlightTests {
    /// `close()` while claims, completions, memo puts, reads and a wait are in flight: every
    /// call returns or throws a `LedgerError` (none hangs, none throws anything untyped), and
    /// a completion that returned is done in the store.
    @Test func closeWithCallsInFlightEndsEveryCallTyped() async throws {
        let harness = try PostgresHarness()
        let store = try await harness.open(connections: 3)
        let other = try await harness.open()
        defer { try? other.close() }
        let held = try granted(try await other.claim(claimRequest("held")))
        let heldEntry = try #require(try await other.entry("held"))
        let run = MemoRun(run: "r")
        let generation = try await store.memoGeneration(of: run)
        let tally = Tally()
        func record(_ name: String, _ body: @escaping @Sendable () async throws -> Void) -> Task<Void, Never> {
            tally.record(name, body)
        }
        var tasks: [Task<Void, Never>] = []
        tasks.append(record("wait") { try await store.waitForChange(of: heldEntry) })
        try await waitUntil("the wait is registered") { store.waiterCount("held") == 1 }
        for index in 0..<40 {
            tasks.append(record("once-\(index)") {
                let claim = try granted(try await store.claim(claimRequest(IdempotencyKey("k\(index)"))))
                let done = try await store.complete(claim, receipt: [UInt8(index)], timeMilliseconds: 2_000)
                if done.status != .done { throw TestFailure("not done") }
            })
            tasks.append(record("put-\(index)") {
                try await store.memoPut(MemoPutRequest(key: MemoKey(run: run, generation: generation, step: "s", name: "n\(index)"),
                                                       value: [1], inputDigest: nil, timeMilliseconds: 1_000))
            })
            tasks.append(record("read-\(index)") { _ = try await store.entry("k\(index)") })
        }
        try store.close()
        try await waitUntil("every call ended") { tally.ended.count == tasks.count }
        let all = tally.outcomes.withLock { $0 }
        let untyped = all.filter { $0.value.hasPrefix("untyped") }
        #expect(untyped.isEmpty, "\(untyped)")
        #expect(Set(all.values).isSubset(of: ["ok", "closed", "connection-lost"]), "\(Set(all.values))")
        for index in 0..<40 where all["once-\(index)"] == "ok" {
            #expect(try await other.entry("k\(index)")?.status == .done)
        }
        _ = try await other.complete(held, receipt: [], timeMilliseconds: 3_000)
    }
}

@Suite struct BatchAbortTests {
    /// The abandon action runs once if the batch is given up while its statement runs, at
    /// once if it was given up before, and never once the statement is over (its connection
    /// is then back in the pool, maybe another caller's).
    @Test func theActionRunsOnlyWhileTheStatementRuns() async throws {
        let runs = Counter()
        let during = BatchAbort()
        try await during.whileRunning(onAbort: { runs.increment() }) {
            during.fire()
            during.fire()
        }
        #expect(runs.count == 1)
        let before = BatchAbort()
        before.fire()
        _ = try? await before.whileRunning(onAbort: { runs.increment() }) {}
        #expect(runs.count == 2)
        let after = BatchAbort()
        try await after.whileRunning(onAbort: { runs.increment() }) {}
        after.fire()
        #expect(runs.count == 2 && after.fired)
    }
}

@Suite struct GroupCommitRefusedBatchTests {
    struct Refused: Error {}

    /// A batch the server refuses as a whole (`refusedWhole`) is sent again request by request:
    /// the bad request fails its own caller, every other gets its own answer.
    @Test func aBatchRefusedWholeIsSentAgainRequestByRequest() async throws {
        let gate = OnceLedgerStoreContract.Gate()
        let batches = Mutex<[[Int]]>([])
        let commit = GroupCommit<Int, Int>(lanes: 1, batchMax: 64, refusedWhole: { $0 is Refused }) { requests in
            batches.withLock { $0.append(requests) }
            if requests == [0] { await gate.wait() }
            if requests.contains(13) { throw Refused() }
            return requests.map { $0 * 10 }
        }
        let first = Task { try await commit.submit(0) }
        try await waitUntil("the first batch is on the wire") { batches.withLock { $0.count } == 1 }
        let rest = [1, 13, 2].map { value in Task { try await commit.submit(value) } }
        try await waitUntil("all three are queued") { commit.queuedCount == 3 }
        gate.open()
        #expect(try await first.value == 0)
        #expect(try await rest[0].value == 10)
        await #expect(throws: Refused.self) { try await rest[1].value }
        #expect(try await rest[2].value == 20)
        let sent = batches.withLock { $0 }
        #expect(sent.count == 5 && Set(sent[1]) == [1, 13, 2] && sent[2...].allSatisfy { $0.count == 1 })
    }

    /// Any other error (a lost connection: the outcome unknown) fails the whole batch, as before.
    @Test func anotherErrorFailsTheWholeBatch() async throws {
        let batches = Counter()
        let commit = GroupCommit<Int, Int>(lanes: 1, batchMax: 64, refusedWhole: { $0 is Refused }) { _ in
            batches.increment()
            throw TestFailure("lost")
        }
        await #expect(throws: TestFailure.self) { try await commit.submit(1) }
        #expect(batches.count == 1)
    }
}

@Suite struct PostgresURLHostileTests {
    @Test func aNulCharacterOrAnEscapeThatIsNotTwoHexDigitsIsRefused() {
        for bad in ["postgres://app%00options=x@host/db", "postgres://app:pw%00x@host/db", "postgres://app@host/db%00x",
                    "postgres://app@/db?host=/tmp%00x", "postgres://app\u{0}x@host/db", "postgres://app:%+f@host/db",
                    "postgres://app:%-0@host/db"] {
            let error = #expect(throws: LedgerError.self, "\(bad)") { try PostgresURL(bad) }
            #expect(error?.code == .invalidArgument)
        }
        #expect((try? PostgresURL("postgres://app:p%2fw%3A%40@host/db"))?.password == "p/w:@")
    }
}
