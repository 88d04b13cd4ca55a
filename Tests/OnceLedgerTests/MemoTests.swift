// Proves the memo's semantics (`Ledger.memo`, `finishRun`, `sweepMemo`) on both stores — each
// test runs on a FileStore in a temp directory and on an InMemoryStore, reopened like a
// restarted process where it matters: values round-trip (JSON and raw bytes) across a restart;
// `remember` says cached or computed and does not compute twice; a different input is a typed
// mismatch, never a stale hit; names match exactly; limits and an empty run id are refused
// before anything is written; namespaces do not see each other; a finished run refuses puts
// and a reused run id gets a new generation that does not see the old memo; a generation
// number is never handed out twice, even after every run was swept and compacted; the sweep
// removes only ended runs past their window (per status, never a running run, nothing when the
// clock went backwards, never an entry of `once`), is durable, and compaction drops what it
// swept so the directory stays bounded over many rounds; the background sweeper sweeps at
// open and stops at close. Time comes from a manual clock; nothing sleeps.
import Foundation
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import Testing
import OnceLedgerStoreContract

/// Opens `harness`'s ledger with a memo retention (the harness opens without one).
private func openLedger(_ harness: Harness, retention: MemoRetention? = nil) throws -> Ledger {
    switch harness.kind {
    case .file:
        return try Ledger.open(directory: harness.directory, configuration: harness.configuration,
                               clock: harness.clock.function, memoRetention: retention)
    case .memory:
        return Ledger(store: try InMemoryStore(log: RecordingBackend(inner: harness.memory, log: harness.recordLog)),
                      clock: harness.clock.function, memoRetention: retention)
    }
}

private func reopen(_ ledger: Ledger, _ harness: Harness, retention: MemoRetention? = nil) throws -> Ledger {
    try ledger.close()
    return try openLedger(harness, retention: retention)
}

private struct Summary: Codable, Equatable, Sendable {
    var text: String
    var tokens: Int
}

private struct Prompt: Encodable {
    var model: String
    var prompt: String
}

private let minute = MemoRetention(.seconds(60))

@Suite struct MemoTests {
    @Test(arguments: BackendKind.allCases)
    func valuesRoundTripAcrossARestart(kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try openLedger(harness)
        let memo = try await ledger.memo(run: "run-1", step: "summarize")
        try await memo.put("llm", Summary(text: "short", tokens: 12))
        try await memo.put("raw", bytes: [0, 1, 2, 255])
        #expect(try await memo.get("llm", as: Summary.self) == Summary(text: "short", tokens: 12))
        #expect(try await memo.get("missing", as: Summary.self) == nil)

        ledger = try reopen(ledger, harness)
        let again = try await ledger.memo(run: "run-1", step: "summarize")
        #expect(again.generation == memo.generation, "a running run keeps its generation across a restart")
        #expect(try await again.get("llm", as: Summary.self) == Summary(text: "short", tokens: 12))
        #expect(try await again.bytes("raw") == [0, 1, 2, 255])
        let otherStep = try await ledger.memo(run: "run-1", step: "translate")
        #expect(try await otherStep.bytes("raw") == nil, "names are per step")
        try ledger.close()
    }

    @Test(arguments: BackendKind.allCases)
    func rememberComputesOnceThenAnswersFromTheMemo(kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try openLedger(harness)
        let calls = Counter()
        let prompt = Prompt(model: "m-1", prompt: "Summarize the order")
        func step(_ ledger: Ledger) async throws -> Remembered<Summary> {
            let memo = try await ledger.memo(run: "run-1", step: "summarize")
            return try await memo.remember("llm", input: prompt) {
                calls.increment()
                return Summary(text: "paid for once", tokens: 99)
            }
        }
        let first = try await step(ledger)
        #expect(!first.wasCached)
        #expect(first == .computed(Summary(text: "paid for once", tokens: 99)))
        // The retried step (after a crash: a new process) finds the answer.
        ledger = try reopen(ledger, harness)
        let second = try await step(ledger)
        #expect(second == .cached(Summary(text: "paid for once", tokens: 99)))
        #expect(calls.count == 1)
        try ledger.close()
    }

    @Test(arguments: BackendKind.allCases)
    func anotherInputIsATypedMismatchNotAStaleHit(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try openLedger(harness)
        let memo = try await ledger.memo(run: "run-1", step: "summarize")
        try await memo.put("llm", Summary(text: "old", tokens: 1), input: Prompt(model: "m", prompt: "v1"))
        #expect(try await memo.get("llm", as: Summary.self, input: Prompt(model: "m", prompt: "v1"))?.text == "old")

        let changed = await ledgerError { try await memo.get("llm", as: Summary.self, input: Prompt(model: "m", prompt: "v2")) }
        #expect(changed?.code == .memoInputMismatch)
        let none = await ledgerError { try await memo.get("llm", as: Summary.self) }
        #expect(none?.code == .memoInputMismatch, "a value stored with an input is not an answer without one")
        let calls = Counter()
        let remembered = await ledgerError {
            try await memo.remember("llm", as: Summary.self, input: Prompt(model: "m", prompt: "v2")) {
                calls.increment()
                return Summary(text: "new", tokens: 2)
            }
        }
        #expect(remembered?.code == .memoInputMismatch)
        #expect(calls.count == 0, "a mismatch does not compute")
        // The input digest is over the canonical encoding: equal inputs match however built.
        try await memo.put("keyed", bytes: [1], input: ["b": 2, "a": 1])
        #expect(try await memo.bytes("keyed", input: ["a": 1, "b": 2]) == [1])
        let wrongType = await ledgerError { try await memo.get("keyed", as: Summary.self, input: ["a": 1, "b": 2]) }
        #expect(wrongType?.code == .memoDecodingFailed)
        try ledger.close()
    }

    @Test(arguments: BackendKind.allCases)
    func namesMatchExactlyByteForByte(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try openLedger(harness)
        let memo = try await ledger.memo(run: "run-1", step: "s")
        try await memo.put("caf\u{e9}", bytes: [1])
        #expect(try await memo.bytes("cafe\u{301}") == nil, "canonically equivalent but other bytes: another name")
        #expect(try await memo.bytes("Caf\u{e9}") == nil)
        #expect(try await memo.bytes("caf\u{e9} ") == nil)
        #expect(try await memo.bytes("caf") == nil, "no prefix match")
        #expect(try await memo.bytes("caf\u{e9}") == [1])
        try ledger.close()
    }

    @Test(arguments: BackendKind.allCases)
    func limitsAndAnEmptyRunIdAreRefusedBeforeAnythingIsWritten(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try openLedger(harness)
        let before = try harness.logRecords().count
        let empty = await ledgerError { try await ledger.memo(run: "", step: "s") }
        #expect(empty?.code == .invalidArgument)
        let emptyFinish = await ledgerError { try await ledger.finishRun("", status: .succeeded) }
        #expect(emptyFinish?.code == .invalidArgument)
        func text(_ count: Int) -> String { String(repeating: "x", count: count) }
        let longRun = await ledgerError { try await ledger.memo(run: text(FormatLimits.runBytesMax + 1), step: "s") }
        #expect(longRun?.code == .limitExceeded && longRun?.limit == "runBytesMax")
        let longNamespace = await ledgerError {
            try await ledger.memo(run: "r", step: "s", namespace: text(FormatLimits.namespaceBytesMax + 1))
        }
        #expect(longNamespace?.code == .limitExceeded && longNamespace?.limit == "namespaceBytesMax")
        let longStep = await ledgerError { try await ledger.memo(run: "r", step: text(FormatLimits.stepBytesMax + 1)) }
        #expect(longStep?.code == .limitExceeded && longStep?.limit == "stepBytesMax")
        let memo = try await ledger.memo(run: "r", step: "s")
        let longName = await ledgerError { try await memo.put(text(FormatLimits.memoNameBytesMax + 1), bytes: []) }
        #expect(longName?.code == .limitExceeded && longName?.limit == "memoNameBytesMax")
        let bigValue = await ledgerError {
            try await memo.put("v", bytes: [UInt8](repeating: 1, count: FormatLimits.valueBytesMax + 1))
        }
        #expect(bigValue?.code == .limitExceeded && bigValue?.limit == "valueBytesMax")
        #expect(try harness.logRecords().count == before, "nothing was written")
        try ledger.close()
        // At the limits, it is written (on the default configuration, whose record limit
        // holds the largest memo entry; the harness's small segments do not).
        let directory = harness.directory + "-limits"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let roomy = kind == .file ? try Ledger.open(directory: directory) : Ledger.inMemory()
        let atLimits = try await roomy.memo(run: text(FormatLimits.runBytesMax), step: text(FormatLimits.stepBytesMax),
                                             namespace: text(FormatLimits.namespaceBytesMax))
        try await atLimits.put(text(FormatLimits.memoNameBytesMax),
                               bytes: [UInt8](repeating: 1, count: FormatLimits.valueBytesMax))
        #expect(try await atLimits.bytes(text(FormatLimits.memoNameBytesMax))?.count == FormatLimits.valueBytesMax)
        try roomy.close()
    }

    @Test(arguments: BackendKind.allCases)
    func namespacesDoNotSeeEachOther(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try openLedger(harness)
        let a = try await ledger.memo(run: "run-1", step: "s", namespace: "runtime-a")
        let b = try await ledger.memo(run: "run-1", step: "s", namespace: "runtime-b")
        try await a.put("v", bytes: [1])
        #expect(try await b.bytes("v") == nil)
        try await ledger.finishRun("run-1", namespace: "runtime-a", status: .succeeded)
        // Ending runtime-a's run-1 leaves runtime-b's running.
        try await b.put("v", bytes: [2])
        #expect(try await b.bytes("v") == [2])
        let runs = try await ledger.runs(run: "run-1")
        #expect(runs.map(\.run.namespace) == ["runtime-a", "runtime-b"])
        #expect(runs.map(\.status) == [.succeeded, nil])
        try ledger.close()
    }

    @Test(arguments: BackendKind.allCases)
    func aFinishedRunRefusesPutsAndAReusedRunIdStartsAFreshGeneration(kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try openLedger(harness)
        let memo = try await ledger.memo(run: "run-1", step: "s")
        try await memo.put("answer", bytes: [42])
        harness.clock.set(5_000)
        let ended = try await ledger.finishRun("run-1", status: .failed)
        #expect(ended.status == .failed && ended.endTimeMilliseconds == 5_000 && ended.generation == memo.generation)
        #expect(ended.entryCount == 1 && ended.valueBytes == 1)

        let refused = await ledgerError { try await memo.put("answer", bytes: [43]) }
        #expect(refused?.code == .runEnded)
        #expect(try await memo.bytes("answer") == [42], "an ended run's memo is readable until it is swept")
        // Finishing again writes nothing and answers with the first end.
        harness.clock.set(6_000)
        let again = try await ledger.finishRun("run-1", status: .succeeded)
        #expect(again.status == .failed && again.endTimeMilliseconds == 5_000)

        ledger = try reopen(ledger, harness)
        let staleAfterRestart = Memo(run: memo.run, generation: memo.generation, step: "s", store: ledger.store,
                                     clock: harness.clock.function)
        let stillRefused = await ledgerError { try await staleAfterRestart.put("answer", bytes: [43]) }
        #expect(stillRefused?.code == .runEnded, "the end is durable")
        let resubmitted = try await ledger.memo(run: "run-1", step: "s")
        #expect(resubmitted.generation > memo.generation)
        #expect(try await resubmitted.bytes("answer") == nil, "a resubmitted run does not read the old run's answers")
        try await resubmitted.put("answer", bytes: [7])
        #expect(try await resubmitted.bytes("answer") == [7])
        #expect(try await staleAfterRestart.bytes("answer") == [42])
        let runs = try await ledger.runs(run: "run-1")
        #expect(runs.map(\.generation) == [memo.generation, resubmitted.generation])
        #expect(runs.map(\.status) == [.failed, nil])
        try ledger.close()
    }

    @Test(arguments: BackendKind.allCases)
    func theSweepRemovesOnlyEndedRunsPastTheirWindow(kind: BackendKind) async throws {
        let harness = Harness(kind)
        harness.clock.set(100_000)
        let ledger = try openLedger(harness, retention: MemoRetention(succeeded: .seconds(60), failed: .seconds(600),
                                                                      cancelled: nil))
        await ledger.firstMemoSweep()
        var memos: [String: Memo] = [:]
        for run in ["ok", "failed", "cancelled", "running"] {
            let memo = try await ledger.memo(run: run, step: "s")
            try await memo.put("v", bytes: Array(run.utf8))
            memos[run] = memo
        }
        _ = try await ledger.once("order-1") { _ in "sent" }
        try await ledger.finishRun("ok", status: .succeeded)
        try await ledger.finishRun("failed", status: .failed)
        try await ledger.finishRun("cancelled", status: .cancelled)

        #expect(try await ledger.sweepMemo(now: 159_999).generationCount == 0, "59.999 s is inside the window")
        let swept = try await ledger.sweepMemo(now: 160_000)
        #expect(swept.runs == [MemoRun(run: "ok"): [memos["ok"]!.generation]] && swept.entries == 1)
        #expect(try await memos["ok"]!.bytes("v") == nil)
        #expect(try await memos["failed"]!.bytes("v") != nil)
        // A clock that went backwards sweeps nothing.
        #expect(try await ledger.sweepMemo(now: 50_000).generationCount == 0)
        let late = try await ledger.sweepMemo(now: 100_000 + 10_000_000)
        #expect(Set(late.runs.keys) == [MemoRun(run: "failed")], "cancelled has no window: kept forever")
        #expect(try await memos["running"]!.bytes("v") == Array("running".utf8), "a running run is never swept")
        #expect(try await memos["cancelled"]!.bytes("v") != nil)
        #expect(try await ledger.entry("order-1")?.status == .done, "the sweep never touches once's entries")
        #expect(try await ledger.sweepMemo(now: 100_000 + 20_000_000).generationCount == 0, "idempotent")
        #expect(try await ledger.runs().map(\.run.run) == ["cancelled", "running"])
        try ledger.close()
    }

    @Test(arguments: BackendKind.allCases)
    func aSweepIsDurableAndGenerationsAreNeverReusedAfterCompaction(kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try openLedger(harness, retention: minute)
        let first = try await ledger.memo(run: "run-1", step: "s")
        try await first.put("v", bytes: [1])
        try await ledger.finishRun("run-1", status: .succeeded)
        harness.clock.advance(60_000)
        #expect(try await ledger.sweepMemo().generationCount == 1)
        try await ledger.compact()
        ledger = try reopen(ledger, harness, retention: minute)
        #expect(try await ledger.runs().isEmpty, "swept, compacted, gone")
        let staleAfterSweep = Memo(run: first.run, generation: first.generation, step: "s", store: ledger.store,
                                   clock: harness.clock.function)
        #expect(try await staleAfterSweep.bytes("v") == nil)
        let refused = await ledgerError { try await staleAfterSweep.put("v", bytes: [2]) }
        #expect(refused?.code == .runEnded, "a handle of a swept generation cannot write into a new run")
        let next = try await ledger.memo(run: "run-1", step: "s")
        #expect(next.generation > first.generation, "the generation count survives sweeping everything")
        try ledger.close()
    }

    /// One round of the steady workload: 20 runs each put a 2,000-byte value and end; a
    /// minute later all 20 are swept.
    static func runAndSweep(round: Int, _ ledger: Ledger, _ harness: Harness) async throws {
        for index in 0..<20 {
            let memo = try await ledger.memo(run: "run-\(round)-\(index)", step: "llm")
            try await memo.put("answer", bytes: [UInt8](repeating: UInt8(index), count: 2_000))
            try await ledger.finishRun("run-\(round)-\(index)", status: .succeeded)
        }
        harness.clock.advance(60_000)
        #expect(try await ledger.sweepMemo().generationCount == 20)
    }

    @Test func compactionKeepsDiskBoundedUnderASteadyWorkloadOfRuns() async throws {
        let rounds = ProcessInfo.processInfo.environment["ONCELEDGER_MEMO_ROUNDS"].flatMap(Int.init) ?? 6
        let harness = Harness(.file)
        let ledger = try openLedger(harness, retention: minute)
        var sizes: [Int] = []
        for round in 0..<rounds {
            try await Self.runAndSweep(round: round, ledger, harness)
            try await ledger.compact()
            sizes.append(try directoryBytes(harness.directory))
        }
        // Each round writes ~40 KiB of values; after its sweep and compaction none of it is
        // live, so the directory does not grow with the rounds.
        let bound = sizes[0] + 64 * 1024
        #expect(sizes.allSatisfy { $0 <= bound }, "directory sizes per round: \(sizes)")
        #expect(try await ledger.runs().isEmpty)
        try ledger.close()
    }

    /// The same steady workload with `compactAfterLogBytes` and no `compact()` call: the
    /// store compacts by itself as the log grows, so the directory stays bounded too, while
    /// without it the directory grows with every round.
    @Test func automaticCompactionKeepsDiskBoundedWithoutCompactCalls() async throws {
        let rounds = ProcessInfo.processInfo.environment["ONCELEDGER_MEMO_ROUNDS"].flatMap(Int.init) ?? 6
        var sizesPerSetting: [[Int]] = []
        for automatic in [false, true] {
            let harness = Harness(.file)
            var configuration = harness.configuration
            if automatic { configuration.compactAfterLogBytes = 128 << 10 }
            let ledger = try Ledger.open(directory: harness.directory, configuration: configuration,
                                         clock: harness.clock.function, memoRetention: minute)
            let store = try #require(ledger.store as? FileStore)
            var sizes: [Int] = []
            for round in 0..<(rounds * 2) {
                try await Self.runAndSweep(round: round, ledger, harness)
                await store.waitForAutomaticCompaction()
                sizes.append(try directoryBytes(harness.directory))
            }
            #expect((store.automaticCompactions > 0) == automatic, "\(store.automaticCompactions) automatic compactions")
            #expect(try await ledger.runs().isEmpty)
            try ledger.close()
            sizesPerSetting.append(sizes)
        }
        // ~40 KiB of values a round: without compaction the directory holds them all; with it,
        // at most about two thresholds' worth (the log since the snapshot, and the segment a
        // compaction rolls to) above where the first round left it.
        let (manual, automatic) = (sizesPerSetting[0], sizesPerSetting[1])
        #expect(manual.last! > manual.first! + (rounds * 2 - 1) * 30_000, "sizes without: \(manual)")
        let bound = automatic[0] + 3 * (128 << 10)
        #expect(automatic.allSatisfy { $0 <= bound }, "sizes with automatic compaction: \(automatic)")
    }

    @Test(arguments: BackendKind.allCases)
    func theBackgroundSweeperSweepsAtOpenAndStopsAtClose(kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try openLedger(harness)
        let memo = try await ledger.memo(run: "run-1", step: "s")
        try await memo.put("v", bytes: [1])
        try await ledger.finishRun("run-1", status: .succeeded)
        #expect(try await ledger.sweepMemo().generationCount == 0, "without a retention nothing is swept")
        try ledger.close()

        // A fresh process with a retention catches the marker an earlier one left.
        harness.clock.advance(61_000)
        ledger = try openLedger(harness, retention: minute)
        await ledger.firstMemoSweep()
        #expect(try await ledger.runs().isEmpty)
        try ledger.close()
        #expect(ledger.memoSweeper.withLock { $0 }?.isStopped == true)
    }
}

/// Bytes of the regular files in `directory`.
func directoryBytes(_ directory: String) throws -> Int {
    try FileManager.default.contentsOfDirectory(atPath: directory).reduce(0) { total, name in
        let attributes = try FileManager.default.attributesOfItem(atPath: directory + "/" + name)
        return total + ((attributes[.size] as? NSNumber)?.intValue ?? 0)
    }
}
