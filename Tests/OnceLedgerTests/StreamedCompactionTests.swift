// Proves that a compaction of a ledger whose receipts stay on disk takes only metadata under
// the store's lock and reads the receipts after releasing it (`LogStore.compact`,
// `LedgerState.compactionSource`): held at a gate before the first receipt is read, the
// state's lock is free and a claim on another, done key completes (alreadyDone, its receipt
// read back); the snapshot it writes is byte for byte what the one-buffer encoder makes of the
// same items; and a receipt damaged on disk refuses the compaction with `corrupt-record`,
// leaving no temporary file and a usable ledger (an automatic compaction's refusal is kept in
// `FileStore.automaticCompactionError`). Real files in a temporary directory; key
// count from ONCELEDGER_VALUES_KEYS (small default).
import Foundation
import OnceLedgerFormat
import OnceLedgerLog
import Synchronization
import Testing
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerStoreContract

@Suite struct StreamedCompactionTests {
    static let keyCount = ProcessInfo.processInfo.environment["ONCELEDGER_VALUES_KEYS"].flatMap(Int.init) ?? 40

    /// A semaphore the I/O or compaction thread waits on (a gate, not a timer). Its wait has
    /// no bound: it parks a thread of the ledger's, never one of Swift concurrency's pool, and a
    /// bound that fired would go on writing into a ledger whose test had ended.
    final class Gate: Sendable {
        let semaphore = DispatchSemaphore(value: 0)
        func open() { semaphore.signal() }
        func wait() { semaphore.wait() }
    }

    static func snapshotNames(_ directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).filter { LedgerFileNames.parseSnapshot($0) != nil }
    }

    @Test func receiptsAreReadOutsideTheLockAndTheSnapshotMatchesTheOneBufferEncoder() async throws {
        let directory = ValuesOnDiskTests.temporaryDirectory("streamed")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ledger = try Ledger.open(directory: directory, configuration: ValuesOnDiskTests.smallSegments)
        defer { try? ledger.close() }
        try await ValuesOnDiskTests.fill(ledger, count: Self.keyCount)
        let store = try #require(ledger.logStore)
        #expect(try ValuesOnDiskTests.locatedCount(ledger) == Self.keyCount)
        // The items the one-buffer path would have written (every receipt read in).
        let expectedItems = try store.withState { try $0.snapshotItems() }

        let (reached, reachedContinuation) = AsyncStream.makeStream(of: Bool.self)
        let release = Gate()
        let lockFreeAtEachRead = Mutex<[Bool]>([])
        let compaction = Task {
            try await store.compact(nowMilliseconds: nil, beforeReadingReceipt: { _ in
                let free = store.stateLockIsFree
                let first = lockFreeAtEachRead.withLock { reads in
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
            try #require(freeAtGate == true, "the state's lock is free while receipts are read")
            // A claim on another key completes while the compaction waits mid-read.
            let outcome = try await ledger.onceBytes(IdempotencyKey("key-3-r0")) { _ in
                Issue.record("a done key ran its effect")
                return []
            }
            guard case .alreadyDone(let receipt, _) = outcome else {
                Issue.record("expected alreadyDone, got \(outcome)")
                release.open()
                _ = try? await compaction.value
                return
            }
            #expect(receipt == ValuesOnDiskTests.receipt(3))
        } catch {
            release.open()
            _ = try? await compaction.value
            throw error
        }
        release.open()
        try await compaction.value
        #expect(lockFreeAtEachRead.withLock { $0 } == [Bool](repeating: true, count: Self.keyCount))

        // Byte for byte what the one-buffer encoder writes for the same items.
        let name = try #require(try Self.snapshotNames(directory).first)
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: directory + "/" + name)))
        guard case .snapshot(let snapshot) = SnapshotFile.decode(bytes) else {
            Issue.record("the streamed snapshot does not decode")
            return
        }
        #expect(snapshot.formatVersion == 3)
        #expect(snapshot.items == expectedItems)
        let oneBuffer = SnapshotFile(ledgerID: snapshot.ledgerID, coveredSequence: snapshot.coveredSequence,
                                     chain: snapshot.chain, ledgerScopedTokens: snapshot.ledgerScopedTokens,
                                     items: expectedItems).encode()
        #expect(bytes == oneBuffer)
        // The entries now point into the snapshot, and read back.
        #expect(try ValuesOnDiskTests.receiptBytesInMemory(ledger) == 0)
        try await ValuesOnDiskTests.expectReceipts(ledger, count: Self.keyCount)
    }

    @Test func aDamagedReceiptRefusesTheCompactionAndLeavesNoTemporaryFile() async throws {
        let directory = ValuesOnDiskTests.temporaryDirectory("streamed-damage")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ledger = try Ledger.open(directory: directory, configuration: ValuesOnDiskTests.smallSegments)
        defer { try? ledger.close() }
        try await ValuesOnDiskTests.fill(ledger, count: 12)
        let location = try #require(try ledger.logStore!.withState { try? $0.lookup("key-7-r0") }?.onDisk?.location)
        let reader = try #require(try ledger.logStore!.withState { $0.reader })
        try ValuesOnDiskTests.flipByte(reader.path(of: location.file), at: location.offset + UInt64(location.readBytes / 2))
        await #expect { try await ledger.compact() } throws: { ($0 as? LedgerError)?.code == .corruptRecord }
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
        #expect(!names.contains { $0.hasSuffix(LedgerFileNames.temporarySuffix) }, "no temporary file left: \(names)")
        #expect(try Self.snapshotNames(directory).isEmpty)
        // The refusal did not poison the writer: the ledger still appends and compacts.
        _ = try await ledger.onceBytes(IdempotencyKey("after")) { _ in [1, 2, 3] }
        try ValuesOnDiskTests.flipByte(reader.path(of: location.file), at: location.offset + UInt64(location.readBytes / 2))
        try await ledger.compact()
        #expect(try await ledger.entry("after")?.receipt == [1, 2, 3])
        try await ValuesOnDiskTests.expectReceipts(ledger, count: 12)
    }

    /// The same damage met by an automatic compaction (`compactAfterLogBytes`): nobody awaits
    /// it, so its refusal is kept in `automaticCompactionError`, and the next automatic
    /// compaction, once the damage is gone, succeeds and clears it.
    @Test func anAutomaticCompactionKeepsItsRefusal() async throws {
        let directory = ValuesOnDiskTests.temporaryDirectory("automatic-damage")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = ValuesOnDiskTests.smallSegments
        configuration.compactAfterLogBytes = LogConfiguration.compactAfterLogBytesMin
        let ledger = try Ledger.open(directory: directory, configuration: configuration)
        defer { try? ledger.close() }
        let store = try #require(ledger.store as? FileStore)
        try await ValuesOnDiskTests.fill(ledger, count: 12)
        try #require(store.automaticCompactions == 0, "the twelve keys alone reached the threshold")
        let location = try #require(try ledger.logStore!.withState { try? $0.lookup("key-7-r0") }?.onDisk?.location)
        let reader = try #require(try ledger.logStore!.withState { $0.reader })
        let path = reader.path(of: location.file)
        try ValuesOnDiskTests.flipByte(path, at: location.offset + UInt64(location.readBytes / 2))
        /// Writes done keys until `count` automatic compactions have started, then waits for the last.
        func writeUntilCompactions(_ count: Int, prefix: String) async throws {
            var index = 0
            while store.automaticCompactions < count {
                _ = try await ledger.onceBytes(IdempotencyKey("\(prefix)-\(index)")) { _ in [UInt8](repeating: 5, count: 512) }
                index += 1
                guard index < 100_000 else {
                    Issue.record("no automatic compaction after \(index) keys")
                    return
                }
            }
            await store.waitForAutomaticCompaction()
        }
        try await writeUntilCompactions(1, prefix: "filler")
        #expect(store.automaticCompactionError?.code == .corruptRecord)
        #expect(try Self.snapshotNames(directory).isEmpty)
        try ValuesOnDiskTests.flipByte(path, at: location.offset + UInt64(location.readBytes / 2))
        try await writeUntilCompactions(2, prefix: "more")
        #expect(store.automaticCompactionError == nil)
        #expect(try Self.snapshotNames(directory).count == 1)
        try await ValuesOnDiskTests.expectReceipts(ledger, count: 12)
    }
}
