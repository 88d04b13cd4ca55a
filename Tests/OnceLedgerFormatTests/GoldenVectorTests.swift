// Proves the bytes in Spec/vectors/ are exactly what the codec writes and reads: every vector
// is rebuilt from fixed inputs with the real codec (by `GoldenVectors`, which also rewrites the
// files when ONCELEDGER_REGENERATE_VECTORS=1) and compared byte for byte; each file is decoded
// into the field values listed in Spec/vectors/README.md, walked as a reader of Spec/FORMAT.md
// would, and re-encoded unchanged; and every annotated hex example in Spec/FORMAT.md is checked
// against the file it quotes.
import Foundation
import OnceLedgerFormat
import Testing

// MARK: - The generator

/// Deterministic inputs and the files built from them with the real codec.
enum GoldenVectors {
    /// Bytes 0x00 … 0x0f.
    static let ledgerID = LedgerID(bytes: Array(0..<16))!
    /// 2023-11-14T22:13:20Z in milliseconds.
    static let time: UInt64 = 1_700_000_000_000
    /// Bytes 0xa0 … 0xbf (stands for a SHA-256 params fingerprint).
    static let fingerprint: [UInt8] = Array(0xa0...0xbf)
    /// Size of every vector segment (the format minimum).
    static let segmentBytes: UInt64 = 4096

    // Where the single-record vectors sit (so the position block and chain seed are not trivial).
    static let recordSegment: UInt64 = 2
    static let recordOffset: UInt64 = 128
    static let recordSequence: UInt64 = 7
    static let recordAckedThrough: UInt64 = 5
    static let recordPreviousChain: UInt32 = 0x89ab_cdef
    static let recordFlags: UInt16 = RecordHeader.flagBatchEnd

    // MARK: Bodies

    static let intent42 = RecordBody.intent(.init(
        key: "order-42-receipt", fingerprint: fingerprint, attempt: 1, generation: 0, scope: .forever,
        windowMilliseconds: 0, timeMilliseconds: time))
    static let completion42 = RecordBody.completion(.init(
        key: "order-42-receipt", attempt: 1, timeMilliseconds: time + 1_500, receipt: Array("msg-7f3a".utf8)))
    static let intent43 = RecordBody.intent(.init(
        key: "order-43", fingerprint: [UInt8](repeating: 0, count: 32), attempt: 1, generation: 0, scope: .forever,
        windowMilliseconds: 0, timeMilliseconds: time + 2_000))
    static let memo = RecordBody.memoPut(.init(
        run: "run-9", step: "summarize", name: "llm", timeMilliseconds: time + 2_100, value: Array("A short summary.".utf8)))
    static let release43 = RecordBody.release(.init(
        key: "order-43", attempt: 1, timeMilliseconds: time + 2_200, reason: "SMTP refused before sending"))
    static let completion43 = RecordBody.completion(.init(
        key: "order-43", attempt: 1, timeMilliseconds: time + 3_000, receipt: Array("ok".utf8)))
    static let intent44 = RecordBody.intent(.init(
        key: "order-44", fingerprint: fingerprint, attempt: 1, generation: 0, scope: .whileInFlight,
        windowMilliseconds: 0, timeMilliseconds: time + 5_000))

    /// One body of every record kind, for the single-record vectors (`record-<kind>.bin`).
    static let recordBodies: [(file: String, body: RecordBody)] = [
        ("record-01-intent.bin", .intent(.init(
            key: "order-42-receipt", fingerprint: fingerprint, attempt: 2, generation: 1, scope: .window,
            windowMilliseconds: 86_400_000, timeMilliseconds: time))),
        ("record-02-completion.bin", completion42),
        ("record-03-release.bin", release43),
        ("record-04-resolve.bin", .resolve(.init(
            key: "order-44", outcome: .done, attempt: 3, timeMilliseconds: time + 60_000, receipt: Array("ch_1N2x".utf8),
            actor: "ops@example.com", reason: "confirmed in the processor dashboard"))),
        ("record-05-forget.bin", .forget(.init(
            key: "order-45", timeMilliseconds: time + 70_000, actor: "ops@example.com",
            reason: "customer asked for a resend"))),
        ("record-06-memo-put.bin", memo),
        ("record-07-journal-entry.bin", .journalEntry(.init(
            run: "run-9", position: 3, step: "uuid", timeMilliseconds: time + 2_300, value: Array(0x10...0x1f)))),
        ("record-08-run-terminal.bin", .runTerminal(.init(run: "run-9", status: .succeeded, timeMilliseconds: time + 9_000))),
        ("record-09-snapshot-marker.bin", .snapshotMarker(.init(coveredSequence: 6, timeMilliseconds: time + 10_000,
                                                                snapshotBytes: 320))),
        ("record-10-checkpoint.bin", .checkpoint(timeMilliseconds: time + 11_000)),
        ("record-12-seal.bin", .seal(.init(successor: 3, timeMilliseconds: time + 12_000))),
        ("record-13-memo-entry.bin", .memoEntry(.init(
            namespace: "taquba", run: "run-9", generation: 4, step: "summarize", name: "llm", inputDigest: fingerprint,
            timeMilliseconds: time + 2_100, value: Array("{\"text\":\"A short summary.\"}".utf8)))),
        ("record-14-run-end.bin", .runEnd(.init(namespace: "taquba", run: "run-9", generation: 4, status: .succeeded,
                                                timeMilliseconds: time + 9_000))),
        ("record-15-memo-sweep.bin", .memoSweep(.init(namespace: "taquba", run: "run-9", generation: 4,
                                                      timeMilliseconds: time + 9_000 + 86_400_000))),
        ("record-7fff-opaque.bin", .opaque(Array("hello, ledger".utf8))),
    ]

    static var recordPosition: RecordPosition {
        RecordPosition(ledgerID: ledgerID, segment: recordSegment, offset: recordOffset)
    }

    static func recordFrame(_ body: RecordBody) -> [UInt8] {
        var buffer: [UInt8] = []
        RecordFrame.encode(
            into: &buffer, sequence: recordSequence, ackedThrough: recordAckedThrough,
            previousChain: recordPreviousChain, kind: body.kind, flags: recordFlags, body: body.encode(),
            position: recordPosition)
        return buffer
    }

    static var segmentHeader: SegmentHeader {
        SegmentHeader(ledgerScopedTokens: true, ledgerID: ledgerID, segmentNumber: 1, firstSequence: 1,
                      segmentBytes: segmentBytes, previousChain: 0)
    }

    // MARK: Ledgers

    /// Filler so that `ledger` has exactly `remaining` bytes left in its active segment.
    static func filler(_ ledger: VectorLedger, leaving remaining: Int) -> RecordBody {
        let frame = Int(segmentBytes) - ledger.writeOffset - remaining
        let bodyBytes = frame - FormatLimits.recordHeaderBytes
        let text = Array("filler ".utf8)
        return .opaque((0..<bodyBytes).map { text[$0 % text.count] })
    }

    /// A clean ledger of one segment: three batches, then a clean close (checkpoint).
    static func cleanLedger() -> VectorLedger {
        var ledger = VectorLedger(ledgerID: ledgerID, segmentBytes: segmentBytes)
        ledger.commit([intent42])
        ledger.commit([completion42])
        ledger.commit([intent43, memo])
        ledger.close(timeMilliseconds: time + 4_000)
        return ledger
    }

    /// Two durable batches, then a crash while the third (seq 3, 4, 5) was unsynced: the last
    /// 16 bytes of seq 3's frame never reached the disk, seq 4 and 5 did.
    static func tornLedger() -> (ledger: VectorLedger, damaged: [UInt8]) {
        var ledger = VectorLedger(ledgerID: ledgerID, segmentBytes: segmentBytes)
        ledger.commit([intent42])
        ledger.commit([completion42])
        ledger.commit([intent43, memo, release43])
        let seq3 = ledger.written[2]
        var bytes = ledger.segments[0].bytes
        let end = Int(seq3.offset) + seq3.frameBytes
        for index in (end - 16)..<end { bytes[index] = 0 }
        return (ledger, bytes)
    }

    /// Four durable batches (the last, seq 5, says acked-through 4), no clean close; then one
    /// bit of seq 3's body flipped. Seq 5 proves seq 3 was durable.
    static func ackedCorruptLedger() -> (ledger: VectorLedger, damaged: [UInt8]) {
        var ledger = VectorLedger(ledgerID: ledgerID, segmentBytes: segmentBytes)
        ledger.commit([intent42])
        ledger.commit([completion42])
        ledger.commit([intent43, memo])
        ledger.commit([release43])
        var bytes = ledger.segments[0].bytes
        bytes[Int(ledger.written[2].offset) + FormatLimits.recordHeaderBytes + 2] ^= 0x01
        return (ledger, bytes)
    }

    /// Segment 1 filled until the intent that would be seq 4 does not fit with the seal, so
    /// segment 1 ends with the seal (seq 4) naming segment 2, which holds seq 5 … 7; clean
    /// close. (`ledger-sealed/`; `ledger-newest-deleted/` is its segment 1 alone;
    /// `ledger-interrupted-rollover/` its segment 1 and segment 2 as created, still `.tmp`.)
    static func sealedLedger() -> VectorLedger {
        var ledger = VectorLedger(ledgerID: ledgerID, segmentBytes: segmentBytes, sealTime: time + 2_500)
        ledger.commit([intent42])
        ledger.commit([completion42])
        ledger.commit([filler(ledger, leaving: 88)])
        ledger.commit([intent43])
        ledger.commit([completion43])
        ledger.close(timeMilliseconds: time + 4_000)
        precondition(ledger.segments.count == 2)
        return ledger
    }

    /// Segment 2 of `sealedLedger` as the rollover created it: header and zeros.
    static func sealedLedgerFreshSegment2() -> [UInt8] {
        let bytes = sealedLedger().segments[1].bytes
        return Array(bytes[0..<FormatLimits.segmentHeaderBytes])
            + [UInt8](repeating: 0, count: bytes.count - FormatLimits.segmentHeaderBytes)
    }

    /// `sealedLedger`, then one bit of seq 2's body (in the sealed segment 1) flipped.
    static func sealedCorruptLedger() -> (ledger: VectorLedger, damaged: [UInt8]) {
        let ledger = sealedLedger()
        var bytes = ledger.segments[0].bytes
        bytes[Int(ledger.written[1].offset) + FormatLimits.recordHeaderBytes + 2] ^= 0x04
        return (ledger, bytes)
    }

    /// The snapshot items of the compacted ledger: the state through seq 6.
    static let snapshotItems: [SnapshotFile.Item] = [
        SnapshotFile.Item(body: .entryState(.init(
            key: "order-42-receipt", status: .done, attempt: 1, generation: 0, fingerprint: fingerprint,
            intentTimeMilliseconds: time, completedTimeMilliseconds: time + 1_500, receipt: Array("msg-7f3a".utf8)))),
        SnapshotFile.Item(body: .entryState(.init(
            key: "order-43", status: .done, attempt: 1, generation: 0, fingerprint: [UInt8](repeating: 0, count: 32),
            intentTimeMilliseconds: time + 2_000, completedTimeMilliseconds: time + 3_000, receipt: Array("ok".utf8)))),
        SnapshotFile.Item(body: memo),
    ]

    /// Segment 1 (seq 1 … 5, then its seal, seq 6) full; seq 7 starts segment 2; compaction
    /// covers seq 7, deletes segment 1 and appends the snapshot marker (seq 8); one more
    /// batch; clean close.
    static func compactedLedger() -> VectorLedger {
        var ledger = VectorLedger(ledgerID: ledgerID, segmentBytes: segmentBytes, sealTime: time + 2_900)
        ledger.commit([intent42])
        ledger.commit([completion42])
        ledger.commit([intent43, memo])
        ledger.commit([filler(ledger, leaving: 72)])
        ledger.commit([completion43])
        ledger.compact(items: snapshotItems, timeMilliseconds: time + 4_000)
        ledger.commit([intent44])
        ledger.close(timeMilliseconds: time + 6_000)
        return ledger
    }

    /// Every vector file, by path relative to `Spec/vectors/`.
    static func files() -> [(path: String, bytes: [UInt8])] {
        var files: [(String, [UInt8])] = [("segment-header.bin", segmentHeader.encode())]
        for (file, body) in recordBodies { files.append((file, recordFrame(body))) }
        let clean = cleanLedger()
        files.append(("ledger-clean/" + LedgerFileNames.segment(1), clean.segments[0].bytes))
        files.append(("ledger-torn/" + LedgerFileNames.segment(1), tornLedger().damaged))
        files.append(("ledger-acked-corrupt/" + LedgerFileNames.segment(1), ackedCorruptLedger().damaged))
        let sealed = sealedCorruptLedger()
        files.append(("ledger-sealed-corrupt/" + LedgerFileNames.segment(1), sealed.damaged))
        files.append(("ledger-sealed-corrupt/" + LedgerFileNames.segment(2), sealed.ledger.segments[1].bytes))
        files.append(("ledger-sealed/" + LedgerFileNames.segment(1), sealed.ledger.segments[0].bytes))
        files.append(("ledger-sealed/" + LedgerFileNames.segment(2), sealed.ledger.segments[1].bytes))
        files.append(("ledger-newest-deleted/" + LedgerFileNames.segment(1), sealed.ledger.segments[0].bytes))
        files.append(("ledger-interrupted-rollover/" + LedgerFileNames.segment(1), sealed.ledger.segments[0].bytes))
        files.append(("ledger-interrupted-rollover/" + LedgerFileNames.segment(2) + LedgerFileNames.temporarySuffix,
                      sealedLedgerFreshSegment2()))
        let compacted = compactedLedger()
        let snapshot = compacted.snapshots.last!
        files.append(("ledger-compacted/" + LedgerFileNames.snapshot(snapshot.coveredSequence), snapshot.encode()))
        for segment in compacted.segments {
            files.append(("ledger-compacted/" + LedgerFileNames.segment(segment.number), segment.bytes))
        }
        files.append(("snapshot-v3.snap", snapshotVersion3(of: snapshot).encode()))
        files.append(("snapshot-v3-memo.snap", memoSnapshot.encode()))
        files.append(("snapshot-v3-retention.snap", retentionSnapshot.encode()))
        return files
    }

    /// The memo's snapshot items (FORMAT §9.4): a running generation's value, an ended
    /// generation's value and its end, and the sweep of the highest generation swept.
    /// Retention's snapshot items (FORMAT §9.5): a done entry and a pending one, each followed
    /// by the scope of its intent, then the generation floor.
    static let retentionSnapshotItems: [SnapshotFile.Item] = [
        SnapshotFile.Item(body: .entryState(.init(
            key: "daily-digest", status: .done, attempt: 3, generation: 2, fingerprint: [UInt8](repeating: 0, count: 32),
            intentTimeMilliseconds: 0, completedTimeMilliseconds: time + 1_000, receipt: Array("sent".utf8)))),
        SnapshotFile.Item(body: .entryState(.init(
            key: "spawn-worker", status: .pending, attempt: 1, generation: 5, fingerprint: fingerprint,
            intentTimeMilliseconds: time + 5_000, completedTimeMilliseconds: 0, receipt: []))),
        SnapshotFile.Item(body: .entryRetention(.init(key: "daily-digest", scope: .window, windowMilliseconds: 86_400_000))),
        SnapshotFile.Item(body: .entryRetention(.init(key: "spawn-worker", scope: .whileInFlight, windowMilliseconds: 0))),
        SnapshotFile.Item(body: .generationFloor(floor: 7)),
    ]

    /// A version 3 snapshot of the retention items: the done entry's value in the values section.
    static var retentionSnapshot: SnapshotFile {
        var snapshot = SnapshotFile(ledgerID: ledgerID, coveredSequence: 20, chain: 0x0bad_cafe, ledgerScopedTokens: true,
                                    items: retentionSnapshotItems)
        snapshot.formatVersion = 3
        return snapshot
    }

    static let memoSnapshotItems: [SnapshotFile.Item] = [
        SnapshotFile.Item(body: .memoEntry(.init(
            namespace: "taquba", run: "run-9", generation: 4, step: "summarize", name: "llm", inputDigest: fingerprint,
            timeMilliseconds: time + 2_100, value: Array("{\"text\":\"A short summary.\"}".utf8)))),
        SnapshotFile.Item(body: .runEnd(.init(namespace: "taquba", run: "run-9", generation: 4, status: .succeeded,
                                              timeMilliseconds: time + 9_000))),
        SnapshotFile.Item(body: .memoEntry(.init(
            namespace: "taquba", run: "run-10", generation: 5, step: "fetch", name: "page", timeMilliseconds: time + 9_500,
            value: Array(0x20...0x2f)))),
        SnapshotFile.Item(body: .memoSweep(.init(namespace: "", run: "run-3", generation: 3,
                                                 timeMilliseconds: time + 8_000))),
    ]

    /// A version 3 snapshot of the memo items: each memo entry's value in the values section.
    static var memoSnapshot: SnapshotFile {
        var snapshot = SnapshotFile(ledgerID: ledgerID, coveredSequence: 12, chain: 0x1234_5678, ledgerScopedTokens: true,
                                    items: memoSnapshotItems)
        snapshot.formatVersion = 3
        return snapshot
    }

    /// The compacted ledger's snapshot as a version 3 writer writes it (values and hints).
    static func snapshotVersion3(of snapshot: SnapshotFile) -> SnapshotFile {
        var version3 = snapshot
        version3.formatVersion = 3
        return version3
    }

    static var directory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Spec/vectors")
    }

    static func read(_ path: String) throws -> [UInt8] {
        try [UInt8](Data(contentsOf: directory.appendingPathComponent(path)))
    }
}

/// Builds segment files the way `LogWriter` does (same rollover rule and seal, acked-through
/// values, batch-end flags, checkpoint on close, compaction order, ledger-scoped-tokens
/// header flag) with a fixed ledger id and no I/O.
struct VectorLedger {
    struct Written: Hashable {
        var sequence: UInt64
        var segment: UInt64
        var offset: UInt64
        var ackedThrough: UInt64
        var previousChain: UInt32
        var checksum: UInt32
        var flags: UInt16
        var body: RecordBody
        var frameBytes: Int { RecordFrame.frameBytes(bodyBytes: body.encode().count) }
    }

    let ledgerID: LedgerID
    let segmentBytes: UInt64
    /// The time field of every seal record.
    let sealTime: UInt64
    var segments: [(number: UInt64, firstSequence: UInt64, bytes: [UInt8])] = []
    var snapshots: [SnapshotFile] = []
    var written: [Written] = []
    var writeOffset = 0
    var lastSequence: UInt64 = 0
    var lastChain: UInt32 = 0
    var durableSequence: UInt64 = 0
    private var committedSinceOpen = false
    private var nextSegment: UInt64 = 1

    init(ledgerID: LedgerID, segmentBytes: UInt64, sealTime: UInt64 = GoldenVectors.time) {
        self.ledgerID = ledgerID
        self.segmentBytes = segmentBytes
        self.sealTime = sealTime
        rollover()
    }

    /// Seals the active segment (if any) with a record naming the next, then starts it.
    private mutating func rollover() {
        if !segments.isEmpty {
            append(.seal(.init(successor: nextSegment, timeMilliseconds: sealTime)), flags: RecordHeader.flagBatchEnd)
            durableSequence = lastSequence  // written and fdatasync'd before the rename
        }
        let header = SegmentHeader(
            ledgerScopedTokens: true, ledgerID: ledgerID, segmentNumber: nextSegment, firstSequence: lastSequence + 1, segmentBytes: segmentBytes,
            previousChain: lastChain)
        var bytes = header.encode()
        bytes += [UInt8](repeating: 0, count: Int(segmentBytes) - bytes.count)
        segments.append((nextSegment, lastSequence + 1, bytes))
        nextSegment += 1
        writeOffset = FormatLimits.segmentHeaderBytes
    }

    /// One commit batch: records get consecutive sequence numbers and acked-through = the
    /// highest durable sequence number; only the last carries the batch-end flag.
    mutating func commit(_ bodies: [RecordBody]) {
        for (index, body) in bodies.enumerated() {
            let frame = RecordFrame.frameBytes(bodyBytes: body.encode().count)
            // Every segment keeps room for its seal.
            if UInt64(writeOffset + frame + FormatLimits.sealFrameBytes) > segmentBytes {
                durableSequence = lastSequence  // LogWriter flushes (write + fdatasync) before rolling over
                rollover()
            }
            append(body, flags: index == bodies.count - 1 ? RecordHeader.flagBatchEnd : 0)
        }
        durableSequence = lastSequence
        committedSinceOpen = bodies.contains { $0.kind != .checkpoint }
    }

    /// Writes one record at the write offset of the active segment.
    private mutating func append(_ body: RecordBody, flags: UInt16) {
        let encoded = body.encode()
        let frame = RecordFrame.frameBytes(bodyBytes: encoded.count)
        let segment = segments[segments.count - 1].number
        var buffer: [UInt8] = []
        let checksum = RecordFrame.encode(
            into: &buffer, sequence: lastSequence + 1, ackedThrough: durableSequence, previousChain: lastChain,
            kind: body.kind, flags: flags, body: encoded,
            position: RecordPosition(ledgerID: ledgerID, segment: segment, offset: UInt64(writeOffset)))
        segments[segments.count - 1].bytes.replaceSubrange(writeOffset..<(writeOffset + frame), with: buffer)
        written.append(Written(
            sequence: lastSequence + 1, segment: segment, offset: UInt64(writeOffset), ackedThrough: durableSequence,
            previousChain: lastChain, checksum: checksum, flags: flags, body: body))
        lastSequence += 1
        lastChain = checksum
        writeOffset += frame
    }

    /// `LogWriter.compact`: snapshot through `lastSequence`, delete covered segments, marker.
    mutating func compact(items: [SnapshotFile.Item], timeMilliseconds: UInt64) {
        let covered = lastSequence
        var snapshot = SnapshotFile(ledgerID: ledgerID, coveredSequence: covered, chain: lastChain,
                                    ledgerScopedTokens: true, items: items)
        // As a version-2 writer wrote it: the vector pins that such snapshots still open.
        snapshot.formatVersion = 2
        snapshots = [snapshot]
        while segments.count >= 2, segments[1].firstSequence - 1 <= covered { segments.removeFirst() }
        commit([.snapshotMarker(.init(
            coveredSequence: covered, timeMilliseconds: timeMilliseconds, snapshotBytes: UInt64(snapshot.encode().count)))])
    }

    mutating func close(timeMilliseconds: UInt64) {
        if committedSinceOpen { commit([.checkpoint(timeMilliseconds: timeMilliseconds)]) }
    }
}

extension SnapshotFile.Item {
    fileprivate init(body: RecordBody) { self.init(kind: body.kind, body: body.encode()) }
}

// MARK: - Tests

@Suite(.serialized) struct GoldenVectorTests {
    /// Rewrites the files when ONCELEDGER_REGENERATE_VECTORS=1; otherwise every file on disk
    /// must equal what the codec produces today.
    @Test func vectorsMatchTheCodec() throws {
        let files = GoldenVectors.files()
        if ProcessInfo.processInfo.environment["ONCELEDGER_REGENERATE_VECTORS"] == "1" {
            for (path, bytes) in files {
                let url = GoldenVectors.directory.appendingPathComponent(path)
                try FileManager.default.createDirectory(
                    at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                try Data(bytes).write(to: url, options: .atomic)
            }
        }
        for (path, bytes) in files {
            let stored = try GoldenVectors.read(path)
            #expect(stored.count == bytes.count, "\(path): \(stored.count) bytes on disk, codec makes \(bytes.count)")
            if let first = zip(stored, bytes).enumerated().first(where: { $0.element.0 != $0.element.1 }) {
                Issue.record("\(path): first difference at byte \(first.offset); regenerate with ONCELEDGER_REGENERATE_VECTORS=1 only if the format change is intended")
            }
        }
    }

    @Test func segmentHeaderVector() throws {
        let bytes = try GoldenVectors.read("segment-header.bin")
        #expect(bytes.count == 64)
        guard case .header(let header) = SegmentHeader.decode(bytes) else {
            Issue.record("segment-header.bin does not decode")
            return
        }
        #expect(Array(bytes[0..<8]) == Array("OLWALSEG".utf8))
        #expect(header.formatVersion == 2)
        #expect(header.ledgerScopedTokens)
        #expect(ByteReader.getInteger(bytes, at: 12, as: UInt32.self) == 1, "flags: bit 0, ledger-scoped tokens")
        #expect(header.ledgerID == GoldenVectors.ledgerID)
        #expect(header.segmentNumber == 1)
        #expect(header.firstSequence == 1)
        #expect(header.segmentBytes == 4096)
        #expect(header.previousChain == 0)
        #expect(ByteReader.getInteger(bytes, at: 60, as: UInt32.self) == 0x0d95_1e24)
        #expect(header.encode() == bytes)
    }

    /// Checksums of the single-record vectors, pinned independently of the generator.
    static let recordChecksums: [String: UInt32] = [
        "record-01-intent.bin": 0x2f13_62d0,
        "record-02-completion.bin": 0x1be8_597f,
        "record-03-release.bin": 0x7a7e_845a,
        "record-04-resolve.bin": 0x2e46_ed81,
        "record-05-forget.bin": 0x7967_3113,
        "record-06-memo-put.bin": 0xdbeb_65cc,
        "record-07-journal-entry.bin": 0x52b2_d23b,
        "record-08-run-terminal.bin": 0x9263_20ab,
        "record-09-snapshot-marker.bin": 0x1526_7f10,
        "record-10-checkpoint.bin": 0x66ed_3334,
        "record-12-seal.bin": 0x8379_7b92,
        "record-13-memo-entry.bin": 0xef54_fa10,
        "record-14-run-end.bin": 0x8fc5_0da6,
        "record-15-memo-sweep.bin": 0xe1bc_2ff0,
        "record-7fff-opaque.bin": 0x0c6b_94a6,
    ]

    @Test(arguments: GoldenVectors.recordBodies.map(\.file))
    func recordVector(file: String) throws {
        let expected = GoldenVectors.recordBodies.first { $0.file == file }!.body
        let bytes = try GoldenVectors.read(file)
        let result = bytes.withUnsafeBytes { raw in
            RecordFrame.decode(
                raw, at: 0, end: bytes.count, baseOffset: GoldenVectors.recordOffset, ledgerID: GoldenVectors.ledgerID,
                segment: GoldenVectors.recordSegment)
        }
        guard case .record(let header, let bodyStart) = result else {
            Issue.record("\(file) does not decode: \(result)")
            return
        }
        #expect(bodyStart == 32)
        #expect(header.sequence == GoldenVectors.recordSequence)
        #expect(header.ackedThrough == GoldenVectors.recordAckedThrough)
        #expect(header.previousChain == GoldenVectors.recordPreviousChain)
        #expect(header.kind == expected.kind)
        #expect(header.flags == RecordHeader.flagBatchEnd)
        #expect(header.frameBytes == bytes.count)
        #expect(bytes.count % 8 == 0)
        #expect(header.checksum == GoldenVectorTests.recordChecksums[file], "pinned checksum of \(file)")
        let body = Array(bytes[bodyStart..<(bodyStart + Int(header.bodyBytes))])
        #expect(RecordBody.decode(kind: header.kind, body) == .body(expected))
        #expect(body == expected.encode())
        #expect(GoldenVectors.recordFrame(expected) == bytes)
        // The same bytes anywhere else (another offset, segment or ledger, or another seed) fail.
        let moved = bytes.withUnsafeBytes { raw in
            RecordFrame.decode(raw, at: 0, end: bytes.count, baseOffset: GoldenVectors.recordOffset + 8,
                               ledgerID: GoldenVectors.ledgerID, segment: GoldenVectors.recordSegment)
        }
        #expect(moved != result)
        if case .corrupt(.checksumMismatch) = moved {} else { Issue.record("moved record must fail its checksum") }
    }

    /// A reader written from Spec/FORMAT.md alone: header, then records until zeros, checking
    /// position, sequence and chain; returns the decoded records.
    static func walk(_ bytes: [UInt8], segment: UInt64, expectFirst: UInt64, expectChain: UInt32)
        -> (records: [VectorLedger.Written], end: Int, stop: String)
    {
        guard case .header(let header) = SegmentHeader.decode(bytes), header.segmentNumber == segment,
              header.segmentBytes == UInt64(bytes.count), header.firstSequence == expectFirst,
              header.previousChain == expectChain
        else { return ([], 0, "bad header") }
        var records: [VectorLedger.Written] = []
        var offset = 64
        var sequence = header.firstSequence
        var chain = header.previousChain
        while true {
            let result = bytes.withUnsafeBytes { raw in
                RecordFrame.decode(raw, at: offset, end: bytes.count, baseOffset: 0, ledgerID: header.ledgerID,
                                   segment: segment)
            }
            switch result {
            case .record(let h, let bodyStart):
                guard h.sequence == sequence, h.previousChain == chain else { return (records, offset, "chain break") }
                let raw = Array(bytes[bodyStart..<(bodyStart + Int(h.bodyBytes))])
                guard case .body(let body) = RecordBody.decode(kind: h.kind, raw) else { return (records, offset, "body") }
                records.append(.init(sequence: h.sequence, segment: segment, offset: UInt64(offset),
                                     ackedThrough: h.ackedThrough, previousChain: h.previousChain, checksum: h.checksum,
                                     flags: h.flags, body: body))
                sequence += 1
                chain = h.checksum
                offset += h.frameBytes
            case .zero, .incomplete:
                let clean = bytes[offset...].allSatisfy { $0 == 0 }
                return (records, offset, clean ? "clean" : "bad")
            case .corrupt:
                return (records, offset, "bad")
            }
        }
    }

    @Test func cleanLedgerVector() throws {
        let ledger = GoldenVectors.cleanLedger()
        let bytes = try GoldenVectors.read("ledger-clean/wal-0000000000000001.seg")
        let walked = GoldenVectorTests.walk(bytes, segment: 1, expectFirst: 1, expectChain: 0)
        #expect(walked.stop == "clean")
        #expect(walked.records == ledger.written)
        #expect(walked.records.map(\.body) == [
            GoldenVectors.intent42, GoldenVectors.completion42, GoldenVectors.intent43, GoldenVectors.memo,
            .checkpoint(timeMilliseconds: GoldenVectors.time + 4_000),
        ])
        #expect(walked.records.map(\.ackedThrough) == [0, 1, 2, 2, 4])
        #expect(walked.records.map(\.flags) == [1, 1, 0, 1, 1])
        #expect(walked.records.map(\.offset) == [64, 176, 256, 360, 448])
        #expect(walked.end == 488)
        #expect(walked.records.last?.checksum == 0x76a4_a529)
        // Re-encode from the decoded values alone.
        var rebuilt = GoldenVectors.segmentHeader.encode() + [UInt8](repeating: 0, count: 4096 - 64)
        for record in walked.records {
            var frame: [UInt8] = []
            RecordFrame.encode(
                into: &frame, sequence: record.sequence, ackedThrough: record.ackedThrough,
                previousChain: record.previousChain, kind: record.body.kind, flags: record.flags,
                body: record.body.encode(),
                position: RecordPosition(ledgerID: GoldenVectors.ledgerID, segment: 1, offset: record.offset))
            rebuilt.replaceSubrange(Int(record.offset)..<(Int(record.offset) + frame.count), with: frame)
        }
        #expect(rebuilt == bytes)
    }

    @Test func damagedLedgerVectors() throws {
        let torn = try GoldenVectors.read("ledger-torn/wal-0000000000000001.seg")
        let tornWalk = GoldenVectorTests.walk(torn, segment: 1, expectFirst: 1, expectChain: 0)
        #expect(tornWalk.records.map(\.sequence) == [1, 2])
        #expect(tornWalk.stop == "bad")
        #expect(tornWalk.end == 256)

        let acked = try GoldenVectors.read("ledger-acked-corrupt/wal-0000000000000001.seg")
        let ackedWalk = GoldenVectorTests.walk(acked, segment: 1, expectFirst: 1, expectChain: 0)
        #expect(ackedWalk.records.map(\.sequence) == [1, 2])
        #expect(ackedWalk.stop == "bad")
        #expect(ackedWalk.end == 256)

        let sealed1 = try GoldenVectors.read("ledger-sealed-corrupt/wal-0000000000000001.seg")
        let sealedWalk = GoldenVectorTests.walk(sealed1, segment: 1, expectFirst: 1, expectChain: 0)
        #expect(sealedWalk.records.map(\.sequence) == [1])
        #expect(sealedWalk.stop == "bad")
        #expect(sealedWalk.end == 176)
        // Segment 2 is intact and links to seq 4 (the seal) of segment 1.
        let ledger = GoldenVectors.sealedCorruptLedger().ledger
        let sealed2 = try GoldenVectors.read("ledger-sealed-corrupt/wal-0000000000000002.seg")
        let segment2Walk = GoldenVectorTests.walk(sealed2, segment: 2, expectFirst: 5, expectChain: ledger.written[3].checksum)
        #expect(segment2Walk.stop == "clean")
        #expect(segment2Walk.records.map(\.sequence) == [5, 6, 7])
    }

    /// `ledger-sealed/`: segment 1 ends with the seal (seq 4) naming segment 2; the same
    /// segment 1 alone is `ledger-newest-deleted/`, and with segment 2 as created (header and
    /// zeros) under its temporary name, `ledger-interrupted-rollover/`.
    @Test func sealedLedgerVectors() throws {
        let ledger = GoldenVectors.sealedLedger()
        let segment1 = try GoldenVectors.read("ledger-sealed/wal-0000000000000001.seg")
        let walk1 = GoldenVectorTests.walk(segment1, segment: 1, expectFirst: 1, expectChain: 0)
        #expect(walk1.stop == "clean")
        #expect(walk1.records.map(\.sequence) == [1, 2, 3, 4])
        #expect(walk1.records.map(\.offset) == [64, 176, 256, 4008])
        #expect(walk1.end == 4056, "the seal is the last record; 40 zero bytes follow")
        #expect(walk1.records.last?.body == .seal(.init(successor: 2, timeMilliseconds: GoldenVectors.time + 2_500)))
        #expect(walk1.records.last?.ackedThrough == 3)
        #expect(walk1.records.last?.flags == RecordHeader.flagBatchEnd)
        #expect(walk1.records.last?.checksum == 0x8904_28c2)
        let segment2 = try GoldenVectors.read("ledger-sealed/wal-0000000000000002.seg")
        let walk2 = GoldenVectorTests.walk(segment2, segment: 2, expectFirst: 5, expectChain: 0x8904_28c2)
        #expect(walk2.stop == "clean")
        #expect(walk2.records.map(\.sequence) == [5, 6, 7])
        #expect(walk1.records + walk2.records == ledger.written)
        #expect(try GoldenVectors.read("ledger-newest-deleted/wal-0000000000000001.seg") == segment1)
        #expect(try GoldenVectors.read("ledger-interrupted-rollover/wal-0000000000000001.seg") == segment1)
        let temporary = try GoldenVectors.read("ledger-interrupted-rollover/wal-0000000000000002.seg.tmp")
        #expect(Array(temporary[0..<64]) == Array(segment2[0..<64]))
        #expect(temporary.count == 4096 && temporary[64...].allSatisfy { $0 == 0 })
    }

    @Test func compactedLedgerVector() throws {
        let ledger = GoldenVectors.compactedLedger()
        let snapshotBytes = try GoldenVectors.read("ledger-compacted/snap-0000000000000007.snap")
        guard case .snapshot(let snapshot) = SnapshotFile.decode(snapshotBytes) else {
            Issue.record("snapshot vector does not decode")
            return
        }
        #expect(Array(snapshotBytes[0..<8]) == Array("OLSNAPSH".utf8))
        #expect(Array(snapshotBytes[(snapshotBytes.count - 16)..<(snapshotBytes.count - 8)]) == Array("OLSNAPEN".utf8))
        #expect(snapshot.ledgerID == GoldenVectors.ledgerID)
        #expect(snapshot.coveredSequence == 7)
        #expect(snapshot.chain == ledger.written[6].checksum)
        #expect(snapshot.formatVersion == 2)
        #expect(snapshot.ledgerScopedTokens)
        #expect(snapshot.items == GoldenVectors.snapshotItems)
        #expect(snapshot.items.map { RecordBody.decode(kind: $0.kind, $0.body) }
            == GoldenVectors.snapshotItems.map { RecordBody.decode(kind: $0.kind, $0.body) })
        #expect(snapshot.encode() == snapshotBytes)
        #expect(snapshot.encodedByteCount == snapshotBytes.count)
        #expect(ByteReader.getInteger(snapshotBytes, at: 60, as: UInt32.self) == 0x5ba4_49e6)
        #expect(ByteReader.getInteger(snapshotBytes, at: snapshotBytes.count - 4, as: UInt32.self) == 0x3323_ba9b)

        let segment = try GoldenVectors.read("ledger-compacted/wal-0000000000000002.seg")
        let walked = GoldenVectorTests.walk(segment, segment: 2, expectFirst: 7, expectChain: ledger.written[5].checksum)
        #expect(ledger.written[5].body.kind == .seal, "segment 2 continues the seal that closed segment 1")
        #expect(walked.stop == "clean")
        #expect(walked.records.map(\.sequence) == [7, 8, 9, 10])
        #expect(walked.records[0].checksum == snapshot.chain)
        #expect(walked.records[1].body == .snapshotMarker(.init(
            coveredSequence: 7, timeMilliseconds: GoldenVectors.time + 4_000, snapshotBytes: UInt64(snapshotBytes.count))))
        #expect(!FileManager.default.fileExists(
            atPath: GoldenVectors.directory.appendingPathComponent("ledger-compacted/wal-0000000000000001.seg").path))
    }

    /// The version 3 snapshot: the same items as `ledger-compacted/`'s, the two done entries'
    /// whole bodies in the values section, every item's hint after it; read whole, read as
    /// hints only, and each value read on its own, as a ledger does on demand.
    @Test func snapshotVersion3Vector() throws {
        let bytes = try GoldenVectors.read("snapshot-v3.snap")
        guard case .snapshot(let whole) = SnapshotFile.decode(bytes) else {
            Issue.record("snapshot-v3.snap does not decode")
            return
        }
        #expect(whole.formatVersion == 3)
        #expect(whole.coveredSequence == 7)
        #expect(whole.items == GoldenVectors.snapshotItems)
        #expect(whole.encode() == bytes)
        #expect(whole.encodedByteCount == bytes.count, "a compaction sizes the snapshot without encoding it")
        let valuesBytes = Int(ByteReader.getInteger(bytes, at: 48, as: UInt64.self))
        let hintsStart = FormatLimits.snapshotHeaderBytes + valuesBytes
        guard case .snapshot(let hints) = SnapshotFile.decodeHints(
            header: Array(bytes[0..<64]), hints: Array(bytes[hintsStart..<(bytes.count - 16)]),
            trailer: Array(bytes[(bytes.count - 16)...]), fileBytes: UInt64(bytes.count))
        else {
            Issue.record("snapshot-v3.snap's hints do not decode")
            return
        }
        #expect(hints.holdsHintsOnly && hints.itemCount == 3)
        var spans: [SnapshotFile.ValueSpan?] = []
        var hintBodies: [[UInt8]] = []
        hints.forEachHint { _, body, span in
            spans.append(span)
            hintBodies.append(Array(body))
        }
        #expect(spans.map { $0 != nil } == [true, true, false], "the two done entries have values, the memo none")
        #expect(hintBodies[2] == GoldenVectors.snapshotItems[2].body)
        for (index, span) in spans.enumerated() {
            guard let span else { continue }
            // A hint is its item with an empty receipt.
            guard case .body(.entryState(let state)) = RecordBody.decode(kind: .entryState, hintBodies[index]) else {
                Issue.record("hint \(index) is not an entry state")
                continue
            }
            #expect(state.receipt.isEmpty && state.status == .done)
            let frame = Array(bytes[Int(span.offset)..<(Int(span.offset) + span.frameBytes)])
            let decoded = frame.withUnsafeBytes { SnapshotFile.decodeValue($0, span: span) }
            guard case .value(let kind, let body) = decoded else {
                Issue.record("value \(index) does not decode: \(decoded)")
                continue
            }
            #expect(kind == .entryState && Array(frame[body]) == GoldenVectors.snapshotItems[index].body)
            // One flipped bit in the value: its checksum fails, a typed answer, no trap.
            var damaged = frame
            damaged[damaged.count / 2] ^= 1
            guard case .corrupt = damaged.withUnsafeBytes({ SnapshotFile.decodeValue($0, span: span) }) else {
                Issue.record("a damaged value \(index) was accepted")
                continue
            }
        }
    }

    /// The memo's version 3 snapshot: both memo entries have values (their whole bodies), their
    /// hints carry an empty value; the run end and the sweep are whole hints without one.
    @Test func memoSnapshotVector() throws {
        let bytes = try GoldenVectors.read("snapshot-v3-memo.snap")
        guard case .snapshot(let whole) = SnapshotFile.decode(bytes) else {
            Issue.record("snapshot-v3-memo.snap does not decode")
            return
        }
        #expect(whole.formatVersion == 3 && whole.coveredSequence == 12)
        #expect(whole.items == GoldenVectors.memoSnapshotItems)
        #expect(whole.encode() == bytes)
        #expect(whole.encodedByteCount == bytes.count)
        #expect(CRC32.checksum(Array(bytes[0..<(bytes.count - 4)])) == 0x0fd9_3f8c, "pinned file checksum")
        let valuesBytes = Int(ByteReader.getInteger(bytes, at: 48, as: UInt64.self))
        let hintsStart = FormatLimits.snapshotHeaderBytes + valuesBytes
        guard case .snapshot(let hints) = SnapshotFile.decodeHints(
            header: Array(bytes[0..<64]), hints: Array(bytes[hintsStart..<(bytes.count - 16)]),
            trailer: Array(bytes[(bytes.count - 16)...]), fileBytes: UInt64(bytes.count))
        else {
            Issue.record("snapshot-v3-memo.snap's hints do not decode")
            return
        }
        var spans: [SnapshotFile.ValueSpan?] = []
        var hintBodies: [[UInt8]] = []
        hints.forEachHint { _, body, span in
            spans.append(span)
            hintBodies.append(Array(body))
        }
        #expect(spans.map { $0 != nil } == [true, false, true, false], "memo entries have values, the others none")
        for (index, span) in spans.enumerated() {
            guard let span else {
                #expect(hintBodies[index] == GoldenVectors.memoSnapshotItems[index].body)
                continue
            }
            guard case .body(.memoEntry(let hint)) = RecordBody.decode(kind: .memoEntry, hintBodies[index]),
                  case .body(.memoEntry(let item)) = RecordBody.decode(kind: .memoEntry,
                                                                       GoldenVectors.memoSnapshotItems[index].body)
            else {
                Issue.record("hint \(index) is not a memo entry")
                continue
            }
            var expected = item
            expected.value = []
            #expect(hint == expected, "a hint is its memo entry with an empty value")
            let frame = Array(bytes[Int(span.offset)..<(Int(span.offset) + span.frameBytes)])
            guard case .value(let kind, let body) = frame.withUnsafeBytes({ SnapshotFile.decodeValue($0, span: span) })
            else {
                Issue.record("value \(index) does not decode")
                continue
            }
            #expect(kind == .memoEntry && Array(frame[body]) == GoldenVectors.memoSnapshotItems[index].body)
        }
    }

    /// Retention's version 3 snapshot: the entry states, the entry-retention items after them and
    /// the generation floor decode to the listed values and re-encode unchanged; a nonzero
    /// reserved byte or a scope out of range in an entry-retention body, or a floor body of the
    /// wrong length, is malformed.
    @Test func retentionSnapshotVector() throws {
        let bytes = try GoldenVectors.read("snapshot-v3-retention.snap")
        guard case .snapshot(let whole) = SnapshotFile.decode(bytes) else {
            Issue.record("snapshot-v3-retention.snap does not decode")
            return
        }
        #expect(whole.formatVersion == 3 && whole.coveredSequence == 20)
        #expect(whole.items == GoldenVectors.retentionSnapshotItems)
        #expect(whole.encode() == bytes)
        let bodies = whole.items.map { RecordBody.decode(kind: $0.kind, $0.body) }
        #expect(bodies[2] == .body(.entryRetention(.init(key: "daily-digest", scope: .window,
                                                          windowMilliseconds: 86_400_000))))
        #expect(bodies[4] == .body(.generationFloor(floor: 7)))
        let retention = whole.items[3].body
        #expect(retention.count == 14 + "spawn-worker".utf8.count)
        var reserved = retention
        reserved[2 + 12 + 1] = 1
        var scope = retention
        scope[2 + 12] = 3
        for bad in [reserved, scope, Array(retention.dropLast())] {
            guard case .corrupt = RecordBody.decode(kind: .entryRetention, bad) else {
                Issue.record("a malformed entry-retention body decodes")
                continue
            }
        }
        for bad in [[UInt8](), [7, 0, 0], [7, 0, 0, 0, 0]] {
            guard case .corrupt = RecordBody.decode(kind: .generationFloor, bad) else {
                Issue.record("a generation-floor body of \(bad.count) bytes decodes")
                continue
            }
        }
    }

    /// Every fenced block of Spec/FORMAT.md whose first line is `vectors/<file>` lists
    /// `<hex offset>  <bytes separated by single spaces>  <annotation>` lines; the bytes must be
    /// the file's bytes at that offset.
    @Test func formatDocumentExamplesMatchVectors() throws {
        let url = GoldenVectors.directory.deletingLastPathComponent().appendingPathComponent("FORMAT.md")
        let text = try String(contentsOf: url, encoding: .utf8)
        var checkedBlocks = 0
        var currentFile: [UInt8]?
        var currentName = ""
        var inBlock = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```") {
                inBlock.toggle()
                currentFile = nil
                continue
            }
            guard inBlock else { continue }
            if currentFile == nil {
                if line.hasPrefix("vectors/") {
                    currentName = String(line.dropFirst("vectors/".count)).trimmingCharacters(in: .whitespaces)
                    currentFile = try GoldenVectors.read(currentName)
                    checkedBlocks += 1
                } else {
                    inBlock = true
                    currentFile = []  // some other block: skip its lines
                    currentName = ""
                }
                continue
            }
            guard !currentName.isEmpty, let file = currentFile else { continue }
            let columns = line.components(separatedBy: "  ").filter { !$0.isEmpty }
            guard columns.count >= 2, let offset = Int(columns[0].trimmingCharacters(in: .whitespaces), radix: 16) else {
                continue  // an elision line such as "…"
            }
            let tokens = columns[1].split(separator: " ")
            let bytes = tokens.compactMap { $0.count == 2 ? UInt8($0, radix: 16) : nil }
            #expect(bytes.count == tokens.count, "\(currentName) line \(line): byte column must be hex pairs")
            #expect(offset + bytes.count <= file.count, "\(currentName) line \(line)")
            if offset + bytes.count <= file.count {
                #expect(Array(file[offset..<(offset + bytes.count)]) == bytes, "FORMAT.md quotes \(currentName) wrongly at \(line)")
            }
        }
        #expect(checkedBlocks >= 3, "FORMAT.md must carry worked hex examples")
    }
}
