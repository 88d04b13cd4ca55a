/// A ledger's identity: 16 random bytes stamped into every segment and snapshot
/// header so a file from another ledger is detected (`Spec/FORMAT.md` §3).
public struct LedgerID: Hashable, Sendable, CustomStringConvertible {
    public var bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == FormatLimits.ledgerIDBytes else { return nil }
        self.bytes = bytes
    }

    public static func random() -> LedgerID {
        var generator = SystemRandomNumberGenerator()
        var bytes = [UInt8](repeating: 0, count: FormatLimits.ledgerIDBytes)
        for index in bytes.indices { bytes[index] = generator.next() }
        return LedgerID(bytes: bytes)!
    }

    public var description: String { Hex.string(bytes) }

    /// The 16 id bytes as two little-endian words (bytes 0..<8, 8..<16), as the record
    /// checksum's position block holds them. `bytes` is public and mutable, so a count
    /// other than 16 is possible in principle: missing bytes count as zero, extra ones are
    /// ignored (no trap).
    var idWords: (low: UInt64, high: UInt64) {
        bytes.withUnsafeBytes { raw in
            if raw.count >= 16 {
                return (UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                        UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
            }
            var padded = [UInt8](repeating: 0, count: 16)
            for index in 0..<raw.count { padded[index] = raw[index] }
            return padded.withUnsafeBytes {
                (UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                 UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
            }
        }
    }
}

/// The 64-byte header at offset 0 of every segment file (`Spec/FORMAT.md` §3).
///
/// ```
/// off size field
///   0    8 magic "OLWALSEG"
///   8    2 format version (u16) = 2 (1 is read too)
///  10    2 header bytes (u16) = 64
///  12    4 flags (u32): bit 0 = ledger-scoped tokens (version 2 only); others 0
///  16   16 ledger id
///  32    8 segment number (u64, >= 1)
///  40    8 first sequence number (u64, >= 1)
///  48    8 segment bytes (u64): the preallocated file size
///  56    4 previous chain value (u32): checksum of record firstSeq-1, 0 if none
///  60    4 header checksum (u32): crc32(0, bytes 0..<60)
/// ```
public struct SegmentHeader: Hashable, Sendable {
    public static let magic: [UInt8] = Array("OLWALSEG".utf8)

    public var formatVersion: UInt16
    /// Flags bit 0: the ledger derives effect tokens with its id (`Spec/FORMAT.md` §9.3).
    public var ledgerScopedTokens: Bool
    public var ledgerID: LedgerID
    public var segmentNumber: UInt64
    public var firstSequence: UInt64
    public var segmentBytes: UInt64
    public var previousChain: UInt32

    public init(
        formatVersion: UInt16 = FormatLimits.formatVersion, ledgerScopedTokens: Bool = false, ledgerID: LedgerID,
        segmentNumber: UInt64, firstSequence: UInt64, segmentBytes: UInt64, previousChain: UInt32
    ) {
        self.formatVersion = formatVersion
        self.ledgerScopedTokens = ledgerScopedTokens
        self.ledgerID = ledgerID
        self.segmentNumber = segmentNumber
        self.firstSequence = firstSequence
        self.segmentBytes = segmentBytes
        self.previousChain = previousChain
    }

    public func encode() -> [UInt8] {
        var writer = ByteWriter(capacity: FormatLimits.segmentHeaderBytes)
        writer.writeBytes(SegmentHeader.magic)
        writer.writeInteger(formatVersion)
        writer.writeInteger(UInt16(FormatLimits.segmentHeaderBytes))
        writer.writeInteger(ledgerScopedTokens ? FormatLimits.flagLedgerScopedTokens : 0)
        writer.writeBytes(ledgerID.bytes)
        writer.writeInteger(segmentNumber)
        writer.writeInteger(firstSequence)
        writer.writeInteger(segmentBytes)
        writer.writeInteger(previousChain)
        let checksum = CRC32.checksum(writer.bytes)
        writer.writeInteger(checksum)
        assert(writer.count == FormatLimits.segmentHeaderBytes)
        return writer.bytes
    }

    public enum DecodeResult: Sendable, Equatable {
        case header(SegmentHeader)
        case incomplete
        case corrupt(String)
        case unsupportedVersion(UInt16)
    }

    /// Decodes untrusted bytes. Never traps.
    public static func decode(_ bytes: [UInt8]) -> DecodeResult {
        guard bytes.count >= FormatLimits.segmentHeaderBytes else { return .incomplete }
        guard Array(bytes[0..<8]) == magic else { return .corrupt("bad magic") }
        let stored = ByteReader.getInteger(bytes, at: 60, as: UInt32.self)
        let actual = bytes.withUnsafeBytes { CRC32.update(0, UnsafeRawBufferPointer(rebasing: $0[0..<60])) }
        guard stored == actual else {
            return .corrupt("header checksum mismatch: stored \(hex32(stored)), computed \(hex32(actual))")
        }
        let version = ByteReader.getInteger(bytes, at: 8, as: UInt16.self)
        guard FormatLimits.formatVersionsReadable.contains(version) else { return .unsupportedVersion(version) }
        let headerBytes = ByteReader.getInteger(bytes, at: 10, as: UInt16.self)
        guard Int(headerBytes) == FormatLimits.segmentHeaderBytes else {
            return .corrupt("header bytes \(headerBytes) != \(FormatLimits.segmentHeaderBytes)")
        }
        let flags = ByteReader.getInteger(bytes, at: 12, as: UInt32.self)
        // Version 1 defines no flag; version 2 defines bit 0.
        let known: UInt32 = version >= 2 ? FormatLimits.flagLedgerScopedTokens : 0
        guard flags & ~known == 0 else { return .corrupt("unknown header flags \(flags) for version \(version)") }
        let ledgerID = LedgerID(bytes: Array(bytes[16..<32]))!
        let number = ByteReader.getInteger(bytes, at: 32, as: UInt64.self)
        let first = ByteReader.getInteger(bytes, at: 40, as: UInt64.self)
        let size = ByteReader.getInteger(bytes, at: 48, as: UInt64.self)
        let previous = ByteReader.getInteger(bytes, at: 56, as: UInt32.self)
        guard number >= 1 else { return .corrupt("segment number 0") }
        guard first >= 1 else { return .corrupt("first sequence number 0") }
        guard size >= FormatLimits.segmentBytesMin, size <= FormatLimits.segmentBytesMax,
              size % UInt64(FormatLimits.recordAlignment) == 0
        else { return .corrupt("segment bytes \(size) out of bounds") }
        return .header(SegmentHeader(
            formatVersion: version, ledgerScopedTokens: flags & FormatLimits.flagLedgerScopedTokens != 0,
            ledgerID: ledgerID, segmentNumber: number, firstSequence: first,
            segmentBytes: size, previousChain: previous))
    }
}

public enum Hex {
    public static func string<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        let digits: [Character] = Array("0123456789abcdef")
        var out = ""
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return out
    }

    public static func bytes(_ text: String) -> [UInt8]? {
        let clean = text.filter { !$0.isWhitespace }
        guard clean.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(clean.count / 2)
        var index = clean.startIndex
        while index < clean.endIndex {
            let next = clean.index(index, offsetBy: 2)
            guard let byte = UInt8(clean[index..<next], radix: 16) else { return nil }
            out.append(byte)
            index = next
        }
        return out
    }
}
