// Proves that the PostgreSQL store never acts on an entry it cannot read (Spec/POSTGRES.md §2,
// §3; schema version 4), as the file store never acts on a record it cannot read: a row of
// `entries` holding a status, attempt, generation or time OnceLedger never writes (edited by
// hand, or damaged) is refused by every function that decides on it — a claim (`.retry` of a
// pending key, the re-run of a done one), a completion, a resolve, a forget — with
// `corrupt-record` naming the key, the effect not run and the row left as it was; compaction
// keeps it. Before version 4 the claim function's rules fell through to the pending-unknown
// branch for any other status, so `.retry` overwrote such a row and ran the effect again.
//
// And that attempt and generation are bounded at 2^32 as on the file store (FORMAT §9.1 "The
// counters never wrap", `CounterLimitTests`): a claim or a forget that would need attempt or
// generation 2^32 is refused with `limit-exceeded` naming the counter, nothing written.
//
// Rows are edited with SQL, as an operator would; a status or a negative counter first needs
// the table's check constraint dropped (a schema changed by hand, or restored without it).
import Logging
import OnceLedger
import OnceLedgerFormat
@testable import OnceLedgerPostgres
import OnceLedgerPostgresTestSupport
import OnceLedgerStoreContract
import PostgresNIO
import Testing

/// SQL run on the store's schema (`$S` stands for the quoted schema).
private func execute(_ store: PostgresStore, _ sql: String) async throws {
    let statement = sql.replacingOccurrences(of: "$S", with: store.quotedSchema)
    try await store.pool.withConnection(.writing("test")) { connection in
        try await connection.query(PostgresQuery(unsafeSQL: statement), logger: store.logger)
        return 0
    }
}

/// Everything stored about `key`: its row (every column) and its audit rows, as text; nil
/// without a row.
private func snapshot(_ store: PostgresStore, _ key: String) async throws -> String? {
    let keyBuffer = ByteBuffer(bytes: Array(key.utf8))
    return try await store.pool.withConnection(.reading("test")) { connection in
        var found: String?
        for try await (text) in try await connection.query("""
            SELECT row(e.*)::text || ' audit ' || (SELECT count(*) FROM \(unescaped: store.quotedSchema).audit a WHERE a.key = e.key)
              FROM \(unescaped: store.quotedSchema).entries e WHERE e.key = \(keyBuffer)
            """, logger: store.logger).decode(String.self) {
            found = text
        }
        return found
    }
}

private func setKey(_ store: PostgresStore, _ key: String, _ assignment: String) async throws {
    try await execute(store, "UPDATE $S.entries SET \(assignment) WHERE key = convert_to('\(key)', 'UTF8')")
}

/// A change to a row OnceLedger never makes.
enum Corruption: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case statusSeven, negativeAttempt, attemptPastU32, negativeGeneration, generationPastU32, negativeTime

    var testDescription: String { rawValue }

    func apply(_ store: PostgresStore, key: String) async throws {
        switch self {
        case .statusSeven:
            try await execute(store, "ALTER TABLE $S.entries DROP CONSTRAINT entries_status_check")
            try await setKey(store, key, "status = 7")
        case .negativeAttempt:
            try await execute(store, "ALTER TABLE $S.entries DROP CONSTRAINT entries_attempt_check")
            try await setKey(store, key, "attempt = -1")
        case .attemptPastU32:
            try await setKey(store, key, "attempt = 4294967296")
        case .negativeGeneration:
            try await execute(store, "ALTER TABLE $S.entries DROP CONSTRAINT entries_generation_check")
            try await setKey(store, key, "generation = -1")
        case .generationPastU32:
            try await setKey(store, key, "generation = 4294967296")
        case .negativeTime:
            try await setKey(store, key, "time_ms = -1")
        }
    }
}

private func expectCorrupt(_ error: LedgerError?, key: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(error?.code == .corruptRecord, "\(String(describing: error))", sourceLocation: sourceLocation)
    #expect(error?.key == key, sourceLocation: sourceLocation)
}

@Suite struct PostgresUnreadableRowTests {
    /// A pending-unknown key (its claim abandoned, no live lease).
    private func pendingUnknown(_ store: PostgresStore, _ key: String) async throws {
        let claim = try granted(try await store.claim(claimRequest(IdempotencyKey(key))))
        try await store.abandon(claim)
    }

    /// A done key claimed while in flight (so a new claim re-runs it, and compaction drops it).
    private func doneWhileInFlight(_ store: PostgresStore, _ key: String) async throws {
        let claim = try granted(try await store.claim(claimRequest(IdempotencyKey(key), scope: .whileInFlight)))
        _ = try await store.complete(claim, receipt: Array("\"r\"".utf8), timeMilliseconds: 1_001)
    }

    /// `.retry` of a pending key: the claim function's rules took any status but 0 and 2 for
    /// pending-unknown, and granted the retry over the row.
    @Test(arguments: Corruption.allCases)
    func aRetryOfAnUnreadableRowIsRefusedAndRunsNothing(_ corruption: Corruption) async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        try await pendingUnknown(store, "k")
        try await corruption.apply(store, key: "k")
        let before = try await snapshot(store, "k")
        let ledger = Ledger(store: store, clock: { 2_000 })
        let runs = Counter()
        expectCorrupt(await ledgerError {
            try await ledger.once("k", as: String.self, whenPending: .retry) { _ in runs.increment(); return "ran" }
        }, key: "k")
        #expect(runs.count == 0, "the effect did not run again")
        #expect(try await snapshot(store, "k") == before, "nothing was written")
    }

    @Test(arguments: Corruption.allCases)
    func aRerunOfAnUnreadableDoneRowIsRefused(_ corruption: Corruption) async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        try await doneWhileInFlight(store, "k")
        try await corruption.apply(store, key: "k")
        let before = try await snapshot(store, "k")
        expectCorrupt(await ledgerError {
            try await store.claim(claimRequest("k", scope: .whileInFlight, whenPending: .retry, at: 2_000))
        }, key: "k")
        #expect(try await snapshot(store, "k") == before, "nothing was written")
    }

    /// A row changed while its claim ran: the completion is refused, not written over it.
    @Test(arguments: Corruption.allCases)
    func aCompletionOfAnUnreadableRowIsRefused(_ corruption: Corruption) async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        let claim = try granted(try await store.claim(claimRequest("k")))
        try await corruption.apply(store, key: "k")
        let before = try await snapshot(store, "k")
        expectCorrupt(await ledgerError {
            try await store.complete(claim, receipt: [1], timeMilliseconds: 2_000)
        }, key: "k")
        #expect(try await snapshot(store, "k") == before, "nothing was written")
    }

    @Test(arguments: Corruption.allCases)
    func aResolveOfAnUnreadableRowIsRefused(_ corruption: Corruption) async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        try await pendingUnknown(store, "k")
        try await corruption.apply(store, key: "k")
        let before = try await snapshot(store, "k")
        expectCorrupt(await ledgerError {
            try await store.resolve(ResolveRequest(key: "k", outcome: .done(receipt: [1]), expected: .pendingUnknown,
                                                   actor: "op", reason: "checked", timeMilliseconds: 2_000))
        }, key: "k")
        expectCorrupt(await ledgerError {
            try await store.resolve(ResolveRequest(key: "k", outcome: .absent, expected: .pendingUnknown,
                                                   actor: "op", reason: "checked", timeMilliseconds: 2_000))
        }, key: "k")
        #expect(try await snapshot(store, "k") == before, "nothing was written")
    }

    @Test(arguments: Corruption.allCases)
    func aForgetOfAnUnreadableRowIsRefused(_ corruption: Corruption) async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        try await doneWhileInFlight(store, "k")
        try await corruption.apply(store, key: "k")
        let before = try await snapshot(store, "k")
        expectCorrupt(await ledgerError {
            try await store.forget(ForgetRequest(key: "k", actor: "op", reason: "re-run", timeMilliseconds: 2_000))
        }, key: "k")
        #expect(try await snapshot(store, "k") == before, "nothing was written")
    }

    /// Compaction keeps what it cannot read (and so does not raise the floor past it).
    @Test(arguments: Corruption.allCases)
    func compactionKeepsAnUnreadableRow(_ corruption: Corruption) async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        try await doneWhileInFlight(store, "k")
        try await corruption.apply(store, key: "k")
        let before = try await snapshot(store, "k")
        try await store.compact(nowMilliseconds: 10_000)
        #expect(try await snapshot(store, "k") == before, "the row was kept as it was")
        // A key compaction may drop still goes.
        try await doneWhileInFlight(store, "other")
        try await store.compact(nowMilliseconds: 10_000)
        #expect(try await snapshot(store, "other") == nil)
    }
}

/// `CounterLimitTests` on the PostgreSQL store (FORMAT §9.1): nothing past 2^32 − 1 is written.
@Suite struct PostgresCounterLimitTests {
    static let last: Int64 = 4_294_967_295

    private func expectExhausted(_ limit: String, key: String, sourceLocation: SourceLocation = #_sourceLocation,
                                 _ body: () async throws -> Void) async {
        let error = await ledgerError(body, sourceLocation: sourceLocation)
        #expect(error?.code == .limitExceeded, "\(String(describing: error))", sourceLocation: sourceLocation)
        #expect(error?.limit == limit, sourceLocation: sourceLocation)
        #expect(error?.key == key, sourceLocation: sourceLocation)
    }

    @Test func aRetryPastTheLastAttemptIsRefusedNotWritten() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        try await store.abandon(try granted(try await store.claim(claimRequest("k"))))
        try await setKey(store, "k", "attempt = \(Self.last)")
        let before = try await snapshot(store, "k")
        let ledger = Ledger(store: store, clock: { 2_000 })
        let runs = Counter()
        await expectExhausted("attempt", key: "k") {
            _ = try await ledger.once("k", as: String.self, whenPending: .retry) { _ in runs.increment(); return "ran" }
        }
        #expect(runs.count == 0)
        #expect(try await snapshot(store, "k") == before, "nothing was written")
        let entry = try await store.entry("k")
        #expect(entry?.status == .pendingUnknown && entry?.attempt == UInt32.max)
    }

    @Test func aRerunPastTheLastGenerationIsRefusedNotWritten() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        let claim = try granted(try await store.claim(claimRequest("k", scope: .whileInFlight)))
        _ = try await store.complete(claim, receipt: Array("\"done\"".utf8), timeMilliseconds: 1_001)
        try await setKey(store, "k", "generation = \(Self.last)")
        let before = try await snapshot(store, "k")
        let ledger = Ledger(store: store, clock: { 2_000 })
        let runs = Counter()
        // A while-in-flight run that finished blocks nothing: the next run needs generation 2^32.
        await expectExhausted("generation", key: "k") {
            _ = try await ledger.once("k", as: String.self, scope: .whileInFlight) { _ in runs.increment(); return "again" }
        }
        #expect(runs.count == 0)
        #expect(try await snapshot(store, "k") == before, "nothing was written")
        let entry = try await store.entry("k")
        #expect(entry?.status == .done && entry?.generation == UInt32.max)
    }

    @Test func aForgetAtTheLastGenerationIsRefused() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        let claim = try granted(try await store.claim(claimRequest("k")))
        _ = try await store.complete(claim, receipt: Array("\"done\"".utf8), timeMilliseconds: 1_001)
        try await setKey(store, "k", "generation = \(Self.last)")
        let before = try await snapshot(store, "k")
        await expectExhausted("generation", key: "k") {
            try await store.forget(ForgetRequest(key: "k", actor: "op", reason: "a re-run", timeMilliseconds: 2_000))
        }
        #expect(try await snapshot(store, "k") == before, "nothing was written")
    }

    /// An absent key at the last generation, as the file store: after a release its token may
    /// be used again, after a forget written by hand it must not, and the row does not say
    /// which. At the last attempt, a claim would need attempt 2^32.
    @Test(arguments: ["generation", "attempt"])
    func anAbsentKeyAtTheLastCounterIsRefused(_ counter: String) async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        let claim = try granted(try await store.claim(claimRequest("k")))
        try await store.release(claim, reason: "did not happen", timeMilliseconds: 1_001)
        try await setKey(store, "k", "\(counter) = \(Self.last)")
        let before = try await snapshot(store, "k")
        await expectExhausted(counter, key: "k") {
            _ = try await store.claim(claimRequest("k", at: 2_000))
        }
        #expect(try await snapshot(store, "k") == before, "nothing was written")
        // Another key still runs.
        _ = try granted(try await store.claim(claimRequest("other")))
    }

    /// A generation floor past the last generation (a `meta` row edited by hand): a key without
    /// an entry would start at it, so it is refused, no row inserted.
    @Test func aFloorPastTheLastGenerationRefusesNewKeys() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        try await execute(store, "UPDATE $S.meta SET generation_floor = \(Self.last + 1)")
        await expectExhausted("generation", key: "fresh") {
            _ = try await store.claim(claimRequest("fresh"))
        }
        #expect(try await store.entryCount() == 0, "nothing was written")
        // At the last generation itself, a key still starts.
        try await execute(store, "UPDATE $S.meta SET generation_floor = \(Self.last)")
        #expect(try granted(try await store.claim(claimRequest("fresh"))).generation == UInt32.max)
    }
}

/// A run generation whose end OnceLedger never writes (a status but succeeded, failed or
/// cancelled; a negative end time) is `.corruptRecord` to every read; the sweep deleted it, with
/// its values, once its "window" passed. It is kept; a readable one beside it is swept.
@Suite struct PostgresUnreadableRunTests {
    @Test func theSweepKeepsARunEndOnceLedgerNeverWrites() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        var keys: [String: MemoKey] = [:]
        for name in ["status-nine", "ended-before-zero", "fine"] {
            let run = MemoRun(run: name)
            let key = MemoKey(run: run, generation: try await store.memoGeneration(of: run), step: "s", name: "n")
            try await store.memoPut(MemoPutRequest(key: key, value: [1], inputDigest: nil, timeMilliseconds: 1_000))
            _ = try await store.finishRun(run, status: .succeeded, timeMilliseconds: 2_000)
            keys[name] = key
        }
        try await execute(store, "UPDATE $S.memo_generations SET status = 9 WHERE run = convert_to('status-nine', 'UTF8')")
        try await execute(store, "UPDATE $S.memo_generations SET end_ms = -5 WHERE run = convert_to('ended-before-zero', 'UTF8')")
        let swept = try await store.sweepMemo(MemoSweepRequest(nowMilliseconds: 1_000_000, retention: MemoRetention(.seconds(1))))
        #expect(swept.runs.keys.map(\.run) == ["fine"] && swept.entries == 1)
        for name in ["status-nine", "ended-before-zero"] {
            #expect(try await store.memoGet(try #require(keys[name]))?.bytes == [1], "\(name): kept with its value")
        }
        #expect(try await store.memoGet(try #require(keys["fine"])) == nil)
        #expect(await ledgerError { try await store.runs(RunQuery()) }?.code == .corruptRecord)
    }
}
