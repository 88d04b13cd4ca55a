// Proves that a file ledger keeps memo values on disk, like receipts (`MemoTable`: each memo
// entry holds the location of its record, or of its value in a version 3 snapshot, and reads it
// on demand), while the in-memory store keeps them in memory: values read back byte for byte
// after a put, a compaction (the value moves into the snapshot's values section) and a reopen
// (opened from the snapshot's hints, not its values); a value damaged on disk gives a typed
// `corrupt-record` error instead of wrong bytes. Real files in a temporary directory.
import Foundation
import OnceLedgerFormat
import OnceLedgerLog
import Testing
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerStoreContract

@Suite struct MemoValuesOnDiskTests {
    static func slot(_ ledger: Ledger, _ key: MemoKey) -> MemoTable.Slot? {
        ledger.logStore?.memo.withLock { $0.slot(key) }
    }

    static func location(_ ledger: Ledger, _ key: MemoKey) -> ValueLocation? {
        guard case .located(let location, _) = slot(ledger, key)?.value else { return nil }
        return location
    }

    @Test func aFileLedgerKeepsMemoValuesOnDiskThroughCompactionAndReopen() async throws {
        let directory = FileManager.default.temporaryDirectory.path + "/ol-memo-values-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let value = (0..<5_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        var ledger = try Ledger.open(directory: directory)
        let memo = try await ledger.memo(run: "run-1", step: "s", namespace: "ns")
        try await memo.put("big", bytes: value, input: "prompt")
        let key = memo.key("big")
        let inSegment = try #require(Self.location(ledger, key), "the value stays in its segment record")
        #expect(!inSegment.isSnapshot)
        #expect(Self.slot(ledger, key)?.value.count == value.count)
        #expect(try await memo.bytes("big", input: "prompt") == value)

        try await ledger.compact()
        let inSnapshot = try #require(Self.location(ledger, key), "compaction moves it into the snapshot's values")
        #expect(inSnapshot.isSnapshot)
        #expect(try await memo.bytes("big", input: "prompt") == value)

        try ledger.close()
        ledger = try Ledger.open(directory: directory)
        #expect(Self.location(ledger, key)?.isSnapshot == true, "opened from the hints: the value stays on disk")
        #expect(Self.slot(ledger, key)?.value.count == value.count)
        let reopened = try await ledger.memo(run: "run-1", step: "s", namespace: "ns")
        #expect(reopened.generation == memo.generation)
        #expect(try await reopened.bytes("big", input: "prompt") == value)
        // A second compaction reads the value from the first snapshot into the next one.
        try await ledger.compact()
        #expect(try await reopened.bytes("big", input: "prompt") == value)
        try ledger.close()
    }

    @Test func theInMemoryStoreKeepsMemoValuesInMemory() async throws {
        let ledger = Ledger.inMemory()
        let memo = try await ledger.memo(run: "run-1", step: "s")
        try await memo.put("v", bytes: [1, 2, 3])
        guard case .bytes(let bytes) = Self.slot(ledger, memo.key("v"))?.value else {
            Issue.record("expected the value in memory")
            return
        }
        #expect(bytes == [1, 2, 3])
        try await ledger.compact()
        #expect(try await memo.bytes("v") == [1, 2, 3])
        try ledger.close()
    }

    @Test func aMemoValueDamagedOnDiskIsATypedErrorNotWrongBytes() async throws {
        let directory = FileManager.default.temporaryDirectory.path + "/ol-memo-damage-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ledger = try Ledger.open(directory: directory)
        let memo = try await ledger.memo(run: "run-1", step: "s")
        try await memo.put("v", bytes: [UInt8](repeating: 0x5a, count: 600))
        let location = try #require(Self.location(ledger, memo.key("v")))
        let reader = try #require(ledger.logStore?.memo.withLock { $0.reader })
        try ValuesOnDiskTests.flipByte(reader.path(of: location.file), at: location.offset + UInt64(location.readBytes / 2))
        let error = await ledgerError { try await memo.bytes("v") }
        #expect(error?.code == .corruptRecord)
        try? ledger.close()
    }
}
