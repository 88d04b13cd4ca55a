import OnceLedgerFormat
import OnceLedgerLog

/// A version 3 snapshot checked whole without holding it whole (`LedgerInspection`):
/// the file checksum over every byte, read a chunk at a time, and each value read on its
/// own and checked against its hint — what `SnapshotFile.decode` checks, in memory
/// bounded by the hint section. Untrusted bytes: every problem is a `false` or a typed
/// error, never a trap.
enum SnapshotCheck {
    /// Bytes read per step of the file checksum.
    static let chunkBytes = 1 << 20

    /// Whether the file at `path` is a version 3 snapshot that `SnapshotFile.decode` would
    /// accept (file checksum, hints, every value and its match with its hint). False for
    /// any other version, any damage and any read error: the caller then reads the file
    /// whole, which reports the damage as an open would.
    static func holdsValidValues(storage: any Storage, path: String) -> Bool {
        guard let file = try? storage.openFile(path, mode: .readOnly) else { return false }
        defer { file.close() }
        return (try? check(file)) ?? false
    }

    private static func check(_ file: any StorageFile) throws -> Bool {
        let size = try file.size()
        let headerBytes = FormatLimits.snapshotHeaderBytes, trailerBytes = FormatLimits.snapshotTrailerBytes
        guard size >= UInt64(headerBytes + trailerBytes) else { return false }
        let header = try file.read(at: 0, count: headerBytes)
        guard header.count == headerBytes, ByteReader.getInteger(header, at: 8, as: UInt16.self) >= 3 else { return false }
        let valuesBytes = ByteReader.getInteger(header, at: 48, as: UInt64.self)
        let fixed = UInt64(headerBytes + trailerBytes)
        guard valuesBytes <= size - fixed, size - fixed - valuesBytes <= FormatLimits.snapshotBodyBytesMax else { return false }

        // The file checksum: every byte before the trailer's last four.
        let checkedEnd = size - 4
        var crc: UInt32 = 0
        var offset: UInt64 = 0
        while offset < checkedEnd {
            let chunk = try file.read(at: offset, count: Int(min(UInt64(chunkBytes), checkedEnd - offset)))
            guard !chunk.isEmpty else { return false }
            crc = CRC32.update(crc, chunk)
            offset += UInt64(chunk.count)
        }
        let trailer = try file.read(at: size - UInt64(trailerBytes), count: trailerBytes)
        guard trailer.count == trailerBytes, ByteReader.getInteger(trailer, at: 12, as: UInt32.self) == crc else {
            return false
        }

        // The hints, then each value against its hint.
        let hints = try file.read(at: UInt64(headerBytes) + valuesBytes, count: Int(size - fixed - valuesBytes))
        guard case .snapshot(let snapshot) = SnapshotFile.decodeHints(header: header, hints: hints, trailer: trailer,
                                                                      fileBytes: size)
        else { return false }
        var valid = true
        try snapshot.forEachHint { kind, hint, span in
            guard valid, let span else { return }
            let value = try Self.value(span, in: file, path: file.path)
            valid = SnapshotFile.valueMatchesHint(value, hint: hint, kind: kind)
        }
        return valid
    }

    /// The done entry (with its receipt) stored at `span` of the snapshot `file`, checked.
    static func value(_ span: SnapshotFile.ValueSpan, in file: any StorageFile, path: String) throws -> SnapshotFile.Item {
        let bytes = try file.read(at: span.offset, count: span.frameBytes)
        return try bytes.withUnsafeBytes { raw in
            switch SnapshotFile.decodeValue(raw, span: span) {
            case .corrupt(let reason):
                throw LedgerError(.invalidSnapshot, "snapshot is invalid (\(reason)); run `onceledger salvage`", path: path,
                                  offset: span.offset)
            case .value(let kind, let body):
                return SnapshotFile.Item(kind: kind, body: Array(raw[body]))
            }
        }
    }
}
