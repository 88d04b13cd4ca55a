// Proves the journal entry encoding (`Spec/FORMAT.md` §10) byte for byte against its golden
// vectors in Spec/vectors/ (rewritten when ONCELEDGER_REGENERATE_VECTORS=1, like the others):
// a step's value and an operator's truncation value, and a whole memo entry record (kind 13)
// holding a journal position — each rebuilt with the codec from fixed inputs, decoded into the
// fields Spec/vectors/README.md lists, re-encoded unchanged; and the decoder answers every
// truncation, every single bit flip of the header, and a byte too many with a typed answer, never
// a trap (bytes from disk are untrusted).
import Foundation
import OnceLedgerFormat
import Testing

enum JournalVectors {
    static let step = JournalEntry(kind: .step, position: 3, name: "llm.summarize",
                                   output: Array("{\"text\":\"A short summary.\"}".utf8))
    static let truncated = JournalEntry(kind: .truncated, epoch: 1, position: 4, name: "ops@example.com",
                                        output: Array("the reply step changed on purpose".utf8))
    /// The memo entry that holds `step`: run-9 generation 4 of namespace taquba, the reserved
    /// (empty) step, the position's ten-digit name, the vectors' stand-in digest.
    static let record = RecordBody.memoEntry(.init(
        namespace: "taquba", run: "run-9", generation: 4, step: JournalEntry.reservedStep,
        name: JournalEntry.positionName(3), inputDigest: GoldenVectors.fingerprint,
        timeMilliseconds: GoldenVectors.time + 2_200, value: step.encode()))

    /// A version 4 snapshot (FORMAT §5.21, §6.7): positions 0–2 of run-9 generation 4 of
    /// namespace taquba (a step with the vectors' digest, a `now` and a `uuid`, no input), which
    /// the writer puts in one journal-positions hint, and the generation's run end.
    static let positionEntries: [JournalEntry] = [
        JournalEntry(kind: .step, position: 0, name: "llm.summarize", output: Array("{\"text\":\"A short summary.\"}".utf8)),
        JournalEntry(kind: .now, position: 1, name: "now", output: Array("1700000002300".utf8)),
        JournalEntry(kind: .uuid, position: 2, name: "uuid", output: Array("\"8D6A0E1C-3B5F-4F7A-9C2D-1E0F2A3B4C5D\"".utf8)),
    ]
    static let positionsSnapshot = SnapshotFile(
        ledgerID: GoldenVectors.ledgerID, coveredSequence: 12, chain: 0x1234_5678, ledgerScopedTokens: true,
        items: positionEntries.enumerated().map { index, entry in
            SnapshotFile.Item(kind: .memoEntry, body: RecordBody.memoEntry(.init(
                namespace: "taquba", run: "run-9", generation: 4, step: JournalEntry.reservedStep,
                name: JournalEntry.positionName(UInt64(index)),
                inputDigest: index == 0 ? GoldenVectors.fingerprint : RecordBody.noInputDigest,
                timeMilliseconds: GoldenVectors.time + 2_200 + UInt64(index) * 100, value: entry.encode())).encode())
        } + [SnapshotFile.Item(kind: .runEnd, body: RecordBody.runEnd(.init(
            namespace: "taquba", run: "run-9", generation: 4, status: .succeeded,
            timeMilliseconds: GoldenVectors.time + 9_000)).encode())])

    static let files: [(path: String, bytes: [UInt8])] = [
        ("journal-entry-step.bin", step.encode()),
        ("journal-entry-truncated.bin", truncated.encode()),
        ("record-13-journal-position.bin", GoldenVectors.recordFrame(record)),
        ("snapshot-v4-journal.snap", positionsSnapshot.encode()),
    ]
}

@Suite(.serialized) struct JournalGoldenVectorTests {
    @Test func journalVectorsMatchTheCodec() throws {
        if ProcessInfo.processInfo.environment["ONCELEDGER_REGENERATE_VECTORS"] == "1" {
            for (path, bytes) in JournalVectors.files {
                try Data(bytes).write(to: GoldenVectors.directory.appendingPathComponent(path), options: .atomic)
            }
        }
        for (path, bytes) in JournalVectors.files {
            #expect(try GoldenVectors.read(path) == bytes, "\(path); regenerate with ONCELEDGER_REGENERATE_VECTORS=1 only if the format change is intended")
        }
    }

    @Test func theStepVectorDecodesIntoItsFields() throws {
        let bytes = try GoldenVectors.read("journal-entry-step.bin")
        #expect(bytes.count == 16 + 2 + 13 + 4 + 27)
        #expect(Array(bytes[0..<16]) == [1, 1, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0],
                "version 1, kind 1 (step), flags 0, epoch 0, position 3")
        #expect(JournalEntry.decode(bytes) == .entry(JournalVectors.step))
        #expect(JournalEntry.decode(try GoldenVectors.read("journal-entry-truncated.bin")) == .entry(JournalVectors.truncated))
    }

    @Test func theRecordVectorIsAMemoEntryOfTheReservedStep() throws {
        let bytes = try GoldenVectors.read("record-13-journal-position.bin")
        let result = bytes.withUnsafeBytes { raw in
            RecordFrame.decode(raw, at: 0, end: bytes.count, baseOffset: GoldenVectors.recordOffset,
                               ledgerID: GoldenVectors.ledgerID, segment: GoldenVectors.recordSegment)
        }
        guard case .record(let header, let bodyStart) = result else {
            Issue.record("record-13-journal-position.bin does not decode: \(result)")
            return
        }
        #expect(header.kind == .memoEntry)
        let body = Array(bytes[bodyStart..<(bodyStart + Int(header.bodyBytes))])
        guard case .body(.memoEntry(let entry)) = RecordBody.decode(kind: header.kind, body) else {
            Issue.record("the body is not a memo entry")
            return
        }
        #expect(entry.step == "" && entry.name == "0000000003")
        #expect(JournalEntry.position(ofName: Array(entry.name.utf8)) == 3)
        #expect(JournalEntry.decode(entry.value) == .entry(JournalVectors.step))
    }

    @Test func theVersion4SnapshotHoldsThePositionsInOneHint() throws {
        let bytes = try GoldenVectors.read("snapshot-v4-journal.snap")
        #expect(ByteReader.getInteger(bytes, at: 8, as: UInt16.self) == 4, "format version 4")
        #expect(ByteReader.getInteger(bytes, at: 56, as: UInt32.self) == 2, "two hints: the positions and the run end")
        guard case .snapshot(let decoded) = SnapshotFile.decode(bytes) else {
            Issue.record("snapshot-v4-journal.snap does not decode")
            return
        }
        #expect(decoded == JournalVectors.positionsSnapshot)
        #expect(decoded.encode() == bytes)
        let values = Int(ByteReader.getInteger(bytes, at: 48, as: UInt64.self))
        guard case .snapshot(let hints) = SnapshotFile.decodeHints(
            header: Array(bytes[0..<64]), hints: Array(bytes[(64 + values)..<(bytes.count - 16)]),
            trailer: Array(bytes[(bytes.count - 16)...]), fileBytes: UInt64(bytes.count))
        else {
            Issue.record("snapshot-v4-journal.snap's hints do not decode")
            return
        }
        var kinds: [RecordKind] = []
        var firstValue: UInt64?
        try hints.forEachHint(groupingJournalPositions: true) { kind, body, span in
            kinds.append(kind)
            guard kind == .journalPositions else { return }
            firstValue = span?.offset
            guard case .success(let header) = JournalPositions.header(body) else { throw JournalVectorError.malformed }
            #expect(header.first == 0 && header.count == 3 && header.generation == 4)
            #expect(String(decoding: body[header.namespace], as: UTF8.self) == "taquba")
            var digests: [Bool] = []
            _ = JournalPositions.decode(body) { _, position in digests.append(position.digest != nil) }
            #expect(digests == [true, false, false])
            // namespace 2+6, run 2+5, generation 8, first 8, count 4, positions 45 + 13 + 13.
            #expect(body.count == 8 + 7 + 8 + 8 + 4 + 45 + 13 + 13)
        }
        #expect(kinds == [.journalPositions, .runEnd])
        #expect(firstValue == 64)
    }

    enum JournalVectorError: Error { case malformed }

    @Test func damagedValuesGetATypedAnswerNeverATrap() {
        let bytes = JournalVectors.step.encode()
        for length in 0..<bytes.count {
            if case .entry = JournalEntry.decode(Array(bytes.prefix(length))) {
                Issue.record("a value cut to \(length) bytes decoded")
            }
        }
        #expect(JournalEntry.decode(bytes + [0]) != .entry(JournalVectors.step))
        for bit in 0..<(JournalEntry.headerBytes * 8) {
            var flipped = bytes
            flipped[bit / 8] ^= UInt8(1 << (bit % 8))
            switch JournalEntry.decode(flipped) {
            case .malformed: break
            case .entry(let entry):
                // Only the epoch, the position and the kind may take another valid value.
                #expect(entry != JournalVectors.step && (4..<16).contains(bit / 8) || bit / 8 == 1, "bit \(bit)")
            }
        }
        #expect(JournalEntry.position(ofName: Array("000000003".utf8)) == nil)
        #expect(JournalEntry.position(ofName: Array("00000000x3".utf8)) == nil)
        #expect(JournalEntry.positionName(JournalEntry.positionMax) == "9999999999")
    }

    /// `JournalPositions.position(name:)` reads eight digits at a time; it must answer what the
    /// byte-at-a-time `JournalEntry.position(ofName:)` answers for every name: each of a set of
    /// positions, each of them with any one byte replaced by any value, and other lengths.
    @Test func theWordAtATimePositionParseAnswersAsTheByteAtATimeOne() {
        var positions: [UInt64] = [0, 1, 9, 10, 99, 100, 12_345_678, 99_999_999, 100_000_000, 1_234_567_890,
                                   JournalEntry.positionMax - 1, JournalEntry.positionMax]
        var state: UInt64 = 7
        for _ in 0..<200 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            positions.append((state >> 11) % (JournalEntry.positionMax + 1))
        }
        func check(_ name: [UInt8]) {
            let word = name.withUnsafeBytes { JournalPositions.position(name: $0) }
            #expect(word == JournalEntry.position(ofName: name), "\(name)")
        }
        for position in positions {
            let name = Array(JournalEntry.positionName(position).utf8)
            let parsed = name.withUnsafeBytes { JournalPositions.position(name: $0) }
            #expect(parsed == position)
            for index in name.indices {
                for byte in 0...255 {
                    var changed = name
                    changed[index] = UInt8(byte)
                    check(changed)
                }
            }
            for count in 0...12 where count != name.count {
                check(Array((name + name).prefix(count)))
            }
        }
    }
}
