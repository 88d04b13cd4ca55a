/// Writing a version 3 snapshot as a stream (`Spec/FORMAT.md` §6.3, §8): the same bytes
/// as `SnapshotFile.encodeLocated`, produced through a fixed-size buffer, so a compaction
/// never holds the receipts it carries in memory at once.
///
/// Everything but the values is known from the items' metadata: a first pass over them
/// computes the values section's length and the hints checksum (so the header is final
/// before the first byte is written); the second writes each value as it is read; the
/// third writes the hints again from the metadata, then the trailer, whose file checksum
/// was computed incrementally over every byte written.
extension SnapshotFile {
    /// One snapshot item as a compaction produces it.
    public enum StreamItem: Hashable, Sendable {
        /// An item whose body is whole. A done entry state carrying its receipt gets a
        /// value, as in `encodeLocated`.
        case whole(RecordKind, [UInt8])
        /// A done entry state whose receipt is read only while the file is written:
        /// `hint` is its entry-state body with an empty receipt (the receipt's u32
        /// length zero, last), `receiptBytes` the receipt's length.
        case receiptLater(RecordKind, hint: [UInt8], receiptBytes: UInt32)
        /// A memo entry that is a journal position, its value read only while the file is
        /// written: its fields, without a hint's bytes (`JournalPosition`); as
        /// `.receiptLater(.memoEntry, hint: position.hint, receiptBytes: position.valueBytes)`.
        case journalPosition(JournalPosition)

        public var kind: RecordKind {
            switch self {
            case .whole(let kind, _), .receiptLater(let kind, _, _): kind
            case .journalPosition: .memoEntry
            }
        }

        /// The body's length with its receipt.
        public var bodyBytes: Int {
            switch self {
            case .whole(_, let body): body.count
            case .receiptLater(_, let hint, let receiptBytes): hint.count + Int(receiptBytes)
            case .journalPosition(let position): position.hintBytes + Int(position.valueBytes)
            }
        }

        /// A `.receiptLater` item's hint, or a `.journalPosition`'s; nil for a `.whole` item.
        public var laterHint: [UInt8]? {
            switch self {
            case .whole: return nil
            case .receiptLater(_, let hint, _): return hint
            case .journalPosition(let position): return position.hint
            }
        }

        /// Appends a `.receiptLater` item's hint, or a `.journalPosition`'s (nothing for a
        /// `.whole` item): `laterHint`, without an array.
        fileprivate func writeLaterHint(into writer: inout ByteWriter) {
            switch self {
            case .whole: break
            case .receiptLater(_, let hint, _): writer.writeBytes(hint)
            case .journalPosition(let position): position.writeHint(into: &writer)
            }
        }

        /// The whole body, given the receipt of a `.receiptLater` item (the value of a
        /// `.journalPosition`).
        public func wholeBody(receipt: [UInt8]) -> [UInt8] {
            switch self {
            case .whole(_, let body): return body
            case .journalPosition(let position):
                return StreamItem.receiptLater(.memoEntry, hint: position.hint, receiptBytes: position.valueBytes)
                    .wholeBody(receipt: receipt)
            case .receiptLater(_, let hint, _):
                var writer = ByteWriter(capacity: hint.count + receipt.count)
                writer.writeBytes(hint[0..<(hint.count - 4)])
                writer.writeInteger(UInt32(receipt.count))
                writer.writeBytes(receipt)
                return writer.bytes
            }
        }

        /// The hint body's length, and the value body's length if the item has a value.
        fileprivate var layout: (hintBytes: Int, valueBytes: Int?) {
            switch self {
            case .whole(let kind, let body):
                if let receipt = body.withUnsafeBytes({ SnapshotFile.doneReceipt(kind: kind, $0) }) {
                    return (receipt.lowerBound, body.count)
                }
                return (body.count, nil)
            case .receiptLater(_, let hint, let receiptBytes):
                return (hint.count, hint.count + Int(receiptBytes))
            case .journalPosition(let position):
                return (position.hintBytes, position.hintBytes + Int(position.valueBytes))
            }
        }
    }

    /// Appends `item`'s hint (`layout` given) with its value's `span` to `writer`.
    fileprivate static func writeHint(_ item: StreamItem, hintBytes: Int, span: ValueSpan?, into writer: inout ByteWriter) {
        writer.writeInteger(UInt32(hintBytes))
        writer.writeInteger(item.kind.rawValue)
        writer.writeInteger(span == nil ? UInt16(0) : SnapshotFile.hintFlagHasValue)
        writer.writeInteger(span?.offset ?? 0)
        writer.writeInteger(span?.bodyBytes ?? 0)
        writer.writeInteger(UInt32(0))
        switch item {
        case .whole(_, let body) where span != nil:
            writer.writeBytes(body[0..<(hintBytes - 4)])
            writer.writeInteger(UInt32(0))
        case .whole(_, let body):
            writer.writeBytes(body)
        case .receiptLater, .journalPosition:
            item.writeLaterHint(into: &writer)
        }
        writer.writePadding(alignment: FormatLimits.recordAlignment)
    }

    /// Which items the journal-positions hints stand for (`positionGroups`): the group
    /// starting at an item, and the other items of groups (which get no hint of their own).
    struct StreamGroups {
        /// In item order, not overlapping (`positionGroups` makes them so).
        var groups: [PositionGroup] = []
        var hintCount: Int

        init(_ items: [StreamItem]) {
            groups = SnapshotFile.positionGroups(count: items.count) { index -> SnapshotFile.GroupInput? in
                switch items[index] {
                case .receiptLater(.memoEntry, let hint, let valueBytes):
                    return .body(hint, valueBytes: Int(valueBytes))
                case .journalPosition(let position):
                    return .position(position)
                case .whole(.memoEntry, let body):
                    return body.withUnsafeBytes { SnapshotFile.doneReceipt(kind: .memoEntry, $0) }
                        .map { .body(body, valueBytes: $0.count) }
                default:
                    return nil
                }
            }
            hintCount = items.count
            for group in groups { hintCount -= group.items.count - 1 }
        }

        /// The group item `index` belongs to, if any (a binary search: a set of every grouped
        /// item cost ~16 B per journal position while a large journal compacted).
        func group(containing index: Int) -> PositionGroup? {
            var low = 0
            var high = groups.count
            while low < high {
                let middle = (low + high) / 2
                if groups[middle].items.upperBound <= index { low = middle + 1 } else { high = middle }
            }
            guard low < groups.count, groups[low].items.contains(index) else { return nil }
            return groups[low]
        }

        /// Writes item `index`'s hint, or its group's, or nothing (inside a group).
        func writeHint(_ items: [StreamItem], _ index: Int, span: ValueSpan?, into writer: inout ByteWriter) {
            let group = group(containing: index)
            if let group, group.items.lowerBound == index, let span {
                SnapshotFile.writeGroupHint(group.body, firstValue: span.offset, into: &writer)
            } else if group.map({ $0.items.lowerBound == index }) ?? true {
                let item = items[index]
                SnapshotFile.writeHint(item, hintBytes: item.layout.hintBytes, span: span, into: &writer)
            }
        }
    }

    /// What `writeStream` writes for `items`, worked out from their metadata alone (no
    /// receipt is read): the journal-positions groups, the values section's length and the
    /// hints section's length and checksum (a pass over every hint). A compaction sizes its
    /// rollover with `streamedByteBound` instead, which encodes nothing.
    public struct StreamPlan {
        let groups: StreamGroups
        public let valuesBytes: Int
        public let hintsBytes: Int
        public let hintsChecksum: UInt32

        public init(_ items: [StreamItem]) {
            groups = StreamGroups(items)
            (valuesBytes, hintsBytes, hintsChecksum) = SnapshotFile.streamedSections(items, groups: groups)
        }

        /// The bytes `writeStream` writes.
        public var byteCount: Int {
            FormatLimits.snapshotHeaderBytes + valuesBytes + hintsBytes + FormatLimits.snapshotTrailerBytes
        }
    }

    static func streamedSections(_ items: [StreamItem], groups: StreamGroups)
        -> (valuesBytes: Int, hintsBytes: Int, hintsChecksum: UInt32) {
        var valuesBytes = 0
        var hintsBytes = 0
        var checksum: UInt32 = 0
        var scratch = ByteWriter(capacity: 256)
        for (index, item) in items.enumerated() {
            let layout = item.layout
            let span = layout.valueBytes.map {
                ValueSpan(offset: UInt64(FormatLimits.snapshotHeaderBytes + valuesBytes), bodyBytes: UInt32($0))
            }
            scratch.removeAll()
            groups.writeHint(items, index, span: span, into: &scratch)
            checksum = scratch.bytes.withUnsafeBytes { CRC32.update(checksum, $0) }
            hintsBytes += scratch.count
            if let span { valuesBytes += span.frameBytes }
        }
        return (valuesBytes, hintsBytes, checksum)
    }

    /// The bytes `writeStream` writes for `items`.
    public static func streamedByteCount(_ items: [StreamItem]) -> Int { StreamPlan(items).byteCount }

    /// At least `streamedByteCount(items)`, from each item's lengths alone, as if no journal
    /// positions were grouped into one hint (a group's hint is shorter than its positions'
    /// would be); equal when none are. One cheap pass, no hint encoded: a compaction sizes
    /// its rollover with it on the log's I/O thread and leaves the plan to the thread that
    /// writes the snapshot (`Spec/FORMAT.md` §8).
    public static func streamedByteBound(_ items: [StreamItem]) -> Int {
        let align = FormatLimits.recordAlignment
        var total = FormatLimits.snapshotHeaderBytes + FormatLimits.snapshotTrailerBytes
        for item in items {
            let layout = item.layout
            total += SnapshotFile.hintHeaderBytes + Alignment.roundUp(layout.hintBytes, to: align)
            if let valueBytes = layout.valueBytes {
                total += SnapshotFile.valueHeaderBytes + Alignment.roundUp(valueBytes, to: align)
            }
        }
        return total
    }

    /// Writes a version 3 snapshot of `items` through `write(bytes, fileOffset)`, in file
    /// order, in chunks of about `bufferBytes` (a value larger than that goes in one
    /// chunk of its own). `receipt(index)` returns the receipt of `items[index]`, a
    /// `.receiptLater` item, when its value is written; a receipt whose length is not the
    /// one the item announced fails with `.corruptRecord` (its hint is already counted).
    /// Returns the file's length and where each item's value went (nil: no value).
    /// Items must respect `FormatLimits.recordBodyBytesMax` (checked by the caller).
    public static func writeStream(
        ledgerID: LedgerID, coveredSequence: UInt64, chain: UInt32, ledgerScopedTokens: Bool,
        items: [StreamItem], bufferBytes: Int = 1 << 20,
        receipt: (Int) throws -> [UInt8],
        write: ([UInt8], UInt64) throws -> Void
    ) throws -> (bytes: UInt64, values: [ValueSpan?]) {
        let headerBytes = FormatLimits.snapshotHeaderBytes
        let plan = StreamPlan(items)
        let groups = plan.groups
        var header = ByteWriter(capacity: headerBytes)
        header.writeBytes(SnapshotFile.magic)
        header.writeInteger(groups.groups.isEmpty ? FormatLimits.snapshotFormatVersion
                                : FormatLimits.snapshotJournalFormatVersion)
        header.writeInteger(UInt16(headerBytes))
        header.writeInteger(ledgerScopedTokens ? FormatLimits.flagLedgerScopedTokens : 0)
        header.writeBytes(ledgerID.bytes)
        header.writeInteger(coveredSequence)
        header.writeInteger(chain)
        header.writeInteger(plan.hintsChecksum)
        header.writeInteger(UInt64(plan.valuesBytes))
        header.writeInteger(UInt32(groups.hintCount))
        header.writeInteger(CRC32.checksum(header.bytes))

        var out = ByteWriter(capacity: bufferBytes)
        var fileOffset: UInt64 = 0
        var fileChecksum: UInt32 = 0
        // Called between items only: every item starts 8-aligned, so the buffer's own
        // padding (`writePadding` counts from the buffer's start) is the file's.
        func flush(force: Bool) throws {
            guard out.count > 0, force || out.count >= bufferBytes else { return }
            fileChecksum = out.bytes.withUnsafeBytes { CRC32.update(fileChecksum, $0) }
            try write(out.bytes, fileOffset)
            fileOffset += UInt64(out.count)
            out = ByteWriter(capacity: bufferBytes)
        }
        out.writeBytes(header.bytes)

        var spans = [ValueSpan?](repeating: nil, count: items.count)
        var valueOffset = UInt64(headerBytes)
        for (index, item) in items.enumerated() {
            let layout = item.layout
            guard let valueBytes = layout.valueBytes else { continue }
            let span = ValueSpan(offset: valueOffset, bodyBytes: UInt32(valueBytes))
            var prefix = ByteWriter(capacity: 8)
            prefix.writeInteger(UInt32(valueBytes))
            prefix.writeInteger(item.kind.rawValue)
            prefix.writeInteger(UInt16(0))
            switch item {
            case .whole(_, let body):
                let checksum = body.withUnsafeBytes { body in
                    prefix.bytes.withUnsafeBytes { CRC32.update(CRC32.update(0, $0), body) }
                }
                out.writeBytes(prefix.bytes)
                out.writeInteger(checksum)
                out.writeInteger(UInt32(0))
                out.writeBytes(body)
            case .receiptLater, .journalPosition:
                // The body is the hint with the receipt's length set in its last four bytes,
                // then the receipt; written in place, the checksum filled in after.
                let receiptBytes = UInt32(valueBytes - layout.hintBytes)
                let bytes = try receipt(index)
                guard bytes.count == Int(receiptBytes) else {
                    throw LedgerError(.corruptRecord,
                                      "a receipt read for the snapshot is \(bytes.count) bytes, not the \(receiptBytes) its entry records; run `onceledger verify`")
                }
                let frameStart = out.count
                out.writeBytes(prefix.bytes)
                out.writeInteger(UInt32(0))
                out.writeInteger(UInt32(0))
                let bodyStart = out.count
                item.writeLaterHint(into: &out)
                out.setInteger(receiptBytes, at: out.count - 4)
                out.writeBytes(bytes)
                let checksum = out.bytes.withUnsafeBytes { raw in
                    prefix.bytes.withUnsafeBytes { CRC32.update(CRC32.update(0, $0), UnsafeRawBufferPointer(rebasing: raw[bodyStart...])) }
                }
                out.setInteger(checksum, at: frameStart + 8)
            }
            out.writePadding(alignment: FormatLimits.recordAlignment)
            spans[index] = span
            valueOffset += UInt64(span.frameBytes)
            try flush(force: false)
        }
        for index in items.indices {
            groups.writeHint(items, index, span: spans[index], into: &out)
            try flush(force: false)
        }
        out.writeBytes(SnapshotFile.trailerMagic)
        out.writeInteger(UInt32(0))
        let trailerChecksum = out.bytes.withUnsafeBytes { CRC32.update(fileChecksum, $0) }
        out.writeInteger(trailerChecksum)
        try write(out.bytes, fileOffset)
        fileOffset += UInt64(out.count)
        return (fileOffset, spans)
    }
}
