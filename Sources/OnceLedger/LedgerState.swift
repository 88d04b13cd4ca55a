import Glibc
import COnceSupport
import OnceLedgerFormat
import OnceLedgerLog

/// The in-memory state of a ledger (`Spec/FORMAT.md` §9.1): one compact `Entry` per
/// key. Changed only by `apply`, which is called for recovered records and snapshot
/// items at open and, live, on the backend's commit thread with the very bytes that
/// were made durable — so it always equals "the log replayed", by construction.
///
/// Layout, chosen for memory per entry and for replay speed (the targets in README
/// "Speed": < 128 bytes per entry plus the key, open 1 M entries in < 1 s):
/// - `entries`: one 40-byte `Entry` per key, densely, in first-seen order;
/// - `keys`: every key's UTF-8 bytes, back to back (a forgotten key stays as an absent
///   entry that remembers its generation, until a compaction drops it and raises the
///   generation floor instead: `dropRetired`, `Spec/FORMAT.md` §9.5);
/// - `blobs`: each entry's [fingerprint (32 bytes, only if nonzero)][receipt, only
///   when it is kept in memory];
/// - a done entry's receipt stays on disk when the record that holds it has a location
///   (`ValueLocation`: a segment record, or a version 3 snapshot's value; Bitcask's
///   keydir): the entry keeps that location, and `receipt(of:)` reads the record back
///   with one `pread` through `reader`, checks it and decodes it with the one body
///   decoder. Records without a location (the in-memory backend, a version 1 or 2
///   snapshot) keep their receipts in `blobs`, as before; the next compaction writes
///   them into a version 3 snapshot and the entries then point there (`relocate`).
/// - `slots`: an open-addressing (linear probing) hash table of
///   `(hash << 32) | (entry index + 1)`, 0 = empty, at most 3/4 full. The hash is
///   Swift's per-process-seeded `Hasher`, so keys chosen by an attacker cannot make
///   the probes long.
/// The tables are `PlainBuffer`s: they grow by half, not double, to bound the slack a
/// 1 M-entry ledger carries, without copying, on huge pages.
///
/// Keys are compared byte for byte (their UTF-8), like the log and the effect token:
/// two strings that Unicode calls canonically equivalent but that are encoded
/// differently are different keys.
struct LedgerState: ~Copyable {
    struct Entry: BitwiseCopyable {
        /// Offset of the key's bytes in `keys`.
        var keyOffset: UInt64
        /// Offset of [fingerprint (32, if any)][receipt] in `blobs`.
        var blobOffset: UInt64
        /// Intent time (pending), completion time (done), or last change (absent).
        var time: UInt64
        var attempt: UInt32
        var generation: UInt32
        var receiptLength: UInt32
        var keyLength: UInt16
        var status: UInt8
        var hasFingerprint: Bool

        /// Where the receipt is: `Entry.inMemory` (in `blobs`), or a `ValueLocation`'s
        /// file, offset and body bytes.
        var valueFile: UInt64
        var valueOffset: UInt64
        var valueBytes: UInt32
        /// The scope of the intent behind the entry (`RecordBody.Scope`: 0 forever, 1 while
        /// in flight, 2 window, its window in `LedgerState.windows`): when compaction may
        /// drop it (`Spec/FORMAT.md` §9.5). In the entry's padding: the size stays 64 bytes.
        var scope: UInt8 = 0

        var blobLength: Int { (hasFingerprint ? 32 : 0) + (isLocated ? 0 : Int(receiptLength)) }
        var isLocated: Bool { valueFile != Entry.inMemory }
        var location: ValueLocation { ValueLocation(file: valueFile, offset: valueOffset, bodyBytes: valueBytes) }

        static let inMemory = UInt64.max
        static let done: UInt8 = 1
        static let pending: UInt8 = 2
        static let absent: UInt8 = 3
    }

    /// How the ledger derives effect tokens, for the `EntryInfo` values handed out.
    var tokenScope: TokenScope = .unscoped
    /// Reads receipts that stay on disk; nil for a backend that gives no locations.
    var reader: RecordReader?
    private var entries = PlainBuffer<Entry>()
    /// Power-of-two count, zeroed; empty until the first key.
    private var slots = PlainBuffer<UInt64>()
    private var keys = PlainBuffer<UInt8>()
    private var blobs = PlainBuffer<UInt8>()
    /// Bytes of `blobs` no entry points at any more (reclaimed by `compactBlobs`).
    private var blobGarbage = 0
    /// The window of each entry whose scope is `.window`, by entry index (few entries have
    /// one, so it is not in `Entry`).
    private var windows: [UInt32: UInt64] = [:]
    /// The generation a key without an entry starts at (`Spec/FORMAT.md` §9.5): raised by
    /// compaction past every dropped entry's generation, never lowered.
    private(set) var generationFloor: UInt32 = 0
    /// Memo, journal and run-terminal records, kept verbatim so snapshots preserve them.
    private(set) var retained: [SnapshotFile.Item] = []
    /// The entries a record changed since a compaction took its items (`beginTracking`),
    /// while its snapshot is written beside later appends; nil when none is in flight.
    /// `relocate` leaves them be: each points at a record after the snapshot, or nowhere.
    private var touched: Set<Int>?
    private var trackingID: UInt64 = 0
    /// The record `replay` holds back (see there), and a copy of its body.
    private var deferred: (kind: RecordKind, fields: RecordBody.Fields, location: ValueLocation?)?
    private var deferredHash: UInt32 = 0
    private var deferredBody = PlainBuffer<UInt8>()

    var count: Int {
        checkReplayFinished()
        return entries.count
    }

    // MARK: Reading

    func key(of entry: Entry) -> String {
        let start = Int(entry.keyOffset)
        // Every stored key was checked to be UTF-8 before it was stored.
        return String(decoding: keys.rawBytes(from: start, count: Int(entry.keyLength)), as: UTF8.self)
    }

    func fingerprint(of entry: Entry) -> [UInt8] {
        guard entry.hasFingerprint else { return IdempotencyKey.noFingerprint }
        let start = Int(entry.blobOffset)
        return Array(blobs.rawBytes(from: start, count: 32))
    }

    /// The receipt of a done entry: from `blobs`, or read from disk (`Entry.location`).
    /// Throws `.corruptRecord` when the bytes there no longer hold this key's receipt.
    func receipt(of entry: Entry) throws -> [UInt8] {
        guard entry.isLocated else {
            let start = Int(entry.blobOffset) + (entry.hasFingerprint ? 32 : 0)
            return Array(blobs.rawBytes(from: start, count: Int(entry.receiptLength)))
        }
        guard let reader else {
            throw LedgerError(.closed, "this ledger has no reader for receipts on disk", key: key(of: entry))
        }
        return try LedgerState.receipt(at: entry.location, key: key(of: entry), reader: reader, file: nil)
    }

    /// Reads the record at `location` (through `file`, a handle taken earlier, or the
    /// reader's) and returns the receipt it holds for `key`: the one body decoder
    /// (`RecordBody.decodeFields`) finds it; a record of another kind or key is damage.
    static func receipt(at location: ValueLocation, key: String, reader: RecordReader,
                        file: (any StorageFile)?, readAhead: ReadAhead? = nil) throws -> [UInt8] {
        let handle = try file ?? reader.handle(for: location.file)
        // The receipt is moved to the front of the buffer the read filled (no second copy).
        return try reader.readPart(location, from: handle, readAhead: readAhead) { kind, raw -> Range<Int> in
            let receipt: Range<Int>?
            let keyRange: Range<Int>?
            switch RecordBody.decodeFields(kind: kind, raw) {
            case .fields(let fields):
                keyRange = fields.key
                switch fields {
                case .completion(_, _, _, let range): receipt = range
                case .resolve(_, .done, _, _, let range, _, _): receipt = range
                case .entryState(_, .done, _, _, _, _, _, let range): receipt = range
                default: receipt = nil
                }
            case .corrupt, .unknownKind:
                keyRange = nil
                receipt = nil
            }
            var expected = key
            let sameKey = keyRange.map { range in
                expected.withUTF8 { utf8 in
                    utf8.count == range.count
                        && (range.isEmpty || memcmp(utf8.baseAddress.unsafelyUnwrapped, raw.baseAddress.unsafelyUnwrapped + range.lowerBound, range.count) == 0)
                }
            } ?? false
            guard let receipt, sameKey else {
                throw LedgerError(.corruptRecord,
                                  "the record at offset \(location.offset) no longer holds the receipt of key \"\(key)\"; run `onceledger verify` and `onceledger salvage`",
                                  path: reader.path(of: location.file), segment: location.isSnapshot ? nil : location.file,
                                  offset: location.offset, key: key)
            }
            return receipt
        }
    }

    /// Receipt bytes held in memory by all entries (tests: a ledger whose records all
    /// have locations holds none).
    var receiptBytesInMemory: Int {
        var total = 0
        for index in 0..<entries.count where !entries[index].isLocated { total += Int(entries[index].receiptLength) }
        return total
    }

    /// Entries whose receipt stays on disk (tests).
    var locatedEntryCount: Int {
        var total = 0
        for index in 0..<entries.count where entries[index].isLocated { total += 1 }
        return total
    }

    /// The entry's info with an empty receipt, and where its receipt is when it stays on
    /// disk (`receipt == []` then until read).
    func infoWithoutReceipt(key: String, entry: Entry) -> EntryInfo {
        let status: EntryInfo.Status = switch entry.status {
        case Entry.done: .done
        case Entry.pending: .pendingUnknown
        default: .absent
        }
        return EntryInfo(key: key, status: status, attempt: entry.attempt, generation: entry.generation,
                         fingerprint: fingerprint(of: entry), timeMilliseconds: entry.time,
                         receipt: [], tokenScope: tokenScope)
    }

    func info(key: String, entry: Entry) throws -> EntryInfo {
        var info = infoWithoutReceipt(key: key, entry: entry)
        if entry.status == Entry.done { info.receipt = try receipt(of: entry) }
        return info
    }

    func info(_ key: String) throws -> EntryInfo? {
        try lookup(key).map { try $0.finish() }
    }

    /// A looked-up entry whose receipt may still have to be read: `finish()` reads it,
    /// outside the lock that guards the state if the caller likes. It holds the file's
    /// handle, so a compaction that removes the file meanwhile does not stop the read.
    struct Lookup {
        var info: EntryInfo
        var onDisk: (location: ValueLocation, reader: RecordReader, file: any StorageFile)?

        func finish() throws -> EntryInfo {
            guard let onDisk else { return info }
            var info = info
            info.receipt = try LedgerState.receipt(at: onDisk.location, key: info.key, reader: onDisk.reader,
                                                   file: onDisk.file)
            return info
        }
    }

    /// `key`'s entry without its receipt (`receipt == []`): what a claim decides on,
    /// read from memory only.
    func metadata(_ key: String) -> EntryInfo? {
        checkReplayFinished()
        var key = key
        let index = key.withUTF8 { utf8 in
            let raw = UnsafeRawBufferPointer(utf8)
            return find(raw, hash: LedgerState.hash(raw)).index
        }
        return index.map { infoWithoutReceipt(key: key, entry: entries[$0]) }
    }

    /// Every entry without its receipt, sorted by key bytes; optionally only one status.
    func metadataList(status: EntryInfo.Status?) -> [EntryInfo] {
        sortedIndices().compactMap { index in
            let entry = entries[index]
            let info = infoWithoutReceipt(key: key(of: entry), entry: entry)
            return status == nil || info.status == status ? info : nil
        }
    }

    /// `key`'s entry, with its receipt if it is in memory, else where to read it.
    func lookup(_ key: String) throws -> Lookup? {
        checkReplayFinished()
        var key = key
        let index = key.withUTF8 { utf8 in
            let raw = UnsafeRawBufferPointer(utf8)
            return find(raw, hash: LedgerState.hash(raw)).index
        }
        guard let index else { return nil }
        let entry = entries[index]
        guard entry.status == Entry.done else { return Lookup(info: infoWithoutReceipt(key: key, entry: entry)) }
        guard entry.isLocated, let reader else { return Lookup(info: try info(key: key, entry: entry)) }
        return Lookup(info: infoWithoutReceipt(key: key, entry: entry),
                      onDisk: (entry.location, reader, try reader.handle(for: entry.valueFile)))
    }

    /// Entry indices ordered by key bytes (for listings and snapshots).
    func sortedIndices() -> [Int] {
        checkReplayFinished()
        var order = Array(0..<entries.count)
        guard let keyBytes = keys.base, let entries = entries.base else { return order }
        order.sort { a, b in
            let x = entries[a], y = entries[b]
            let common = Int(min(x.keyLength, y.keyLength))
            let order = memcmp(keyBytes + Int(x.keyOffset), keyBytes + Int(y.keyOffset), common)
            return order != 0 ? order < 0 : x.keyLength < y.keyLength
        }
        return order
    }

    /// Every entry, sorted by key bytes; optionally only those of one status.
    func infos(status: EntryInfo.Status?) throws -> [EntryInfo] {
        try sortedIndices().compactMap { index in
            let entry = entries[index]
            let info = infoWithoutReceipt(key: key(of: entry), entry: entry)
            guard status == nil || info.status == status else { return nil }
            return try self.info(key: info.key, entry: entry)
        }
    }

    // MARK: The table

    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var hasher = Hasher()
        hasher.combine(bytes: bytes)
        let value = UInt64(UInt(bitPattern: hasher.finalize()))
        return UInt32(truncatingIfNeeded: value ^ (value >> 32))
    }

    /// The entry holding `key`, or the empty slot where it would go.
    private func find(_ key: UnsafeRawBufferPointer, hash: UInt32) -> (index: Int?, slot: Int) {
        guard let values = slots.base else { return (nil, -1) }
        let mask = slots.count - 1
        var slot = Int(hash) & mask
        while true {
            let value = values[slot]
            if value == 0 { return (nil, slot) }
            if UInt32(truncatingIfNeeded: value >> 32) == hash {
                let index = Int(UInt32(truncatingIfNeeded: value)) - 1
                if keyEquals(entries[index], key) { return (index, slot) }
            }
            slot = (slot + 1) & mask
        }
    }

    private func keyEquals(_ entry: Entry, _ key: UnsafeRawBufferPointer) -> Bool {
        guard Int(entry.keyLength) == key.count else { return false }
        guard let base = key.baseAddress else { return true }
        return memcmp(keys.base.unsafelyUnwrapped + Int(entry.keyOffset), base, key.count) == 0
    }

    /// The index of `key`'s entry (`hash` is its hash), inserting an absent one
    /// (attempt 0, generation `generationFloor`) the first time the key is seen. `key` is nonempty, at
    /// most `FormatLimits.keyBytesMax` bytes and valid UTF-8 (the body decoder checks).
    private mutating func entryIndex(_ key: UnsafeRawBufferPointer, hash: UInt32) -> Int {
        var (found, slot) = find(key, hash: hash)
        if let found { return found }
        if (entries.count + 1) * 4 > slots.count * 3 {
            growSlots()
            slot = find(key, hash: hash).slot
        }
        let index = entries.count
        // 4 G keys would need far more memory than any machine this runs on has.
        precondition(index < Int(UInt32.max) - 1, "more than 4 G keys")
        entries.append(Entry(keyOffset: UInt64(keys.count), blobOffset: 0, time: 0, attempt: 0, generation: generationFloor,
                             receiptLength: 0, keyLength: UInt16(key.count), status: Entry.absent,
                             hasFingerprint: false, valueFile: Entry.inMemory, valueOffset: 0, valueBytes: 0))
        keys.append(contentsOf: key)
        slots[slot] = UInt64(hash) << 32 | UInt64(index + 1)
        return index
    }

    /// Sizes the tables for `count` keys in all (a snapshot says how many items it
    /// holds), so a large replay does not grow and rehash them step by step. Key and
    /// blob bytes still grow as they come. Only a hint: more keys than this still fit,
    /// and when the memory for it is not there (a snapshot's items need not all be
    /// keys) nothing is reserved and the tables grow as usual.
    mutating func reserve(entries count: Int) {
        guard count > entries.count, count < Int(UInt32.max) else { return }
        guard entries.reserveIfAvailable(adding: count - entries.count) else { return }
        if count * 4 > slots.count * 3 {
            var size = max(1024, slots.count * 2)
            while size * 3 < count * 4 { size *= 2 }
            if let fresh = PlainBuffer<UInt64>(zeroedIfAvailable: size) { rehash(into: fresh) }
        }
    }

    /// Doubles the slot table (at least 1024 slots).
    private mutating func growSlots() {
        rehash(into: PlainBuffer<UInt64>(zeroed: max(1024, slots.count * 2)))
    }

    /// Reinserts every slot into `fresh` (zeroed, a power of two, larger) and keeps it.
    private mutating func rehash(into fresh: consuming PlainBuffer<UInt64>) {
        let mask = fresh.count - 1
        for old in 0..<slots.count {
            let value = slots[old]
            guard value != 0 else { continue }
            var slot = Int(UInt32(truncatingIfNeeded: value >> 32)) & mask
            while fresh[slot] != 0 { slot = (slot + 1) & mask }
            fresh[slot] = value
        }
        slots = fresh
    }

    // MARK: Applying records

    private enum Fingerprint {
        case none
        case keep
        case bytes(UnsafeRawBufferPointer)
    }

    /// Sets entry `index` to the given state and blob ([fingerprint][receipt]); a
    /// nonempty receipt whose record has a `location` stays on disk (only the location
    /// is kept).
    private mutating func store(
        _ index: Int, status: UInt8, attempt: UInt32, generation: UInt32, fingerprint: Fingerprint,
        receipt fullReceipt: UnsafeRawBufferPointer, time: UInt64, location: ValueLocation? = nil
    ) {
        var entry = entries[index]
        // A snapshot hint's body has an empty receipt: its value is always on disk.
        let located = fullReceipt.count > 0 || location?.isSnapshot == true ? location : nil
        let receipt = located == nil ? fullReceipt : LedgerState.empty
        let oldOffset = Int(entry.blobOffset)
        let oldLength = entry.blobLength
        let hasFingerprint: Bool = switch fingerprint {
        case .none: false
        case .keep: entry.hasFingerprint
        case .bytes(let bytes): bytes.count == 32 && bytes.contains { $0 != 0 }
        }
        let newLength = (hasFingerprint ? 32 : 0) + receipt.count
        let target: Int
        if newLength <= oldLength {
            target = oldOffset
            blobGarbage += oldLength - newLength
        } else {
            blobGarbage += oldLength
            target = blobs.appendZeros(newLength)
        }
        if newLength > 0 {
            let blob = blobs.mutableRawBytes(from: target, count: newLength)
            var at = 0
            if hasFingerprint {
                switch fingerprint {
                case .bytes(let bytes):
                    UnsafeMutableRawBufferPointer(rebasing: blob[0..<32]).copyMemory(from: bytes)
                case .keep where target != oldOffset:
                    // The old blob and the new one do not overlap (the new one is past the end).
                    blob.baseAddress.unsafelyUnwrapped.copyMemory(
                        from: blobs.rawBytes(from: oldOffset, count: 32).baseAddress.unsafelyUnwrapped, byteCount: 32)
                default:
                    break
                }
                at = 32
            }
            if receipt.count > 0 {
                UnsafeMutableRawBufferPointer(rebasing: blob[at..<(at + receipt.count)]).copyMemory(from: receipt)
            }
        }
        entry.blobOffset = UInt64(newLength > 0 ? target : 0)
        entry.receiptLength = UInt32(fullReceipt.count)
        entry.valueFile = located?.file ?? Entry.inMemory
        entry.valueOffset = located?.offset ?? 0
        entry.valueBytes = located?.bodyBytes ?? 0
        entry.hasFingerprint = hasFingerprint
        entry.status = status
        entry.attempt = attempt
        entry.generation = generation
        entry.time = time
        entries[index] = entry
        touched?.insert(index)
        if blobGarbage > (1 << 20) && blobGarbage > blobs.count / 2 { compactBlobs() }
    }

    private mutating func compactBlobs() {
        var fresh = PlainBuffer<UInt8>()
        fresh.reserve(adding: blobs.count - blobGarbage)
        for index in 0..<entries.count {
            let length = entries[index].blobLength
            guard length > 0 else { continue }
            let start = Int(entries[index].blobOffset)
            entries[index].blobOffset = UInt64(fresh.count)
            fresh.append(contentsOf: blobs.rawBytes(from: start, count: length))
        }
        blobs = fresh
        blobGarbage = 0
    }

    private static var empty: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: nil, count: 0) }

    /// Applies one durable record (or snapshot item) given as its encoded body — the
    /// only way the state changes. Throws `.malformedBody` for a body that does not
    /// decode and `.unsupportedVersion` for an unknown kind: on open that refuses the
    /// ledger, naming the kind (`Spec/FORMAT.md` §9.1).
    ///
    /// The body is read in place by `RecordBody.decodeFields`, the one body decoder
    /// (the one the fuzzer runs): keys, fingerprints and receipts are copied straight
    /// from the body into the tables.
    ///
    /// `location` is where the record is on disk, if it is: a receipt it holds then stays
    /// there.
    mutating func apply(kind: RecordKind, body: UnsafeRawBufferPointer, location: ValueLocation? = nil) throws {
        finishReplay()
        let fields = try LedgerState.fields(kind: kind, body)
        let hash = fields.key.map { LedgerState.hash(UnsafeRawBufferPointer(rebasing: body[$0])) } ?? 0
        apply(fields, kind: kind, body, hash: hash, location: location)
    }

    /// `apply`, for a replay (many records in a row): a record with a key is checked
    /// and its key hashed now, and the cache line of its hash-table slot is requested,
    /// but it is applied on the next call — by then that line has arrived, instead of
    /// the replay stalling on one memory access per key. Call `finishReplay()` after
    /// the last record; every reader checks that it was called.
    mutating func replay(kind: RecordKind, body: UnsafeRawBufferPointer, location: ValueLocation? = nil) throws {
        let decoded = try LedgerState.decodeForReplay(kind: kind, body, location: location)
        guard decoded.fields.key != nil else {
            finishReplay()
            apply(decoded.fields, kind: kind, body, hash: decoded.hash, location: decoded.location)
            return
        }
        prefetch(hash: decoded.hash)
        finishReplay()
        deferredBody.removeAll()
        deferredBody.append(contentsOf: body)
        deferred = (kind, decoded.fields, decoded.location)
        deferredHash = decoded.hash
    }

    /// A record as a replay applies it: its fields, checked; its key's hash (0 without a
    /// key); and the location it applies with (none for a kind without a key).
    struct ReplayRecord {
        var fields: RecordBody.Fields
        var hash: UInt32
        var location: ValueLocation?
    }

    /// Decodes a record for a replay (`replay`, and the open's `LoadPipeline`, which applies
    /// it on another thread with `applyDecoded`). Throws what `fields` throws.
    static func decodeForReplay(kind: RecordKind, _ body: UnsafeRawBufferPointer,
                                location: ValueLocation?) throws -> ReplayRecord {
        let fields = try LedgerState.fields(kind: kind, body)
        guard let key = fields.key else { return ReplayRecord(fields: fields, hash: 0, location: nil) }
        return ReplayRecord(fields: fields, hash: LedgerState.hash(UnsafeRawBufferPointer(rebasing: body[key])),
                            location: location)
    }

    /// Applies the record `replay` held back, if any.
    mutating func finishReplay() {
        guard let (kind, fields, location) = deferred else { return }
        deferred = nil
        apply(fields, kind: kind, deferredBody.rawBytes(from: 0, count: deferredBody.count), hash: deferredHash,
              location: location)
    }

    /// Readers call this: reading with a record held back would miss that record.
    private func checkReplayFinished() {
        precondition(deferred == nil, "LedgerState read before finishReplay()")
    }

    /// Applies a record `decodeForReplay` decoded, given its body bytes: the open's second
    /// thread (`LoadPipeline`), after the scanning thread decoded it. Cannot fail.
    mutating func applyDecoded(_ record: ReplayRecord, kind: RecordKind, _ body: UnsafeRawBufferPointer) {
        finishReplay()
        apply(record.fields, kind: kind, body, hash: record.hash, location: record.location)
    }

    /// Requests the cache line of the hash-table slot of `hash` (a hint; any value is safe).
    func prefetch(hash: UInt32) {
        if let values = slots.base { ol_prefetch(values + (Int(hash) & (slots.count - 1))) }
    }

    /// A body's fields, checked (`RecordBody.decodeFields`); `.malformedBody` or
    /// `.unsupportedVersion` for one that does not decode.
    static func fields(kind: RecordKind, _ body: UnsafeRawBufferPointer) throws -> RecordBody.Fields {
        switch RecordBody.decodeFields(kind: kind, body) {
        case .fields(let fields): return fields
        case .corrupt(let reason): throw LedgerError(.malformedBody, reason)
        case .unknownKind(let unknown):
            throw LedgerError(.unsupportedVersion, "record kind \(unknown.rawValue) is not known to this build")
        }
    }

    mutating func apply(kind: RecordKind, body: [UInt8], location: ValueLocation? = nil) throws {
        try body.withUnsafeBytes { try apply(kind: kind, body: $0, location: location) }
    }

    /// The state rules of `Spec/FORMAT.md` §9.1 for a decoded body. `hash` is the hash
    /// of the key, for kinds that have one; `kind` matters only for kinds without one.
    private mutating func apply(
        _ fields: RecordBody.Fields, kind: RecordKind, _ body: UnsafeRawBufferPointer, hash: UInt32,
        location: ValueLocation?
    ) {
        func bytes(_ range: Range<Int>) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: body[range]) }
        func index(_ key: Range<Int>) -> Int { entryIndex(bytes(key), hash: hash) }
        switch fields {
        case let .intent(key, fingerprint, attempt, generation, scope, window, time):
            let index = index(key)
            store(index, status: Entry.pending, attempt: attempt, generation: generation,
                  fingerprint: .bytes(bytes(fingerprint)), receipt: LedgerState.empty, time: time)
            setScope(index, scope, window: window)
        case let .completion(key, attempt, time, receipt):
            complete(index(key), attempt: attempt, receipt: bytes(receipt), time: time, location: location)
        case let .release(key, attempt, time, _):
            let index = index(key)
            let old = entries[index]
            store(index, status: Entry.absent, attempt: max(attempt, old.attempt), generation: old.generation,
                  fingerprint: .none, receipt: LedgerState.empty, time: time)
        case let .resolve(key, outcome, attempt, time, receipt, _, _):
            let index = index(key)
            let old = entries[index]
            let done = outcome == .done
            store(index, status: done ? Entry.done : Entry.absent, attempt: max(attempt, old.attempt),
                  generation: old.generation, fingerprint: done ? .keep : .none,
                  receipt: done ? bytes(receipt) : LedgerState.empty, time: time, location: location)
        case let .forget(key, time, _, _):
            let index = index(key)
            let old = entries[index]
            // At 2^32 - 1 the generation stays (no writer forgets such an entry; a claim of an
            // absent entry there is refused, `LogStore.claim`): never wrapped to a used one.
            store(index, status: Entry.absent, attempt: old.attempt,
                  generation: old.generation == UInt32.max ? old.generation : old.generation + 1,
                  fingerprint: .none, receipt: LedgerState.empty, time: time)
        case let .entryState(key, status, attempt, generation, fingerprint, intentTime, completedTime, receipt):
            let index = index(key)
            restore(index, status: status.rawValue, attempt: attempt, generation: generation,
                    fingerprint: bytes(fingerprint), intentTime: intentTime, completedTime: completedTime,
                    receipt: bytes(receipt), location: location)
            // Its scope, if not forever, follows as an entry-retention item (§5.20).
            setScope(index, .forever, window: 0)
        case let .entryRetention(key, scope, window):
            setScope(index(key), scope, window: window)
        case .generationFloor(let floor):
            generationFloor = max(generationFloor, floor)
        case .memoPut, .journalEntry, .runTerminal:
            // Kept verbatim: a decoded body is its one encoding (`Spec/FORMAT.md` §5).
            retained.append(SnapshotFile.Item(kind: kind, body: Array(body)))
        case .snapshotMarker, .checkpoint, .seal, .opaque, .memoEntry, .runEnd, .memoSweep:
            // The memo kinds are the memo table's (`MemoTable`); LogStore never passes them here.
            break
        }
    }

    /// Records the scope of the intent behind entry `index` (`Entry.scope`).
    private mutating func setScope(_ index: Int, _ scope: RecordBody.Scope, window: UInt64) {
        entries[index].scope = scope.rawValue
        if scope == .window { windows[UInt32(index)] = window } else if !windows.isEmpty { windows[UInt32(index)] = nil }
    }

    /// Completion (kind 2): done; attempt max(old, record's); generation and fingerprint kept.
    private mutating func complete(_ index: Int, attempt: UInt32, receipt: UnsafeRawBufferPointer, time: UInt64,
                                   location: ValueLocation?) {
        let old = entries[index]
        store(index, status: Entry.done, attempt: max(attempt, old.attempt), generation: old.generation,
              fingerprint: .keep, receipt: receipt, time: time, location: location)
    }

    /// Entry state (kind 11): as stored. `status` is 1 done, 2 pending or 3 absent.
    private mutating func restore(
        _ index: Int, status: UInt8, attempt: UInt32, generation: UInt32, fingerprint: UnsafeRawBufferPointer,
        intentTime: UInt64, completedTime: UInt64, receipt: UnsafeRawBufferPointer, location: ValueLocation?
    ) {
        let done = status == RecordBody.EntryStatus.done.rawValue
        let stateStatus: UInt8 = switch status {
        case RecordBody.EntryStatus.done.rawValue: Entry.done
        case RecordBody.EntryStatus.pending.rawValue: Entry.pending
        default: Entry.absent
        }
        store(index, status: stateStatus, attempt: attempt, generation: generation, fingerprint: .bytes(fingerprint),
              receipt: receipt, time: done ? completedTime : intentTime, location: done ? location : nil)
    }

    // MARK: Snapshots

    /// The live state as snapshot items (`Spec/FORMAT.md` §6.2, §9.1), sorted by key bytes.
    /// Receipts that stay on disk are read (and checked) here: a damaged one fails the
    /// compaction rather than being carried into the snapshot.
    func snapshotItems() throws -> [SnapshotFile.Item] {
        try snapshotItemsInOrder().items
    }

    /// `snapshotItems`, and the entry index of each of the first `order.count` items
    /// (the rest are the retention items and `retained`), for `relocate`.
    func snapshotItemsInOrder() throws -> (items: [SnapshotFile.Item], order: [Int]) {
        var items: [SnapshotFile.Item] = []
        items.reserveCapacity(entries.count + retained.count)
        let order = sortedIndices()
        for index in order {
            let entry = entries[index]
            let status: RecordBody.EntryStatus = switch entry.status {
            case Entry.done: .done
            case Entry.pending: .pending
            default: .absent
            }
            let body = RecordBody.entryState(.init(
                key: key(of: entry), status: status, attempt: entry.attempt, generation: entry.generation,
                fingerprint: fingerprint(of: entry),
                intentTimeMilliseconds: status == .done ? 0 : entry.time,
                completedTimeMilliseconds: status == .done ? entry.time : 0,
                receipt: status == .done ? try receipt(of: entry) : []))
            items.append(SnapshotFile.Item(kind: .entryState, body: body.encode()))
        }
        items += retentionItems(order: order).map { SnapshotFile.Item(kind: $0.kind, body: $0.encode()) }
        items.append(contentsOf: retained)
        return (items, order)
    }

    // MARK: Retention (`Spec/FORMAT.md` §9.5)

    /// What a compaction asks to drop: entries that no longer block anything at `now` (the
    /// ledger's clock), except the keys in `live` (a claim or an operator act in flight).
    struct Retention {
        var nowMilliseconds: UInt64
        var live: Set<KeyBytes>
        /// Whether the memo run generation a journal effect's key names (`Spec/FORMAT.md`
        /// §10.3) has been swept: its done entry is then dropped too (§9.5; an absent one is
        /// dropped anyway). Nil: no done effect entry is dropped for it.
        var journalGenerationSwept: ((UInt64) -> Bool)? = nil
    }

    /// The entries a compaction drops, and the generation floor its snapshot records.
    struct RetentionPlan: Sendable {
        /// Entry indices, ascending.
        var dropped: [Int] = []
        /// max(the floor now, every dropped entry's generation + 1).
        var floor: UInt32
    }

    /// Whether `entry` (at `index`) blocks nothing at `now` and may be dropped, once its
    /// generation is below the floor (§9.5): absent (released, resolved absent,
    /// forgotten); done with scope while-in-flight; done with scope window whose window
    /// has passed at `now` (a clock behind the completion passes no window). Never a
    /// pending entry, a done one of scope forever (or restored without a scope), or one
    /// whose next generation would not fit in 32 bits.
    private func isRetired(_ entry: Entry, index: Int, now: UInt64) -> Bool {
        guard entry.generation < UInt32.max else { return false }
        switch entry.status {
        case Entry.absent:
            return true
        case Entry.done:
            switch entry.scope {
            case RecordBody.Scope.whileInFlight.rawValue:
                return true
            case RecordBody.Scope.window.rawValue:
                guard let window = windows[UInt32(index)] else { return false }
                let (end, overflow) = entry.time.addingReportingOverflow(window)
                return !overflow && now >= end
            default:
                return false
            }
        default:
            return false
        }
    }

    /// Whether `entry` is a done journal effect's (any scope; the journal's are forever) whose
    /// run generation was swept (§9.5): its key is `onceledger.journal/g<N>/…` (§10.3) with `N` decimal, without
    /// leading zeros, and `swept(N)`. Generation numbers are never handed out twice, so no
    /// journal computes that key again. Never a pending entry.
    private func isSweptJournalEffect(_ entry: Entry, _ swept: ((UInt64) -> Bool)?) -> Bool {
        guard let swept, entry.status == Entry.done, entry.generation < UInt32.max,
              let generation = LedgerState.journalEffectGeneration(
                keys.rawBytes(from: Int(entry.keyOffset), count: Int(entry.keyLength)))
        else { return false }
        return swept(generation)
    }

    /// The run generation `N` of a key `onceledger.journal/g<N>/…` (`N` decimal, 1–20 digits,
    /// no leading zero, from 1 to 2⁶⁴ − 1), else nil.
    static func journalEffectGeneration(_ key: UnsafeRawBufferPointer) -> UInt64? {
        let prefix = journalEffectKeyPrefix
        guard key.count > prefix.count + 1, key.starts(with: prefix) else { return nil }
        var generation: UInt64 = 0
        var digits = 0
        for index in prefix.count..<key.count {
            let byte = key[index]
            if byte == UInt8(ascii: "/") {
                // Generation numbers start at 1 (§9.4).
                return digits > 0 && generation > 0 ? generation : nil
            }
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9"),
                  !(digits == 1 && generation == 0) else { return nil }
            let (times, overflowTimes) = generation.multipliedReportingOverflow(by: 10)
            let (sum, overflowSum) = times.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
            guard !overflowTimes, !overflowSum else { return nil }
            generation = sum
            digits += 1
        }
        return nil
    }

    static let journalEffectKeyPrefix = Array("onceledger.journal/g".utf8)

    /// The items that follow the entry states: an entry-retention item (§5.20) for each
    /// written entry that is pending or done with a scope other than forever, then the
    /// generation floor (§5.19) if it is above 0.
    private func retentionItems(order: [Int]) -> [RecordBody] {
        var items: [RecordBody] = []
        for index in order {
            let entry = entries[index]
            guard entry.status != Entry.absent, entry.scope != RecordBody.Scope.forever.rawValue,
                  let scope = RecordBody.Scope(rawValue: entry.scope) else { continue }
            items.append(.entryRetention(.init(key: key(of: entry), scope: scope,
                                               windowMilliseconds: scope == .window ? windows[UInt32(index)] ?? 0 : 0)))
        }
        if generationFloor > 0 { items.append(.generationFloor(floor: generationFloor)) }
        return items
    }

    /// The entries a compaction at `retention`'s now drops (`isRetired`, keys without a
    /// live claim or operator act), in index order, and the floor past them; without
    /// `retention` none. No key order is computed.
    func retiredPlan(_ retention: Retention?) -> RetentionPlan {
        var plan = RetentionPlan(floor: generationFloor)
        guard let retention else { return plan }
        for index in 0..<entries.count {
            let entry = entries[index]
            if (isRetired(entry, index: index, now: retention.nowMilliseconds)
                || isSweptJournalEffect(entry, retention.journalGenerationSwept))
                && (retention.live.isEmpty || !retention.live.contains(KeyBytes(key(of: entry)))) {
                plan.dropped.append(index)
                plan.floor = max(plan.floor, entry.generation + 1)
            }
        }
        return plan
    }

    /// Drops the entries `plan` names and raises the floor to the one it records. A
    /// compaction calls it as it takes its items (`LogStore.compact`), before any later
    /// record is applied, and its snapshot records the same drop and floor, so the state
    /// is "the log replayed" once that snapshot is installed: a record applied meanwhile
    /// to a dropped key was decided on the state without it (a claim gets the floor's
    /// generation, which its intent carries), just as its replay after the snapshot is.
    /// The tables are rebuilt without the dropped keys.
    mutating func dropRetired(_ plan: RetentionPlan) {
        checkReplayFinished()
        generationFloor = max(generationFloor, plan.floor)
        guard !plan.dropped.isEmpty else { return }
        var keep = [Bool](repeating: true, count: entries.count)
        for index in plan.dropped where index < keep.count { keep[index] = false }
        var freshEntries = PlainBuffer<Entry>()
        freshEntries.reserve(adding: entries.count - plan.dropped.count)
        var freshKeys = PlainBuffer<UInt8>()
        var freshBlobs = PlainBuffer<UInt8>()
        var freshWindows: [UInt32: UInt64] = [:]
        for index in 0..<entries.count where keep[index] {
            var entry = entries[index]
            if let window = windows[UInt32(index)] { freshWindows[UInt32(freshEntries.count)] = window }
            let keyStart = freshKeys.count
            freshKeys.append(contentsOf: keys.rawBytes(from: Int(entry.keyOffset), count: Int(entry.keyLength)))
            entry.keyOffset = UInt64(keyStart)
            let length = entry.blobLength
            if length > 0 {
                let blobStart = freshBlobs.count
                freshBlobs.append(contentsOf: blobs.rawBytes(from: Int(entry.blobOffset), count: length))
                entry.blobOffset = UInt64(blobStart)
            } else {
                entry.blobOffset = 0
            }
            freshEntries.append(entry)
        }
        entries = freshEntries
        keys = freshKeys
        blobs = freshBlobs
        blobGarbage = 0
        windows = freshWindows
        var size = 0
        if entries.count > 0 {
            size = 1024
            while size * 3 < entries.count * 4 { size *= 2 }
        }
        var fresh = PlainBuffer<UInt64>(zeroed: size)
        let mask = size - 1
        for index in 0..<entries.count {
            let entry = entries[index]
            let hash = LedgerState.hash(keys.rawBytes(from: Int(entry.keyOffset), count: Int(entry.keyLength)))
            var slot = Int(hash) & mask
            while fresh[slot] != 0 { slot = (slot + 1) & mask }
            fresh[slot] = UInt64(hash) << 32 | UInt64(index + 1)
        }
        slots = fresh
    }

    /// A copy of the state a compaction's snapshot is made from, for another thread: the
    /// entries, keys and blobs copied (one `memcpy` each: ~30 ms per million entries, so
    /// appends wait for that and not for the items' encoding), no hash table (the copy is
    /// only read in entry order: `compactionSource`, `snapshotByteBound`).
    func frozenCopy() -> LedgerState {
        checkReplayFinished()
        var copy = LedgerState()
        copy.tokenScope = tokenScope
        copy.reader = reader
        copy.entries = entries.copy()
        copy.keys = keys.copy()
        copy.blobs = blobs.copy()
        copy.windows = windows
        copy.generationFloor = generationFloor
        copy.retained = retained
        return copy
    }

    /// At least the bytes `compactionSource()`'s items take in a snapshot (hints and value
    /// frames), from each entry's lengths alone: every entry counted with a value and an
    /// entry-retention item; and at least how many items it makes. For the rollover rule
    /// (`Spec/FORMAT.md` §8), before the items are encoded.
    func snapshotByteBound() -> (bytes: Int, items: Int) {
        let align = FormatLimits.recordAlignment
        // An entry-state body less its receipt (§5.13): key length u16, status, attempt,
        // generation, fingerprint, two times, receipt length; an entry retention (§5.20).
        let stateFixed = 2 + 1 + 4 + 4 + 32 + 8 + 8 + 4
        let retentionFixed = 2 + 1 + 3 + 8
        var total = SnapshotFile.hintHeaderBytes + 8
        for index in 0..<entries.count {
            let entry = entries[index]
            let key = Int(entry.keyLength)
            let receipt = max(Int(entry.receiptLength), Int(entry.valueBytes))
            total += SnapshotFile.hintHeaderBytes + Alignment.roundUp(stateFixed + key, to: align)
            total += SnapshotFile.valueHeaderBytes + Alignment.roundUp(stateFixed + key + receipt, to: align)
            total += SnapshotFile.hintHeaderBytes + Alignment.roundUp(retentionFixed + key, to: align)
        }
        for item in retained {
            total += SnapshotFile.hintHeaderBytes + SnapshotFile.valueHeaderBytes
                + 2 * Alignment.roundUp(item.body.count, to: align)
        }
        return (total, 2 * entries.count + 1 + retained.count)
    }

    /// The live state as a compaction streams it (`LogWriter.CompactionSource`): the
    /// same items as `snapshotItemsInOrder`, in the same order, but a receipt that stays on
    /// disk is not read here — its item is the entry with an empty receipt and the
    /// receipt's length (`.receiptLater`), and `receipt(index)` reads it later, while the
    /// snapshot is written, through a handle pinned now (so the file may be removed
    /// meanwhile), checked like `receipt(of:)`: a damaged one fails the compaction. A
    /// compaction calls this on a copy (`frozenCopy`) on the snapshot's thread.
    /// Memory: the metadata only (no receipt on disk is read into it). Retention is applied
    /// before (`retiredPlan`, `dropRetired`): every entry is written, with the floor.
    func compactionSource() throws -> (source: LogWriter.CompactionSource, order: [Int]) {
        var items: [SnapshotFile.StreamItem] = []
        items.reserveCapacity(entries.count + retained.count)
        var onDisk: [(location: ValueLocation, key: String)?] = []
        onDisk.reserveCapacity(entries.count + retained.count)
        var handles: [UInt64: any StorageFile] = [:]
        let order = sortedIndices()
        for index in order {
            let entry = entries[index]
            let status: RecordBody.EntryStatus = switch entry.status {
            case Entry.done: .done
            case Entry.pending: .pending
            default: .absent
            }
            let located = status == .done && entry.isLocated && reader != nil
            let body = RecordBody.entryState(.init(
                key: key(of: entry), status: status, attempt: entry.attempt, generation: entry.generation,
                fingerprint: fingerprint(of: entry),
                intentTimeMilliseconds: status == .done ? 0 : entry.time,
                completedTimeMilliseconds: status == .done ? entry.time : 0,
                receipt: status == .done && !located ? try receipt(of: entry) : []))
            onDisk.append(located ? (entry.location, key(of: entry)) : nil)
            if located, let reader {
                if handles[entry.valueFile] == nil { handles[entry.valueFile] = try reader.handle(for: entry.valueFile) }
                let hint = body.encode()
                // An entry opened from a snapshot's hint knows its value's length, not its
                // receipt's: the value is the hint's body with the receipt (§6.7).
                var receiptBytes = entry.receiptLength
                if entry.location.isSnapshot {
                    guard entry.location.bodyBytes >= UInt32(hint.count) else {
                        throw LedgerError(.corruptRecord,
                                          "the snapshot value of key \"\(key(of: entry))\" is shorter than its entry; run `onceledger verify`",
                                          path: reader.path(of: entry.valueFile), key: key(of: entry))
                    }
                    receiptBytes = entry.location.bodyBytes - UInt32(hint.count)
                }
                items.append(.receiptLater(.entryState, hint: hint, receiptBytes: receiptBytes))
            } else {
                items.append(.whole(.entryState, body.encode()))
            }
        }
        items += retentionItems(order: order).map { .whole($0.kind, $0.encode()) }
        items.append(contentsOf: retained.map { .whole($0.kind, $0.body) })
        let reader = self.reader
        // The receipts come in item order: those of a snapshot in the order it wrote them.
        let readAhead = ReadAhead()
        let source = LogWriter.CompactionSource(items: items, receipt: { [onDisk, handles] index in
            guard index < onDisk.count, let (location, key) = onDisk[index], let reader else {
                throw LedgerError(.invalidArgument, "snapshot item \(index) has no receipt on disk")
            }
            return try LedgerState.receipt(at: location, key: key, reader: reader, file: handles[location.file],
                                           readAhead: readAhead)
        })
        return (source, order)
    }

    /// Starts recording which entries later records change (`touched`), as a compaction
    /// takes its items; returns the id `relocate` and `endTracking` are called with.
    mutating func beginTracking() -> UInt64 {
        trackingID &+= 1
        touched = []
        return trackingID
    }

    /// Stops the recording `beginTracking` returned `id` for (a later one's is left alone).
    mutating func endTracking(_ id: UInt64) {
        if id == trackingID { touched = nil }
    }

    /// After a compaction wrote `snapshotItemsInOrder()`'s items: entry `order[i]`'s
    /// receipt is now at `locations[i]` (nil: none there, the entry is kept as it is).
    /// Receipts that were in memory move to disk here, and `blobs` shrinks. Entries that
    /// a record changed since the items were taken (`beginTracking`'s `id`: the snapshot
    /// is written while appends go on) stay as they are: they hold a later receipt, or
    /// none. Entry indices do not change in between (only `dropRetired` moves them, and it
    /// runs as the items are taken).
    ///
    /// `range`: the positions in `order` to move in this call (the caller takes the lock
    /// once per range, so later records are applied between ranges, and
    /// `compactBlobsIfWasteful` runs after the last).
    mutating func relocate(order: [Int], locations: ArraySlice<ValueLocation?>, range: Range<Int>,
                           tracking id: UInt64?) {
        guard reader != nil else { return }
        let changed = id == trackingID ? touched : nil
        let end = min(range.upperBound, order.count, locations.count)
        guard range.lowerBound < end else { return }
        for position in range.lowerBound..<end {
            let index = order[position]
            guard let location = locations[locations.startIndex + position], index < entries.count,
                  entries[index].status == Entry.done
            else { continue }
            if let changed, changed.contains(index) { continue }
            var entry = entries[index]
            if !entry.isLocated {
                blobGarbage += Int(entry.receiptLength)
                // The fingerprint stays where it is; the receipt after it becomes garbage.
            }
            entry.valueFile = location.file
            entry.valueOffset = location.offset
            entry.valueBytes = location.bodyBytes
            entries[index] = entry
        }
    }

    /// Drops the receipts that moved to disk from `blobs` once they are most of it.
    mutating func compactBlobsIfWasteful() {
        if blobGarbage > (1 << 20) && blobGarbage > blobs.count / 2 { compactBlobs() }
    }
}
