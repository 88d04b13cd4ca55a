import CCRC32

/// The 32-byte record header (`Spec/FORMAT.md` §4).
///
/// ```
/// off size field
///   0    4 checksum (u32)
///   4    4 body bytes (u32)
///   8    8 sequence number (u64, >= 1)
///  16    8 acked-through (u64): highest sequence number known durable when this
///          record's commit batch was formed
///  24    4 previous chain value (u32): checksum of record seq-1 (0 for seq 1)
///  28    2 kind (u16, != 0)
///  30    2 flags (u16): bit 0 = last record of its commit batch; others 0
///  32    n body, then zero padding to a multiple of 8
/// ```
/// checksum = crc32 seeded with `previous chain`, over the 32-byte position block
/// (ledger id, segment number u64, offset u64) and then bytes 4 ..< frame end
/// (rest of header, body and padding).
public struct RecordHeader: Hashable, Sendable {
    public var checksum: UInt32
    public var bodyBytes: UInt32
    public var sequence: UInt64
    public var ackedThrough: UInt64
    public var previousChain: UInt32
    public var kind: RecordKind
    public var flags: UInt16

    public static let flagBatchEnd: UInt16 = 1
    public static let flagsKnown: UInt16 = flagBatchEnd

    /// Total bytes this record occupies in a segment, padding included.
    public var frameBytes: Int { RecordFrame.frameBytes(bodyBytes: Int(bodyBytes)) }
}

/// Where a record sits; part of its checksum so a misplaced record fails.
public struct RecordPosition: Hashable, Sendable {
    public var ledgerID: LedgerID
    public var segment: UInt64
    public var offset: UInt64

    public init(ledgerID: LedgerID, segment: UInt64, offset: UInt64) {
        self.ledgerID = ledgerID
        self.segment = segment
        self.offset = offset
    }
}

public enum RecordFrame {
    @inlinable
    public static func frameBytes(bodyBytes: Int) -> Int {
        Alignment.roundUp(FormatLimits.recordHeaderBytes + bodyBytes, to: FormatLimits.recordAlignment)
    }

    /// Appends one encoded record to `buffer` and returns its checksum.
    /// The caller guarantees `body.count <= FormatLimits.recordBodyBytesMax`.
    @discardableResult
    public static func encode(
        into buffer: inout [UInt8], sequence: UInt64, ackedThrough: UInt64, previousChain: UInt32,
        kind: RecordKind, flags: UInt16, body: [UInt8], position: RecordPosition
    ) -> UInt32 {
        precondition(body.count <= Int(FormatLimits.recordBodyBytesMax), "body bound is checked by the writer")
        let start = buffer.count
        let total = frameBytes(bodyBytes: body.count)
        // No per-record reserveCapacity: it grows the array to exactly this size each
        // time, copying the whole batch per record (quadratic). Callers reserve once.
        appendLE(&buffer, UInt32(0))
        appendLE(&buffer, UInt32(body.count))
        appendLE(&buffer, sequence)
        appendLE(&buffer, ackedThrough)
        appendLE(&buffer, previousChain)
        appendLE(&buffer, kind.rawValue)
        appendLE(&buffer, flags)
        buffer.append(contentsOf: body)
        buffer.append(contentsOf: repeatElement(0, count: start + total - buffer.count))
        let checksum = buffer.withUnsafeBytes { raw in
            computeChecksum(
                previousChain: previousChain, position: position,
                frameAfterChecksum: UnsafeRawBufferPointer(rebasing: raw[(start + 4)..<(start + total)]))
        }
        withUnsafeBytes(of: checksum.littleEndian) { raw in
            for index in 0..<4 { buffer[start + index] = raw[index] }
        }
        return checksum
    }

    @inlinable
    static func appendLE<T: FixedWidthInteger>(_ buffer: inout [UInt8], _ value: T) {
        withUnsafeBytes(of: value.littleEndian) { buffer.append(contentsOf: $0) }
    }

    /// The record checksum (`Spec/FORMAT.md` §4.2): crc32 seeded with `previousChain` over
    /// the 32-byte position block (ledger id, segment u64 LE, offset u64 LE), then over the
    /// frame after the checksum field. One C call (`ol_crc32_record`) does both parts; the
    /// block is passed as four little-endian words, so it is never built in memory.
    public static func computeChecksum(
        previousChain: UInt32, position: RecordPosition, frameAfterChecksum: UnsafeRawBufferPointer
    ) -> UInt32 {
        let id = position.ledgerID.idWords
        return ol_crc32_record(
            previousChain, id.low, id.high, position.segment, position.offset,
            frameAfterChecksum.baseAddress, frameAfterChecksum.count)
    }

    public enum CorruptReason: Hashable, Sendable, CustomStringConvertible {
        case bodyBytesOutOfBounds(UInt32)
        case checksumMismatch(stored: UInt32, computed: UInt32)
        case invalidField(String)

        public var description: String {
            switch self {
            case .bodyBytesOutOfBounds(let n): "body length \(n) out of bounds"
            case .checksumMismatch(let stored, let computed):
                "checksum mismatch: stored \(hex32(stored)), computed \(hex32(computed))"
            case .invalidField(let text): text
            }
        }
    }

    public enum DecodeResult: Hashable, Sendable {
        /// A valid record; its body is `bytes[bodyStart ..< bodyStart + header.bodyBytes]`.
        case record(RecordHeader, bodyStart: Int)
        /// The 32 header bytes are all zero: preallocated, never-written space.
        case zero
        /// Fewer bytes remain than the header or the declared frame needs.
        case incomplete
        /// Bytes that are not a valid record at this position.
        case corrupt(CorruptReason)
    }

    /// Decodes the record at `index` of `bytes`, which holds segment bytes starting
    /// at segment offset `baseOffset`; `end` bounds the frame (the segment end).
    /// Untrusted input: never traps.
    public static func decode(
        _ bytes: UnsafeRawBufferPointer, at index: Int, end: Int, baseOffset: UInt64, ledgerID: LedgerID,
        segment: UInt64
    ) -> DecodeResult {
        let limit = min(end, bytes.count)
        guard index >= 0, index + FormatLimits.recordHeaderBytes <= limit else { return .incomplete }
        func get<T: FixedWidthInteger>(_ at: Int, _: T.Type) -> T {
            T(littleEndian: bytes.loadUnaligned(fromByteOffset: index + at, as: T.self))
        }
        let w0 = get(0, UInt64.self), w1 = get(8, UInt64.self), w2 = get(16, UInt64.self), w3 = get(24, UInt64.self)
        if w0 | w1 | w2 | w3 == 0 { return .zero }
        let stored = get(0, UInt32.self)
        let bodyBytes = get(4, UInt32.self)
        guard bodyBytes <= FormatLimits.recordBodyBytesMax else { return .corrupt(.bodyBytesOutOfBounds(bodyBytes)) }
        let total = frameBytes(bodyBytes: Int(bodyBytes))
        guard index + total <= limit else {
            // The declared frame runs past what we have: incomplete if the segment
            // could hold it, otherwise the length itself is impossible.
            return index + total <= end ? .incomplete : .corrupt(.bodyBytesOutOfBounds(bodyBytes))
        }
        let previous = get(24, UInt32.self)
        let position = RecordPosition(ledgerID: ledgerID, segment: segment, offset: baseOffset + UInt64(index))
        let computed = computeChecksum(
            previousChain: previous, position: position,
            frameAfterChecksum: UnsafeRawBufferPointer(rebasing: bytes[(index + 4)..<(index + total)]))
        guard computed == stored else { return .corrupt(.checksumMismatch(stored: stored, computed: computed)) }
        let header = RecordHeader(
            checksum: stored, bodyBytes: bodyBytes, sequence: get(8, UInt64.self), ackedThrough: get(16, UInt64.self),
            previousChain: previous, kind: RecordKind(rawValue: get(28, UInt16.self)), flags: get(30, UInt16.self))
        // Checksum-valid but semantically impossible: treat as not-a-record.
        guard header.sequence >= 1 else { return .corrupt(.invalidField("sequence number 0")) }
        guard header.kind.rawValue != 0 else { return .corrupt(.invalidField("kind 0")) }
        guard header.flags & ~RecordHeader.flagsKnown == 0 else {
            return .corrupt(.invalidField("unknown flags \(header.flags)"))
        }
        guard header.ackedThrough < header.sequence else {
            return .corrupt(.invalidField("acked-through \(header.ackedThrough) >= sequence \(header.sequence)"))
        }
        // Padding must be zero (it is covered by the checksum, so this only fails for
        // a buggy writer; checked so that every byte has one meaning).
        for padIndex in (index + FormatLimits.recordHeaderBytes + Int(bodyBytes))..<(index + total)
        where bytes[padIndex] != 0 {
            return .corrupt(.invalidField("nonzero padding"))
        }
        return .record(header, bodyStart: index + FormatLimits.recordHeaderBytes)
    }
}
