// libFuzzer target: the one segment walker (`SegmentReader.walk`, over `RecordFrame.decode`)
// and the one resynchronisation rule (`SegmentReader.resynchronize`) over untrusted segment
// bytes, and the one body decoder (`RecordBody.decodeFields`, and
// `RecordBody.decode` built on it) on every body it finds (and on the raw input as a body
// of each kind, the memo's kinds 13–15 and retention's 16–17 included: every `RecordKind.known`), and the journal
// entry decoder (`JournalEntry.decode`) on the raw input. Must never trap;
// a decoded record must re-encode to the same frame bytes. Build and run: Tools/fuzz/run.sh.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRecord(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    walkRecords(bytes)
    walkRecords(withFixedChecksum(bytes))
    // The raw input as a body of the kind named by its first two bytes, then of each known kind.
    if size >= 2 {
        let kind = RecordKind(rawValue: UInt16(bytes[0]) | UInt16(bytes[1]) << 8)
        fuzzBody(kind: kind, Array(bytes[2...]))
    }
    for kind in RecordKind.known { fuzzBody(kind: kind, bytes) }
    fuzzJournalEntry(bytes)
    return 0
}

/// The journal entry decoder (`JournalEntry.decode`, the value of a memo entry in the
/// journal's step, `Spec/FORMAT.md` §10) on the raw input: never traps, and what it accepts
/// re-encodes to the same bytes.
func fuzzJournalEntry(_ bytes: [UInt8]) {
    guard case .entry(let entry) = JournalEntry.decode(bytes) else { return }
    fuzzCheck((try? entry.validate()) != nil, "a decoded journal entry fails its own bounds")
    fuzzCheck(entry.encode() == bytes, "a journal entry differs on re-encode")
}

/// The first record's checksum recomputed from its declared length (when it fits).
func withFixedChecksum(_ input: [UInt8]) -> [UInt8] {
    var bytes = input
    guard bytes.count >= FormatLimits.recordHeaderBytes else { return bytes }
    let bodyBytes = loadLE(bytes, at: 4, as: UInt32.self)
    guard bodyBytes <= FormatLimits.recordBodyBytesMax else { return bytes }
    let total = RecordFrame.frameBytes(bodyBytes: Int(bodyBytes))
    guard total <= bytes.count else { return bytes }
    let checksum = bytes.withUnsafeBytes { raw in
        RecordFrame.computeChecksum(
            previousChain: loadLE(bytes, at: 24, as: UInt32.self),
            position: RecordPosition(ledgerID: fuzzLedgerID, segment: 2, offset: 128),
            frameAfterChecksum: UnsafeRawBufferPointer(rebasing: raw[4..<total]))
    }
    storeLE32(&bytes, at: 0, checksum)
    return bytes
}

/// Walks the records from the start with the one segment walker (`SegmentReader.walk`,
/// what the recovery scan, inspection and salvage use), with the vectors' position:
/// segment 2, the input starting at offset 128. Then checks the one resynchronisation rule
/// against it: resynchronising at a record the walker accepted finds that record, and
/// whatever resynchronising finds after the walker stopped decodes as a record.
func walkRecords(_ bytes: [UInt8]) {
    let base: UInt64 = 128
    var accepted: [LocatedRecord] = []
    let end = SegmentReader.walk(bytes, from: 0, baseOffset: base, ledgerID: fuzzLedgerID, segment: 2) { record in
        let header = record.header
        let index = Int(record.offset - base)
        fuzzCheck(header.sequence >= 1 && header.ackedThrough < header.sequence, "accepted impossible header")
        fuzzCheck(record.bodyBytes.startIndex == index + FormatLimits.recordHeaderBytes, "body start")
        fuzzCheck(index + header.frameBytes <= bytes.count, "frame runs past the input")
        let body = record.body
        // Round trip: the encoder must produce exactly the frame the decoder accepted.
        var frame: [UInt8] = []
        let checksum = RecordFrame.encode(
            into: &frame, sequence: header.sequence, ackedThrough: header.ackedThrough,
            previousChain: header.previousChain, kind: header.kind, flags: header.flags, body: body,
            position: RecordPosition(ledgerID: fuzzLedgerID, segment: 2, offset: record.offset))
        fuzzCheck(checksum == header.checksum, "checksum differs on re-encode")
        fuzzCheck(frame == Array(bytes[index..<(index + header.frameBytes)]), "frame differs on re-encode")
        fuzzBody(kind: header.kind, body)
        accepted.append(record)
        return true
    }
    fuzzCheck(end.stop != .stoppedByVisitor, "stopped without being asked")
    let stopIndex = Int(end.offset - base)
    fuzzCheck(stopIndex == (accepted.last.map { Int($0.endOffset - base) } ?? 0), "stop offset is not past the last record")
    bytes.withUnsafeBytes { raw in
        for record in accepted {
            let index = Int(record.offset - base)
            let found = SegmentReader.resynchronize(raw, from: index, end: raw.count, baseOffset: base,
                                                    ledgerID: fuzzLedgerID, segment: 2)
            fuzzCheck(found?.index == index && found?.header == record.header, "resynchronisation skips a walked record")
        }
        if end.stop == .cleanEnd {
            fuzzCheck(ZeroScan.lastNonZero(raw, from: stopIndex, end: raw.count) == nil, "clean end before nonzero bytes")
        }
        var from = stopIndex + FormatLimits.recordAlignment
        var steps = 0
        while steps < 64, let (index, header) = SegmentReader.resynchronize(
            raw, from: from, end: raw.count, baseOffset: base, ledgerID: fuzzLedgerID, segment: 2)
        {
            steps += 1
            fuzzCheck(index >= from && index % FormatLimits.recordAlignment == 0, "resynchronised off the grid")
            guard case .record(let decoded, _) = RecordFrame.decode(
                raw, at: index, end: raw.count, baseOffset: base, ledgerID: fuzzLedgerID, segment: 2)
            else { return fuzzCheck(false, "resynchronised to bytes that are not a record") }
            fuzzCheck(decoded == header, "resynchronised header differs from the decoded one")
            from = index + header.frameBytes
        }
    }
}
