import OnceLedgerFormat

/// The in-memory state of a ledger: one compact `Entry` per key, receipts and
/// fingerprints in one byte arena. Changed only by `apply`, which is called for
/// recovered records at open and, live, on the backend's commit thread once a
/// record is durable — so it always equals "the log replayed".
struct LedgerState {
    /// 32 bytes per key (plus the dictionary slot and the key's own storage).
    struct Entry {
        /// Arena offset of [fingerprint (32, if any)][receipt].
        var blob: UInt64
        /// Intent time (pending), completion time (done), or last change (absent).
        var time: UInt64
        var receiptLength: UInt32
        var attempt: UInt32
        var generation: UInt32
        var status: UInt8
        var hasFingerprint: Bool

        static let done: UInt8 = 1
        static let pending: UInt8 = 2
        static let absent: UInt8 = 3
    }

    var entries: [String: Entry] = [:]
    var arena: [UInt8] = []
    var arenaGarbage = 0
    /// Memo, journal and run-terminal records, kept verbatim so snapshots preserve them.
    var retained: [SnapshotFile.Item] = []

    // MARK: Reading

    func fingerprint(of entry: Entry) -> [UInt8] {
        guard entry.hasFingerprint else { return IdempotencyKey.noFingerprint }
        let start = Int(entry.blob)
        return Array(arena[start..<(start + 32)])
    }

    func receipt(of entry: Entry) -> [UInt8] {
        let start = Int(entry.blob) + (entry.hasFingerprint ? 32 : 0)
        return Array(arena[start..<(start + Int(entry.receiptLength))])
    }

    func info(key: String, entry: Entry) -> EntryInfo {
        let status: EntryInfo.Status = switch entry.status {
        case Entry.done: .done
        case Entry.pending: .pendingUnknown
        default: .absent
        }
        return EntryInfo(key: key, status: status, attempt: entry.attempt, generation: entry.generation,
                         fingerprint: fingerprint(of: entry), timeMilliseconds: entry.time,
                         receipt: entry.status == Entry.done ? receipt(of: entry) : [])
    }

    func info(_ key: String) -> EntryInfo? {
        entries[key].map { info(key: key, entry: $0) }
    }

    // MARK: Applying records

    private mutating func store(fingerprint: [UInt8], receipt: [UInt8]) -> (UInt64, Bool) {
        let offset = UInt64(arena.count)
        let has = fingerprint.count == 32 && fingerprint.contains { $0 != 0 }
        if has { arena.append(contentsOf: fingerprint) }
        arena.append(contentsOf: receipt)
        return (offset, has)
    }

    private mutating func release(_ entry: Entry) {
        arenaGarbage += (entry.hasFingerprint ? 32 : 0) + Int(entry.receiptLength)
    }

    private mutating func set(_ key: String, status: UInt8, attempt: UInt32, generation: UInt32, fingerprint: [UInt8],
                              receipt: [UInt8], time: UInt64) {
        if let old = entries[key] { release(old) }
        let (blob, has) = store(fingerprint: fingerprint, receipt: receipt)
        entries[key] = Entry(blob: blob, time: time, receiptLength: UInt32(receipt.count), attempt: attempt,
                             generation: generation, status: status, hasFingerprint: has)
        if arenaGarbage > (1 << 20) && arenaGarbage > arena.count / 2 { rebuildArena() }
    }

    private mutating func rebuildArena() {
        var fresh: [UInt8] = []
        fresh.reserveCapacity(arena.count - arenaGarbage)
        for (key, var entry) in entries {
            let length = (entry.hasFingerprint ? 32 : 0) + Int(entry.receiptLength)
            let start = Int(entry.blob)
            entry.blob = UInt64(fresh.count)
            fresh.append(contentsOf: arena[start..<(start + length)])
            entries[key] = entry
        }
        arena = fresh
        arenaGarbage = 0
    }

    /// Applies one durable record (or snapshot item). Throws `.malformedBody` for a
    /// body that does not decode — on open that refuses the ledger, naming the kind.
    mutating func apply(kind: RecordKind, body: [UInt8]) throws {
        let decoded: RecordBody
        switch RecordBody.decode(kind: kind, body) {
        case .body(let value): decoded = value
        case .corrupt(let reason): throw LedgerError(.malformedBody, reason)
        case .unknownKind(let unknown):
            throw LedgerError(.unsupportedVersion, "record kind \(unknown.rawValue) is not known to this build")
        }
        apply(decoded)
    }

    mutating func apply(_ body: RecordBody) {
        switch body {
        case .intent(let b):
            set(b.key, status: Entry.pending, attempt: b.attempt, generation: b.generation, fingerprint: b.fingerprint,
                receipt: [], time: b.timeMilliseconds)
        case .completion(let b):
            let old = entries[b.key]
            set(b.key, status: Entry.done, attempt: max(b.attempt, old?.attempt ?? 0), generation: old?.generation ?? 0,
                fingerprint: old.map(fingerprint(of:)) ?? IdempotencyKey.noFingerprint, receipt: b.receipt,
                time: b.timeMilliseconds)
        case .release(let b):
            let old = entries[b.key]
            set(b.key, status: Entry.absent, attempt: max(b.attempt, old?.attempt ?? 0),
                generation: old?.generation ?? 0, fingerprint: IdempotencyKey.noFingerprint, receipt: [],
                time: b.timeMilliseconds)
        case .resolve(let b):
            let old = entries[b.key]
            let done = b.outcome == .done
            set(b.key, status: done ? Entry.done : Entry.absent, attempt: max(b.attempt, old?.attempt ?? 0),
                generation: old?.generation ?? 0,
                fingerprint: done ? (old.map(fingerprint(of:)) ?? IdempotencyKey.noFingerprint) : IdempotencyKey.noFingerprint,
                receipt: done ? b.receipt : [], time: b.timeMilliseconds)
        case .forget(let b):
            let old = entries[b.key]
            set(b.key, status: Entry.absent, attempt: old?.attempt ?? 0, generation: (old?.generation ?? 0) &+ 1,
                fingerprint: IdempotencyKey.noFingerprint, receipt: [], time: b.timeMilliseconds)
        case .entryState(let b):
            let status: UInt8 = switch b.status {
            case .done: Entry.done
            case .pending: Entry.pending
            case .absent: Entry.absent
            }
            set(b.key, status: status, attempt: b.attempt, generation: b.generation, fingerprint: b.fingerprint,
                receipt: b.receipt,
                time: b.status == .done ? b.completedTimeMilliseconds : b.intentTimeMilliseconds)
        case .memoPut, .journalEntry, .runTerminal:
            retained.append(SnapshotFile.Item(kind: body.kind, body: body.encode()))
        case .snapshotMarker, .checkpoint, .opaque:
            break
        }
    }

    /// The live state as snapshot items (`Spec/FORMAT.md` §6.2, §9.1).
    func snapshotItems() -> [SnapshotFile.Item] {
        var items: [SnapshotFile.Item] = []
        items.reserveCapacity(entries.count + retained.count)
        for key in entries.keys.sorted() {
            let entry = entries[key]!
            let status: RecordBody.EntryStatus = switch entry.status {
            case Entry.done: .done
            case Entry.pending: .pending
            default: .absent
            }
            let body = RecordBody.entryState(.init(
                key: key, status: status, attempt: entry.attempt, generation: entry.generation,
                fingerprint: fingerprint(of: entry),
                intentTimeMilliseconds: status == .done ? 0 : entry.time,
                completedTimeMilliseconds: status == .done ? entry.time : 0,
                receipt: status == .done ? receipt(of: entry) : []))
            items.append(SnapshotFile.Item(kind: .entryState, body: body.encode()))
        }
        items.append(contentsOf: retained)
        return items
    }
}
