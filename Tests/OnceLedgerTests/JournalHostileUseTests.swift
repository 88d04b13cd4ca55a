// Proves what an outside review of hostile use of the journal and its export found broken (each
// test failed before its fix): an effect at position 0 is never run again after a restart that
// gives the run another generation number (the generation marker, Spec FORMAT §10.3); a stale
// journal's finish never ends the run's next generation; a step's name is checked before its
// body runs; a replay's divergence names the export's generation, and a replay of an export with
// a gap is refused; the export reader refuses a record whose output is not its last field and an
// unknown status, and reads CRLF line ends; seeded mutations of an export read back or fail with a
// typed error. On the file store, and the in-memory one where a ledger is involved.
import Foundation
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerTestSupport
import Testing
import OnceLedgerStoreContract

@Suite struct JournalHostileUseTests {
    // MARK: Exactly-once of a journal effect across a restart

    /// README/`Journal.effect`: "if the process dies inside it, the effect is pending-unknown and
    /// the next run of the workflow gets what `whenPending` says — it never runs again silently."
    /// An effect at position 0 of a run whose generation was handed out but never written: after
    /// the restart the run gets another generation number (another run recorded a higher one
    /// meanwhile), so the effect's `once` key changes and the body runs a second time.
    @Test(arguments: BackendKind.allCases)
    func anEffectAtPositionZeroIsNotRunAgainAfterARestartWhenAnotherRunRecordedMeanwhile(kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        let charges = Counter()
        struct Crash: Error {}
        let journal = try await ledger.journal(run: "order-1")
        // A server runs several workflows: another run starts and records a step.
        let other = try await ledger.journal(run: "order-2")
        _ = try await other.step("llm.summarize", input: 2) { "summary" }
        // order-1's first step is a charge; the process dies inside it (as in
        // JournalTests.anEffectThatThrewIsPendingUnknownAndNeverRunsAgainSilently).
        await #expect(throws: (any Error).self) {
            _ = try await journal.effect("payment.charge", input: 42) { _ -> String in
                charges.increment()
                throw Crash()
            }
        }
        #expect(charges.count == 1)

        ledger = try harness.reopen(ledger)
        let again = try await ledger.journal(run: "order-1")
        do {
            _ = try await again.effect("payment.charge", input: 42) { _ -> String in
                charges.increment()
                return "charged"
            }
            Issue.record("the pending charge ran again silently (generation \(journal.generation) before the restart, \(again.generation) after)")
        } catch let error as LedgerError {
            #expect(error.code == .pendingUnknown, "\(error)")
        }
        #expect(charges.count == 1, "the card was charged \(charges.count) times")
        try ledger.close()
    }

    /// The same, with nothing else running before the crash: after the restart a worker touches
    /// another run first (a memo of it), which takes the generation number order-1 had.
    @Test(arguments: BackendKind.allCases)
    func anEffectAtPositionZeroIsNotRunAgainWhenAnotherRunIsOpenedFirstAfterTheRestart(kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        let charges = Counter()
        // The effect completes in `once`; the process dies before its journal entry is written
        // (FORMAT §10.3: "after a crash between the two, the next run finds the key done and
        // journals its receipt"). Simulated by what the journal's effect does up to there: the
        // generation marker, then the same `once`.
        let journal = try await ledger.journal(run: "order-1")
        try await journal.markGeneration()
        let key = try IdempotencyKey(
            journal.effectKey(position: 0, epoch: 0), name: "onceledger.journal.effect",
            params: Journal.EffectParams(name: "payment.charge",
                                         input: Hex.string(try Memo.digest(42)!)))
        _ = try await ledger.journalEffectOnce(key, as: String.self) { _ in
            charges.increment()
            return "charged"
        }
        ledger = try harness.reopen(ledger)
        _ = try await ledger.memo(run: "order-7", step: "fetch")  // another run, opened first
        let again = try await ledger.journal(run: "order-1")
        let output = try await again.effect("payment.charge", input: 42) { _ -> String in
            charges.increment()
            return "charged again"
        }
        #expect(output == "charged", "generation \(journal.generation) before the restart, \(again.generation) after")
        #expect(charges.count == 1, "the card was charged \(charges.count) times")
        try ledger.close()
    }

    // MARK: finish of a stale journal

    /// `Journal.finish` ends the journal's own run generation. A journal kept after its generation
    /// was ended (by an operator or another worker) and swept used to end the run id's *next*
    /// generation — a live run of someone else; it is refused with `.runEnded`.
    @Test(arguments: BackendKind.allCases)
    func aStaleJournalsFinishDoesNotEndTheNextGenerationOfItsRun(kind: BackendKind) async throws {
        let clock = ManualClock()
        let harness = Harness(kind, clock: clock)
        let ledger = try harness.open()
        let stale = try await ledger.journal(run: "r")
        _ = try await stale.step("one") { "1" }
        try await ledger.finishRun("r", status: .failed)
        clock.advance(1_000)
        _ = try await ledger.sweepMemo(retention: MemoRetention(.zero))

        let live = try await ledger.journal(run: "r")
        #expect(live.generation != stale.generation)
        _ = try await live.step("first") { "x" }

        // Its generation ended and was swept: refused, and nothing else is ended.
        await #expect { try await stale.finish(.succeeded) } throws: { ($0 as? LedgerError)?.code == .runEnded }
        do {
            _ = try await live.step("second") { "y" }
        } catch let error as LedgerError {
            Issue.record("the live generation \(live.generation) was ended by the stale journal's finish: \(error.code)")
        }
        #expect(try await ledger.runs(run: "r").first { $0.generation == live.generation }?.status == nil)
        try ledger.close()
    }

    // MARK: Names checked before the body runs

    /// FORMAT §10.3: "a step over either is refused with `limit-exceeded` before anything is
    /// written". A name over `stepBytesMax` was checked only after the body ran: an effect had
    /// happened (and left a done `once` entry), an LLM call had been paid for.
    @Test(arguments: BackendKind.allCases)
    func anOverlongNameIsRefusedBeforeTheBodyRuns(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        let journal = try await ledger.journal(run: "r")
        let bodies = Counter()
        let name = String(repeating: "n", count: FormatLimits.stepBytesMax + 1)
        await #expect { _ = try await journal.effect(name, input: 1) { _ -> String in bodies.increment(); return "charged" } }
            throws: { ($0 as? LedgerError)?.code == .limitExceeded }
        await #expect { _ = try await journal.step(name) { () -> String in bodies.increment(); return "paid" } }
            throws: { ($0 as? LedgerError)?.code == .limitExceeded }
        #expect(bodies.count == 0, "\(bodies.count) bodies ran before their name was refused")
        let done = try await ledger.entries().filter { $0.key.hasPrefix("onceledger.journal/") }
        #expect(done.isEmpty, "a done once entry is left behind: \(done.map(\.key))")
        try ledger.close()
    }

    // MARK: A journal value this build cannot read

    /// A position holding a value of a newer version: a typed error that says what to do — and
    /// no longer advises `journal-truncate`, which reads the positions it frees and so cannot
    /// free this one (it throws the same typed error).
    @Test func aJournalPositionThatDoesNotDecodeIsATypedErrorWithAdviceThatWorks() async throws {
        let harness = Harness(.file)
        let ledger = try harness.open()
        let journal = try await ledger.journal(run: "r")
        _ = try await journal.step("a") { "x" }
        var future = JournalEntry(kind: .step, position: 1, name: "b", output: Array("\"y\"".utf8)).encode()
        future[0] = 2
        try await ledger.store.memoPut(MemoPutRequest(key: journal.memoKey(1), value: future, inputDigest: nil,
                                                      timeMilliseconds: harness.clock.now))
        let reopened = try await ledger.journal(run: "r")
        do {
            // (Positions are read ahead: the first step may already meet it.)
            _ = try await reopened.step("a") { "x" }
            _ = try await reopened.step("b") { "y" }
            Issue.record("the undecodable position was not reported")
        } catch let error as LedgerError {
            #expect(error.code == .malformedBody)
            #expect(error.message.contains("newer version") && !error.message.contains("can free"), "\(error.message)")
        }
        await #expect { try await ledger.truncateJournal(run: "r", from: 1, actor: "ops", reason: "unreadable") } throws: {
            ($0 as? LedgerError)?.code == .malformedBody
        }
        try ledger.close()
    }

    // MARK: Export reader

    /// Two exports the reader used to take wrongly, now refused with `.invalidArgument`: a record
    /// whose `output` is not the line's last field (the reader took the text from `,"output":`
    /// to the last brace as the output, and the replay failed later with a misleading "changed
    /// output type"); a header status this build does not know (a typo, a newer writer: it read
    /// as a running run).
    @Test(arguments: [
        """
        {"format":"onceledger-journal","version":1,"namespace":"","run":"r","generation":1,"status":"succeeded","endTime":5}
        {"position":0,"kind":"step","name":"a","epoch":0,"inputDigest":null,"output":"x","time":5}

        """,
        """
        {"format":"onceledger-journal","version":1,"namespace":"","run":"r","generation":1,"status":"succeded","endTime":5}

        """,
    ])
    func anExportTheReaderUsedToMisreadIsRefused(text: String) async throws {
        #expect { _ = try JournalExport(jsonLines: text) } throws: { ($0 as? LedgerError)?.code == .invalidArgument }
    }

    /// An export saved with CRLF line ends (edited on Windows): JSON allows `\r` as whitespace,
    /// but "\r\n" is one `Character`, so `split(separator: "\n")` never splits and the whole file
    /// is refused as "line 1: not a JSON object".
    @Test func anExportWithCRLFLineEndsReads() async throws {
        let harness = Harness(.file)
        let ledger = try harness.open()
        let journal = try await ledger.journal(run: "r")
        _ = try await journal.step("a") { "x" }
        try await journal.finish(.succeeded)
        let export = try await ledger.exportJournal(run: "r")
        let crlf = export.jsonLines().replacingOccurrences(of: "\n", with: "\r\n")
        do {
            #expect(try JournalExport(jsonLines: crlf) == export)
        } catch {
            Issue.record("a CRLF export is refused: \(error)")
        }
        try ledger.close()
    }

    /// Deeply nested JSON on a line: a typed error, not a stack overflow.
    @Test func aDeeplyNestedExportLineIsATypedError() async throws {
        let depth = 200_000
        let text = """
            {"format":"onceledger-journal","version":1,"namespace":"","run":"r","generation":1,"status":null,"endTime":null}
            {"position":0,"kind":"step","name":"a","epoch":0,"inputDigest":null,"time":5,"output":\(String(repeating: "[", count: depth))\(String(repeating: "]", count: depth))}

            """
        await #expect(throws: LedgerError.self) { _ = try JournalExport(jsonLines: text) }
    }

    /// A divergence in a replay names the exported run generation (what `onceledger runs` and
    /// the export header show), not the replayer's scratch ledger's.
    @Test func aReplayDivergenceNamesTheExportsGeneration() async throws {
        let harness = Harness(.file)
        let ledger = try harness.open()
        for run in ["a", "b", "c"] {
            let journal = try await ledger.journal(run: run)
            _ = try await journal.step("s") { "x" }
            try await journal.finish(.succeeded)
        }
        let export = try await ledger.exportJournal(run: "c")
        #expect(export.generation == 3)
        do {
            _ = try await JournalReplayer.replay(export) { journal in
                try await journal.step("renamed") { "x" }
            }
            Issue.record("no divergence")
        } catch let error as LedgerError {
            #expect(error.journalDivergence?.generation == export.generation, "\(error)")
        }
        try ledger.close()
    }

    /// An export made in code (the public init) whose positions have a gap: the replay used to
    /// stop at the gap and never report the records past it; it is refused before any code runs.
    @Test func aReplayOfAnExportWithAGapIsRefused() async throws {
        let record = { (position: UInt64) in
            JournalRecord(position: position, entry: JournalEntry(kind: .step, position: position, name: "s",
                                                                  output: Array("\"x\"".utf8)),
                          inputDigest: nil, timeMilliseconds: 1)
        }
        let export = JournalExport(run: MemoRun(run: "r"), generation: 1, status: .succeeded, endTimeMilliseconds: 1,
                                   records: [record(0), record(2)])
        let ran = Counter()
        await #expect {
            _ = try await JournalReplayer.replay(export) { journal in
                ran.increment()
                return try await journal.step("s") { "x" }
            }
        } throws: { ($0 as? LedgerError)?.code == .invalidArgument }
        #expect(ran.count == 0)
    }

    /// An export file's bytes: read as text when UTF-8 (the same export), refused with a typed
    /// error when not (`String(contentsOfFile:)` throws a Foundation error there).
    @Test func anExportReadFromBytesIsUTF8OrATypedError() async throws {
        let harness = Harness(.file)
        let ledger = try harness.open()
        let journal = try await ledger.journal(run: "r")
        _ = try await journal.step("a") { "x" }
        let export = try await ledger.exportJournal(run: "r")
        try ledger.close()
        #expect(try JournalExport(jsonLinesBytes: Array(export.jsonLines().utf8)) == export)
        await #expect { _ = try JournalExport(jsonLinesBytes: Array(export.jsonLines().utf8) + [0xff, 0xfe]) } throws: {
            ($0 as? LedgerError)?.code == .invalidArgument
        }
    }

    /// Seeded mutations of a real export (bytes flipped, dropped, duplicated; lines cut or
    /// swapped) read with `init(jsonLinesBytes:)`: each is an export or a `LedgerError`, never a
    /// trap, and what reads back replays or diverges with a typed error.
    /// ONCELEDGER_FUZZ_ITERATIONS (default 2,000) and ONCELEDGER_FUZZ_SEED.
    @Test func mutatedExportsReadOrFailWithATypedError() async throws {
        let harness = Harness(.file)
        let ledger = try harness.open()
        let journal = try await ledger.journal(run: "r")
        _ = try await journal.step("llm", input: "prompt") { ["text": "a \"quoted\" reply", "n": "1"] }
        _ = try await journal.nowMilliseconds()
        _ = try await journal.uuid()
        _ = try await journal.patched("fix-1")
        _ = try await journal.effect("mail.send", input: 2) { _ in "sent" }
        try await journal.finish(.succeeded)
        let original = Array(try await ledger.exportJournal(run: "r").jsonLines().utf8)
        try ledger.close()
        let environment = ProcessInfo.processInfo.environment
        let iterations = environment["ONCELEDGER_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? 2_000
        var random = SeededRandom(seed: environment["ONCELEDGER_FUZZ_SEED"].flatMap { UInt64($0) } ?? 17)
        var read = 0
        for _ in 0..<iterations {
            var bytes = original
            for _ in 0..<(1 + Int(random.next() % 4)) {
                guard !bytes.isEmpty else { break }
                let at = Int(random.next() % UInt64(bytes.count))
                switch random.next() % 5 {
                case 0: bytes[at] ^= UInt8(truncatingIfNeeded: 1 << (random.next() % 8))
                case 1: bytes.remove(at: at)
                case 2: bytes.insert(bytes[at], at: at)
                case 3: bytes[at] = [0x22, 0x5c, 0x7b, 0x7d, 0x0a, 0x0d, 0x2c, 0x3a, 0x00, 0xff][Int(random.next() % 10)]
                default: bytes.removeSubrange(at..<min(bytes.count, at + Int(random.next() % 40)))
                }
            }
            do {
                let export = try JournalExport(jsonLinesBytes: bytes)
                read += 1
                do {
                    _ = try await JournalReplayer.replay(export) { journal in
                        _ = try await journal.step("llm", input: "prompt") { ["text": "x", "n": "1"] }
                    }
                } catch is LedgerError {}
            } catch is LedgerError {}
        }
        #expect(read > 0 && read < iterations, "\(read) of \(iterations) mutated exports read back")
    }

    private static func densePositions(_ ledger: Ledger) -> Int {
        ledger.logStore?.memo.withLock { $0.denseJournalPositions } ?? -1
    }

    /// The generation marker is a memo entry of step "" that is no position: it must not turn
    /// the generation's positions into generic memo entries (name, hash slot and entry each,
    /// instead of 32 bytes in the dense array), which any other generic entry of step "" does
    /// (found by a review of the marker: every effect-first run lost the dense form).
    @Test func aRunWhoseFirstStepIsAnEffectKeepsItsPositionsDense() async throws {
        let harness = Harness(.file)
        let ledger = try harness.open()
        let steps = 20
        // Run "a": its first step is an effect (the generation marker is written before it).
        let a = try await ledger.journal(run: "a")
        _ = try await a.effect("payment.charge", input: 1) { _ in "charged" }
        for index in 0..<steps { _ = try await a.step("tool", input: index) { "out \(index)" } }
        // Run "b": the same, with a plain step first.
        let b = try await ledger.journal(run: "b")
        _ = try await b.step("first") { "first" }
        for index in 0..<steps { _ = try await b.step("tool", input: index) { "out \(index)" } }

        let recordedA = try await ledger.journalRecords(run: "a").count
        let recordedB = try await ledger.journalRecords(run: "b").count
        #expect(recordedA == steps + 1 && recordedB == steps + 1)
        #expect(Self.densePositions(ledger) == recordedA + recordedB,
                "positions recorded in order are held densely; run a's \(recordedA) are not (dense: \(Self.densePositions(ledger)))")
        // And after a compaction and a reopen (the marker then comes after the positions).
        try await ledger.compact()
        let reopened = try harness.reopen(ledger)
        #expect(Self.densePositions(reopened) == recordedA + recordedB)
        #expect(try await reopened.journalRecords(run: "a").count == recordedA)
        try reopened.close()
    }

    /// An effect at position 0 after a truncation (epoch 1): the marker again, a new key; after
    /// a restart neither key runs again, and every position reads back through a compaction
    /// and a reopen.
    @Test func anEffectAtPositionZeroAfterATruncationRunsOnceAndSurvivesCompactionAndReopen() async throws {
        let harness = Harness(.file)
        var ledger = try harness.open()
        let charges = Counter()
        let journal = try await ledger.journal(run: "order")
        _ = try await journal.effect("charge", input: 1) { _ in
            charges.increment()
            return "first"
        }
        _ = try await journal.step("after") { "x" }
        try await ledger.truncateJournal(run: "order", from: 0, actor: "ops", reason: "changed")
        ledger = try harness.reopen(ledger)
        let again = try await ledger.journal(run: "order")
        #expect(again.generation == journal.generation)
        let output = try await again.effect("charge", input: 2) { _ in
            charges.increment()
            return "second"
        }
        #expect(output == "second")
        #expect(charges.count == 2)
        try await ledger.compact()
        ledger = try harness.reopen(ledger)
        let records = try await ledger.journalRecords(run: "order")
        #expect(records.first?.entry.epoch == 1)
        #expect(records.first?.entry.kind == .effect)
        let third = try await ledger.journal(run: "order")
        #expect(try await third.effect("charge", input: 2) { _ in
            charges.increment()
            return "third"
        } == "second")
        #expect(charges.count == 2)
        try await third.finish(.failed)
        try ledger.close()
    }
}
