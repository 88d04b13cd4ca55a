// Proves what `Spec/RECOVERY.md` §7 says about memo records that must stand or fall together:
// an append group is not atomic after a crash — the intact prefix of a torn batch survives — so a
// memo value and its run's end appended in one group recover as neither, the value alone (the run
// still running, its value readable, nothing swept) or both, never the end without the value;
// and a torn batch of sweep records leaves a prefix swept and the rest for the next sweep. How:
// a FileStore on `SimulatedStorage`, a crash armed at the fsync after the group's write, a power
// loss that keeps a random prefix of that write (seeded), a reopen; over fixed seeds every
// outcome is checked and the "value without its end" case must occur.
import Foundation
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import OnceLedgerTestSupport
import Testing

@Suite struct MemoRecoveryTests {
    static let seeds = UInt64(1)...UInt64(ProcessInfo.processInfo.environment["ONCELEDGER_MEMO_TEAR_SEEDS"].flatMap(Int.init) ?? 24)

    static var tearOnly: SimulatedStorage.Options {
        var options = SimulatedStorage.Options()
        options.weights = SimulatedStorage.CrashWeights(keep: 0, drop: 0, tearPrefix: 1, tearSectors: 0, garble: 0)
        return options
    }

    static func open(_ storage: SimulatedStorage) throws -> FileStore {
        try FileStore(directory: "/ledger", storage: storage, configuration: LedgerCrashRunner.fastConfiguration,
                      clock: { 1_000 })
    }

    /// Appends `records` as one group with a crash armed at the fsync after its write, then
    /// loses power (the write keeps a seeded random prefix) and reopens.
    static func tear(_ records: [RecordBody], seed: UInt64, before: (FileStore) async throws -> Void) async throws -> FileStore {
        let storage = SimulatedStorage(seed: seed, options: tearOnly)
        let store = try open(storage)
        try await before(store)
        storage.crash(afterOperations: 1)
        _ = try? await store.store.log.append(records.map(LogRecord.init), onDurable: { _ in })
        try? store.close()
        storage.crash()
        return try open(storage)
    }

    @Test func aValueAndItsRunEndAppendedTogetherRecoverAsAPrefix() async throws {
        let run = MemoRun(namespace: "ns", run: "run-1")
        let key = MemoKey(run: run, generation: 1, step: "s", name: "answer")
        let group: [RecordBody] = [
            .memoEntry(.init(namespace: "ns", run: "run-1", generation: 1, step: "s", name: "answer",
                             timeMilliseconds: 1_000, value: Array(repeating: 7, count: 300))),
            .runEnd(.init(namespace: "ns", run: "run-1", generation: 1, status: .succeeded, timeMilliseconds: 1_000)),
        ]
        var outcomes: Set<String> = []
        for seed in Self.seeds {
            let store = try await Self.tear(group, seed: seed, before: { _ in })
            let value = try await store.memoGet(key)
            let runs = try await store.runs(RunQuery())
            let ended = runs.first?.status != nil
            #expect(!(ended && value == nil), "seed \(seed): the run ended without the value appended before its end")
            if let value { #expect(value.bytes == Array(repeating: 7, count: 300), "seed \(seed)") }
            // Whatever survived, a sweep far in the future removes only an ended run.
            let swept = try await store.sweepMemo(MemoSweepRequest(nowMilliseconds: .max, retention: MemoRetention(.zero)))
            #expect(swept.generationCount == (ended ? 1 : 0), "seed \(seed)")
            if value != nil && !ended {
                // The runner's retry: the value is there, the run can still be ended.
                #expect(try await store.memoGet(key) != nil)
                _ = try await store.finishRun(run, status: .succeeded, timeMilliseconds: 2_000)
            }
            outcomes.insert(value == nil ? "neither" : ended ? "both" : "value only")
            try store.close()
        }
        #expect(outcomes.contains("value only"), "the torn-group case must be exercised: \(outcomes)")
    }

    @Test func aTornBatchOfSweepsLeavesTheRestForTheNextSweep() async throws {
        let runs = (0..<6).map { MemoRun(run: "run-\($0)") }
        var partial = 0
        for seed in Self.seeds {
            let sweeps = runs.enumerated().map { index, run in
                RecordBody.memoSweep(.init(namespace: "", run: run.run, generation: UInt64(index + 1),
                                           timeMilliseconds: 5_000))
            }
            let store = try await Self.tear(sweeps, seed: seed, before: { store in
                for run in runs {
                    let generation = try await store.memoGeneration(of: run)
                    try await store.memoPut(MemoPutRequest(key: MemoKey(run: run, generation: generation, step: "s", name: "v"),
                                                           value: [1], inputDigest: nil, timeMilliseconds: 1_000))
                    _ = try await store.finishRun(run, status: .succeeded, timeMilliseconds: 1_000)
                }
            })
            let left = try await store.runs(RunQuery()).map(\.run)
            // A prefix of the batch was applied: the runs left are a suffix of the batch's order.
            #expect(left == Array(runs.suffix(left.count)), "seed \(seed): \(left)")
            if !left.isEmpty && left.count < runs.count { partial += 1 }
            let next = try await store.sweepMemo(MemoSweepRequest(nowMilliseconds: 10_000, retention: MemoRetention(.zero)))
            #expect(next.generationCount == left.count, "seed \(seed): the next sweep takes the rest")
            #expect(try await store.runs(RunQuery()).isEmpty)
            try store.close()
        }
        #expect(partial > 0, "a torn sweep batch must be exercised")
    }
}
