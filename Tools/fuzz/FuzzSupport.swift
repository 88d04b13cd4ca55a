// Shared by every fuzz target in this directory (see run.sh). Compiled into the same
// module as the OnceLedgerFormat sources, so the targets call the decoders directly.

/// The fixed inputs of `Spec/vectors/README.md`: ledger id 00 01 … 0f. Decoding with it
/// (and the vectors' segment 2, offset 128) makes the seed records valid, so mutations
/// start from deep inside the decoders rather than failing at the first checksum.
let fuzzLedgerID = LedgerID(bytes: Array(0..<16))!

/// A broken invariant: libFuzzer reports the crash and saves the input.
func fuzzCheck(_ condition: Bool, _ message: @autoclosure () -> String, file: StaticString = #file, line: UInt = #line) {
    if !condition { fatalError("fuzz invariant failed: \(message())", file: file, line: line) }
}

/// Decodes a body as `kind` with the one body decoder, both ways: in place
/// (`RecordBody.decodeFields`, what the ledger's replay uses) and copied out
/// (`RecordBody.decode`, built on it). Both must give the same verdict; a key range
/// must lie inside the body; a body that decodes must re-encode to the same bytes
/// (every byte has one meaning: FORMAT §5).
func fuzzBody(kind: RecordKind, _ bytes: [UInt8]) {
    let fields = bytes.withUnsafeBytes { RecordBody.decodeFields(kind: kind, $0) }
    switch RecordBody.decode(kind: kind, bytes) {
    case .body(let body):
        guard case .fields(let decoded) = fields else { return fuzzCheck(false, "decode accepted what decodeFields refused") }
        if let key = decoded.key { fuzzCheck(key.lowerBound >= 2 && key.upperBound <= bytes.count, "key range") }
        fuzzCheck(body.kind == kind, "decoded kind \(body.kind) for \(kind)")
        fuzzCheck(body.encode() == bytes, "\(kind) body does not re-encode to its bytes")
    case .corrupt(let reason):
        fuzzCheck(fields == .corrupt(reason), "decode and decodeFields disagree on a corrupt \(kind) body")
    case .unknownKind:
        fuzzCheck(fields == .unknownKind(kind), "decode and decodeFields disagree on kind \(kind)")
    }
}

/// Checksums are the first thing every decoder checks, and random mutations almost never
/// get one right. So each target also decodes a copy with the checksums recomputed
/// (`withFixedChecksum`), which lets the fuzzer reach the field checks behind them.
func storeLE32(_ bytes: inout [UInt8], at offset: Int, _ value: UInt32) {
    for index in 0..<4 { bytes[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(index))) }
}

func loadLE<T: FixedWidthInteger>(_ bytes: [UInt8], at offset: Int, as: T.Type) -> T {
    var value: T = 0
    for index in 0..<MemoryLayout<T>.size { value |= T(bytes[offset + index]) << (8 * index) }
    return value
}
