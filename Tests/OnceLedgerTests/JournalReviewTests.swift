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

    // MARK: A truncation that stops part way

    /// FORMAT §10.4: "a crash in the middle of a truncation leaves a prefix of the positions
    /// freed, and running it again frees the rest". If the workflow runs before the operator
    /// runs it again, the run records new outputs at the freed positions and then replays the
    /// *old* outputs of the positions after them: here the clock goes backwards (a fresh `now`,
    /// then the one recorded before the truncation). Whatever the truncation managed to write,
    /// the run must read as one timeline: once a position is fresh, every later one is too.
    @Test(arguments: BackendKind.allCases)
    func aTruncationThatStopsPartWayLeavesNoOldOutputAfterAFreedPosition(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let clock = harness.clock
        clock.set(1_000)
        let opened = try harness.open()
        let failing = FailingTruncationStore(opened.store, failAt: 2)
        let ledger = Ledger(store: failing, clock: clock.function)
        let old = try await ledger.journal(run: "r")
        _ = try await old.step("plan") { "plan" }
        for name in ["t1", "t2", "t3"] { _ = try await old.nowMilliseconds(name) }

        // The second truncation write fails (a full disk, a killed process).
        await #expect(throws: (any Error).self) {
            try await ledger.truncateJournal(run: "r", from: 1, actor: "ops", reason: "new clock code")
        }
        // The workflow runs before the operator notices.
        clock.set(5_000)
        let again = try await ledger.journal(run: "r")
        _ = try await again.step("plan") { "plan" }
        var times: [UInt64] = []
        for name in ["t1", "t2", "t3"] { times.append(try await again.nowMilliseconds(name)) }
        if let fresh = times.firstIndex(of: 5_000) {
            #expect(times[fresh...].allSatisfy { $0 == 5_000 },
                    "positions 1…3 returned \(times): a fresh output, then one recorded before the truncation")
        }
        try ledger.close()
    }

    // MARK: An output JSON cannot hold

    /// A step whose output does not encode (a Double NaN): a typed error, like the memo's, not
    /// the encoder's own error.
    @Test(arguments: BackendKind.allCases)
    func aStepOutputThatDoesNotEncodeIsATypedError(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        let journal = try await ledger.journal(run: "r")
        do {
            _ = try await journal.step("score") { Double.nan }
            Issue.record("a NaN output was recorded")
        } catch let error as LedgerError {
            #expect(error.code == .invalidArgument, "\(error)")
        } catch {
            Issue.record("an untyped error: \(error)")
        }
        #expect(try await ledger.journalRecords(run: "r").isEmpty)
        #expect(journal.position == 0)
        try ledger.close()
    }
    // MARK: The byte limit, exactly reached

    /// FORMAT §10.3: "a step over either [limit] is refused with `limit-exceeded` before anything
    /// is written". A run whose journal bytes are exactly at `bytesMax` cannot record anything
    /// more (every value is at least a frame, a name and one output byte): an effect there used to
    /// run — the card charged, its `once` entry done — and only then be refused, and a step to pay
    /// for its call first.
    @Test(arguments: BackendKind.allCases)
    func aStepThatCannotFitTheByteLimitDoesNotRun(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        let first = JournalEntry(kind: .step, position: 0, name: "plan", output: Array("\"plan\"".utf8)).encode().count
        let journal = try await ledger.journal(run: "r", limits: JournalLimits(bytesMax: first))
        _ = try await journal.step("plan") { "plan" }
        let bodies = Counter()
        await #expect { _ = try await journal.effect("payment.charge", input: 42) { _ -> String in
            bodies.increment()
            return "charged"
        } } throws: { ($0 as? LedgerError)?.code == .limitExceeded && ($0 as? LedgerError)?.limit == "journalBytesMax" }
        await #expect { _ = try await journal.step("llm.reply") { () -> String in
            bodies.increment()
            return "paid for"
        } } throws: { ($0 as? LedgerError)?.code == .limitExceeded }
        #expect(bodies.count == 0, "\(bodies.count) bodies ran at a full byte limit")
        let done = try await ledger.entries().filter { $0.key.hasPrefix("onceledger.journal/") }
        #expect(done.isEmpty, "a done once entry is left behind: \(done.map(\.key))")
        #expect(try await ledger.journalRecords(run: "r").count == 1)
        // A value that fills the limit exactly records (the limit is inclusive).
        let roomy = try await ledger.journal(run: "s", limits: JournalLimits(bytesMax: first))
        #expect(try await roomy.step("plan") { "plan" } == "plan")
        try ledger.close()
    }

    // MARK: The export reader

    /// An `inputDigest` that is neither a string nor null (a hand-edited export) used to be read as
    /// no digest at all; it is refused naming the line.
    @Test func anExportWhoseInputDigestIsNotAStringIsRefused() throws {
        let text = """
            {"format":"onceledger-journal","version":1,"namespace":"","run":"r","generation":1,"status":null,"endTime":null}
            {"position":0,"kind":"step","name":"a","epoch":0,"inputDigest":12,"time":5,"output":"x"}

            """
        #expect { try JournalExport(jsonLines: text) } throws: { error in
            let error = error as? LedgerError
            return error?.code == .invalidArgument && error?.message.contains("line 2") == true
        }
    }

    /// A header `endTime` that is not milliseconds or null (`"yesterday"`, `-5`) used to be read as
    /// no end time: the replay's clock then silently took the last record's time instead.
    @Test(arguments: ["\"yesterday\"", "-5", "1.5"])
    func anExportWhoseEndTimeIsNotMillisecondsIsRefused(endTime: String) throws {
        let text = """
            {"format":"onceledger-journal","version":1,"namespace":"","run":"r","generation":1,"status":"succeeded","endTime":\(endTime)}
            {"position":0,"kind":"step","name":"a","epoch":0,"inputDigest":null,"time":5,"output":"x"}

            """
        #expect { try JournalExport(jsonLines: text) } throws: { error in
            let error = error as? LedgerError
            return error?.code == .invalidArgument && error?.message.contains("line 1") == true
        }
    }

    // MARK: A divergence message names what differs

    /// The journal compares names byte for byte; a step renamed to the same text in another Unicode
    /// form (NFC `café` recorded, NFD `café` asked for — one editor or another) is a divergence, and
    /// its message listed no difference at all: "(differs in: )".
    @Test(arguments: BackendKind.allCases)
    func aDivergenceOfNamesThatDifferOnlyInTheirUnicodeFormSaysSo(kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        let recorded = try await ledger.journal(run: "r")
        _ = try await recorded.step("caf\u{E9}") { "x" }
        ledger = try harness.reopen(ledger)
        let again = try await ledger.journal(run: "r")
        do {
            _ = try await again.step("cafe\u{301}") { "y" }
            Issue.record("a renamed step replayed")
        } catch let error as LedgerError {
            #expect(error.code == .journalDivergence)
            #expect(!error.message.contains("(differs in: )"), "\(error.message)")
            #expect(error.message.contains("name"), "\(error.message)")
        }
        try ledger.close()
    }

    // MARK: patched in a replay of an export

    /// README/DocC: test a code change against yesterday's runs with `JournalReplayer`. A change
    /// guarded by `patched` after the last step of a run that finished is what production does
    /// right (the run ended on the old path; it never runs again), but the replay threw
    /// `would-execute` at the `patched` itself, failing the test of a correct change.
    @Test func aPatchPastTheEndOfAFinishedRunReplaysTheOldPath() async throws {
        let ledger = try Harness(.memory).open()
        let recorded = try await ledger.journal(run: "r")
        _ = try await recorded.step("refund") { "refund r-1" }
        try await recorded.finish(.succeeded)
        let export = try await ledger.exportJournal(run: "r")
        let mails = Counter()
        let result = try await JournalReplayer.replay(export) { journal in
            let refund = try await journal.step("refund") { "refund r-2" }
            if try await journal.patched("send-mail") {
                _ = try await journal.effect("mail.send") { _ -> String in mails.increment(); return "sent" }
            }
            return refund
        }
        #expect(result == "refund r-1")
        #expect(mails.count == 0)
        // A run still running would record the marker and go on: the replay refuses.
        var running = export
        running.status = nil
        running.endTimeMilliseconds = nil
        await #expect { _ = try await JournalReplayer.replay(running) { journal in
            _ = try await journal.step("refund") { "refund r-2" }
            return try await journal.patched("send-mail")
        } } throws: { ($0 as? LedgerError)?.journalDivergence?.reason == .wouldExecute }
        try ledger.close()
    }

    // MARK: What a truncation reports

    /// A run died after its effect at position 1 was done in `once` and before its journal entry
    /// was written (FORMAT §10.3), or inside it. An operator truncates from 1: the position is
    /// freed with a new epoch, so the effect recorded there again runs again under a new key —
    /// but the truncation listed only `dropped` journal records, so the charge that already
    /// happened was nowhere in what the operator was shown.
    @Test(arguments: BackendKind.allCases)
    func aTruncationListsAnEffectThatRanButWasNeverJournaled(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        let journal = try await ledger.journal(run: "r")
        _ = try await journal.step("plan") { "charge 42" }
        // What the journal's effect does up to its journal entry (as JournalHostileUseTests does).
        let key = try IdempotencyKey(
            journal.effectKey(position: 1, epoch: 0), name: "onceledger.journal.effect",
            params: Journal.EffectParams(name: "payment.charge", input: Hex.string(try Memo.digest(42)!)))
        _ = try await ledger.journalEffectOnce(key, as: String.self) { _ in "charged" }

        let truncation = try await ledger.truncateJournal(run: "r", from: 1, actor: "ops", reason: "new payment code")
        #expect(truncation.dropped.isEmpty)
        #expect(truncation.unjournaledEffects.map(\.key) == [key.rawValue],
                "the done charge at position 1 is not reported: \(truncation.unjournaledEffects.map(\.key))")
        #expect(truncation.unjournaledEffects.first?.status == .done)
        try ledger.close()
    }
}

/// A store that forwards everything, except that its `failAt`-th memo put of a `truncated` journal
/// entry throws (the disk filled, or the process died, part way through a truncation).
private final class FailingTruncationStore: LedgerStore {
    let inner: any LedgerStore
    let failAt: Int
    private let truncationPuts = Mutex(0)

    init(_ inner: any LedgerStore, failAt: Int) {
        self.inner = inner
        self.failAt = failAt
    }

    var tokenScope: TokenScope { inner.tokenScope }
    func claim(_ request: ClaimRequest) async throws -> ClaimResult { try await inner.claim(request) }
    func doneEntry(_ request: ClaimRequest) async throws -> EntryInfo? { try await inner.doneEntry(request) }
    func complete(_ claim: Claim, receipt: [UInt8], timeMilliseconds: UInt64) async throws -> EntryInfo {
        try await inner.complete(claim, receipt: receipt, timeMilliseconds: timeMilliseconds)
    }
    func release(_ claim: Claim, reason: String, timeMilliseconds: UInt64) async throws {
        try await inner.release(claim, reason: reason, timeMilliseconds: timeMilliseconds)
    }
    func abandon(_ claim: Claim) async throws { try await inner.abandon(claim) }
    func resolve(_ request: ResolveRequest) async throws -> EntryInfo { try await inner.resolve(request) }
    func forget(_ request: ForgetRequest) async throws { try await inner.forget(request) }
    func entry(_ key: String) async throws -> EntryInfo? { try await inner.entry(key) }
    func entries(_ query: EntryQuery) async throws -> [EntryInfo] { try await inner.entries(query) }
    func entryCount() async throws -> Int { try await inner.entryCount() }
    func compact(nowMilliseconds: UInt64) async throws { try await inner.compact(nowMilliseconds: nowMilliseconds) }
    func waitForChange(of entry: EntryInfo) async throws { try await inner.waitForChange(of: entry) }
    func close() throws { try inner.close() }
    func memoGeneration(of run: MemoRun) async throws -> UInt64 { try await inner.memoGeneration(of: run) }
    func memoGet(_ key: MemoKey) async throws -> MemoValue? { try await inner.memoGet(key) }
    func memoGetMany(_ keys: [MemoKey]) async throws -> [MemoValue?] { try await inner.memoGetMany(keys) }
    func memoPut(_ request: MemoPutRequest) async throws {
        if case .entry(let entry) = JournalEntry.decode(request.value), entry.kind == .truncated {
            let count = truncationPuts.withLock { count in
                count += 1
                return count
            }
            if count == failAt { throw LedgerError(.io, "simulated: the disk is full") }
        }
        try await inner.memoPut(request)
    }
    func finishRun(_ run: MemoRun, status: RunStatus, timeMilliseconds: UInt64) async throws -> RunInfo {
        try await inner.finishRun(run, status: status, timeMilliseconds: timeMilliseconds)
    }
    func sweepMemo(_ request: MemoSweepRequest) async throws -> MemoSweepResult { try await inner.sweepMemo(request) }
    func runs(_ query: RunQuery) async throws -> [RunInfo] { try await inner.runs(query) }
}

/// What the truncation crash test's workflow saw, kept across the simulated crashes.
private final class TruncationWorld: Sendable {
    /// 0 before the operator's truncation was started, 1 from then on: a body that runs then returns "new".
    let phase = Atomic<Int>(0)
}

/// A run records positions 0…3 ("old"); an operator truncates it from 1; the workflow goes on,
/// its bodies now returning "new". With `LedgerCrashRunner` the process dies (or the power fails)
/// at every I/O step of that, the truncation included, and the workload is run again on the
/// reopened ledger without finishing the truncation first. After every reopen the journal's
/// positions read as one timeline: never an "old" output after a "new" one.
@Suite struct JournalTruncationTimelineCrashTests {
    @Test func aTruncationCrashedAtEveryStepLeavesOneTimeline() async {
        let report = await LedgerCrashRunner().run(
            world: { TruncationWorld() },
            workload: { ledger, world, _ in
                let journal = try await ledger.journal(run: "r")
                for name in ["plan", "t1", "t2", "t3"] {
                    _ = try await journal.step(name) { world.phase.load(ordering: .relaxed) == 0 ? "old" : "new" }
                }
                if world.phase.load(ordering: .relaxed) == 0 {
                    world.phase.store(1, ordering: .relaxed)
                    try await ledger.truncateJournal(run: "r", from: 1, actor: "ops", reason: "new code")
                    let again = try await ledger.journal(run: "r")
                    for name in ["plan", "t1", "t2", "t3"] {
                        _ = try await again.step(name) { world.phase.load(ordering: .relaxed) == 0 ? "old" : "new" }
                    }
                }
            },
            check: { ledger, _, _ in
                let outputs = try await ledger.journalRecords(run: "r").filter { $0.entry.kind == .step }
                    .map { String(decoding: $0.entry.output, as: UTF8.self) }
                if let fresh = outputs.firstIndex(of: "\"new\""), outputs[fresh...].contains("\"old\"") {
                    throw CrashInvariantViolation("the journal reads \(outputs): an old output after a new one")
                }
            })
        #expect(report.passed, "\(report)")
        #expect(report.crashedAtPoint > 0)
    }
}
