// Proves the replay journal's semantics (`Ledger.journal`, `Journal`) on both stores — each test
// runs on a FileStore in a temp directory and on an InMemoryStore, reopened like a restarted
// process: a replay returns every recorded output (steps, now, uuid, random, effects) without
// running a body again; an effect runs through `once` (its token is stable; a crash inside it is
// pending-unknown, never silently re-run); every divergence case (renamed step, changed input,
// inserted, removed and reordered steps) throws `.journalDivergence` naming the position and both
// sides field by field, and writes nothing; `patched` sends old runs down the old path and new
// runs down the new one; per-run limits throw before writing; the journal is the memo's (the
// empty step is refused to memo users, a finished run's journal is swept with its memo, a reused
// run id starts an empty journal); steps called concurrently are refused; an operator truncation
// frees positions with an audited entry each and a new epoch, so changed code records anew; an
// effect done but not journaled (a crash between) is recorded from its done entry, or, asked for
// differently, is a divergence. Time is a manual
// clock; nothing sleeps.
import Foundation
@testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import Testing
import OnceLedgerStoreContract

private struct Summary: Codable, Equatable, Sendable {
    var text: String
}

private struct Prompt: Codable, Sendable {
    var text: String
}

/// A workflow of five journaled steps; `bodies` counts the bodies that ran.
private func agent(_ journal: Journal, _ bodies: Counter, prompt: String = "summarize order 42") async throws -> [String] {
    let summary = try await journal.step("llm.summarize", input: Prompt(text: prompt)) {
        bodies.increment()
        return Summary(text: "summary of \(prompt)")
    }
    let at = try await journal.nowMilliseconds()
    let id = try await journal.uuid()
    let draw = try await journal.random()
    let sent = try await journal.effect("mail.send", input: summary) { effect in
        bodies.increment()
        return "sent with token \(effect.token)"
    }
    return [summary.text, String(at), id.uuidString, String(draw), sent]
}

private func expectDivergence(_ reason: JournalDivergence.Reason, position: UInt64,
                              _ body: () async throws -> Void) async -> JournalDivergence? {
    do {
        try await body()
        Issue.record("expected a \(reason) divergence at position \(position)")
        return nil
    } catch let error as LedgerError {
        #expect(error.code == .journalDivergence, "\(error)")
        #expect(error.journalDivergence?.reason == reason, "\(error)")
        #expect(error.journalDivergence?.position == position, "\(error)")
        return error.journalDivergence
    } catch {
        Issue.record("unexpected \(error)")
        return nil
    }
}

@Suite struct JournalTests {
    @Test(arguments: BackendKind.allCases)
    func aReplayReturnsEveryRecordedOutputWithoutRunningABody(kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        let bodies = Counter()
        let first = try await agent(try await ledger.journal(run: "order-42"), bodies)
        #expect(bodies.count == 2)

        harness.clock.advance(60_000)
        ledger = try harness.reopen(ledger)
        let journal = try await ledger.journal(run: "order-42")
        let replayed = try await agent(journal, bodies)
        #expect(replayed == first, "a replay returns what the first run returned, the clock and the random draws included")
        #expect(bodies.count == 2, "no body ran again")
        #expect(journal.position == 5)
        try await journal.finish(.succeeded)

        let records = try await ledger.journalRecords(run: "order-42")
        #expect(records.map(\.entry.kind) == [.step, .now, .uuid, .random, .effect])
        #expect(records.map(\.entry.nameText) == ["llm.summarize", "now", "uuid", "random", "mail.send"])
        #expect(records[0].inputDigest == SHA256.hash(try CanonicalEncoding.encode(Prompt(text: "summarize order 42"))))
        let effects = try await ledger.entries().filter { $0.key.hasPrefix("onceledger.journal/") }
        #expect(effects.count == 1 && effects[0].status == .done, "the effect is an entry of once")
        #expect(effects.first?.key.hasSuffix("/p4/order-42") == true, "\(effects)")
        try ledger.close()
    }

    @Test(arguments: BackendKind.allCases)
    func anEffectThatThrewIsPendingUnknownAndNeverRunsAgainSilently(kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        let runs = Counter()
        struct Timeout: Error {}
        let journal = try await ledger.journal(run: "r")
        await #expect(throws: LedgerError.self) {
            _ = try await journal.effect("charge", input: 42) { _ -> String in
                runs.increment()
                throw Timeout()
            }
        }
        #expect(journal.position == 0, "nothing recorded: the position stays")

        ledger = try harness.reopen(ledger)
        let again = try await ledger.journal(run: "r")
        do {
            _ = try await again.effect("charge", input: 42) { _ -> String in
                runs.increment()
                return "charged"
            }
            Issue.record("a pending effect ran again")
        } catch let error as LedgerError {
            #expect(error.code == .pendingUnknown, "\(error)")
        }
        #expect(runs.count == 1)
        // A reconcile policy answers it; the journal records the answer.
        let output = try await again.effect("charge", input: 42, whenPending: .reconcile { _ in .happened("charged before") }) { _ in
            runs.increment()
            return "charged"
        }
        #expect(output == "charged before")
        #expect(runs.count == 1)
        ledger = try harness.reopen(ledger)
        let third = try await ledger.journal(run: "r")
        #expect(try await third.effect("charge", input: 42) { _ -> String in runs.increment(); return "x" } == "charged before")
        #expect(runs.count == 1)
        try ledger.close()
    }

    @Test(arguments: BackendKind.allCases)
    func everyKindOfCodeChangeIsADivergenceNamingBothSides(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        func record(_ run: String) async throws {
            let journal = try await ledger.journal(run: run)
            _ = try await journal.step("llm.summarize", input: "p") { "s" }
            _ = try await journal.step("llm.classify", input: "s") { "c" }
            _ = try await journal.step("llm.reply", input: "c") { "r" }
        }
        for run in ["renamed", "input", "inserted", "removed", "reordered"] { try await record(run) }
        let before = try harness.logRecords().count

        // Renamed step.
        var journal = try await ledger.journal(run: "renamed")
        let renamed = await expectDivergence(.mismatch, position: 0) {
            _ = try await journal.step("llm.translate", input: "p") { "t" }
        }
        #expect(renamed?.recorded?.name == "llm.summarize")
        #expect(renamed?.requested?.name == "llm.translate")
        #expect(renamed?.run == "renamed")
        let text = renamed?.description ?? ""
        #expect(text.contains("recorded step 0 was `llm.summarize` with input digest"), "\(text)")
        #expect(text.contains("the code now asks for step `llm.translate`"), "\(text)")
        #expect(text.contains("name `llm.summarize` → `llm.translate`"), "\(text)")

        // Changed input.
        journal = try await ledger.journal(run: "input")
        let changed = await expectDivergence(.mismatch, position: 0) {
            _ = try await journal.step("llm.summarize", input: "another prompt") { "s" }
        }
        #expect(changed?.recorded?.inputDigest != changed?.requested?.inputDigest)
        #expect(changed?.description.contains("(differs in: input digest ") == true, "\(changed?.description ?? "")")

        // Inserted step.
        journal = try await ledger.journal(run: "inserted")
        _ = try await journal.step("llm.summarize", input: "p") { "s" }
        let inserted = await expectDivergence(.mismatch, position: 1) {
            _ = try await journal.nowMilliseconds()
        }
        #expect(inserted?.recorded?.kind == .step && inserted?.requested?.kind == .now)

        // Reordered steps.
        journal = try await ledger.journal(run: "reordered")
        _ = try await journal.step("llm.summarize", input: "p") { "s" }
        let reordered = await expectDivergence(.mismatch, position: 1) {
            _ = try await journal.step("llm.reply", input: "c") { "r" }
        }
        #expect(reordered?.recorded?.name == "llm.classify" && reordered?.requested?.name == "llm.reply")

        // Removed step: the code finishes early; finishing reports what it never reached.
        journal = try await ledger.journal(run: "removed")
        _ = try await journal.step("llm.summarize", input: "p") { "s" }
        _ = try await journal.step("llm.classify", input: "s") { "c" }
        #expect(try await journal.unreachedPositions().map(\.position) == [2])
        let removed = await expectDivergence(.unreached, position: 2) {
            try await journal.finish(.succeeded)
        }
        #expect(removed?.unreachedPositions == [2])
        #expect(removed?.recorded?.name == "llm.reply")
        #expect(try await ledger.runs(run: "removed").first?.status == nil, "the run was not finished")

        #expect(try harness.logRecords().count == before, "no divergence wrote anything")
        try ledger.close()
    }

    @Test(arguments: BackendKind.allCases)
    func patchedSendsOldRunsDownTheOldPathAndNewRunsDownTheNewOne(kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        // The old code, before the change.
        let old = try await ledger.journal(run: "old")
        _ = try await old.step("fetch") { 1 }
        _ = try await old.step("round.old") { 2 }

        // The new code.
        func newCode(_ journal: Journal) async throws -> String {
            _ = try await journal.step("fetch") { 1 }
            if try await journal.patched("fix-rounding") {
                _ = try await journal.step("round.new") { 3 }
                return "new"
            }
            _ = try await journal.step("round.old") { 2 }
            return "old"
        }
        ledger = try harness.reopen(ledger)
        let oldReplay = try await ledger.journal(run: "old")
        #expect(try await newCode(oldReplay) == "old")
        try await oldReplay.finish(.succeeded)
        let fresh = try await ledger.journal(run: "new")
        #expect(try await newCode(fresh) == "new")
        ledger = try harness.reopen(ledger)
        let newReplay = try await ledger.journal(run: "new")
        #expect(try await newCode(newReplay) == "new")
        try await newReplay.finish(.succeeded)
        #expect(try await ledger.journalRecords(run: "new").map(\.entry.kind) == [.step, .patched, .step])
        try ledger.close()
    }

    @Test(arguments: BackendKind.allCases)
    func perRunLimitsThrowBeforeAnythingIsWritten(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        let journal = try await ledger.journal(run: "r", limits: JournalLimits(entriesMax: 2, bytesMax: 1 << 20))
        _ = try await journal.step("a") { 1 }
        _ = try await journal.step("b") { 2 }
        do {
            _ = try await journal.step("c") { 3 }
            Issue.record("a third entry was allowed")
        } catch let error as LedgerError {
            #expect(error.code == .limitExceeded && error.limit == "journalEntriesMax", "\(error)")
        }
        let small = try await ledger.journal(run: "s", limits: JournalLimits(bytesMax: 100))
        _ = try await small.step("a") { "x" }
        do {
            _ = try await small.step("b") { String(repeating: "y", count: 200) }
            Issue.record("a step over the byte limit was written")
        } catch let error as LedgerError {
            #expect(error.code == .limitExceeded && error.limit == "journalBytesMax", "\(error)")
        }
        #expect(try await ledger.journalRecords(run: "r").count == 2)
        #expect(try await ledger.journalRecords(run: "s").count == 1)
        try ledger.close()
    }

    @Test(arguments: BackendKind.allCases)
    func theJournalIsTheMemosAndSharesItsLifecycle(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        await #expect(throws: LedgerError.self) { _ = try await ledger.memo(run: "r", step: "") }

        let journal = try await ledger.journal(run: "r")
        _ = try await journal.step("a") { 1 }
        let memo = try await ledger.memo(run: "r", step: "user-step")
        #expect(memo.generation == journal.generation, "the journal and the memo of a run share its generation")
        try await journal.finish(.succeeded)
        do {
            _ = try await journal.step("b") { 2 }
            Issue.record("a finished run recorded a step")
        } catch let error as LedgerError {
            #expect(error.code == .runEnded, "\(error)")
        }
        let reused = try await ledger.journal(run: "r")
        #expect(reused.generation != journal.generation)
        #expect(try await reused.unreachedPositions().isEmpty, "a reused run id starts an empty journal")

        harness.clock.advance(10_000)
        let swept = try await ledger.sweepMemo(retention: MemoRetention(.seconds(1)))
        #expect(swept.runs[MemoRun(run: "r")] == [journal.generation])
        #expect(try await ledger.journalRecords(run: "r", generation: journal.generation).isEmpty)
        try ledger.close()
    }

    @Test(arguments: BackendKind.allCases)
    func stepsCalledConcurrentlyAreRefused(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        let journal = try await ledger.journal(run: "r")
        let entered = Gate()
        let release = Gate()
        let first = Task {
            try await journal.step("slow") { () async -> Int in
                entered.open()
                await release.wait()
                return 1
            }
        }
        await entered.wait()
        do {
            _ = try await journal.step("other") { 2 }
            Issue.record("a second step ran while the first one did")
        } catch let error as LedgerError {
            #expect(error.code == .invalidArgument, "\(error)")
        }
        release.open()
        #expect(try await first.value == 1)
        #expect(try await journal.step("other") { 2 } == 2)
        try ledger.close()
    }

    @Test(arguments: BackendKind.allCases)
    func anOperatorTruncationFreesPositionsAndIsRecorded(kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        let old = try await ledger.journal(run: "r")
        _ = try await old.step("a") { 1 }
        _ = try await old.step("b.old") { 2 }
        _ = try await old.effect("notify", input: 2) { _ in "old notice" }
        ledger = try harness.reopen(ledger)
        let changed = try await ledger.journal(run: "r")
        _ = try await changed.step("a") { 1 }
        _ = await expectDivergence(.mismatch, position: 1) { _ = try await changed.step("b.new") { 3 } }

        let truncation = try await ledger.truncateJournal(run: "r", from: 1, actor: "ops@example", reason: "b changed on purpose")
        #expect(truncation.positions == [1, 2])
        #expect(truncation.dropped.map(\.entry.nameText) == ["b.old", "notify"])
        let records = try await ledger.journalRecords(run: "r")
        #expect(records.dropFirst().allSatisfy { $0.entry.kind == .truncated && $0.entry.nameText == "ops@example" })

        ledger = try harness.reopen(ledger)
        let notices = Counter()
        let again = try await ledger.journal(run: "r")
        _ = try await again.step("a") { 1 }
        #expect(try await again.step("b.new") { 3 } == 3)
        #expect(try await again.effect("notify", input: 3) { _ in notices.increment(); return "new notice" } == "new notice")
        try await again.finish(.succeeded)
        #expect(notices.count == 1)
        #expect(try await ledger.journalRecords(run: "r").map(\.entry.epoch) == [0, 1, 1, 1])
        let effects = try await ledger.entries().filter { $0.key.hasPrefix("onceledger.journal/") }.map(\.key)
        #expect(effects.count == 2 && effects.contains { $0.contains("/p2/e1/") }, "\(effects)")
        try ledger.close()
    }

    /// What a crash between an effect's completion and its journal entry leaves: the effect done
    /// in the ledger, its position free.
    private static func effectDoneButNotJournaled(_ ledger: Ledger, _ journal: Journal, position: UInt64,
                                                  name: String, input: some Encodable) async throws {
        let digest = SHA256.hash(try CanonicalEncoding.encode(input))
        let key = try IdempotencyKey(journal.effectKey(position: position, epoch: 0), name: "onceledger.journal.effect",
                                     params: Journal.EffectParams(name: name, input: Hex.string(digest)))
        try await ledger.journalEffectOnce(key, as: String.self) { _ in "sent before the crash" }
    }

    @Test(arguments: BackendKind.allCases)
    func anEffectDoneButNotJournaledIsRecordedOrCaughtAsDivergence(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        let runs = Counter()
        // The same effect asked again: the ledger's done entry answers, nothing runs again.
        let same = try await ledger.journal(run: "same")
        try await Self.effectDoneButNotJournaled(ledger, same, position: 0, name: "mail.send", input: 1)
        #expect(try await same.effect("mail.send", input: 1) { _ -> String in runs.increment(); return "again" }
                == "sent before the crash")
        #expect(runs.count == 0)
        #expect(try await ledger.journalRecords(run: "same").map(\.entry.nameText) == ["mail.send"])
        // Another effect asked at that position (the code changed in between): a divergence.
        let changed = try await ledger.journal(run: "changed")
        try await Self.effectDoneButNotJournaled(ledger, changed, position: 0, name: "mail.send", input: 1)
        let divergence = await expectDivergence(.mismatch, position: 0) {
            _ = try await changed.effect("sms.send", input: 1) { _ -> String in runs.increment(); return "sms" }
        }
        #expect(divergence?.recorded?.name.contains("not yet journaled") == true, "\(String(describing: divergence))")
        #expect(runs.count == 0)
        #expect(try await ledger.journalRecords(run: "changed").isEmpty)
        try ledger.close()
    }
}
