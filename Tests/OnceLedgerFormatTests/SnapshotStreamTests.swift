// Proves that `SnapshotFile.writeStream` (the streamed compaction writer) writes exactly the
// bytes, and puts each value exactly where, the one-buffer encoder (`encodeLocated`, version 3)
// does for the same items: seeded random items (done entries with receipts of 0 to ~5 KiB,
// pending and absent entries, retained records), given whole or with their receipts read
// later, written through buffers of several sizes (down to 1 byte, so every item straddles a
// chunk); and that a receipt read back at a length other than its item's refuses with
// `corrupt-record`. Item count from ONCELEDGER_STREAM_ITEMS (small default).
import Foundation
import OnceLedgerFormat
import OnceLedgerTestSupport
import Testing

@Suite struct SnapshotStreamTests {
    static let itemCount = ProcessInfo.processInfo.environment["ONCELEDGER_STREAM_ITEMS"].flatMap(Int.init) ?? 60
    static let ledgerID = LedgerID(bytes: (0..<16).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 5) })!

    /// Items as a compaction makes them, with the receipt of each done entry.
    static func items(seed: UInt64) -> [(item: SnapshotFile.Item, receipt: [UInt8]?)] {
        var random = SeededRandom(seed: seed)
        return (0..<itemCount).map { index in
            let key = "key-\(index)-\(random.next() % 1000)"
            switch random.next() % 5 {
            case 0, 1, 2:
                let receipt = (0..<Int(random.next() % 5000)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                let body = RecordBody.entryState(.init(
                    key: key, status: .done, attempt: 1, generation: 1 + UInt32(random.next() % 3),
                    fingerprint: random.next() % 2 == 0 ? [] : [UInt8](repeating: 7, count: 32),
                    intentTimeMilliseconds: 0, completedTimeMilliseconds: 1 + random.next() % 1_000_000, receipt: receipt))
                let item = SnapshotFile.Item(kind: .entryState, body: body.encode())
                // Only an entry the body decoder reads as done has a value.
                return (item, hint(item).count < item.body.count ? receipt : nil)
            case 3:
                let body = RecordBody.entryState(.init(
                    key: key, status: random.next() % 2 == 0 ? .pending : .absent, attempt: 2, generation: 1,
                    fingerprint: [], intentTimeMilliseconds: random.next() % 1_000_000, completedTimeMilliseconds: 0,
                    receipt: []))
                return (SnapshotFile.Item(kind: .entryState, body: body.encode()), nil)
            default:
                // A retained record the snapshot keeps verbatim (no value).
                let body = (0..<Int(random.next() % 300)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                return (SnapshotFile.Item(kind: RecordKind(rawValue: 0x7F01), body: body), nil)
            }
        }
    }

    /// The hint form of a done entry (its body with an empty receipt).
    static func hint(_ item: SnapshotFile.Item) -> [UInt8] {
        guard case .fields(let fields) = item.body.withUnsafeBytes({ RecordBody.decodeFields(kind: item.kind, $0) }),
              case .entryState(_, .done, _, _, _, _, _, let receipt) = fields
        else { return item.body }
        return Array(item.body[0..<(receipt.lowerBound - 4)]) + [0, 0, 0, 0]
    }

    static func stream(_ items: [SnapshotFile.StreamItem], bufferBytes: Int,
                       receipt: (Int) throws -> [UInt8]) throws -> (bytes: [UInt8], values: [SnapshotFile.ValueSpan?]) {
        var file: [UInt8] = []
        let (count, values) = try SnapshotFile.writeStream(
            ledgerID: ledgerID, coveredSequence: 4242, chain: 0xDEAD_BEEF, ledgerScopedTokens: true, items: items,
            bufferBytes: bufferBytes, receipt: receipt,
            write: { bytes, offset in
                #expect(offset == UInt64(file.count), "written in file order")
                file += bytes
            })
        #expect(count == UInt64(file.count))
        #expect(SnapshotFile.streamedByteCount(items) == file.count)
        return (file, values)
    }

    @Test(arguments: [1, 100, 4096, 1 << 20])
    func streamedBytesEqualTheOneBufferEncoder(bufferBytes: Int) throws {
        for seed in [UInt64(1), 2, 3] {
            let made = Self.items(seed: seed)
            let expected = SnapshotFile(ledgerID: Self.ledgerID, coveredSequence: 4242, chain: 0xDEAD_BEEF,
                                        ledgerScopedTokens: true, items: made.map(\.item)).encodeLocated()
            // Whole items (receipts in memory).
            let whole = try Self.stream(made.map { .whole($0.item.kind, $0.item.body) }, bufferBytes: bufferBytes) { _ in
                Issue.record("no receipt is read for whole items")
                return []
            }
            let wholeSame = whole.bytes == expected.bytes
            #expect(wholeSame, "seed \(seed), whole items")
            #expect(whole.values == expected.values)
            // Receipts read while writing, in item order.
            var read: [Int] = []
            let later: [SnapshotFile.StreamItem] = made.map { item, receipt in
                guard let receipt else { return .whole(item.kind, item.body) }
                return .receiptLater(item.kind, hint: Self.hint(item), receiptBytes: UInt32(receipt.count))
            }
            let streamed = try Self.stream(later, bufferBytes: bufferBytes) { index in
                read.append(index)
                return try #require(made[index].receipt)
            }
            let same = streamed.bytes == expected.bytes
            #expect(same, "seed \(seed), receipts read later")
            #expect(streamed.values == expected.values)
            #expect(read == made.indices.filter { made[$0].receipt != nil }, "each receipt read once, in order")
            for (index, item) in later.enumerated() {
                let rebuilt = item.wholeBody(receipt: made[index].receipt ?? [])
                #expect(rebuilt == made[index].item.body, "item \(index): \(rebuilt.count) vs \(made[index].item.body.count) bytes, hint \(Self.hint(made[index].item).count)")
            }
        }
    }

    @Test func aReceiptOfTheWrongLengthRefusesWithCorruptRecord() throws {
        let made = Self.items(seed: 9).filter { $0.receipt != nil }.prefix(3)
        let items: [SnapshotFile.StreamItem] = made.map {
            .receiptLater($0.item.kind, hint: Self.hint($0.item), receiptBytes: UInt32($0.receipt!.count))
        }
        #expect { _ = try Self.stream(items, bufferBytes: 64) { made[made.startIndex + $0].receipt! + [1] } } throws: {
            ($0 as? LedgerError)?.code == .corruptRecord
        }
    }
}
