// Proves the read-ahead a compaction reads values through (`ReadAhead`, `RecordReader.readPart`):
// reads in file order — a journal's records in a segment, the values of a snapshot in the order
// it wrote them — come from a few larger reads and return exactly what one read per value
// returns, in windows that grow while the reads stream on; reads that do not follow one another
// read directly; a window read from one file is never used for another at the same offsets; and a record damaged inside a window is the same
// `corrupt-record` error as without it.
import Foundation
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import Testing
import OnceLedgerStoreContract

@Suite struct ReadAheadTests {
    static let steps = 40

    /// Records `steps` journal steps of run `run` and returns their value locations.
    static func record(_ ledger: Ledger, run: String) async throws -> [ValueLocation] {
        let journal = try await ledger.journal(run: run)
        for index in 0..<steps {
            _ = try await journal.step("s\(index)", input: index) { "output \(index) " + String(repeating: "x", count: index) }
        }
        return try locations(ledger, journal)
    }

    static func locations(_ ledger: Ledger, _ journal: Journal) throws -> [ValueLocation] {
        try (0..<UInt64(steps)).map { try #require(MemoValuesOnDiskTests.location(ledger, journal.memoKey($0))) }
    }

    /// `record`, then a compaction: where the run's values are in the snapshot.
    static func recordAndCompact(_ ledger: Ledger, run: String) async throws -> [ValueLocation] {
        _ = try await record(ledger, run: run)
        try await ledger.compact()
        return try locations(ledger, try await ledger.journal(run: run))
    }

    /// The memo's reader of values on disk.
    static func reader(_ ledger: Ledger) throws -> RecordReader {
        try #require(ledger.logStore?.memo.withLock { $0.reader })
    }

    static func directRead(_ reader: RecordReader, _ location: ValueLocation) throws -> [UInt8] {
        try reader.readPart(location, from: reader.handle(for: location.file)) { _, body in 0..<body.count }
    }

    static func read(_ reader: RecordReader, _ location: ValueLocation, _ readAhead: ReadAhead) throws -> [UInt8] {
        try reader.readPart(location, from: reader.handle(for: location.file), readAhead: readAhead) { _, body in 0..<body.count }
    }

    @Test func readsInFileOrderComeFromFewReadsAndReturnTheSameBytes() async throws {
        let directory = ValuesOnDiskTests.temporaryDirectory("read-ahead")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ledger = try Ledger.open(directory: directory)
        let segment = try await Self.record(ledger, run: "r")
        let store = try #require(ledger.logStore)
        let reader = try #require(store.memo.withLock { $0.reader })
        // A run recorded alone: its records follow one another in the segment.
        #expect(zip(segment, segment.dropFirst()).allSatisfy { $0.file == $1.file && $0.offset < $1.offset })
        try await ledger.compact()
        let journal = try await ledger.journal(run: "r")
        let snapshot = try Self.locations(ledger, journal)
        #expect(snapshot.allSatisfy { $0.isSnapshot })
        // Small windows, so the run takes several.
        let readAhead = ReadAhead(windowBytes: 512)
        for location in snapshot {
            #expect(try Self.read(reader, location, readAhead) == Self.directRead(reader, location), "\(location)")
        }
        let counts = readAhead.counts
        #expect(counts.windows > 1 && counts.windows < snapshot.count / 2, "\(counts)")
        #expect(counts.hits == snapshot.count - 1, "every read but the first is served from a window: \(counts)")
        // Backwards, nothing follows: every read is direct.
        let backwards = ReadAhead(windowBytes: 512)
        for location in snapshot.reversed() {
            #expect(try Self.read(reader, location, backwards) == Self.directRead(reader, location))
        }
        #expect(backwards.counts.windows == 0 && backwards.counts.hits == 0)
        try ledger.close()
    }

    @Test func aSegmentsRecordsInOrderComeFromAWindowToo() async throws {
        let directory = ValuesOnDiskTests.temporaryDirectory("read-ahead-seg")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ledger = try Ledger.open(directory: directory)
        let locations = try await Self.record(ledger, run: "r")
        let reader = try Self.reader(ledger)
        let readAhead = ReadAhead()
        for location in locations {
            #expect(try Self.read(reader, location, readAhead) == Self.directRead(reader, location))
        }
        // A run recorded alone: its records follow one another, one window holds them all.
        #expect(readAhead.counts.windows == 1 && readAhead.counts.hits == locations.count - 1, "\(readAhead.counts)")
        try ledger.close()
    }

    @Test func windowsGrowWhileReadsStreamOn() async throws {
        let directory = ValuesOnDiskTests.temporaryDirectory("read-ahead-grow")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ledger = try Ledger.open(directory: directory)
        let journal = try await ledger.journal(run: "r")
        let output = String(repeating: "y", count: 400)
        let steps = 300
        for index in 0..<steps { _ = try await journal.step("s\(index)") { output } }
        let locations = try (0..<UInt64(steps)).map { try #require(MemoValuesOnDiskTests.location(ledger, journal.memoKey($0))) }
        let reader = try Self.reader(ledger)
        let span = Int(locations[steps - 1].offset - locations[0].offset) + locations[steps - 1].readBytes
        #expect(span > 4 * ReadAhead.firstWindowBytes, "the run's records span \(span) bytes")
        let readAhead = ReadAhead()
        for location in locations {
            #expect(try Self.read(reader, location, readAhead) == Self.directRead(reader, location))
        }
        // 16, 32, 64, … KiB: fewer windows than the span holds first-size windows.
        let counts = readAhead.counts
        #expect(counts.hits == steps - 1, "\(counts)")
        #expect(counts.windows < span / ReadAhead.firstWindowBytes, "\(counts), span \(span)")
        try ledger.close()
    }

    @Test func aWindowOfOneFileIsNeverUsedForAnother() async throws {
        let directory = ValuesOnDiskTests.temporaryDirectory("read-ahead-files")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ledger = try Ledger.open(directory: directory)
        let inSnapshot = try await Self.recordAndCompact(ledger, run: "a")
        let inSegment = try await Self.record(ledger, run: "b")
        #expect(inSnapshot.allSatisfy { $0.isSnapshot } && inSegment.allSatisfy { !$0.isSnapshot })
        let reader = try Self.reader(ledger)
        // Two snapshot values in order load a window over the whole snapshot's values; a
        // segment record at an offset that window spans must still be the segment's.
        let readAhead = ReadAhead()
        _ = try Self.read(reader, inSnapshot[0], readAhead)
        _ = try Self.read(reader, inSnapshot[1], readAhead)
        #expect(readAhead.counts.windows == 1)
        let spanned = inSegment.filter { $0.offset >= inSnapshot[1].offset }
        #expect(!spanned.isEmpty, "a segment record lies at an offset the snapshot's window spans")
        for location in spanned {
            #expect(try Self.read(reader, location, readAhead) == Self.directRead(reader, location))
        }
        try ledger.close()
    }

    @Test func aRecordDamagedInsideAWindowIsCorruptRecord() async throws {
        let directory = ValuesOnDiskTests.temporaryDirectory("read-ahead-damage")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ledger = try Ledger.open(directory: directory)
        let locations = try await Self.recordAndCompact(ledger, run: "r")
        let reader = try Self.reader(ledger)
        let damaged = locations[5]
        try ValuesOnDiskTests.flipByte(reader.path(of: damaged.file), at: damaged.offset + UInt64(damaged.readBytes - 2))
        let readAhead = ReadAhead()
        for location in locations[..<5] { _ = try Self.read(reader, location, readAhead) }
        #expect(readAhead.counts.windows == 1)
        let error = await ledgerError { try Self.read(reader, damaged, readAhead) }
        #expect(error?.code == .corruptRecord)
        let direct = await ledgerError { try Self.directRead(reader, damaged) }
        #expect(direct?.code == .corruptRecord)
        // A compaction reading through it refuses, as without it, and the ledger stays usable.
        let compaction = await ledgerError { try await ledger.compact() }
        #expect(compaction?.code == .corruptRecord)
        try ledger.close()
    }
}
