/// A valid record and where it sits: the one record-with-location type, used by the
/// recovery scan, the log engine's replay, inspection and salvage.
public struct LocatedRecord: Hashable, Sendable {
    public var header: RecordHeader
    /// The body. A walker hands out a slice of the segment buffer it walks, so handing a
    /// record over costs no copy (keeping it keeps that buffer alive; `body` copies).
    public var bodyBytes: ArraySlice<UInt8>
    public var segment: UInt64
    /// Segment offset of the record's first byte.
    public var offset: UInt64

    /// The body as its own array.
    public var body: [UInt8] { Array(bodyBytes) }
    /// Segment offset just past the record (its padding included).
    public var endOffset: UInt64 { offset + UInt64(header.frameBytes) }

    public init(header: RecordHeader, bodyBytes: ArraySlice<UInt8>, segment: UInt64, offset: UInt64) {
        self.header = header
        self.bodyBytes = bodyBytes
        self.segment = segment
        self.offset = offset
    }
}

/// A record where a walk found it, handed over in place: `body` points into the bytes
/// walked and is valid only during the visitor's call. Making one costs no reference count
/// (a `LocatedRecord` slices, and so retains, the segment buffer), which is most of what a
/// recovery scan spends per record besides the checksum.
public struct RecordInPlace {
    public var header: RecordHeader
    public var body: UnsafeRawBufferPointer
    /// Index of the body's first byte in the bytes walked.
    public var bodyStart: Int
    public var segment: UInt64
    /// Segment offset of the record's first byte.
    public var offset: UInt64

    public init(header: RecordHeader, body: UnsafeRawBufferPointer, bodyStart: Int, segment: UInt64, offset: UInt64) {
        self.header = header
        self.body = body
        self.bodyStart = bodyStart
        self.segment = segment
        self.offset = offset
    }

    /// Segment offset just past the record (its padding included).
    public var endOffset: UInt64 { offset + UInt64(header.frameBytes) }

    /// The record as a `LocatedRecord` slicing `bytes`, the bytes walked.
    public func located(in bytes: [UInt8]) -> LocatedRecord {
        LocatedRecord(header: header, bodyBytes: bytes[bodyStart..<(bodyStart + body.count)], segment: segment,
                      offset: offset)
    }
}

/// The one segment walker and the one resynchronisation rule (`Spec/RECOVERY.md` §3).
///
/// - `walk` reads records one after another from an offset (64, after the segment
///   header) until the first position that is not a valid record, and says why it
///   stopped (`Stop`). Chain and sequence rules are the caller's: the walker knows
///   frames, checksums and positions only.
/// - `plausibleHeader` is the rule that says whether the bytes at an offset may start a
///   record (cheap: no checksum); `resynchronize` tries every 8-byte-aligned offset with
///   it and accepts the first one whose full frame decodes. A record's checksum binds it
///   to its ledger, segment and offset, so a record found this way is genuine.
///
/// Pure functions of bytes: never trap on them (they are fuzzed, `Tools/fuzz`).
public enum SegmentReader {
    /// Why a walk stopped at an offset.
    public enum Stop: Hashable, Sendable, CustomStringConvertible {
        /// Zeros from here to the end (or nothing at all): the free space after the last record.
        case cleanEnd
        /// A header of zeros with nonzero bytes somewhere after it.
        case zerosThenData
        /// The header or the declared frame runs past the end, and the bytes are not all zero.
        case runsPastEnd
        /// Bytes that are not a valid record here.
        case corrupt(RecordFrame.CorruptReason)
        /// The visitor asked to stop at this record.
        case stoppedByVisitor

        public var description: String {
            switch self {
            case .cleanEnd: "clean end"
            case .zerosThenData: "a hole of zeros followed by nonzero bytes"
            case .runsPastEnd: "a record runs past the end of the segment"
            case .corrupt(let reason): reason.description
            case .stoppedByVisitor: "stopped"
            }
        }
    }

    /// Where and why a walk stopped.
    public struct End: Hashable, Sendable {
        /// Segment offset where the walk stopped: just past the last record it accepted
        /// (for `.stoppedByVisitor`, the offset of the record the visitor refused).
        public var offset: UInt64
        public var stop: Stop

        public init(offset: UInt64, stop: Stop) {
            self.offset = offset
            self.stop = stop
        }
    }

    /// What the first step of a walk finds at `index` of `raw` (which holds segment bytes
    /// from segment offset `baseOffset`; `end` is the segment's end in `raw`): a record,
    /// or the reason there is none. A zero header or a short frame is a clean end only
    /// when every byte from `index` to `end` is zero.
    public static func step(
        _ raw: UnsafeRawBufferPointer, at index: Int, end: Int, baseOffset: UInt64 = 0, ledgerID: LedgerID,
        segment: UInt64
    ) -> Step {
        let result = RecordFrame.decode(raw, at: index, end: end, baseOffset: baseOffset, ledgerID: ledgerID,
                                        segment: segment)
        switch result {
        case .record(let header, let bodyStart):
            return .record(header, bodyStart: bodyStart)
        case .zero, .incomplete:
            let limit = min(end, raw.count)
            if index >= limit || ZeroScan.lastNonZero(raw, from: index, end: limit) == nil { return .stop(.cleanEnd) }
            return .stop(result == .zero ? .zerosThenData : .runsPastEnd)
        case .corrupt(let reason):
            return .stop(.corrupt(reason))
        }
    }

    public enum Step: Hashable, Sendable {
        case record(RecordHeader, bodyStart: Int)
        case stop(Stop)
    }

    /// Walks the records of `bytes` (segment bytes from segment offset `baseOffset`; a
    /// whole segment file by default) from index `from`, calling `visit` with each valid
    /// record in order until the first position that is not one. `visit` returns false
    /// to stop at that record (it then counts as not accepted).
    @discardableResult
    public static func walk(
        _ bytes: [UInt8], from: Int = FormatLimits.segmentHeaderBytes, baseOffset: UInt64 = 0, ledgerID: LedgerID,
        segment: UInt64, visit: (LocatedRecord) throws -> Bool
    ) rethrows -> End {
        try bytes.withUnsafeBytes { raw in
            try walk(raw, from: from, baseOffset: baseOffset, ledgerID: ledgerID, segment: segment) { record in
                try visit(record.located(in: bytes))
            }
        }
    }

    /// `walk`, handing each record over in place (`RecordInPlace`, valid during the call):
    /// the one loop both walks run.
    @discardableResult
    public static func walk(
        _ raw: UnsafeRawBufferPointer, from: Int = FormatLimits.segmentHeaderBytes, baseOffset: UInt64 = 0,
        ledgerID: LedgerID, segment: UInt64, visitInPlace visit: (RecordInPlace) throws -> Bool
    ) rethrows -> End {
        var index = from
        while true {
            switch step(raw, at: index, end: raw.count, baseOffset: baseOffset, ledgerID: ledgerID, segment: segment) {
            case .record(let header, let bodyStart):
                let record = RecordInPlace(
                    header: header, body: UnsafeRawBufferPointer(rebasing: raw[bodyStart..<(bodyStart + Int(header.bodyBytes))]),
                    bodyStart: bodyStart, segment: segment, offset: baseOffset + UInt64(index))
                guard try visit(record) else {
                    return End(offset: baseOffset + UInt64(index), stop: .stoppedByVisitor)
                }
                index += header.frameBytes
            case .stop(let stop):
                return End(offset: baseOffset + UInt64(max(0, index)), stop: stop)
            }
        }
    }

    // MARK: Resynchronisation

    /// The header fields at `index`, read without a checksum: what the bytes claim, not
    /// what is true. nil when fewer than 32 bytes remain.
    public static func peekHeader(_ raw: UnsafeRawBufferPointer, at index: Int) -> RecordHeader? {
        guard index >= 0, index + FormatLimits.recordHeaderBytes <= raw.count else { return nil }
        func get<T: FixedWidthInteger>(_ at: Int, _: T.Type) -> T {
            T(littleEndian: raw.loadUnaligned(fromByteOffset: index + at, as: T.self))
        }
        return RecordHeader(
            checksum: get(0, UInt32.self), bodyBytes: get(4, UInt32.self), sequence: get(8, UInt64.self),
            ackedThrough: get(16, UInt64.self), previousChain: get(24, UInt32.self),
            kind: RecordKind(rawValue: get(28, UInt16.self)), flags: get(30, UInt16.self))
    }

    /// The resynchronisation rule: the header at `index` when its fields could belong to
    /// a valid record (sequence >= 1, acked-through below it, a kind, known flags, a body
    /// within the format's limit), else nil. Cheap (no checksum), so a long run of
    /// garbage costs one look per 8-byte offset; only a plausible header is decoded.
    public static func plausibleHeader(_ raw: UnsafeRawBufferPointer, at index: Int) -> RecordHeader? {
        guard let header = peekHeader(raw, at: index),
              header.sequence >= 1, header.ackedThrough < header.sequence, header.kind.rawValue != 0,
              header.flags & ~RecordHeader.flagsKnown == 0, header.bodyBytes <= FormatLimits.recordBodyBytesMax
        else { return nil }
        return header
    }

    /// The first 8-byte-aligned index at or after `from` (and before `end`) holding a valid
    /// record, with its header. Each candidate must pass `plausibleHeader`, and `accept`
    /// (given the claimed header and its index; e.g. a window of likely sequence numbers),
    /// before its checksum is computed.
    public static func resynchronize(
        _ raw: UnsafeRawBufferPointer, from: Int, end: Int, baseOffset: UInt64 = 0, ledgerID: LedgerID,
        segment: UInt64, accept: (_ claimed: RecordHeader, _ index: Int) -> Bool = { _, _ in true }
    ) -> (index: Int, header: RecordHeader)? {
        let limit = min(end, raw.count)
        var candidate = Alignment.roundUp(max(0, from), to: FormatLimits.recordAlignment)
        while candidate + FormatLimits.recordHeaderBytes <= limit {
            if let claimed = plausibleHeader(raw, at: candidate), accept(claimed, candidate),
               case .record(let header, _) = RecordFrame.decode(
                   raw, at: candidate, end: limit, baseOffset: baseOffset, ledgerID: ledgerID, segment: segment)
            {
                return (candidate, header)
            }
            candidate += FormatLimits.recordAlignment
        }
        return nil
    }
}
