import OnceLedgerFormat
import OnceLedgerLog

/// The memo's state (`Spec/FORMAT.md` §9.4), kept apart from the entries of `once`
/// (`LedgerState`): per (namespace, run) its latest generation; per run generation how it
/// ended; per (run generation, step, name) the input digest and the value. Changed only by
/// `apply`, with the very bytes the log made durable (at open, and live by `LogStore`), so
/// it always equals "the memo records replayed". Keys compare byte for byte (their UTF-8).
///
/// Values stay on disk like receipts (`LedgerState`): a memo entry whose record has a
/// location (the file log: a segment record, or a version 3 snapshot's value) keeps only
/// that location and its length, and a read fetches the record with one `pread` through
/// `reader`, checks it and decodes it with the one body decoder. Without a location (the
/// in-memory log) the value is kept in memory.
///
/// Beside that state it keeps the store's bookkeeping of writes in flight (`ending`,
/// `putsInFlight`, `sweeping`), which no record carries.
struct MemoTable {
    struct RunKey: Hashable {
        var namespace: [UInt8]
        var run: [UInt8]
    }

    struct GenerationKey: Hashable, Comparable {
        var run: RunKey
        var generation: UInt64

        static func < (a: GenerationKey, b: GenerationKey) -> Bool {
            if a.run.namespace != b.run.namespace { return a.run.namespace.lexicographicallyPrecedes(b.run.namespace) }
            if a.run.run != b.run.run { return a.run.run.lexicographicallyPrecedes(b.run.run) }
            return a.generation < b.generation
        }
    }

    struct NameKey: Hashable, Comparable {
        var step: [UInt8]
        var name: [UInt8]

        static func < (a: NameKey, b: NameKey) -> Bool {
            a.step != b.step ? a.step.lexicographicallyPrecedes(b.step) : a.name.lexicographicallyPrecedes(b.name)
        }
    }

    /// Where a memo value is: on disk (the memo entry record, or its snapshot value), or in
    /// memory for a log that gives no locations.
    enum ValueRef {
        case bytes([UInt8])
        case located(ValueLocation, count: Int)

        var count: Int {
            switch self {
            case .bytes(let bytes): bytes.count
            case .located(_, let count): count
            }
        }
    }

    /// A memo entry item of a snapshot, for `relocate`.
    struct ItemKey {
        var generation: GenerationKey
        var name: NameKey
    }

    struct Slot {
        /// 32 bytes; all zero for "no input".
        var inputDigest: [UInt8]
        var timeMilliseconds: UInt64
        var value: ValueRef
    }

    struct Generation {
        var end: (status: RecordBody.RunStatus, timeMilliseconds: UInt64)?
        var entries: [NameKey: Slot] = [:]
        var valueBytes = 0
        // Store bookkeeping (not log state).
        /// A run-end record for it is being written: puts are refused.
        var ending = false
        /// Puts being written: a sweep leaves the generation for the next one.
        var putsInFlight = 0
        /// A sweep record for it is being written.
        var sweeping = false
    }

    /// Reads values that stay on disk; nil for a log that gives no locations.
    var reader: RecordReader?
    private(set) var generations: [GenerationKey: Generation] = [:]
    /// Each run's latest generation: written to, or handed out by `generation(for:)`.
    private(set) var latest: [RunKey: UInt64] = [:]
    /// The highest generation number seen or handed out: a new generation takes the next,
    /// so a number is never used twice in the ledger.
    private(set) var highestGeneration: UInt64 = 0
    /// The sweep record of the highest generation ever swept: compaction keeps it, so the
    /// generation count survives even when every run was swept (§9.4).
    private var highestSweep: RecordBody.MemoSweep?

    static func runKey(_ run: MemoRun) -> RunKey {
        RunKey(namespace: Array(run.namespace.utf8), run: Array(run.run.utf8))
    }

    static func memoRun(_ key: RunKey) -> MemoRun {
        MemoRun(namespace: String(decoding: key.namespace, as: UTF8.self), run: String(decoding: key.run, as: UTF8.self))
    }

    static func key(_ key: MemoKey) -> (GenerationKey, NameKey) {
        (GenerationKey(run: runKey(key.run), generation: key.generation),
         NameKey(step: Array(key.step.utf8), name: Array(key.name.utf8)))
    }

    // MARK: Reading

    func generation(_ key: GenerationKey) -> Generation? { generations[key] }

    func slot(_ key: MemoKey) -> Slot? {
        let (generation, name) = MemoTable.key(key)
        return generations[generation]?.entries[name]
    }

    func info(_ key: GenerationKey) -> RunInfo? {
        guard let generation = generations[key] else { return nil }
        return RunInfo(run: MemoTable.memoRun(key.run), generation: key.generation,
                       status: generation.end.map { RunStatus($0.status) }, endTimeMilliseconds: generation.end?.timeMilliseconds,
                       entryCount: generation.entries.count, valueBytes: generation.valueBytes)
    }

    func infos(_ query: RunQuery) -> [RunInfo] {
        let namespace = query.namespace.map { Array($0.utf8) }
        let run = query.run.map { Array($0.utf8) }
        return generations.keys
            .filter { (namespace == nil || $0.run.namespace == namespace) && (run == nil || $0.run.run == run) }
            .sorted()
            .compactMap(info)
    }

    // MARK: Store bookkeeping

    /// The generation a memo of `run` reads and writes now: the latest, unless it ended (or
    /// is ending, or was swept), else a new one, handed out here (nothing is written until
    /// its first put or its end).
    mutating func currentGeneration(_ run: RunKey) -> UInt64 {
        if let latest = latest[run] {
            let generation = generations[GenerationKey(run: run, generation: latest)]
            if generation == nil || (generation?.end == nil && generation?.ending == false) {
                // Handed out and not written yet, or running.
                return latest
            }
        }
        highestGeneration += 1
        latest[run] = highestGeneration
        return highestGeneration
    }

    /// Whether a put to `key` may be written now: its generation is its run's latest and has
    /// not ended (nor is ending).
    func acceptsPut(_ key: GenerationKey) -> Bool {
        guard latest[key.run] == key.generation else { return false }
        guard let generation = generations[key] else { return true }
        return generation.end == nil && !generation.ending
    }

    mutating func beginPut(_ key: GenerationKey) {
        generations[key, default: Generation()].putsInFlight += 1
    }

    mutating func endPut(_ key: GenerationKey) {
        generations[key]?.putsInFlight -= 1
        dropIfEmpty(key)
    }

    mutating func setEnding(_ key: GenerationKey, _ ending: Bool) {
        generations[key, default: Generation()].ending = ending
        if !ending { dropIfEmpty(key) }
    }

    mutating func setSweeping(_ key: GenerationKey, _ sweeping: Bool) {
        generations[key]?.sweeping = sweeping
    }

    /// A generation with no end, no values and nothing in flight carries no state (a put
    /// or an end that failed to be written leaves it so).
    private mutating func dropIfEmpty(_ key: GenerationKey) {
        guard let generation = generations[key], generation.end == nil, generation.entries.isEmpty,
              generation.putsInFlight == 0, !generation.ending, !generation.sweeping
        else { return }
        generations[key] = nil
    }

    /// The ended generations whose retention window has passed at `now`, not being swept and
    /// with no put in flight. A generation that ended after `now` (a clock that went
    /// backwards) is never due.
    func due(now: UInt64, retention: MemoRetention) -> [GenerationKey] {
        generations.compactMap { key, generation -> GenerationKey? in
            guard let end = generation.end, !generation.sweeping, generation.putsInFlight == 0,
                  let window = retention.windowMilliseconds(for: RunStatus(end.status)),
                  now >= end.timeMilliseconds, now - end.timeMilliseconds >= window
            else { return nil }
            return key
        }.sorted()
    }

    // MARK: Applying records

    /// Applies one durable memo record or snapshot item (kinds 13–15) given as its encoded
    /// body. Throws `.malformedBody` for a body that does not decode. `location` is where
    /// the record (or, for a snapshot hint, the item's value) is on disk, if it is: a memo
    /// entry's value then stays there.
    mutating func apply(kind: RecordKind, body: UnsafeRawBufferPointer, location: ValueLocation? = nil) throws {
        let fields: RecordBody.Fields
        switch RecordBody.decodeFields(kind: kind, body) {
        case .fields(let decoded): fields = decoded
        case .corrupt(let reason): throw LedgerError(.malformedBody, reason)
        case .unknownKind(let unknown):
            throw LedgerError(.unsupportedVersion, "record kind \(unknown.rawValue) is not known to this build")
        }
        func bytes(_ range: Range<Int>) -> [UInt8] { Array(body[range]) }
        func generationKey(_ namespace: Range<Int>, _ run: Range<Int>, _ generation: UInt64) -> GenerationKey {
            GenerationKey(run: RunKey(namespace: bytes(namespace), run: bytes(run)), generation: generation)
        }
        switch fields {
        case let .memoEntry(namespace, run, generation, step, name, digest, time, value):
            let key = generationKey(namespace, run, generation)
            see(key)
            let ref: ValueRef
            if let location {
                // A segment record holds the whole body; a snapshot hint holds it with an
                // empty value, which is in the snapshot's value (the whole body) instead.
                let count = location.isSnapshot ? max(0, Int(location.bodyBytes) - body.count) : value.count
                ref = .located(location, count: count)
            } else {
                ref = .bytes(bytes(value))
            }
            let slot = Slot(inputDigest: bytes(digest), timeMilliseconds: time, value: ref)
            let nameKey = NameKey(step: bytes(step), name: bytes(name))
            let previous = generations[key]?.entries[nameKey]?.value.count ?? 0
            generations[key, default: Generation()].valueBytes += slot.value.count - previous
            generations[key, default: Generation()].entries[nameKey] = slot
        case let .runEnd(namespace, run, generation, status, time):
            let key = generationKey(namespace, run, generation)
            see(key)
            // The first end stands (the store writes one per generation).
            if generations[key]?.end == nil { generations[key, default: Generation()].end = (status, time) }
        case let .memoSweep(namespace, run, generation, time):
            let key = generationKey(namespace, run, generation)
            see(key)
            generations[key] = nil
            if latest[key.run] == generation { latest[key.run] = nil }
            if generation >= highestSweep?.generation ?? 0 {
                highestSweep = RecordBody.MemoSweep(
                    namespace: String(decoding: key.run.namespace, as: UTF8.self),
                    run: String(decoding: key.run.run, as: UTF8.self), generation: generation, timeMilliseconds: time)
            }
        default:
            throw LedgerError(.malformedBody, "record kind \(kind) is not a memo record")
        }
    }

    /// A record of `key` was applied: its generation counts as seen and, if newer, as its
    /// run's latest.
    private mutating func see(_ key: GenerationKey) {
        highestGeneration = max(highestGeneration, key.generation)
        if key.generation > latest[key.run] ?? 0 { latest[key.run] = key.generation }
    }

    // MARK: Snapshots

    /// The bytes of the value `ref` names for `key`: in memory, or read from disk.
    static func value(_ ref: ValueRef, key: ItemKey, reader: RecordReader?, file: (any StorageFile)?) throws -> [UInt8] {
        switch ref {
        case .bytes(let bytes):
            return bytes
        case .located(let location, _):
            guard let reader else { throw LedgerError(.closed, "this ledger has no reader for memo values on disk") }
            return try readValue(at: location, key: key, reader: reader, file: file)
        }
    }

    /// Reads the memo entry at `location` (through `file`, a handle taken earlier, or the
    /// reader's) and returns its value, checked to be the entry of `key`.
    static func readValue(at location: ValueLocation, key: ItemKey, reader: RecordReader,
                          file: (any StorageFile)?) throws -> [UInt8] {
        let handle = try file ?? reader.handle(for: location.file)
        return try reader.withRecord(location, from: handle) { kind, raw -> [UInt8] in
            func equal(_ range: Range<Int>, _ bytes: [UInt8]) -> Bool { raw[range].elementsEqual(bytes) }
            guard kind == .memoEntry,
                  case .fields(.memoEntry(let namespace, let run, let generation, let step, let name, _, _, let value)) =
                    RecordBody.decodeFields(kind: kind, raw),
                  generation == key.generation.generation, equal(namespace, key.generation.run.namespace),
                  equal(run, key.generation.run.run), equal(step, key.name.step), equal(name, key.name.name)
            else {
                throw LedgerError(
                    .corruptRecord,
                    "the record at offset \(location.offset) no longer holds the memo value it held when the ledger opened; run `onceledger verify` and `onceledger salvage`",
                    path: reader.path(of: location.file), segment: location.isSnapshot ? nil : location.file,
                    offset: location.offset)
            }
            return Array(raw[value])
        }
    }

    /// A value's read, prepared under the lock and finished outside it (`LogStore.memoGet`):
    /// the handle is taken now, so a compaction that removes the file meanwhile does not
    /// take the bytes away.
    struct Read {
        var slot: Slot
        var key: ItemKey
        var onDisk: (reader: RecordReader, file: any StorageFile)?

        func finish() throws -> [UInt8] {
            try MemoTable.value(slot.value, key: key, reader: onDisk?.reader, file: onDisk?.file)
        }
    }

    func read(_ key: MemoKey) throws -> Read? {
        let (generation, name) = MemoTable.key(key)
        guard let slot = generations[generation]?.entries[name] else { return nil }
        let itemKey = ItemKey(generation: generation, name: name)
        guard case .located(let location, _) = slot.value, let reader else { return Read(slot: slot, key: itemKey) }
        return Read(slot: slot, key: itemKey, onDisk: (reader, try reader.handle(for: location.file)))
    }

    /// After a compaction wrote `snapshotItemsInOrder()`'s items: the value of memo entry
    /// `keys[i]` (nil: not a memo entry) is now at `locations[i]`. Called before any later
    /// record is applied, so the entries are the ones written.
    mutating func relocate(_ keys: [ItemKey?], locations: ArraySlice<ValueLocation?>) {
        guard reader != nil else { return }
        for (position, key) in keys.enumerated() where position < locations.count {
            guard let key, let location = locations[locations.startIndex + position],
                  let slot = generations[key.generation]?.entries[key.name]
            else { continue }
            generations[key.generation]?.entries[key.name]?.value = .located(location, count: slot.value.count)
        }
    }

    /// The memo as snapshot items (`Spec/FORMAT.md` §6.2, §9.4), in key order: each live
    /// generation's values and its end; then the sweep of the highest generation swept.
    /// Swept generations are gone, so compaction drops them. Values on disk are read into
    /// the items; beside them, which memo entry each item is (for `relocate`).
    func snapshotItemsInOrder() throws -> (items: [SnapshotFile.Item], keys: [ItemKey?]) {
        var items: [SnapshotFile.Item] = []
        var keys: [ItemKey?] = []
        for key in generations.keys.sorted() {
            guard let generation = generations[key] else { continue }
            let namespace = String(decoding: key.run.namespace, as: UTF8.self)
            let run = String(decoding: key.run.run, as: UTF8.self)
            for name in generation.entries.keys.sorted() {
                guard let slot = generation.entries[name] else { continue }
                let itemKey = ItemKey(generation: key, name: name)
                let body = RecordBody.memoEntry(.init(
                    namespace: namespace, run: run, generation: key.generation,
                    step: String(decoding: name.step, as: UTF8.self), name: String(decoding: name.name, as: UTF8.self),
                    inputDigest: slot.inputDigest, timeMilliseconds: slot.timeMilliseconds,
                    value: try MemoTable.value(slot.value, key: itemKey, reader: reader, file: nil)))
                items.append(SnapshotFile.Item(kind: .memoEntry, body: body.encode()))
                keys.append(itemKey)
            }
            if let end = generation.end {
                let body = RecordBody.runEnd(.init(namespace: namespace, run: run, generation: key.generation,
                                                   status: end.status, timeMilliseconds: end.timeMilliseconds))
                items.append(SnapshotFile.Item(kind: .runEnd, body: body.encode()))
                keys.append(nil)
            }
        }
        if let highestSweep {
            items.append(SnapshotFile.Item(kind: .memoSweep, body: RecordBody.memoSweep(highestSweep).encode()))
            keys.append(nil)
        }
        return (items, keys)
    }
}
