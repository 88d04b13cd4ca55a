// Proves that compaction on PostgreSQL (Spec/POSTGRES.md §3.6, schema version 4) drops the `once`
// entries of the journal effects of a run generation the memo no longer holds (ended and
// swept): a journal effect's entry has scope forever (FORMAT §10.3), so before, every run
// left its effect entries for ever and the table grew without bound under a steady workload of
// runs. Dropped like any other retention drop: the floor rises past it, so the key claimed again
// by hand gets a new token. Kept: a live run's effects, an ended run's not swept yet, a pending
// (pending-unknown) effect of a swept generation, a key of a generation handed out that nothing
// was written to yet, one of a generation not handed out yet, and every key under the prefix
// that names no generation (`g12x/`, `g/`, `g012/`, a number past 2^63, bytes not UTF-8).
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

/// The number of rows of `entries` whose key is `hex` (bytes given as hex digits).
private func rows(_ store: PostgresStore, hex: String) async throws -> Int64 {
    try await store.pool.withConnection(.reading("test")) { connection in
        var count: Int64 = 0
        for try await (value) in try await connection.query(PostgresQuery(unsafeSQL: """
            SELECT count(*) FROM \(store.quotedSchema).entries WHERE key = decode('\(hex)', 'hex')
            """), logger: store.logger).decode(Int64.self) {
            count = value
        }
        return count
    }
}

private func hex(_ text: String) -> String {
    Array(text.utf8).map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
}

@Suite(.enabled(if: PostgresTestServer.shouldRun, Comment(rawValue: PostgresTestServer.skipReason)))
struct PostgresJournalCompactionTests {
    /// A journal run with two effects and a step: returns the effects' keys and the generation.
    private func journaled(_ ledger: Ledger, run: String, finish status: RunStatus?) async throws -> (keys: [String], generation: UInt64) {
        let journal = try await ledger.journal(run: run)
        let first = try await journal.effect("mail.send", input: run) { effect in effect.key }
        _ = try await journal.step("llm", input: run) { "summary" }
        let second = try await journal.effect("bill", input: run) { effect in effect.key }
        if let status { try await journal.finish(status) }
        return ([first, second], journal.generation)
    }

    @Test func compactionDropsTheEffectEntriesOfSweptJournalGenerationsOnly() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        let ledger = Ledger(store: store, clock: { 1_000 })

        let swept = try await journaled(ledger, run: "swept", finish: .succeeded)
        let alsoSwept = try await journaled(ledger, run: "also-swept", finish: .cancelled)
        let ended = try await journaled(ledger, run: "ended", finish: .failed)
        let live = try await journaled(ledger, run: "live", finish: nil)
        #expect(swept.keys[0] == "onceledger.journal/g\(swept.generation)/p0/swept", "the key of FORMAT §10.3")

        // A pending effect of the swept generation: its process crashed inside the effect
        // (pending-unknown, lease expired). Never dropped: it may have happened.
        let pendingKey = "onceledger.journal/g\(swept.generation)/p7/swept"
        _ = try granted(try await store.claim(claimRequest(IdempotencyKey(pendingKey))))
        try await execute(store, """
            UPDATE $S.entries SET lease_expires = clock_timestamp() - interval '1 hour'
             WHERE key = convert_to('\(pendingKey)', 'UTF8')
            """)
        // A generation handed out that nothing was written to yet (the memo holds it as the
        // run's latest only), and one not handed out yet.
        let handedOut = try await store.memoGeneration(of: MemoRun(run: "handed-out"))
        // Keys under the prefix naming no generation the memo dropped.
        let g = swept.generation
        let kept = [
            "onceledger.journal/g\(handedOut)/p0/handed-out",
            "onceledger.journal/g\(handedOut + 1_000)/p0/future",
            "onceledger.journal/g\(g)x/p0/swept",
            "onceledger.journal/g/p0/swept",
            "onceledger.journal/g\(g)",
            "onceledger.journal/g0\(g)/p0/swept",
            "onceledger.journal/g0/p0/swept",
            "onceledger.journal/g-\(g)/p0/swept",
            "onceledger.journal/g 1/p0/swept",
            "onceledger.journal/g9223372036854775808/p0/swept",
            "onceledger.journal/g18446744073709551616/p0/swept",
            "onceledger.journal/g\(String(repeating: "9", count: 400))/p0/swept",
            "onceledger.journal/p0/g\(g)/swept",
            "onceledger.journalg\(g)/p0/swept",
        ]
        for key in kept {
            let claim = try granted(try await store.claim(claimRequest(IdempotencyKey(key))))
            _ = try await store.complete(claim, receipt: Array("\"r\"".utf8), timeMilliseconds: 1_000)
        }
        // A key that is not UTF-8 (written by hand): neither matched nor an error.
        let notUTF8 = hex("onceledger.journal/g") + "ff" + hex("\(g)/p0/swept")
        try await execute(store, """
            UPDATE $S.entries SET key = decode('\(notUTF8)', 'hex')
             WHERE key = convert_to('onceledger.journal/g\(g)x/p0/swept', 'UTF8')
            """)

        let retention = MemoRetention(succeeded: .zero, failed: nil, cancelled: .zero)
        let result = try await ledger.sweepMemo(now: 2_000, retention: retention)
        #expect(result.runs == [MemoRun(run: "swept"): [swept.generation], MemoRun(run: "also-swept"): [alsoSwept.generation]])

        var before: [String: EntryInfo] = [:]
        for key in swept.keys + alsoSwept.keys + ended.keys + live.keys + [pendingKey] + kept where key != "onceledger.journal/g\(g)x/p0/swept" {
            before[key] = try #require(try await store.entry(key), "\(key) has an entry before compaction")
        }
        #expect(before[pendingKey]?.status == .pendingUnknown)
        #expect(try await rows(store, hex: notUTF8) == 1)

        try await store.compact(nowMilliseconds: 3_000)

        for key in swept.keys + alsoSwept.keys {
            #expect(try await store.entry(key) == nil, "\(key): the effect of a swept generation is dropped")
        }
        for key in ended.keys + live.keys + [pendingKey] + kept where key != "onceledger.journal/g\(g)x/p0/swept" {
            #expect(try await store.entry(key) == before[key], "\(key) is kept as it was")
        }
        #expect(try await rows(store, hex: notUTF8) == 1, "a key that is not UTF-8 is kept")

        // Claimed again by hand, a dropped key starts past the floor: a token never given.
        let old = try #require(before[swept.keys[0]])
        let again = try granted(try await store.claim(claimRequest(IdempotencyKey(swept.keys[0]))))
        #expect(again.generation > old.generation)
        let floor = before.values.map(\.generation).max() ?? 0
        #expect(again.generation > floor, "the floor rose past every dropped generation")
        let token = EffectToken.derive(key: swept.keys[0], generation: again.generation, scope: ledger.tokenScope)
        #expect(token != old.token)

        // The live run goes on: its effects replay from their entries, nothing runs again.
        let journal = try await ledger.journal(run: "live")
        #expect(journal.generation == live.generation)
        let replayed = try await journal.effect("mail.send", input: "live") { _ in "ran again" }
        #expect(replayed == live.keys[0])
    }

    /// Compaction of a schema without the memo ever used, and with journal-shaped keys only:
    /// nothing handed out, so nothing under the prefix names a dropped generation.
    @Test func withNoGenerationHandedOutNothingUnderThePrefixIsDropped() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        let key = "onceledger.journal/g1/p0/r"
        let claim = try granted(try await store.claim(claimRequest(IdempotencyKey(key))))
        _ = try await store.complete(claim, receipt: Array("\"r\"".utf8), timeMilliseconds: 1_000)
        let before = try await store.entry(key)
        #expect(before?.status == .done)
        try await store.compact(nowMilliseconds: 3_000)
        #expect(try await store.entry(key) == before)
    }
}
