// Proves what an outside review of the journal's effects, versioning (`patched`), truncation,
// limits and export found broken, on the file store and the in-memory one; each test failed
// before the fix committed with it, and its comment says what it was.
import Foundation
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerTestSupport
import Synchronization
import Testing
import OnceLedgerStoreContract

@Suite struct JournalReviewTests {
    // MARK: patched(id) asked more than once

    /// A run recorded by the code before a change (two steps, then the process died) is run
    /// again by code that guards two places with the same patch id. The first ask answers false
    /// (the position holds the old step: the run predates the patch); the second ask, at the
    /// free position after what was recorded, used to record the marker and answer true — the
    /// run took the old path in one place and the new one in the other.
    @Test(arguments: BackendKind.allCases)
    func aPatchAskedTwiceInOneRunAnswersWhatItAnsweredFirst(kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        let old = try await ledger.journal(run: "r")
        _ = try await old.step("format", input: 1) { "old format" }
        _ = try await old.step("send", input: 1) { "sent" }
        ledger = try harness.reopen(ledger)

        let changed = try await ledger.journal(run: "r")
        let first = try await changed.patched("new-format")
        #expect(first == false)
        _ = try await changed.step("format", input: 1) { "old format" }
        _ = try await changed.step("send", input: 1) { "sent" }
        let second = try await changed.patched("new-format")
        #expect(second == first, "patched(\"new-format\") answered \(first), then \(second) in the same run")
        // And a replay of that run after a restart answers the same way and reaches every position.
        ledger = try harness.reopen(ledger)
        let replay = try await ledger.journal(run: "r")
        #expect(try await replay.patched("new-format") == false)
        _ = try await replay.step("format", input: 1) { "old format" }
        _ = try await replay.step("send", input: 1) { "sent" }
        #expect(try await replay.patched("new-format") == false)
        #expect(try await replay.unreachedPositions().isEmpty)
        try ledger.close()
    }

    /// A new run answers true at each ask; a later code change that adds a third ask of the same id
    /// at a position the run recorded with a step answers true there too (the run took the new
    /// path), and a replay answers as the first run did.
    @Test(arguments: BackendKind.allCases)
    func aPatchAskedAgainInANewRunStaysTrue(kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        let run = try await ledger.journal(run: "r")
        #expect(try await run.patched("p"))
        _ = try await run.step("a") { "a" }
        #expect(try await run.patched("p"))
        _ = try await run.step("b") { "b" }
        ledger = try harness.reopen(ledger)

        let replay = try await ledger.journal(run: "r")
        #expect(try await replay.patched("p"))
        _ = try await replay.step("a") { "a" }
        #expect(try await replay.patched("p"))
        #expect(try await replay.patched("p"), "a third ask of the same id, added later, answers what the run answered")
        _ = try await replay.step("b") { "b" }
        #expect(try await replay.unreachedPositions().isEmpty)
        try ledger.close()
    }

    // MARK: An effect of a generation that ended elsewhere

    /// FORMAT §10.3: "a put to an ended generation is refused, so a journal whose generation ended
    /// elsewhere starts no effect". An operator cancels a running run (`finishRun`) to stop it; the
    /// workflow, still running, reaches an effect at position 1: the charge used to happen (its
    /// `once` entry done), and only the journal entry after it was refused.
    @Test(arguments: BackendKind.allCases)
    func anEffectOfARunThatWasEndedElsewhereDoesNotStart(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        let journal = try await ledger.journal(run: "order-1")
        _ = try await journal.step("llm.plan", input: 1) { "charge 42" }
        try await ledger.finishRun("order-1", status: .cancelled)
        let charges = Counter()
        await #expect { _ = try await journal.effect("payment.charge", input: 42) { _ -> String in
            charges.increment()
            return "charged"
        } } throws: { ($0 as? LedgerError)?.code == .runEnded }
        #expect(charges.count == 0, "the cancelled run charged the card \(charges.count) times")
        let done = try await ledger.entries().filter { $0.key.hasPrefix("onceledger.journal/") }
        #expect(done.isEmpty, "a once entry of the cancelled run: \(done.map(\.key))")
        try ledger.close()
    }
}
