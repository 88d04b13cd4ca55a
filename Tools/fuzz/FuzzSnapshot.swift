// libFuzzer target: `SnapshotFile.decode` on untrusted bytes, and `RecordBody.decode` on
// every item of a snapshot that decodes. Must never trap; a decoded snapshot must
// re-encode to exactly its bytes. Build and run: Tools/fuzz/run.sh.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSnapshot(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    checkSnapshot(input)
    // Both checksums recomputed (the file checksum where the header's body length places
    // the trailer), so the item parsing behind them is reached.
    if input.count >= FormatLimits.snapshotHeaderBytes + FormatLimits.snapshotTrailerBytes {
        var fixed = input
        storeLE32(&fixed, at: 60, CRC32.checksum(Array(fixed[0..<60])))
        let trailerStart = fixed.count - FormatLimits.snapshotTrailerBytes
        storeLE32(&fixed, at: trailerStart + 12, CRC32.checksum(Array(fixed[0..<(trailerStart + 12)])))
        checkSnapshot(fixed)
    }
    return 0
}

func checkSnapshot(_ bytes: [UInt8]) {
    switch SnapshotFile.decode(bytes) {
    case .snapshot(let snapshot):
        fuzzCheck(snapshot.encode() == bytes, "snapshot differs on re-encode")
        for item in snapshot.items { fuzzBody(kind: item.kind, item.body) }
    case .corrupt, .unsupportedVersion:
        break
    }
}
