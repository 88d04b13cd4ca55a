/// A snapshot file: the live state through `coveredSequence` (`Spec/FORMAT.md` §6).
///
/// ```
/// header (64 bytes)
///   0  8 magic "OLSNAPSH"
///   8  2 format version (u16) = 2 (1 is read too)
///  10  2 header bytes (u16) = 64
///  12  4 flags (u32): bit 0 = ledger-scoped tokens (version 2 only); others 0
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
    /// Header format version: written as `FormatLimits.formatVersion`; 1 or 2 when decoded.
    public var formatVersion: UInt16 = FormatLimits.formatVersion
    /// Flags bit 0: the ledger derives effect tokens with its id (`Spec/FORMAT.md` §9.3).
    public var ledgerScopedTokens: Bool
    /// The items: either given (to encode) or still inside the decoded file's bytes,
    /// so opening a large snapshot costs no allocation per item (`forEachItem`).
    private var storage: Storage

    private enum Storage: Sendable {
        case items([Item])
        /// A validated file: `count` items from `bytes[start...]`.
        case encoded(bytes: [UInt8], start: Int, count: Int)
    }

    public init(ledgerID: LedgerID, coveredSequence: UInt64, chain: UInt32, ledgerScopedTokens: Bool = false,
                items: [Item]) {
        self.ledgerID = ledgerID
        self.ledgerScopedTokens = ledgerScopedTokens
        self.coveredSequence = coveredSequence
        self.chain = chain
        self.storage = .items(items)
    }

    public var items: [Item] {
        get {
            switch storage {
            case .items(let items): return items
            case .encoded:
                var items: [Item] = []
                items.reserveCapacity(itemCount)
                forEachItem { kind, body in items.append(Item(kind: kind, body: Array(body))) }
                return items
            }
        }
        set { storage = .items(newValue) }
    }

    public var itemCount: Int {
        switch storage {
        case .items(let items): items.count
        case .encoded(_, _, let count): count
        }
    }

    /// Calls `body` with each item's kind and body bytes, in order, without copying
    /// them. The buffer is valid only during the call.
    public func forEachItem(_ body: (RecordKind, UnsafeRawBufferPointer) throws -> Void) rethrows {
        switch storage {
        case .items(let items):
            for item in items { try item.body.withUnsafeBytes { try body(item.kind, $0) } }
        case .encoded(let bytes, let start, let count):
            try bytes.withUnsafeBytes { raw in
                var offset = start
                for _ in 0..<count {
                    // Validated by `decode`: lengths, flags and padding are all in bounds.
                    let length = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
                    let kind = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt16.self))
                    let bodyStart = offset + SnapshotFile.itemHeaderBytes
                    try body(RecordKind(rawValue: kind), UnsafeRawBufferPointer(rebasing: raw[bodyStart..<(bodyStart + length)]))
                    offset = bodyStart + Alignment.roundUp(length, to: FormatLimits.recordAlignment)
                }
            }
        }
    }

    public static func == (a: SnapshotFile, b: SnapshotFile) -> Bool {
        a.ledgerID == b.ledgerID && a.coveredSequence == b.coveredSequence && a.chain == b.chain
            && a.formatVersion == b.formatVersion && a.ledgerScopedTokens == b.ledgerScopedTokens && a.items == b.items
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(ledgerID)
        hasher.combine(coveredSequence)
        hasher.combine(chain)
        hasher.combine(formatVersion)
        hasher.combine(ledgerScopedTokens)
        hasher.combine(items)
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
        writer.writeInteger(formatVersion)
        writer.writeInteger(UInt16(FormatLimits.snapshotHeaderBytes))
        writer.writeInteger(ledgerScopedTokens ? FormatLimits.flagLedgerScopedTokens : 0)
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
        guard FormatLimits.formatVersionsReadable.contains(version) else { return .unsupportedVersion(version) }
        // Version 1 defines no flag; version 2 defines bit 0.
        let flags = ByteReader.getInteger(bytes, at: 12, as: UInt32.self)
        let knownFlags: UInt32 = version >= 2 ? FormatLimits.flagLedgerScopedTokens : 0
        guard ByteReader.getInteger(bytes, at: 10, as: UInt16.self) == UInt16(headerBytes),
              flags & ~knownFlags == 0,
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
        // Walk every item once to check it; `forEachItem` then trusts these bounds.
        let walked: String? = bytes.withUnsafeBytes { raw in
            var offset = headerBytes
            for index in 0..<Int(itemCount) {
                guard trailerStart - offset >= itemHeaderBytes else { return "item \(index) malformed" }
                let length = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
                let flags = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 6, as: UInt16.self))
                let bodyStart = offset + itemHeaderBytes
                guard length <= FormatLimits.recordBodyBytesMax, flags == 0, trailerStart - bodyStart >= Int(length) else {
                    return "item \(index) malformed"
                }
                let padded = Alignment.roundUp(Int(length), to: FormatLimits.recordAlignment)
                guard trailerStart - bodyStart >= padded,
                      raw[(bodyStart + Int(length))..<(bodyStart + padded)].allSatisfy({ $0 == 0 })
                else { return "item \(index) padding malformed" }
                offset = bodyStart + padded
            }
            return offset == trailerStart ? nil : "bytes after the last item"
        }
        if let walked { return .corrupt(walked) }
        var file = SnapshotFile(ledgerID: ledgerID, coveredSequence: covered, chain: chain,
                                ledgerScopedTokens: flags & FormatLimits.flagLedgerScopedTokens != 0, items: [])
        file.formatVersion = version
        file.storage = .encoded(bytes: bytes, start: headerBytes, count: Int(itemCount))
        return .snapshot(file)
    }
}
