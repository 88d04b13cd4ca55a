// Proves that the read-only replay (`Ledger.openReadOnly`, `LedgerInspection.read`: what
// `onceledger stat`, `verify` and the health check read) keeps receipts on disk like the file
// store: over segments and over a version 3 snapshot it holds no receipt bytes in memory
// (`LedgerState.receiptBytesInMemory`), every receipt still reads back byte for byte, a receipt
// damaged on disk after the read-only open is a typed error, a damaged snapshot value is still
// found by the inspection as before, and a visitor (`dump`) still sees each snapshot item whole.
// Real files in a temporary directory; the key count from ONCELEDGER_VALUES_KEYS (small default).
import Foundation
import OnceLedgerFormat
import OnceLedgerLog
import Testing
@_spi(Benchmarks) @testable import OnceLedger

@Suite struct ReadOnlyValuesTests {
    typealias Values = ValuesOnDiskTests

    static func inMemory(_ store: LogStore?) throws -> Int { try #require(store).withState { $0.receiptBytesInMemory } }
    static func located(_ store: LogStore?) throws -> Int { try #require(store).withState { $0.locatedEntryCount } }
    /// A read-only ledger's store is the `LogStore` itself.
    static func store(_ ledger: Ledger) -> LogStore? { ledger.logStore ?? ledger.store as? LogStore }
    static func location(_ ledger: Ledger, _ key: String) throws -> ValueLocation? {
        try #require(store(ledger)).withState { try? $0.lookup(key) }?.onDisk?.location
    }

    /// Checks the read-only views of `directory`: no receipt in memory, all located, every
    /// receipt of `rounds` byte for byte.
    static func expectReadOnlyHoldsNoReceipts(_ directory: String, rounds: [Int], count: Int) async throws {
        let inspection = try LedgerInspection.read(directory: directory)
        #expect(inspection.problem == nil)
        #expect(try inspection.entryCounts?.done == rounds.count * count)
        #expect(try inspection.store.map { try inMemory($0) } == 0)
        #expect(try inspection.store.map { try located($0) } == rounds.count * count)

        let ledger = try Ledger.openReadOnly(directory: directory)
        defer { try? ledger.close() }
        #expect(try inMemory(Self.store(ledger)) == 0)
        #expect(try located(Self.store(ledger)) == rounds.count * count)
        for round in rounds { try await Values.expectReceipts(ledger, count: count, round: round) }
        let listed: [EntryInfo] = try await ledger.entries(status: .done)
        let expected = Dictionary(uniqueKeysWithValues: rounds.flatMap { round in
            (0..<count).map { ("key-\($0)-r\(round)", Values.receipt($0, round: round)) }
        })
        #expect(listed.count == expected.count)
        for entry in listed { #expect(entry.receipt == expected[entry.key], "\(entry.key)") }
        #expect(try inMemory(Self.store(ledger)) == 0, "reading receipts keeps none")
    }

    @Test func aReadOnlyLedgerKeepsReceiptsOnDiskOverSegmentsAndOverASnapshot() async throws {
        let directory = Values.temporaryDirectory("readonly")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let count = Values.keyCount
        var ledger = try Ledger.open(directory: directory, configuration: Values.smallSegments)
        try await Values.fill(ledger, count: count)
        try ledger.close()
        // Segments only.
        try await Self.expectReadOnlyHoldsNoReceipts(directory, rounds: [0], count: count)

        // A version 3 snapshot (values and hints) and records after it.
        ledger = try Ledger.open(directory: directory, configuration: Values.smallSegments)
        try await ledger.compact()
        try await Values.fill(ledger, count: count, round: 1)
        try ledger.close()
        let readOnly = try Ledger.openReadOnly(directory: directory)
        #expect(try Self.location(readOnly, "key-0-r0")?.isSnapshot == true)
        #expect(try Self.location(readOnly, "key-0-r1")?.isSnapshot == false)
        try readOnly.close()
        try await Self.expectReadOnlyHoldsNoReceipts(directory, rounds: [0, 1], count: count)
    }

    @Test func aReceiptDamagedUnderAReadOnlyLedgerIsATypedError() async throws {
        let directory = Values.temporaryDirectory("readonly-damage")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let writer = try Ledger.open(directory: directory)
        try await Values.fill(writer, count: 3)
        try await writer.compact()
        try await Values.fill(writer, count: 3, round: 1)
        try writer.close()

        let ledger = try Ledger.openReadOnly(directory: directory)
        defer { try? ledger.close() }
        let reader = try #require(try Self.store(ledger)?.withState { $0.reader })
        let segment = try #require(try Self.location(ledger, "key-1-r1"))
        let value = try #require(try Self.location(ledger, "key-2-r0"))
        #expect(!segment.isSnapshot)
        #expect(value.isSnapshot)
        try Values.flipByte(reader.path(of: segment.file), at: segment.offset + UInt64(segment.readBytes / 2))
        try Values.flipByte(reader.path(of: value.file), at: value.offset + UInt64(value.readBytes / 2))
        await #expect { try await ledger.entry("key-1-r1") } throws: { ($0 as? LedgerError)?.code == .corruptRecord }
        await #expect { try await ledger.entry("key-2-r0") } throws: { ($0 as? LedgerError)?.code == .corruptRecord }
        #expect(try await ledger.entry("key-0-r1")?.receipt == Values.receipt(0, round: 1), "the other receipts still read")
        #expect(try await ledger.entry("key-0-r0")?.receipt == Values.receipt(0))
    }

    @Test func aDamagedSnapshotValueIsFoundByTheInspectionAsBefore() async throws {
        let directory = Values.temporaryDirectory("readonly-snapshot")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let writer = try Ledger.open(directory: directory)
        try await Values.fill(writer, count: 3)
        try await writer.compact()
        try writer.close()
        let value: ValueLocation
        let path: String
        do {
            let ledger = try Ledger.openReadOnly(directory: directory)
            defer { try? ledger.close() }
            value = try #require(try Self.location(ledger, "key-1-r0"))
            path = try #require(try Self.store(ledger)?.withState { $0.reader }).path(of: value.file)
        }
        try Values.flipByte(path, at: value.offset + UInt64(value.readBytes / 2))

        // Read whole, the snapshot fails its file checksum; the inspection says the same.
        let whole = SnapshotFile.decode([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))))
        guard case .corrupt(let reason) = whole else {
            Issue.record("the damaged snapshot decodes")
            return
        }
        let inspection = try LedgerInspection.read(directory: directory)
        #expect(inspection.refused)
        #expect(inspection.problem?.code == .invalidSnapshot)
        #expect(inspection.problem?.message.contains(reason) == true, "\(String(describing: inspection.problem))")
        #expect(throws: LedgerError.self) { try Ledger.openReadOnly(directory: directory) }
    }

    @Test func aVisitorSeesEachSnapshotItemWhole() async throws {
        let directory = Values.temporaryDirectory("readonly-visit")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let writer = try Ledger.open(directory: directory)
        try await Values.fill(writer, count: 5)
        try await writer.compact()
        try writer.close()
        let name = try #require(try FileManager.default.contentsOfDirectory(atPath: directory)
            .first { LedgerFileNames.parseSnapshot($0) != nil })
        guard case .snapshot(let snapshot) = SnapshotFile.decode(
            [UInt8](try Data(contentsOf: URL(fileURLWithPath: directory + "/" + name))))
        else {
            Issue.record("the snapshot does not decode")
            return
        }
        var visited: [SnapshotFile.Item] = []
        let inspection = try LedgerInspection.read(directory: directory, visit: { visit in
            if case .item(let index, let item, let snapshotName) = visit {
                #expect(index == visited.count)
                #expect(snapshotName == name)
                visited.append(item)
            }
        })
        #expect(inspection.problem == nil)
        #expect(visited == snapshot.items)
        #expect(visited.count == 5)
        #expect(try Self.inMemory(inspection.store) == 0)
    }
}
