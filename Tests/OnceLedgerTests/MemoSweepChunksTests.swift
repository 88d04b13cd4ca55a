// Proves a sweep of more ended runs than one append carries (`LogStore.sweepMemo`: chunks of
// `appendRecordsMax` sweep records, one commit each) sweeps every due run exactly once and
// nothing else: the result names each swept
// generation once, in order per run; the runs not due (still running, or ended inside their
// window) stay; after a reopen of the same records the swept runs stay swept. How: an in-memory
// store with `appendRecordsMax` 4 and ~60 runs; the run count comes from
// ONCELEDGER_MEMO_SWEEP_RUNS (small default). Also that the sweep records go to the log in
// generation order (the order the generations were handed out), not in the byte order of the
// run ids: runs named so that the two orders are opposite, the sweep records read back from
// the in-memory log.
import Foundation
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import Testing

@Suite struct MemoSweepChunksTests {
    static let runCount = ProcessInfo.processInfo.environment["ONCELEDGER_MEMO_SWEEP_RUNS"].flatMap(Int.init) ?? 60

    @Test func aSweepOfManyChunksSweepsEveryDueRunOnce() async throws {
        var configuration = LogConfiguration()
        configuration.appendRecordsMax = 4
        let log = InMemoryRecordLog(configuration: configuration, tokenScope: .ledger(.random()))
        let store = try InMemoryStore(log: log)
        var due: [MemoRun: [UInt64]] = [:]
        for index in 0..<Self.runCount {
            let run = MemoRun(namespace: index % 3 == 0 ? "ns" : "", run: "run-\(index % (Self.runCount / 2))")
            let generation = try await store.memoGeneration(of: run)
            try await store.memoPut(MemoPutRequest(key: MemoKey(run: run, generation: generation, step: "s", name: "v"),
                                                   value: [UInt8(index & 0xff)], inputDigest: nil, timeMilliseconds: 10))
            switch index % 5 {
            case 0: break  // still running: never swept
            case 1: _ = try await store.finishRun(run, status: .succeeded, timeMilliseconds: 990)  // inside its window
            default:
                _ = try await store.finishRun(run, status: .failed, timeMilliseconds: 100)
                due[run, default: []].append(generation)
            }
        }
        let kept = try await store.runs(RunQuery()).filter { due[$0.run]?.contains($0.generation) != true }
        let result = try await store.sweepMemo(MemoSweepRequest(nowMilliseconds: 1_000, retention: MemoRetention(.milliseconds(500))))
        #expect(result.runs == due.mapValues { $0.sorted() })
        #expect(result.entries == due.values.reduce(0) { $0 + $1.count })
        #expect(try await store.runs(RunQuery()) == kept)
        #expect(try await store.sweepMemo(MemoSweepRequest(nowMilliseconds: 1_000, retention: MemoRetention(.milliseconds(500))))
            == MemoSweepResult(), "nothing is swept twice")
        try store.close()
        let reopened = try InMemoryStore(log: log)
        #expect(try await reopened.runs(RunQuery()) == kept)
        try reopened.close()
    }

    @Test func sweepRecordsAreWrittenInGenerationOrder() async throws {
        var configuration = LogConfiguration()
        configuration.appendRecordsMax = 3
        let log = InMemoryRecordLog(configuration: configuration, tokenScope: .ledger(.random()))
        let store = try InMemoryStore(log: log)
        var handedOut: [UInt64] = []
        for index in 0..<10 {
            // "run-9" gets the first generation, "run-0" the last: byte order is the reverse.
            let run = MemoRun(run: "run-\(9 - index)")
            let generation = try await store.memoGeneration(of: run)
            handedOut.append(generation)
            try await store.memoPut(MemoPutRequest(key: MemoKey(run: run, generation: generation, step: "s", name: "v"),
                                                   value: [1], inputDigest: nil, timeMilliseconds: 10))
            _ = try await store.finishRun(run, status: .succeeded, timeMilliseconds: 100)
        }
        let result = try await store.sweepMemo(MemoSweepRequest(nowMilliseconds: 1_000, retention: MemoRetention(.milliseconds(500))))
        #expect(result.generationCount == 10)
        try store.close()
        var swept: [UInt64] = []
        try log.load(item: { _, _ in }, record: { kind, body in
            guard kind == .memoSweep else { return }
            guard case .body(.memoSweep(let sweep)) = RecordBody.decode(kind: kind, Array(body)) else {
                Issue.record("a sweep record that does not decode")
                return
            }
            swept.append(sweep.generation)
        })
        #expect(swept == handedOut)
        #expect(handedOut == handedOut.sorted())
    }
}
