// Proves that salvage's reader of a damaged snapshot (`DamagedSnapshot.parse`) never gives an
// item a meaning its snapshot did not have when a hint (no longer covered by a checksum once the
// hints checksum fails) is damaged:
// - a memo entry's hint whose value flag was cleared is not taken as the memo entry with an
//   empty value (every memo entry has a value, FORMAT §6.7): it is left out and reported;
//   before, the value-less hint came back as the entry, value "" under the key;
// - a done entry whose hint points at another key's value is kept done from its hint, when the
//   other key is the same text under Unicode canonical equivalence but other bytes ("café" as
//   U+00E9 and as "e" + U+0301, two keys to the ledger): before, the keys were compared as
//   Swift Strings (canonical equivalence), the other key's value was taken for the hint, and
//   the hint's key came out absent (its effect would run again);
// - an item that never has a value (a run end, a generation floor) whose hint's value flag was
//   damaged set is kept from its hint, which is the whole item: before, it was looked up as a
//   value, not found, and left out, so an ended run came out running and the generation floor
//   (which keeps a dropped key from being handed a token again) was lost;
// - a done entry whose hint's key was damaged stays done from its checksummed value (which
//   names its key): before, the value was refused as "not its hint's entry" and only the hint,
//   under the damaged key, was kept, so the real key came out absent.
import OnceLedgerFormat
import Testing

@Suite struct DamagedSnapshotMeaningTests {
    static let ledgerID = LedgerID(bytes: (0..<16).map { UInt8($0 + 1) })!

    /// A version 3 snapshot of `items`, and where each hint's header starts.
    static func snapshot(_ items: [SnapshotFile.Item]) -> (bytes: [UInt8], hints: [Int]) {
        let bytes = SnapshotFile(ledgerID: ledgerID, coveredSequence: 7, chain: 0, items: items).encodeLocated().bytes
        var offset = FormatLimits.snapshotHeaderBytes + Int(ByteReader.getInteger(bytes, at: 48, as: UInt64.self))
        var hints: [Int] = []
        for _ in items {
            hints.append(offset)
            let length = Int(ByteReader.getInteger(bytes, at: offset, as: UInt32.self))
            offset += SnapshotFile.hintHeaderBytes + Alignment.roundUp(length, to: FormatLimits.recordAlignment)
        }
        return (bytes, hints)
    }

    static func memo(_ name: String, value: [UInt8]) -> SnapshotFile.Item {
        SnapshotFile.Item(kind: .memoEntry, body: RecordBody.memoEntry(.init(
            namespace: "", run: "batch", generation: 1, step: "llm", name: name, timeMilliseconds: 5, value: value)).encode())
    }

    static func done(_ key: String, receipt: [UInt8]) -> SnapshotFile.Item {
        SnapshotFile.Item(kind: .entryState, body: RecordBody.entryState(.init(
            key: key, status: .done, attempt: 1, generation: 1, fingerprint: [UInt8](repeating: 0, count: 32), intentTimeMilliseconds: 1,
            completedTimeMilliseconds: 2, receipt: receipt)).encode())
    }

    static func decoded(_ items: [SnapshotFile.Item]) -> [RecordBody] {
        items.compactMap { item in
            if case .body(let body) = RecordBody.decode(kind: item.kind, item.body) { return body }
            return nil
        }
    }

    @Test func aMemoHintWithoutItsValueFlagIsNotAnEmptyValue() throws {
        var (bytes, hints) = Self.snapshot([Self.memo("answer", value: Array("42".utf8)), Self.done("charge", receipt: [1])])
        // Flags (u16 at 6): the value flag cleared. The hints checksum (and so the file's) fails.
        bytes[hints[0] + 6] = 0
        let damaged = try #require(DamagedSnapshot.parse(bytes, file: "x.snap"))
        for body in Self.decoded(damaged.items) {
            if case .memoEntry(let entry) = body {
                Issue.record("memo entry \(entry.name) came back with value \(entry.value)")
            }
        }
        #expect(Self.decoded(damaged.items).contains { if case .entryState(let b) = $0 { b.key == "charge" } else { false } })
        #expect(damaged.damagedItems.count == 1, "\(damaged.damagedItems)")
    }

    @Test func aDoneEntryPointingAtACanonicallyEquivalentKeysValueStaysDone() throws {
        let composed = "caf\u{E9}", decomposed = "cafe\u{301}"
        #expect(composed == decomposed && !composed.utf8.elementsEqual(decomposed.utf8))
        var (bytes, hints) = Self.snapshot([Self.done(composed, receipt: [1, 1]), Self.done(decomposed, receipt: [2, 2])])
        // The first hint's value span (offset u64 at 8, body length u32 at 16) damaged into the second's.
        for index in 0..<12 { bytes[hints[0] + 8 + index] = bytes[hints[1] + 8 + index] }
        let damaged = try #require(DamagedSnapshot.parse(bytes, file: "x.snap"))
        let done = Self.decoded(damaged.items).compactMap { body -> [UInt8]? in
            if case .entryState(let b) = body, b.status == .done { return Array(b.key.utf8) }
            return nil
        }
        #expect(done.contains(Array(composed.utf8)), "the composed key came out absent: \(damaged.damagedItems)")
        #expect(done.contains(Array(decomposed.utf8)))
    }

    @Test func anItemWithoutAValueWhoseHintSaysItHasOneIsKept() throws {
        let end = SnapshotFile.Item(kind: .runEnd, body: RecordBody.runEnd(.init(
            namespace: "", run: "batch", generation: 3, status: .succeeded, timeMilliseconds: 9)).encode())
        let floor = SnapshotFile.Item(kind: .generationFloor, body: RecordBody.generationFloor(floor: 7).encode())
        var (bytes, hints) = Self.snapshot([Self.done("charge", receipt: Array("1".utf8)), end, floor])
        bytes[hints[1] + 6] = 1
        bytes[hints[2] + 6] = 1
        let damaged = try #require(DamagedSnapshot.parse(bytes, file: "x.snap"))
        let bodies = Self.decoded(damaged.items)
        #expect(bodies.contains { if case .runEnd(let b) = $0 { b.run == "batch" && b.status == .succeeded } else { false } },
                "the run end: \(damaged.damagedItems)")
        #expect(bodies.contains { if case .generationFloor(7) = $0 { true } else { false } }, "the floor: \(damaged.damagedItems)")
        #expect(damaged.damagedItems.count == 2, "both reported: \(damaged.damagedItems)")
    }

    @Test func aDoneEntryWhoseHintsKeyIsDamagedStaysDoneFromItsValue() throws {
        var (bytes, hints) = Self.snapshot([Self.done("charge-1", receipt: Array("1".utf8)), Self.done("charge-2", receipt: Array("2".utf8))])
        // The hint body starts after the 24-byte hint header with the key (u16 length, bytes):
        // its last character damaged, "charge-1" to "charge-7".
        let last = hints[0] + SnapshotFile.hintHeaderBytes + 2 + 7
        #expect(bytes[last] == UInt8(ascii: "1"))
        bytes[last] = UInt8(ascii: "7")
        let damaged = try #require(DamagedSnapshot.parse(bytes, file: "x.snap"))
        let done = Self.decoded(damaged.items).compactMap { body -> String? in
            if case .entryState(let b) = body, b.status == .done { return b.key }
            return nil
        }
        #expect(done.contains("charge-1"), "the real key, from its value: \(done) \(damaged.damagedItems)")
        #expect(done.contains("charge-2"))
    }
}
