// Proves the version 4 snapshot's journal-positions hint (kind 18, FORMAT §5.21, §6.7) with the
// real codec: journal positions (memo entries of step "" with ten-digit names) of a run
// generation are written as one hint, and a file holding one is version 4 — the items decode
// back exactly (whole, and as hints with each position's value where its span says), re-encode
// to the same bytes, and the streamed writer writes the very same bytes and spans; the same
// items in a version 3 file (an older writer's) read and re-encode as before; positions that do
// not follow (a hole, another name between) stay memo entry hints; a version 3 file with a
// positions hint, a version 4 file without one, and a position standing alone where a hint
// should hold it are refused (the encoding stays canonical); and every single-byte change of a
// positions hint, checksums made to match, gets a typed answer — never a trap, and never a
// decoded snapshot that re-encodes to other bytes.
import Foundation
@testable import OnceLedgerFormat
import Testing

@Suite struct SnapshotJournalPositionsTests {
    static let ledgerID = LedgerID(bytes: Array(0..<16))!

    static func position(_ run: String, generation: UInt64, _ name: String, value: [UInt8], digest: Bool,
                         namespace: String = "ns") -> SnapshotFile.Item {
        SnapshotFile.Item(kind: .memoEntry, body: RecordBody.memoEntry(.init(
            namespace: namespace, run: run, generation: generation, step: "", name: name,
            inputDigest: digest ? Array(repeating: 0x5a, count: 32) : RecordBody.noInputDigest,
            timeMilliseconds: 1_000 + UInt64(value.count), value: value)).encode())
    }

    /// Two run generations of journal positions, a hole and a name between positions in a
    /// third, another step's memo entry, a run end.
    static var items: [SnapshotFile.Item] {
        var items: [SnapshotFile.Item] = []
        for index in 0..<5 {
            items.append(position("run-a", generation: 3, JournalEntry.positionName(UInt64(index)),
                                  value: Array(repeating: UInt8(index), count: index * 7), digest: index % 2 == 0))
        }
        items.append(SnapshotFile.Item(kind: .memoEntry, body: RecordBody.memoEntry(.init(
            namespace: "ns", run: "run-a", generation: 3, step: "summarize", name: "llm",
            inputDigest: RecordBody.noInputDigest, timeMilliseconds: 5, value: [1, 2, 3])).encode()))
        items.append(SnapshotFile.Item(kind: .runEnd, body: RecordBody.runEnd(.init(
            namespace: "ns", run: "run-a", generation: 3, status: .succeeded, timeMilliseconds: 9)).encode()))
        for index in 0..<2 {
            items.append(position("run-b", generation: 4, JournalEntry.positionName(UInt64(index)), value: [9], digest: false,
                                  namespace: ""))
        }
        items.append(position("run-c", generation: 5, "0000000000", value: [1], digest: false))
        items.append(position("run-c", generation: 5, "00000000000", value: [2], digest: false))
        items.append(position("run-c", generation: 5, "0000000001", value: [3], digest: false))
        items.append(position("run-c", generation: 5, "0000000003", value: [4], digest: true))
        return items
    }

    static func hints(_ bytes: [UInt8]) -> SnapshotFile? {
        let values = Int(ByteReader.getInteger(bytes, at: 48, as: UInt64.self))
        guard 64 + values <= bytes.count - 16,
              case .snapshot(let snapshot) = SnapshotFile.decodeHints(
                header: Array(bytes[0..<64]), hints: Array(bytes[(64 + values)..<(bytes.count - 16)]),
                trailer: Array(bytes[(bytes.count - 16)...]), fileBytes: UInt64(bytes.count))
        else { return nil }
        return snapshot
    }

    @Test func positionsAreOneHintInAVersion4FileAndDecodeBackToTheirItems() throws {
        let snapshot = SnapshotFile(ledgerID: Self.ledgerID, coveredSequence: 9, chain: 7, ledgerScopedTokens: true,
                                    items: Self.items)
        let (bytes, spans) = snapshot.encodeLocated()
        #expect(ByteReader.getInteger(bytes, at: 8, as: UInt16.self) == 4)
        #expect(bytes.count == snapshot.encodedByteCount)
        guard case .snapshot(let decoded) = SnapshotFile.decode(bytes) else {
            Issue.record("the version 4 file does not decode")
            return
        }
        #expect(decoded.formatVersion == 4)
        #expect(decoded.items == Self.items)
        #expect(decoded == snapshot)
        #expect(decoded.encode() == bytes, "re-encodes to its own bytes")

        let hints = try #require(Self.hints(bytes))
        var grouped: [RecordKind] = []
        hints.forEachHint(groupingJournalPositions: true) { kind, _, _ in grouped.append(kind) }
        // run-a 0…4 one hint; run-b 0…1 one hint; run-c: 0 a hint, the name between, 1 and 3 alone.
        #expect(grouped == [.journalPositions, .memoEntry, .runEnd, .journalPositions, .journalPositions, .memoEntry,
                            .memoEntry, .memoEntry])
        #expect(ByteReader.getInteger(bytes, at: 56, as: UInt32.self) == UInt32(grouped.count), "the item count counts hints")
        // Expanded: each item's hint and its value where the encoder put it.
        var index = 0
        try hints.forEachHint { kind, body, span in
            let item = Self.items[index]
            #expect(kind == item.kind)
            #expect(span == spans[index], "item \(index)")
            if let span {
                let frame = Array(bytes[Int(span.offset)..<(Int(span.offset) + span.frameBytes)])
                guard case .value(let valueKind, let range) = frame.withUnsafeBytes({ SnapshotFile.decodeValue($0, span: span) })
                else { throw TimedOutError("value \(index) does not decode") }
                let value = SnapshotFile.Item(kind: valueKind, body: Array(frame[range]))
                #expect(value == item)
                #expect(SnapshotFile.valueMatchesHint(value, hint: body, kind: kind))
            } else {
                #expect(Array(body) == item.body)
            }
            index += 1
        }
        #expect(index == Self.items.count)
    }

    struct TimedOutError: Error { let text: String; init(_ text: String) { self.text = text } }

    /// Streams `stream` (values from `receipt`) through buffers of 1, 64 and 1 MiB bytes and
    /// expects the file `expected`, its spans, and `streamedByteCount` to say its length.
    static func expectStreamed(_ stream: [SnapshotFile.StreamItem], equals expected: [UInt8],
                               spans expectedSpans: [SnapshotFile.ValueSpan?], receipt: (Int) -> [UInt8]) throws {
        for bufferBytes in [1, 64, 1 << 20] {
            var file: [UInt8] = []
            let (count, spans) = try SnapshotFile.writeStream(
                ledgerID: Self.ledgerID, coveredSequence: 9, chain: 7, ledgerScopedTokens: true, items: stream,
                bufferBytes: bufferBytes, receipt: receipt,
                write: { bytes, offset in
                    #expect(Int(offset) == file.count)
                    file += bytes
                })
            #expect(Int(count) == file.count)
            #expect(file == expected, "buffer \(bufferBytes)")
            #expect(spans == expectedSpans)
            #expect(SnapshotFile.streamedByteCount(stream) == expected.count)
            #expect(SnapshotFile.streamedByteBound(stream) >= expected.count)
        }
    }

    /// The bound a compaction sizes its rollover with (`streamedByteBound`): above the length
    /// when positions are grouped into one hint, the length itself when nothing is grouped.
    @Test func theByteBoundIsTheLengthUnlessPositionsAreGrouped() throws {
        let grouped: [SnapshotFile.StreamItem] = Self.items.map { .whole($0.kind, $0.body) }
        let plan = SnapshotFile.StreamPlan(grouped)
        #expect(plan.byteCount == SnapshotFile(ledgerID: Self.ledgerID, coveredSequence: 9, chain: 7,
                                               ledgerScopedTokens: true, items: Self.items).encode().count)
        #expect(SnapshotFile.streamedByteBound(grouped) > plan.byteCount)
        let ungrouped = grouped.filter { $0.kind != .memoEntry }
        #expect(!ungrouped.isEmpty)
        #expect(SnapshotFile.streamedByteBound(ungrouped) == SnapshotFile.streamedByteCount(ungrouped))
        let entries: [SnapshotFile.Item] = (0..<5).map { index in
            let body = RecordBody.entryState(.init(
                key: "k\(index)", status: .done, attempt: 1, generation: 0, fingerprint: [],
                intentTimeMilliseconds: 0, completedTimeMilliseconds: 5, receipt: Array(repeating: 7, count: index * 9)))
            return SnapshotFile.Item(kind: body.kind, body: body.encode())
        }
        let streamed: [SnapshotFile.StreamItem] = entries.map { .whole($0.kind, $0.body) }
        #expect(SnapshotFile.streamedByteBound(streamed) == SnapshotFile(
            ledgerID: Self.ledgerID, coveredSequence: 9, chain: 7, ledgerScopedTokens: true, items: entries).encode().count)
    }

    @Test func theStreamedWriterWritesTheSameBytesAndSpans() throws {
        let items = Self.items
        let (expected, expectedSpans) = SnapshotFile(ledgerID: Self.ledgerID, coveredSequence: 9, chain: 7,
                                                     ledgerScopedTokens: true, items: items).encodeLocated()
        let stream: [SnapshotFile.StreamItem] = items.map { item in
            guard item.kind == .memoEntry,
                  case .fields(.memoEntry(_, _, _, _, _, _, _, let value)) = item.body.withUnsafeBytes({
                      RecordBody.decodeFields(kind: .memoEntry, $0)
                  })
            else { return .whole(item.kind, item.body) }
            return .receiptLater(.memoEntry, hint: Array(item.body[0..<(value.lowerBound - 4)]) + [0, 0, 0, 0],
                                 receiptBytes: UInt32(value.count))
        }
        try Self.expectStreamed(stream, equals: expected, spans: expectedSpans) { index in
            guard case .fields(.memoEntry(_, _, _, _, _, _, _, let value)) = items[index].body.withUnsafeBytes({
                RecordBody.decodeFields(kind: .memoEntry, $0)
            }) else { return [] }
            return Array(items[index].body[value])
        }
    }

    /// A compaction gives a journal's positions as their fields (`.journalPosition`), not as
    /// encoded hints: each one's hint is the memo entry body with an empty value, byte for
    /// byte, and the streamed file, its spans and its length are those of the same items as
    /// hints (`.receiptLater`) and of the encoder.
    @Test func journalPositionItemsWriteTheBytesOfTheirHints() throws {
        let items = Self.items
        let (expected, expectedSpans) = SnapshotFile(ledgerID: Self.ledgerID, coveredSequence: 9, chain: 7,
                                                     ledgerScopedTokens: true, items: items).encodeLocated()
        // One shared run per run generation, holding the digests of its positions that have one.
        var runs: [String: (namespace: [UInt8], run: [UInt8], generation: UInt64, digests: [UInt8])] = [:]
        var fields: [(run: String, position: UInt32, valueBytes: UInt32, time: UInt64, digest: UInt32)?] = []
        var values: [[UInt8]] = []
        for item in items {
            guard item.kind == .memoEntry,
                  case .fields(.memoEntry(let namespace, let run, let generation, let step, let name, let digest, let time,
                                          let value)) = item.body.withUnsafeBytes({ RecordBody.decodeFields(kind: .memoEntry, $0) }),
                  step.isEmpty,
                  let position = item.body.withUnsafeBytes({ JournalPositions.position(name: UnsafeRawBufferPointer(rebasing: $0[name])) })
            else {
                fields.append(nil)
                values.append([])
                continue
            }
            let key = "\(Array(item.body[namespace]))/\(Array(item.body[run]))/\(generation)"
            var shared = runs[key] ?? (Array(item.body[namespace]), Array(item.body[run]), generation, [])
            var digestIndex: UInt32 = 0
            if item.body[digest].contains(where: { $0 != 0 }) {
                shared.digests += item.body[digest]
                digestIndex = UInt32(shared.digests.count / 32)
            }
            runs[key] = shared
            fields.append((key, UInt32(position), UInt32(value.count), time, digestIndex))
            values.append(Array(item.body[value]))
        }
        let shared = runs.mapValues {
            SnapshotFile.JournalRun(namespace: $0.namespace, run: $0.run, generation: $0.generation, digests: $0.digests)
        }
        let stream: [SnapshotFile.StreamItem] = zip(items, fields).map { item, fields in
            guard let fields, let run = shared[fields.run] else { return .whole(item.kind, item.body) }
            return .journalPosition(.init(run: run, position: fields.position, valueBytes: fields.valueBytes,
                                          timeMilliseconds: fields.time, digest: fields.digest))
        }
        #expect(stream.filter { if case .journalPosition = $0 { true } else { false } }.count == 10)
        for (item, streamed) in zip(items, stream) {
            guard case .journalPosition(let position) = streamed else { continue }
            let body = Array(item.body[0..<position.hintBytes - 4]) + [0, 0, 0, 0]
            #expect(position.hint == body, "a position's hint is its memo entry body with an empty value")
            #expect(position.hintBytes == position.hint.count)
            #expect(streamed.bodyBytes == item.body.count)
            #expect(streamed.wholeBody(receipt: Array(item.body[position.hintBytes...])) == item.body)
        }
        try Self.expectStreamed(stream, equals: expected, spans: expectedSpans) { values[$0] }
        // A value of another length than the position announced refuses the file.
        #expect(throws: LedgerError.self) {
            _ = try SnapshotFile.writeStream(
                ledgerID: Self.ledgerID, coveredSequence: 9, chain: 7, ledgerScopedTokens: true, items: stream,
                receipt: { values[$0] + [0] }, write: { _, _ in })
        }
    }

    @Test func aVersion3FileOfPositionsReadsAndReencodesAsBefore() throws {
        var snapshot = SnapshotFile(ledgerID: Self.ledgerID, coveredSequence: 9, chain: 7, items: Self.items)
        snapshot.groupsJournalPositions = false
        let bytes = snapshot.encode()
        #expect(ByteReader.getInteger(bytes, at: 8, as: UInt16.self) == 3)
        guard case .snapshot(let decoded) = SnapshotFile.decode(bytes) else {
            Issue.record("the version 3 file does not decode")
            return
        }
        #expect(decoded.formatVersion == 3 && decoded.items == Self.items)
        #expect(decoded.encode() == bytes, "an older writer's file re-encodes to its own bytes")
        let hints = try #require(Self.hints(bytes))
        var kinds: [RecordKind] = []
        hints.forEachHint(groupingJournalPositions: true) { kind, _, _ in kinds.append(kind) }
        #expect(!kinds.contains(.journalPositions))
    }

    /// `bytes` with the version set to `version` and every checksum recomputed.
    static func withVersion(_ bytes: [UInt8], _ version: UInt16) -> [UInt8] {
        var patched = bytes
        patched[8] = UInt8(version & 0xff)
        patched[9] = UInt8(version >> 8)
        return refreshed(patched)
    }

    static func refreshed(_ bytes: [UInt8]) -> [UInt8] {
        var patched = bytes
        func store(_ value: UInt32, at offset: Int) {
            for index in 0..<4 { patched[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
        }
        let values = Int(ByteReader.getInteger(patched, at: 48, as: UInt64.self))
        let trailer = patched.count - 16
        if 64 + values <= trailer { store(CRC32.checksum(Array(patched[(64 + values)..<trailer])), at: 44) }
        store(CRC32.checksum(Array(patched[0..<60])), at: 60)
        store(CRC32.checksum(Array(patched[0..<(trailer + 12)])), at: trailer + 12)
        return patched
    }

    @Test func nonCanonicalVersionsAndLonePositionsAreRefused() throws {
        let v4 = SnapshotFile(ledgerID: Self.ledgerID, coveredSequence: 9, chain: 7, items: Self.items).encode()
        var expectations: [(String, [UInt8])] = [("a version 3 file holding a positions hint", Self.withVersion(v4, 3))]
        var plain = SnapshotFile(ledgerID: Self.ledgerID, coveredSequence: 9, chain: 7, items: Array(Self.items[5...6]))
        let v3 = plain.encode()
        #expect(ByteReader.getInteger(v3, at: 8, as: UInt16.self) == 3, "no positions: version 3")
        expectations.append(("a version 4 file without a positions hint", Self.withVersion(v3, 4)))
        // Positions written one hint each (an older writer's form) under a version 4 header.
        plain.items = Self.items
        plain.groupsJournalPositions = false
        expectations.append(("positions standing alone in a version 4 file", Self.withVersion(plain.encode(), 4)))
        for (what, bytes) in expectations {
            guard case .corrupt = SnapshotFile.decode(bytes) else {
                Issue.record("\(what) decoded")
                continue
            }
            #expect(Self.hints(bytes) == nil, "\(what): the open path refuses it too")
        }
        // An older reader (versions 1…3) refuses the version 4 file by its version.
        #expect(!(1...3).contains(ByteReader.getInteger(v4, at: 8, as: UInt16.self)))
    }

    @Test func everyByteOfAPositionsHintChangedGetsATypedAnswer() throws {
        let items = Array(Self.items[0..<5])
        let bytes = SnapshotFile(ledgerID: Self.ledgerID, coveredSequence: 9, chain: 7, items: items).encode()
        let values = Int(ByteReader.getInteger(bytes, at: 48, as: UInt64.self))
        let hintStart = 64 + values
        for offset in hintStart..<(bytes.count - 16) {
            for delta: UInt8 in [1, 0x80] {
                var damaged = bytes
                damaged[offset] &+= delta
                damaged = Self.refreshed(damaged)
                switch SnapshotFile.decode(damaged) {
                case .snapshot(let snapshot):
                    // Whatever still decodes must stay canonical.
                    #expect(snapshot.encode() == damaged, "byte \(offset) + \(delta) decodes but re-encodes otherwise")
                    #expect(snapshot.items.count == items.count)
                case .corrupt, .unsupportedVersion:
                    break
                }
                if let hints = Self.hints(damaged) {
                    hints.forEachHint { _, _, _ in }
                    hints.forEachHint(groupingJournalPositions: true) { _, _, _ in }
                }
            }
        }
    }
}
