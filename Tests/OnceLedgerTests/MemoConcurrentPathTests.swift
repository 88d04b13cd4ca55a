// Proves that the 64-caller memo and journal paths keep the memo's rules: (1) a put stops
// counting as in flight (`MemoTable.endPut`) once its append returns or fails, so after concurrent
// puts return, or fail, none is left in flight: the generation ends and sweeps, or is dropped when
// it holds nothing; (2) the table's cache of recently written journals
// (runs that take turns recording positions) gives the same state as looking every journal up:
// each position under its own run generation, with more runs than cache slots (collisions), a
// swept generation's journal slot reused by another run, and a run's latest generation restored
// by a position applied after a sweep lowered it; (3) the word-at-a-time check for "no input"
// digests (`ZeroScan.lastNonZero`, which `storeDigest` calls) answers as a byte-at-a-time
// one. How: a FileStore on `SimulatedStorage` with an injected write fault for (1); the table
// driven with encoded record bodies for (2), compared with what the records say; every length
// around 32 bytes with each byte set for (3). Counts from ONCELEDGER_MEMO_CONCURRENT_PUTS /
// _JOURNAL_RUNS (small defaults).
import Foundation
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import OnceLedgerTestSupport
import Testing

@Suite struct MemoConcurrentPathTests {
    static let puts = ProcessInfo.processInfo.environment["ONCELEDGER_MEMO_CONCURRENT_PUTS"].flatMap(Int.init) ?? 64
    static let journalRuns = ProcessInfo.processInfo.environment["ONCELEDGER_MEMO_CONCURRENT_JOURNAL_RUNS"]
        .flatMap(Int.init) ?? MemoTable.journalCacheSlots * 3 / 2

    static func open(_ storage: SimulatedStorage) throws -> FileStore {
        try FileStore(directory: "/ledger", storage: storage, configuration: LedgerCrashRunner.fastConfiguration,
                      clock: { 1_000 })
    }

    static func inFlight(_ store: FileStore, _ key: MemoTable.GenerationKey) -> Int? {
        store.store.memo.withLock { $0.generation(key)?.putsInFlight }
    }

    @Test func concurrentPutsAreNoLongerInFlightOnceTheyReturn() async throws {
        let storage = SimulatedStorage(seed: 1)
        let store = try Self.open(storage)
        let run = MemoRun(run: "many")
        let generation = try await store.memoGeneration(of: run)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for caller in 0..<Self.puts {
                group.addTask {
                    try await store.memoPut(MemoPutRequest(
                        key: MemoKey(run: run, generation: generation, step: "s", name: "n\(caller)"),
                        value: [UInt8(truncatingIfNeeded: caller)], inputDigest: nil, timeMilliseconds: 1_000))
                }
            }
            try await group.waitForAll()
        }
        let key = MemoTable.GenerationKey(run: MemoTable.runKey(run), generation: generation)
        #expect(Self.inFlight(store, key) == 0)
        _ = try await store.finishRun(run, status: .succeeded, timeMilliseconds: 1_000)
        // A put still counted in flight would hold its ended generation off the sweep.
        let swept = try await store.sweepMemo(MemoSweepRequest(nowMilliseconds: 2_000, retention: MemoRetention(.zero)))
        #expect(swept.runs[run] == [generation])
        #expect(swept.entries == Self.puts)
        try store.close()
    }

    @Test func aPutWhoseAppendFailsIsNoLongerInFlight() async throws {
        let storage = SimulatedStorage(seed: 2)
        let store = try Self.open(storage)
        let run = MemoRun(run: "failing")
        let generation = try await store.memoGeneration(of: run)
        storage.injectFault(.write, errno: EIO, pathContaining: ".seg")
        await #expect(throws: LedgerError.self) {
            try await store.memoPut(MemoPutRequest(key: MemoKey(run: run, generation: generation, step: "s", name: "n"),
                                                   value: [1], inputDigest: nil, timeMilliseconds: 1_000))
        }
        #expect(storage.faultsFired == 1)
        // Nothing was written and nothing is in flight: the generation carries no state.
        let key = MemoTable.GenerationKey(run: MemoTable.runKey(run), generation: generation)
        #expect(Self.inFlight(store, key) == nil)
        try? store.close()
    }

    // MARK: The journal cache

    static func position(_ table: inout MemoTable, run: String, generation: UInt64, position: UInt64,
                         time: UInt64) throws {
        let body = RecordBody.memoEntry(.init(
            namespace: "ns", run: run, generation: generation, step: JournalEntry.reservedStep,
            name: JournalEntry.positionName(position), timeMilliseconds: time, value: [UInt8(truncatingIfNeeded: time)]))
        let encoded = body.encode()
        try encoded.withUnsafeBytes {
            try table.apply(kind: body.kind, body: $0,
                            location: .segment(1, offset: time * 256, bodyBytes: UInt32(encoded.count)))
        }
    }

    static func sweep(_ table: inout MemoTable, run: String, generation: UInt64) throws {
        let body = RecordBody.memoSweep(.init(namespace: "ns", run: run, generation: generation, timeMilliseconds: 5))
        try body.encode().withUnsafeBytes { try table.apply(kind: body.kind, body: $0) }
    }

    static func key(_ run: String, _ generation: UInt64, _ position: UInt64) -> MemoKey {
        MemoKey(run: MemoRun(namespace: "ns", run: run), generation: generation, step: JournalEntry.reservedStep,
                name: JournalEntry.positionName(position))
    }

    /// A distinct time per (run, generation, position), so a position filed under another
    /// run's journal reads back wrong.
    static func time(_ run: Int, _ generation: UInt64, _ position: UInt64) -> UInt64 {
        UInt64(run) * 1_000 + generation * 100 + position + 1
    }

    @Test func runsTakingTurnsFileEachPositionUnderItsOwnJournal() throws {
        var table = MemoTable()
        let runs = (0..<Self.journalRuns).map { "run-\($0)" }
        let steps: UInt64 = 3
        // Every run records position p before any records p + 1: the last journal never matches.
        for position in 0..<steps {
            for (index, run) in runs.enumerated() {
                try Self.position(&table, run: run, generation: UInt64(index + 1), position: position,
                                  time: Self.time(index, UInt64(index + 1), position))
            }
        }
        #expect(table.count == runs.count * Int(steps))
        for (index, run) in runs.enumerated() {
            for position in 0..<steps {
                let slot = table.slot(Self.key(run, UInt64(index + 1), position))
                #expect(slot?.timeMilliseconds == Self.time(index, UInt64(index + 1), position), "\(run) position \(position)")
            }
        }
        // Sweep every other run; new generations of them (journals reusing the freed slots)
        // take turns with the runs left, whose cached journals must not be confused with them.
        let next = UInt64(runs.count + 1)
        for index in stride(from: 0, to: runs.count, by: 2) {
            try Self.sweep(&table, run: runs[index], generation: UInt64(index + 1))
        }
        for position in 0..<steps {
            for (index, run) in runs.enumerated() {
                if index % 2 == 0 {
                    try Self.position(&table, run: run, generation: next, position: position,
                                      time: Self.time(index, next, position))
                } else {
                    try Self.position(&table, run: run, generation: UInt64(index + 1), position: steps + position,
                                      time: Self.time(index, UInt64(index + 1), steps + position))
                }
            }
        }
        #expect(table.count == runs.count * Int(steps) + runs.count / 2 * Int(steps))
        for (index, run) in runs.enumerated() {
            if index % 2 == 0 {
                #expect(table.slot(Self.key(run, UInt64(index + 1), 0)) == nil, "\(run)'s swept generation reads")
                for position in 0..<steps {
                    #expect(table.slot(Self.key(run, next, position))?.timeMilliseconds == Self.time(index, next, position))
                }
                #expect(table.latest[MemoTable.runKey(MemoRun(namespace: "ns", run: run))] == next)
            } else {
                for position in 0..<(2 * steps) {
                    #expect(table.slot(Self.key(run, UInt64(index + 1), position))?.timeMilliseconds
                            == Self.time(index, UInt64(index + 1), position), "\(run) position \(position)")
                }
                #expect(table.latest[MemoTable.runKey(MemoRun(namespace: "ns", run: run))] == UInt64(index + 1))
            }
        }
    }

    @Test func aPositionAppliedAfterASweepLoweredItsRunsLatestRestoresIt() throws {
        var table = MemoTable()
        let run = MemoTable.runKey(MemoRun(namespace: "ns", run: "a"))
        try Self.position(&table, run: "a", generation: 1, position: 0, time: 1)
        try Self.position(&table, run: "b", generation: 2, position: 0, time: 2)
        try Self.position(&table, run: "a", generation: 1, position: 1, time: 3)
        #expect(table.latest[run] == 1)
        // A sweep of a later generation of "a" (a record a log can hold) drops "a"'s latest.
        try Self.sweep(&table, run: "a", generation: 3)
        #expect(table.latest[run] == nil)
        // Another run's position in between, so "a"'s journal is found in the cache, not as the last one.
        try Self.position(&table, run: "b", generation: 2, position: 1, time: 4)
        try Self.position(&table, run: "a", generation: 1, position: 2, time: 5)
        #expect(table.latest[run] == 1, "the position's generation is its run's latest again, as `see` makes it")
        #expect(table.slot(Self.key("a", 1, 2))?.timeMilliseconds == 5)
    }

    @Test func theWordAtATimeZeroCheckAnswersAsTheByteAtATimeOne() {
        // Every length around a digest's 32 bytes, all zero and with one byte set anywhere.
        for count in 0...41 {
            var bytes = [UInt8](repeating: 0, count: count)
            #expect(bytes.withUnsafeBytes { ZeroScan.lastNonZero($0, from: 0, end: count) == nil }, "\(count) zero bytes")
            for at in 0..<count {
                for value: UInt8 in [1, 0x80] {
                    bytes[at] = value
                    #expect(bytes.withUnsafeBytes { ZeroScan.lastNonZero($0, from: 0, end: count) != nil },
                            "byte \(at) of \(count) is \(value)")
                    bytes[at] = 0
                }
            }
        }
    }
}
