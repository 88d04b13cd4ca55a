// Shared helpers for the fault-injection, bad-input and recovery-table tests: build
// small real ledgers synchronously with `LogWriter` (one `commit` = one batch), find
// where each record sits by walking segment files with the one walker, and
// damage files in place (flip, zero, truncate, patch a version and re-seal its crc).
import Foundation
import OnceLedgerFormat
import OnceLedgerLog
import Testing

/// A recognisable body for record `index`.
func payload(_ index: Int, bytes: Int = 100) -> [UInt8] {
    let tag = Array("record-\(index)-".utf8)
    return tag + (0..<max(0, bytes - tag.count)).map { UInt8(truncatingIfNeeded: index &* 31 &+ $0) }
}

/// Frame bytes of an opaque record with a body of `bodyBytes`.
func frameBytes(_ bodyBytes: Int) -> Int { RecordFrame.frameBytes(bodyBytes: bodyBytes) }

/// How many records with `bodyBytes`-byte bodies fit one segment of `segmentBytes`.
func recordsPerSegment(segmentBytes: UInt64, bodyBytes: Int) -> Int {
    // Every segment keeps room for the seal that closes it at rollover.
    (Int(segmentBytes) - FormatLimits.segmentHeaderBytes - FormatLimits.sealFrameBytes) / frameBytes(bodyBytes)
}

func removeDirectory(_ path: String) {
    // Restore permissions a test may have removed, then delete.
    _ = chmod(path, 0o755)
    try? FileManager.default.removeItem(atPath: path)
}

func segmentPath(_ directory: String, _ number: UInt64) -> String {
    directory + "/" + LedgerFileNames.segment(number)
}

func fileNames(_ directory: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
}

func segmentNumbers(_ directory: String) -> [UInt64] {
    fileNames(directory).compactMap(LedgerFileNames.parseSegment).sorted()
}

func snapshotPaths(_ directory: String) -> [String] {
    fileNames(directory).filter { LedgerFileNames.parseSnapshot($0) != nil }.map { directory + "/" + $0 }
}

func fileExists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

/// Builds a ledger synchronously: each element of `batches` is one `commit` (one
/// batch, one fdatasync). Optionally compacts after batch `compactAfter` (the
/// snapshot items are the opaque bodies so far) and closes with or without the
/// closing checkpoint. Returns the ledger id.
@discardableResult
func buildLedger(
    _ directory: String, configuration: LogConfiguration, batches: [[[UInt8]]], compactAfter: Int? = nil
) throws -> LedgerID {
    let (writer, lock, _) = try LogWriter.recover(
        directory: directory, storage: PosixStorage(), configuration: configuration)
    defer { lock.unlock() }
    var bodies: [[UInt8]] = []
    for (index, batch) in batches.enumerated() {
        let records = batch.map { LogRecord(kind: .opaque, body: $0) }
        try writer.validate(records)
        try writer.commit(records)
        bodies.append(contentsOf: batch)
        if index == compactAfter {
            _ = try writer.compact(
                items: bodies.map { SnapshotFile.Item(kind: .opaque, body: $0) }, timeMilliseconds: 1)
        }
    }
    writer.close(timeMilliseconds: 2)
    return writer.ledgerID
}

/// One valid record found by the one segment walker (`SegmentReader`), seen through the
/// fields these tests use (offsets as `Int`, to index file bytes).
struct RecordLocation: Equatable {
    var record: LocatedRecord
    var segment: UInt64 { record.segment }
    var offset: Int { Int(record.offset) }
    var sequence: UInt64 { record.header.sequence }
    var ackedThrough: UInt64 { record.header.ackedThrough }
    var frameBytes: Int { record.header.frameBytes }
    var kind: RecordKind { record.header.kind }
    var body: [UInt8] { record.body }
    var checksum: UInt32 { record.header.checksum }
}

/// Every valid record of the segment file at `path`, in order, stopping at the first
/// position that does not decode as a record (`SegmentReader.walk`, as the scanner reads).
func walkSegment(_ path: String) throws -> (header: SegmentHeader, records: [RecordLocation]) {
    let bytes = try readFile(path)
    guard case .header(let header) = SegmentHeader.decode(bytes) else {
        throw LedgerError(.corruptSegmentHeader, "test helper: cannot decode header", path: path)
    }
    var records: [RecordLocation] = []
    SegmentReader.walk(bytes, ledgerID: header.ledgerID, segment: header.segmentNumber) { record in
        records.append(RecordLocation(record: record))
        return true
    }
    return (header, records)
}

/// Every valid record of every segment in `directory`.
func walkLedger(_ directory: String) throws -> [RecordLocation] {
    try segmentNumbers(directory).flatMap { try walkSegment(segmentPath(directory, $0)).records }
}

// MARK: Damage

func readFile(_ path: String) throws -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw LedgerError(.io, "test helper: cannot read", path: path)
    }
    return [UInt8](data)
}

func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// XORs one byte of a file with `mask`.
func flipByte(_ path: String, at offset: Int, mask: UInt8 = 0x40) throws {
    var bytes = try readFile(path)
    bytes[offset] ^= mask
    try writeFile(path, bytes)
}

func zeroRange(_ path: String, _ range: Range<Int>) throws {
    var bytes = try readFile(path)
    for index in range { bytes[index] = 0 }
    try writeFile(path, bytes)
}

func overwrite(_ path: String, at offset: Int, with replacement: [UInt8]) throws {
    var bytes = try readFile(path)
    bytes.replaceSubrange(offset..<(offset + replacement.count), with: replacement)
    try writeFile(path, bytes)
}

func truncateFile(_ path: String, to size: Int) throws {
    let bytes = try readFile(path)
    try writeFile(path, Array(bytes.prefix(size)))
}

func copyFile(_ from: String, _ to: String) throws {
    try writeFile(to, readFile(from))
}

/// Patches the u16 format version at offset 8 of a segment or snapshot header and
/// re-seals the header checksum (crc32 of bytes 0..<60, stored at 60), so only the
/// version is wrong.
func patchVersion(_ path: String, to version: UInt16) throws {
    var bytes = try readFile(path)
    bytes[8] = UInt8(version & 0xff)
    bytes[9] = UInt8(version >> 8)
    let crc = CRC32.checksum(Array(bytes[0..<60]))
    withUnsafeBytes(of: crc.littleEndian) { for index in 0..<4 { bytes[60 + index] = $0[index] } }
    try writeFile(path, bytes)
}

// MARK: Expectations

/// Reopens `directory` and returns the opaque bodies it yields (snapshot items first,
/// then records above the snapshot), the row, and the open engine (caller closes).
func reopenOpaque(_ directory: String, configuration: LogConfiguration) throws -> (LogEngine, [[UInt8]]) {
    var bodies: [[UInt8]] = []
    let engine = try LogEngine.open(
        directory: directory, configuration: configuration,
        onSnapshot: { snapshot in bodies += snapshot.items.filter { $0.kind == .opaque }.map(\.body) },
        onRecord: { record in if record.header.kind == .opaque { bodies.append(record.body) } })
    return (engine, bodies)
}

/// Checks that `recovered` is every acknowledged body, in order, optionally followed
/// by a prefix of the bodies whose append failed (they may or may not have reached
/// the disk; nothing else may appear).
func expectRecovered(
    _ recovered: [[UInt8]], acknowledged: [[UInt8]], unacknowledged: [[UInt8]] = [],
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(Array(recovered.prefix(acknowledged.count)) == acknowledged,
            "every acknowledged record must come back, bytes equal, in order", sourceLocation: sourceLocation)
    let extra = Array(recovered.dropFirst(acknowledged.count))
    #expect(extra.count <= unacknowledged.count && Array(unacknowledged.prefix(extra.count)) == extra,
            "only a prefix of the failed append may follow (got \(extra.count) extra)", sourceLocation: sourceLocation)
}
