/// A snapshot file whose file checksum fails, as `onceledger salvage --trust-damaged-snapshot`
/// reads it (`Spec/RECOVERY.md`): the items that still parse, read without that checksum.
/// A pure function of the file's bytes, so the fuzz target `FuzzSnapshot` reaches it: it
/// must never trap, whatever the bytes.
public struct DamagedSnapshot: Sendable {
    public var file: String
    /// The ledger its (checksum-valid) header names.
    public var ledgerID: LedgerID
    public var coveredSequence: UInt64
    public var chain: UInt32
    public var itemCountDeclared: Int
    public var items: [SnapshotFile.Item]
    /// Why parsing stopped before the declared item count, if it did.
    public var stopReason: String?
    /// Version 3 and 4: how many of the declared hints were not read when parsing stopped (0
    /// when `stopReason` is nil, and for versions 1 and 2).
    public var hintsUnread = 0
    /// Items parsed but not used whole (version 3 and 4: an item whose value in the values
    /// section is damaged), and what was done with each.
    public var damagedItems: [String] = []
}

extension DamagedSnapshot {
    /// Items of a snapshot whose file checksum fails, parsed as far as they go. Needs a
    /// valid header checksum (so the covered sequence number and item count are sound).
    public static func parse(_ bytes: [UInt8], file: String) -> DamagedSnapshot? {
        let headerBytes = FormatLimits.snapshotHeaderBytes
        guard bytes.count >= headerBytes, Array(bytes[0..<8]) == SnapshotFile.magic,
              ByteReader.getInteger(bytes, at: 60, as: UInt32.self) == CRC32.checksum(Array(bytes[0..<60]))
        else { return nil }
        let covered = ByteReader.getInteger(bytes, at: 32, as: UInt64.self)
        let chain = ByteReader.getInteger(bytes, at: 40, as: UInt32.self)
        let itemCount = Int(ByteReader.getInteger(bytes, at: 56, as: UInt32.self))
        guard let ledgerID = LedgerID(bytes: Array(bytes[16..<32])) else { return nil }
        var damaged = DamagedSnapshot(file: file, ledgerID: ledgerID, coveredSequence: covered, chain: chain, itemCountDeclared: itemCount,
                                      items: [])
        // Versions 3 and 4 (FORMAT §6.7) keep values and hints, not items: the item layout
        // below would misread the first value and stop there, losing every item.
        if ByteReader.getInteger(bytes, at: 8, as: UInt16.self) >= 3 {
            parseHints(bytes, hintCount: itemCount, into: &damaged)
            return damaged
        }
        var index = headerBytes
        let end = max(headerBytes, bytes.count - FormatLimits.snapshotTrailerBytes)
        while damaged.items.count < itemCount {
            let number = damaged.items.count
            guard index + SnapshotFile.itemHeaderBytes <= end else {
                damaged.stopReason = "the file ends before item \(number)"
                break
            }
            let length = Int(ByteReader.getInteger(bytes, at: index, as: UInt32.self))
            let kind = RecordKind(rawValue: ByteReader.getInteger(bytes, at: index + 4, as: UInt16.self))
            let flags = ByteReader.getInteger(bytes, at: index + 6, as: UInt16.self)
            let bodyStart = index + SnapshotFile.itemHeaderBytes
            let next = bodyStart + Alignment.roundUp(min(length, Int(FormatLimits.recordBodyBytesMax)), to: FormatLimits.recordAlignment)
            guard flags == 0, length <= Int(FormatLimits.recordBodyBytesMax), next <= end else {
                damaged.stopReason = "item \(number) has an impossible length or flags"
                break
            }
            let body = Array(bytes[bodyStart..<(bodyStart + length)])
            guard case .body = RecordBody.decode(kind: kind, body),
                  [RecordKind.entryState, .memoPut, .journalEntry, .runTerminal, .memoEntry, .runEnd, .memoSweep,
                   .generationFloor, .entryRetention].contains(kind)
            else {
                damaged.stopReason = "item \(number) does not decode as \(kind)"
                break
            }
            damaged.items.append(SnapshotFile.Item(kind: kind, body: body))
            index = next
        }
        return damaged
    }

    /// The items a damaged version 3 or 4 snapshot (FORMAT §6.7) still yields: its hints,
    /// found after the values section the (checksum-valid) header sizes, parsed as far as
    /// they go; each value is read and checked by its own checksum and against its hint. A
    /// done entry state whose value is damaged is kept as its hint — done, with an empty
    /// receipt — so its key stays done (its effect is never run again); a memo entry whose
    /// value is damaged is left out (never given another value). Both are reported.
    static func parseHints(_ bytes: [UInt8], hintCount: Int, into damaged: inout DamagedSnapshot) {
        let headerBytes = FormatLimits.snapshotHeaderBytes
        let trailerBytes = FormatLimits.snapshotTrailerBytes
        let applicable: Set<RecordKind> = [.entryState, .memoPut, .journalEntry, .runTerminal, .memoEntry, .runEnd, .memoSweep,
                                           .generationFloor, .entryRetention]
        let valuesBytes = ByteReader.getInteger(bytes, at: 48, as: UInt64.self)
        guard valuesBytes <= UInt64(bytes.count - headerBytes) else {
            damaged.stopReason = "the file ends inside its values section (\(valuesBytes) bytes declared)"
            return
        }
        let valuesEnd = headerBytes + Int(valuesBytes)
        // The hints end at the trailer, or, when the file was cut short, at its end.
        let trailerStart = bytes.count - trailerBytes
        let hintsEnd = trailerStart >= valuesEnd && Array(bytes[trailerStart..<(trailerStart + 8)]) == SnapshotFile.trailerMagic
            ? trailerStart : bytes.count
        /// The item a value gives, when its bytes, checksum and body are sound and it is its hint's.
        func value(_ span: SnapshotFile.ValueSpan, hint: [UInt8], kind: RecordKind) -> (item: SnapshotFile.Item?, reason: String) {
            guard span.offset >= UInt64(headerBytes), span.offset <= UInt64(valuesEnd),
                  UInt64(span.frameBytes) <= UInt64(valuesEnd) - span.offset
            else { return (nil, "its value's offset \(span.offset) is outside the values section") }
            let start = Int(span.offset)
            let decoded = bytes.withUnsafeBytes {
                SnapshotFile.decodeValue(UnsafeRawBufferPointer(rebasing: $0[start..<(start + span.frameBytes)]), span: span)
            }
            switch decoded {
            case .corrupt(let reason):
                return (nil, reason)
            case .value(let valueKind, let body):
                let item = SnapshotFile.Item(kind: valueKind, body: Array(bytes[(start + body.lowerBound)..<(start + body.upperBound)]))
                guard case .body(let decoded) = RecordBody.decode(kind: item.kind, item.body) else {
                    return (nil, "the value at offset \(span.offset) does not decode")
                }
                if hint.withUnsafeBytes({ SnapshotFile.valueMatchesHint(item, hint: $0, kind: kind) }) { return (item, "") }
                // The hint differs from its value. The value's own checksum holds and the hint's
                // does not (the hints checksum failed): when it is the same key's, the value is
                // the entry (a done entry whose hint's state byte was damaged stays done).
                var done = true
                if case .entryState(let b) = decoded { done = b.status == .done }
                guard done, case .body(let hinted) = RecordBody.decode(kind: kind, hint), let identity = Self.identity(decoded),
                      identity == Self.identity(hinted)
                else {
                    // Another key's done entry, whole and checksummed (a hint's damaged key or
                    // offset): a true item of the snapshot all the same, kept, so a done key
                    // whose own hint was damaged stays done (its effect never runs again).
                    if done, case .entryState(let b) = decoded {
                        damaged.items.append(item)
                        damaged.damagedItems.append("the value at offset \(span.offset) is the done entry of \"\(b.key)\", not its hint's; kept, from its checksummed value")
                    }
                    return (nil, "the value at offset \(span.offset) is not its hint's entry")
                }
                return (item, "")
            }
        }
        var declared = hintCount
        var offset = valuesEnd
        defer { if damaged.stopReason == nil { damaged.hintsUnread = 0 } }
        for index in 0..<hintCount {
            damaged.hintsUnread = hintCount - index
            guard hintsEnd - offset >= SnapshotFile.hintHeaderBytes else {
                damaged.stopReason = "the file ends before hint \(index)"
                break
            }
            let length = Int(ByteReader.getInteger(bytes, at: offset, as: UInt32.self))
            let kind = RecordKind(rawValue: ByteReader.getInteger(bytes, at: offset + 4, as: UInt16.self))
            let flags = ByteReader.getInteger(bytes, at: offset + 6, as: UInt16.self)
            let span = SnapshotFile.ValueSpan(offset: ByteReader.getInteger(bytes, at: offset + 8, as: UInt64.self),
                                              bodyBytes: ByteReader.getInteger(bytes, at: offset + 16, as: UInt32.self))
            let bodyStart = offset + SnapshotFile.hintHeaderBytes
            guard flags & ~SnapshotFile.hintFlagHasValue == 0, length <= Int(FormatLimits.recordBodyBytesMax),
                  Alignment.roundUp(length, to: FormatLimits.recordAlignment) <= hintsEnd - bodyStart
            else {
                damaged.stopReason = "hint \(index) has an impossible length or flags"
                break
            }
            let body = Array(bytes[bodyStart..<(bodyStart + length)])
            offset = bodyStart + Alignment.roundUp(length, to: FormatLimits.recordAlignment)
            let hasValue = flags & SnapshotFile.hintFlagHasValue != 0
            if kind == .journalPositions {
                guard hasValue, case .success(let header) = body.withUnsafeBytes({ JournalPositions.header($0) }) else {
                    damaged.stopReason = "hint \(index) does not decode as \(kind)"
                    break
                }
                declared += header.count - 1
                // The offset is unchecked here: one outside the values section would make the
                // running sum of the positions' value sizes overflow.
                guard span.offset >= UInt64(headerBytes), span.offset <= UInt64(valuesEnd) else {
                    damaged.damagedItems.append("hint \(index): its positions' values start at offset \(span.offset), outside the values section; positions \(header.first) to \(header.first + UInt64(header.count - 1)) left out")
                    continue
                }
                var positions = 0
                body.withUnsafeBytes { raw in
                    JournalPositions.forEachMemoHint(raw, firstValue: span.offset) { memo, positionSpan in
                        let position = header.first + UInt64(positions)
                        positions += 1
                        let (item, reason) = value(positionSpan, hint: Array(memo), kind: .memoEntry)
                        if let item {
                            damaged.items.append(item)
                        } else {
                            damaged.damagedItems.append("hint \(index), journal position \(position): \(reason); left out")
                        }
                    }
                }
                if positions < header.count {
                    damaged.damagedItems.append("hint \(index): positions \(header.first + UInt64(positions)) on do not decode; left out")
                }
                continue
            }
            guard case .body(let decoded) = RecordBody.decode(kind: kind, body), applicable.contains(kind) else {
                damaged.stopReason = "hint \(index) does not decode as \(kind)"
                break
            }
            guard hasValue else {
                // Every memo entry and every done entry state has a value (FORMAT §6.7): a hint
                // of one without the value flag was damaged. A memo entry taken from it would
                // be its key with an empty value, so it is left out; a done entry stays done
                // (never run again), without its receipt, as when its value is damaged.
                switch decoded {
                case .memoEntry(let b):
                    damaged.damagedItems.append("hint \(index), \(kind) \"\(b.name)\" of step \"\(b.step)\": its value flag is clear, which no writer makes; left out")
                    continue
                case .entryState(let b) where b.status == .done:
                    damaged.damagedItems.append("hint \(index), \(kind) of \"\(b.key)\": its value flag is clear, which no writer makes; kept as done without its receipt")
                default:
                    break
                }
                damaged.items.append(SnapshotFile.Item(kind: kind, body: body))
                continue
            }
            let what = decoded.key.map { "\(kind) of \"\($0)\"" } ?? "\(kind)"
            guard kind == .entryState || kind == .memoEntry else {
                // Only entry states and memo entries have values: any other hint is the whole
                // item, its value flag damaged. Left out, an ended run would come out running,
                // a generation floor (a dropped key's next token) would be lost.
                damaged.items.append(SnapshotFile.Item(kind: kind, body: body))
                damaged.damagedItems.append("hint \(index), \(what): its value flag is set, which no writer makes for it; kept as its hint")
                continue
            }
            let (item, reason) = value(span, hint: body, kind: kind)
            if let item {
                damaged.items.append(item)
            } else if kind == .entryState {
                damaged.items.append(SnapshotFile.Item(kind: kind, body: body))
                var state = "done"
                if case .entryState(let b) = decoded, b.status != .done { state = "\(b.status) (its value flag says done: check it)" }
                damaged.damagedItems.append("hint \(index), \(what): \(reason); kept as \(state) without its receipt")
            } else {
                damaged.damagedItems.append("hint \(index), \(what): \(reason); left out")
            }
        }
        damaged.itemCountDeclared = declared
    }

    /// Whose entry a value-carrying item is: an entry state's key, a memo entry's namespace,
    /// run, generation, step and name, as their UTF-8 bytes (the ledger tells keys apart by
    /// their bytes: Swift's `String` `==`, canonical equivalence, would take "café" spelt with
    /// U+00E9 and with "e" + U+0301 for one key); nil for others.
    static func identity(_ body: RecordBody) -> [[UInt8]]? {
        switch body {
        case .entryState(let b): [Array("entry".utf8), Array(b.key.utf8)]
        case .memoEntry(let b):
            [Array("memo".utf8), Array(b.namespace.utf8), Array(b.run.utf8), Array(String(b.generation).utf8),
             Array(b.step.utf8), Array(b.name.utf8)]
        default: nil
        }
    }
}
