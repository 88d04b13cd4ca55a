// Proves the memo's semantics on `PostgresStore` (the rules MemoTests proves on the file
// store), against a real server: values round-trip across a reconnect (a restarted process);
// a running run keeps its generation and a finished one refuses puts; a reused run id gets a
// new generation that does not see the old memo; generation numbers are never handed out
// twice, even after a sweep; namespaces are apart; the sweep removes only ended generations
// past their window per status (never a running one, never one that ended after `now`,
// never an entry of `once`), and two sweepers at once remove each generation once; limits
// and an empty run id are refused before anything is written. Time is given, nothing sleeps.
import OnceLedger
import OnceLedgerFormat
import OnceLedgerPostgres
import OnceLedgerPostgresTestSupport
import Testing
import OnceLedgerStoreContract

@Suite(.enabled(if: PostgresTestServer.shouldRun, Comment(rawValue: PostgresTestServer.skipReason)))
struct PostgresMemoTests {
    @Test func valuesRoundTripAndARunKeepsItsGenerationAcrossAReconnect() async throws {
        let harness = try PostgresHarness()
        var ledger = Ledger(store: try await harness.open(), clock: { 1_000 })
        let memo = try await ledger.memo(run: "run-1", step: "summarize")
        try await memo.put("llm", "short")
        try await memo.put("raw", bytes: [0, 1, 2, 255])
        #expect(try await memo.get("llm", as: String.self) == "short")
        #expect(try await memo.get("missing", as: String.self) == nil)
        try ledger.close()

        ledger = Ledger(store: try await harness.open(), clock: { 1_000 })
        defer { try? ledger.close() }
        let again = try await ledger.memo(run: "run-1", step: "summarize")
        #expect(again.generation == memo.generation, "a running run keeps its generation")
        #expect(try await again.get("llm", as: String.self) == "short")
        #expect(try await again.bytes("raw") == [0, 1, 2, 255])
        #expect(try await ledger.memo(run: "run-1", step: "other").bytes("raw") == nil, "names are per step")
    }

    @Test func aFinishedRunRefusesPutsAndItsIdStartsANewGeneration() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        let run = MemoRun(run: "r")
        let generation = try await store.memoGeneration(of: run)
        let key = MemoKey(run: run, generation: generation, step: "s", name: "n")
        try await store.memoPut(MemoPutRequest(key: key, value: [1], inputDigest: nil, timeMilliseconds: 10))
        let ended = try await store.finishRun(run, status: .succeeded, timeMilliseconds: 20)
        #expect(ended.generation == generation && ended.status == .succeeded && ended.endTimeMilliseconds == 20)
        #expect(ended.entryCount == 1 && ended.valueBytes == 1)
        let again = try await store.finishRun(run, status: .failed, timeMilliseconds: 30)
        #expect(again == ended, "a finished generation is returned as it ended")

        let refused = await ledgerError {
            try await store.memoPut(MemoPutRequest(key: key, value: [2], inputDigest: nil, timeMilliseconds: 40))
        }
        #expect(refused?.code == .runEnded)
        #expect(try await store.memoGet(key)?.bytes == [1], "an ended generation's values stay until swept")

        let next = try await store.memoGeneration(of: run)
        #expect(next > generation, "a reused run id gets a new generation")
        #expect(try await store.memoGet(MemoKey(run: run, generation: next, step: "s", name: "n")) == nil)
        let stale = await ledgerError {
            try await store.memoPut(MemoPutRequest(key: key, value: [3], inputDigest: nil, timeMilliseconds: 50))
        }
        #expect(stale?.code == .runEnded, "a put to a generation that is not the run's latest is refused")

        // A run finished before anything was put ends a generation of its own.
        let empty = try await store.finishRun(MemoRun(namespace: "ns", run: "never-put"), status: .cancelled,
                                              timeMilliseconds: 60)
        #expect(empty.status == .cancelled && empty.entryCount == 0)
    }

    @Test func valuesKeepTheirInputDigestAndNamespacesAreApart() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        let a = MemoRun(namespace: "a", run: "r"), b = MemoRun(namespace: "b", run: "r")
        let ga = try await store.memoGeneration(of: a), gb = try await store.memoGeneration(of: b)
        #expect(ga != gb, "generation numbers are unique in the store")
        let digest = [UInt8](repeating: 7, count: 32)
        try await store.memoPut(MemoPutRequest(key: MemoKey(run: a, generation: ga, step: "s", name: "n"), value: [1],
                                               inputDigest: digest, timeMilliseconds: 5))
        try await store.memoPut(MemoPutRequest(key: MemoKey(run: a, generation: ga, step: "s", name: "n"), value: [2, 2],
                                               inputDigest: digest, timeMilliseconds: 6))
        let value = try #require(try await store.memoGet(MemoKey(run: a, generation: ga, step: "s", name: "n")))
        #expect(value.bytes == [2, 2] && value.inputDigest == digest && value.timeMilliseconds == 6, "a put replaces")
        #expect(try await store.memoGet(MemoKey(run: b, generation: gb, step: "s", name: "n")) == nil)
        #expect(try await store.runs(RunQuery(namespace: "a")).map(\.generation) == [ga])
        #expect(try await store.runs(RunQuery(namespace: "b")).isEmpty, "a generation nothing was written to is not listed")

        let badDigest = await ledgerError {
            try await store.memoPut(MemoPutRequest(key: MemoKey(run: a, generation: ga, step: "s", name: "x"), value: [],
                                                   inputDigest: [1], timeMilliseconds: 5))
        }
        #expect(badDigest?.code == .invalidArgument)
        let emptyRun = await ledgerError { try await store.memoGeneration(of: MemoRun(run: "")) }
        #expect(emptyRun?.code == .invalidArgument)
        let longRun = await ledgerError {
            try await store.memoGeneration(of: MemoRun(run: String(repeating: "r", count: FormatLimits.runBytesMax + 1)))
        }
        #expect(longRun?.code == .limitExceeded)
        let bigValue = await ledgerError {
            try await store.memoPut(MemoPutRequest(
                key: MemoKey(run: a, generation: ga, step: "s", name: "big"),
                value: [UInt8](repeating: 0, count: FormatLimits.valueBytesMax + 1), inputDigest: nil, timeMilliseconds: 5))
        }
        #expect(bigValue?.code == .limitExceeded)
    }

    @Test func theSweepRemovesOnlyEndedGenerationsPastTheirWindow() async throws {
        let harness = try PostgresHarness()
        let store = try await harness.open()
        let other = try await harness.open()
        defer { try? store.close(); try? other.close() }
        func run(_ name: String, ends status: RunStatus?, at time: UInt64) async throws -> UInt64 {
            let memoRun = MemoRun(run: name)
            let generation = try await store.memoGeneration(of: memoRun)
            try await store.memoPut(MemoPutRequest(key: MemoKey(run: memoRun, generation: generation, step: "s", name: "v"),
                                                   value: [1, 2, 3], inputDigest: nil, timeMilliseconds: time))
            if let status { _ = try await store.finishRun(memoRun, status: status, timeMilliseconds: time) }
            return generation
        }
        let oldSuccess = try await run("old-success", ends: .succeeded, at: 1_000)
        _ = try await run("old-failure", ends: .failed, at: 1_000)
        _ = try await run("recent", ends: .succeeded, at: 9_500)
        _ = try await run("running", ends: nil, at: 1_000)
        _ = try await run("future", ends: .succeeded, at: 20_000)
        let entryClaim = try granted(try await store.claim(claimRequest("once-key")))
        _ = try await store.complete(entryClaim, receipt: [9], timeMilliseconds: 1_000)

        // Failed runs are kept forever; succeeded ones for 1 s.
        let retention = MemoRetention(succeeded: .seconds(1), failed: nil, cancelled: .zero)
        async let first = store.sweepMemo(MemoSweepRequest(nowMilliseconds: 10_000, retention: retention))
        async let second = other.sweepMemo(MemoSweepRequest(nowMilliseconds: 10_000, retention: retention))
        let (a, b) = try await (first, second)
        #expect(a.generationCount + b.generationCount == 1, "two sweepers at once remove a generation once")
        let swept = a.generationCount == 1 ? a : b
        #expect(swept.runs == [MemoRun(run: "old-success"): [oldSuccess]] && swept.entries == 1)
        let left = try await store.runs(RunQuery()).map(\.run.run)
        #expect(left == ["future", "old-failure", "recent", "running"])
        #expect(try await store.entry("once-key")?.status == .done, "the sweep never touches an entry of once")
        #expect(try await store.memoGet(MemoKey(run: MemoRun(run: "old-success"), generation: oldSuccess, step: "s", name: "v")) == nil)

        let next = try await store.memoGeneration(of: MemoRun(run: "old-success"))
        #expect(next > oldSuccess, "a swept run's id gets a new generation, never an old number")
    }
}

/// The replay journal is a layer over the memo operations, so it works on this store: a run
/// journaled through one store (one process) replays through another (a restarted one)
/// without running a body, and `memoGetMany` answers like `memoGet` key by key.
@Suite(.enabled(if: PostgresTestServer.shouldRun, Comment(rawValue: PostgresTestServer.skipReason)))
struct PostgresJournalTests {
    @Test func aJournaledRunReplaysThroughAnotherStore() async throws {
        let harness = try PostgresHarness()
        let bodies = Counter()
        func agent(_ ledger: Ledger) async throws -> [String] {
            let journal = try await ledger.journal(run: "order-42")
            let summary = try await journal.step("llm.summarize", input: "order 42") {
                bodies.increment()
                return "summary"
            }
            let sent = try await journal.effect("mail.send", input: summary) { effect in
                bodies.increment()
                return "sent with token \(effect.token)"
            }
            return [summary, sent]
        }
        let first = Ledger(store: try await harness.open())
        let recorded = try await agent(first)
        try first.close()
        #expect(bodies.count == 2)

        let second = Ledger(store: try await harness.open())
        defer { try? second.close() }
        #expect(try await agent(second) == recorded, "the replay returns what was recorded")
        #expect(bodies.count == 2, "no body ran again")
        #expect(try await second.journalRecords(run: "order-42").count == 2)

        let store = second.store
        let generation = try await store.memoGeneration(of: MemoRun(run: "order-42"))
        let all = try await store.runs(RunQuery(run: "order-42"))
        #expect(all.map(\.generation) == [generation])
        let keys = [MemoKey(run: MemoRun(run: "none"), generation: 1, step: "s", name: "n")]
        #expect(try await store.memoGetMany(keys) == [nil])
        #expect(try await store.memoGetMany([]) == [])
    }
}
