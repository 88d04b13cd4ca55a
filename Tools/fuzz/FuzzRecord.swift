// libFuzzer target: `RecordFrame.decode` over untrusted segment bytes, walking records as
// the recovery scanner does, and the one body decoder (`RecordBody.decodeFields`, and
// `RecordBody.decode` built on it) on every body it finds (and on the raw input as a body
// of each kind). Must never trap; a decoded record must re-encode to
// the same frame bytes. Build and run: Tools/fuzz/run.sh.

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
    return 0
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

/// Decodes records one after another from the start, as the recovery scanner does,
/// with the vectors' position: segment 2, the input starting at offset 128.
func walkRecords(_ bytes: [UInt8]) {
    bytes.withUnsafeBytes { raw in
        var index = 0
        var steps = 0
        while steps < 64 {
            steps += 1
            let result = RecordFrame.decode(raw, at: index, end: raw.count, baseOffset: 128, ledgerID: fuzzLedgerID,
                                            segment: 2)
            guard case .record(let header, let bodyStart) = result else { break }
            fuzzCheck(header.sequence >= 1 && header.ackedThrough < header.sequence, "accepted impossible header")
            fuzzCheck(bodyStart == index + FormatLimits.recordHeaderBytes, "body start")
            fuzzCheck(index + header.frameBytes <= raw.count, "frame runs past the input")
            let body = Array(raw[bodyStart..<(bodyStart + Int(header.bodyBytes))])
            // Round trip: the encoder must produce exactly the frame the decoder accepted.
            var frame: [UInt8] = []
            let checksum = RecordFrame.encode(
                into: &frame, sequence: header.sequence, ackedThrough: header.ackedThrough,
                previousChain: header.previousChain, kind: header.kind, flags: header.flags, body: body,
                position: RecordPosition(ledgerID: fuzzLedgerID, segment: 2, offset: 128 + UInt64(index)))
            fuzzCheck(checksum == header.checksum, "checksum differs on re-encode")
            fuzzCheck(frame == Array(raw[index..<(index + header.frameBytes)]), "frame differs on re-encode")
            fuzzBody(kind: header.kind, body)
            index += header.frameBytes
        }
    }
}
