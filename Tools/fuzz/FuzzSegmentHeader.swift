// libFuzzer target: `SegmentHeader.decode` on untrusted bytes. Must never trap; a header
// that decodes must re-encode to exactly the 64 bytes it came from. Build and run:
// Tools/fuzz/run.sh.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSegmentHeader(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    checkSegmentHeader(input)
    if input.count >= FormatLimits.segmentHeaderBytes {
        // The header checksum recomputed, so the field checks behind it are reached.
        var fixed = input
        storeLE32(&fixed, at: 60, CRC32.checksum(Array(fixed[0..<60])))
        checkSegmentHeader(fixed)
    }
    return 0
}

func checkSegmentHeader(_ bytes: [UInt8]) {
    switch SegmentHeader.decode(bytes) {
    case .header(let header):
        fuzzCheck(bytes.count >= FormatLimits.segmentHeaderBytes, "decoded a short header")
        fuzzCheck(header.encode() == Array(bytes[0..<FormatLimits.segmentHeaderBytes]), "header differs on re-encode")
        fuzzCheck(header.segmentNumber >= 1 && header.firstSequence >= 1, "accepted number 0")
        fuzzCheck(header.segmentBytes >= FormatLimits.segmentBytesMin && header.segmentBytes <= FormatLimits.segmentBytesMax,
                  "accepted segment bytes out of bounds")
    case .incomplete:
        fuzzCheck(bytes.count < FormatLimits.segmentHeaderBytes, "incomplete with a whole header")
    case .corrupt, .unsupportedVersion:
        break
    }
}
