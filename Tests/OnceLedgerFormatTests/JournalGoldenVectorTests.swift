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

    static let files: [(path: String, bytes: [UInt8])] = [
        ("journal-entry-step.bin", step.encode()),
        ("journal-entry-truncated.bin", truncated.encode()),
        ("record-13-journal-position.bin", GoldenVectors.recordFrame(record)),
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
}
