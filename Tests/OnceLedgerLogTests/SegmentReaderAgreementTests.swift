// Proves the one segment walker (`SegmentReader.walk`) and the one resynchronisation rule
// (`SegmentReader.resynchronize`) agree, across a corpus of damaged segments: a real
// segment written by LogWriter (4 KiB, records of mixed sizes, sealed or not) is damaged
// by a seeded generator (flipped bytes, zeroed or garbage ranges, a record copied to the
// wrong offset, a record zeroed whole, a zeroed tail) and then (1) the walker yields a prefix of the original
// records and stops where that prefix ends; (2) resynchronising from offset 64, record
// after record, finds first exactly what the walker found, finds only original records
// at their original offsets (a checksum binds a record to its position), and misses no
// original record whose bytes the damage left intact; (3) a clean end is all zeros.
// Cases: ONCELEDGER_WALKER_CASES (default 300), seed ONCELEDGER_WALKER_SEED.
import Foundation
import OnceLedgerFormat
import OnceLedgerLog
import OnceLedgerTestSupport
import Testing

@Suite struct SegmentReaderAgreementTests {
    /// One segment per source ledger: (bytes, header, its records).
    static func sourceSegments() throws -> [(bytes: [UInt8], header: SegmentHeader, records: [LocatedRecord])] {
        let directory = temporaryDirectory("segment-reader-agreement")
        defer { removeDirectory(directory) }
        var generator = SeededRandom(seed: 7)
        // Bodies of 1 to 700 bytes, in batches of 1 to 3: segments 1 and 2 end with a seal.
        var batches: [[[UInt8]]] = []
        for index in 0..<40 {
            batches.append((0..<generator.int(in: 1...3)).map { payload(index * 3 + $0, bytes: generator.int(in: 1...700)) })
        }
        try buildLedger(directory, configuration: LogConfiguration(segmentBytes: 4096), batches: batches)
        return try segmentNumbers(directory).map { number in
            let bytes = try readFile(segmentPath(directory, number))
            guard case .header(let header) = SegmentHeader.decode(bytes) else {
                throw LedgerError(.corruptSegmentHeader, "test: cannot decode header", segment: number)
            }
            var records: [LocatedRecord] = []
            let end = SegmentReader.walk(bytes, ledgerID: header.ledgerID, segment: number) { records.append($0); return true }
            #expect(end.stop == .cleanEnd, "an undamaged segment walks to a clean end")
            return (bytes, header, records)
        }
    }

    /// Every record resynchronisation finds from offset 64 on, each search starting just
    /// past the record found before.
    static func resynchronizeAll(_ bytes: [UInt8], header: SegmentHeader) -> [(offset: UInt64, header: RecordHeader)] {
        var found: [(UInt64, RecordHeader)] = []
        bytes.withUnsafeBytes { raw in
            var from = FormatLimits.segmentHeaderBytes
            while let (index, record) = SegmentReader.resynchronize(
                raw, from: from, end: raw.count, ledgerID: header.ledgerID, segment: header.segmentNumber)
            {
                found.append((UInt64(index), record))
                from = index + record.frameBytes
            }
        }
        return found
    }

    @Test func walkerAndResynchronisationAgreeOnDamagedSegments() throws {
        let environment = ProcessInfo.processInfo.environment
        let cases = Int(environment["ONCELEDGER_WALKER_CASES"] ?? "") ?? 300
        var generator = SeededRandom(seed: UInt64(environment["ONCELEDGER_WALKER_SEED"] ?? "") ?? 0x5e9_0001)
        let sources = try Self.sourceSegments()
        #expect(sources.count >= 3 && sources.allSatisfy { $0.records.count >= 3 })
        var sawStops = Set<String>()
        for _ in 0..<cases {
            let source = generator.element(of: sources)
            var bytes = source.bytes
            // Offsets of the bytes the damage touched.
            var touched = IndexSet()
            let recordsEnd = Int(source.records.last!.endOffset)
            let start = generator.int(in: FormatLimits.segmentHeaderBytes...(recordsEnd - 1))
            switch generator.int(below: 6) {
            case 0:  // one flipped byte
                bytes[start] ^= UInt8(generator.int(in: 1...255))
                touched.insert(start)
            case 1:  // a zeroed range
                let count = generator.int(in: 1...200)
                for index in start..<min(bytes.count, start + count) { bytes[index] = 0 }
                touched.insert(integersIn: start..<min(bytes.count, start + count))
            case 2:  // a garbage range
                let garbage = generator.bytes(generator.int(in: 1...300))
                for (index, byte) in garbage.enumerated() where start + index < bytes.count { bytes[start + index] = byte }
                touched.insert(integersIn: start..<min(bytes.count, start + garbage.count))
            case 3:  // a valid record copied to another aligned offset: misplaced, so not valid there
                let record = generator.element(of: source.records)
                let frame = Array(source.bytes[Int(record.offset)..<Int(record.endOffset)])
                let target = start / FormatLimits.recordAlignment * FormatLimits.recordAlignment
                guard target != Int(record.offset), target + frame.count <= bytes.count else { continue }
                bytes.replaceSubrange(target..<(target + frame.count), with: frame)
                touched.insert(integersIn: target..<(target + frame.count))
            case 4:  // a whole record zeroed (a hole in the middle)
                let record = generator.element(of: source.records)
                for index in Int(record.offset)..<Int(record.endOffset) { bytes[index] = 0 }
                touched.insert(integersIn: Int(record.offset)..<Int(record.endOffset))
            default:  // a zeroed tail (a torn or lost write)
                for index in start..<bytes.count { bytes[index] = 0 }
                touched.insert(integersIn: start..<bytes.count)
            }
            let number = source.header.segmentNumber
            var walked: [LocatedRecord] = []
            let end = SegmentReader.walk(bytes, ledgerID: source.header.ledgerID, segment: number) {
                walked.append($0)
                return true
            }
            switch end.stop {
            case .cleanEnd: sawStops.insert("cleanEnd")
            case .zerosThenData: sawStops.insert("zerosThenData")
            case .runsPastEnd: sawStops.insert("runsPastEnd")
            case .corrupt: sawStops.insert("corrupt")
            case .stoppedByVisitor: sawStops.insert("stoppedByVisitor")
            }

            // (1) The walker yields a prefix of the original records and stops where it ends.
            #expect(walked.count <= source.records.count)
            for (record, original) in zip(walked, source.records) {
                #expect(record.offset == original.offset && record.header == original.header && record.body == original.body)
            }
            #expect(end.offset == (walked.last?.endOffset ?? UInt64(FormatLimits.segmentHeaderBytes)))
            #expect(end.stop != .stoppedByVisitor)
            // (3) A clean end is all zeros from where the walk stopped.
            if end.stop == .cleanEnd {
                #expect(bytes[Int(end.offset)...].allSatisfy { $0 == 0 })
            }

            // (2) Resynchronisation finds first what the walker found, then only genuine
            // records, and every original record the damage did not touch.
            let resynced = Self.resynchronizeAll(bytes, header: source.header)
            #expect(resynced.prefix(walked.count).map(\.offset) == walked.map(\.offset),
                    "resynchronisation must accept every record the walker accepts")
            let originals = Dictionary(uniqueKeysWithValues: source.records.map { ($0.offset, $0.header) })
            for found in resynced {
                #expect(originals[found.offset] == found.header,
                        "resynchronised to offset \(found.offset), where no such original record is")
            }
            let foundOffsets = Set(resynced.map(\.offset))
            for original in source.records
            where !touched.intersects(integersIn: Int(original.offset)..<Int(original.endOffset)) {
                #expect(foundOffsets.contains(original.offset), "missed the intact record at offset \(original.offset)")
            }
        }
        #expect(sawStops.isSuperset(of: ["cleanEnd", "zerosThenData", "corrupt"]), "the corpus reaches the walker's stops: \(sawStops)")
    }
}
