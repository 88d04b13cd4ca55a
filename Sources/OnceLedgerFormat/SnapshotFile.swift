/// A snapshot file: the live state through `coveredSequence` (`Spec/FORMAT.md` §6).
///
/// ```
/// header (64 bytes)
///   0  8 magic "OLSNAPSH"
///   8  2 format version (u16) = 2 (1 is read too)
///  10  2 header bytes (u16) = 64
///  12  4 flags (u32): bit 0 = ledger-scoped tokens (version 2 only); others 0
///  16 16 ledger id
///  32  8 covered sequence number (u64): every record with seq <= this is reflected
///  40  4 chain value (u32): checksum of record `covered sequence` (0 if covered = 0)
///  44  4 reserved (u32) = 0
///  48  8 body bytes (u64)
///  56  4 item count (u32)
///  60  4 header checksum: crc32(0, bytes 0..<60)
/// body: item count items, each
///   0  4 item body bytes (u32)
///   4  2 kind (u16)
///   6  2 flags (u16) = 0
///   8  n item body, zero padding to a multiple of 8
/// trailer (16 bytes)
///   0  8 magic "OLSNAPEN"
///   8  4 reserved (u32) = 0
///  12  4 file checksum: crc32(0, header ‖ body ‖ trailer bytes 0..<12)
/// ```
///
/// Version 3 (`FormatLimits.snapshotFormatVersion`, `Spec/FORMAT.md` §6.3) keeps the
/// header and trailer and replaces the body by a values section and a hint section, so
/// a ledger opens by reading the hints only and reads a receipt when it is asked for:
/// ```
/// header: as above, except
///  44  4 hints checksum (u32): crc32(0, hint section)
///  48  8 values bytes (u64): V, the values section's length
///  56  4 item count (u32): the number of hints
/// values section (V bytes, from offset 64): one value per done entry and per memo
/// entry, in hint order
///   0  4 value body bytes (u32)
///   4  2 kind (u16) = 11 (entry state) or 13 (memo entry)
///   6  2 flags (u16) = 0
///   8  4 value checksum: crc32(0, value bytes 0..<8 ‖ body)
///  12  4 reserved (u32) = 0
///  16  n body: the item's whole body, receipt (memo value) included; zero padding to 8
/// hint section (from 64 + V to the trailer): item count hints, each
///   0  4 hint body bytes (u32)
///   4  2 kind (u16)
///   6  2 flags (u16): bit 0 = has a value
///   8  8 value offset (u64): file offset of the value (0 without one)
///  16  4 value body bytes (u32) (0 without one)
///  20  4 reserved (u32) = 0
///  24  n hint body: the item's body; for an item with a value, that body with an empty
///        receipt (memo value); zero padding to 8
/// ```
/// The file checksum still covers every byte; opening checks the header, the hints
/// checksum and the trailer's magic, and each value's checksum when it is read.
public struct SnapshotFile: Hashable, Sendable {
    public static let magic: [UInt8] = Array("OLSNAPSH".utf8)
    public static let trailerMagic: [UInt8] = Array("OLSNAPEN".utf8)
    public static let itemHeaderBytes = 8
    /// Version 3: bytes before a value's body, and before a hint's body.
    public static let valueHeaderBytes = 16
    public static let hintHeaderBytes = 24
    public static let hintFlagHasValue: UInt16 = 1

    /// Where a version 3 snapshot keeps an item's value: the value's file offset and its
    /// body length (`Spec/FORMAT.md` §6.3). Read it with `decodeValue`.
    public struct ValueSpan: Hashable, Sendable {
        public var offset: UInt64
        public var bodyBytes: UInt32
        public init(offset: UInt64, bodyBytes: UInt32) {
            self.offset = offset
            self.bodyBytes = bodyBytes
        }
        /// Bytes to read at `offset`: the value header, the body and its padding.
        public var frameBytes: Int {
            SnapshotFile.valueHeaderBytes + Alignment.roundUp(Int(bodyBytes), to: FormatLimits.recordAlignment)
        }
    }

    public struct Item: Hashable, Sendable {
        public var kind: RecordKind
        public var body: [UInt8]
        public init(kind: RecordKind, body: [UInt8]) {
            self.kind = kind
            self.body = body
        }
    }

    public var ledgerID: LedgerID
    public var coveredSequence: UInt64
    public var chain: UInt32
    /// Header format version: written as `FormatLimits.snapshotFormatVersion` unless set
    /// (1 and 2 write the whole-body layout); 1 to 3 when decoded.
    public var formatVersion: UInt16 = FormatLimits.snapshotFormatVersion
    /// Flags bit 0: the ledger derives effect tokens with its id (`Spec/FORMAT.md` §9.3).
    public var ledgerScopedTokens: Bool
    /// Whether encoding (version 3 and up) puts the journal positions of a run generation in
    /// one hint (kind 18) and then writes version 4 (§6.7): true but for a file decoded from
    /// a version 3 header, so that it re-encodes to its own bytes.
    var groupsJournalPositions = true
    /// The items: either given (to encode) or still inside the decoded file's bytes,
    /// so opening a large snapshot costs no allocation per item (`forEachItem`).
    private var storage: Storage

    private enum Storage: Sendable {
        case items([Item])
        /// A validated file: `count` items from `bytes[start...]`.
        case encoded(bytes: [UInt8], start: Int, count: Int)
        /// A version 3 file read without its values (`decodeHints`): `count` hints,
        /// validated, from `bytes[0...]`.
        case hints(bytes: [UInt8], count: Int)
    }

    /// Whether this snapshot was read without its values (`decodeHints`): its items are
    /// then hints, and `forEachHint` says where each value is.
    public var holdsHintsOnly: Bool {
        if case .hints = storage { return true }
        return false
    }

    public init(ledgerID: LedgerID, coveredSequence: UInt64, chain: UInt32, ledgerScopedTokens: Bool = false,
                items: [Item]) {
        self.ledgerID = ledgerID
        self.ledgerScopedTokens = ledgerScopedTokens
        self.coveredSequence = coveredSequence
        self.chain = chain
        self.storage = .items(items)
    }

    public var items: [Item] {
        get {
            switch storage {
            case .items(let items): return items
            case .encoded, .hints:
                var items: [Item] = []
                items.reserveCapacity(itemCount)
                forEachItem { kind, body in items.append(Item(kind: kind, body: Array(body))) }
                return items
            }
        }
        set { storage = .items(newValue) }
    }

    public var itemCount: Int {
        switch storage {
        case .items(let items): items.count
        case .encoded(_, _, let count), .hints(_, let count): count
        }
    }

    /// Calls `body` with each item's kind and body bytes, in order, without copying
    /// them. The buffer is valid only during the call. For a snapshot read with
    /// `decodeHints`, these are the hints: done entries without their receipts.
    public func forEachItem(_ body: (RecordKind, UnsafeRawBufferPointer) throws -> Void) rethrows {
        try forEachHint { kind, bytes, _ in try body(kind, bytes) }
    }

    /// Calls `body` with each item's kind, body bytes and, for a snapshot read with
    /// `decodeHints`, where the item's value is (nil otherwise: the body is whole).
    /// A journal-positions hint (kind 18, version 4) comes as the memo entry hints it
    /// stands for, one per position with its value's span, unless `groupingJournalPositions`:
    /// then as itself, with the span of its first value (body bytes 0), for a reader that
    /// takes its positions in one go (`JournalPositions`).
    public func forEachHint(groupingJournalPositions: Bool = false,
                            _ body: (RecordKind, UnsafeRawBufferPointer, ValueSpan?) throws -> Void) rethrows {
        switch storage {
        case .hints(let bytes, let count):
            try bytes.withUnsafeBytes { raw in
                var offset = 0
                for _ in 0..<count {
                    // Validated by `decodeHints`.
                    let hint = SnapshotFile.hintHeader(raw, at: offset)
                    let bodyStart = offset + SnapshotFile.hintHeaderBytes
                    let hintBody = UnsafeRawBufferPointer(rebasing: raw[bodyStart..<(bodyStart + hint.bodyBytes)])
                    if hint.kind == .journalPositions, !groupingJournalPositions, let first = hint.value {
                        try JournalPositions.forEachMemoHint(hintBody, firstValue: first.offset) { memo, span in
                            try body(.memoEntry, memo, span)
                        }
                    } else {
                        try body(hint.kind, hintBody, hint.value)
                    }
                    offset = bodyStart + Alignment.roundUp(hint.bodyBytes, to: FormatLimits.recordAlignment)
                }
            }
        case .items, .encoded:
            try forEachWholeItem { kind, bytes in try body(kind, bytes, nil) }
        }
    }

    private func forEachWholeItem(_ body: (RecordKind, UnsafeRawBufferPointer) throws -> Void) rethrows {
        switch storage {
        case .hints:
            return
        case .items(let items):
            for item in items { try item.body.withUnsafeBytes { try body(item.kind, $0) } }
        case .encoded(let bytes, let start, let count):
            try bytes.withUnsafeBytes { raw in
                var offset = start
                for _ in 0..<count {
                    // Validated by `decode`: lengths, flags and padding are all in bounds.
                    let length = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
                    let kind = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt16.self))
                    let bodyStart = offset + SnapshotFile.itemHeaderBytes
                    try body(RecordKind(rawValue: kind), UnsafeRawBufferPointer(rebasing: raw[bodyStart..<(bodyStart + length)]))
                    offset = bodyStart + Alignment.roundUp(length, to: FormatLimits.recordAlignment)
                }
            }
        }
    }

    /// Versions 3 and 4 hold the same items (4 only groups journal positions in the hints).
    private var itemsVersion: UInt16 {
        formatVersion == FormatLimits.snapshotJournalFormatVersion ? FormatLimits.snapshotFormatVersion : formatVersion
    }

    public static func == (a: SnapshotFile, b: SnapshotFile) -> Bool {
        a.ledgerID == b.ledgerID && a.coveredSequence == b.coveredSequence && a.chain == b.chain
            && a.itemsVersion == b.itemsVersion && a.ledgerScopedTokens == b.ledgerScopedTokens && a.items == b.items
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(ledgerID)
        hasher.combine(coveredSequence)
        hasher.combine(chain)
        hasher.combine(itemsVersion)
        hasher.combine(ledgerScopedTokens)
        hasher.combine(items)
    }

    /// Encodes the whole file. Items must respect `FormatLimits.recordBodyBytesMax`.
    public func encode() -> [UInt8] {
        encodeLocated().bytes
    }

    /// Encodes the whole file, and says where each item's value went (version 3: the
    /// done entry-state and the memo entry items; nil for every other item, and for
    /// every item of an older version).
    public func encodeLocated() -> (bytes: [UInt8], values: [ValueSpan?]) {
        if formatVersion >= 3 { return encodeVersion3() }
        var body = ByteWriter()
        for item in items {
            precondition(item.body.count <= Int(FormatLimits.recordBodyBytesMax), "item bound checked by caller")
            body.writeInteger(UInt32(item.body.count))
            body.writeInteger(item.kind.rawValue)
            body.writeInteger(UInt16(0))
            body.writeBytes(item.body)
            body.writePadding(alignment: FormatLimits.recordAlignment)
        }
        var writer = ByteWriter(capacity: FormatLimits.snapshotHeaderBytes + body.count + FormatLimits.snapshotTrailerBytes)
        writer.writeBytes(SnapshotFile.magic)
        writer.writeInteger(formatVersion)
        writer.writeInteger(UInt16(FormatLimits.snapshotHeaderBytes))
        writer.writeInteger(ledgerScopedTokens ? FormatLimits.flagLedgerScopedTokens : 0)
        writer.writeBytes(ledgerID.bytes)
        writer.writeInteger(coveredSequence)
        writer.writeInteger(chain)
        writer.writeInteger(UInt32(0))
        writer.writeInteger(UInt64(body.count))
        writer.writeInteger(UInt32(items.count))
        writer.writeInteger(CRC32.checksum(writer.bytes))
        writer.writeBytes(body.bytes)
        writer.writeBytes(SnapshotFile.trailerMagic)
        writer.writeInteger(UInt32(0))
        writer.writeInteger(CRC32.checksum(writer.bytes))
        return (writer.bytes, [ValueSpan?](repeating: nil, count: items.count))
    }

    /// Whether `value` is its hint's item with its value: the same kind, the same bytes up
    /// to the value (the hint's last field, an empty length), and the value where
    /// `doneReceipt` finds it. The one rule for every reader that checks a value.
    public static func valueMatchesHint(_ value: Item, hint: UnsafeRawBufferPointer, kind: RecordKind) -> Bool {
        guard value.kind == kind, hint.count >= 4, value.body.count >= hint.count else { return false }
        let prefix = hint.count - 4
        guard value.body[0..<prefix].elementsEqual(hint[0..<prefix]) else { return false }
        return value.body.withUnsafeBytes { doneReceipt(kind: kind, $0)?.lowerBound == prefix + 4 }
    }

    /// The range of the value an item keeps in the values section — a done entry-state
    /// body's receipt, or a memo entry's value (each its body's last field, after its u32
    /// length) — or nil for any other item.
    static func doneReceipt(kind: RecordKind, _ body: UnsafeRawBufferPointer) -> Range<Int>? {
        switch kind {
        case .entryState:
            guard case .fields(.entryState(_, .done, _, _, _, _, _, let receipt)) = RecordBody.decodeFields(kind: kind, body)
            else { return nil }
            return receipt
        case .memoEntry:
            guard case .fields(.memoEntry(_, _, _, _, _, _, _, let value)) = RecordBody.decodeFields(kind: kind, body)
            else { return nil }
            return value
        default:
            return nil
        }
    }

    /// The bytes `encode()` makes, without encoding (a compaction sizes its segment by it).
    public var encodedByteCount: Int {
        let fixed = FormatLimits.snapshotHeaderBytes + FormatLimits.snapshotTrailerBytes
        let align = FormatLimits.recordAlignment
        var total = fixed
        let items = self.items
        var grouped = [Int: Int]()  // first item of a group: its hint's body bytes
        var inGroup = Set<Int>()
        if formatVersion >= 3, groupsJournalPositions {
            for group in SnapshotFile.positionGroups(items) {
                grouped[group.items.lowerBound] = group.body.count
                for index in group.items.dropFirst() { inGroup.insert(index) }
            }
        }
        for (index, item) in items.enumerated() {
            guard formatVersion >= 3 else {
                total += SnapshotFile.itemHeaderBytes + Alignment.roundUp(item.body.count, to: align)
                continue
            }
            if item.body.withUnsafeBytes({ SnapshotFile.doneReceipt(kind: item.kind, $0) }) != nil {
                total += SnapshotFile.valueHeaderBytes + Alignment.roundUp(item.body.count, to: align)
                let receipt = item.body.withUnsafeBytes { SnapshotFile.doneReceipt(kind: item.kind, $0)! }
                if let groupBytes = grouped[index] {
                    total += SnapshotFile.hintHeaderBytes + Alignment.roundUp(groupBytes, to: align)
                } else if !inGroup.contains(index) {
                    total += SnapshotFile.hintHeaderBytes + Alignment.roundUp(receipt.lowerBound, to: align)
                }
            } else {
                total += SnapshotFile.hintHeaderBytes + Alignment.roundUp(item.body.count, to: align)
            }
        }
        return total
    }

    /// Version 3, written into one buffer of the exact size: the header (its sizes and
    /// checksums patched in at the end), the values, the hints, the trailer.
    private func encodeVersion3() -> (bytes: [UInt8], values: [ValueSpan?]) {
        let items = self.items
        let groups = groupsJournalPositions ? SnapshotFile.positionGroups(items) : []
        var groupAt = [Int: Int]()  // first item of a group: the group's index
        var inGroup = Set<Int>()
        for (number, group) in groups.enumerated() {
            groupAt[group.items.lowerBound] = number
            for index in group.items.dropFirst() { inGroup.insert(index) }
        }
        var hintCount = 0
        var hints = ByteWriter()
        var spans: [ValueSpan?] = []
        spans.reserveCapacity(items.count)
        let headerBytes = FormatLimits.snapshotHeaderBytes
        var writer = ByteWriter(capacity: encodedByteCount)
        writer.writeBytes(SnapshotFile.magic)
        writer.writeInteger(groups.isEmpty ? itemsVersion : FormatLimits.snapshotJournalFormatVersion)
        writer.writeInteger(UInt16(headerBytes))
        writer.writeInteger(ledgerScopedTokens ? FormatLimits.flagLedgerScopedTokens : 0)
        writer.writeBytes(ledgerID.bytes)
        writer.writeInteger(coveredSequence)
        writer.writeInteger(chain)
        writer.writeInteger(UInt32(0))  // hints checksum, below
        writer.writeInteger(UInt64(0))  // values bytes, below
        writer.writeInteger(UInt32(0))  // hint count, below
        writer.writeInteger(UInt32(0))  // header checksum, below
        for (index, item) in items.enumerated() {
            precondition(item.body.count <= Int(FormatLimits.recordBodyBytesMax), "item bound checked by caller")
            let receipt = item.body.withUnsafeBytes { SnapshotFile.doneReceipt(kind: item.kind, $0) }
            var span: ValueSpan? = nil
            if receipt != nil {
                let offset = UInt64(writer.count)
                var header = ByteWriter()
                header.writeInteger(UInt32(item.body.count))
                header.writeInteger(item.kind.rawValue)
                header.writeInteger(UInt16(0))
                let checksum = item.body.withUnsafeBytes { body in
                    header.bytes.withUnsafeBytes { CRC32.update(CRC32.update(0, $0), body) }
                }
                writer.writeBytes(header.bytes)
                writer.writeInteger(checksum)
                writer.writeInteger(UInt32(0))
                writer.writeBytes(item.body)
                writer.writePadding(alignment: FormatLimits.recordAlignment)
                span = ValueSpan(offset: offset, bodyBytes: UInt32(item.body.count))
            }
            spans.append(span)
            if let number = groupAt[index], let span {
                // The journal positions of a group: one hint, before the values of all but
                // its first position are written (it names only the first).
                SnapshotFile.writeGroupHint(groups[number].body, firstValue: span.offset, into: &hints)
                hintCount += 1
                continue
            }
            if inGroup.contains(index) { continue }
            hintCount += 1
            // The hint: the item; for one with a value, its body with an empty receipt
            // (the receipt's u32 length zero).
            let hintBytes = receipt.map { $0.lowerBound } ?? item.body.count
            hints.writeInteger(UInt32(hintBytes))
            hints.writeInteger(item.kind.rawValue)
            hints.writeInteger(span == nil ? UInt16(0) : SnapshotFile.hintFlagHasValue)
            hints.writeInteger(span?.offset ?? 0)
            hints.writeInteger(span?.bodyBytes ?? 0)
            hints.writeInteger(UInt32(0))
            if let receipt {
                hints.writeBytes(item.body[0..<(receipt.lowerBound - 4)])
                hints.writeInteger(UInt32(0))
            } else {
                hints.writeBytes(item.body)
            }
            hints.writePadding(alignment: FormatLimits.recordAlignment)
        }
        writer.setInteger(CRC32.checksum(hints.bytes), at: 44)
        writer.setInteger(UInt64(writer.count - headerBytes), at: 48)
        writer.setInteger(UInt32(hintCount), at: 56)
        writer.setInteger(writer.bytes.withUnsafeBytes { CRC32.update(0, UnsafeRawBufferPointer(rebasing: $0[0..<60])) },
                          at: 60)
        writer.writeBytes(hints.bytes)
        writer.writeBytes(SnapshotFile.trailerMagic)
        writer.writeInteger(UInt32(0))
        writer.writeInteger(CRC32.checksum(writer.bytes))
        return (writer.bytes, spans)
    }

    // MARK: Journal positions (version 4)

    /// A journal-positions hint a writer makes (§6.7): it stands for `items`.
    struct PositionGroup {
        var items: Range<Int>
        var body: [UInt8]
    }

    /// The journal-positions hints of a version 4 writer over `count` items, in order
    /// (`Spec/FORMAT.md` §6.7): a memo entry of step "" whose name is ten digits is a journal
    /// position; position 0 starts a group, which takes the positions that follow it one by
    /// one in the same run generation, up to `JournalPositions.perHintMax`; the position after
    /// a full group starts the next. Any other item, or a position that does not follow,
    /// ends the group. `memo(i)` gives item i's memo entry body (only the fields before its
    /// value are read) and its value's length, or nil for an item that is not a memo entry.
    static func positionGroups(count: Int, memo: (Int) -> (body: [UInt8], valueBytes: Int)?) -> [PositionGroup] {
        positionGroups(count: count) { index in memo(index).map { .body($0.body, valueBytes: $0.valueBytes) } }
    }

    /// What `positionGroups` reads of an item: a memo entry body and its value's length, or
    /// a journal position's fields (`StreamItem.journalPosition`, no body to decode).
    enum GroupInput {
        case body([UInt8], valueBytes: Int)
        case position(JournalPosition)
    }

    /// The groups `positionGroups` builds, item by item. A struct with mutating methods, not
    /// local functions over captured vars: those cost a runtime exclusivity check per access,
    /// per position of a compaction.
    private struct PositionGrouper {
        var groups: [PositionGroup] = []
        var open: (start: Int, builder: JournalPositions.Builder, namespace: [UInt8], run: [UInt8], generation: UInt64,
                   last: UInt64)?

        mutating func close(at end: Int) {
            if let group = open { groups.append(PositionGroup(items: group.start..<end, body: group.builder.body)) }
            open = nil
        }

        /// Item `index`, a journal position (step "", a ten-digit name).
        mutating func add(_ index: Int, namespace: UnsafeRawBufferPointer, run: UnsafeRawBufferPointer, generation: UInt64,
                          position: UInt64, digest: UnsafeRawBufferPointer, time: UInt64, valueBytes: Int) {
            let follows = open.map {
                $0.generation == generation && $0.last &+ 1 == position
                    && $0.run.elementsEqual(run) && $0.namespace.elementsEqual(namespace)
            } ?? false
            if !(follows && open.map({ $0.builder.count < JournalPositions.perHintMax }) ?? false) {
                close(at: index)
                guard position == 0 || follows else { return }
                open = (index, JournalPositions.Builder(namespace: namespace, run: run, generation: generation, first: position),
                        Array(namespace), Array(run), generation, position)
            }
            open?.builder.append(valueBytes: UInt32(valueBytes), timeMilliseconds: time, digest: digest)
            open?.last = position
        }
    }

    static func positionGroups(count: Int, input: (Int) -> GroupInput?) -> [PositionGroup] {
        var grouper = PositionGrouper()
        for index in 0..<count {
            switch input(index) {
            case nil:
                grouper.close(at: index)
            case .position(let item)?:
                let shared = item.run
                shared.namespace.withUnsafeBytes { namespace in
                    shared.run.withUnsafeBytes { run in
                        item.withDigest { digest in
                            grouper.add(index, namespace: namespace, run: run, generation: shared.generation,
                                        position: UInt64(item.position), digest: digest, time: item.timeMilliseconds,
                                        valueBytes: Int(item.valueBytes))
                        }
                    }
                }
            case .body(let body, let valueBytes)?:
                body.withUnsafeBytes { raw in
                    guard case .fields(.memoEntry(let namespace, let run, let generation, let step, let name, let digest, let time, _)) =
                            RecordBody.decodeFields(kind: .memoEntry, raw),
                          step.isEmpty, let number = JournalPositions.position(name: UnsafeRawBufferPointer(rebasing: raw[name]))
                    else {
                        grouper.close(at: index)
                        return
                    }
                    grouper.add(index, namespace: UnsafeRawBufferPointer(rebasing: raw[namespace]),
                                run: UnsafeRawBufferPointer(rebasing: raw[run]), generation: generation, position: number,
                                digest: UnsafeRawBufferPointer(rebasing: raw[digest]), time: time, valueBytes: valueBytes)
                }
            }
        }
        grouper.close(at: count)
        return grouper.groups
    }

    static func positionGroups(_ items: [Item]) -> [PositionGroup] {
        positionGroups(count: items.count) { index in
            let item = items[index]
            guard item.kind == .memoEntry,
                  let value = item.body.withUnsafeBytes({ SnapshotFile.doneReceipt(kind: .memoEntry, $0) })
            else { return nil }
            return (item.body, value.count)
        }
    }

    /// Appends a journal-positions hint whose first value is at `firstValue`.
    static func writeGroupHint(_ body: [UInt8], firstValue: UInt64, into writer: inout ByteWriter) {
        writer.writeInteger(UInt32(body.count))
        writer.writeInteger(RecordKind.journalPositions.rawValue)
        writer.writeInteger(SnapshotFile.hintFlagHasValue)
        writer.writeInteger(firstValue)
        writer.writeInteger(UInt32(0))
        writer.writeInteger(UInt32(0))
        writer.writeBytes(body)
        writer.writePadding(alignment: FormatLimits.recordAlignment)
    }

    public enum DecodeResult: Hashable, Sendable {
        case snapshot(SnapshotFile)
        case corrupt(String)
        case unsupportedVersion(UInt16)
    }

    /// Decodes a whole snapshot file from untrusted bytes. Never traps.
    public static func decode(_ bytes: [UInt8]) -> DecodeResult {
        let headerBytes = FormatLimits.snapshotHeaderBytes
        let trailerBytes = FormatLimits.snapshotTrailerBytes
        guard bytes.count >= headerBytes + trailerBytes else { return .corrupt("file too short (\(bytes.count) bytes)") }
        guard Array(bytes[0..<8]) == magic else { return .corrupt("bad magic") }
        let storedHeader = ByteReader.getInteger(bytes, at: 60, as: UInt32.self)
        let computedHeader = bytes.withUnsafeBytes { CRC32.update(0, UnsafeRawBufferPointer(rebasing: $0[0..<60])) }
        guard storedHeader == computedHeader else {
            return .corrupt("header checksum mismatch: stored \(hex32(storedHeader)), computed \(hex32(computedHeader))")
        }
        let version = ByteReader.getInteger(bytes, at: 8, as: UInt16.self)
        guard FormatLimits.snapshotFormatVersionsReadable.contains(version) else { return .unsupportedVersion(version) }
        // Version 1 defines no flag; version 2 defines bit 0.
        let flags = ByteReader.getInteger(bytes, at: 12, as: UInt32.self)
        let knownFlags: UInt32 = version >= 2 ? FormatLimits.flagLedgerScopedTokens : 0
        guard ByteReader.getInteger(bytes, at: 10, as: UInt16.self) == UInt16(headerBytes),
              flags & ~knownFlags == 0,
              version >= 3 || ByteReader.getInteger(bytes, at: 44, as: UInt32.self) == 0
        else { return .corrupt("bad header fields") }
        let ledgerID = LedgerID(bytes: Array(bytes[16..<32]))!
        let covered = ByteReader.getInteger(bytes, at: 32, as: UInt64.self)
        let chain = ByteReader.getInteger(bytes, at: 40, as: UInt32.self)
        let bodyBytes = ByteReader.getInteger(bytes, at: 48, as: UInt64.self)
        let itemCount = ByteReader.getInteger(bytes, at: 56, as: UInt32.self)
        // Version 3: `bodyBytes` is the values section; the hint section follows it.
        let fixed = UInt64(headerBytes + trailerBytes)
        guard bodyBytes <= FormatLimits.snapshotBodyBytesMax, UInt64(bytes.count) >= fixed + bodyBytes,
              version >= 3 || UInt64(bytes.count) == fixed + bodyBytes,
              UInt64(bytes.count) - fixed - bodyBytes <= FormatLimits.snapshotBodyBytesMax
        else { return .corrupt("body length \(bodyBytes) does not match file size \(bytes.count)") }
        let trailerStart = bytes.count - trailerBytes
        guard Array(bytes[trailerStart..<(trailerStart + 8)]) == trailerMagic,
              ByteReader.getInteger(bytes, at: trailerStart + 8, as: UInt32.self) == 0
        else { return .corrupt("bad trailer") }
        let storedFile = ByteReader.getInteger(bytes, at: trailerStart + 12, as: UInt32.self)
        let computedFile = bytes.withUnsafeBytes {
            CRC32.update(0, UnsafeRawBufferPointer(rebasing: $0[0..<(trailerStart + 12)]))
        }
        guard storedFile == computedFile else {
            return .corrupt("file checksum mismatch: stored \(hex32(storedFile)), computed \(hex32(computedFile))")
        }
        if version >= 3 {
            return decodeVersion3(bytes, version: version, ledgerID: ledgerID, covered: covered, chain: chain,
                                  ledgerScopedTokens: flags & FormatLimits.flagLedgerScopedTokens != 0,
                                  valuesBytes: Int(bodyBytes), hintCount: Int(itemCount))
        }
        // Walk every item once to check it; `forEachItem` then trusts these bounds.
        let walked: String? = bytes.withUnsafeBytes { raw in
            var offset = headerBytes
            for index in 0..<Int(itemCount) {
                guard trailerStart - offset >= itemHeaderBytes else { return "item \(index) malformed" }
                let length = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
                let flags = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 6, as: UInt16.self))
                let bodyStart = offset + itemHeaderBytes
                guard length <= FormatLimits.recordBodyBytesMax, flags == 0, trailerStart - bodyStart >= Int(length) else {
                    return "item \(index) malformed"
                }
                let padded = Alignment.roundUp(Int(length), to: FormatLimits.recordAlignment)
                guard trailerStart - bodyStart >= padded,
                      raw[(bodyStart + Int(length))..<(bodyStart + padded)].allSatisfy({ $0 == 0 })
                else { return "item \(index) padding malformed" }
                offset = bodyStart + padded
            }
            return offset == trailerStart ? nil : "bytes after the last item"
        }
        if let walked { return .corrupt(walked) }
        var file = SnapshotFile(ledgerID: ledgerID, coveredSequence: covered, chain: chain,
                                ledgerScopedTokens: flags & FormatLimits.flagLedgerScopedTokens != 0, items: [])
        file.formatVersion = version
        file.storage = .encoded(bytes: bytes, start: headerBytes, count: Int(itemCount))
        return .snapshot(file)
    }

    // MARK: Version 3

    struct HintHeader {
        var bodyBytes: Int
        var kind: RecordKind
        var flags: UInt16
        var value: ValueSpan?
    }

    /// The hint header at `offset` (bounds checked by the caller).
    static func hintHeader(_ raw: UnsafeRawBufferPointer, at offset: Int) -> HintHeader {
        func get<T: FixedWidthInteger>(_ at: Int, _: T.Type) -> T {
            T(littleEndian: raw.loadUnaligned(fromByteOffset: offset + at, as: T.self))
        }
        let flags = get(6, UInt16.self)
        let value = flags & hintFlagHasValue != 0
            ? ValueSpan(offset: get(8, UInt64.self), bodyBytes: get(16, UInt32.self)) : nil
        return HintHeader(bodyBytes: Int(get(0, UInt32.self)), kind: RecordKind(rawValue: get(4, UInt16.self)),
                          flags: flags, value: value)
    }

    /// Checks a hint section of `count` hints that fills `raw`, for a values section of
    /// `valuesBytes` bytes: bounds, flags, padding, and values laid out back to back in
    /// hint order from the end of the header, exactly filling the values section. A
    /// hint with a value must be a done entry state with an empty receipt or a memo entry
    /// with an empty value, and every done entry state and memo entry must have a value.
    /// Nil if valid.
    ///
    /// Version 4 (§6.7): a journal-positions hint (kind 18) names its first value, and its
    /// positions' values follow one by one; the hints are the ones the writer makes
    /// (`positionGroups`): no position a group would have taken stands alone, a group
    /// that does not start at position 0 continues a full one, and there is at least one.
    /// Version 3 holds none.
    static func checkHints(_ raw: UnsafeRawBufferPointer, count: Int, valuesBytes: Int, version: UInt16) -> String? {
        var offset = 0
        var nextValue = UInt64(FormatLimits.snapshotHeaderBytes)
        let valuesEnd = UInt64(FormatLimits.snapshotHeaderBytes + valuesBytes)
        let grouping = version >= FormatLimits.snapshotJournalFormatVersion
        var groupCount = 0
        // The hint before, if it was a journal-positions hint.
        var previous: (namespace: [UInt8], run: [UInt8], generation: UInt64, last: UInt64, full: Bool)?
        func follows(_ namespace: UnsafeRawBufferPointer, _ run: UnsafeRawBufferPointer, _ generation: UInt64,
                     _ position: UInt64) -> (follows: Bool, full: Bool) {
            guard let previous, previous.generation == generation, previous.last &+ 1 == position,
                  previous.run.elementsEqual(run), previous.namespace.elementsEqual(namespace)
            else { return (false, false) }
            return (true, previous.full)
        }
        for index in 0..<count {
            guard raw.count - offset >= hintHeaderBytes else { return "hint \(index) malformed" }
            let hint = hintHeader(raw, at: offset)
            let reserved = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 20, as: UInt32.self))
            let bodyStart = offset + hintHeaderBytes
            guard hint.bodyBytes <= Int(FormatLimits.recordBodyBytesMax), hint.flags & ~hintFlagHasValue == 0,
                  reserved == 0, raw.count - bodyStart >= hint.bodyBytes
            else { return "hint \(index) malformed" }
            let padded = Alignment.roundUp(hint.bodyBytes, to: FormatLimits.recordAlignment)
            guard raw.count - bodyStart >= padded,
                  raw[(bodyStart + hint.bodyBytes)..<(bodyStart + padded)].allSatisfy({ $0 == 0 })
            else { return "hint \(index) padding malformed" }
            let body = UnsafeRawBufferPointer(rebasing: raw[bodyStart..<(bodyStart + hint.bodyBytes)])
            if hint.kind == .journalPositions {
                guard grouping else { return "hint \(index) is a journal-positions hint, which only a version 4 snapshot holds" }
                guard let value = hint.value, value.offset == nextValue, value.bodyBytes == 0 else {
                    return "hint \(index) (journal positions) does not name the next value"
                }
                let header: JournalPositions.Header
                switch JournalPositions.header(body) {
                case .success(let decoded): header = decoded
                case .failure(let malformed): return "hint \(index): \(malformed.reason)"
                }
                var outside = false
                let decoded = JournalPositions.decode(body) { _, position in
                    let bodyBytes = JournalPositions.memoBodyBytes(namespace: header.namespace.count, run: header.run.count,
                                                                   valueBytes: Int(position.valueBytes))
                    let frame = UInt64(ValueSpan(offset: 0, bodyBytes: UInt32(bodyBytes)).frameBytes)
                    if frame > valuesEnd - nextValue { outside = true }
                    if !outside { nextValue += frame }
                }
                if case .failure(let malformed) = decoded { return "hint \(index): \(malformed.reason)" }
                guard !outside else { return "hint \(index) (journal positions) names values outside the values section" }
                let namespace = UnsafeRawBufferPointer(rebasing: body[header.namespace])
                let run = UnsafeRawBufferPointer(rebasing: body[header.run])
                let (after, afterFull) = follows(namespace, run, header.generation, header.first)
                // Position 0 starts a group; any other continues a full one right before it.
                guard header.first == 0 ? !after : (after && afterFull)
                else { return "hint \(index) (journal positions from \(header.first)) is not where the writer puts it" }
                previous = (Array(namespace), Array(run), header.generation, header.first + UInt64(header.count - 1),
                            header.count == JournalPositions.perHintMax)
                groupCount += 1
                offset = bodyStart + padded
                continue
            }
            if grouping, hint.kind == .memoEntry,
               case .fields(.memoEntry(let namespace, let run, let generation, let step, let name, _, _, _)) =
                RecordBody.decodeFields(kind: .memoEntry, body),
               step.isEmpty, let position = JournalPositions.position(name: UnsafeRawBufferPointer(rebasing: body[name])) {
                let (after, _) = follows(UnsafeRawBufferPointer(rebasing: body[namespace]),
                                         UnsafeRawBufferPointer(rebasing: body[run]), generation, position)
                guard position != 0, !after else {
                    return "hint \(index) is a journal position that belongs in a journal-positions hint"
                }
            }
            previous = nil
            if let value = hint.value {
                guard let receipt = doneReceipt(kind: hint.kind, body), receipt.isEmpty
                else { return "hint \(index) has a value but is not a done entry state with an empty receipt or a memo entry with an empty value" }
                guard value.offset == nextValue, value.bodyBytes <= FormatLimits.recordBodyBytesMax,
                      UInt64(value.frameBytes) <= UInt64(FormatLimits.snapshotHeaderBytes + valuesBytes) - nextValue
                else { return "hint \(index) names a value outside the values section or out of order" }
                nextValue += UInt64(value.frameBytes)
            } else {
                let words = raw.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)
                    | UInt64(raw.loadUnaligned(fromByteOffset: offset + 16, as: UInt32.self))
                guard words == 0 else { return "hint \(index) has a value location but no value flag" }
                // Every writer puts a done entry state's receipt and a memo entry's value in
                // the values section (FORMAT §6.7); one held in its hint is not a form a writer
                // makes, and re-encoding would move it (found by the snapshot fuzzer).
                guard doneReceipt(kind: hint.kind, body) == nil
                else { return "hint \(index) is a done entry state or a memo entry without its value" }
            }
            offset = bodyStart + padded
        }
        guard offset == raw.count else { return "bytes after the last hint" }
        guard !grouping || groupCount > 0 else {
            return "a version 4 snapshot without a journal-positions hint (a writer writes version 3 then)"
        }
        guard nextValue == UInt64(FormatLimits.snapshotHeaderBytes + valuesBytes) else {
            return "the values section holds bytes no hint names"
        }
        return nil
    }

    public enum ValueResult: Hashable, Sendable {
        /// The value's kind and the range of its body in the bytes given.
        case value(RecordKind, body: Range<Int>)
        case corrupt(String)
    }

    /// Checks the value read at `span` (its `frameBytes` bytes from `span.offset`):
    /// length, flags, checksum and padding. Untrusted input: never traps.
    public static func decodeValue(_ raw: UnsafeRawBufferPointer, span: ValueSpan) -> ValueResult {
        guard raw.count == span.frameBytes else {
            return .corrupt("value at offset \(span.offset) is cut short (\(raw.count) of \(span.frameBytes) bytes)")
        }
        func get<T: FixedWidthInteger>(_ at: Int, _: T.Type) -> T {
            T(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: T.self))
        }
        let bodyBytes = get(0, UInt32.self)
        guard bodyBytes == span.bodyBytes, get(6, UInt16.self) == 0, get(12, UInt32.self) == 0 else {
            return .corrupt("value at offset \(span.offset) has a bad header")
        }
        let bodyEnd = valueHeaderBytes + Int(bodyBytes)
        let stored = get(8, UInt32.self)
        let computed = CRC32.update(CRC32.update(0, UnsafeRawBufferPointer(rebasing: raw[0..<8])),
                                    UnsafeRawBufferPointer(rebasing: raw[valueHeaderBytes..<bodyEnd]))
        guard stored == computed else {
            return .corrupt("value at offset \(span.offset): checksum mismatch: stored \(hex32(stored)), computed \(hex32(computed))")
        }
        guard raw[bodyEnd...].allSatisfy({ $0 == 0 }) else {
            return .corrupt("value at offset \(span.offset) has nonzero padding")
        }
        return .value(RecordKind(rawValue: get(4, UInt16.self)), body: valueHeaderBytes..<bodyEnd)
    }

    /// A whole version 3 file (header checked): every hint and every value checked,
    /// the items rebuilt (a done entry's item is its value).
    private static func decodeVersion3(
        _ bytes: [UInt8], version: UInt16, ledgerID: LedgerID, covered: UInt64, chain: UInt32, ledgerScopedTokens: Bool,
        valuesBytes: Int, hintCount: Int
    ) -> DecodeResult {
        let hintsStart = FormatLimits.snapshotHeaderBytes + valuesBytes
        let hintsEnd = bytes.count - FormatLimits.snapshotTrailerBytes
        // `decode` checked that the body (values and hints) fits between header and trailer.
        let hintBytes = Array(bytes[hintsStart..<hintsEnd])
        guard ByteReader.getInteger(bytes, at: 44, as: UInt32.self) == CRC32.checksum(hintBytes) else {
            return .corrupt("hints checksum mismatch")
        }
        return decodeHintsChecked(hintBytes, count: hintCount, valuesBytes: valuesBytes, version: version) { span in
            let end = Int(span.offset) + span.frameBytes
            return bytes.withUnsafeBytes { raw in
                switch decodeValue(UnsafeRawBufferPointer(rebasing: raw[Int(span.offset)..<end]), span: span) {
                case .corrupt(let reason): return .failure(reason)
                case .value(let kind, let body):
                    return .success(Item(kind: kind, body: Array(raw[(Int(span.offset) + body.lowerBound)..<(Int(span.offset) + body.upperBound)])))
                }
            }
        }.map { items in
            var file = SnapshotFile(ledgerID: ledgerID, coveredSequence: covered, chain: chain,
                                    ledgerScopedTokens: ledgerScopedTokens, items: items)
            file.formatVersion = version
            file.groupsJournalPositions = version >= FormatLimits.snapshotJournalFormatVersion
            return file
        }
    }

    private enum ValueOrReason {
        case success(Item)
        case failure(String)
    }

    private enum HintsDecoded {
        case items([Item])
        case corrupt(String)
        func map(_ make: ([Item]) -> SnapshotFile) -> DecodeResult {
            switch self {
            case .items(let items): .snapshot(make(items))
            case .corrupt(let reason): .corrupt(reason)
            }
        }
    }

    private static func decodeHintsChecked(
        _ hintBytes: [UInt8], count: Int, valuesBytes: Int, version: UInt16, value: (ValueSpan) -> ValueOrReason
    ) -> HintsDecoded {
        if let reason = hintBytes.withUnsafeBytes({ checkHints($0, count: count, valuesBytes: valuesBytes, version: version) }) {
            return .corrupt(reason)
        }
        var items: [Item] = []
        items.reserveCapacity(count)
        var failure: String?
        SnapshotFile(ledgerID: LedgerID(bytes: [UInt8](repeating: 0, count: 16))!, coveredSequence: 0, chain: 0,
                     items: []).with(storage: .hints(bytes: hintBytes, count: count)).forEachHint { kind, body, span in
            guard failure == nil else { return }
            guard let span else {
                items.append(Item(kind: kind, body: Array(body)))
                return
            }
            switch value(span) {
            case .failure(let reason): failure = reason
            case .success(let item):
                guard valueMatchesHint(item, hint: body, kind: kind) else {
                    failure = "the value at offset \(span.offset) is not its hint's entry"
                    return
                }
                items.append(item)
            }
        }
        if let failure { return .corrupt(failure) }
        return .items(items)
    }

    private func with(storage: Storage) -> SnapshotFile {
        var copy = self
        copy.storage = storage
        return copy
    }

    /// A version 3 snapshot read without its values: its 64-byte `header`, its `hints`
    /// section and its 16-byte `trailer`, from a file of `fileBytes` bytes. Checks the
    /// header's checksum, the hints checksum, every hint (`checkHints`) and the trailer's
    /// magic; the file checksum and the values are not read (each value's own checksum
    /// is checked when it is read, `decodeValue`). `.unsupportedVersion` for any other
    /// version: read such a file whole with `decode`. Untrusted input: never traps.
    public static func decodeHints(header: [UInt8], hints: [UInt8], trailer: [UInt8], fileBytes: UInt64) -> DecodeResult {
        guard header.count == FormatLimits.snapshotHeaderBytes, trailer.count == FormatLimits.snapshotTrailerBytes
        else { return .corrupt("header or trailer cut short") }
        guard Array(header[0..<8]) == magic else { return .corrupt("bad magic") }
        let storedHeader = ByteReader.getInteger(header, at: 60, as: UInt32.self)
        let computedHeader = header.withUnsafeBytes { CRC32.update(0, UnsafeRawBufferPointer(rebasing: $0[0..<60])) }
        guard storedHeader == computedHeader else {
            return .corrupt("header checksum mismatch: stored \(hex32(storedHeader)), computed \(hex32(computedHeader))")
        }
        let version = ByteReader.getInteger(header, at: 8, as: UInt16.self)
        guard version >= 3, FormatLimits.snapshotFormatVersionsReadable.contains(version) else {
            return .unsupportedVersion(version)
        }
        let flags = ByteReader.getInteger(header, at: 12, as: UInt32.self)
        guard ByteReader.getInteger(header, at: 10, as: UInt16.self) == UInt16(FormatLimits.snapshotHeaderBytes),
              flags & ~FormatLimits.flagLedgerScopedTokens == 0
        else { return .corrupt("bad header fields") }
        let valuesBytes = ByteReader.getInteger(header, at: 48, as: UInt64.self)
        let count = Int(ByteReader.getInteger(header, at: 56, as: UInt32.self))
        let fixed = UInt64(FormatLimits.snapshotHeaderBytes + FormatLimits.snapshotTrailerBytes)
        guard valuesBytes <= FormatLimits.snapshotBodyBytesMax, fileBytes >= fixed + valuesBytes,
              fileBytes - fixed - valuesBytes == UInt64(hints.count)
        else { return .corrupt("values length \(valuesBytes) does not match file size \(fileBytes)") }
        guard Array(trailer[0..<8]) == trailerMagic, ByteReader.getInteger(trailer, at: 8, as: UInt32.self) == 0
        else { return .corrupt("bad trailer") }
        let storedHints = ByteReader.getInteger(header, at: 44, as: UInt32.self)
        let computedHints = CRC32.checksum(hints)
        guard storedHints == computedHints else {
            return .corrupt("hints checksum mismatch: stored \(hex32(storedHints)), computed \(hex32(computedHints))")
        }
        if let reason = hints.withUnsafeBytes({ checkHints($0, count: count, valuesBytes: Int(valuesBytes), version: version) }) {
            return .corrupt(reason)
        }
        var file = SnapshotFile(ledgerID: LedgerID(bytes: Array(header[16..<32]))!,
                                coveredSequence: ByteReader.getInteger(header, at: 32, as: UInt64.self),
                                chain: ByteReader.getInteger(header, at: 40, as: UInt32.self),
                                ledgerScopedTokens: flags & FormatLimits.flagLedgerScopedTokens != 0, items: [])
        file.formatVersion = version
        file.groupsJournalPositions = version >= FormatLimits.snapshotJournalFormatVersion
        file.storage = .hints(bytes: hints, count: count)
        return .snapshot(file)
    }
}
