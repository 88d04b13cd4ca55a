import OnceLedger
import OnceLedgerFormat

/// The memo records (kinds 13–15, `Spec/FORMAT.md` §5.16–§5.18, §9.4) of a ledger
/// replayed read-only for `runs`, `memo` and `sweep --dry-run`: the snapshot's items,
/// then the log records it does not cover. Unlike the ledger's own memo table it keeps
/// the run generations that were swept (while their sweep record is on disk), so `runs`
/// can say so. Values are kept only for the run `keepValuesOf` names; for the others
/// only their byte counts.
///
/// Texts compare byte for byte (their UTF-8), as in the ledger: Swift's `==` on `String`
/// would take "café" spelled with U+00E9 and with "e" + U+0301 for one run id, one step or
/// one name, and list two runs' values as one run's, or hide one of two values.
struct MemoReplay {
    /// A text that compares and hashes as its UTF-8 bytes.
    struct Text: Hashable {
        var string: String

        init(_ string: String) { self.string = string }

        static func == (a: Text, b: Text) -> Bool { MemoReplay.same(a.string, b.string) }

        func hash(into hasher: inout Hasher) {
            hasher.combine(string.utf8.count)
            for byte in string.utf8 { hasher.combine(byte) }
        }
    }

    /// Whether `a` and `b` are the same bytes.
    static func same(_ a: String, _ b: String) -> Bool { a.utf8.elementsEqual(b.utf8) }

    struct GenerationKey: Hashable, Comparable {
        var namespace: String
        var run: String
        var generation: UInt64

        static func == (a: GenerationKey, b: GenerationKey) -> Bool {
            a.generation == b.generation && MemoReplay.same(a.namespace, b.namespace) && MemoReplay.same(a.run, b.run)
        }

        func hash(into hasher: inout Hasher) {
            hasher.combine(generation)
            hasher.combine(Text(namespace))
            hasher.combine(Text(run))
        }

        static func < (a: GenerationKey, b: GenerationKey) -> Bool {
            func bytes(_ key: GenerationKey) -> ([UInt8], [UInt8]) { (Array(key.namespace.utf8), Array(key.run.utf8)) }
            let (an, ar) = bytes(a), (bn, br) = bytes(b)
            if an != bn { return an.lexicographicallyPrecedes(bn) }
            if ar != br { return ar.lexicographicallyPrecedes(br) }
            return a.generation < b.generation
        }
    }

    struct Entry {
        var step: String
        var name: String
        /// nil: stored without an input.
        var inputDigest: [UInt8]?
        var timeMilliseconds: UInt64
        var valueBytes: Int
        /// The value, for the run asked for; else nil.
        var value: [UInt8]?
    }

    struct Generation {
        var status: RecordBody.RunStatus?
        var endTimeMilliseconds: UInt64?
        var entries: [Text: [Text: Entry]] = [:]  // step -> name -> entry
        var sweptTimeMilliseconds: UInt64?

        var entryCount: Int { entries.values.reduce(0) { $0 + $1.count } }
        var valueBytes: Int { entries.values.reduce(0) { $0 + $1.values.reduce(0) { $0 + $1.valueBytes } } }
        var statusName: String {
            switch status {
            // A swept generation whose run-end record compaction dropped: it had ended.
            case nil where sweptTimeMilliseconds != nil: "ended"
            case nil: "running"
            case .succeeded?: "succeeded"
            case .failed?: "failed"
            case .cancelled?: "cancelled"
            }
        }
        var runStatus: RunStatus? {
            switch status {
            case nil: nil
            case .succeeded?: .succeeded
            case .failed?: .failed
            case .cancelled?: .cancelled
            }
        }
    }

    var generations: [GenerationKey: Generation] = [:]
    /// Bodies that did not decode (verify reports them; the listing skips them).
    var malformed = 0
    let keepValuesOf: (namespace: String, run: String)?

    init(keepValuesOf: (namespace: String, run: String)? = nil) {
        self.keepValuesOf = keepValuesOf
    }

    mutating func apply(kind: RecordKind, body: [UInt8]) {
        guard kind.isMemo else { return }
        guard case .body(let decoded) = RecordBody.decode(kind: kind, body) else {
            malformed += 1
            return
        }
        switch decoded {
        case .memoEntry(let b):
            let key = GenerationKey(namespace: b.namespace, run: b.run, generation: b.generation)
            let keep = keepValuesOf.map { MemoReplay.same($0.namespace, b.namespace) && MemoReplay.same($0.run, b.run) } ?? false
            let entry = Entry(step: b.step, name: b.name,
                              inputDigest: b.inputDigest == RecordBody.noInputDigest ? nil : b.inputDigest,
                              timeMilliseconds: b.timeMilliseconds, valueBytes: b.value.count, value: keep ? b.value : nil)
            generations[key, default: Generation()].entries[Text(b.step), default: [:]][Text(b.name)] = entry
        case .runEnd(let b):
            let key = GenerationKey(namespace: b.namespace, run: b.run, generation: b.generation)
            // The first end stands, as in the ledger's memo table.
            if generations[key]?.status == nil {
                generations[key, default: Generation()].status = b.status
                generations[key, default: Generation()].endTimeMilliseconds = b.timeMilliseconds
            }
        case .memoSweep(let b):
            let key = GenerationKey(namespace: b.namespace, run: b.run, generation: b.generation)
            generations[key, default: Generation()].entries = [:]
            generations[key, default: Generation()].sweptTimeMilliseconds = b.timeMilliseconds
        default:
            break
        }
    }

    /// Replays `directory`'s memo records, read-only, after the live-writer policy of
    /// `entries`; exit 4 (the usual failure) if the ledger is damaged.
    static func read(_ directory: String, command: String, allowLive: Bool,
                     keepValuesOf: (namespace: String, run: String)? = nil) throws -> MemoReplay {
        _ = try LedgerInspection.requireLedger(directory)
        try LiveLedgerPolicy.check(directory, command: command, allowLive: allowLive)
        var replay = MemoReplay(keepValuesOf: keepValuesOf)
        let inspection = try LedgerInspection.inspect(directory) { visit in
            switch visit {
            case .item(_, let item, _):
                replay.apply(kind: item.kind, body: item.body)
            case .record(let record, let covered):
                if !covered { replay.apply(kind: record.header.kind, body: record.body) }
            }
        }
        if let problem = inspection.problem {
            throw CommandFailure(
                ExitCodes.code(for: problem),
                "the ledger is damaged, so its memo cannot be listed: "
                    + CommandFailure.describe(problem, relativeTo: directory)
                    + "\nRun `onceledger verify \(directory)` for the full report; `onceledger salvage` copies what is recoverable to a new directory.",
                code: problem.code.rawValue)
        }
        return replay
    }

    /// The ended, unswept generations whose window has passed at `now` (the ledger's rule:
    /// a generation that ended after `now` is never due).
    func due(now: UInt64, retention: MemoRetention) -> [GenerationKey] {
        generations.compactMap { key, generation -> GenerationKey? in
            guard generation.sweptTimeMilliseconds == nil, let status = generation.runStatus,
                  let end = generation.endTimeMilliseconds,
                  let window = retention.windowMilliseconds(for: status),
                  now >= end, now - end >= window
            else { return nil }
            return key
        }.sorted()
    }
}
