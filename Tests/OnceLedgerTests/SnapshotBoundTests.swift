// Proves the memo's snapshot size bound (`MemoTable.snapshotByteBound`, which a compaction sizes
// its rollover with on the log's I/O thread): it sums each journal's positions from the
// journal's totals, so those totals stay exact through appends, a truncation's overwrites, a
// compaction's relocation and a reopen, and the bound stays at least the snapshot's size.
import Foundation
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerFormat
import Testing

@Suite struct SnapshotBoundTests {
    static func record(_ ledger: Ledger, run: String, steps: Int, pad: Int) async throws {
        let journal = try await ledger.journal(run: run)
        for index in 0..<steps {
            // Outputs of up to 3 KiB, their lengths of every remainder modulo the alignment:
            // the values, not the positions' fixed bytes, make most of the snapshot.
            _ = try await journal.step("s\(index)", input: index) { String(repeating: "x", count: (index * pad * 97) % 3001) }
        }
    }

    static func snapshotBytes(_ directory: String) throws -> Int {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
            .filter { LedgerFileNames.parseSnapshot($0) != nil }.sorted()
        let newest = try #require(names.last)
        let attributes = try FileManager.default.attributesOfItem(atPath: directory + "/" + newest)
        return try #require(attributes[.size] as? Int)
    }

    /// The bound the next compaction will use, checked against the exact totals first.
    static func bound(_ ledger: Ledger) throws -> Int {
        let store = try #require(ledger.logStore)
        #expect(store.memo.withLock { $0.journalValueBytesAreExact })
        return store.memo.withLock { $0.snapshotByteBound() } + FormatLimits.snapshotHeaderBytes
            + FormatLimits.snapshotTrailerBytes
    }

    @Test func journalTotalsStayExactAndTheBoundCoversTheSnapshot() async throws {
        let directory = ValuesOnDiskTests.temporaryDirectory("snapshot-bound")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var ledger = try Ledger.open(directory: directory)
        try await Self.record(ledger, run: "a", steps: 30, pad: 1)
        try await Self.record(ledger, run: "b", steps: 12, pad: 5)
        // A truncation overwrites positions 4 ..< 12 (and frees 12) with shorter entries.
        try await ledger.truncateJournal(run: "b", from: 4, actor: "test", reason: "a changed step")
        var bound = try Self.bound(ledger)
        try await ledger.compact()
        #expect(try Self.snapshotBytes(directory) <= bound)
        // The relocated positions (now in the snapshot), then more of them, and a reopen.
        try await Self.record(ledger, run: "c", steps: 17, pad: 3)
        bound = try Self.bound(ledger)
        try await ledger.compact()
        #expect(try Self.snapshotBytes(directory) <= bound)
        try ledger.close()
        ledger = try Ledger.open(directory: directory)
        bound = try Self.bound(ledger)
        try await ledger.compact()
        #expect(try Self.snapshotBytes(directory) <= bound)
        try ledger.close()
    }
}
