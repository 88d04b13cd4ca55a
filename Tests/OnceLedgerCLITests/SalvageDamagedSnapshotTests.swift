// Proves `onceledger salvage --trust-damaged-snapshot` of a damaged snapshot of the kind this build
// writes (version 3, and version 4 with journal positions, FORMAT §6.7) keeps what is intact: every
// completed `once` stays done, every memo value and journal output whose value still checks reads
// back byte for byte, and a run end stays an end. Before, the damaged-snapshot parser read the
// values section as version-2 items, stopped at the first one and kept nothing, so the new ledger
// held no snapshot state: completed effects came out absent (their effects would run again).
// A damaged done entry's receipt keeps the key done (without its receipt); a damaged memo value is
// left out, never replaced. How: a ledger written with the library (onces, memo puts, a journal, a
// run end), compacted, one byte flipped inside one value of the snapshot (found by its marker
// bytes), salvaged with the CLI, the new ledger read with the library.
import Foundation
import OnceLedger
import OnceLedgerFormat
import Testing

@Suite struct SalvageDamagedSnapshotTests {
    static let memoMarker = [UInt8](repeating: 0x5a, count: 300)
    static let receiptMarker = String(repeating: "R", count: 300)

    /// A compacted ledger: three completed onces (one receipt carries `receiptMarker`), memo
    /// values (one carries `memoMarker`), a journal of four positions, and a finished run.
    static func compactedLedger(_ directory: String) async throws -> (journal: [JournalRecord], memoGeneration: UInt64) {
        let ledger = try Ledger.open(directory: directory)
        defer { try? ledger.close() }
        for index in 0..<3 {
            let receipt = index == 1 ? receiptMarker : "receipt-\(index)"
            try await ledger.once("charge-\(index)", as: String.self) { _ in receipt }
        }
        let memo = try await ledger.memo(run: "batch", step: "llm")
        try await memo.put("intact", bytes: [1, 2, 3, 4])
        try await memo.put("damaged", bytes: memoMarker)
        try await ledger.finishRun("batch", status: .succeeded)
        let journal = try await ledger.journal(run: "agent")
        for index in 0..<4 {
            _ = try await journal.step("tool") { "output \(index)" }
        }
        let records = try await ledger.journalRecords(run: "agent")
        try await ledger.compact()
        return (records, memo.generation)
    }

    /// The entries of the ledger salvage made in `directory`, by key.
    static func entries(of directory: String) throws -> [String: EntryInfo] {
        let store = try FileStore(directory: directory)
        defer { try? store.close() }
        return Dictionary(uniqueKeysWithValues: try store.currentEntries().map { ($0.key, $0) })
    }

    static func snapshotPath(_ directory: String) throws -> String {
        let name = try #require(try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".snap") }.max())
        return directory + "/" + name
    }

    static func flip(_ marker: [UInt8], in path: String) throws {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let start = try #require((0...(bytes.count - marker.count)).first { bytes[$0..<($0 + marker.count)].elementsEqual(marker) })
        bytes[start + marker.count / 2] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// A damaged hint is not checked by any checksum once the hints checksum fails; a done entry's
    /// value is (its own). A done entry whose hint's state byte was flipped to absent stays done,
    /// from its value.
    @Test func aDoneEntryWhoseHintSaysAbsentIsTakenFromItsValue() async throws {
        let source = try KillTestDirectory("salvage-damaged-hint")
        defer { source.remove() }
        _ = try await Self.compactedLedger(source.path)
        let path = try Self.snapshotPath(source.path)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        // The hint of charge-1: after the values section; its key, then state 1 (done).
        let hintsStart = 64 + Int(ByteReader.getInteger(bytes, at: 48, as: UInt64.self))
        let key = [UInt8]("\u{8}\u{0}charge-1".utf8)
        let at = try #require((hintsStart...(bytes.count - key.count)).first { bytes[$0..<($0 + key.count)].elementsEqual(key) })
        #expect(bytes[at + key.count] == 1)
        bytes[at + key.count] = 3  // absent
        try Data(bytes).write(to: URL(fileURLWithPath: path))

        let target = try KillTestDirectory("salvage-damaged-hint-new")
        defer { target.remove() }
        let result = try CLI.run(["salvage", source.path, "--to", target.path, "--trust-damaged-snapshot"])
        #expect(result.exitCode == 4, "\(result.stdout) \(result.stderr)")
        let entries = try Self.entries(of: target.path)
        #expect(entries["charge-1"]?.status == .done, "\(result.stdout)")
        #expect(entries["charge-1"]?.receipt == Array("\"\(Self.receiptMarker)\"".utf8))
    }

    /// A journal-positions hint whose (unchecked) value offset is damaged to near 2^64: its
    /// positions are reported lost, salvage does not trap adding their value sizes to it, and
    /// every other item is kept.
    @Test func aJournalPositionsHintNamingAHugeValueOffsetDoesNotTrap() async throws {
        let source = try KillTestDirectory("salvage-damaged-positions")
        defer { source.remove() }
        _ = try await Self.compactedLedger(source.path)
        let path = try Self.snapshotPath(source.path)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let hintsStart = 64 + Int(ByteReader.getInteger(bytes, at: 48, as: UInt64.self))
        let hint = try #require(stride(from: hintsStart, to: bytes.count - 24, by: 8).first {
            bytes[($0 + 4)..<($0 + 8)].elementsEqual([0x12, 0, 1, 0])
        })
        for index in 0..<8 { bytes[hint + 8 + index] = index == 0 ? 0xf0 : 0xff }
        try Data(bytes).write(to: URL(fileURLWithPath: path))

        let target = try KillTestDirectory("salvage-damaged-positions-new")
        defer { target.remove() }
        let result = try CLI.run(["salvage", source.path, "--to", target.path, "--trust-damaged-snapshot"])
        #expect(result.exitCode == 4, "\(result.stdout) \(result.stderr)")
        let entries = try Self.entries(of: target.path)
        for index in 0..<3 {
            #expect(entries["charge-\(index)"]?.status == .done, "charge-\(index): \(result.stdout)")
        }
    }

    /// A valid snapshot whose file name disagrees with its header (renamed by hand, or a copy
    /// under another name): its checksummed header tells what it covers, so salvage uses it as
    /// covering that and reports the name, instead of leaving it out and every completed once
    /// it holds absent.
    @Test(arguments: [0x40, 0x10])
    func aSnapshotWhoseNameDisagreesIsUsedByItsHeader(named: Int) async throws {
        let source = try KillTestDirectory("salvage-renamed-snap")
        defer { source.remove() }
        let (journalRecords, _) = try await Self.compactedLedger(source.path)
        let path = try Self.snapshotPath(source.path)
        let renamed = source.path + "/" + LedgerFileNames.snapshot(UInt64(named))
        try FileManager.default.moveItem(atPath: path, toPath: renamed)

        let target = try KillTestDirectory("salvage-renamed-snap-new")
        defer { target.remove() }
        let result = try CLI.run(["salvage", source.path, "--to", target.path])
        #expect(result.exitCode == 4, "\(result.stdout) \(result.stderr)")
        #expect(result.stdout.contains("its header covers sequence"), "\(result.stdout)")
        let entries = try Self.entries(of: target.path)
        for index in 0..<3 {
            #expect(entries["charge-\(index)"]?.status == .done, "charge-\(index): \(result.stdout)")
        }
        let ledger = try Ledger.open(directory: target.path)
        defer { try? ledger.close() }
        #expect(try await ledger.journalRecords(run: "agent") == journalRecords)
    }

    @Test(arguments: ["memo", "receipt"])
    func trustedDamagedSnapshotKeepsEveryIntactItem(damage: String) async throws {
        let source = try KillTestDirectory("salvage-damaged-snap")
        defer { source.remove() }
        let (journalRecords, memoGeneration) = try await Self.compactedLedger(source.path)
        let snapshot = try Self.snapshotPath(source.path)
        #expect(ByteReader.getInteger([UInt8](try Data(contentsOf: URL(fileURLWithPath: snapshot))), at: 8, as: UInt16.self) == 4)
        try Self.flip(damage == "memo" ? Self.memoMarker : Array(Self.receiptMarker.utf8), in: snapshot)

        let target = try KillTestDirectory("salvage-damaged-snap-new")
        defer { target.remove() }
        let result = try CLI.run(["salvage", source.path, "--to", target.path, "--trust-damaged-snapshot"])
        #expect(result.exitCode == 4, "unverified snapshot items: \(result.stdout) \(result.stderr)")
        #expect(result.stdout.contains("UNVERIFIED"), "\(result.stdout)")
        #expect(result.stdout.contains(damage == "memo" ? "; left out" : "; kept as done without its receipt"), "\(result.stdout)")

        let store = try FileStore(directory: target.path)
        defer { try? store.close() }
        let entries = Dictionary(uniqueKeysWithValues: try store.currentEntries().map { ($0.key, $0) })
        for index in 0..<3 {
            #expect(entries["charge-\(index)"]?.status == .done, "charge-\(index) completed in the source: \(result.stdout)")
        }
        #expect(entries["charge-0"]?.receipt == Array("\"receipt-0\"".utf8))
        #expect(entries["charge-2"]?.receipt == Array("\"receipt-2\"".utf8))
        if damage == "receipt" { #expect(entries["charge-1"]?.receipt == []) }
        let runs = try await store.runs(RunQuery())
        #expect(runs.first { $0.run.run == "batch" }?.status == .succeeded, "the run end is kept: \(runs)")
        func stored(_ name: String) async throws -> [UInt8]? {
            try await store.memoGet(MemoKey(run: MemoRun(run: "batch"), generation: memoGeneration, step: "llm", name: name))?.bytes
        }
        #expect(try await stored("intact") == [1, 2, 3, 4])
        #expect(try await stored("damaged") == (damage == "memo" ? nil : Self.memoMarker))
        try store.close()

        let ledger = try Ledger.open(directory: target.path)
        defer { try? ledger.close() }
        #expect(try await ledger.journalRecords(run: "agent") == journalRecords, "every journal output is kept")
    }
}
