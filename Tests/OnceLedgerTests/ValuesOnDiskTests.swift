// Proves that a file ledger keeps receipts on disk, not in memory (`LedgerState`: each done
// entry holds the location of the record with its receipt, read on demand): receipts read
// back byte for byte after writing, reopening, rollover and compaction, and while compactions
// run under concurrent readers; the state's count of receipt bytes in memory stays zero; a
// receipt damaged on disk after open gives a typed error; a version 2 snapshot still opens
// (receipts in memory) and the next compaction moves them to disk. Real files in a temporary
// directory; sizes and counts from env vars with small defaults.
import Foundation
import OnceLedgerFormat
import OnceLedgerLog
import Testing
@_spi(Benchmarks) @testable import OnceLedger

@Suite struct ValuesOnDiskTests {
    static let keyCount = ProcessInfo.processInfo.environment["ONCELEDGER_VALUES_KEYS"].flatMap(Int.init) ?? 60

    static func temporaryDirectory(_ name: String) -> String {
        FileManager.default.temporaryDirectory.path + "/ol-values-\(name)-\(UUID().uuidString.prefix(8))"
    }

    /// A receipt of 1 to ~6 KiB whose bytes depend on the key and a round.
    static func receipt(_ index: Int, round: Int = 0) -> [UInt8] {
        let count = 1 + (index * 997 + round * 131) % 6000
        return (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index &+ round &* 7) }
    }

    /// Small segments, so a few dozen receipts roll over several times.
    static var smallSegments: LogConfiguration {
        var configuration = LogConfiguration(segmentBytes: 64 << 10)
        configuration.initialSegmentBytes = 16 << 10
        return configuration
    }

    static func fill(_ ledger: Ledger, count: Int, round: Int = 0) async throws {
        for index in 0..<count {
            _ = try await ledger.onceBytes(IdempotencyKey("key-\(index)-r\(round)")) { _ in receipt(index, round: round) }
        }
    }

    static func expectReceipts(_ ledger: Ledger, count: Int, round: Int = 0) async throws {
        for index in 0..<count {
            let entry = try await ledger.entry("key-\(index)-r\(round)")
            #expect(entry?.status == .done)
            #expect(entry?.receipt == receipt(index, round: round), "key-\(index)-r\(round)")
        }
    }

    static func receiptBytesInMemory(_ ledger: Ledger) throws -> Int { try ledger.logStore!.withState { $0.receiptBytesInMemory } }
    static func locatedCount(_ ledger: Ledger) throws -> Int { try ledger.logStore!.withState { $0.locatedEntryCount } }

    @Test func receiptsStayOnDiskAndReadBackAcrossRolloverAndReopen() async throws {
        let directory = Self.temporaryDirectory("reopen")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var ledger = try Ledger.open(directory: directory, configuration: Self.smallSegments)
        try await Self.fill(ledger, count: Self.keyCount)
        let engine = try #require((ledger.store as? FileStore)?.engine)
        #expect(engine.activeSegment > 2, "the receipts span several segments")
        #expect(try Self.receiptBytesInMemory(ledger) == 0)
        #expect(try Self.locatedCount(ledger) == Self.keyCount)
        try await Self.expectReceipts(ledger, count: Self.keyCount)
        // An already-done call answers with the receipt read from disk.
        let again = try await ledger.onceBytes(IdempotencyKey("key-7-r0")) { _ in [0] }
        guard case .alreadyDone(let receipt, _) = again else {
            Issue.record("the second call ran its effect")
            return
        }
        #expect(receipt == Self.receipt(7))
        #expect(!engine.reader.openFiles.isEmpty)
        try ledger.close()
        #expect(engine.reader.openFiles.isEmpty, "closing the log lets go of its read handles")

        ledger = try Ledger.open(directory: directory, configuration: Self.smallSegments)
        defer { try? ledger.close() }
        #expect(try Self.receiptBytesInMemory(ledger) == 0)
        #expect(try Self.locatedCount(ledger) == Self.keyCount)
        try await Self.expectReceipts(ledger, count: Self.keyCount)
        let listed: [EntryInfo] = try await ledger.entries(status: .done)
        let expected: [[UInt8]] = (0..<Self.keyCount).map { Self.receipt($0) }
        #expect(listed.count == Self.keyCount)
        #expect(listed.map(\.receipt).reduce(0) { $0 + $1.count } == expected.reduce(0) { $0 + $1.count })
    }

    @Test func compactionCarriesReceiptsIntoTheSnapshotAndOpeningReadsOnlyItsHints() async throws {
        let directory = Self.temporaryDirectory("compact")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var ledger = try Ledger.open(directory: directory, configuration: Self.smallSegments)
        try await Self.fill(ledger, count: Self.keyCount)
        try await ledger.compact()
        let onSnapshot = try ledger.logStore!.withState { state in
            (0..<Self.keyCount).filter { index in
                guard let lookup = try? state.lookup("key-\(index)-r0") else { return false }
                return lookup.onDisk?.location.isSnapshot == true
            }.count
        }
        #expect(onSnapshot == Self.keyCount, "every done entry points into the snapshot")
        try await Self.expectReceipts(ledger, count: Self.keyCount)
        // The compaction removed the segments; their handles were retired.
        let engine = try #require((ledger.store as? FileStore)?.engine)
        #expect(engine.reader.openFiles.allSatisfy { $0 & ValueLocation.snapshotBit != 0 || $0 >= engine.activeSegment })
        try await Self.fill(ledger, count: 5, round: 1)
        try ledger.close()

        ledger = try Ledger.open(directory: directory, configuration: Self.smallSegments)
        defer { try? ledger.close() }
        let report = try #require((ledger.store as? FileStore)?.engine?.recovery)
        let snapshotBytes = try #require(report.snapshot?.fileBytes)
        #expect(report.bytesScanned < snapshotBytes, "the open read the snapshot's hints, not its values")
        #expect(try Self.receiptBytesInMemory(ledger) == 0)
        try await Self.expectReceipts(ledger, count: Self.keyCount)
        try await Self.expectReceipts(ledger, count: 5, round: 1)
        // A second compaction reads the first snapshot's values and the new records.
        try await ledger.compact()
        try await Self.expectReceipts(ledger, count: Self.keyCount)
        try await Self.expectReceipts(ledger, count: 5, round: 1)
    }

    @Test func readersGetTheRightReceiptsWhileCompactionsRun() async throws {
        let directory = Self.temporaryDirectory("concurrent")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ledger = try Ledger.open(directory: directory, configuration: Self.smallSegments)
        defer { try? ledger.close() }
        let count = Self.keyCount
        try await Self.fill(ledger, count: count)
        let rounds = ProcessInfo.processInfo.environment["ONCELEDGER_VALUES_ROUNDS"].flatMap(Int.init) ?? 4
        // Each task returns (reads, wrong receipts); the compacting task (0, 0).
        let totals = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            for reader in 0..<3 {
                group.addTask {
                    var reads = 0, wrong = 0
                    for pass in 0..<rounds * 3 {
                        for index in stride(from: (reader + pass) % 3, to: count, by: 3) {
                            let entry = try await ledger.entry("key-\(index)-r0")
                            reads += 1
                            if entry?.receipt != Self.receipt(index) { wrong += 1 }
                        }
                    }
                    return (reads, wrong)
                }
            }
            group.addTask {
                for round in 1...rounds {
                    try await Self.fill(ledger, count: 3, round: round)
                    try await ledger.compact()
                }
                return (0, 0)
            }
            var sum = (0, 0)
            for try await part in group { sum = (sum.0 + part.0, sum.1 + part.1) }
            return sum
        }
        #expect(totals.0 == rounds * 3 * ((0..<3).map { (count - $0 + 2) / 3 }.reduce(0, +)))
        #expect(totals.1 == 0)
        try await Self.expectReceipts(ledger, count: count)
        for round in 1...rounds { try await Self.expectReceipts(ledger, count: 3, round: round) }
    }

    /// Flips one byte of the file at `offset` through another descriptor (the page cache
    /// the ledger reads from sees it at once).
    static func flipByte(_ path: String, at offset: UInt64) throws {
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: offset)
        let byte = try #require(try handle.read(upToCount: 1)?.first)
        try handle.seek(toOffset: offset)
        try handle.write(contentsOf: [byte ^ 0x10])
    }

    @Test func aReceiptDamagedOnDiskAfterOpenIsATypedErrorInASegmentAndInASnapshot() async throws {
        let directory = Self.temporaryDirectory("damage")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ledger = try Ledger.open(directory: directory)
        defer { try? ledger.close() }
        try await Self.fill(ledger, count: 3)
        let segment = try #require(try ledger.logStore!.withState { try? $0.lookup("key-1-r0") }?.onDisk?.location)
        #expect(!segment.isSnapshot)
        let reader = try #require(try ledger.logStore!.withState { $0.reader })
        // A byte in the middle of the receipt.
        try Self.flipByte(reader.path(of: segment.file), at: segment.offset + UInt64(segment.readBytes / 2))
        await #expect { try await ledger.entry("key-1-r0") } throws: { ($0 as? LedgerError)?.code == .corruptRecord }
        #expect(try await ledger.entry("key-0-r0")?.receipt == Self.receipt(0), "the other receipts still read")
        // The damage also refuses a compaction instead of carrying wrong bytes into a snapshot.
        await #expect { try await ledger.compact() } throws: { ($0 as? LedgerError)?.code == .corruptRecord }
        try Self.flipByte(reader.path(of: segment.file), at: segment.offset + UInt64(segment.readBytes / 2))
        try await ledger.compact()

        let value = try #require(try ledger.logStore!.withState { try? $0.lookup("key-2-r0") }?.onDisk?.location)
        #expect(value.isSnapshot)
        try Self.flipByte(reader.path(of: value.file), at: value.offset + UInt64(value.readBytes / 2))
        await #expect { try await ledger.entry("key-2-r0") } throws: { ($0 as? LedgerError)?.code == .corruptRecord }
        #expect(try await ledger.entry("key-1-r0")?.receipt == Self.receipt(1))
    }

    @Test func aVersionTwoSnapshotOpensWithReceiptsInMemoryAndTheNextCompactionMovesThemToDisk() async throws {
        let directory = Self.temporaryDirectory("v2")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var ledger = try Ledger.open(directory: directory)
        try await Self.fill(ledger, count: 10)
        try await ledger.compact()
        try ledger.close()
        // Rewrite the snapshot as a version 2 writer wrote it.
        let name = try #require(try FileManager.default.contentsOfDirectory(atPath: directory)
            .first { LedgerFileNames.parseSnapshot($0) != nil })
        let path = directory + "/" + name
        guard case .snapshot(var snapshot) = SnapshotFile.decode([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))))
        else {
            Issue.record("the snapshot does not decode")
            return
        }
        snapshot.formatVersion = 2
        try Data(snapshot.encode()).write(to: URL(fileURLWithPath: path))

        ledger = try Ledger.open(directory: directory)
        defer { try? ledger.close() }
        #expect(try Self.receiptBytesInMemory(ledger) == (0..<10).map { Self.receipt($0).count }.reduce(0, +))
        try await Self.expectReceipts(ledger, count: 10)
        try await ledger.compact()
        #expect(try Self.receiptBytesInMemory(ledger) == 0)
        try await Self.expectReceipts(ledger, count: 10)
    }

    @Test func theInMemoryStoreKeepsReceiptsInMemory() async throws {
        let ledger = Ledger.inMemory()
        try await Self.fill(ledger, count: 5)
        try await ledger.compact()
        try await Self.expectReceipts(ledger, count: 5)
        #expect(try Self.receiptBytesInMemory(ledger) == (0..<5).map { Self.receipt($0).count }.reduce(0, +))
        #expect(try Self.locatedCount(ledger) == 0)
    }

    @Test func anEntryIsSixtyFourBytesWhateverItsReceipt() {
        // With the key table's slot (8 bytes at most 3/4 full) and a fingerprint (32 bytes),
        // under the 128 bytes per entry plus the key of `Benchmarks/README.md`.
        #expect(MemoryLayout<LedgerState.Entry>.stride == 64)
    }
}
