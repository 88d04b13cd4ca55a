// Proves that a journal effect's `once` entry goes with its run (`Spec/FORMAT.md` §9.5, §10.3) on
// both stores: once the run generation's memo is swept, the next compaction drops its done effect
// entries (the disk stays bounded under a steady workload of runs with effects), while the effect
// entries of a live run, of an ended run not swept yet, a pending-unknown effect entry of a swept
// run, and keys under the reserved prefix that do not name a generation, stay. A dropped effect's
// key, asked again by hand, gets a token never handed out (the generation floor rose past it); the
// same run id started again gets a new generation and new keys.
import Foundation
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import OnceLedgerStoreContract
import Testing

private func effectKeys(_ ledger: Ledger) async throws -> [String] {
    try await ledger.entries().map(\.key).filter { $0.hasPrefix("onceledger.journal/") }.sorted()
}

/// `onceBytes` on a key under the reserved prefix, as the journal may claim one (a ledger
/// written before the prefix was refused may hold such keys of a user's).
@discardableResult
private func claimReserved(_ ledger: Ledger, _ key: String, _ receipt: [UInt8]) async throws -> OnceOutcome<[UInt8]> {
    try await ledger.journalEffectOnce(IdempotencyKey(key), as: [UInt8].self) { _ in receipt }
}

/// Runs a two-step journal (a step, then an effect) for `run`, and finishes it if asked.
@discardableResult
private func runJournal(_ ledger: Ledger, _ run: String, finish: Bool) async throws -> Journal {
    let journal = try await ledger.journal(run: run)
    _ = try await journal.step("plan", input: run) { "plan of \(run)" }
    _ = try await journal.effect("charge", input: run) { _ in "charged \(run)" }
    if finish { _ = try await journal.finish(.succeeded) }
    return journal
}

@Suite struct JournalEffectRetentionTests {
    @Test(arguments: BackendKind.allCases)
    func theEffectsOfASweptRunAreDroppedAtCompaction(kind: BackendKind) async throws {
        let clock = ManualClock(1_000_000)
        let harness = Harness(kind, clock: clock)
        var ledger = try harness.open()
        try await runJournal(ledger, "swept", finish: true)
        try await runJournal(ledger, "ended", finish: true)
        try await runJournal(ledger, "live", finish: false)
        let before = try await effectKeys(ledger)
        #expect(before.count == 3)
        let sweptKey = try #require(before.first { $0.hasSuffix("/swept") })

        // Only "swept" is past the window: "ended" ends later.
        clock.advance(10_000)
        let laterRun = try await ledger.journal(run: "ended-later")
        _ = try await laterRun.effect("charge") { _ in "x" }
        _ = try await laterRun.finish(.succeeded)
        let result = try await ledger.sweepMemo(now: clock.now, retention: MemoRetention(.milliseconds(10_000)))
        #expect(result.runs.keys.map(\.run).sorted() == ["ended", "swept"])

        // Both swept runs' effects go; the live run's and the later run's stay.
        try await ledger.compact()
        let after = try await effectKeys(ledger)
        #expect(after.count == 2)
        #expect(after.contains { $0.hasSuffix("/live") })
        #expect(after.contains { $0.hasSuffix("/ended-later") })
        let floor = try #require(ledger.logStore?.generationFloor)
        #expect(floor >= 1, "the dropped effect entries were at generation 0")

        // After a restart too; and the dropped key, asked by hand, gets a fresh token.
        ledger = try harness.reopen(ledger)
        #expect(try await effectKeys(ledger) == after)
        let outcome = try await claimReserved(ledger, sweptKey, Array("by hand".utf8))
        #expect(outcome.wasPerformed)
        #expect(outcome.entry.generation >= floor)
        try ledger.close()
    }

    @Test(arguments: BackendKind.allCases)
    func aPendingEffectOfASweptRunStays(kind: BackendKind) async throws {
        let clock = ManualClock(1_000_000)
        let harness = Harness(kind, clock: clock)
        let ledger = try harness.open()
        let journal = try await ledger.journal(run: "crashed")
        struct Lost: Error {}
        await #expect(throws: (any Error).self) {
            _ = try await journal.effect("charge") { _ -> String in throw Lost() }
        }
        let pending = try await ledger.pendingEntries().map(\.key).filter { $0.hasPrefix("onceledger.journal/") }
        try #require(pending.count == 1, "an effect whose outcome is unknown stays pending")
        _ = try await ledger.finishRun("crashed", status: .failed)
        clock.advance(1)
        _ = try await ledger.sweepMemo(now: clock.now, retention: MemoRetention(.zero))
        try await ledger.compact()
        #expect(try await ledger.pendingEntries().map(\.key) == pending, "an operator still has to resolve it")
        try ledger.close()
    }

    @Test(arguments: BackendKind.allCases)
    func keysUnderThePrefixThatNameNoSweptGenerationStay(kind: BackendKind) async throws {
        let clock = ManualClock(1_000_000)
        let harness = Harness(kind, clock: clock)
        let ledger = try harness.open()
        try await runJournal(ledger, "swept", finish: true)
        _ = try await ledger.sweepMemo(now: clock.now, retention: MemoRetention(.zero))
        let odd = ["onceledger.journal/g/p0/x", "onceledger.journal/g01/p0/x", "onceledger.journal/g1x/p0/x",
                   "onceledger.journal/g99999999999999999999/p0/x", "onceledger.journal/g1", "onceledger.journal/g4000/p0/x",
                   "onceledger.journal/g0/p0/x"]
        for key in odd { try await claimReserved(ledger, key, [1]) }
        try await ledger.compact()
        // The run's own effect is gone; the hand-made keys stay (no generation, a malformed
        // one, or one the memo never named).
        #expect(try await effectKeys(ledger) == odd.sorted())
        try ledger.close()
    }

    /// A key under `onceledger.journal/` is the journal's: `once` refuses it from a caller (a
    /// compaction would drop it with a swept run and its effect could run again), also from
    /// inside a journal effect's body; the journal's own effects still claim theirs.
    @Test(arguments: BackendKind.allCases)
    func keysUnderTheJournalsPrefixAreRefusedToCallers(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        defer { try? ledger.close() }
        let runs = Counter()
        for key in ["onceledger.journal/g1/p0/run", "onceledger.journal/", "onceledger.journal/anything"] {
            let refused = await ledgerError { try await ledger.once(IdempotencyKey(key), as: String.self) { _ in runs.increment(); return "x" } }
            #expect(refused?.code == .invalidArgument, "\(key)")
            #expect(refused?.message.contains("reserved for the journal's effects") == true)
            let refusedBytes = await ledgerError { try await ledger.onceBytes(IdempotencyKey(key)) { _ in runs.increment(); return [1] } }
            #expect(refusedBytes?.code == .invalidArgument)
        }
        #expect(runs.count == 0)
        #expect(try await ledger.entryCount() == 0, "nothing written")
        // Near misses are ordinary keys.
        for key in ["onceledger.journal", "onceledger.journalx/g1", "Onceledger.journal/g1", "x/onceledger.journal/g1"] {
            #expect(try await ledger.onceBytes(IdempotencyKey(key)) { _ in [1] }.wasPerformed, "\(key)")
        }
        // The journal's effect claims its key; a key its body claims is the user's, refused there too.
        let journal = try await ledger.journal(run: "r")
        let inner = try await journal.effect("charge") { _ -> String in
            let refused = await ledgerError { try await ledger.onceBytes("onceledger.journal/g1/p9/r") { _ in [1] } }
            return refused?.code.rawValue ?? "not refused"
        }
        #expect(inner == LedgerError.Code.invalidArgument.rawValue)
        #expect(try await effectKeys(ledger).count == 1)
    }

    /// The compaction reads the memo's generations before it takes the entries: a generation
    /// handed out and not written yet must count as held, or an effect of it completed between
    /// the two would be taken for a swept run's.
    @Test func aGenerationHandedOutAndNotWrittenCountsAsHeld() throws {
        var table = MemoTable()
        let run = MemoTable.runKey(MemoRun(namespace: "", run: "new"))
        let handed = try table.currentGeneration(run)
        #expect(table.generationNumbers().contains(handed))
        #expect(table.highestGeneration == handed)
        // Its first record makes it an ordinary generation; its sweep removes it.
        func apply(_ body: RecordBody) throws {
            let record = LogRecord(body)
            try record.body.withUnsafeBytes { try table.apply(kind: record.kind, body: $0) }
        }
        try apply(.memoEntry(.init(namespace: "", run: "new", generation: handed, step: "s", name: "n",
                                   inputDigest: RecordBody.noInputDigest, timeMilliseconds: 1, value: [1])))
        #expect(table.generationNumbers() == [handed])
        try apply(.runEnd(.init(namespace: "", run: "new", generation: handed, status: .succeeded, timeMilliseconds: 2)))
        try apply(.memoSweep(.init(namespace: "", run: "new", generation: handed, timeMilliseconds: 3)))
        #expect(table.generationNumbers().isEmpty, "swept: no longer held")
        #expect(table.highestGeneration == handed)
    }

    @Test func theGenerationOfAnEffectKeyIsReadStrictly() {
        func parse(_ key: String) -> UInt64? {
            Array(key.utf8).withUnsafeBytes { LedgerState.journalEffectGeneration($0) }
        }
        #expect(parse("onceledger.journal/g7/p0/run") == 7)
        #expect(parse("onceledger.journal/g18446744073709551615/p3/e2/run") == UInt64.max)
        #expect(parse("onceledger.journal/g0/p0/run") == nil, "generations start at 1")
        #expect(parse("onceledger.journal/g18446744073709551616/p0/run") == nil)
        #expect(parse("onceledger.journal/g07/p0/run") == nil)
        #expect(parse("onceledger.journal/g/p0/run") == nil)
        #expect(parse("onceledger.journal/g7") == nil)
        #expect(parse("onceledger.journal/g-7/p0") == nil)
        #expect(parse("onceledger.journal/p7/g7/") == nil)
        #expect(parse("order-7") == nil)
    }
}
