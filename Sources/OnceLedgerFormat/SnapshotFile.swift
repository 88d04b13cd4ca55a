/// A snapshot file: the live state through `coveredSequence` (`Spec/FORMAT.md` §6).
///
/// ```
/// header (64 bytes)
///   0  8 magic "OLSNAPSH"
///   8  2 format version (u16) = 1
///  10  2 header bytes (u16) = 64
///  12  4 flags (u32) = 0
///  16 16 ledger id
///  32  8 covered sequence number (u64): every record with seq <= this is reflected
///  40  4 chain value (u32): checksum of record `covered sequence` (0 if covered = 0)
///  44  4 reserved (u32) = 0
///  48  8 body bytes (u64)
///  56  4 item count (u32)
///  60  4 header checksum: crc32(0, bytes 0..<60)
/// body: item count items, each
///   0  4 item body bytes (u32)
///   4  2 kind (u16)
///   6  2 flags (u16) = 0
///   8  n item body, zero padding to a multiple of 8
/// trailer (16 bytes)
///   0  8 magic "OLSNAPEN"
///   8  4 reserved (u32) = 0
///  12  4 file checksum: crc32(0, header ‖ body ‖ trailer bytes 0..<12)
/// ```
public struct SnapshotFile: Hashable, Sendable {
    public static let magic: [UInt8] = Array("OLSNAPSH".utf8)
    public static let trailerMagic: [UInt8] = Array("OLSNAPEN".utf8)
    public static let itemHeaderBytes = 8

    public struct Item: Hashable, Sendable {
        public var kind: RecordKind
        public var body: [UInt8]
        public init(kind: RecordKind, body: [UInt8]) {
            self.kind = kind
            self.body = body
        }
    }

    public var ledgerID: LedgerID
    public var coveredSequence: UInt64
    public var chain: UInt32
    public var items: [Item]

    public init(ledgerID: LedgerID, coveredSequence: UInt64, chain: UInt32, items: [Item]) {
        self.ledgerID = ledgerID
        self.coveredSequence = coveredSequence
        self.chain = chain
        self.items = items
    }

    /// Encodes the whole file. Items must respect `FormatLimits.recordBodyBytesMax`.
    public func encode() -> [UInt8] {
        var body = ByteWriter()
        for item in items {
            precondition(item.body.count <= Int(FormatLimits.recordBodyBytesMax), "item bound checked by caller")
            body.writeInteger(UInt32(item.body.count))
            body.writeInteger(item.kind.rawValue)
            body.writeInteger(UInt16(0))
            body.writeBytes(item.body)
            body.writePadding(alignment: FormatLimits.recordAlignment)
        }
        var writer = ByteWriter(capacity: FormatLimits.snapshotHeaderBytes + body.count + FormatLimits.snapshotTrailerBytes)
        writer.writeBytes(SnapshotFile.magic)
        writer.writeInteger(FormatLimits.formatVersion)
        writer.writeInteger(UInt16(FormatLimits.snapshotHeaderBytes))
        writer.writeInteger(UInt32(0))
        writer.writeBytes(ledgerID.bytes)
        writer.writeInteger(coveredSequence)
        writer.writeInteger(chain)
        writer.writeInteger(UInt32(0))
        writer.writeInteger(UInt64(body.count))
        writer.writeInteger(UInt32(items.count))
        writer.writeInteger(CRC32.checksum(writer.bytes))
        writer.writeBytes(body.bytes)
        writer.writeBytes(SnapshotFile.trailerMagic)
        writer.writeInteger(UInt32(0))
        writer.writeInteger(CRC32.checksum(writer.bytes))
        return writer.bytes
    }

    public enum DecodeResult: Hashable, Sendable {
        case snapshot(SnapshotFile)
        case corrupt(String)
        case unsupportedVersion(UInt16)
    }

    /// Decodes a whole snapshot file from untrusted bytes. Never traps.
    public static func decode(_ bytes: [UInt8]) -> DecodeResult {
        let headerBytes = FormatLimits.snapshotHeaderBytes
        let trailerBytes = FormatLimits.snapshotTrailerBytes
        guard bytes.count >= headerBytes + trailerBytes else { return .corrupt("file too short (\(bytes.count) bytes)") }
        guard Array(bytes[0..<8]) == magic else { return .corrupt("bad magic") }
        let storedHeader = ByteReader.getInteger(bytes, at: 60, as: UInt32.self)
        let computedHeader = bytes.withUnsafeBytes { CRC32.update(0, UnsafeRawBufferPointer(rebasing: $0[0..<60])) }
        guard storedHeader == computedHeader else {
            return .corrupt("header checksum mismatch: stored \(hex32(storedHeader)), computed \(hex32(computedHeader))")
        }
        let version = ByteReader.getInteger(bytes, at: 8, as: UInt16.self)
        guard version == FormatLimits.formatVersion else { return .unsupportedVersion(version) }
        guard ByteReader.getInteger(bytes, at: 10, as: UInt16.self) == UInt16(headerBytes),
              ByteReader.getInteger(bytes, at: 12, as: UInt32.self) == 0,
              ByteReader.getInteger(bytes, at: 44, as: UInt32.self) == 0
        else { return .corrupt("bad header fields") }
        let ledgerID = LedgerID(bytes: Array(bytes[16..<32]))!
        let covered = ByteReader.getInteger(bytes, at: 32, as: UInt64.self)
        let chain = ByteReader.getInteger(bytes, at: 40, as: UInt32.self)
        let bodyBytes = ByteReader.getInteger(bytes, at: 48, as: UInt64.self)
        let itemCount = ByteReader.getInteger(bytes, at: 56, as: UInt32.self)
        guard bodyBytes <= FormatLimits.snapshotBodyBytesMax,
              UInt64(bytes.count) == UInt64(headerBytes) + bodyBytes + UInt64(trailerBytes)
        else { return .corrupt("body length \(bodyBytes) does not match file size \(bytes.count)") }
        let trailerStart = headerBytes + Int(bodyBytes)
        guard Array(bytes[trailerStart..<(trailerStart + 8)]) == trailerMagic,
              ByteReader.getInteger(bytes, at: trailerStart + 8, as: UInt32.self) == 0
        else { return .corrupt("bad trailer") }
        let storedFile = ByteReader.getInteger(bytes, at: trailerStart + 12, as: UInt32.self)
        let computedFile = bytes.withUnsafeBytes {
            CRC32.update(0, UnsafeRawBufferPointer(rebasing: $0[0..<(trailerStart + 12)]))
        }
        guard storedFile == computedFile else {
            return .corrupt("file checksum mismatch: stored \(hex32(storedFile)), computed \(hex32(computedFile))")
        }
        var items: [Item] = []
        var reader = ByteReader(bytes, startIndex: headerBytes, endIndex: trailerStart)
        for index in 0..<Int(itemCount) {
            guard let length = reader.readInteger(as: UInt32.self), length <= FormatLimits.recordBodyBytesMax,
                  let kindRaw = reader.readInteger(as: UInt16.self),
                  let flags = reader.readInteger(as: UInt16.self), flags == 0,
                  let body = reader.readBytes(Int(length))
            else { return .corrupt("item \(index) malformed") }
            let pad = Alignment.roundUp(Int(length), to: FormatLimits.recordAlignment) - Int(length)
            guard let padding = reader.readBytes(pad), padding.allSatisfy({ $0 == 0 }) else {
                return .corrupt("item \(index) padding malformed")
            }
            items.append(Item(kind: RecordKind(rawValue: kindRaw), body: body))
        }
        guard reader.readableBytes == 0 else { return .corrupt("bytes after the last item") }
        return .snapshot(SnapshotFile(ledgerID: ledgerID, coveredSequence: covered, chain: chain, items: items))
    }
}
