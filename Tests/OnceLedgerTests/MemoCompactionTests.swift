// Proves that a compaction reads memo values that stay on disk after releasing the memo's lock
// (`MemoTable.snapshotSource`, `LogStore.compact`), like receipts: held at a gate before the first
// memo value is read, the memo's lock is free and a get of another memo value completes; every
// value reads back afterwards from its new place in the snapshot, and after a reopen. Real files in
// a temporary directory; value count from ONCELEDGER_MEMO_COMPACT_VALUES (small default).
import Foundation
import OnceLedgerFormat
import OnceLedgerLog
import Synchronization
import Testing
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerStoreContract

@Suite struct MemoCompactionTests {
    static let valueCount = ProcessInfo.processInfo.environment["ONCELEDGER_MEMO_COMPACT_VALUES"].flatMap(Int.init) ?? 12

    static func value(_ index: Int) -> [UInt8] { (0..<(300 + index)).map { UInt8(truncatingIfNeeded: $0 &+ index) } }

    @Test func memoValuesAreReadOutsideTheMemoLockDuringACompaction() async throws {
        let directory = ValuesOnDiskTests.temporaryDirectory("memo-compact")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var ledger = try Ledger.open(directory: directory)
        let memo = try await ledger.memo(run: "run-1", step: "s")
        for index in 0..<Self.valueCount { try await memo.put("v\(index)", bytes: Self.value(index)) }
        let store = try #require(ledger.logStore)

        let (reached, reachedContinuation) = AsyncStream.makeStream(of: Bool.self)
        let release = StreamedCompactionTests.Gate()
        let reads = Mutex<[Bool]>([])
        let compaction = Task {
            // A compaction that never reaches the gate ends the stream (nil: the test fails, not hangs).
            defer { reachedContinuation.finish() }
            try await store.compact(nowMilliseconds: nil, beforeReadingReceipt: { _ in
                let free = store.memoLockIsFree
                let first = reads.withLock { reads in
                    reads.append(free)
                    return reads.count == 1
                }
                if first {
                    reachedContinuation.yield(free)
                    release.wait()
                }
            })
        }
        var iterator = reached.makeAsyncIterator()
        let freeAtGate = await iterator.next()
        do {
            try #require(freeAtGate == true, "the memo's lock is free while its values are read")
            // A get (which takes the memo's lock) completes while the compaction waits mid-read.
            #expect(try await memo.bytes("v3") == Self.value(3))
        } catch {
            release.open()
            _ = try? await compaction.value
            throw error
        }
        release.open()
        try await compaction.value
        #expect(reads.withLock { $0 } == [Bool](repeating: true, count: Self.valueCount),
                "one gated read per memo value, each without the memo's lock")
        for index in 0..<Self.valueCount {
            #expect(MemoValuesOnDiskTests.location(ledger, memo.key("v\(index)"))?.isSnapshot == true)
            #expect(try await memo.bytes("v\(index)") == Self.value(index))
        }
        try ledger.close()
        ledger = try Ledger.open(directory: directory)
        let reopened = try await ledger.memo(run: "run-1", step: "s")
        for index in 0..<Self.valueCount { #expect(try await reopened.bytes("v\(index)") == Self.value(index)) }
        try ledger.close()
    }
}
