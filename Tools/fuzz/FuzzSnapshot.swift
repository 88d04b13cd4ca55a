// libFuzzer target: `SnapshotFile.decode` on untrusted bytes, and `RecordBody.decode` on
// every item of a snapshot that decodes; for version 3 (FORMAT §6.7) also the open path,
// `SnapshotFile.decodeHints` on the file's header, hint section and trailer, and
// `SnapshotFile.decodeValue` on every value a hint names; for version 4 (§5.21) the
// journal-positions hints both ways the readers take them: grouped (the ledger's open path,
// `JournalPositions.decode`) and expanded into the memo entry hints they stand for. Must never
// trap; a decoded snapshot must re-encode to exactly its bytes; the hints of a file that
// decodes whole must decode too, and each of their values; and salvage's reader of a damaged
// snapshot, `DamagedSnapshot.parse`, on the same bytes. Build and run: Tools/fuzz/run.sh.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSnapshot(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    checkSnapshot(input)
    // The checksums recomputed (header, hints for version 3, and the file checksum where
    // the trailer is), so the item and hint parsing behind them is reached.
    if input.count >= FormatLimits.snapshotHeaderBytes + FormatLimits.snapshotTrailerBytes {
        var fixed = input
        let trailerStart = fixed.count - FormatLimits.snapshotTrailerBytes
        if ByteReader.getInteger(fixed, at: 8, as: UInt16.self) >= 3 {
            let values = ByteReader.getInteger(fixed, at: 48, as: UInt64.self)
            if values <= UInt64(trailerStart - FormatLimits.snapshotHeaderBytes) {
                let hintsStart = FormatLimits.snapshotHeaderBytes + Int(values)
                storeLE32(&fixed, at: 44, CRC32.checksum(Array(fixed[hintsStart..<trailerStart])))
            }
        }
        storeLE32(&fixed, at: 60, CRC32.checksum(Array(fixed[0..<60])))
        storeLE32(&fixed, at: trailerStart + 12, CRC32.checksum(Array(fixed[0..<(trailerStart + 12)])))
        checkSnapshot(fixed)
    }
    return 0
}

func checkSnapshot(_ bytes: [UInt8]) {
    let whole = SnapshotFile.decode(bytes)
    switch whole {
    case .snapshot(let snapshot):
        fuzzCheck(snapshot.encode() == bytes, "snapshot differs on re-encode")
        for item in snapshot.items { fuzzBody(kind: item.kind, item.body) }
    case .corrupt, .unsupportedVersion:
        break
    }
    checkHints(bytes, wholeDecodes: { if case .snapshot = whole { return true } else { return false } }())
    checkDamaged(bytes)
}

/// `onceledger salvage --trust-damaged-snapshot`'s reader (`DamagedSnapshot.parse`): read
/// without the file checksum, it must never trap, must read a file whose header checksum
/// holds (the fixed input above), and may only return items that decode as their kind.
func checkDamaged(_ bytes: [UInt8]) {
    let headerHolds = bytes.count >= FormatLimits.snapshotHeaderBytes && Array(bytes[0..<8]) == SnapshotFile.magic
        && ByteReader.getInteger(bytes, at: 60, as: UInt32.self) == CRC32.checksum(Array(bytes[0..<60]))
    guard let damaged = DamagedSnapshot.parse(bytes, file: "fuzz.snap") else {
        fuzzCheck(!headerHolds, "a snapshot whose header checksum holds was not read as damaged")
        return
    }
    fuzzCheck(headerHolds, "a snapshot whose header checksum fails was read as damaged")
    for item in damaged.items {
        guard case .body = RecordBody.decode(kind: item.kind, item.body) else {
            fuzzCheck(false, "a damaged snapshot's item does not decode as \(item.kind)")
            return
        }
    }
}

/// The open path of a version 3 snapshot: header, hints and trailer only, then each value.
func checkHints(_ bytes: [UInt8], wholeDecodes: Bool) {
    let headerBytes = FormatLimits.snapshotHeaderBytes, trailerBytes = FormatLimits.snapshotTrailerBytes
    guard bytes.count >= headerBytes + trailerBytes else { return }
    let values = ByteReader.getInteger(bytes, at: 48, as: UInt64.self)
    guard values <= UInt64(bytes.count - headerBytes - trailerBytes) else { return }
    let hintsStart = headerBytes + Int(values)
    let result = SnapshotFile.decodeHints(
        header: Array(bytes[0..<headerBytes]), hints: Array(bytes[hintsStart..<(bytes.count - trailerBytes)]),
        trailer: Array(bytes[(bytes.count - trailerBytes)...]), fileBytes: UInt64(bytes.count))
    guard case .snapshot(let hints) = result else {
        fuzzCheck(!wholeDecodes || ByteReader.getInteger(bytes, at: 8, as: UInt16.self) < 3,
                  "a version 3 file decodes whole but not as hints")
        return
    }
    fuzzCheck(hints.holdsHintsOnly, "decodeHints gave a whole snapshot")
    // Grouped, as the ledger opens: a journal-positions hint decodes, and its values lie
    // inside the values section.
    hints.forEachHint(groupingJournalPositions: true) { kind, body, span in
        guard kind == .journalPositions else { return }
        guard case .success(let header) = JournalPositions.decode(body, { _, _ in }), let span else {
            fuzzCheck(false, "a checked journal-positions hint does not decode")
            return
        }
        fuzzCheck(span.offset >= UInt64(headerBytes) && span.offset < UInt64(hintsStart) && header.count >= 1,
                  "a journal-positions hint's first value lies outside the values section")
    }
    hints.forEachHint { kind, body, span in
        fuzzBody(kind: kind, Array(body))
        guard let span else { return }
        // `checkHints` placed every value inside the values section.
        let start = Int(span.offset), end = start + span.frameBytes
        fuzzCheck(start >= headerBytes && end <= hintsStart, "a hint's value lies outside the values section")
        switch bytes.withUnsafeBytes({ SnapshotFile.decodeValue(UnsafeRawBufferPointer(rebasing: $0[start..<end]), span: span) }) {
        case .value(let valueKind, let range):
            fuzzBody(kind: valueKind, Array(bytes[(start + range.lowerBound)..<(start + range.upperBound)]))
        case .corrupt:
            fuzzCheck(!wholeDecodes, "a value of a snapshot that decodes whole is corrupt")
        }
    }
}
