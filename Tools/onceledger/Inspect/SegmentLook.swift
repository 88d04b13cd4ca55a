import OnceLedgerFormat

/// A stand-alone look at one segment file: its header and its records read in order
/// from offset 64 until the clean end or the first bad bytes. Used for the segments the
/// recovery scan did not reach, and to read records a snapshot covers.
struct SegmentLook {
    var number: UInt64
    var name: String
    var fileBytes: UInt64
    var header: SegmentHeader?
    var recordCount = 0
    var firstSequence: UInt64?
    var lastSequence: UInt64?
    /// How the look ended, e.g. "clean end at offset 488".
    var status: String

    init(number: UInt64, name: String, fileBytes: UInt64, status: String) {
        self.number = number
        self.name = name
        self.fileBytes = fileBytes
        self.status = status
    }

    /// Walks `bytes` (a whole segment file) with the one walker (`SegmentReader.walk`),
    /// checking the chain from the header on. `visit` returns false to stop early.
    static func walk(
        _ bytes: [UInt8], number: UInt64, name: String, visit: (LocatedRecord) -> Bool
    ) -> SegmentLook {
        var look = SegmentLook(number: number, name: name, fileBytes: UInt64(bytes.count), status: "")
        let header: SegmentHeader
        switch SegmentHeader.decode(bytes) {
        case .incomplete:
            look.status = "header: the file is \(bytes.count) bytes, shorter than a header"
            return look
        case .corrupt(let reason):
            look.status = "header: invalid (\(reason))"
            return look
        case .unsupportedVersion(let version):
            look.status = "header: format version \(version), not readable by this build"
            return look
        case .header(let decoded):
            header = decoded
        }
        look.header = header
        if UInt64(bytes.count) != header.segmentBytes {
            look.status = "the file is \(bytes.count) bytes but its header says \(header.segmentBytes)"
            return look
        }
        if header.segmentNumber != number {
            look.status = "the header says segment \(header.segmentNumber), the name \(number)"
            return look
        }
        var expected = header.firstSequence
        var chain = header.previousChain
        var chainBreak: String?
        let end = SegmentReader.walk(bytes, ledgerID: header.ledgerID, segment: number) { record in
            if record.header.sequence != expected || record.header.previousChain != chain {
                chainBreak = "record at offset \(record.offset) has sequence \(record.header.sequence), expected \(expected) (chain break)"
                return false
            }
            guard visit(record) else { return false }
            look.recordCount += 1
            if look.firstSequence == nil { look.firstSequence = record.header.sequence }
            look.lastSequence = record.header.sequence
            chain = record.header.checksum
            expected = record.header.sequence &+ 1
            return true
        }
        switch end.stop {
        case .stoppedByVisitor: look.status = chainBreak ?? "stopped at offset \(end.offset)"
        case .cleanEnd: look.status = "clean end at offset \(end.offset)"
        case .zerosThenData, .runsPastEnd: look.status = "bad bytes at offset \(end.offset) (expected sequence \(expected))"
        case .corrupt(let reason):
            look.status = "bad record at offset \(end.offset) (expected sequence \(expected)): \(reason)"
        }
        return look
    }

    var summary: String {
        var parts: [String] = []
        if recordCount > 0, let first = firstSequence, let last = lastSequence {
            parts.append("\(TextFormat.plural(recordCount, "record")) (\(TextFormat.sequences(first, last)))")
        } else if header != nil {
            parts.append("no valid records")
        }
        parts.append(status)
        return parts.joined(separator: ", ")
    }
}
